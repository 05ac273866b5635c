"""studio.media.frames: the all-intra proxy, the bounded cache, decode-ahead, damaged files."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from studio.core.errors import AssetError
from studio.media.frames import (FrameCache, FrameSource, ProxyReader, bgrx_to_rgb, build_proxy,
                                 proxy_path_for, prune_proxies, read_thumbnail)
from viewer_media import decode_number, frame_pixels, make_take


@pytest.fixture
def take(tmp_path: Path) -> Path:
    return make_take(tmp_path / "take.mp4", frames=40, gop=12)


def test_every_frame_is_exact_and_random_access_works(take: Path, tmp_path: Path) -> None:
    src = FrameSource(take, proxy_dir=tmp_path / "px")
    try:
        assert src.wait_ready(30) and src.error is None
        assert src.frame_count == 40
        order = [39, 0, 17, 3, 38, 21, 21, 5] + list(range(40))
        for i in order:
            f = src.get(i)
            assert f.shape == (96, 160, 4) and f.dtype == np.uint8
            assert (f[..., 3] == 255).all()
            assert decode_number(bgrx_to_rgb(f)) == i
        # colours survive (B,G,R,X order): the bottom band is dark blue
        rgb = bgrx_to_rgb(src.get(7))
        r, g, b = rgb[90, 80].astype(int)
        assert b > r + 30 and b > g + 30
        assert src.get(-5) is not None and decode_number(bgrx_to_rgb(src.get(99))) == 39
    finally:
        src.close()


def test_reduced_decoding_keeps_the_content(take: Path, tmp_path: Path) -> None:
    src = FrameSource(take, proxy_dir=tmp_path / "px", cache=FrameCache(0))
    try:
        assert src.wait_ready(30)
        for reduce, shape in ((2, (48, 80, 4)), (4, (24, 40, 4))):
            for i in (0, 13, 39):
                f = src.get(i, reduce)
                assert f.shape == shape
                assert decode_number(bgrx_to_rgb(f)) == i
        with pytest.raises(ValueError):
            src.get(0, 3)
    finally:
        src.close()


def test_proxy_is_made_once_and_reused(take: Path, tmp_path: Path) -> None:
    px = tmp_path / "px"
    a = FrameSource(take, proxy_dir=px)
    assert a.wait_ready(30)
    a.close()
    path = proxy_path_for(take, px)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    b = FrameSource(take, proxy_dir=px)
    try:
        assert b.proxy_ready  # adopted at once, no rebuild
        assert decode_number(bgrx_to_rgb(b.get(25))) == 25
        assert path.stat().st_mtime_ns == mtime
    finally:
        b.close()
    # a changed source gets a new proxy (the key includes size and mtime)
    make_take(take, frames=20, gop=5)
    assert proxy_path_for(take, px) != path


def test_frames_stream_in_while_the_proxy_builds(take: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    done = threading.Event()
    src = FrameSource(take, proxy_dir=tmp_path / "px", on_ready=seen.append,
                      on_status=done.set)
    try:
        assert decode_number(bgrx_to_rgb(src.frame(30, timeout=30))) == 30
        assert done.wait(30)
        assert seen[:40] == list(range(40))  # published in order during the build
    finally:
        src.close()


def test_cache_is_bounded_in_bytes(take: Path, tmp_path: Path) -> None:
    one = 96 * 160 * 4
    cache = FrameCache(max_bytes=5 * one + 10)
    src = FrameSource(take, proxy_dir=tmp_path / "px", cache=cache)
    try:
        assert src.wait_ready(30)
        for i in range(40):
            src.get(i)
            assert cache.bytes_used <= cache.max_bytes
        assert len(cache) == 5
        # least recently used goes first
        assert (src.key, 39, 1) in cache and (src.key, 0, 1) not in cache
        cache.resize(2 * one)
        assert len(cache) == 2
        cache.drop_source(src.key)
        assert len(cache) == 0 and cache.bytes_used == 0
    finally:
        src.close()


def test_prefetch_decodes_ahead_in_the_background(take: Path, tmp_path: Path) -> None:
    ready: list[int] = []
    got = threading.Event()

    def on_ready(i: int) -> None:
        ready.append(i)
        if i == 29:
            got.set()

    cache = FrameCache()
    src = FrameSource(take, proxy_dir=tmp_path / "px", cache=cache)
    try:
        assert src.wait_ready(30)
        cache.drop_source(src.key)  # forget what the build published
        src.on_ready = on_ready
        src.prefetch(20, 1, 10)
        assert got.wait(10)
        assert ready == list(range(20, 30))
        assert all((src.key, i, 1) in cache for i in range(20, 30))
        # backwards (J), and frames already cached are not decoded again
        ready.clear()
        back = threading.Event()
        src.on_ready = lambda i: (ready.append(i), i == 11 and back.set())
        src.prefetch(22, -1, 12)
        assert back.wait(10)
        assert ready == list(range(19, 10, -1))
    finally:
        src.close()


def test_truncated_video_gives_the_decodable_frames_and_says_so(take: Path,
                                                               tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(take.read_bytes()[: take.stat().st_size // 2])
    src = FrameSource(cut, proxy_dir=tmp_path / "px")
    try:
        assert src.wait_ready(30)
        assert src.error and ("truncated" in src.error or "damaged" in src.error)
        assert 0 < src.frame_count < 40
        last = src.frame_count - 1
        assert decode_number(bgrx_to_rgb(src.get(last))) == last
    finally:
        src.close()


def test_missing_and_garbage_files_raise_readable_errors(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="missing"):
        FrameSource(tmp_path / "nope.mp4", proxy_dir=tmp_path / "px")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(AssetError) as err:
        FrameSource(junk, proxy_dir=tmp_path / "px")
    assert "junk.mp4" in str(err.value)


def test_corrupt_proxy_is_rebuilt(take: Path, tmp_path: Path) -> None:
    px = tmp_path / "px"
    path = proxy_path_for(take, px)
    px.mkdir()
    path.write_bytes(b"CSPROXY1 definitely not a proxy")
    with pytest.raises(AssetError):
        ProxyReader(path)
    src = FrameSource(take, proxy_dir=px)
    try:
        assert src.wait_ready(30) and decode_number(bgrx_to_rgb(src.get(11))) == 11
        assert ProxyReader(path).header.frames == 40
    finally:
        src.close()


def test_build_proxy_header_and_prune(take: Path, tmp_path: Path) -> None:
    px = tmp_path / "px"
    header = build_proxy(take, px / "a.csproxy")
    assert (header.width, header.height, header.frames, header.damaged) == (160, 96, 40, False)
    assert header.fps == pytest.approx(16.0)
    build_proxy(take, px / "b.csproxy")
    size = (px / "a.csproxy").stat().st_size
    removed = prune_proxies(px, max_bytes=size + 10, keep=px / "a.csproxy")
    assert removed == 1 and (px / "a.csproxy").exists() and not (px / "b.csproxy").exists()
    assert not list(px.glob("*.tmp"))


def test_thumbnail_is_the_middle_frame(take: Path, tmp_path: Path) -> None:
    thumb = read_thumbnail(take, 0.5, max_side=80, proxy_dir=tmp_path / "none")
    assert max(thumb.shape[:2]) == 80
    assert decode_number(thumb) == 20  # round(39 * 0.5)
    expected = frame_pixels(20, 160, 96)
    assert expected.shape == (96, 160, 3)


def test_a_corrupt_frame_in_the_proxy_is_a_readable_error(take: Path, tmp_path: Path) -> None:
    px = tmp_path / "px"
    first = FrameSource(take, proxy_dir=px)
    assert first.wait_ready(30)
    first.close()
    path = proxy_path_for(take, px)
    reader = ProxyReader(path)
    a, b = reader.offsets[5], reader.offsets[6]
    reader.close()
    data = bytearray(path.read_bytes())
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))
    src = FrameSource(take, proxy_dir=px, cache=FrameCache(0))
    try:
        assert src.proxy_ready
        with pytest.raises(AssetError, match="frame 5 of the proxy is corrupt"):
            src.get(5)
        assert decode_number(bgrx_to_rgb(src.get(6))) == 6  # the others still work
    finally:
        src.close()
