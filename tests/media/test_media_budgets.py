"""Decode budgets, regular files only, and a full disk named as such (issue 15, findings 3, 4
and 7b). Huge images are PNG headers that only declare a size: nothing large is allocated."""

from __future__ import annotations

import errno
import os
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from studio.core.errors import AssetError, StudioError
from studio.media import images, video
from studio.media.images import inspect_image, load_rgb, thumbnail_png
from studio.media.video import VideoWriter, encode_video, iter_frames, probe
from tests.hostile_support import returns_within


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares ``width`` x ``height`` (8-bit RGB) and holds no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size, words", [
    ((20000, 16), "at most 16384 pixels a side"),
    ((16000, 16800), "at most 16384 pixels a side"),  # 268.8 MP: under the old 400 MP limit
    ((24000, 24000), "at most 16384 pixels a side"),  # 576 MP: Pillow's warning band before
    ((16384, 16385), "at most 16384 pixels a side"),  # just over
    ((40000, 40000), "at most 268 megapixels"),  # Pillow's own guard warns: refused, not warned
])
def test_images_beyond_the_budget_are_refused_from_the_header(
        tmp_path: Path, size: tuple[int, int], words: str) -> None:
    path = png_header(tmp_path / "huge.png", *size)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a DecompressionBombWarning must not get out
            for read in (inspect_image, load_rgb, lambda p: thumbnail_png(p, 128)):
                with pytest.raises(AssetError) as caught:
                    read(path)
                assert words in str(caught.value) and str(path) in str(caught.value)
                assert "\n" not in str(caught.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # refused before any pixel buffer is allocated


def test_the_budget_is_the_documented_one() -> None:
    assert images.MAX_SIDE == 16384 and images.MAX_PIXELS == 16384 * 16384
    assert (video.MAX_SIDE, video.MAX_PIXELS, video.MAX_FRAMES) == (8192, 8192 * 4320, 1_000_000)


def test_an_image_within_the_budget_still_reads(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "ok.png"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(path)
    assert load_rgb(path).shape == (48, 64, 3)
    assert inspect_image(path).width == 64


def test_a_fifo_as_an_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "reference.png"
    os.mkfifo(fifo)
    for read in (inspect_image, load_rgb, lambda p: thumbnail_png(p, 64, tmp_path / "cache")):
        with pytest.raises(AssetError, match="named pipe"):
            returns_within(lambda: read(fifo), 10, fifo)


def test_a_fifo_as_a_video_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "take.mp4"
    os.mkfifo(fifo)
    with pytest.raises(AssetError, match="named pipe"):
        returns_within(lambda: probe(fifo), 10, fifo)
    with pytest.raises(AssetError, match="named pipe"):
        returns_within(lambda: next(iter_frames(fifo)), 10, fifo)


def test_a_video_beyond_the_budget_is_refused_from_the_header(tmp_path: Path) -> None:
    # 8194 wide and 16 high: over the side limit, yet a few hundred kilobytes to make.
    path = tmp_path / "wide.mp4"
    encode_video(path, [np.zeros((16, 8194, 3), np.uint8)] * 2, 16, 8194, 16, preset="ultrafast")
    with pytest.raises(AssetError, match="at most 8192 pixels a side") as caught:
        probe(path)
    assert str(path) in str(caught.value)
    with pytest.raises(AssetError, match="at most 8192 pixels a side"):
        next(iter_frames(path))


def test_budget_checks_count_frames_and_pixels() -> None:
    video.check_budget(8192, 4320, 1_000_000, Path("ok.mp4"))
    with pytest.raises(AssetError, match="8192x4320"):
        video.check_budget(8192, 4322, 10, Path("big.mp4"))
    with pytest.raises(AssetError, match="at most 1000000"):
        video.check_budget(64, 64, 1_000_001, Path("long.mp4"))


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "disk full (no space left on device) while writing this file"),
    (errno.EDQUOT, "disk full (no space left on device) while writing this file"),
    (errno.EROFS, "the folder is read-only"),
    (errno.EACCES, os.strerror(errno.EACCES)),
])
def test_write_error_names_the_cause_and_the_file(code: int, words: str) -> None:
    err = video.write_error(OSError(code, os.strerror(code)), Path("/p/exports/film.mp4"))
    assert isinstance(err, StudioError)
    assert words in str(err) and str(err).startswith("/p/exports/film.mp4: ")


def _frames(n: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (96, 160, 3), dtype=np.uint8) for _ in range(n)]


def test_a_full_disk_while_encoding_is_reported_on_the_video_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Why /dev/full: it fails every write with a real ENOSPC from the kernel, raised inside
    # FFmpeg's own I/O, with no need to fill a real disk. The muxer writes there instead of the
    # temp file; the temp file beside the target must still be removed.
    real = video.open_output
    monkeypatch.setattr(video, "open_output", lambda tmp, **kw: real(Path("/dev/full"), **kw))
    target = tmp_path / "takes" / "s1" / "t1.mp4"
    with pytest.raises(StudioError) as caught:
        encode_video(target, _frames(), 16, 160, 96, preset="ultrafast")
    assert str(caught.value).startswith(f"{target}: disk full (no space left on device) "
                                        "while writing this file")
    assert list(target.parent.iterdir()) == []
    with pytest.raises(StudioError, match="disk full"):
        with VideoWriter(target, 16, 160, 96, preset="ultrafast") as writer:
            for frame in _frames():
                writer.write(frame)
    assert list(target.parent.iterdir()) == []
