"""``continuity-studio analyze VIDEO (--reference IMAGE ... | --project DIR --character NAME
[--character NAME ...]) [--json OUT] [--heatmaps DIR]``: identity drift analysis of a video,
headless. ``--json`` writes the analysis record (:class:`studio.identity.record.AnalysisRecord`,
the project's ``analysis/<take>.json`` format, without take/shot ids). Several ``--character``
options analyse a shot with several characters (:mod:`studio.identity.cast`): the first is the
main one, the record gets the ``cast`` block and the summary one line per character. The text
summary (:func:`summary_lines`) names the take's band, the frames per state (match, close,
drift, uncertain), the share that could not be judged, the false alarms the calibration expects
and FaceSim-Arc when an ArcFace pack scored the take."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from studio.core.errors import StudioError

NAME = "analyze"
HELP = "Per-frame identity drift analysis of a video against reference portraits."


def register(parser: argparse.ArgumentParser) -> None:
    from studio.identity.record import ARRAYS_SUFFIX

    parser.add_argument("video", type=Path, help="video file (MP4, MOV, ...)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--reference", type=Path, action="append", metavar="IMAGE",
                     help="reference portrait (repeatable); angle is measured from the image")
    src.add_argument("--project", type=Path, metavar="DIR",
                     help="project folder whose character bible supplies the references")
    parser.add_argument("--character", metavar="NAME", action="append",
                        help="character name (or id) in --project; repeat it for a shot with "
                             "several characters (the first is the main one)")
    parser.add_argument("--json", type=str, metavar="OUT",
                        help="write the analysis record as JSON to OUT ('-' = standard output)")
    parser.add_argument("--heatmaps", type=Path, metavar="DIR",
                        help=f"write heatmaps{ARRAYS_SUFFIX} (heatmaps, landmarks, boxes) and "
                             "one PNG overlay per frame (frame_00000.png ...) into DIR")
    parser.add_argument("--engine", choices=["dlib", "arcface"], default=None,
                        help="face engine (default: ArcFace if an InsightFace pack is "
                             "installed, else dlib)")
    parser.add_argument("--model-pack", type=Path, metavar="DIR",
                        help="InsightFace model pack folder (buffalo_l / antelopev2 layout)")


def _references(args: argparse.Namespace, engine: Any) -> tuple[list[Any], list[Any]]:
    """(the main character's references, the cast: :class:`CastCharacter` per --character when
    there are several, else empty)."""
    from studio.core.errors import StudioError
    from studio.identity.analysis import load_references
    from studio.identity.metrics import angle_for_pose

    if args.reference:
        items = [(p.stem, p, "front") for p in args.reference]
        refs = load_references(engine, items)
        for r in refs:  # no tag on the command line: the measured pose is the angle
            r.angle = angle_for_pose(*r.pose)
        return refs, []
    if not args.character:
        raise StudioError("--project needs --character NAME")
    from studio.core.persistence import load_project, project_file
    from studio.identity.api import cast_characters, character_references

    path = project_file(args.project)
    project = load_project(path)
    chars = []
    for name in args.character:
        char = next((c for c in project.characters if c.name == name or c.id == name), None)
        if char is None:
            names = ", ".join(repr(c.name) for c in project.characters) or "none"
            raise StudioError(f"no character named {name!r} (characters: {names})", path)
        if char in chars:
            raise StudioError(f"character {char.name!r} is named twice", path)
        chars.append(char)
    if len(chars) == 1:
        return character_references(path.parent, project, chars[0], engine), []
    members = cast_characters(path.parent, project, [c.id for c in chars], engine)
    return members[0].refs, members


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError
    from studio.identity.analysis import analyze_video
    from studio.identity.engines import get_engine
    from studio.identity.record import AnalysisRecord

    if not args.video.exists():
        raise StudioError("no such video file", args.video)
    from studio.core.safeio import check_regular

    check_regular(args.video, StudioError)  # a FIFO or a device would never end
    engine = get_engine(args.engine or ("arcface" if args.model_pack else None), args.model_pack)
    refs, members = _references(args, engine)
    if members:
        from studio.identity.cast import analyze_video_with_cast

        result, arrays = analyze_video_with_cast(args.video, members, engine)
    else:
        result, arrays = analyze_video(args.video, refs, engine)
    record = AnalysisRecord.from_result(result)
    # A failed write (a read-only folder, a full disk) loses nothing already computed: the
    # results are still printed, then one line says which file could not be written (exit 1).
    failed: StudioError | None = None
    if args.heatmaps:
        failed = _attempt(lambda: _write_heatmaps(args.heatmaps, args.video, record, arrays),
                          args.heatmaps)
    if args.json:
        text = record.to_json()
        if args.json == "-":
            sys.stdout.write(text)
        else:
            from studio.core.atomic import atomic_write_text

            out = Path(args.json)
            json_failed = _attempt(lambda: atomic_write_text(out, text), out)
            failed = failed or json_failed  # the first failure is the one shown
    if args.json != "-":
        for line in summary_lines(record, args.video.name):
            print(line)
        names = {m.character_id: m.name for m in members}
        for line in cast_lines(record, names):
            print(line)
    if failed is not None:
        from studio.cli._remedies import for_cli

        print(f"error: {for_cli(str(failed))}", file=sys.stderr)
        return 1
    return 0


def _attempt(write: Callable[[], object], path: Path) -> StudioError | None:
    """Run ``write``; the StudioError it gives (an OSError in the app's words), else None."""
    from studio.core.errors import StudioError
    from studio.media.video import write_error

    try:
        write()
    except StudioError as exc:
        return exc
    except OSError as exc:
        return write_error(exc, path)  # the file asked for, not its temp name
    return None


def summary_lines(record: Any, name: str) -> list[str]:
    """The text summary of an analysis: frames and engine; identity, motion, flagged share;
    the take's band (:meth:`AnalysisRecord.band`, the colour the app and the HTML report show,
    in words); frames per state; the uncertain share; the false alarms the calibration expects;
    FaceSim-Arc when an ArcFace pack scored it; the drift ranges."""
    from studio.identity.colours import BAND_WORDS, BANDS

    s, e = record.summary, record.engine
    n = max(1, record.frame_count)
    mean = "n/a" if s.identity_mean is None else f"{s.identity_mean:.3f}"
    low = "n/a" if s.identity_min is None else f"{s.identity_min:.3f}"
    level = record.band()
    counts = s.states.model_dump()
    out = [f"{name}: {record.frame_count} frames, engine {e.name} "
           f"({e.model}, threshold {e.threshold})",
           f"identity mean {mean}, min {low}; motion {s.motion:.4f}; "
           f"flagged {s.flagged_fraction:.0%}",
           f"take: {level} ({BAND_WORDS[level]})" if level else "take: no face measured",
           "frames: " + ", ".join(f"{k} {counts[k]}" for k in BANDS),
           f"uncertain {s.uncertain_fraction:.0%} ({counts['uncertain']} of {n} frames could "
           "not be judged)" if counts["uncertain"] else "uncertain: none",
           "expected false alarms: not calibrated for this engine or face size"
           if s.expected_false_alarm is None else
           f"expected false alarms: {s.expected_false_alarm:.1%} of frames "
           f"(≈ {s.expected_false_alarm * n:.1f} of {n}) on an unchanged face of this size"]
    if s.facesim_arc is not None:
        out.append(f"FaceSim-Arc {s.facesim_arc:.3f} (mean ArcFace cosine to the reference)")
    out.extend(f"  frames {r.start}-{r.end}: {', '.join(r.reasons)}" for r in s.drift_ranges)
    return out


def cast_lines(record: Any, names: dict[str, str]) -> list[str]:
    """One line per character of a multi-character analysis: "Ana: identity 0.82, 3% flagged"
    (or why it was not scored)."""
    out = []
    for c in record.cast:
        name = names.get(c.character_id, c.character_id)
        if c.problem is not None:
            out.append(f"{name}: not scored ({c.problem})")
            continue
        mean = "n/a" if c.identity_mean is None else f"{c.identity_mean:.2f}"
        flagged = c.flagged_fraction or 0.0
        out.append(f"{name}: identity {mean}, {flagged:.0%} flagged")
        for r in c.drift_ranges:
            out.append(f"  frames {r.start}-{r.end}: {', '.join(r.reasons)}")
    return out


def _write_heatmaps(folder: Path, video: Path, record: Any, arrays: dict[str, Any]) -> None:
    import io

    from PIL import Image

    from studio.core.atomic import atomic_write_bytes
    from studio.identity.heatmap import overlay
    from studio.identity.record import ARRAYS_SUFFIX, write_arrays
    from studio.media.video import iter_frames

    folder.mkdir(parents=True, exist_ok=True)
    write_arrays(folder / f"heatmaps{ARRAYS_SUFFIX}", record, arrays)
    heat = arrays["heatmaps"]
    for i, rgb in enumerate(iter_frames(video)):
        if i >= len(heat):
            break
        out = io.BytesIO()
        Image.fromarray(overlay(rgb, heat[i])).save(out, format="PNG", compress_level=1)
        atomic_write_bytes(folder / f"frame_{i:05d}.png", out.getvalue())
    print(f"heatmaps written to {folder}", file=sys.stderr)
