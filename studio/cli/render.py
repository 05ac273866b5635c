"""``continuity-studio render PROJECT``: generate takes without a window.

Resumes the project's persisted queue first (after a crash the interrupted job is re-queued), then
queues new jobs for the selected shots and runs everything with a terminal progress bar. The
project is saved after every take, so a kill loses at most the job that was running.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

NAME = "render"
HELP = ("Generate takes headlessly. By default one take for each selected shot that has none; "
        "--takes N queues N new takes per shot (re-rolls with new seeds). --size/--frames/--steps "
        "make draft takes. Exits 1 if any job failed.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="project folder or its project.json")
    parser.add_argument("--shots", default=None,
                        help="comma-separated shot ids (or exact titles, or 1-based numbers); "
                             "default: every shot")
    parser.add_argument("--backend", choices=None, default=None,
                        help="backend for every job (preview or diffusers); default: each "
                             "shot's own")
    parser.add_argument("--model", default=None, help="model folder for every job")
    parser.add_argument("--takes", type=int, default=None, metavar="N",
                        help="queue N new takes per selected shot (re-rolls)")
    parser.add_argument("--size", default=None, metavar="WxH", help="draft size, e.g. 416x240")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="draft frame count")
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="draft step count")
    parser.add_argument("--analyze", action="store_true",
                        help="score each new take for identity drift right after it is made "
                             "(as the app does); writes analysis/<take>.json/.npz")
    parser.add_argument("--no-resume", action="store_true",
                        help="drop the jobs left in the saved queue instead of running them")


def _parse_size(text: str) -> tuple[int, int]:
    from studio.core.errors import StudioError

    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise StudioError(f"--size must look like 832x480, not {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise StudioError(f"--size {w}x{h} is out of range (16..8192 per side)")
    return w, h


def select_shots(project: "object", spec: str | None) -> list[str]:
    from studio.core.errors import StudioError

    shots = project.shots  # type: ignore[attr-defined]
    if not spec:
        return [s.id for s in shots]
    out: list[str] = []
    for raw in spec.split(","):
        key = raw.strip()
        if not key:
            continue
        match = [s for s in shots if s.id == key] or [s for s in shots if s.title == key]
        if not match and key.isdigit() and 1 <= int(key) <= len(shots):
            match = [shots[int(key) - 1]]
        if not match:
            known = ", ".join(f"{s.id} ({s.title})" for s in shots[:20])
            raise StudioError(f"no shot {key!r} in the project; shots: {known}")
        if match[0].id not in out:
            out.append(match[0].id)
    return out


class ProgressBar:
    """One line, redrawn in place on a terminal; a line per event otherwise (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._width = 0

    def job_line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def update(self, label: str, step: int, total: int, stage: str, eta: float | None) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and step < total:
            return
        self._last = now
        frac = step / total if total else 0.0
        bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
        eta_s = f" ETA {eta:4.0f}s" if eta is not None else ""
        line = f"\r[{bar}] {step}/{total} {stage:<10} {label[:40]}{eta_s}"
        self._width = max(self._width, len(line))
        self.stream.write(line.ljust(self._width))
        self.stream.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def run(args: argparse.Namespace) -> int:
    from studio.core.document import ProjectDocument
    from studio.core.errors import StudioError
    from studio.core.persistence import load_project, project_file
    from studio.engine.queue import DraftOverrides, JobQueue, JobState, make_jobs
    from studio.engine.registry import backend_names
    from studio.engine.runner import QueueRunner
    from studio.engine.takes import recover_takes

    if args.takes is not None and args.takes < 1:
        raise StudioError("--takes must be at least 1")
    for opt in ("frames", "steps"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise StudioError(f"--{opt} must be at least 1")
    if args.backend is not None and args.backend not in backend_names():
        raise StudioError(f"unknown backend {args.backend!r}; available: {', '.join(backend_names())}")
    size = _parse_size(args.size) if args.size else None
    draft = DraftOverrides(width=size[0] if size else None, height=size[1] if size else None,
                           frames=args.frames, steps=args.steps)

    path = project_file(args.project)
    folder = path.parent
    document = ProjectDocument(load_project(path), folder)
    out = sys.stderr
    bar = ProgressBar(out)

    recovered = recover_takes(document)
    if recovered:
        document.save()
        bar.job_line(f"recovered {len(recovered)} finished take(s) the project did not list yet")

    queue = JobQueue.for_project(folder)
    for note in queue.restore_notes:
        bar.job_line(f"note: {note}")
    if args.no_resume and queue.pending():
        n = queue.cancel_all()
        bar.job_line(f"dropped {n} job(s) left in the saved queue")
    if queue.paused:
        queue.resume()

    shot_ids = select_shots(document.project, args.shots)
    queued_for = {j.shot_id for j in queue.pending()}
    new_jobs = []
    for sid in shot_ids:
        shot = document.project.shot(sid)
        assert shot is not None
        if args.takes is None:
            if shot.takes or sid in queued_for:
                continue  # already has a take (or one is on its way)
            new_jobs += make_jobs(document.project, [sid], count=1, backend=args.backend,
                                  model=args.model, draft=draft, queue=queue)
        else:
            first = not shot.takes and sid not in queued_for
            new_jobs += make_jobs(document.project, [sid], count=args.takes,
                                  reroll=not first, backend=args.backend, model=args.model,
                                  draft=draft, queue=queue)
    if new_jobs:
        queue.add(new_jobs)
    total = len(queue.pending())
    if total == 0:
        print("nothing to render: every selected shot has a take (use --takes N for re-rolls)",
              file=out)
        return 0
    bar.job_line(f"rendering {total} job(s) in {document.project.name!r}")
    counter = {"n": 0}

    def on_event(kind: str, job: "object") -> None:
        j = job  # a studio.engine.queue.Job
        if kind == "start":
            counter["n"] += 1
            bar.job_line(f"[{counter['n']}/{total}] {j.describe()} (take {j.take_id})")  # type: ignore[attr-defined]
        elif kind == "done":
            t = j.timings.get("total_s")  # type: ignore[attr-defined]
            extra = f" in {t:.1f}s" if t else ""
            bar.job_line(f"    done{extra}: takes/{j.shot_id}/{j.take_id}.mp4")  # type: ignore[attr-defined]
            for note in j.notes:  # type: ignore[attr-defined]
                if "\n" not in note:
                    bar.job_line(f"    note: {note}")
        elif kind == "failed":
            bar.job_line(f"    FAILED: {j.error}")  # type: ignore[attr-defined]
        elif kind == "cancelled":
            bar.job_line("    cancelled")

    def on_progress(job_id: str) -> None:
        j = queue.get(job_id)
        if j is not None and j.state is JobState.RUNNING:
            bar.update(j.describe(), j.step, j.total, j.stage, j.eta_s)

    analysis_failures: list[str] = []

    def after_take(result: "object") -> None:
        document.save()  # the take is safe before anything else happens
        if args.analyze:
            _analyze(document, result.shot_id, result.take.id, bar,  # type: ignore[attr-defined]
                     analysis_failures)

    queue.progressed.connect(on_progress)
    runner = QueueRunner(document, queue, after_take=after_take, on_event=on_event)
    summary = runner.run()
    if document.dirty:
        document.save()
    bar.job_line(f"finished: {len(summary.done)} done, {len(summary.failed)} failed, "
                 f"{len(summary.cancelled)} cancelled"
                 + (f", {len(analysis_failures)} analysis failed" if analysis_failures else ""))
    return 1 if summary.failed or analysis_failures else 0


def _analyze(document: "object", shot_id: str, take_id: str, bar: ProgressBar,
             failures: list[str]) -> None:
    """Identity analysis of one new take; its mean score is stored on the take."""
    from studio.core.errors import StudioError
    from studio.identity.api import analyze_take

    doc = document  # a ProjectDocument
    shot = doc.project.shot(shot_id)  # type: ignore[attr-defined]
    take = shot.take(take_id) if shot is not None else None
    if take is None:
        return
    try:
        summary = analyze_take(doc.folder, doc.project, shot, take,  # type: ignore[attr-defined]
                               on_progress=lambda p: bar.update(
                                   "analysing identity", p.step, p.total, "analysing", p.eta_s))
    except StudioError as exc:
        failures.append(take_id)
        bar.job_line(f"    analysis FAILED: {exc}")
        return
    mean = summary.get("identity_mean")
    eng = summary.get("engine", {})
    if mean is not None:
        doc.update_take(shot_id, take_id, identity_mean=float(mean),  # type: ignore[attr-defined]
                        analysis_engine=f"{eng.get('name')}/{eng.get('model')}")
        doc.save()  # type: ignore[attr-defined]
    flagged = summary.get("flagged_fraction") or 0.0
    bar.job_line(f"    identity {mean:.2f}, {flagged:.0%} of frames flagged" if mean is not None
                 else "    identity: no face found in the take")
