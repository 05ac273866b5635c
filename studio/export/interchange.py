"""Editor interchange: OpenTimelineIO ``.otio`` and CMX 3600 ``.edl`` of the exported cut.

Both are built from the same :class:`~studio.export.plan.ExportPlan` as the MP4, so the timeline
an editor opens matches the film frame for frame:

* one video track, one clip per included shot (name = shot title), referencing the take file
  (``file://`` URL by default, or a path relative to the .otio file so a moved project folder
  relinks by itself), ``available_range`` = the whole take, ``source_range`` = the part used;
* a crossfade of N frames is an ``SMPTE_Dissolve`` transition starting at the cut
  (``in_offset`` 0, ``out_offset`` N): the outgoing clip is trimmed by N frames and its last N
  frames serve as the handle the dissolve plays over, exactly as the MP4 blends them;
* drift ranges from ``analysis/<take_id>.json`` become red markers on the clip (in the take's
  frame numbers), with the reasons in the marker name and metadata;
* a still (missing take, "still" policy) is a clip referencing the start image.

The EDL goes through the ``cmx_3600`` adapter (package ``otio-cmx3600-adapter``, pulled in by
``opentimelineio-plugins``); CMX 3600 timecode exists only for SMPTE rates, so the EDL needs an
output rate of 24, 25, 30, 48, 50, 60 (or the NTSC variants). Reel names are cut to 8 characters
by the format; the full path is in the ``* FROM CLIP:`` comment lines editors use to relink.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.model import Project

if TYPE_CHECKING:
    import opentimelineio as otio

    from studio.export.plan import ExportPlan, PlanItem
    from studio.identity.record import AnalysisRecord

# Rates CMX 3600 timecode can express (OTIO refuses anything else).
SMPTE_RATES = (23.976, 24, 25, 29.97, 30, 47.952, 48, 50, 59.94, 60)


def edl_supported(fps: float) -> bool:
    return any(abs(fps - r) < 1e-3 for r in SMPTE_RATES)


def load_analysis_record(folder: Path, take_id: str) -> tuple[AnalysisRecord | None, str | None]:
    """The analysis record of a take and, when its files cannot be read, why (never fatal for
    export: interchange and the report simply say 'not analysed')."""
    from studio.core.errors import AssetError
    from studio.identity.record import read_record

    try:
        return read_record(folder, take_id), None
    except AssetError as exc:
        return None, str(exc)


def _media_url(path: Path, relative_to: Path | None) -> str:
    if relative_to is not None:
        try:
            return Path(os.path.relpath(path, relative_to)).as_posix()
        except ValueError:  # another drive on Windows: no relative path exists
            pass
    return path.resolve().as_uri()


def build_timeline(project: Project, folder: Path, plan: "ExportPlan", *,
                   relative_to: Path | None = None) -> "otio.schema.Timeline":
    """The OTIO timeline of ``plan``. ``relative_to``: write media paths relative to this folder
    (usually the folder of the .otio file) instead of absolute ``file://`` URLs."""
    import opentimelineio as otio

    RT = otio.opentime.RationalTime
    fps = float(plan.fps)
    timeline = otio.schema.Timeline(name=project.name or "Continuity Studio export")
    timeline.global_start_time = RT(0, fps)
    timeline.metadata["continuity_studio"] = {
        "project_id": project.id, "width": plan.width, "height": plan.height, "fps": plan.fps,
        "crossfade": plan.options.crossfade, "mode": plan.mode,
        "skipped_shots": [{"shot_id": it.shot_id, "title": it.shot_title, "why": it.note}
                          for it in plan.skipped],
    }
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    included = plan.included
    fades = plan.crossfades or [0] * max(0, len(included) - 1)
    for k, it in enumerate(included):
        fade_out = fades[k] if k < len(included) - 1 else 0
        track.append(_clip(it, folder, fps, fade_out, relative_to))
        if fade_out:
            track.append(otio.schema.Transition(
                name=f"Dissolve {fade_out}f",
                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=RT(0, fps), out_offset=RT(fade_out, fps)))
    return timeline


def _clip(it: "PlanItem", folder: Path, fps: float, fade_out: int,
          relative_to: Path | None) -> "otio.schema.Clip":
    import opentimelineio as otio

    RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
    assert it.path is not None
    meta: dict[str, Any] = {"shot_id": it.shot_id, "kind": it.kind,
                            "relative_path": _project_relative(it.path, folder)}
    if it.kind == "still":
        # An image held for the shot's duration; the reference covers exactly that.
        ref = otio.schema.ExternalReference(target_url=_media_url(it.path, relative_to),
                                            available_range=TR(RT(0, fps), RT(it.out_frames, fps)))
        clip = otio.schema.Clip(name=it.shot_title, media_reference=ref,
                                source_range=TR(RT(0, fps), RT(it.out_frames - fade_out, fps)))
        clip.metadata["continuity_studio"] = meta
        return clip
    take, src = it.take, it.source
    assert take is not None and src is not None
    src_rate = float(src.fps)
    ref = otio.schema.ExternalReference(target_url=_media_url(it.path, relative_to),
                                        available_range=TR(RT(0, src_rate),
                                                           RT(src.frames, src_rate)))
    ref.metadata["continuity_studio"] = {"width": src.width, "height": src.height,
                                         "codec": src.codec}
    if Fraction(src.fps) == Fraction(fps):
        used = TR(RT(0, src_rate), RT(it.out_frames - fade_out, src_rate))
    else:
        # Conformed: the clip lasts what it lasts in the film, expressed at the output rate.
        used = TR(RT(0, fps), RT(it.out_frames - fade_out, fps))
    clip = otio.schema.Clip(name=it.shot_title, media_reference=ref, source_range=used)
    meta.update({"take_id": take.id, "seed": take.seed, "backend": take.backend,
                 "model": take.model, "identity_mean": take.identity_mean})
    analysis, problem = load_analysis_record(folder, take.id)
    if problem is not None:
        meta["analysis_error"] = problem
    if analysis is not None:
        summary = analysis.summary
        meta["analysis"] = {"engine": analysis.engine.name,
                            "identity_mean": summary.identity_mean,
                            "identity_min": summary.identity_min,
                            "flagged_fraction": summary.flagged_fraction}
        for rng in summary.drift_ranges:
            start, end, reasons = rng.start, rng.end, list(rng.reasons)
            marker = otio.schema.Marker(
                name="Identity drift" + (f": {', '.join(reasons)}" if reasons else ""),
                # Item markers live in the clip's media time: take frame numbers.
                marked_range=TR(RT(start, src_rate), RT(max(1, end - start + 1), src_rate)),
                color=otio.schema.MarkerColor.RED)
            marker.metadata["continuity_studio"] = {"start_frame": start, "end_frame": end,
                                                    "reasons": reasons}
            clip.markers.append(marker)
    clip.metadata["continuity_studio"] = meta
    return clip


def _project_relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return str(path)


def write_otio(project: Project, folder: Path, plan: "ExportPlan", out_path: Path, *,
               relative: bool = False) -> Path:
    """Write ``out_path`` (.otio JSON) atomically."""
    import opentimelineio as otio

    out_path = Path(out_path).absolute()
    timeline = build_timeline(project, folder, plan,
                              relative_to=out_path.parent if relative else None)
    text = otio.adapters.write_to_string(timeline, adapter_name="otio_json")
    try:
        atomic_write_text(out_path, text)
    except OSError as exc:
        raise StudioError(f"cannot write: {exc.strerror or exc}", out_path) from None
    return out_path


def edl_available() -> bool:
    try:
        import opentimelineio as otio

        return "cmx_3600" in otio.adapters.available_adapter_names()
    except Exception:  # a broken plugin manifest must not break export
        return False


def check_edl(plan: "ExportPlan") -> None:
    """Raise :class:`StudioError` before exporting if an EDL cannot be written."""
    if not edl_available():
        raise StudioError("CMX 3600 EDL needs the 'otio-cmx3600-adapter' package "
                          "(pip install opentimelineio-plugins)")
    if not edl_supported(plan.fps):
        raise StudioError(f"CMX 3600 EDL timecode has no {plan.fps} fps; set the project's "
                          "output rate to 24, 25 or 30 fps for an EDL, or use the .otio file")


def write_edl(project: Project, folder: Path, plan: "ExportPlan", out_path: Path) -> Path:
    """Write a CMX 3600 EDL of the cut (absolute media paths in the clip comments)."""
    import opentimelineio as otio

    check_edl(plan)
    out_path = Path(out_path).absolute()
    timeline = build_timeline(project, folder, plan)
    try:
        text = otio.adapters.write_to_string(timeline, adapter_name="cmx_3600",
                                             rate=float(plan.fps), style="avid")
    except Exception as exc:  # the adapter raises plain exceptions for what it cannot express
        raise StudioError(f"cannot write an EDL of this cut: {exc}", out_path) from None
    try:
        atomic_write_text(out_path, text)
    except OSError as exc:
        raise StudioError(f"cannot write: {exc.strerror or exc}", out_path) from None
    return out_path
