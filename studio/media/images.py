"""Reading user images robustly.

Handles what artists actually drop: EXIF-rotated phone photos (rotated upright), CMYK JPEGs and
16-bit PNG/TIFF (converted, not rejected), images with alpha (composited on mid grey), huge images
(read fully for import, downscaled for display). Anything unreadable raises
:class:`~studio.core.errors.AssetError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.assets import store_file
from studio.core.errors import AssetError
from studio.core.model import Asset
from studio.core.safeio import open_regular

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Decode budget, checked from the header before any pixel is decoded. Real photos from large
# sensors or scans stay far below (a 150 MP sensor is 14204x10652); a file declaring more is
# refused with one line, never decoded. Pillow's own guard stays as a backstop above it (so the
# refusal names the size in our words), and its DecompressionBombWarning band is a refusal too.
MAX_SIDE = 16384
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # 268 MP
_PILLOW_GUARD = 4 * MAX_PIXELS
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

    Image.MAX_IMAGE_PIXELS = _PILLOW_GUARD
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return Image


def check_budget(width: int, height: int, path: Path) -> None:
    """Refuse an image whose declared size is beyond the decode budget (header only)."""
    if width > MAX_SIDE or height > MAX_SIDE:
        raise AssetError(f"image is {width}x{height}; at most {MAX_SIDE} pixels a side are read",
                         path)
    if width * height > MAX_PIXELS:
        raise AssetError(f"image is {width}x{height} ({width * height // 1_000_000} megapixels); "
                         f"at most {MAX_PIXELS // 1_000_000} megapixels are read", path)


def _open(path: Path) -> "Image.Image":
    Image = _pil()
    path = Path(path)
    # Only a regular file: a FIFO would block the reader (and the UI thread) for ever.
    fd = open_regular(path, AssetError)
    fh = os.fdopen(fd, "rb")
    try:
        with warnings.catch_warnings():
            # The warning band of Pillow's guard is a refusal here, not a line on stderr.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
            check_budget(int(img.width), int(img.height), path)  # from the header, before decoding
            img.load()  # decode fully: truncated or corrupt data fails here, not later
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise AssetError(f"image is larger than {_PILLOW_GUARD // 1_000_000} megapixels; at most "
                         f"{MAX_PIXELS // 1_000_000} megapixels are read", path) from None
    except Image.UnidentifiedImageError:
        raise AssetError("not an image (or a format Continuity Studio cannot read)", path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg:
            msg = "the image file is truncated (incomplete download or copy?)"
        raise AssetError(f"corrupt image: {msg}", path) from None
    except MemoryError:
        raise AssetError("image too large to decode", path) from None
    finally:
        fh.close()  # the pixels are loaded; nothing reads the file again
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


# -- framing: the part of a start image that fills the output frame -----------------------------
#
# Pure arithmetic on sizes (no Pillow, no numpy): the engine, the GPU runtime's worker and the
# inspector's framing editor all call the same functions, so the frame the artist sees is the
# frame every backend generates from. A box is (x, y, w, h) in source pixels; a crop is the same
# in fractions of the source's width and height (``studio.core.model.Framing``).

Box = tuple[float, float, float, float]

# Above the face box (brow to chin), the automatic framing keeps this many face heights: the
# crown of the head is about 0.8 above the brow (more on a tilted or laughing face, whose brows
# are low in the box), the rest is room for hair or a hat.
HEADROOM = 1.2
CHIN_ROOM = 0.12  # below the chin, in face heights


def cover_size(src_w: float, src_h: float, out_w: float, out_h: float) -> tuple[float, float]:
    """The largest box of the output's aspect that fits inside the source."""
    target = out_w / out_h
    if src_w / src_h > target:
        return src_h * target, float(src_h)
    return float(src_w), src_w / target


def _place(start: float, size: float, limit: float) -> float:
    return min(max(start, 0.0), max(limit - size, 0.0))


def fit_crop(src_w: int, src_h: int, out_w: int, out_h: int,
             focus: tuple[float, float] | None = None) -> Box:
    """The largest box of the output's aspect inside the source, centred on ``focus`` (a point)
    when given. Without one it is centred horizontally and, when the crop must cut the height (a
    portrait into 16:9), raised toward the upper part of the image, where a portrait's head is:
    an exact centre crop cuts the top of the head off."""
    w, h = cover_size(src_w, src_h, out_w, out_h)
    fx, fy = focus if focus is not None else (src_w / 2.0, src_h * 0.35)
    # A portrait's face sits a little above the middle of a good frame.
    return _place(fx - w / 2.0, w, src_w), _place(fy - h * 0.42, h, src_h), w, h


def face_crop(src_w: int, src_h: int, out_w: int, out_h: int,
              face: tuple[float, float, float, float], eyes_y: float | None = None) -> Box:
    """The automatic framing of a start image with a face: the largest box of the output's aspect,
    centred on the face horizontally, the eyes on the upper third line, moved so that the face box
    ``face`` (x0, y0, x1, y1: brow to chin) plus :data:`HEADROOM` face heights above it (hair, a
    hat) stays inside. When the frame is too short for all of that, the face and as much of the
    room above it as fits."""
    w, h = cover_size(src_w, src_h, out_w, out_h)
    x0, y0, x1, y1 = face
    fh = max(y1 - y0, 1.0)
    eyes = eyes_y if eyes_y is not None else y0 + 0.25 * fh
    x = _place((x0 + x1) / 2.0 - w / 2.0, w, src_w)
    # The top edge y keeps the chin in when y >= y_min, the room above the face when y <= y_max.
    y_min = y1 + CHIN_ROOM * fh - h
    y_max = y0 - HEADROOM * fh
    y = min(max(eyes - h / 3.0, y_min), y_max) if y_min <= y_max else y_min
    return x, _place(y, h, src_h), w, h


def frame_box(src_w: int, src_h: int, out_w: int, out_h: int,
              crop: tuple[float, float, float, float] | None) -> Box:
    """The box of the output's aspect that a stored crop (fractions of the source) stands for.
    A crop of another aspect (the shot's aspect changed after it was framed) becomes the box of
    the output's aspect with the same centre and area, shrunk to fit the source and kept inside
    it. ``None``: :func:`fit_crop` without a focus."""
    if crop is None:
        return fit_crop(src_w, src_h, out_w, out_h)
    cx, cy, cw, ch = (float(v) for v in crop)
    if not all(math.isfinite(v) for v in (cx, cy, cw, ch)) or cw <= 0 or ch <= 0:
        return fit_crop(src_w, src_h, out_w, out_h)  # NaN would spread to every pixel box
    pw, ph = cw * src_w, ch * src_h
    target = out_w / out_h
    if abs(pw / ph - target) > 0.001 * target:
        area = pw * ph
        pw, ph = (area * target) ** 0.5, (area / target) ** 0.5
    mw, mh = cover_size(src_w, src_h, out_w, out_h)
    if pw > mw or ph > mh:
        pw, ph = mw, mh
    centre_x, centre_y = (cx + cw / 2.0) * src_w, (cy + ch / 2.0) * src_h
    return (_place(centre_x - pw / 2.0, pw, src_w), _place(centre_y - ph / 2.0, ph, src_h), pw, ph)


def box_to_crop(box: Box, src_w: int, src_h: int) -> tuple[float, float, float, float]:
    """A box in source pixels as fractions of the source, rounded (JSON stays short) and kept
    inside [0, 1]."""
    x, y, w, h = box
    fw, fh = min(w / src_w, 1.0), min(h / src_h, 1.0)
    fx, fy = min(max(x / src_w, 0.0), 1.0 - fw), min(max(y / src_h, 0.0), 1.0 - fh)
    return tuple(round(v, 6) for v in (fx, fy, fw, fh))  # type: ignore[return-value]


def crop_resize(img: "Image.Image", box: Box, size: tuple[int, int]) -> "Image.Image":
    """``box`` of ``img`` (sub-pixel exact) resized to ``size`` with Lanczos."""
    x, y, w, h = box
    return img.resize(size, _pil().Resampling.LANCZOS, box=(x, y, x + w, y + h), reducing_gap=3.0)


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
