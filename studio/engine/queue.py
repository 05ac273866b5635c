"""The generation job queue: Qt-free, thread-safe, persisted in the project.

A :class:`Job` names a shot, the take id it will create, its seed, optional draft overrides and an
optional backend/model override; everything else is read from the shot when the job starts (so a
prompt fixed while the job waits is honoured). The queue keeps the running and pending jobs in
order plus a short history of finished ones, and writes ``<project>/queue.json`` atomically on
every state change. Loading it after a crash puts the interrupted (running) job back at the head of
the pending jobs. Progress updates are not persisted (they change many times a second).

Mutations normally happen on one thread (the UI thread, or the CLI's only thread); the worker
thread only reads :meth:`JobQueue.cancel_requested`. A lock makes every method safe anyway.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_text
from studio.core.document import Signal
from studio.core.errors import ProjectError, StudioError
from studio.core.model import Project, SeedMode, Shot, new_id
from studio.engine.base import Progress
from studio.core.tasks import PLACED

QUEUE_FILE = "queue.json"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # take and job ids: they name files
QUEUE_FORMAT = 1
HISTORY_LIMIT = 200
GAVE_UP = "given up early"  # the start of a given-up job's error (Session.job_gave_up)
SEED_MAX = 2**32 - 1


class JobState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


# Fields a user may change on a pending job.
EDITABLE = frozenset({"seed", "backend", "model", "width", "height", "frames", "steps", "draft"})


@dataclass
class Job:
    shot_id: str
    seed: int
    take_id: str = field(default_factory=new_id)
    id: str = field(default_factory=new_id)
    label: str = ""  # the shot's title when queued, for display
    backend: str | None = None  # None: the shot's own backend
    model: str | None = None  # None: the shot's own model
    # Draft overrides (None: the shot's value). A job with any of them is a draft.
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None
    draft: bool = False
    reroll: bool = False
    state: JobState = JobState.PENDING
    error: str = ""
    notes: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    requeued: int = 0  # times this job was put back after an interruption
    # "Generate until identity ≥ T (at most N takes)": every job of one series carries the
    # rule; ``series`` is the first job's id, ``attempt`` counts from 1 and ``series_takes``
    # lists the takes the earlier attempts made (the session queues the next attempt after
    # each take's analysis, so the whole state survives a restart in queue.json).
    until_identity: float | None = None
    max_takes: int | None = None
    attempt: int = 1
    series: str | None = None
    series_takes: list[str] = field(default_factory=list)
    series_active: str | None = None  # the shot's active take when the series began
    # Give a take up early when its live previews show another person (off by default).
    early_stop: bool = False
    # Re-make one segment of a chained take: {"take_id": the take, "index": the segment}.
    segment: dict[str, Any] | None = None
    # Live state (not persisted).
    step: int = 0
    total: int = 0
    stage: str = ""
    where: str = ""  # the server running it (a ComfyUI farm), from a PLACED report
    cancel_requested: bool = False
    _gen_started: float | None = None
    _gen_step0: int = 0

    _LIVE = ("step", "total", "stage", "where", "cancel_requested", "_gen_started", "_gen_step0")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._LIVE}
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        if not isinstance(d, dict):
            raise ValueError("a job is not a JSON object")
        known = {f.name for f in fields(cls)} - set(cls._LIVE)
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("shot_id", "seed"):
            if key not in kw:
                raise ValueError(f"job without {key!r}")
        kw["state"] = JobState(kw.get("state", "pending"))
        job = cls(**kw)
        if not isinstance(job.shot_id, str) or not isinstance(job.seed, int):
            raise ValueError("job has a malformed shot id or seed")
        if not 0 <= job.seed <= SEED_MAX:
            raise ValueError(f"job seed {job.seed} out of range")
        _check_job_fields(job)
        return job

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left in the generating stage, from the step rate so far."""
        if self.state is not JobState.RUNNING or self._gen_started is None:
            return None
        done = self.step - self._gen_step0
        if done <= 0 or not self.total:
            return None
        rate = (time.monotonic() - self._gen_started) / done
        return max(0.0, rate * (self.total - self.step))

    @property
    def overrides(self) -> dict[str, int]:
        return {k: v for k in ("width", "height", "frames", "steps")
                if (v := getattr(self, k)) is not None}

    def describe(self) -> str:
        bits = [self.label or self.shot_id, f"seed {self.seed}"]
        if self.draft:
            bits.append("draft")
        if self.backend:
            bits.append(self.backend)
        if self.kind_text:
            bits.append(self.kind_text)
        return " · ".join(bits)

    @property
    def try_text(self) -> str:
        """Where a series stands: "try 2 of 4" ("" for a plain job)."""
        if self.until_identity is None:
            return ""
        return f"try {self.attempt} of {self.max_takes or self.attempt}"

    @property
    def stop_rule(self) -> str:
        """The series' rule and where it stands: "until identity ≥ 0.55 · try 2 of 4"."""
        if self.until_identity is None:
            return ""
        return f"until identity ≥ {score_text(self.until_identity)} · {self.try_text}"

    @property
    def segment_number(self) -> int | None:
        """The 1-based segment a re-make-segment job makes again (None for other jobs)."""
        return int(self.segment.get("index", 0)) + 1 if self.segment is not None else None

    @property
    def kind_text(self) -> str:
        """What kind of job it is when not a plain take: "segment 2 again", the stop rule."""
        bits = [f"segment {self.segment_number} again"] if self.segment is not None else []
        if self.until_identity is not None:
            bits.append(self.stop_rule)
        return " · ".join(bits)

    @property
    def gave_up(self) -> bool:
        """A take given up early (its live previews showed another person)."""
        return self.state is JobState.FAILED and self.error.startswith(GAVE_UP)


def score_text(value: float) -> str:
    """An identity score or threshold in words: 0.8 → "0.80", 0.999 → "0.999" (never rounded
    up to a value the score did not reach)."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def _check_job_fields(job: Job) -> None:
    """Types of a loaded job's fields: queue.json may have been edited or damaged."""
    def bad(name: str) -> ValueError:
        return ValueError(f"job field {name!r} has the wrong type ({getattr(job, name)!r})")

    for name in ("label", "error"):
        if not isinstance(getattr(job, name), str):
            raise bad(name)
    for name in ("backend", "model", "series", "series_active"):
        if getattr(job, name) is not None and not isinstance(getattr(job, name), str):
            raise bad(name)
    for name in ("width", "height", "frames", "steps", "max_takes"):
        v = getattr(job, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000):
            raise bad(name)
    for name in ("requeued", "attempt"):
        v = getattr(job, name)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000:
            raise bad(name)
    for name in ("draft", "reroll", "early_stop"):
        if not isinstance(getattr(job, name), bool):
            raise bad(name)
    u = job.until_identity
    if u is not None and (isinstance(u, bool) or not isinstance(u, (int, float))
                          or not 0.0 <= float(u) <= 1.0):
        raise bad("until_identity")
    if not isinstance(job.notes, list) or not all(isinstance(n, str) for n in job.notes):
        raise bad("notes")
    if not isinstance(job.series_takes, list) or not all(
            isinstance(t, str) and _ID.match(t) for t in job.series_takes):
        raise bad("series_takes")
    if not isinstance(job.timings, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in job.timings.items()):
        raise bad("timings")
    if not isinstance(job.take_id, str) or not _ID.match(job.take_id):
        raise bad("take_id")
    if not isinstance(job.id, str) or not _ID.match(job.id):
        raise bad("id")
    seg = job.segment
    if seg is not None and not (isinstance(seg, dict) and set(seg) == {"take_id", "index"}
                                and isinstance(seg["take_id"], str) and _ID.match(seg["take_id"])
                                and isinstance(seg["index"], int)
                                and not isinstance(seg["index"], bool)
                                and 0 <= seg["index"] <= 10_000):
        raise bad("segment")


@dataclass(frozen=True)
class DraftOverrides:
    """Quick low-resolution, few-step, short renders to check motion first."""

    width: int | None = None
    height: int | None = None
    frames: int | None = None
    steps: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def default_draft(shot: Shot) -> DraftOverrides:
    """The UI's draft toggle: half size (multiples of 16), at most 33 frames, 8 steps."""
    w, h = shot.size
    dw = max(64, (w // 2) // 16 * 16)
    dh = max(64, (h // 2) // 16 * 16)
    return DraftOverrides(width=dw, height=dh, frames=min(shot.frame_count, 33), steps=8)


class JobQueue:
    """Running + pending jobs in order, and the recent history."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._active: list[Job] = []  # the running job (if any) first, then pending in order
        self._history: list[Job] = []  # finished, oldest first
        self._paused = False
        self._lock = threading.RLock()
        self.changed = Signal()  # (job_id or None): structure or state changed
        self.progressed = Signal()  # (job_id): progress of a running job
        # Messages for the user from load() (restored jobs, an unreadable file).
        self.restore_notes: list[str] = []

    # -- persistence ----------------------------------------------------------------------
    @classmethod
    def for_project(cls, folder: Path) -> "JobQueue":
        return cls.load(Path(folder) / QUEUE_FILE)

    @classmethod
    def load(cls, path: Path) -> "JobQueue":
        """The queue saved at ``path`` (empty when there is none). Never raises for a damaged
        file: it is moved aside and the user is told."""
        q = cls(path)
        path = Path(path)
        if not path.is_file():
            return q
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != QUEUE_FORMAT:
                raise ValueError(f"unknown queue format {data.get('format') if isinstance(data, dict) else data!r}")
            active = [Job.from_dict(j) for j in data.get("jobs", [])]
            history = [Job.from_dict(j) for j in data.get("history", [])]
            paused = bool(data.get("paused", False))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            try:
                path.replace(aside)
            except OSError:
                aside = path
            q.restore_notes.append(f"{path}: the saved queue could not be read ({exc}); it was "
                                   f"kept as {aside.name} and the queue starts empty")
            return q
        interrupted = [j for j in active if j.state is JobState.RUNNING]
        for j in interrupted:
            j.state = JobState.PENDING
            j.requeued += 1
            j.started_at = None
            j.notes.append("interrupted (the app stopped while it ran); re-queued")
        q._active = ([j for j in interrupted]
                     + [j for j in active if j.state is JobState.PENDING and j not in interrupted])
        q._history = [j for j in history if j.state.finished][-HISTORY_LIMIT:]
        q._paused = paused
        pending = len(q._active)
        if pending:
            msg = f"restored {pending} queued job{'s' if pending != 1 else ''}"
            if interrupted:
                msg += (f"; {len(interrupted)} interrupted job{'s were' if len(interrupted) != 1 else ' was'}"
                        " re-queued at the front")
            if paused:
                msg += " (the queue is paused)"
            q.restore_notes.append(msg)
        if interrupted:
            q.save()
        return q

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {"format": QUEUE_FORMAT, "paused": self._paused,
                    "jobs": [j.to_dict() for j in self._active],
                    "history": [j.to_dict() for j in self._history]}
        try:
            atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise ProjectError(f"cannot save the job queue: {exc.strerror or exc}", self.path) from None

    def _commit(self, job_id: str | None) -> None:
        try:
            self.save()
        finally:  # listeners see the new state even when the file could not be written
            self.changed.emit(job_id)

    # -- reading --------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    def jobs(self) -> list[Job]:
        """Running, then pending in order, then finished (most recent first)."""
        with self._lock:
            return list(self._active) + list(reversed(self._history))

    def pending(self) -> list[Job]:
        with self._lock:
            return [j for j in self._active if j.state is JobState.PENDING]

    def running(self) -> Job | None:
        """The first running job (the oldest, when a farm of servers runs several)."""
        with self._lock:
            return next((j for j in self._active if j.state is JobState.RUNNING), None)

    def running_jobs(self) -> list[Job]:
        with self._lock:
            return [j for j in self._active if j.state is JobState.RUNNING]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return next((j for j in self._active + self._history if j.id == job_id), None)

    def position(self, job_id: str) -> int | None:
        """1-based place among pending jobs (None when not pending)."""
        for i, j in enumerate(self.pending()):
            if j.id == job_id:
                return i + 1
        return None

    def __len__(self) -> int:
        return len(self._active)

    # -- editing --------------------------------------------------------------------------
    def add(self, jobs: Job | Iterable[Job], front: bool = False) -> list[Job]:
        items = [jobs] if isinstance(jobs, Job) else list(jobs)
        with self._lock:
            for j in items:
                if j.state is not JobState.PENDING:
                    raise ValueError("only pending jobs can be queued")
            if front:
                at = sum(1 for j in self._active if j.state is JobState.RUNNING)
                self._active[at:at] = items
            else:
                self._active.extend(items)
        self._commit(None)
        return items

    def move(self, job_id: str, to_position: int) -> None:
        """Move a pending job to ``to_position`` (0-based among pending jobs)."""
        with self._lock:
            pend = [j for j in self._active if j.state is JobState.PENDING]
            job = next((j for j in pend if j.id == job_id), None)
            if job is None:
                raise StudioError("only a pending job can be moved")
            pend.remove(job)
            to_position = max(0, min(to_position, len(pend)))
            pend.insert(to_position, job)
            self._active = [j for j in self._active if j.state is not JobState.PENDING] + pend
        self._commit(job_id)

    def move_by(self, job_id: str, delta: int) -> None:
        pos = self.position(job_id)
        if pos is None:
            raise StudioError("only a pending job can be moved")
        self.move(job_id, pos - 1 + delta)

    def edit(self, job_id: str, **changes: Any) -> dict[str, Any]:
        """Change a pending job (seed, backend, model, draft overrides). Returns old values."""
        bad = set(changes) - EDITABLE
        if bad:
            raise ValueError(f"cannot edit {', '.join(sorted(bad))} of a job")
        with self._lock:
            job = self.get(job_id)
            if job is None or job.state is not JobState.PENDING:
                raise StudioError("only a pending job can be edited")
            if "seed" in changes:
                s = changes["seed"]
                if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX:
                    raise StudioError(f"seed must be a whole number from 0 to {SEED_MAX}")
            for k in ("width", "height", "frames", "steps"):
                v = changes.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise StudioError(f"{k} must be a positive whole number")
            old = {k: getattr(job, k) for k in changes}
            for k, v in changes.items():
                setattr(job, k, v)
            if {"width", "height", "frames", "steps"} & set(changes) and "draft" not in changes:
                job.draft = bool(job.overrides)
        self._commit(job_id)
        return old

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending job now, or ask the running one to stop (the worker sees it within
        one step). Returns False when the job is already finished or unknown."""
        with self._lock:
            job = self.get(job_id)
            if job is None or job.state.finished:
                return False
            if job.state is JobState.RUNNING:
                job.cancel_requested = True
                self.changed.emit(job_id)
                return True
            self._active.remove(job)
            self._finish(job, JobState.CANCELLED)
        self._commit(job_id)
        return True

    def cancel_all(self) -> int:
        """Cancel every pending job and the running one. Returns how many were affected."""
        n = 0
        with self._lock:
            for job in list(self._active):
                if job.state is JobState.RUNNING:
                    job.cancel_requested = True
                else:
                    self._active.remove(job)
                    self._finish(job, JobState.CANCELLED)
                n += 1
        self._commit(None)
        return n

    def pause(self) -> None:
        """Stop starting new jobs (the running one finishes)."""
        self._paused = True
        self._commit(None)

    def resume(self) -> None:
        self._paused = False
        self._commit(None)

    def clear_history(self) -> None:
        with self._lock:
            self._history.clear()
        self._commit(None)

    # -- the runner's side ----------------------------------------------------------------
    def start_next(self, limit: int = 1) -> Job | None:
        """Mark the first pending job running and return it (None when paused, empty, or when
        ``limit`` jobs already run: 1 for a local GPU, the number of servers for a farm)."""
        with self._lock:
            running = sum(1 for j in self._active if j.state is JobState.RUNNING)
            if self._paused or running >= max(1, limit):
                return None
            job = next((j for j in self._active if j.state is JobState.PENDING), None)
            if job is None:
                return None
            self._active.remove(job)
            self._active.insert(running, job)  # running jobs first, in the order they started
            job.state = JobState.RUNNING
            job.started_at = time.time()
            job.error = ""
            job.step, job.total, job.stage = 0, 0, "starting"
            job._gen_started = None
        self._commit(job.id)
        return job

    def interrupt(self, job_id: str) -> None:
        """Put the running job back at the head of the pending jobs (the app is closing or
        switching projects); it runs again later under the same take id."""
        self._back_to_pending(job_id, "interrupted; re-queued")

    def requeue(self, job_id: str, reason: str) -> None:
        """Put a running job back at the head of the pending jobs because of something that was
        not its own fault (the server running it went away): it runs again, on another server
        or later, under the same take id."""
        self._back_to_pending(job_id, f"re-queued: {reason}")

    def _back_to_pending(self, job_id: str, note: str) -> None:
        with self._lock:
            job = next((j for j in self._active if j.id == job_id), None)
            if job is None or job.state is not JobState.RUNNING:
                return
            job.state = JobState.PENDING
            job.requeued += 1
            job.started_at = None
            job.cancel_requested = False
            job.step = job.total = 0
            job.stage = job.where = ""
            job.notes.append(note)
            self._active.remove(job)  # first among the pending, after the jobs still running
            self._active.insert(sum(1 for j in self._active if j.state is JobState.RUNNING), job)
        self._commit(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        job = self.get(job_id)
        return job is None or job.cancel_requested

    def report(self, job_id: str, progress: Progress) -> None:
        with self._lock:
            job = self.get(job_id)
            if job is None or job.state is not JobState.RUNNING:
                return
            if progress.stage == PLACED:  # where it runs, not a step
                job.where = progress.message
                progress = Progress(job.step, job.total, job.stage)
            if progress.stage != job.stage or job._gen_started is None:
                if progress.stage == "generating":
                    job._gen_started = time.monotonic()
                    job._gen_step0 = progress.step
                elif job.stage == "generating":
                    job._gen_started = None
            job.step, job.total, job.stage = progress.step, progress.total, progress.stage
        self.progressed.emit(job_id)

    def finish(self, job_id: str, timings: dict[str, float] | None = None,
               notes: Iterable[str] = ()) -> None:
        self._end(job_id, JobState.DONE, "", timings, notes)

    def fail(self, job_id: str, error: str, timings: dict[str, float] | None = None) -> None:
        self._end(job_id, JobState.FAILED, error or "failed", timings, ())

    def mark_cancelled(self, job_id: str) -> None:
        self._end(job_id, JobState.CANCELLED, "", None, ())

    def _end(self, job_id: str, state: JobState, error: str, timings: dict[str, float] | None,
             notes: Iterable[str]) -> None:
        with self._lock:
            job = next((j for j in self._active if j.id == job_id), None)
            if job is None:
                return
            self._active.remove(job)
            job.error = error
            job.notes.extend(notes)
            if timings:
                job.timings.update(timings)
            self._finish(job, state)
        self._commit(job_id)

    def _finish(self, job: Job, state: JobState) -> None:
        job.state = state
        job.finished_at = time.time()
        job.cancel_requested = False
        self._history.append(job)
        del self._history[:-HISTORY_LIMIT]


# -- building jobs from shots -------------------------------------------------------------------

def random_seed(avoid: set[int]) -> int:
    while True:
        s = secrets.randbelow(SEED_MAX + 1)
        if s not in avoid:
            return s


def make_jobs(project: Project, shot_ids: Iterable[str], *, count: int = 1, reroll: bool = False,
              backend: str | None = None, model: str | None = None,
              draft: DraftOverrides | None = None, queue: JobQueue | None = None) -> list[Job]:
    """``count`` new jobs per shot.

    Seeds: a fixed-seed shot's plain "generate" uses the shot's seed (for its first take, or to
    re-make a take after a settings change); every re-roll, every further job of a batch and every
    job of a random-seed shot gets a new random seed, distinct from the shot's takes and the jobs
    already queued for it.
    """
    if count < 1:
        raise StudioError("the number of takes must be at least 1")
    jobs: list[Job] = []
    queued = queue.jobs() if queue is not None else []
    for sid in shot_ids:
        shot = project.shot(sid)
        if shot is None:
            raise StudioError(f"no shot with id {sid!r}")
        used = {t.seed for t in shot.takes} | {j.seed for j in queued if j.shot_id == sid}
        for i in range(count):
            fixed = (shot.seed_mode is SeedMode.FIXED and i == 0 and not reroll)
            seed = shot.seed if fixed else random_seed(used)
            used.add(seed)
            d = draft if draft is not None and draft.any else None
            jobs.append(Job(shot_id=sid, seed=seed, label=shot.title, backend=backend, model=model,
                            width=d.width if d else None, height=d.height if d else None,
                            frames=d.frames if d else None, steps=d.steps if d else None,
                            draft=d is not None, reroll=not fixed))
    return jobs
