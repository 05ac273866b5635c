"""Video files through PyAV: probing, frame reading, and the one H.264 writer of the app.

Every video the app writes (takes, the exported film) goes through :func:`encode_video`: libx264
yuv420p with BT.709 tags, a constant frame rate and ``faststart``, encoded under a temp name
beside the target by :func:`studio.core.atomic.atomic_output` and renamed into place only when
complete, so a crash, an error or a cancel never leaves a half-written video under the final
name. :class:`VideoWriter` is the same writer for code that pushes frames one at a time.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import atomic_output
from studio.core.errors import AssetError, StudioError
from studio.core.safeio import check_regular

if TYPE_CHECKING:
    import av
    import numpy as np

    Frame = np.ndarray | av.VideoFrame

BT709 = 1  # AVCOL_PRI_BT709 == AVCOL_TRC_BT709 == AVCOL_SPC_BT709
TV_RANGE = 1  # AVCOL_RANGE_MPEG: limited range, what every player expects from H.264
TEMP_SUFFIX = ".part"  # videos being written are named .<stem>.<random>.part
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
MOVIE_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm"})

# Decode budget, checked from the container header before any frame is decoded: far above any
# real take (8K DCI is 8192x4320; a million frames is 17 hours at 16 fps), far below what makes
# a decoder or an analysis allocate gigabytes.
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 4320
MAX_FRAMES = 1_000_000


def check_budget(width: int, height: int, frames: int, path: Path, what: str = "video") -> None:
    """Refuse a video whose header declares more than the decode budget."""
    if width > MAX_SIDE or height > MAX_SIDE:
        raise AssetError(f"{what} is {width}x{height}; at most {MAX_SIDE} pixels a side are read",
                         path)
    if width * height > MAX_PIXELS:
        raise AssetError(f"{what} is {width}x{height}; at most {MAX_PIXELS} pixels a frame "
                         "(8192x4320) are read", path)
    if frames > MAX_FRAMES:
        raise AssetError(f"{what} declares {frames} frames; at most {MAX_FRAMES} are read", path)


def write_error(exc: BaseException, path: Path) -> StudioError:
    """The one readable error for a failed write of ``path``: a full disk is a full disk, on the
    file being written (not blamed on whatever was being read at the time)."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StudioError("disk full (no space left on device) while writing this file", path)
    if code == errno.EROFS:
        return StudioError("the folder is read-only: choose another folder", path)
    if code is not None and code > 0:
        return StudioError(f"cannot write: {os.strerror(code)}", path)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return StudioError(f"cannot write: {text}", path)


@dataclass(frozen=True)
class VideoInfo:
    """A video file's first video stream, as its container header describes it."""

    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    codec: str
    pix_fmt: str
    rate: Fraction  # the exact frame rate (``fps`` is its float)
    profile: str
    extradata: bytes  # the codec configuration (``avcC`` for H.264 in MP4)
    colors: tuple[int, int, int]  # primaries, transfer, matrix (1 = BT.709, 2 = unspecified)
    time_base: Fraction
    container: str = ""  # the demuxer's name: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", …

    @property
    def is_movie(self) -> bool:
        """A movie container (MP4/MOV/MKV), not a still image or a raw stream that FFmpeg also
        opens (a JPEG renamed .mp4 probes as a one-frame "video")."""
        return any(name in MOVIE_CONTAINERS for name in self.container.split(","))


def timecode(index: int, fps: float) -> str:
    """``HH:MM:SS:FF`` (non-drop-frame) for frame ``index`` at the rounded rate ``fps``.

    The one timecode formatter of the app (viewer transport, export burn-in). Not
    ``opentimelineio.opentime.to_timecode``: that refuses rates SMPTE does not define, such as
    the default 16 fps, and writes 29.97 as drop-frame."""
    base = max(1, round(fps))
    ff = index % base
    s = index // base
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"


# -- probing and reading ---------------------------------------------------------------------

_PROBES: dict[tuple[str, int, int], VideoInfo] = {}
_PROBES_MAX = 4096


def probe(path: Path, *, what: str = "video", cached: bool = False) -> VideoInfo:
    """Size, rate, frame count (counted by demuxing when the header does not say), codec
    configuration and colour tags. Raises :class:`AssetError` naming the file, with ``what``
    as the subject ("take video is missing").

    ``cached=True`` remembers the answer per file identity (path, size, modification time):
    the export dialog re-plans on every edit and must not reopen every take each time."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise AssetError(f"{what} is missing", path) from None
    check_regular(path, AssetError)  # a FIFO or a device would block or never end
    if not cached:
        return _probe(path, what)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    info = _PROBES.get(key)
    if info is None:
        info = _probe(path, what)
        if len(_PROBES) >= _PROBES_MAX:
            _PROBES.clear()
        _PROBES[key] = info
    return info


def _probe(path: Path, what: str) -> VideoInfo:
    import av

    container = _open_input(path, what)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise AssetError(f"{what} has no frame rate", path)
        rate = Fraction(rate)
        frames = int(stream.frames or 0)
        declared = frames
        if declared <= 0 and container.duration:  # no count in the header: from its duration
            declared = int(container.duration / 1_000_000 * float(rate))
        check_budget(int(cc.width or 0), int(cc.height or 0), declared, path, what)
        if frames <= 0:
            frames = 0
            for p in container.demux(stream):
                frames += bool(p.size)
                if frames > MAX_FRAMES:  # the header lied or said nothing: stop counting
                    check_budget(int(cc.width), int(cc.height), frames, path, what)
        if frames <= 0 or not cc.width or not cc.height:
            raise AssetError(f"{what} has no frames (damaged?)", path)
        return VideoInfo(
            width=int(cc.width), height=int(cc.height), fps=float(rate), frames=frames,
            duration_s=frames / float(rate), codec=str(cc.name), pix_fmt=str(cc.pix_fmt or ""),
            rate=rate, profile=str(cc.profile or ""), extradata=bytes(cc.extradata or b""),
            colors=(int(cc.color_primaries), int(cc.color_trc), int(cc.colorspace)),
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(0),
            container=str(container.format.name or ""))
    except av.error.FFmpegError as exc:
        raise AssetError(f"{what} is damaged: {exc}", path) from None
    finally:
        container.close()


def _open_input(path: Path, what: str = "video") -> Any:
    import av

    path = Path(path)
    if not path.exists():
        raise AssetError(f"{what} is missing", path)
    check_regular(path, AssetError)  # never hand a FIFO or a device to the demuxer: it blocks
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise AssetError(f"{what} cannot be opened (damaged?): {exc}", path) from None
    if not container.streams.video:
        container.close()
        raise AssetError(f"{what} has no video stream", path)
    cc = container.streams.video[0].codec_context
    try:
        check_budget(int(cc.width or 0), int(cc.height or 0), 0, path, what)
    except AssetError:
        container.close()
        raise
    return container


def iter_frames(path: Path, *, thread_type: str = "AUTO",
                format: str | None = "rgb24") -> Iterator[Any]:
    """Decode every frame as uint8 RGB (``format=None``: the decoded ``av.VideoFrame`` as it
    is, for checks that need no pixels). A truncated file yields what decodes, then raises
    :class:`AssetError` if decoding failed part-way."""
    import av

    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format=format) if format else frame
        except av.error.FFmpegError as exc:
            raise AssetError(f"video is damaged: {exc}", path) from None
    finally:
        container.close()


def check_ends(path: Path, *, what: str = "video") -> None:
    """Decode the first frame and the last GOP of ``path`` (cheap next to a full decode): a file
    cut short or damaged at either end raises :class:`AssetError` naming it."""
    import av

    container = _open_input(path, what)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        where = "first"
        try:
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise AssetError(f"{what} is damaged: its first frame does not decode", path)
            where = "last"
            end = stream.duration or (
                int(container.duration / 1_000_000 / stream.time_base) if container.duration
                and stream.time_base else 0)
            if end:
                container.seek(int(end), stream=stream, backward=True, any_frame=False)
                last = None
                for last in container.decode(stream):
                    pass
                if last is None:
                    raise AssetError(f"{what} is damaged: its last frames do not decode", path)
        except av.error.FFmpegError:
            # The decoder's own words ("Invalid data found…") add nothing for the user.
            raise AssetError(f"{what} is damaged: its {where} frames do not decode (cut short "
                             "or overwritten?)", path) from None
    finally:
        container.close()


# -- writing ---------------------------------------------------------------------------------

def open_output(path: Path, *, format: str = "mp4", faststart: bool = True) -> Any:
    """An output container (``moov`` before ``mdat`` with ``faststart``: plays while it
    downloads); :class:`StudioError` naming the file when it cannot be created."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    try:
        return av.open(str(path), mode="w", format=format, options=options)
    except (av.error.FFmpegError, OSError) as exc:
        raise write_error(exc, path) from None


def _check_size(shape: tuple[int, ...], width: int, height: int) -> None:
    """``shape`` is (height, width) of a frame."""
    if tuple(shape) != (height, width):
        raise ValueError(f"frame is {shape[1]}x{shape[0]}, stream is {width}x{height}")


class _Encoder:
    """One H.264 stream in an open container: BT.709 tags, limited range, pts = frame index
    (constant frame rate), libx264 threaded the way the ffmpeg command-line tool does it."""

    def __init__(self, container: Any, fps: float, width: int, height: int, *, crf: int,
                 preset: str, codec: str, pix_fmt: str, options: dict[str, str] | None,
                 thread_type: str, thread_count: int) -> None:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.time_base = 1 / rate
        opts = {"crf": str(crf), "preset": preset} if codec in ("libx264", "h264", "libx265") else {}
        opts.update(options or {})
        stream.options = opts
        cc = stream.codec_context
        # PyAV opens codecs with slice threading; for libx264 that means sliced threads (and a
        # lookahead cut to a few frames), slower than the frame threads the ffmpeg CLI uses.
        cc.thread_type = thread_type
        cc.thread_count = thread_count
        # BT.709 tags so browsers, QuickTime and editors show the intended colours.
        cc.color_primaries = BT709
        cc.color_trc = BT709
        cc.colorspace = BT709
        cc.color_range = TV_RANGE
        self.container, self.stream = container, stream
        self.width, self.height, self.pix_fmt = width, height, pix_fmt
        # Frame pts count frames. Not stream.time_base: the MP4 muxer replaces that with its own
        # timescale once the header is written, and PyAV rebases frames into the codec's.
        self.time_base = 1 / rate
        self.frames = 0

    def encode(self, frame: "Frame") -> None:
        import av

        if not isinstance(frame, av.VideoFrame):
            _check_size(frame.shape[:2], self.width, self.height)
            frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        else:
            _check_size((frame.height, frame.width), self.width, self.height)
        if frame.format.name != self.pix_fmt:
            # RGB is converted with BT.709 coefficients to match the tags (swscale defaults to
            # BT.601, which would shift colours in every player that honours them).
            frame = frame.reformat(format=self.pix_fmt,
                                   dst_colorspace="ITU709" if frame.format.is_rgb else None)
        frame.pts = self.frames
        frame.time_base = self.time_base
        frame.pict_type = 0  # decoded frames carry I/P/B; leave GOP decisions to the encoder
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def finish(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)


def encode_video(path: Path, frames: Iterable["Frame"], fps: float, width: int, height: int, *,
                 crf: int = 18, preset: str = "medium", codec: str = "libx264",
                 pix_fmt: str = "yuv420p", options: dict[str, str] | None = None,
                 faststart: bool = True, thread_type: str = "AUTO", thread_count: int = 0) -> int:
    """Encode ``frames`` (uint8 RGB arrays (H, W, 3) or ``av.VideoFrame`` of any pixel format,
    all ``width`` × ``height``) to ``path`` atomically; returns the number of frames.

    Anything raised while consuming ``frames`` (a cancel, a damaged source) propagates after
    the partial file is removed; encoder failures become :class:`StudioError`."""
    import av

    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
    path = Path(path)
    fmt = _CONTAINER_FORMATS.get(path.suffix.lower(), "mp4")
    written = [0]

    def write(tmp: Path) -> None:
        container = open_output(tmp, format=fmt, faststart=faststart)
        try:
            try:
                enc = _Encoder(container, fps, width, height, crf=crf, preset=preset,
                               codec=codec, pix_fmt=pix_fmt, options=options,
                               thread_type=thread_type, thread_count=thread_count)
                for frame in frames:
                    enc.encode(frame)
                enc.finish()
            except BaseException:
                with suppress(Exception):  # the first error is the one to report
                    container.close()
                raise
            container.close()
        except av.error.FFmpegError as exc:
            if isinstance(exc, OSError) and exc.errno:  # a write failed (full disk, read-only)
                raise write_error(exc, path) from None
            raise StudioError(f"encoding failed: {exc}", path) from None
        except OSError as exc:
            raise write_error(exc, path) from None
        written[0] = enc.frames

    atomic_output(path, write, suffix=TEMP_SUFFIX)
    return written[0]


def write_video(path: Path, frames: Iterable["Frame"], fps: float, **kw: Any) -> Path:
    """Encode frames whose size the first one gives (see :func:`encode_video`)."""
    it = iter(frames)
    first = next(it)
    h, w = (first.height, first.width) if hasattr(first, "planes") else first.shape[:2]
    encode_video(path, chain([first], it), fps, w, h, **kw)
    return Path(path)


_END, _ABORT = object(), object()


class _Aborted(Exception):
    pass


class VideoWriter:
    """:func:`encode_video` for code that pushes frames one at a time: ``write(frame)`` hands
    the frame to an encoding thread (PyAV releases the GIL while converting and encoding, so the
    caller keeps working), ``close()`` finishes and moves the file into place.

    Use as a context manager; leaving the block with an exception discards the partial file.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, *, crf: int = 18,
                 preset: str = "medium", codec: str = "libx264", pix_fmt: str = "yuv420p",
                 options: dict[str, str] | None = None, faststart: bool = True,
                 thread_type: str = "AUTO", thread_count: int = 0) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        settings = {"crf": crf, "preset": preset, "codec": codec, "pix_fmt": pix_fmt,
                    "options": options, "faststart": faststart, "thread_type": thread_type,
                    "thread_count": thread_count}
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames_written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, args=(fps, settings), name="video-writer", daemon=True)
        self._thread.start()

    def _frames(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise _Aborted()
            yield item

    def _run(self, fps: float, settings: dict[str, Any]) -> None:
        try:
            encode_video(self.path, self._frames(), fps, self.width, self.height, **settings)
        except _Aborted:
            pass
        except BaseException as exc:  # re-raised in the caller's thread
            self._failure = exc

    def _put(self, item: Any) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def write(self, frame: "np.ndarray") -> None:
        """Queue one uint8 RGB frame (H, W, 3); it is copied, so the caller may reuse it."""
        import av

        if self._closed:
            raise ValueError("the writer is closed")
        self._raise_failure()
        _check_size(frame.shape[:2], self.width, self.height)
        self._put(av.VideoFrame.from_ndarray(frame, format="rgb24"))
        self.frames_written += 1

    def close(self) -> Path:
        """Flush, close and move the file into place."""
        if not self._closed:
            self._closed = True
            self._put(_END)
            self._thread.join()
            self._raise_failure()
        return self.path

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._put(_ABORT)
            except BaseException:  # the encoder had failed already: nothing more to stop
                pass
            self._thread.join()
            self._failure = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
