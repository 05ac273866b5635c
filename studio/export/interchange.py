"""Editor interchange: OpenTimelineIO ``.otio``, CMX 3600 ``.edl`` and Final Cut Pro 7 XML
(``.xml``, which Premiere Pro and DaVinci Resolve import) of the exported cut.

All three are built from the same :class:`~studio.export.plan.ExportPlan` as the MP4, so the
timeline an editor opens matches the film frame for frame:

* one video track, one clip per included shot (name = shot title), referencing the take file
  (``file://`` URL by default, or a path relative to the .otio file so a moved project folder
  relinks by itself), ``available_range`` = the whole take, ``source_range`` = the part used;
* a crossfade of N frames is an ``SMPTE_Dissolve`` transition starting at the cut
  (``in_offset`` 0, ``out_offset`` N): the outgoing clip is trimmed by N frames and its last N
  frames serve as the handle the dissolve plays over, exactly as the MP4 blends them;
* drift ranges from ``analysis/<take_id>.json`` become red markers on the clip (in the take's
  frame numbers), with the reasons in the marker name and metadata; only drift ranges (frames
  in the "drift" state): uncertain frames get no marker. The clip's metadata has the take's
  band, frames per state and uncertain share;
* a still (missing take, "still" policy) is a clip referencing the start image;
* the timeline runs at the film's rate; a take at another rate is referenced through its
  conformed copy beside the film (:attr:`PlanItem.media`, written by the export), so every
  source frame number and timecode counts frames of a file at the timeline's rate.

The EDL goes through the ``cmx_3600`` adapter (package ``otio-cmx3600-adapter``, pulled in by
``opentimelineio-plugins``); CMX 3600 timecode exists only for SMPTE rates, so the EDL needs an
output rate of 24, 25, 30, 48, 50, 60 (or the NTSC variants). Reel names are cut to 8 characters
by the format; the full path is in the ``* FROM CLIP:`` comment lines editors use to relink.
FCP 7 XML goes through the ``fcp_xml`` adapter (``otio-fcp-adapter``), which also writes SMPTE
timecode only; :func:`write_fcp_xml` corrects what the adapter gets wrong for a dissolve that
starts at the cut and adds the sequence format.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
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

# -- text that goes into interchange files -----------------------------------------------------

# ANSI/VT100 escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ST) and two-byte escapes.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"
                   r"|\x9b[0-?]*[ -/]*[@-~]")  # and the 8-bit CSI
# Bidirectional overrides reorder what an editor shows (a name that reads as another).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# CMX 3600 lines are read as fixed columns by old systems; comments and titles are kept short.
EDL_NAME_MAX = 60
EDL_MAX_EVENTS = 999


def clean_text(text: object, limit: int | None = None) -> str:
    """``text`` as one line safe in every interchange format: ANSI escapes dropped, control
    characters (C0, C1, DEL), line/paragraph separators and bidi overrides turned into spaces,
    runs of spaces collapsed, cut to ``limit`` characters. A name can then never start a new
    EDL event, break an XML document or recolour a terminal."""
    raw = _ANSI.sub("", str(text))
    chars = [" " if (unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") or c in _BIDI) else c
             for c in raw]
    line = " ".join("".join(chars).split())
    if limit is not None and len(line) > limit:
        line = line[:limit - 1].rstrip() + "…"
    return line


def _clean_tree(value: Any) -> Any:
    """Metadata with every string (keys too) passed through :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_tree(v) for v in value]
    return value


# Rates CMX 3600 timecode can express (OTIO refuses anything else).
SMPTE_RATES = (23.976, 24, 25, 29.97, 30, 47.952, 48, 50, 59.94, 60)


def edl_supported(fps: float) -> bool:
    return any(abs(fps - r) < 1e-3 for r in SMPTE_RATES)


def conform_rate_for(fps: float) -> int:
    """The timecode rate to conform a film at ``fps`` to for an EDL or FCP XML: ``fps`` itself
    when SMPTE has it, else the lowest of 24, 25, 30, 48, 50, 60 at or above it (16 → 24:
    every source frame stays on screen, none is dropped), 60 above that."""
    if edl_supported(fps) and float(fps).is_integer():
        return int(fps)
    return next((r for r in (24, 25, 30, 48, 50, 60) if r >= fps), 60)


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
                   relative_to: Path | None = None,
                   name_limit: int | None = None) -> "otio.schema.Timeline":
    """The OTIO timeline of ``plan``. ``relative_to``: write media paths relative to this folder
    (usually the folder of the .otio file) instead of absolute ``file://`` URLs. Every name and
    metadata string is :func:`clean_text` (cut to ``name_limit`` characters for names)."""
    import opentimelineio as otio

    RT = otio.opentime.RationalTime
    fps = float(plan.fps)
    timeline = otio.schema.Timeline(
        name=clean_text(project.name, name_limit) or "Continuity Studio export")
    timeline.global_start_time = RT(0, fps)
    timeline.metadata["continuity_studio"] = _clean_tree({
        "project_id": project.id, "width": plan.width, "height": plan.height, "fps": plan.fps,
        "crossfade": plan.options.crossfade, "mode": plan.mode,
        "skipped_shots": [{"shot_id": it.shot_id, "title": it.shot_title, "why": it.note}
                          for it in plan.skipped],
    })
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    timeline.tracks.append(track)
    included = plan.included
    fades = plan.crossfades or [0] * max(0, len(included) - 1)
    for k, it in enumerate(included):
        fade_out = fades[k] if k < len(included) - 1 else 0
        track.append(_clip(it, folder, fps, fade_out, relative_to, (plan.width, plan.height),
                           name_limit))
        if fade_out:
            track.append(otio.schema.Transition(
                name=f"Dissolve {fade_out}f",
                transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=RT(0, fps), out_offset=RT(fade_out, fps)))
    return timeline


def _clip(it: "PlanItem", folder: Path, fps: float, fade_out: int, relative_to: Path | None,
          size: tuple[int, int], name_limit: int | None = None) -> "otio.schema.Clip":
    import opentimelineio as otio

    RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
    assert it.path is not None
    name = clean_text(it.shot_title, name_limit) or clean_text(it.shot_id)  # never nameless
    meta: dict[str, Any] = {"shot_id": it.shot_id, "kind": it.kind,
                            "relative_path": _project_relative(it.path, folder)}
    if it.kind == "still":
        # An image held for the shot's duration; the reference covers exactly that.
        ref = otio.schema.ExternalReference(target_url=_media_url(it.path, relative_to),
                                            available_range=TR(RT(0, fps), RT(it.out_frames, fps)))
        clip = otio.schema.Clip(name=name, media_reference=ref,
                                source_range=TR(RT(0, fps), RT(it.out_frames - fade_out, fps)))
        clip.metadata["continuity_studio"] = _clean_tree(meta)
        return clip
    take, src = it.take, it.source
    assert take is not None and src is not None
    if it.media is not None:
        # The conformed copy: the film's frames for this shot, at the film's rate and size.
        media_rate, media_frames = fps, it.out_frames
        ref = otio.schema.ExternalReference(target_url=_media_url(it.media, relative_to),
                                            available_range=TR(RT(0, fps), RT(media_frames, fps)))
        ref.metadata["continuity_studio"] = {
            "width": size[0], "height": size[1], "codec": "h264",
            "conformed_from": _project_relative(it.path, folder),
            "conformed_from_fps": float(src.fps)}
    else:
        media_rate, media_frames = float(src.fps), src.frames
        ref = otio.schema.ExternalReference(target_url=_media_url(it.path, relative_to),
                                            available_range=TR(RT(0, media_rate),
                                                               RT(media_frames, media_rate)))
        ref.metadata["continuity_studio"] = {"width": src.width, "height": src.height,
                                             "codec": src.codec}
    if it.media is not None or Fraction(src.fps) == Fraction(fps):
        used = TR(RT(0, media_rate), RT(it.out_frames - fade_out, media_rate))
    else:
        # A take at another rate without a conformed copy (OTIO only): the clip lasts what it
        # lasts in the film, expressed at the output rate.
        used = TR(RT(0, fps), RT(it.out_frames - fade_out, fps))
    clip = otio.schema.Clip(name=name, media_reference=ref, source_range=used)
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
                            "flagged_fraction": summary.flagged_fraction,
                            # the take's band (the app's badge and the report's colour)
                            "band": analysis.band(),
                            "states": summary.states.model_dump(),
                            "uncertain_fraction": summary.uncertain_fraction}
        # Markers for drift ranges only: frames that could not be judged ("uncertain") claim
        # nothing, so they get no red marker.
        for rng in summary.drift_ranges:
            start, end, reasons = rng.start, rng.end, list(rng.reasons)
            first, last = start, end
            if it.media is not None:  # in the conformed copy's frame numbers
                first, last = conformed_range(start, end, src.rate, fps, it.out_frames)
                if first > last:
                    continue  # every frame of the range was dropped by the conform
            reasons = [clean_text(r) for r in reasons]
            marker = otio.schema.Marker(
                name=clean_text("Identity drift" + (f": {', '.join(reasons)}" if reasons else ""),
                                name_limit),
                # Item markers live in the clip's media time: frame numbers of the media.
                marked_range=TR(RT(first, media_rate),
                                RT(max(1, last - first + 1), media_rate)),
                color=otio.schema.MarkerColor.RED)
            marker.metadata["continuity_studio"] = {"start_frame": start, "end_frame": end,
                                                    "reasons": reasons}
            clip.markers.append(marker)
    clip.metadata["continuity_studio"] = _clean_tree(meta)
    return clip


def conformed_range(start: int, end: int, fps_in: Fraction | float, fps_out: int,
                    frames_out: int) -> tuple[int, int]:
    """Source frames ``start..end`` (inclusive) as frames of the conformed copy: the output
    frames that show one of them (output frame j shows source frame floor(j × fps_in / fps_out),
    as the film samples it). ``first > last`` when the conform drops them all."""
    ratio = Fraction(fps_in) / fps_out  # source frames per output frame
    first = math.ceil(start / ratio)
    last = min(frames_out - 1, math.ceil((end + 1) / ratio) - 1)
    return first, last


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
    return _write_text(out_path, text)


def _adapter_available(name: str) -> bool:
    try:
        import opentimelineio as otio

        return name in otio.adapters.available_adapter_names()
    except Exception:  # a broken plugin manifest must not break export
        return False


def edl_available() -> bool:
    return _adapter_available("cmx_3600")


def fcp_xml_available() -> bool:
    return _adapter_available("fcp_xml")


def _check_rate(plan: "ExportPlan", what: str) -> None:
    if not edl_supported(plan.fps):
        suggest = conform_rate_for(plan.fps)
        others = ", ".join(str(r) for r in (24, 25, 30) if r != suggest)
        raise StudioError(f"{what} timecode has no {plan.fps} fps: conform the export to "
                          f"{suggest} fps (or {others}) for it, or use the .otio file")


def check_edl(plan: "ExportPlan") -> None:
    """Raise :class:`StudioError` before exporting if an EDL cannot be written."""
    if not edl_available():
        raise StudioError("CMX 3600 EDL needs the 'otio-cmx3600-adapter' package "
                          "(pip install opentimelineio-plugins)")
    _check_rate(plan, "CMX 3600 EDL")
    # Event numbers are three digits: a 1000th event would be written as an unparseable line.
    events = sum(1 for it in plan.items if it.kind != "skip")
    if events > EDL_MAX_EVENTS:
        raise StudioError(f"a CMX 3600 EDL holds at most {EDL_MAX_EVENTS} events and this cut has "
                          f"{events}: export OTIO or Final Cut Pro XML for it instead")


def check_fcp_xml(plan: "ExportPlan") -> None:
    """Raise :class:`StudioError` before exporting if FCP 7 XML cannot be written."""
    if not fcp_xml_available():
        raise StudioError("Final Cut Pro 7 XML needs the 'otio-fcp-adapter' package "
                          "(pip install opentimelineio-plugins)")
    _check_rate(plan, "Final Cut Pro 7 XML")


def _check_media(plan: "ExportPlan", out_path: Path) -> None:
    """Timecode-based formats count source frames at the timeline's rate: a take at another
    rate must be referenced through its conformed copy (written by the export)."""
    for it in plan.included:
        if it.needs_conformed_media and (it.media is None or not it.media.is_file()):
            assert it.source is not None
            raise StudioError(f"shot {it.shot_title!r}: its take runs at {float(it.source.fps):g} "
                              f"fps and the timeline at {plan.fps} fps; export the film first, "
                              "which writes the conformed copy this file references", out_path)


def _write_text(out_path: Path, text: str) -> Path:
    try:
        atomic_write_text(out_path, text)
    except OSError as exc:
        from studio.export.film import output_error

        raise output_error(exc, out_path) from None
    return out_path


def write_edl(project: Project, folder: Path, plan: "ExportPlan", out_path: Path) -> Path:
    """Write a CMX 3600 EDL of the cut (absolute media paths in the clip comments)."""
    import opentimelineio as otio

    check_edl(plan)
    out_path = Path(out_path).absolute()
    _check_media(plan, out_path)
    timeline = build_timeline(project, folder, plan, name_limit=EDL_NAME_MAX)
    try:
        # Reels: letters, digits and spaces, 8 characters (CMX 3600's reel field).
        text = otio.adapters.write_to_string(timeline, adapter_name="cmx_3600",
                                             rate=float(plan.fps), style="avid", reelname_len=8)
    except Exception as exc:  # the adapter raises plain exceptions for what it cannot express
        raise StudioError(f"cannot write an EDL of this cut: {exc}", out_path) from None
    return _write_text(out_path, text)


def write_fcp_xml(project: Project, folder: Path, plan: "ExportPlan", out_path: Path) -> Path:
    """Write the cut as Final Cut Pro 7 XML (``xmeml`` version 4; Premiere Pro and DaVinci
    Resolve import it) with absolute ``file://`` media paths."""
    import opentimelineio as otio

    check_fcp_xml(plan)
    out_path = Path(out_path).absolute()
    _check_media(plan, out_path)
    timeline = build_timeline(project, folder, plan)
    try:
        text = otio.adapters.write_to_string(timeline, adapter_name="fcp_xml")
    except Exception as exc:  # the adapter raises plain exceptions for what it cannot express
        raise StudioError(f"cannot write FCP XML of this cut: {exc}", out_path) from None
    return _write_text(out_path, _finish_fcp_xml(text, plan))


def _finish_fcp_xml(text: str, plan: "ExportPlan") -> str:
    """What the fcp_xml adapter (otio-fcp-adapter 1.0) leaves wrong or out:

    * a dissolve that starts at the cut (OTIO ``in_offset`` 0, the film's dissolve) is written
      ``start-black`` with the outgoing clip ending at the cut, i.e. a fade from black. FCP 7
      calls it ``start`` alignment, with the outgoing clip's ``end`` -1 (the transition decides)
      and its ``out`` running on through the transition (its handle);
    * every file is said to have audio; takes have none; each clip's ``rate`` is written twice;
    * the sequence ``format`` is empty, so editors guess the frame size;
    * media URLs are ``file:///path``; FCP 7 wrote (and Premiere expects) ``file://localhost/path``.
    """
    from xml.etree import ElementTree as ET

    root = ET.fromstring(text)
    for track in root.iter("track"):
        items = list(track)
        for k, el in enumerate(items):
            if el.tag != "transitionitem" or el.findtext("alignment") != "start-black":
                continue
            length = int(el.findtext("end") or 0) - int(el.findtext("start") or 0)
            before = items[k - 1] if k > 0 else None
            if before is None or before.tag != "clipitem":
                continue  # a real fade from black: nothing to correct
            alignment = el.find("alignment")
            assert alignment is not None
            alignment.text = "start"
            end, out = before.find("end"), before.find("out")
            if end is not None and out is not None and out.text is not None:
                end.text = "-1"
                out.text = str(int(out.text) + length)
    for item in root.iter("clipitem"):  # the adapter writes the clip's <rate> twice
        rates = item.findall("rate")
        for extra in rates[1:]:
            item.remove(extra)
    for url in root.iter("pathurl"):  # FCP 7's own form, which Premiere expects
        if url.text and url.text.startswith("file:///"):
            url.text = "file://localhost/" + url.text[len("file:///"):]
    for media in root.iter("media"):
        if media.find("video") is not None and media.find("video/track") is None:
            for audio in media.findall("audio"):  # a file's media, not the sequence's
                media.remove(audio)
    for fmt in root.iterfind(".//sequence/media/video/format"):
        if fmt.find("samplecharacteristics") is None:
            sc = ET.SubElement(fmt, "samplecharacteristics")
            rate = ET.SubElement(sc, "rate")
            ET.SubElement(rate, "timebase").text = str(plan.fps)
            ET.SubElement(rate, "ntsc").text = "FALSE"
            ET.SubElement(sc, "width").text = str(plan.width)
            ET.SubElement(sc, "height").text = str(plan.height)
            ET.SubElement(sc, "pixelaspectratio").text = "square"
    ET.indent(root, space="    ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n'
            + ET.tostring(root, encoding="unicode") + "\n")
