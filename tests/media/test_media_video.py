"""The one H.264 writer and the one probe: atomic files, BT.709 tags, x264 frame threads."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from studio.core.errors import AssetError, StudioError
from studio.media.video import VideoWriter, encode_video, iter_frames, probe, timecode, write_video


def _frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.full((h, w, 3), (40 + 10 * i, 90, 160), np.uint8)
        f[:, (3 * i) % (w - 4):(3 * i) % (w - 4) + 4] = 250
        out.append(f)
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writer_renames_into_place_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "takes" / "a.mp4"
    with VideoWriter(out, 16, 64, 48, preset="ultrafast") as w:
        for f in _frames(10):
            w.write(f)
        assert not out.exists()  # still under its temp name
    assert out.is_file() and not _leftovers(out.parent) and w.frames_written == 10
    info = probe(out)
    assert (info.width, info.height, info.frames, info.codec, info.pix_fmt) == (
        64, 48, 10, "h264", "yuv420p")
    assert info.rate == Fraction(16) and info.fps == 16.0 and info.duration_s == 10 / 16
    assert info.colors == (1, 1, 1) and info.extradata and info.time_base
    # libx264 frame threads, as the ffmpeg command-line tool uses (not PyAV's sliced default).
    assert b"sliced_threads=0" in out.read_bytes()
    decoded = np.stack(list(iter_frames(out)))
    assert decoded.shape == (10, 48, 64, 3)
    assert np.abs(decoded.astype(int) - np.stack(_frames(10)).astype(int)).mean() < 6


def test_writer_leaves_nothing_on_error_or_bad_settings(tmp_path: Path) -> None:
    out = tmp_path / "b.mp4"
    with pytest.raises(RuntimeError, match="boom"), \
            VideoWriter(out, 16, 64, 48, preset="ultrafast") as w:
        w.write(_frames(1)[0])
        raise RuntimeError("boom")
    assert not out.exists() and not _leftovers(tmp_path)
    # x264 refuses the preset when the encoder opens, in the writer's thread: raised here.
    with pytest.raises(StudioError, match="encoding failed"), \
            VideoWriter(out, 16, 64, 48, preset="warp") as w:
        for f in _frames(3):
            w.write(f)
    assert not out.exists() and not _leftovers(tmp_path)
    with pytest.raises(ValueError, match="even"):
        VideoWriter(out, 16, 63, 48)
    with pytest.raises(ValueError, match="stream is 64x48"), VideoWriter(out, 16, 64, 48) as w:
        w.write(np.zeros((10, 10, 3), np.uint8))
    assert not out.exists() and not _leftovers(tmp_path)


def test_encode_video_takes_decoded_frames_and_stops_on_the_callers_error(tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.mp4", _frames(6), 16, preset="ultrafast")
    with av.open(str(src)) as c:
        frames = list(c.decode(video=0))
    assert encode_video(tmp_path / "copy.mp4", frames, 16, 64, 48, preset="ultrafast") == 6
    assert probe(tmp_path / "copy.mp4").frames == 6

    def failing():
        yield frames[0]
        raise KeyError("cancelled by the caller")

    with pytest.raises(KeyError):
        encode_video(tmp_path / "x.mp4", failing(), 16, 64, 48, preset="ultrafast")
    assert not (tmp_path / "x.mp4").exists() and not _leftovers(tmp_path)


def test_probe_names_the_file_and_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="take video is missing") as err:
        probe(tmp_path / "nope.mp4", what="take video")
    assert str(tmp_path / "nope.mp4") in str(err.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 20)
    with pytest.raises(AssetError, match="cannot be opened"):
        probe(junk)


def test_timecode() -> None:
    assert timecode(0, 16) == "00:00:00:00"
    assert timecode(17, 16) == "00:00:01:01"
    assert timecode(16 * 3600 + 16 * 61 + 5, 16) == "01:01:01:05"
    assert timecode(30, 29.97) == "00:00:01:00"  # non-drop-frame at the rounded rate
