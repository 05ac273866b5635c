"""``continuity-studio validate PROJECT``: check a project folder headlessly."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "validate"
HELP = "Check a project folder: schema, paths, and every referenced file. Exit 1 on a problem."


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="project folder or its project.json")
    parser.add_argument("--quick", action="store_true",
                        help="check project.json and that files exist, without decoding them")


def validate_project(folder: Path, quick: bool = False) -> list[str]:
    """Every problem found, as 'file: problem' lines (empty when the project is sound)."""
    from studio.core.errors import StudioError
    from studio.core.persistence import load_project, project_file, resolve_inside

    path = project_file(folder)
    project = load_project(path)  # raises ProjectError for anything structural
    root = path.parent
    problems: list[str] = []
    for asset in project.assets.values():
        p = resolve_inside(root, asset.path)
        if not p.is_file():
            problems.append(f"{p}: asset file is missing")
        elif not quick:
            from studio.media.images import inspect_image

            try:
                inspect_image(p)
            except StudioError as exc:
                problems.append(str(exc))
    for shot in project.shots:
        for take in shot.takes:
            p = resolve_inside(root, take.video)
            if not p.is_file():
                problems.append(f"{p}: take video of shot {shot.title!r} is missing")
            elif not quick:
                from studio.media.video import probe

                try:
                    probe(p)
                except StudioError as exc:
                    problems.append(str(exc))
    return problems


def run(args: argparse.Namespace) -> int:
    problems = validate_project(args.project, quick=args.quick)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    print(f"ok: {args.project}")
    return 0
