"""Assemble the active takes of a project into one H.264 MP4.

Two paths, chosen by :func:`plan_export`:

* **copy** – every take is already H.264 yuv420p at the output size and frame rate with the same
  codec configuration (identical ``avcC`` extradata) and BT.709 tags, and there is no crossfade,
  burn-in or still: the compressed packets are remuxed into one file with rebased timestamps.
  Lossless and limited by disk speed.
* **reencode** – anything else: every take is decoded, scaled to fit the output size (letterbox or
  pillarbox, never stretched), conformed to the output frame rate by nearest-earlier frame
  sampling, optionally crossfaded and burnt in, and encoded with libx264 (yuv420p, BT.709 tags,
  constant frame rate, ``faststart``).

Frames travel as yuv420p planes end to end (no RGB round trip) so colours are not re-matrixed.
Both paths write to a temp file beside the target and rename it into place only when complete;
cancel or an error removes the temp file.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.core.atomic import atomic_output
from studio.core.errors import AssetError, StudioError
from studio.core.model import Project, Shot, Take, preset_size
from studio.core.persistence import resolve_inside
from studio.core.tasks import CancelledFn, ProgressFn, ProgressMeter

if TYPE_CHECKING:
    import av
    import numpy as np

MissingPolicy = Literal["skip", "still"]
BT709 = 1  # AVCOL_PRI_BT709 == AVCOL_TRC_BT709 == AVCOL_SPC_BT709
_BLACK_YUV = (16, 128, 128)  # limited-range black


@dataclass(frozen=True)
class ExportOptions:
    crossfade: int = 0  # frames of overlap between consecutive shots
    burn_in: bool = False  # shot name + record timecode drawn into the picture
    missing: MissingPolicy = "skip"  # shots without a usable take: skip, or hold the start image
    force_reencode: bool = False
    preset: str = "medium"  # libx264 preset for the re-encode path
    crf: int = 18


@dataclass(frozen=True)
class SourceInfo:
    """What the plan needs to know about a take file (read from its container header)."""

    width: int
    height: int
    fps: Fraction
    frames: int
    codec: str
    pix_fmt: str
    profile: str
    extradata: bytes
    colors: tuple[int, int, int]  # primaries, transfer, matrix
    time_base: Fraction


@dataclass
class PlanItem:
    shot_id: str
    shot_title: str
    kind: Literal["take", "still", "skip"]
    take: Take | None = None
    path: Path | None = None  # the take video, or the start image for a still
    source: SourceInfo | None = None
    out_frames: int = 0  # frames this shot contributes before crossfade overlap
    actions: list[str] = field(default_factory=list)  # "copy", "scale ...", "conform ..."
    note: str = ""

    @property
    def included(self) -> bool:
        return self.kind != "skip"


@dataclass
class ExportPlan:
    width: int
    height: int
    fps: int
    options: ExportOptions
    items: list[PlanItem]
    mode: Literal["copy", "reencode"] = "reencode"
    reasons: list[str] = field(default_factory=list)  # why the copy path is not possible
    crossfades: list[int] = field(default_factory=list)  # overlap per transition, included items

    @property
    def included(self) -> list[PlanItem]:
        return [it for it in self.items if it.included]

    @property
    def skipped(self) -> list[PlanItem]:
        return [it for it in self.items if not it.included]

    @property
    def total_frames(self) -> int:
        return sum(it.out_frames for it in self.included) - sum(self.crossfades)

    @property
    def duration_s(self) -> float:
        return self.total_frames / self.fps

    def summary_lines(self) -> list[str]:
        """The plan in words, one line per shot (for the CLI and the dialog's preview)."""
        lines = [f"output {self.width}x{self.height} @ {self.fps} fps, {self.total_frames} frames "
                 f"({self.duration_s:.2f} s), "
                 + ("joined without re-encoding" if self.mode == "copy" else "re-encoded")]
        if self.mode == "reencode" and self.reasons:
            lines.append("  re-encode because: " + "; ".join(self.reasons))
        for i, it in enumerate(self.items, 1):
            what = {"take": "take", "still": "still", "skip": "SKIPPED"}[it.kind]
            detail = ", ".join(it.actions) if it.actions else ""
            extra = f" – {it.note}" if it.note else ""
            frames = f" {it.out_frames} frames" if it.included else ""
            lines.append(f"  {i:3d}. {it.shot_title}: {what}{frames}"
                         + (f" [{detail}]" if detail else "") + extra)
        return lines


@dataclass(frozen=True)
class ExportResult:
    path: Path
    mode: Literal["copy", "reencode"]
    frames: int
    duration_s: float
    seconds: float  # wall time of the export
    plan: ExportPlan
    notes: tuple[str, ...] = ()


# -- planning --------------------------------------------------------------------------------

def output_size(project: Project) -> tuple[int, int]:
    return preset_size(project.output.resolution, project.output.aspect)


_PROBES: dict[tuple[str, int, int], SourceInfo] = {}
_PROBES_MAX = 4096


def probe_source(path: Path) -> SourceInfo:
    """Read a take's stream parameters; raise :class:`AssetError` naming a missing or
    unreadable file. Results are remembered per file identity (path, size, modification time):
    the export dialog re-plans on every edit and must not reopen every take each time."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise AssetError("take video is missing", path) from None
    if not path.is_file():
        raise AssetError("take video is missing", path)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    info = _PROBES.get(key)
    if info is None:
        info = _probe_source(path)
        if len(_PROBES) >= _PROBES_MAX:
            _PROBES.clear()
        _PROBES[key] = info
    return info


def _probe_source(path: Path) -> SourceInfo:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise AssetError(f"take video cannot be opened (damaged?): {exc}", path) from None
    try:
        if not container.streams.video:
            raise AssetError("take file has no video stream", path)
        stream = container.streams.video[0]
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise AssetError("take video has no frame rate", path)
        frames = int(stream.frames or 0)
        if frames <= 0:
            frames = sum(1 for p in container.demux(stream) if p.size)
        if frames <= 0 or not cc.width or not cc.height:
            raise AssetError("take video has no frames (damaged?)", path)
        return SourceInfo(
            width=int(cc.width), height=int(cc.height), fps=Fraction(rate), frames=frames,
            codec=str(cc.name), pix_fmt=str(cc.pix_fmt or ""), profile=str(cc.profile or ""),
            extradata=bytes(cc.extradata or b""),
            colors=(int(cc.color_primaries), int(cc.color_trc), int(cc.colorspace)),
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(0))
    except av.error.FFmpegError as exc:
        raise AssetError(f"take video is damaged: {exc}", path) from None
    finally:
        container.close()


def conformed_frames(frames: int, fps_in: Fraction | float, fps_out: int) -> int:
    """Frames a clip of ``frames`` at ``fps_in`` lasts at ``fps_out`` (same duration)."""
    fps_in = Fraction(fps_in)
    if fps_in == fps_out:
        return frames
    return max(1, round(frames * Fraction(fps_out) / fps_in))


def fit_size(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """(w, h, x, y): the largest even-sized box of the source aspect inside the output, centred
    on even offsets (chroma is subsampled by 2)."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w = min(dst_w, max(2, int(round(src_w * scale / 2)) * 2))
    h = min(dst_h, max(2, int(round(src_h * scale / 2)) * 2))
    x = (dst_w - w) // 4 * 2
    y = (dst_h - h) // 4 * 2
    return w, h, x, y


def _fmt_fps(fps: Fraction | float) -> str:
    f = float(fps)
    return f"{f:g}" if abs(f - round(f, 3)) < 1e-9 else f"{f:.3f}"


def plan_export(project: Project, folder: Path, options: ExportOptions | None = None) -> ExportPlan:
    """Decide per shot what goes into the film and how. Probes every active take, so a missing
    or damaged take file raises :class:`AssetError` naming it before any encoding starts."""
    options = options or ExportOptions()
    if options.crossfade < 0:
        raise StudioError("crossfade must be 0 or more frames")
    if options.missing not in ("skip", "still"):
        raise StudioError(f"unknown missing-take policy {options.missing!r} (skip or still)")
    folder = Path(folder)
    width, height = output_size(project)
    fps = int(project.output.fps)
    items: list[PlanItem] = []
    for shot in project.shots:
        items.append(_plan_shot(shot, project, folder, width, height, fps, options))
    plan = ExportPlan(width, height, fps, options, items)
    included = plan.included
    # Crossfades: never longer than half of either neighbour, so fades never overlap in a clip.
    plan.crossfades = [min(options.crossfade, a.out_frames // 2, b.out_frames // 2)
                       for a, b in zip(included, included[1:])] if options.crossfade else []
    plan.mode, plan.reasons = _choose_mode(plan)
    for it in included:
        if plan.mode == "copy":
            it.actions = ["copy"]
        elif not it.actions:
            it.actions = ["re-encode"]
    return plan


def _plan_shot(shot: Shot, project: Project, folder: Path, width: int, height: int, fps: int,
               options: ExportOptions) -> PlanItem:
    item = PlanItem(shot.id, shot.title or shot.id, "skip")
    take = shot.active_take
    if take is not None:
        path = resolve_inside(folder, take.video)
        try:
            src = probe_source(path)
        except AssetError as exc:  # say which shot, so the user knows where to look
            raise AssetError(f"{exc.problem} (active take of shot {item.shot_title!r})",
                             exc.path) from None
        item.kind, item.take, item.path, item.source = "take", take, path, src
        item.out_frames = conformed_frames(src.frames, src.fps, fps)
        if (src.width, src.height) != (width, height):
            w, h, _, _ = fit_size(src.width, src.height, width, height)
            bars = "letterbox" if h < height else "pillarbox" if w < width else "scale"
            item.actions.append(f"scale {src.width}x{src.height} → {w}x{h} ({bars})")
        if src.fps != fps:
            item.actions.append(f"conform {_fmt_fps(src.fps)} → {fps} fps")
        return item
    why = "no takes" if not shot.takes else "no active take"
    if options.missing == "still":
        start = shot.start_asset
        if not start and shot.start_reference_id:  # the start image is a bible reference
            found = project.find_reference(shot.start_reference_id)
            start = found[1].asset if found else None
        if start:
            path = resolve_inside(folder, start)
            if not path.is_file():
                raise AssetError(f"start image of shot {shot.title!r} is missing", path)
            item.kind, item.path = "still", path
            item.out_frames = max(1, round(shot.duration_s * fps))
            item.note = f"{why}: start image held for {shot.duration_s:g} s"
            return item
        item.note = f"{why} and no start image"
        return item
    item.note = why
    return item


def _choose_mode(plan: ExportPlan) -> tuple[Literal["copy", "reencode"], list[str]]:
    reasons: list[str] = []
    opts = plan.options
    if opts.force_reencode:
        reasons.append("re-encode requested")
    if any(plan.crossfades):
        reasons.append(f"crossfade of {opts.crossfade} frames")
    if opts.burn_in:
        reasons.append("burn-in")
    included = plan.included
    if not included:
        return "reencode", reasons
    first = next((it.source for it in included if it.source is not None), None)
    for it in included:
        src = it.source
        if it.kind == "still" or src is None:
            reasons.append(f"{it.shot_title}: still image")
            continue
        before = len(reasons)
        if src.codec != "h264":
            reasons.append(f"{it.shot_title}: codec {src.codec}")
        if src.pix_fmt != "yuv420p":
            reasons.append(f"{it.shot_title}: pixel format {src.pix_fmt}")
        if (src.width, src.height) != (plan.width, plan.height):
            reasons.append(f"{it.shot_title}: size {src.width}x{src.height}")
        if src.fps != plan.fps:
            reasons.append(f"{it.shot_title}: {_fmt_fps(src.fps)} fps")
        if src.colors != (BT709, BT709, BT709):
            reasons.append(f"{it.shot_title}: not tagged BT.709")
        if len(reasons) == before and first is not None and src is not first and (
                src.extradata != first.extradata
                or src.time_base != first.time_base):
            reasons.append(f"{it.shot_title}: encoder settings differ from the first take")
    # De-duplicate while keeping order; the first few reasons are enough for the user.
    seen: list[str] = []
    for r in reasons:
        if r not in seen:
            seen.append(r)
    return ("reencode" if seen else "copy"), seen


# -- progress / cancel helpers ---------------------------------------------------------------



# -- the export ------------------------------------------------------------------------------

def export_film(project: Project, folder: Path, out_path: Path, options: ExportOptions | None = None,
                *, plan: ExportPlan | None = None, on_progress: ProgressFn | None = None,
                cancelled: CancelledFn | None = None) -> ExportResult:
    """Write the film to ``out_path``. Raises :class:`StudioError` (naming the file) on bad
    input and :class:`~studio.core.tasks.Cancelled` when ``cancelled()`` turns true; in both cases nothing is
    left at ``out_path`` or beside it."""
    folder = Path(folder)
    plan = plan or plan_export(project, folder, options)
    out_path = Path(out_path).absolute()
    if not plan.included:
        raise StudioError("nothing to export: no shot has a usable take"
                          + (" (use the 'still' policy to hold start images)"
                             if plan.options.missing == "skip" and plan.items else ""))
    for it in plan.included:
        if it.path is not None and it.path.resolve() == out_path.resolve():
            raise StudioError("the output would overwrite one of the takes", out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create the output folder: {exc.strerror or exc}",
                          out_path.parent) from None
    t0 = time.perf_counter()
    notes: list[str] = []
    mode = plan.mode
    if mode == "copy":
        try:
            _atomic_output(out_path, lambda tmp: _remux(plan, tmp, on_progress, cancelled))
        except _NeedsReencode as exc:
            notes.append(f"copy path abandoned ({exc}); re-encoded instead")
            mode = "reencode"
    if mode == "reencode":
        _atomic_output(out_path, lambda tmp: _reencode(plan, tmp, on_progress, cancelled))
    return ExportResult(out_path, mode, plan.total_frames, plan.duration_s,
                        time.perf_counter() - t0, plan, tuple(notes))


def _atomic_output(out_path: Path, write: Callable[[Path], None]) -> None:
    atomic_output(out_path, write, suffix=".part")


class _NeedsReencode(Exception):
    """The streams turned out not to be joinable as they are (e.g. decode-order clash)."""


def _open_output(tmp: Path) -> "av.container.OutputContainer":
    import av

    try:
        return av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
    except (av.error.FFmpegError, OSError) as exc:
        raise StudioError(f"cannot write the output: {exc}", tmp) from None


def _remux(plan: ExportPlan, tmp: Path, on_progress: ProgressFn | None,
           cancelled: CancelledFn | None) -> None:
    """Join the takes' packets into one MP4; timestamps rebased so each take starts where the
    previous one ended (constant frame duration)."""
    import av

    items = plan.included
    meter = ProgressMeter(plan.total_frames, "copying", on_progress, cancelled)
    out = _open_output(tmp)
    ok = False
    try:
        assert items[0].path is not None
        with av.open(str(items[0].path)) as first:
            ostream = out.add_stream_from_template(first.streams.video[0])
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
                        out.mux(pkt)
                        count += 1
                        meter.step()
            except av.error.FFmpegError as exc:
                raise AssetError(f"take video is damaged: {exc} (active take of shot "
                                 f"{it.shot_title!r})", it.path) from None
            if count < it.source.frames:
                raise AssetError(f"take video is damaged: {count} of {it.source.frames} "
                                 f"frames readable (active take of shot {it.shot_title!r})",
                                 it.path)
            offset_frames += it.source.frames
        meter.emit("finishing")
        out.close()
        ok = True
    finally:
        if not ok:
            try:
                out.close()
            except Exception:
                pass


# -- re-encode path --------------------------------------------------------------------------

class _Planes:
    """A yuv420p picture as three writable numpy planes."""

    __slots__ = ("y", "u", "v")

    def __init__(self, y: "np.ndarray", u: "np.ndarray", v: "np.ndarray") -> None:
        self.y, self.u, self.v = y, u, v

    @classmethod
    def black(cls, width: int, height: int) -> "_Planes":
        import numpy as np

        return cls(np.full((height, width), _BLACK_YUV[0], np.uint8),
                   np.full((height // 2, width // 2), _BLACK_YUV[1], np.uint8),
                   np.full((height // 2, width // 2), _BLACK_YUV[2], np.uint8))

    @classmethod
    def from_frame(cls, frame: "av.VideoFrame") -> "_Planes":
        import numpy as np

        w, h = frame.width, frame.height

        def plane(i: int, pw: int, ph: int) -> "np.ndarray":
            p = frame.planes[i]
            buf = np.frombuffer(p, np.uint8).reshape(-1, p.line_size)
            return buf[:ph, :pw].copy()

        return cls(plane(0, w, h), plane(1, w // 2, h // 2), plane(2, w // 2, h // 2))

    def paste(self, src: "_Planes", x: int, y: int) -> None:
        h, w = src.y.shape
        self.y[y:y + h, x:x + w] = src.y
        self.u[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = src.u
        self.v[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = src.v

    def copy(self) -> "_Planes":
        return _Planes(self.y.copy(), self.u.copy(), self.v.copy())

    def to_frame(self) -> "av.VideoFrame":
        import av
        import numpy as np

        h, w = self.y.shape
        arr = np.concatenate([self.y.reshape(-1), self.u.reshape(-1), self.v.reshape(-1)])
        return av.VideoFrame.from_ndarray(arr.reshape(h * 3 // 2, w), format="yuv420p")


def _blend(a: _Planes, b: _Planes, alpha: float) -> _Planes:
    """(1 - alpha) * a + alpha * b, per plane (a linear dissolve, as editors do in Y'CbCr)."""
    import numpy as np

    def mix(pa: "np.ndarray", pb: "np.ndarray") -> "np.ndarray":
        out = pa.astype(np.float32) * (1.0 - alpha) + pb.astype(np.float32) * alpha
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    return _Planes(mix(a.y, b.y), mix(a.u, b.u), mix(a.v, b.v))


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
                stream.thread_type = "AUTO"
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


class _Conformer:
    """Turns source frames into output-sized yuv420p planes (scale to fit, black bars)."""

    def __init__(self, src_w: int, src_h: int, dst_w: int, dst_h: int) -> None:
        self.dst_w, self.dst_h = dst_w, dst_h
        self.w, self.h, self.x, self.y = fit_size(src_w, src_h, dst_w, dst_h)
        self.same = (src_w, src_h) == (dst_w, dst_h)
        self._canvas = None if self.same else _Planes.black(dst_w, dst_h)

    def frame(self, frame: "av.VideoFrame") -> "av.VideoFrame":
        """Fast path without numpy when nothing but scaling/format is needed."""
        if self.same and frame.format.name == "yuv420p":
            return frame
        if self.same:
            return frame.reformat(format="yuv420p")
        return self.planes(frame).to_frame()

    def planes(self, frame: "av.VideoFrame") -> _Planes:
        if self.same:
            f = frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")
            return _Planes.from_frame(f)
        scaled = frame.reformat(width=self.w, height=self.h, format="yuv420p",
                                interpolation="BICUBIC")
        assert self._canvas is not None
        canvas = self._canvas.copy()
        canvas.paste(_Planes.from_frame(scaled), self.x, self.y)
        return canvas


def _still_planes(path: Path, width: int, height: int) -> _Planes:
    """The start image fitted into the output (letterboxed), converted with BT.709."""
    import av
    import numpy as np

    from studio.media.images import load_rgb_image

    img = load_rgb_image(path)
    w, h, x, y = fit_size(img.width, img.height, width, height)
    from PIL import Image

    img = img.resize((w, h), Image.Resampling.LANCZOS)
    rgb = av.VideoFrame.from_ndarray(np.asarray(img, dtype=np.uint8), format="rgb24")
    yuv = rgb.reformat(format="yuv420p", src_colorspace="ITU709", dst_colorspace="ITU709")
    canvas = _Planes.black(width, height)
    canvas.paste(_Planes.from_frame(yuv), x, y)
    return canvas


def _item_frames(it: PlanItem, plan: ExportPlan, need_planes: bool
                 ) -> Iterator["av.VideoFrame | _Planes"]:
    """Exactly ``it.out_frames`` output frames for one plan item."""
    if it.kind == "still":
        assert it.path is not None
        still = _still_planes(it.path, plan.width, plan.height)
        frame = None if need_planes else still.to_frame()
        for _ in range(it.out_frames):
            yield still.copy() if need_planes else frame  # type: ignore[misc]
        return
    assert it.path is not None and it.source is not None
    src = it.source
    conf = _Conformer(src.width, src.height, plan.width, plan.height)
    ratio = Fraction(src.fps) / plan.fps  # source frames per output frame
    decoded = _decode_frames(it.path)
    try:  # close the decoder thread whether the take ends, fails or the export is cancelled
        yield from _sample(decoded, it, conf, ratio, need_planes)
    except AssetError as exc:
        raise AssetError(f"{exc.problem} (active take of shot {it.shot_title!r})",
                         exc.path) from None
    finally:
        decoded.close()


def _sample(decoded: Iterator["av.VideoFrame"], it: PlanItem, conf: "_Conformer", ratio: Fraction,
            need_planes: bool) -> Iterator["av.VideoFrame | _Planes"]:
    """Pick (repeat or drop) decoded frames so the take lasts ``it.out_frames`` frames."""
    assert it.source is not None and it.path is not None
    src = it.source
    out_index = 0
    src_index = -1
    frame: Any = None
    converted: Any = None
    for src_index, frame in enumerate(decoded):
        converted = None
        # Output frame j shows the source frame on screen at time j / fps_out.
        while out_index < it.out_frames and math.floor(out_index * ratio) == src_index:
            if converted is None:
                converted = conf.planes(frame) if need_planes else conf.frame(frame)
            yield converted.copy() if need_planes else converted
            out_index += 1
        if out_index >= it.out_frames:
            break
    if out_index < it.out_frames:
        if frame is None or src_index + 1 < src.frames:
            raise AssetError(f"take video is damaged: only {src_index + 1} of {src.frames} "
                             "frames decode", it.path)
        # Rounding of the conformed length can ask for one frame past the end: hold the last.
        last = conf.planes(frame) if need_planes else conf.frame(frame)
        while out_index < it.out_frames:
            yield last.copy() if need_planes else last
            out_index += 1


class _BurnIn:
    """Shot name (top left) and record timecode (bottom left) drawn on the luma plane over a
    darkened box; chroma in the box is neutralised so the text is white whatever the picture."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        from PIL import ImageFont

        self.fps = fps
        self.size = max(10, height // 24)
        self.pad = max(2, self.size // 4) // 2 * 2
        try:
            self.font: Any = ImageFont.load_default(size=self.size)
        except TypeError:  # Pillow without FreeType: fixed bitmap font
            self.font = ImageFont.load_default()
        self.width, self.height = width, height
        self._cache: dict[str, Any] = {}

    def timecode(self, frame: int) -> str:
        fps = self.fps
        ff = frame % fps
        s = frame // fps
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"

    def _mask(self, text: str) -> "np.ndarray":
        import numpy as np
        from PIL import Image, ImageDraw

        cached = self._cache.get(text)
        if cached is not None:
            return cached
        x0, y0, x1, y1 = self.font.getbbox(text)
        w = min(self.width - 2 * self.pad, x1 + self.pad * 2)
        h = min(self.height // 2, (y1 + self.pad * 2 + 1) // 2 * 2)
        w = max(2, w // 2 * 2)
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).text((self.pad, self.pad), text, fill=255, font=self.font)
        mask = np.asarray(img, dtype=np.float32) / 255.0
        if len(self._cache) > 64:  # timecodes never repeat; titles do
            self._cache.clear()
        self._cache[text] = mask
        return mask

    def _draw(self, planes: _Planes, text: str, x: int, y: int) -> None:
        import numpy as np

        mask = self._mask(text)
        h, w = mask.shape
        roi = planes.y[y:y + h, x:x + w].astype(np.float32) * 0.35
        roi = roi * (1.0 - mask) + 235.0 * mask
        planes.y[y:y + h, x:x + w] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
        planes.u[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = 128
        planes.v[y // 2:(y + h) // 2, x // 2:(x + w) // 2] = 128

    def apply(self, planes: _Planes, title: str, frame_index: int) -> None:
        m = self.pad
        self._draw(planes, title, m, m)
        tc = self.timecode(frame_index)
        th = self._mask(tc).shape[0]
        self._draw(planes, tc, m, (self.height - th - m) // 2 * 2)


class _Encoder:
    """libx264 yuv420p MP4 with BT.709 tags and a constant frame rate (pts = frame index)."""

    def __init__(self, tmp: Path, plan: ExportPlan) -> None:
        self.container = _open_output(tmp)
        rate = Fraction(plan.fps)
        stream = self.container.add_stream("libx264", rate=rate)
        stream.width, stream.height = plan.width, plan.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        stream.options = {"crf": str(plan.options.crf), "preset": plan.options.preset}
        cc = stream.codec_context
        cc.color_primaries = BT709
        cc.color_trc = BT709
        cc.colorspace = BT709
        cc.color_range = 1  # limited ("TV") range, what every player expects from H.264
        self.stream = stream
        # Frame pts count frames. Not stream.time_base: the MP4 muxer replaces that with its own
        # timescale once the header is written, and PyAV rebases frames into the codec's.
        self.time_base = Fraction(1, plan.fps)
        self.index = 0

    def write(self, frame: "av.VideoFrame") -> None:
        frame.pts = self.index
        frame.time_base = self.time_base
        frame.pict_type = 0  # decoded frames carry I/P/B; leave GOP decisions to x264
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.index += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


def _reencode(plan: ExportPlan, tmp: Path, on_progress: ProgressFn | None,
              cancelled: CancelledFn | None) -> None:
    import av

    items = plan.included
    fades = plan.crossfades or [0] * (len(items) - 1)
    burn = _BurnIn(plan.width, plan.height, plan.fps) if plan.options.burn_in else None
    meter = ProgressMeter(plan.total_frames, "encoding", on_progress, cancelled)
    try:
        enc = _Encoder(tmp, plan)
    except av.error.FFmpegError as exc:
        raise StudioError(f"cannot start the H.264 encoder: {exc}") from None
    ok = False
    try:
        held: list[_Planes] = []  # the tail of the previous shot, to be dissolved into this one
        for k, it in enumerate(items):
            meter.message = it.shot_title
            fade_in = fades[k - 1] if k > 0 else 0
            fade_out = fades[k] if k < len(items) - 1 else 0
            need_planes = burn is not None or fade_in > 0 or fade_out > 0
            tail_start = it.out_frames - fade_out
            tail: list[_Planes] = []
            # closing(): a cancel stops this take's decode thread now, not at garbage collection.
            with closing(_item_frames(it, plan, need_planes)) as frames:
                for i, frame in enumerate(frames):
                    if i < fade_in:
                        frame = _blend(held[i], frame, (i + 1) / (fade_in + 1))  # type: ignore[arg-type]
                    if i >= tail_start:
                        tail.append(frame)  # type: ignore[arg-type]
                        continue
                    _emit(enc, frame, burn, it.shot_title, meter)
            held = tail
        # The last shot never holds frames (fade_out is 0 for it).
        meter.emit("finishing")
        enc.close()
        ok = True
    except av.error.FFmpegError as exc:
        raise StudioError(f"encoding failed: {exc}", tmp) from None
    finally:
        if not ok:
            enc.abort()


def _emit(enc: _Encoder, frame: "av.VideoFrame | _Planes", burn: _BurnIn | None, title: str,
          meter: ProgressMeter) -> None:
    if isinstance(frame, _Planes):
        if burn is not None:
            burn.apply(frame, title, enc.index)
        frame = frame.to_frame()
    enc.write(frame)
    meter.step()
