"""``continuity-studio render PROJECT``: generate takes without a window.

Resumes the project's persisted queue first (after a crash the interrupted job is re-queued), then
queues new jobs for the selected shots and runs everything with a terminal progress bar. The
project is saved after every take, so a kill loses at most the job that was running.

One writer per project: the render holds the project's lock (``.studio.lock``) while it runs. A
project in use by another process is refused with one line naming the holder (exit code
:data:`~studio.cli._remedies.EXIT_LOCKED`), or waited for with ``--wait [SECONDS]``.
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
                        help="backend for every job (preview, diffusers or comfyui); default: "
                             "each shot's own")
    parser.add_argument("--model", default=None, help="model folder for every job")
    parser.add_argument("--server", action="append", default=None, metavar="URL",
                        help="ComfyUI server for comfyui jobs (repeat for a farm: each job goes "
                             "to an idle server that has its models); default: the servers in "
                             "Settings ▸ Generators")
    parser.add_argument("--workflow", default=None, metavar="NAME|FILE",
                        help="ComfyUI workflow for every job: a bundled one (see `comfyui "
                             "check`), an imported one, or an API-format JSON file")
    parser.add_argument("--allow-paid", action="store_true",
                        help="run hosted workflows (Kling, Veo 3, …) billed to your Comfy account")
    parser.add_argument("--takes", type=int, default=None, metavar="N",
                        help="queue N new takes per selected shot (re-rolls)")
    parser.add_argument("--size", default=None, metavar="WxH", help="draft size, e.g. 416x240")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="draft frame count")
    parser.add_argument("--steps", type=int, default=None, metavar="N", help="draft step count")
    parser.add_argument("--analyze", action="store_true",
                        help="score each new take for identity drift right after it is made "
                             "(as the app does); writes analysis/<take>.json/.npz")
    parser.add_argument("--until-identity", nargs="?", type=float, const=-1.0, default=None,
                        metavar="T",
                        help="generate each selected shot until a take's identity reaches T "
                             "(default: the face engine's threshold plus a margin), at most "
                             "--max-takes takes; each take is analysed, the best becomes active")
    parser.add_argument("--max-takes", type=int, default=None, metavar="N",
                        help="with --until-identity: at most N takes per shot (default 4)")
    parser.add_argument("--give-up-early", action="store_true",
                        help="with --until-identity: give a take up as soon as its live "
                             "previews show another person, and go on to the next seed")
    parser.add_argument("--no-resume", action="store_true",
                        help="drop the jobs left in the saved queue instead of running them")
    parser.add_argument("--wait", nargs="?", type=_wait_seconds, const=float("inf"),
                        default=None, metavar="SECONDS",
                        help="when another program is writing the project, wait for it to "
                             "finish (at most SECONDS; without a value, as long as it takes) "
                             "instead of exiting with code 75")


def _wait_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--wait takes a number of seconds, not {text!r}") \
            from None
    if not 0.0 <= value < float("inf"):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"--wait takes a number of seconds, not {text!r}")
    return value


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
        self.clear()
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

    def clear(self) -> None:
        """Erase the progress line (before other output, or when done)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


def _check_paid(session: "object", *, allow: bool) -> None:
    """Hosted workflows cost money: refuse them unless --allow-paid, saying what they cost
    (the pending jobs stay queued for a run that allows them)."""
    from studio.core.errors import StudioError
    from studio.session.session import Session

    assert isinstance(session, Session)
    paid = session.paid_jobs()
    if paid and not allow:
        labels = sorted({label for _job, label, _note in paid})
        raise StudioError(f"{len(paid)} job(s) use hosted models billed to your Comfy account "
                          f"({', '.join(labels)}): {paid[0][2]}. Add --allow-paid to run them")


def run(args: argparse.Namespace) -> int:
    from studio.cli._remedies import EXIT_LOCKED
    from studio.core.errors import StudioError
    from studio.engine.queue import DraftOverrides
    from studio.engine.registry import backend_names
    from studio.session.session import Session

    if args.takes is not None and args.takes < 1:
        raise StudioError("--takes must be at least 1")
    for opt in ("frames", "steps"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise StudioError(f"--{opt} must be at least 1")
    if args.backend is not None and args.backend not in backend_names():
        raise StudioError(f"unknown backend {args.backend!r}; available: {', '.join(backend_names())}")
    if args.workflow is not None:
        if args.model is not None:
            raise StudioError("give either --model or --workflow (a workflow is the comfyui "
                              "backend's model)")
        if args.backend not in (None, "comfyui"):
            raise StudioError("--workflow is for the comfyui backend")
        args.backend, args.model = "comfyui", args.workflow
    if args.server:
        if args.backend not in (None, "comfyui"):
            raise StudioError("--server is for the comfyui backend")
        args.backend = "comfyui"
    until = args.until_identity
    if until is None and (args.max_takes is not None or args.give_up_early):
        raise StudioError("--max-takes and --give-up-early go with --until-identity")
    if until is not None and args.takes is not None:
        raise StudioError("give either --takes or --until-identity")
    if until is not None and until != -1.0 and not 0.0 < until <= 1.0:
        raise StudioError(f"--until-identity must lie between 0 and 1, not {until:g}")
    if args.max_takes is not None and not 1 <= args.max_takes <= 100:
        raise StudioError("--max-takes must be from 1 to 100")
    size = _parse_size(args.size) if args.size else None
    draft = DraftOverrides(width=size[0] if size else None, height=size[1] if size else None,
                           frames=args.frames, steps=args.steps)

    # The project is saved after every take (and every score), so a kill loses at most the job
    # that was running. The lock is taken before project.json is read (see Session.open).
    session = _open_locked(args, Session)
    if session is None:
        return EXIT_LOCKED
    try:
        return _render(args, session, draft, until)
    finally:
        session.close()  # the lock goes with it (and with the process, however it ends)


def _open_locked(args: argparse.Namespace, session_type: type) -> "object | None":
    """The render's session, holding the project's lock; None (after one line on stderr) when
    another program holds it and did not let go within ``--wait``."""
    from studio.core.lock import ProjectLocked

    opts = {"analyze_new_takes": args.analyze, "save_after_take": True, "read_only": False,
            "program": "continuity-studio render"}
    try:
        return session_type.open(args.project, lock_wait=0.0, **opts)
    except ProjectLocked as exc:
        if args.wait is None:
            print(_locked_line(exc, waited=False), file=sys.stderr)
            return None
        print(f"waiting: {_who(exc)} has the project"
              + ("" if args.wait == float("inf") else f" (at most {args.wait:g} s)"),
              file=sys.stderr, flush=True)
    try:
        return session_type.open(args.project, lock_wait=args.wait, **opts)
    except ProjectLocked as exc:
        print(_locked_line(exc, waited=True), file=sys.stderr)
        return None


def _who(exc: "object") -> str:
    holder = getattr(exc, "holder", None)
    return holder.describe() if holder is not None else "another program"


def _locked_line(exc: "object", *, waited: bool) -> str:
    path = getattr(exc, "path", None)
    where = f"{path}: " if path is not None else ""
    remedy = ("it did not finish in time; wait longer (--wait without a value waits as long as "
              "it takes)" if waited else "wait for it to finish, or pass --wait [SECONDS]")
    return f"error: {where}this project is in use by {_who(exc)}; {remedy}"


def _render(args: argparse.Namespace, session: "object", draft: "object",
            until: "float | None") -> int:
    from studio.cli._remedies import for_cli
    from studio.core.tasks import PLACED
    from studio.session import events as ev
    from studio.session.session import Session

    assert isinstance(session, Session)
    document, queue = session.document, session.queue
    out = sys.stderr
    bar = ProgressBar(out)

    recovered = session.recover_takes()
    if recovered:
        document.save()
        bar.job_line(f"recovered {len(recovered)} finished take(s) the project did not list yet")

    for note in queue.restore_notes:
        bar.job_line(f"note: {note}")
    if args.no_resume and queue.pending():
        n = queue.cancel_all()
        bar.job_line(f"dropped {n} job(s) left in the saved queue")
    if queue.paused:
        queue.resume()

    if args.server:
        from studio.cli.comfyui import configure_servers

        configure_servers(args.server)
    shot_ids = select_shots(document.project, args.shots)
    missing = set(session.shots_without_takes(shot_ids))  # no take yet, none on its way
    for sid in shot_ids if until is not None else ():
        from studio.session.session import UNTIL_MAX_TAKES

        session.queue_until([sid], threshold=None if until == -1.0 else until,
                            max_takes=args.max_takes or UNTIL_MAX_TAKES,
                            give_up=args.give_up_early, backend=args.backend, model=args.model,
                            draft=draft)
    for sid in shot_ids if until is None else ():
        if args.takes is None:
            if sid in missing:
                session.queue_takes([sid], backend=args.backend, model=args.model, draft=draft)
        else:  # the first of a shot without takes keeps the shot's seed; the rest re-roll
            session.queue_takes([sid], count=args.takes, reroll=sid not in missing,
                                backend=args.backend, model=args.model, draft=draft)
    total = len(queue.pending())
    _check_paid(session, allow=args.allow_paid)
    if total == 0:
        print("nothing to render: every selected shot has a take (use --takes N for re-rolls)",
              file=out)
        return 0
    bar.job_line(f"rendering {total} job(s) in {document.project.name!r}")
    counter = {"n": 0}
    labels: dict[str, str] = {}
    placed: dict[str, str] = {}

    def on_event(e: ev.SessionEvent) -> None:
        if isinstance(e, ev.JobStarted):
            if e.job_id in labels:  # back from the queue (its server went away): again
                bar.job_line(f"[again] {e.label} (take {e.take_id})")
            else:
                counter["n"] += 1
                # A series queues its next try after each take: no total to count against.
                of = f"/{total}" if until is None else ""
                bar.job_line(f"[{counter['n']}{of}] {e.label} (take {e.take_id})")
            labels[e.job_id] = e.label
        elif isinstance(e, ev.JobProgress) and e.progress.stage == PLACED:
            # Said once per server: a chained take places each of its segments.
            if placed.get(e.job_id) != e.progress.message:
                placed[e.job_id] = e.progress.message
                bar.job_line(f"    {labels.get(e.job_id, '')} runs on {e.progress.message}")
        elif isinstance(e, ev.JobProgress):
            p = e.progress
            bar.update(labels.get(e.job_id, ""), p.step, p.total, p.stage, p.eta_s)
        elif isinstance(e, ev.TakeReady):
            t = e.timings.get("total_s")
            extra = f" in {t:.1f}s" if t else ""
            bar.job_line(f"    done{extra}: takes/{e.shot_id}/{e.take_id}.mp4")
            job = queue.get(e.job_id)
            for note in (job.notes if job is not None else e.notes):
                if "\n" not in note:
                    bar.job_line(f"    note: {for_cli(note)}")
        elif isinstance(e, ev.JobFailed):
            bar.job_line(f"    FAILED: {for_cli(e.message)}")
        elif isinstance(e, ev.JobCancelled):
            bar.job_line("    cancelled")
        elif isinstance(e, ev.JobRequeued):
            bar.job_line(f"    back in the queue: {for_cli(e.reason)}")
        elif isinstance(e, ev.AnalysisProgress):
            p = e.progress
            bar.update("analysing identity", p.step, p.total, "analysing", p.eta_s)
        elif isinstance(e, ev.AnalysisReady):
            mean = e.summary.get("identity_mean")
            flagged = e.summary.get("flagged_fraction") or 0.0
            bar.job_line(f"    identity {mean:.2f}, {flagged:.0%} of frames flagged"
                         if mean is not None else "    identity: no face found in the take")
        elif isinstance(e, ev.AnalysisFailed):
            bar.job_line(f"    analysis FAILED: {for_cli(e.message)}")
        elif isinstance(e, ev.JobGaveUp):
            bar.job_line(f"    given up early: {for_cli(e.reason)}")
        elif isinstance(e, ev.Note):
            bar.job_line(f"note: {for_cli(e.text)}")

    session.events.subscribe(on_event)
    summary = session.run_jobs()
    if document.dirty:
        document.save()
    failures = summary.analysis_failed
    for finished in summary.series:
        bar.job_line(_series_line(document.project, finished))
    gave_up = summary.gave_up  # not failures: the series moved on to its next seed
    bar.job_line(f"finished: {len(summary.done)} done, {len(summary.failed)} failed, "
                 f"{len(summary.cancelled)} cancelled"
                 + (f", {len(gave_up)} given up early" if gave_up else "")
                 + (f", {len(failures)} analysis failed" if failures else ""))
    return 1 if summary.failed or failures else 0


def _series_line(project: "object", e: "object") -> str:
    """One line per "until identity" series: tries spent, the best identity, the outcome."""
    from studio.session import events as ev

    assert isinstance(e, ev.SeriesFinished)
    shot = project.shot(e.shot_id)  # type: ignore[attr-defined]
    active = f"; take {e.best_take_id} is active" if e.made_active and e.best_take_id else ""
    return e.text(shot.title if shot is not None else e.shot_id) + active
