"""``continuity-studio validate PROJECT``: check a project folder headlessly.

Beyond what loading checks (schema, paths inside the project, cross-references): every image
decodes, every take file exists and matches what the project records (size, frame count), and
every active take — the ones an export uses — decodes completely, frame by frame. A take cut
short or with damaged bytes opens and probes fine (the container header is intact) and only
fails when its frames are decoded, so nothing less than a full decode proves it.

Hostile files are named, never trusted: only regular files are opened (a FIFO would hang the
check), every asset's bytes are hashed against the content hash the project records, every take
must be a movie container (a JPEG renamed .mp4 opens as a one-frame "video") within the decode
budget of :mod:`studio.media.video`, and the takes that are not decoded fully have their first
and last frames decoded.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from studio.core.model import Shot, Take

NAME = "validate"
HELP = ("Check a project folder: schema, paths, every image, every take file against the project, "
        "and a full decode of every active take. Exit 1 listing each problem.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="project folder or its project.json")
    parser.add_argument("--quick", action="store_true",
                        help="check project.json and that files exist, without opening them")
    parser.add_argument("--all-takes", action="store_true",
                        help="decode every take fully, not only the active ones")


@dataclass(frozen=True)
class _Check:
    """One take to decode fully."""

    order: int  # position in the storyboard, so problems are listed in storyboard order
    shot: "Shot"
    number: int  # 1-based position among the shot's takes, as the app numbers them
    take: "Take"
    path: Path
    frames: int  # what the file's header promises

    @property
    def name(self) -> str:
        return take_name(self.shot, self.number, self.take)


def take_name(shot: "Shot", number: int, take: "Take") -> str:
    return f"Shot {shot.title!r}: take {number} ({take.video})"


# Frame threading delivers nothing decoded before an error (its frames are still in flight), so
# slice threads give the true count for a damaged take; takes are decoded in parallel instead.
_DECODE_THREADS = "SLICE"


def decode_take(path: Path, on_frame: Callable[[], None] | None = None) -> tuple[int, int, str]:
    """Decode every frame of ``path`` without converting it (no pixels are needed): (frames
    decoded, frames the decoder flagged corrupt, the decoder's error or "")."""
    from studio.core.errors import AssetError
    from studio.media.video import iter_frames

    decoded = corrupt = 0
    error = ""
    try:
        for frame in iter_frames(path, thread_type=_DECODE_THREADS, format=None):
            decoded += 1
            corrupt += bool(frame.is_corrupt)
            if on_frame is not None:
                on_frame()
    except AssetError as exc:
        error = exc.problem
    return decoded, corrupt, error


def _decode_problem(check: _Check, on_frame: Callable[[], None] | None) -> str | None:
    decoded, corrupt, error = decode_take(check.path, on_frame)
    if decoded < check.frames:  # the decoder's own words ("Invalid data found…") add nothing
        return f"{check.name} is damaged: only {decoded} of {check.frames} frames decode"
    if corrupt:
        return (f"{check.name} is damaged: {corrupt} of {check.frames} frames decode with "
                "errors")
    if error:
        return f"{check.name} is damaged: {error}"
    return None


class _Meter:
    """Frames decoded so far, shared by the decoding threads (PyAV releases the GIL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames = 0

    def step(self) -> None:
        with self._lock:
            self.frames += 1


def validate_project(folder: Path, quick: bool = False, *, all_takes: bool = False,
                     on_progress: Callable[[int, int, str], None] | None = None) -> list[str]:
    """Every problem found, one line each (empty when the project is sound). Raises
    ProjectError when project.json itself cannot be loaded. ``on_progress(frames, total,
    label)`` is called from this thread while takes decode."""
    from studio.core.errors import StudioError
    from studio.core.persistence import load_project, project_file, resolve_inside

    path = project_file(folder)
    project = load_project(path)  # raises ProjectError for anything structural
    root = path.parent
    problems: list[str] = []  # images first, then takes in storyboard order
    found: list[tuple[tuple[int, int, int], str]] = []
    for asset in project.assets.values():
        p = resolve_inside(root, asset.path)
        problem = _asset_problem(p, asset.sha256, quick)
        if problem:
            problems.append(problem)
    checks: list[_Check] = []
    for order, shot in enumerate(project.shots):
        for number, take in enumerate(shot.takes, 1):
            name = take_name(shot, number, take)

            def add(text: str, seq: int = 0) -> None:
                found.append(((order, number, seq), text))

            p = resolve_inside(root, take.video)
            if not p.exists():
                add(f"{name} is missing")
                continue
            from studio.core.safeio import check_regular

            try:
                check_regular(p)  # a FIFO or a device as a take would block the decoder
            except StudioError as exc:
                add(f"{name} {exc.problem}")
                continue
            if quick:
                continue
            from studio.media.video import check_ends, probe

            try:
                info = probe(p)
            except StudioError as exc:
                add(f"{name} is damaged: {exc.problem}")
                continue
            if not info.is_movie:
                add(f"{name} is not a movie file (it holds {info.container or 'unknown'} data)")
                continue
            if (info.width, info.height) != (take.width, take.height):
                add(f"{name} is {info.width}x{info.height} but the project says "
                    f"{take.width}x{take.height}", 1)
            if info.frames != take.frames:
                add(f"{name} has {info.frames} frames but the project says {take.frames}", 2)
            if all_takes or take.id == shot.active_take_id:
                checks.append(_Check(order, shot, number, take, p, info.frames))
            else:
                try:
                    check_ends(p, what="take")
                except StudioError as exc:
                    add(f"{name} {exc.problem.removeprefix('take ')}", 3)
    for check, problem in _decode_all(checks, on_progress):
        found.append(((check.order, check.number, 0), problem))
    return problems + [text for _, text in sorted(found, key=lambda kv: kv[0])]


def _asset_problem(path: Path, sha256: str, quick: bool) -> str | None:
    """The one line for an asset file that is missing, not a regular file, no longer the bytes
    the project recorded, or not a readable image within the decode budget."""
    from studio.core.assets import sha256_file
    from studio.core.errors import StudioError
    from studio.core.safeio import check_regular

    if not path.exists():
        return f"{path}: asset file is missing"
    try:
        check_regular(path)
    except StudioError as exc:
        return f"{path}: asset file {exc.problem}"
    if quick:
        return None
    try:
        digest = sha256_file(path)
    except StudioError as exc:
        return str(exc)
    if digest != sha256:
        return (f"{path}: asset file is not the one imported (its bytes no longer match the "
                "content hash the project records)")
    from studio.media.images import inspect_image

    try:
        inspect_image(path)
    except StudioError as exc:
        return str(exc)
    return None


def _decode_all(checks: list[_Check], on_progress: Callable[[int, int, str], None] | None
                ) -> list[tuple[_Check, str]]:
    """Decode the takes in parallel: each damaged one with its problem."""
    if not checks:
        return []
    total = sum(c.frames for c in checks)
    meter = _Meter()
    results: dict[int, str | None] = {}
    workers = max(1, min(len(checks), os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="validate") as pool:
        pending: dict[Future[str | None], int] = {
            pool.submit(_decode_problem, c, meter.step): i for i, c in enumerate(checks)}
        while pending:
            done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for fut in done:
                results[pending.pop(fut)] = fut.result()
            if on_progress is not None:
                busy = min(pending.values()) if pending else len(checks) - 1
                c = checks[busy]
                on_progress(min(meter.frames, total), total, f"{c.shot.title} · take {c.number}")
    return [(checks[i], r) for i, r in sorted(results.items()) if r]


def run(args: argparse.Namespace) -> int:
    from studio.cli.render import ProgressBar

    bar = ProgressBar(sys.stderr)  # draws only on a terminal
    start = time.monotonic()

    def progress(frames: int, total: int, label: str) -> None:
        elapsed = time.monotonic() - start
        eta = elapsed * (total - frames) / frames if frames and elapsed > 1.0 else None
        bar.update(label, frames, total, "decoding", eta)

    problems = validate_project(args.project, quick=args.quick, all_takes=args.all_takes,
                                on_progress=progress)
    bar.clear()
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s) in {args.project}", file=sys.stderr)
        return 1
    print(f"ok: {args.project}")
    return 0
