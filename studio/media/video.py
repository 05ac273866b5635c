"""Video files through PyAV: H.264 writing (atomic), probing and frame reading.

Writers encode to a temp file beside the target and rename it into place only when the file is
complete, so a crash or cancel never leaves a half-written video under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import _FILE_MODE, fsync_dir
from studio.core.errors import AssetError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    codec: str
    pix_fmt: str


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Encode uint8 RGB frames (H, W, 3) to an H.264 MP4, atomically.

    Use as a context manager; leaving the block with an exception discards the partial file.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, *, crf: int = 18,
                 preset: str = "medium", codec: str = "libx264", pix_fmt: str = "yuv420p",
                 options: dict[str, str] | None = None, faststart: bool = True) -> None:
        import av

        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix or ".mp4",
                                   dir=self.path.parent)
        os.fchmod(fd, _FILE_MODE)
        os.close(fd)
        self._tmp = Path(tmp)
        self.width, self.height = width, height
        container_opts = {"movflags": "+faststart"} if faststart else {}
        self._container = av.open(str(self._tmp), mode="w", options=container_opts)
        rate = _fps_fraction(fps)
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = pix_fmt
        self._stream.time_base = 1 / rate
        opts = {"crf": str(crf), "preset": preset} if codec in ("libx264", "h264", "libx265") else {}
        opts.update(options or {})
        self._stream.options = opts
        cc = self._stream.codec_context
        # BT.709 tags so browsers, QuickTime and editors show the intended colours.
        for attr, value in (("color_primaries", 1), ("color_trc", 1), ("colorspace", 1),
                            ("color_range", 1)):
            try:
                setattr(cc, attr, value)
            except (AttributeError, TypeError, ValueError):
                pass
        self.frames_written = 0
        self._closed = False

    def write(self, frame: "np.ndarray") -> None:
        import av

        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, "
                             f"stream is {self.width}x{self.height}")
        # Convert with BT.709 coefficients to match the colour tags (swscale defaults to BT.601,
        # which would shift colours in every player that honours the tags).
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format=self._stream.pix_fmt, dst_colorspace="ITU709")
        vf.pts = self.frames_written
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> Path:
        """Flush, close and move the file into place."""
        if self._closed:
            return self.path
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if not self._closed:
            try:
                self._container.close()
            except Exception:
                pass
            self._closed = True
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: Path, frames: Iterable["np.ndarray"], fps: float, **kw: Any) -> Path:
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with VideoWriter(path, fps, w, h, **kw) as writer:
        writer.write(first)
        for f in it:
            writer.write(f)
    return Path(path)


def _open_input(path: Path) -> Any:
    import av

    path = Path(path)
    if not path.is_file():
        raise AssetError("video file is missing", path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise AssetError(f"cannot open video: {exc}", path) from None
    if not container.streams.video:
        container.close()
        raise AssetError("file has no video stream", path)
    return container


def probe(path: Path) -> VideoInfo:
    """Size, rate, frame count (counted by demuxing when the header does not say)."""
    import av

    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(16)
        frames = stream.frames
        if not frames:
            frames = sum(1 for p in container.demux(stream) if p.size)
        duration = frames / float(rate)
        cc = stream.codec_context
        return VideoInfo(cc.width, cc.height, float(rate), int(frames), duration,
                         cc.name, str(cc.pix_fmt or stream.format.name if stream.format else ""))
    except av.error.FFmpegError as exc:
        raise AssetError(f"cannot read video: {exc}", path) from None
    finally:
        container.close()


def iter_frames(path: Path, *, thread_type: str = "AUTO") -> Iterator["np.ndarray"]:
    """Decode every frame as uint8 RGB. A truncated file yields what decodes, then raises
    :class:`AssetError` if decoding failed part-way."""
    import av

    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise AssetError(f"video is damaged: {exc}", path) from None
    finally:
        container.close()


def read_frames(path: Path) -> "np.ndarray":
    import numpy as np

    frames = list(iter_frames(path))
    if not frames:
        raise AssetError("video has no decodable frames", path)
    return np.stack(frames)
