"""``continuity-studio export PROJECT --out film.mp4``: the assembled film, interchange files
and the drift report, headlessly."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "export"
HELP = ("Assemble the active takes into one MP4, optionally with an OTIO timeline, a CMX 3600 "
        "EDL, Final Cut Pro 7 XML and an HTML drift report. Exit 1 with the reason on failure.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="project folder or its project.json")
    parser.add_argument("--out", type=Path, default=None,
                        help="the MP4 to write (default: PROJECT/exports/<project name>.mp4)")
    parser.add_argument("--otio", type=Path, help="also write an OpenTimelineIO timeline here")
    parser.add_argument("--edl", type=Path, help="also write a CMX 3600 EDL here (needs a SMPTE "
                                                 "rate such as 24, 25 or 30 fps: see --fps)")
    parser.add_argument("--xml", type=Path, help="also write Final Cut Pro 7 XML here, for "
                                                 "Premiere Pro and DaVinci Resolve (SMPTE rate "
                                                 "too)")
    parser.add_argument("--fps", type=int, default=None, metavar="N",
                        help="frame rate of the film and the timeline (default: the project's "
                             "output rate). Another rate conforms every take to it, frames "
                             "repeated or dropped, durations kept; takes at another rate are "
                             "also written conformed beside the film for the timeline files. "
                             "E.g. --fps 24 for an EDL of a 16 fps project")
    parser.add_argument("--report", type=Path, help="also write the HTML drift report here")
    parser.add_argument("--crossfade", type=int, default=0, metavar="FRAMES",
                        help="dissolve between shots over this many frames (default 0: cuts)")
    parser.add_argument("--missing", choices=("skip", "still"), default="skip",
                        help="shots without a take: leave out (skip) or hold the start image for "
                             "the shot's duration (still)")
    parser.add_argument("--burn-in", action="store_true",
                        help="draw shot name and timecode into the picture (review copies)")
    parser.add_argument("--reencode", action="store_true",
                        help="re-encode even when the takes could be joined losslessly")
    parser.add_argument("--preset", default="medium", help="libx264 preset (default medium)")
    parser.add_argument("--crf", type=int, default=18, help="libx264 quality, lower is better "
                                                            "(default 18)")
    parser.add_argument("--relative-media", action="store_true",
                        help="OTIO media paths relative to the .otio file instead of file:// URLs")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be exported and stop")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
            "veryslow", "placebo")


def run(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError
    from studio.core.persistence import load_project, project_file
    from studio.core.tasks import Cancelled, Progress
    from studio.export.plan import ExportOptions, plan_export
    from studio.export.names import default_film_path
    from studio.session.export import ExportTargets, check_targets, export_project

    if args.crossfade < 0:
        raise StudioError("--crossfade must be 0 or more frames")
    if args.preset not in _PRESETS:
        raise StudioError(f"unknown --preset {args.preset!r} (one of {', '.join(_PRESETS)})")
    if not 0 <= args.crf <= 51:
        raise StudioError("--crf must be between 0 and 51")
    pfile = project_file(args.project)
    project = load_project(pfile)
    folder = pfile.parent
    out = args.out or default_film_path(folder, project.name)
    if args.fps is not None and not 1 <= args.fps <= 120:
        raise StudioError(f"--fps must be between 1 and 120, not {args.fps}")
    options = ExportOptions(crossfade=args.crossfade, burn_in=args.burn_in, missing=args.missing,
                            force_reencode=args.reencode, preset=args.preset, crf=args.crf,
                            fps=args.fps)
    plan = plan_export(project, folder, options)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    for line in plan.summary_lines():
        say(line)
    _check_timecode_rate(plan.fps, args)
    check_targets(plan, ExportTargets(edl=args.edl, xml=args.xml))  # fail before encoding
    if args.dry_run:
        return 0

    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if args.quiet or (now - last[0] < 1.0 and p.step < p.total):
            return
        last[0] = now
        eta = f", ETA {p.eta_s:.0f} s" if p.eta_s is not None else ""
        print(f"{p.stage} {p.step}/{p.total} frames ({100 * p.fraction:.0f}%){eta}",
              file=sys.stderr)

    targets = ExportTargets(otio=args.otio, edl=args.edl, report=args.report,
                            relative_media=args.relative_media, xml=args.xml)
    try:
        outputs = export_project(project, folder, out, plan, targets, on_progress=progress)
    except Cancelled:
        print("cancelled; no file written", file=sys.stderr)
        return 130
    result = outputs.film
    for note in result.notes:
        say(f"note: {note}")
    for warning in outputs.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {result.path} ({result.frames} frames, {result.duration_s:.2f} s, "
          f"{'copied' if result.mode == 'copy' else 're-encoded'} in {result.seconds:.1f} s)")
    if outputs.media:
        print(f"wrote {len(outputs.media)} take(s) conformed to {plan.fps} fps in "
              f"{outputs.media[0].parent}")
    for path in (outputs.otio, outputs.edl, outputs.xml, outputs.report):
        if path is not None:
            print(f"wrote {path}")
    return 0


def _check_timecode_rate(fps: int, args: argparse.Namespace) -> None:
    """EDL and FCP XML count in SMPTE timecode; say how to get there with this command."""
    from studio.core.errors import StudioError
    from studio.export.interchange import conform_rate_for, edl_supported

    wanted = [name for name, target in (("--edl", args.edl), ("--xml", args.xml)) if target]
    if wanted and not edl_supported(fps):
        suggest = conform_rate_for(fps)
        others = ", ".join(str(r) for r in (24, 25, 30) if r != suggest)
        need = "need" if len(wanted) > 1 else "needs"
        raise StudioError(f"{' and '.join(wanted)} {need} SMPTE timecode, which has no {fps} fps: "
                          f"add --fps {suggest} (or {others}) to conform the film and the "
                          "timeline to it, or write --otio instead")
