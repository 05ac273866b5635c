"""``continuity-studio export PROJECT --out film.mp4``: the assembled film, interchange files
and the drift report, headlessly."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "export"
HELP = ("Assemble the active takes into one MP4, optionally with an OTIO timeline, a CMX 3600 "
        "EDL and an HTML drift report. Exit 1 with the reason on failure.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="project folder or its project.json")
    parser.add_argument("--out", type=Path, default=None,
                        help="the MP4 to write (default: PROJECT/exports/<project name>.mp4)")
    parser.add_argument("--otio", type=Path, help="also write an OpenTimelineIO timeline here")
    parser.add_argument("--edl", type=Path, help="also write a CMX 3600 EDL here (needs 24/25/30 "
                                                 "fps or another SMPTE rate)")
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
    options = ExportOptions(crossfade=args.crossfade, burn_in=args.burn_in, missing=args.missing,
                            force_reencode=args.reencode, preset=args.preset, crf=args.crf)
    plan = plan_export(project, folder, options)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    for line in plan.summary_lines():
        say(line)
    check_targets(plan, ExportTargets(edl=args.edl))  # fail before minutes of encoding
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
                            relative_media=args.relative_media)
    try:
        outputs = export_project(project, folder, out, plan, targets, on_progress=progress)
    except Cancelled:
        print("cancelled; no file written", file=sys.stderr)
        return 130
    result = outputs.film
    for note in result.notes:
        say(f"note: {note}")
    print(f"wrote {result.path} ({result.frames} frames, {result.duration_s:.2f} s, "
          f"{'copied' if result.mode == 'copy' else 're-encoded'} in {result.seconds:.1f} s)")
    for path in (outputs.otio, outputs.edl, outputs.report):
        if path is not None:
            print(f"wrote {path}")
    return 0
