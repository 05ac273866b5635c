"""The export plan: what goes into the film, shot by shot, and how.

:func:`plan_export` probes every active take (so a missing or damaged take is named before any
encoding starts) and decides per shot: copy, conform (scale/letterbox, frame-rate change),
re-encode, still or skip, with the reason, plus the crossfade per cut and the mode of the whole
film:

* **copy** – every take is already H.264 yuv420p at the output size and frame rate with the same
  codec configuration (identical ``avcC`` extradata and time base) and BT.709 tags, and there is
  no crossfade, burn-in or still: the packets can be joined as they are.
* **reencode** – anything else.

The MP4 (:mod:`studio.export.film`), the OTIO/EDL (:mod:`studio.export.interchange`) and the
drift report (:mod:`studio.export.report`) all come from this one plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

from studio.core.errors import AssetError, StudioError
from studio.core.model import Project, Shot, Take, preset_size
from studio.core.persistence import resolve_inside
from studio.media.video import BT709, VideoInfo, probe

MissingPolicy = Literal["skip", "still"]


@dataclass(frozen=True)
class ExportOptions:
    crossfade: int = 0  # frames of overlap between consecutive shots
    burn_in: bool = False  # shot name + record timecode drawn into the picture
    missing: MissingPolicy = "skip"  # shots without a usable take: skip, or hold the start image
    force_reencode: bool = False
    preset: str = "medium"  # libx264 preset for the re-encode path
    crf: int = 18
    # Frame rate of the film and the timeline; None: the project's output rate. Another rate
    # conforms every take to it (frames repeated or dropped, durations kept), e.g. 24 fps for
    # an EDL of a 16 fps project (CMX 3600 has no 16 fps timecode).
    fps: int | None = None


# What the plan knows about a take file: the one probe of the app (studio.media.video.probe).
SourceInfo = VideoInfo


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
    # The take conformed to the film's rate, written beside the film for the interchange files
    # (None: they reference the take itself); see :func:`assign_conformed_media`.
    media: Path | None = None
    fps: int = 0  # the film's rate (set by the planner)

    @property
    def needs_conformed_media(self) -> bool:
        """A take at another rate than the film: an editor's timeline at the film's rate needs
        media at that rate, frame for frame what the film shows."""
        return self.kind == "take" and self.source is not None and self.source.rate != self.fps

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
    project_fps: int = 0  # the project's output rate (``fps`` differs when conformed)

    @property
    def conformed(self) -> bool:
        """The film and timeline run at another rate than the project's."""
        return bool(self.project_fps) and self.fps != self.project_fps

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
        conformed = (f" (conformed from the project's {self.project_fps} fps)"
                     if self.conformed else "")
        lines = [f"output {self.width}x{self.height} @ {self.fps} fps{conformed}, "
                 f"{self.total_frames} frames ({self.duration_s:.2f} s), "
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


def output_size(project: Project) -> tuple[int, int]:
    return preset_size(project.output.resolution, project.output.aspect)


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
    if options.fps is not None and not 1 <= options.fps <= 120:
        raise StudioError(f"the export frame rate must be 1 to 120 fps, not {options.fps}")
    folder = Path(folder)
    width, height = output_size(project)
    fps = int(options.fps or project.output.fps)
    items: list[PlanItem] = []
    for shot in project.shots:
        items.append(_plan_shot(shot, project, folder, width, height, fps, options))
    plan = ExportPlan(width, height, fps, options, items, project_fps=int(project.output.fps))
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
    item = PlanItem(shot.id, shot.title or shot.id, "skip", fps=fps)
    take = shot.active_take
    if take is not None:
        path = resolve_inside(folder, take.video)
        try:
            src = probe(path, what="take video", cached=True)
        except AssetError as exc:  # say which shot, so the user knows where to look
            raise AssetError(f"{exc.problem} (active take of shot {item.shot_title!r})",
                             exc.path) from None
        item.kind, item.take, item.path, item.source = "take", take, path, src
        item.out_frames = conformed_frames(src.frames, src.rate, fps)
        if (src.width, src.height) != (width, height):
            w, h, _, _ = fit_size(src.width, src.height, width, height)
            bars = "letterbox" if h < height else "pillarbox" if w < width else "scale"
            item.actions.append(f"scale {src.width}x{src.height} → {w}x{h} ({bars})")
        if src.rate != fps:
            item.actions.append(f"conform {_fmt_fps(src.rate)} → {fps} fps")
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
        if src.rate != plan.fps:
            reasons.append(f"{it.shot_title}: {_fmt_fps(src.rate)} fps")
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


def conformed_media_path(film: Path, item: PlanItem, fps: int) -> Path:
    """Where the conformed copy of ``item``'s take goes: ``<film> media/<take id>-<fps>fps.mp4``
    beside the film. Named by the take id: the EDL's reel name is the file name's first 8
    characters, and take ids are unique."""
    assert item.take is not None
    film = Path(film)
    return film.with_name(f"{film.stem} media") / f"{item.take.id}-{fps}fps.mp4"


def assign_conformed_media(plan: ExportPlan, film: Path) -> list[PlanItem]:
    """Give every included take at another rate than the film a conformed media file beside
    the film (:attr:`PlanItem.media`); returns those items. The interchange files then reference
    media at the timeline's rate whose frames are the film's own."""
    items = [it for it in plan.included if it.needs_conformed_media]
    for it in items:
        it.media = conformed_media_path(film, it, plan.fps)
    return items
