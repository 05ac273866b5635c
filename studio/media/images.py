"""Reading user images robustly.

Handles what artists actually drop: EXIF-rotated phone photos (rotated upright), CMYK JPEGs and
16-bit PNG/TIFF (converted, not rejected), images with alpha (composited on mid grey), huge images
(read fully for import, downscaled for display). Anything unreadable raises
:class:`~studio.core.errors.AssetError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.assets import store_file
from studio.core.errors import AssetError
from studio.core.model import Asset

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Pillow's decompression-bomb guard defaults to ~89 MP. Real photos from large sensors or scans
# can exceed that, so allow up to 400 MP; beyond that the file is refused with a clear message.
MAX_PIXELS = 400_000_000
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
_EXT_FOR_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif",
                   "GIF": "gif", "MPO": "jpg"}


@dataclass(frozen=True)
class ImageInfo:
    width: int  # upright (after EXIF orientation)
    height: int
    format: str
    mode: str
    ext: str


def _pil():
    from PIL import Image, ImageFile

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return Image


def _open(path: Path) -> "Image.Image":
    Image = _pil()
    path = Path(path)
    if not path.exists():
        raise AssetError("no such file", path)
    if path.is_dir():
        raise AssetError("is a folder, not an image", path)
    try:
        img = Image.open(path)
        img.load()  # decode fully: truncated or corrupt data fails here, not later
    except Image.DecompressionBombError:
        raise AssetError(f"image is larger than {MAX_PIXELS // 1_000_000} megapixels", path) from None
    except Image.UnidentifiedImageError:
        raise AssetError("not an image (or a format Continuity Studio cannot read)", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg:
            msg = "the image file is truncated (incomplete download or copy?)"
        raise AssetError(f"corrupt image: {msg}", path) from None
    except MemoryError:
        raise AssetError("image too large to decode", path) from None
    return img


def to_rgb(img: "Image.Image") -> "Image.Image":
    """Upright 8-bit RGB, whatever the mode (CMYK, 16-bit, palette, alpha, float)."""
    from PIL import Image, ImageOps

    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        if mode == "F" and hi <= 1.0:
            scale = 255.0
        arr8 = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB") if mode != "RGB" else img


def inspect_image(path: Path) -> ImageInfo:
    img = _open(path)
    fmt = img.format or ""
    rgb = to_rgb(img)
    ext = _EXT_FOR_FORMAT.get(fmt, Path(path).suffix.lower().lstrip(".") or "img")
    return ImageInfo(rgb.width, rgb.height, fmt, img.mode, ext)


def load_rgb_image(path: Path, max_side: int | None = None) -> "Image.Image":
    """The upright RGB image, optionally downscaled so its longest side is ``max_side``."""
    img = to_rgb(_open(path))
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), _pil().Resampling.LANCZOS)
    return img


def load_rgb(path: Path, max_side: int | None = None) -> "np.ndarray":
    import numpy as np

    return np.asarray(load_rgb_image(path, max_side), dtype=np.uint8)


def import_image(folder: Path, path: Path) -> Asset:
    """Validate an image and store it in ``folder/assets`` under its content hash."""
    path = Path(path)
    info = inspect_image(path)
    return store_file(folder, path, ext=info.ext, width=info.width, height=info.height,
                      fmt=info.format)


def thumbnail_png(path: Path, max_side: int, cache_dir: Path | None = None) -> bytes:
    """A PNG thumbnail (upright RGB), cached on disk by file content and size."""
    path = Path(path)
    key = None
    if cache_dir is not None:
        try:
            st = path.stat()
        except OSError as exc:
            raise AssetError(f"cannot read: {exc.strerror or exc}", path) from None
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{max_side}".encode()).hexdigest()
        cached = Path(cache_dir) / f"{key}.png"
        if cached.is_file():
            try:
                return cached.read_bytes()
            except OSError:
                pass
    img = load_rgb_image(path, max_side)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=1)
    data = buf.getvalue()
    if cache_dir is not None and key is not None:
        from studio.core.atomic import atomic_write_bytes

        try:
            atomic_write_bytes(Path(cache_dir) / f"{key}.png", data)
        except OSError:
            pass  # a cache that cannot be written is not an error
    return data
