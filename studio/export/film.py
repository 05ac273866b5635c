"""Render an :class:`~studio.export.plan.ExportPlan` into one H.264 MP4.

Two paths, chosen by the plan:

* **copy** – the takes' compressed packets are remuxed into one file with rebased timestamps.
  Lossless and limited by disk speed.
* **reencode** – every take is decoded (on a helper thread), conformed to the output size by a
  libavfilter graph (swscale bicubic + ``pad``: letterbox or pillarbox, never stretched) and to
  the output frame rate by nearest-earlier frame sampling, optionally crossfaded (libavfilter
  ``mix``) and burnt in (shot name and record timecode, drawn with numpy: measured faster than a
  filter graph), and encoded by
  :func:`studio.media.video.encode_video` (libx264, yuv420p, BT.709 tags, constant frame rate,
  ``faststart``). A take already at the output size goes from the decoder to the encoder
  untouched.

Frames stay Y'CbCr end to end (no RGB round trip) so colours are not re-matrixed. Both paths write
to a temp file beside the target and rename it into place only when complete; cancel or an error
removes the temp file.
"""

from __future__ import annotations

import errno
import math
import queue
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.core.atomic import atomic_output
from studio.core.errors import AssetError, StudioError
from studio.core.model import Project
from studio.core.tasks import CancelledFn, ProgressFn, ProgressMeter
from studio.export.plan import ExportOptions, ExportPlan, PlanItem, fit_size, plan_export
from studio.export.targets import check_outputs, folder_error, prepare_folders
from studio.media.video import (BT709, TEMP_SUFFIX, TV_RANGE, encode_video, open_output,
                                timecode, write_error)

if TYPE_CHECKING:
    import av
    import numpy as np


@dataclass(frozen=True)
class ExportResult:
    path: Path
    mode: Literal["copy", "reencode"]
    frames: int
    duration_s: float
    seconds: float  # wall time of the export
    plan: ExportPlan
    notes: tuple[str, ...] = ()


def export_film(project: Project, folder: Path, out_path: Path, options: ExportOptions | None = None,
                *, plan: ExportPlan | None = None, on_progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None) -> ExportResult:
    """Write the film to ``out_path``. Raises :class:`StudioError` (naming the file) on bad
    input and :class:`~studio.core.tasks.Cancelled` when ``cancelled()`` turns true; in both
    cases nothing is left at ``out_path`` or beside it."""
    folder = Path(folder)
    plan = plan or plan_export(project, folder, options)
    out_path = Path(out_path).absolute()
    if not plan.included:
        raise StudioError("nothing to export: no shot has a usable take"
                          + (" (use the 'still' policy to hold start images)"
                             if plan.options.missing == "skip" and plan.items else ""))
    # Never over the project or an input; the folder must take files (read-only is said now,
    # not after minutes of encoding); killed exports' temp files there are cleaned up.
    check_outputs(folder, [out_path], plan_inputs(plan))
    prepare_folders([out_path])
    t0 = time.perf_counter()
    notes: list[str] = []
    mode = plan.mode
    try:
        if mode == "copy":
            try:
                atomic_output(out_path,
                              lambda tmp: _remux(plan, tmp, out_path, on_progress, cancelled),
                              suffix=TEMP_SUFFIX)
            except _NeedsReencode as exc:
                notes.append(f"copy path abandoned ({exc}); re-encoded instead")
                mode = "reencode"
        if mode == "reencode":
            meter = ProgressMeter(plan.total_frames, "encoding", on_progress, cancelled)
            # closing(): an encoder failure stops the decode threads now, not at garbage
            # collection.
            with closing(_film_frames(plan, meter)) as frames:
                encode_video(out_path, frames, plan.fps, plan.width, plan.height,
                             crf=plan.options.crf, preset=plan.options.preset)
    except OSError as exc:  # temp-file creation, fsync or rename of the output
        raise output_error(exc, out_path) from None
    return ExportResult(out_path, mode, plan.total_frames, plan.duration_s,
                        time.perf_counter() - t0, plan, tuple(notes))


def plan_inputs(plan: ExportPlan) -> list[Path]:
    """Every file the export reads (takes, start images): no output may be one of them."""
    return [it.path for it in plan.included if it.path is not None]


def write_conformed_media(plan: ExportPlan, items: list[PlanItem], *,
                          on_progress: ProgressFn | None = None,
                          cancelled: CancelledFn | None = None) -> list[Path]:
    """Write ``item.media`` for each item: its take at the film's rate and size, the very frames
    the film shows for that shot (before dissolves and burn-in; an editor's dissolve needs the
    whole clip as its handle). Atomic and cancellable like the film."""
    total = sum(it.out_frames for it in items)
    meter = ProgressMeter(total, "conforming", on_progress, cancelled)
    written: list[Path] = []

    def counted(frames: Iterator["av.VideoFrame"]) -> Iterator["av.VideoFrame"]:
        for frame in frames:
            yield frame
            meter.step()

    prepare_folders([it.media for it in items if it.media is not None])
    for it in items:
        assert it.media is not None
        meter.message = it.shot_title
        try:
            with closing(_item_frames(it, plan)) as frames:
                encode_video(it.media, counted(frames), plan.fps, plan.width, plan.height,
                             crf=plan.options.crf, preset=plan.options.preset)
        except OSError as exc:  # temp-file creation, fsync or rename of the copy
            raise output_error(exc, it.media) from None
        written.append(it.media)
    return written


# -- copy path -------------------------------------------------------------------------------

class _NeedsReencode(Exception):
    """The streams turned out not to be joinable as they are (e.g. decode-order clash)."""


def _remux(plan: ExportPlan, tmp: Path, out_path: Path, on_progress: ProgressFn | None,
           cancelled: CancelledFn | None) -> None:
    """Join the takes' packets into one MP4; timestamps rebased so each take starts where the
    previous one ended (constant frame duration). Read errors name the take, write errors
    (a full disk) name ``out_path``: the two are never mixed up."""
    import av

    items = plan.included
    meter = ProgressMeter(plan.total_frames, "copying", on_progress, cancelled)
    out = open_output(tmp)
    ok = False

    def mux(pkt: Any) -> None:
        try:
            out.mux(pkt)
        except (av.error.FFmpegError, OSError) as exc:
            raise _WriteFailed(exc) from None

    try:
        assert items[0].path is not None
        try:
            with av.open(str(items[0].path)) as first:
                ostream = out.add_stream_from_template(first.streams.video[0])
        except av.error.FFmpegError as exc:
            raise AssetError(f"take video is damaged: {exc} (active take of shot "
                             f"{items[0].shot_title!r})", items[0].path) from None
        tb = items[0].source.time_base if items[0].source else Fraction(1, plan.fps * 1000)
        ostream.time_base = tb
        frame_ticks = Fraction(1, plan.fps) / tb  # one frame in time-base ticks
        offset_frames = 0
        last_dts: int | None = None
        for it in items:
            assert it.path is not None and it.source is not None
            meter.message = it.shot_title
            count = 0
            try:
                with av.open(str(it.path)) as inp:
                    stream = inp.streams.video[0]
                    base = round(offset_frames * frame_ticks)
                    for pkt in inp.demux(stream):
                        if pkt.dts is None or not pkt.size:
                            continue  # the demuxer's flush packet
                        pts = pkt.pts if pkt.pts is not None else pkt.dts
                        pkt.pts = pts + base
                        pkt.dts = pkt.dts + base
                        if last_dts is not None and pkt.dts <= last_dts:
                            raise _NeedsReencode(f"decode order clashes at {it.shot_title!r}")
                        last_dts = pkt.dts
                        pkt.stream = ostream
                        mux(pkt)
                        count += 1
                        meter.step()
            except _WriteFailed as exc:
                raise write_error(exc.cause, out_path) from None
            except av.error.FFmpegError as exc:
                raise AssetError(f"take video is damaged: {exc} (active take of shot "
                                 f"{it.shot_title!r})", it.path) from None
            if count < it.source.frames:
                raise AssetError(f"take video is damaged: {count} of {it.source.frames} "
                                 f"frames readable (active take of shot {it.shot_title!r})",
                                 it.path)
            offset_frames += it.source.frames
        meter.emit("finishing")
        try:  # the trailer (and faststart's rewrite) is a write too: a full disk shows here
            out.close()
        except (av.error.FFmpegError, OSError) as exc:
            raise write_error(exc, out_path) from None
        finally:
            ok = True  # closed (or failed closing): never closed twice
    finally:
        if not ok:
            try:
                out.close()
            except Exception:  # the first error is the one to report
                pass


class _WriteFailed(Exception):
    """A write to the output failed while a take was being read (kept apart from read errors)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def output_error(exc: OSError, path: Path) -> StudioError:
    """A failed write of an export output: a read-only or unwritable folder gets the suggestion,
    a full disk is a full disk, on the file being written."""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return folder_error(exc, path.parent)
    return write_error(exc, path)


# -- re-encode path: filter graphs -----------------------------------------------------------

class _Graph:
    """A libavfilter graph with buffer sources and one sink, run a frame at a time."""

    def __init__(self) -> None:
        import av.filter

        self.graph = av.filter.Graph()
        self.sources: list[Any] = []
        self.sink: Any = None

    def source(self, width: int, height: int, pix_fmt: str, fps: int | Fraction = 1, *,
               colorspace: str = "unknown", color_range: str = "unknown") -> Any:
        src = self.graph.add("buffer", video_size=f"{width}x{height}", pix_fmt=pix_fmt,
                             time_base=str(1 / Fraction(fps)), frame_rate=str(Fraction(fps)),
                             pixel_aspect="1/1", colorspace=colorspace, range=color_range)
        self.sources.append(src)
        return src

    def add(self, name: str, *inputs: Any, **options: Any) -> Any:
        """A filter fed by ``inputs``, one per input pad."""
        node = self.graph.add(name, **{k: str(v) for k, v in options.items()})
        for pad, src in enumerate(inputs):
            src.link_to(node, 0, pad)
        return node

    def finish(self, last: Any) -> "_Graph":
        self.sink = self.add("buffersink", last)
        self.graph.configure()
        return self

    def run(self, *frames: "av.VideoFrame") -> list["av.VideoFrame"]:
        """Push one frame into each source, return what comes out."""
        import av

        for src, frame in zip(self.sources, frames):
            src.push(frame)
        out = []
        while True:
            try:
                out.append(self.sink.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out


# Every frame of the film is tagged BT.709 limited range (what the encoder writes), so the
# dissolve graph declares that and never sees a frame that differs.
_FILM_TAGS = {"colorspace": "bt709", "color_range": "tv"}


def _tags(frame: "av.VideoFrame") -> dict[str, str]:
    """The buffer-source colour options that match a frame (so the graph never re-inits)."""
    return {"colorspace": str(int(frame.colorspace)), "color_range": str(int(frame.color_range))}


class _Conformer:
    """Source frames → output-sized yuv420p frames: one libavfilter pass (swscale scale and
    format conversion, then ``pad`` to a limited-range black canvas). Frames already at the
    output size in yuv420p pass through untouched."""

    def __init__(self, plan: ExportPlan, *, flags: str = "bicubic", **scale: str) -> None:
        self.width, self.height = plan.width, plan.height
        self.flags, self.scale = flags, scale
        self._graph: _Graph | None = None

    def __call__(self, frame: "av.VideoFrame") -> "av.VideoFrame":
        if ((frame.width, frame.height) != (self.width, self.height)
                or frame.format.name != "yuv420p"):
            if self._graph is None:
                self._graph = self._build(frame)
            (frame,) = self._graph.run(frame)
        frame.colorspace, frame.color_range = BT709, TV_RANGE
        return frame

    def _build(self, frame: "av.VideoFrame") -> _Graph:
        w, h, x, y = fit_size(frame.width, frame.height, self.width, self.height)
        g = _Graph()
        node = g.source(frame.width, frame.height, frame.format.name, **_tags(frame))
        node = g.add("scale", node, w=w, h=h, flags=self.flags, **self.scale)
        node = g.add("format", node, pix_fmts="yuv420p")
        if (w, h) != (self.width, self.height):
            node = g.add("pad", node, w=self.width, h=self.height, x=x, y=y, color="black")
        return g.finish(node)


class _Dissolve:
    """A linear dissolve over ``frames`` frames in Y'CbCr, as editors' default dissolve: output
    frame i is ``(1 - a) × outgoing + a × incoming`` with ``a = (i + 1) / (frames + 1)``
    (libavfilter ``mix``, its weights set per frame; it works on yuv420p as it is, where
    ``xfade`` would convert to 4:4:4 and back)."""

    def __init__(self, plan: ExportPlan, frames: int) -> None:
        g = _Graph()
        a = g.source(plan.width, plan.height, "yuv420p", plan.fps, **_FILM_TAGS)
        b = g.source(plan.width, plan.height, "yuv420p", plan.fps, **_FILM_TAGS)
        self.mixer = g.add("mix", a, b, inputs=2, weights="1 0")
        self.graph = g.finish(self.mixer)
        self.frames, self.index = frames, 0
        self.time_base = Fraction(1, plan.fps)

    def mix(self, outgoing: "av.VideoFrame", incoming: "av.VideoFrame") -> "av.VideoFrame":
        alpha = (self.index + 1) / (self.frames + 1)
        self.mixer.process_command("weights", f"{1 - alpha:.6f} {alpha:.6f}")
        for f in (outgoing, incoming):
            f.pts, f.time_base = self.index, self.time_base
        self.index += 1
        (out,) = self.graph.run(outgoing, incoming)
        return out


def _plane(plane: Any) -> "np.ndarray":
    """A writable numpy view of one plane of a frame (line padding cut off)."""
    import numpy as np

    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:plane.height,
                                                                        :plane.width]


class _BurnIn:
    """Shot name (top left) and record timecode (bottom left) in white on a darkened box (luma
    × 0.35) whose chroma is neutral, whatever the picture, drawn with numpy into a copy of the
    frame. The one hand-written pixel operation left: measured ~4× faster than the same burn-in
    as a libavfilter graph (``split``/``crop``/``lutyuv``/``overlay``; PyAV's FFmpeg has no
    ``drawtext``), see docs/EXPORT.md."""

    def __init__(self, plan: ExportPlan) -> None:
        from PIL import ImageFont

        self.width, self.height, self.fps = plan.width, plan.height, plan.fps
        self.size = max(10, self.height // 24)
        self.pad = max(2, self.size // 4) // 2 * 2
        try:
            self.font: Any = ImageFont.load_default(size=self.size)
        except TypeError:  # Pillow without FreeType: fixed bitmap font
            self.font = ImageFont.load_default()
        self._cache: dict[str, Any] = {}

    def _mask(self, text: str) -> "np.ndarray":
        """The text's coverage (0..1) over its box, even-sized (chroma is subsampled by 2)."""
        import numpy as np
        from PIL import Image, ImageDraw

        cached = self._cache.get(text)
        if cached is not None:
            return cached
        _, _, x1, y1 = self.font.getbbox(text)
        w = min(self.width - 2 * self.pad, x1 + self.pad * 2)
        h = min(self.height // 2, (y1 + self.pad * 2 + 1) // 2 * 2)
        img = Image.new("L", (max(2, w // 2 * 2), h), 0)
        ImageDraw.Draw(img).text((self.pad, self.pad), text, fill=255, font=self.font)
        mask = np.asarray(img, dtype=np.float32) / 255.0
        if len(self._cache) > 64:  # timecodes never repeat; titles do
            self._cache.clear()
        self._cache[text] = mask
        return mask

    def _draw(self, planes: list["np.ndarray"], mask: "np.ndarray", x: int, y: int) -> None:
        import numpy as np

        luma, cb, cr = planes
        h, w = mask.shape
        box = luma[y:y + h, x:x + w].astype(np.float32) * 0.35
        luma[y:y + h, x:x + w] = (box * (1.0 - mask) + 235.0 * mask + 0.5).astype(np.uint8)
        cb[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = 128
        cr[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = 128

    def apply(self, frame: "av.VideoFrame", title: str, index: int) -> "av.VideoFrame":
        """A new frame: ``frame`` may be shown again (a held still, a repeated source frame) and
        its buffer may be one the decoder still references."""
        import av

        out = av.VideoFrame(frame.width, frame.height, "yuv420p")
        planes = [_plane(p) for p in out.planes]
        for dst, src in zip(planes, frame.planes):
            dst[:] = _plane(src)
        out.colorspace, out.color_range = BT709, TV_RANGE
        m = self.pad
        self._draw(planes, self._mask(title), m, m)
        tc = self._mask(timecode(index, self.fps))
        self._draw(planes, tc, m, (self.height - tc.shape[0] - m) // 2 * 2)
        return out


# -- re-encode path: frames ------------------------------------------------------------------

# The decoder runs on its own thread beside a CPU-bound encoder, so frame threading buys nothing
# and costs CPU (measured: 3 % more for the whole export on 2 cores); slice threads still decode
# multi-slice takes in parallel.
_DECODE_THREADS = "SLICE"


def _decode_frames(path: Path) -> Generator["av.VideoFrame", None, None]:
    """Decode a take in a helper thread (PyAV releases the GIL while decoding) so decoding
    overlaps the encoder; errors surface as :class:`AssetError` naming the file."""
    import av

    q: queue.Queue[Any] = queue.Queue(maxsize=8)
    stop = threading.Event()
    done = object()

    def worker() -> None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = _DECODE_THREADS
                for frame in container.decode(stream):
                    while not stop.is_set():
                        try:
                            q.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except av.error.FFmpegError as exc:
            q.put(AssetError(f"take video is damaged: {exc}", path))
            return
        except OSError as exc:
            q.put(AssetError(f"cannot read take video: {exc}", path))
            return
        q.put(done)

    t = threading.Thread(target=worker, name="export-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def _still_frame(path: Path, plan: ExportPlan) -> "av.VideoFrame":
    """The start image fitted into the output (letterboxed), converted with BT.709."""
    import av
    import numpy as np

    from studio.media.images import load_rgb_image

    img = load_rgb_image(path)  # EXIF orientation, CMYK, 16-bit… handled there
    rgb = av.VideoFrame.from_ndarray(np.asarray(img, dtype=np.uint8), format="rgb24")
    conform = _Conformer(plan, flags="lanczos", out_color_matrix="bt709", out_range="tv")
    return conform(rgb)


def _item_frames(it: PlanItem, plan: ExportPlan) -> Iterator["av.VideoFrame"]:
    """Exactly ``it.out_frames`` output-sized yuv420p frames for one plan item."""
    if it.kind == "still":
        assert it.path is not None
        still = _still_frame(it.path, plan)
        for _ in range(it.out_frames):
            yield still
        return
    assert it.path is not None and it.source is not None
    ratio = Fraction(it.source.rate) / plan.fps  # source frames per output frame
    decoded = _decode_frames(it.path)
    try:  # close the decoder thread whether the take ends, fails or the export is cancelled
        yield from _sample(decoded, it, _Conformer(plan), ratio)
    except AssetError as exc:
        raise AssetError(f"{exc.problem} (active take of shot {it.shot_title!r})",
                         exc.path) from None
    finally:
        decoded.close()


def _sample(decoded: Iterator["av.VideoFrame"], it: PlanItem, conform: _Conformer,
            ratio: Fraction) -> Iterator["av.VideoFrame"]:
    """Pick (repeat or drop) decoded frames so the take lasts ``it.out_frames`` frames."""
    assert it.source is not None and it.path is not None
    out_index = 0
    src_index = -1
    frame: Any = None
    for src_index, frame in enumerate(decoded):
        converted = None
        # Output frame j shows the source frame on screen at time j / fps_out.
        while out_index < it.out_frames and math.floor(out_index * ratio) == src_index:
            if converted is None:
                converted = conform(frame)
            yield converted
            out_index += 1
        if out_index >= it.out_frames:
            break
    if out_index < it.out_frames:
        if frame is None or src_index + 1 < it.source.frames:
            raise AssetError(f"take video is damaged: only {src_index + 1} of "
                             f"{it.source.frames} frames decode", it.path)
        # Rounding of the conformed length can ask for one frame past the end: hold the last.
        last = conform(frame)
        while out_index < it.out_frames:
            yield last
            out_index += 1


def _film_frames(plan: ExportPlan, meter: ProgressMeter) -> Iterator["av.VideoFrame"]:
    """Every frame of the film in order, crossfades and burn-in applied; counts progress (and
    so checks the cancel flag) after each frame the encoder has taken."""
    items = plan.included
    fades = plan.crossfades or [0] * (len(items) - 1)
    burn = _BurnIn(plan) if plan.options.burn_in else None
    index = 0
    held: list[av.VideoFrame] = []  # the tail of the previous shot, dissolved into this one
    for k, it in enumerate(items):
        meter.message = it.shot_title
        fade_in = fades[k - 1] if k > 0 else 0
        fade_out = fades[k] if k < len(items) - 1 else 0
        dissolve = _Dissolve(plan, fade_in) if fade_in else None
        tail_start = it.out_frames - fade_out
        tail: list[av.VideoFrame] = []
        # closing(): a cancel stops this take's decode thread now, not at garbage collection.
        with closing(_item_frames(it, plan)) as frames:
            for i, frame in enumerate(frames):
                if dissolve is not None and i < fade_in:
                    frame = dissolve.mix(held[i], frame)
                if i >= tail_start:
                    tail.append(frame)
                    continue
                if burn is not None:
                    frame = burn.apply(frame, it.shot_title, index)
                yield frame
                index += 1
                meter.step()
        held = tail  # the last shot holds none (fade_out is 0 for it)
    meter.emit("finishing")
