"""Images artists really drop: rotated phone photos, CMYK, 16-bit, alpha, huge, broken."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import AssetError
from studio.media import images
from studio.media.images import import_image, inspect_image, load_rgb, thumbnail_png


@pytest.fixture
def photo(photo_png: Path) -> np.ndarray:
    return np.asarray(Image.open(photo_png).convert("RGB"))


def test_exif_rotated_photo_is_shown_upright(tmp_path: Path, photo: np.ndarray) -> None:
    # A phone stores the sensor image sideways plus Orientation=6 ("rotate 90° CW to view").
    wide = np.ascontiguousarray(photo[:, :400])  # 512 tall, 400 wide when upright
    stored = np.rot90(wide, k=1)  # as the sensor wrote it: 400 tall, 512 wide
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    info = inspect_image(path)
    assert (info.width, info.height) == (400, 512)
    upright = load_rgb(path)
    assert upright.shape == (512, 400, 3)
    assert np.abs(upright.astype(int) - wide.astype(int)).mean() < 6  # same picture, upright


def test_cmyk_jpeg_is_converted(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "print.jpg"
    Image.fromarray(photo).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb = load_rgb(path)
    assert rgb.shape == photo.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - photo.astype(int)).mean() < 25


def test_16_bit_greyscale_png_keeps_its_range(tmp_path: Path) -> None:
    ramp = (np.linspace(0, 65535, 256, dtype=np.float64)[None, :].repeat(64, 0)).astype(np.uint16)
    path = tmp_path / "scan16.png"
    Image.fromarray(ramp).save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (64, 256, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 <= rgb[0, 128, 0] <= 135


def test_alpha_is_composited(tmp_path: Path) -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:16, :, 3] = 255  # top half opaque red, bottom transparent
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = load_rgb(path)
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[-1, 0]) == (128, 128, 128)


def test_huge_image_is_kept_whole_and_shown_small(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    Image.new("RGB", (12000, 8000), (10, 200, 30)).save(path, compress_level=1)
    asset = import_image(tmp_path / "p", path)
    assert (asset.width, asset.height) == (12000, 8000)  # the original is kept
    stored = tmp_path / "p" / asset.path
    assert stored.read_bytes() == path.read_bytes()
    thumb = Image.open(io.BytesIO(thumbnail_png(path, 256)))
    assert max(thumb.size) == 256  # downscaled for display


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(AssetError, match="megapixels"):
        inspect_image(path)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_text("this is a text file"), "not an image"),
    (lambda p: p.write_bytes(b""), "not an image"),
    (lambda p: p.mkdir(), "is a folder"),
])
def test_not_images(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "portrait.png"
    make(path)
    with pytest.raises(AssetError, match=message) as info:
        import_image(tmp_path / "p", path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "p" / "assets").exists() or not any((tmp_path / "p" / "assets").iterdir())


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image(tmp_path: Path, photo: np.ndarray, fmt: str) -> None:
    path = tmp_path / f"cut.{fmt}"
    Image.fromarray(photo).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AssetError, match="truncated|corrupt") as info:
        import_image(tmp_path / "p", path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="no such file"):
        inspect_image(tmp_path / "gone.png")


def test_thumbnail_cache(tmp_path: Path, photo_png: Path) -> None:
    cache = tmp_path / "cache"
    first = thumbnail_png(photo_png, 128, cache)
    assert len(list(cache.iterdir())) == 1
    assert thumbnail_png(photo_png, 128, cache) == first
    assert Image.open(io.BytesIO(first)).size == (128, 128)
