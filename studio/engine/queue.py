"""The generation job queue: Qt-free, thread-safe, persisted in the project.

A :class:`Job` names a shot, the take id it will create, its seed, optional draft overrides and an
optional backend/model override; everything else is read from the shot when the job starts (so a
prompt fixed while the job waits is honoured). The queue keeps the running and pending jobs in
order plus a short history of finished ones. Loading it after a crash puts the interrupted
(running) job back at the head of the pending jobs. Progress updates are not persisted (they
change many times a second).

Persistence costs O(change), not O(queue): ``queue.json`` is a snapshot (written atomically) and
``queue.journal`` an append-only log, one fsynced JSON line per state change, replayed onto the
snapshot when loading. The journal is folded into a new snapshot when it outgrows
``COMPACT_RATIO`` times the snapshot (amortised O(1) bytes per change); a small queue is simply
rewritten whole on every change (bounded by ``SNAPSHOT_ALWAYS_BELOW`` bytes). Both files carry a
generation token: a snapshot is written with a new token before the journal is emptied, so a
kill at any moment leaves a loadable queue and a stale journal is never replayed onto a newer
snapshot; a torn last line (a kill mid-append) is ignored. Everything read is validated (regular
file, bounded size and depth, strict JSON, typed job fields, ids that can name files); a damaged
file or job is set aside with one line in :attr:`JobQueue.restore_notes`, never a traceback.
Before claiming a job the queue re-reads the files when another process changed them, so two
processes sharing a project never run one job twice.

Mutations normally happen on one thread (the UI thread, or the CLI's only thread); the worker
thread only reads :meth:`JobQueue.cancel_requested`. A lock makes every method safe anyway.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_bytes
from studio.core.document import Signal
from studio.core.errors import ProjectError, StudioError
from studio.core.model import Project, SeedMode, Shot, new_id
from studio.engine.base import Progress
from studio.core.tasks import PLACED

QUEUE_FILE = "queue.json"
JOURNAL_FILE = "queue.journal"
MAX_QUEUE_BYTES = 64 * 1024 * 1024  # a 2000-job queue is a few MB
MAX_JOURNAL_BYTES = 4 * MAX_QUEUE_BYTES
MAX_QUEUE_DEPTH = 16  # a job nests 3 levels deep; anything deeper is hostile
SNAPSHOT_ALWAYS_BELOW = 32 * 1024  # a snapshot this small is rewritten on every change
COMPACT_RATIO = 2.0  # fold the journal in when it is this many times the snapshot
FSYNC = True  # tests of byte counts turn it off; the app never does
DISK_FULL = "disk full (no space left on device) while writing this file"
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
        """A job read back from queue.json or its journal. Raises ValueError naming the field
        when anything is missing, of the wrong type or out of range (the file may be hostile:
        ids name files, so they must match the Take model's id pattern)."""
        if not isinstance(d, dict):
            raise ValueError("a job is not a JSON object")
        known = {f.name for f in fields(cls)} - set(cls._LIVE)
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("shot_id", "seed"):
            if key not in kw:
                raise ValueError(f"job without {key!r}")
        state = kw.get("state", "pending")
        if not isinstance(state, str) or state not in {s.value for s in JobState}:
            raise ValueError(f"job field 'state' has a bad value ({str(state)[:40]!r})")
        kw["state"] = JobState(state)
        try:
            job = cls(**kw)
        except TypeError as exc:
            raise ValueError(f"job cannot be built: {exc}") from None
        for name in ("shot_id", "take_id", "id"):
            v = getattr(job, name)
            if not isinstance(v, str) or not _ID.match(v):
                raise ValueError(f"job field {name!r} is not a valid id ({str(v)[:80]!r}): "
                                 "letters, digits, _ and - only, at most 64")
        if isinstance(job.seed, bool) or not isinstance(job.seed, int):
            raise ValueError("job has a malformed seed")
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


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


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
            and _finite(v) for k, v in job.timings.items()):
        raise bad("timings")
    for name in ("created_at", "started_at", "finished_at"):
        v = getattr(job, name)
        if (v is not None or name == "created_at") and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v)
                or not 0 <= v < 1e11):
            raise bad(name)
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


def _token() -> str:
    return secrets.token_hex(8)


def _sig(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _aside(path: Path) -> str:
    """Move a damaged ``path`` aside (``<name>.damaged-<time>``); the name it now has."""
    aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    try:
        os.replace(path, aside)
    except OSError:
        return path.name
    return aside.name


def _save_error(exc: OSError, path: Path) -> ProjectError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ProjectError(DISK_FULL, path)
    return ProjectError(f"cannot save the job queue: {exc.strerror or exc}", path)


@dataclass
class _DiskState:
    """What queue.json and queue.journal hold (before the interrupted jobs are re-queued)."""

    active: list[Job] = field(default_factory=list)
    history: list[Job] = field(default_factory=list)
    paused: bool = False
    generation: str | None = None
    snapshot_bytes: int = 0
    journal_bytes: int = 0  # the good prefix that was replayed (or skipped as stale)
    problems: list[str] = field(default_factory=list)
    dirty: bool = False  # damaged parts were left out: write a clean snapshot


def _jobs_of(raw: Any, what: str, path: Path, st: _DiskState) -> list[Job]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        st.problems.append(f"{path}: the saved queue's {what} could not be read (not a list); "
                           "they were left out")
        st.dirty = True
        return []
    out: list[Job] = []
    for i, d in enumerate(raw):
        try:
            out.append(Job.from_dict(d))
        except ValueError as exc:
            st.problems.append(f"{path}: job {i + 1} of the saved queue could not be read "
                               f"({exc}); it was left out")
            st.dirty = True
    return out


def _apply(st: _DiskState, rec: dict[str, Any]) -> None:
    """Replay one journal record onto ``st`` (ValueError when it is malformed)."""
    op = rec.get("op")
    if op == "paused":
        if not isinstance(rec.get("value"), bool):
            raise ValueError("bad pause record")
        st.paused = rec["value"]
    elif op == "clear":
        st.history.clear()
    elif op in ("put", "end"):
        job = Job.from_dict(rec.get("job"))
        st.active = [j for j in st.active if j.id != job.id]
        if op == "end":
            if not job.state.finished:
                raise ValueError("an ended job that is not finished")
            st.history = [j for j in st.history if j.id != job.id] + [job]
            del st.history[:-HISTORY_LIMIT]
            return
        if job.state.finished:
            raise ValueError("a queued job that is already finished")
        after = rec.get("after")
        if after is not None and not isinstance(after, str):
            raise ValueError("bad position")
        at = next((i + 1 for i, j in enumerate(st.active) if j.id == after), 0 if after is None
                  else len(st.active))
        st.active.insert(at, job)
    else:
        raise ValueError(f"unknown record {str(op)[:20]!r}")


def read_queue_files(path: Path) -> _DiskState:
    """The queue saved at ``path`` (and its journal). Raises nothing: damaged files are moved
    aside and described in ``problems``."""
    from studio.core import safeio

    path = Path(path)
    st = _DiskState()
    journal = path.with_name(JOURNAL_FILE)
    if os.path.lexists(path):
        try:
            raw = safeio.read_bounded(path, MAX_QUEUE_BYTES, ProjectError)
            data = safeio.parse_json(raw, path, MAX_QUEUE_DEPTH, ProjectError)
            if not isinstance(data, dict) or data.get("format") != QUEUE_FORMAT:
                fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
                raise ProjectError(f"unknown queue format {str(fmt)[:40]!r}", path)
            gen = data.get("generation")
            if gen is not None and not (isinstance(gen, str) and _ID.match(gen)):
                raise ProjectError("bad generation token", path)
            if not isinstance(data.get("paused", False), bool):
                raise ProjectError("'paused' is not true or false", path)
        except ProjectError as exc:
            st.problems.append(f"{exc}: the saved queue could not be read; it was kept as "
                               f"{_aside(path)} and the queue starts empty")
            if os.path.lexists(journal):  # a journal without its snapshot means nothing
                _aside(journal)
            return st
        st.generation = gen
        st.snapshot_bytes = len(raw)
        st.paused = data.get("paused", False)
        st.active = [j for j in _jobs_of(data.get("jobs"), "jobs", path, st)
                     if not j.state.finished]
        st.history = [j for j in _jobs_of(data.get("history"), "history", path, st)
                      if j.state.finished][-HISTORY_LIMIT:]
        seen: set[str] = set()
        for lst in (st.active, st.history):  # one job, one place: the first wins
            unique = []
            for j in lst:
                if j.id not in seen:
                    seen.add(j.id)
                    unique.append(j)
            lst[:] = unique
        if st.dirty:  # the file as it was stays for the user; a clean one replaces it
            kept = _aside(path)
            st.problems[:] = [f"{p} (the file as it was is kept as {kept})" for p in st.problems]
    if not os.path.lexists(journal):
        return st
    try:
        lines = safeio.read_bounded(journal, MAX_JOURNAL_BYTES, ProjectError)
    except ProjectError as exc:
        st.problems.append(f"{exc}: the queue's journal could not be read; it was kept as "
                           f"{_aside(journal)}")
        st.dirty = True
        return st
    pos = 0
    while pos < len(lines):
        end = lines.find(b"\n", pos)
        if end < 0:  # a torn last line: the process was killed while appending it
            st.dirty = True
            break
        try:
            rec = safeio.parse_json(lines[pos:end], journal, MAX_QUEUE_DEPTH, ProjectError)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            if st.generation is not None and rec.get("g") == st.generation:
                _apply(st, rec)
            # Any other token: written before the snapshot was last rewritten, already in it.
        except (ProjectError, ValueError) as exc:
            line_no = lines.count(b"\n", 0, pos) + 1
            st.problems.append(f"{journal}: line {line_no} could not be "
                               f"read ({exc}); the queue is restored up to the line before it")
            st.dirty = True
            break
        pos = end + 1
    st.journal_bytes = pos
    return st


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
        # Messages for the user from load() (restored jobs, an unreadable file or job).
        self.restore_notes: list[str] = []
        # Persistence: the snapshot's token and size, the journal's size, and what the files
        # looked like after our own last write (another process's writes show as a change).
        self._generation: str | None = None
        self._snapshot_bytes = 0
        self._journal_bytes = 0
        self._needs_snapshot = True  # nothing written yet, or a write failed half-way
        self._disk: tuple[Any, Any] | None = None
        self.bytes_written = 0  # queue.json + queue.journal bytes, for the scale bench
        self.save_error: ProjectError | None = None  # a deferred failure to save (see _end)

    @property
    def journal_path(self) -> Path | None:
        return self.path.with_name(JOURNAL_FILE) if self.path is not None else None

    @property
    def problems(self) -> list[str]:
        """One line per thing the user should know about the saved queue (the CLI and the
        session print them)."""
        return list(self.restore_notes)

    # -- persistence ----------------------------------------------------------------------
    @classmethod
    def for_project(cls, folder: Path) -> "JobQueue":
        return cls.load(Path(folder) / QUEUE_FILE)

    @classmethod
    def load(cls, path: Path) -> "JobQueue":
        """The queue saved at ``path`` (empty when there is none). Never raises for a damaged
        file: it is moved aside and the user is told."""
        q = cls(path)
        st = read_queue_files(Path(path))
        q.restore_notes.extend(st.problems)
        q._adopt(st)
        interrupted = [j for j in q._active if j.state is JobState.RUNNING]
        for j in interrupted:
            j.state = JobState.PENDING
            j.requeued += 1
            j.started_at = None
            j.notes.append("interrupted (the app stopped while it ran); re-queued")
        q._active = interrupted + [j for j in q._active if j.state is JobState.PENDING
                                   and j not in interrupted]
        pending = len(q._active)
        if pending:
            msg = f"restored {pending} queued job{'s' if pending != 1 else ''}"
            if interrupted:
                msg += (f"; {len(interrupted)} interrupted job{'s were' if len(interrupted) != 1 else ' was'}"
                        " re-queued at the front")
            if q._paused:
                msg += " (the queue is paused)"
            q.restore_notes.append(msg)
        # A snapshot without a token (written before the journal existed) is rewritten at the
        # first change: journal records must name the snapshot they follow.
        q._needs_snapshot = q._needs_snapshot or bool(interrupted or st.dirty)
        if (interrupted or st.dirty) and (q._active or q._history or q._paused
                                           or os.path.lexists(Path(path))):
            try:
                q.save()
            except ProjectError as exc:  # read-only folder: the queue still runs in memory
                q.restore_notes.append(str(exc))
        return q

    def _adopt(self, st: _DiskState) -> None:
        self._active, self._history, self._paused = st.active, st.history, st.paused
        self._generation = st.generation
        self._snapshot_bytes, self._journal_bytes = st.snapshot_bytes, st.journal_bytes
        self._needs_snapshot = st.generation is None
        self._disk = self._disk_now()

    def _disk_now(self) -> tuple[Any, Any] | None:
        if self.path is None:
            return None
        return (_sig(self.path), _sig(self.journal_path))  # type: ignore[arg-type]

    def _refresh(self) -> None:
        """Re-read the files when another process wrote them since our last write (the files
        are the truth): a job it claimed is never claimed here too. Our own jobs keep their
        live state (progress, cancel requests)."""
        if self.path is None or self._disk is None or self._disk_now() == self._disk:
            return
        st = read_queue_files(self.path)
        if st.problems:
            self.restore_notes.extend(st.problems)
        mine = {j.id: j for j in self._active + self._history}
        persisted = [f.name for f in fields(Job) if f.name not in Job._LIVE]

        def keep(job: Job) -> Job:
            old = mine.get(job.id)
            if old is None:
                return job
            for name in persisted:
                setattr(old, name, getattr(job, name))
            return old

        st.active = [keep(j) for j in st.active]
        st.history = [keep(j) for j in st.history]
        self._adopt(st)
        if st.dirty:
            self._needs_snapshot = True

    def _sync(self) -> None:
        """Before a change: adopt what another process wrote (unless our own state is ahead of
        the files because a write failed)."""
        if self._needs_snapshot or self.save_error is not None:
            return
        try:
            self._refresh()
        except Exception as exc:  # noqa: BLE001 - a refresh that fails keeps our state
            self.restore_notes.append(f"the saved queue could not be re-read: {exc}")

    def save(self) -> None:
        """Write the whole queue as a new snapshot and empty the journal (atomically: a kill
        at any moment leaves the old snapshot with its journal, or the new one)."""
        if self.path is None:
            return
        with self._lock:
            gen = _token()
            data = {"format": QUEUE_FORMAT, "generation": gen, "paused": self._paused,
                    "jobs": [j.to_dict() for j in self._active],
                    "history": [j.to_dict() for j in self._history]}
            text = (json.dumps(data, indent=1, allow_nan=False) + "\n").encode("utf-8")
            try:
                atomic_write_bytes(self.path, text)
                journal = self.journal_path
                assert journal is not None
                if os.path.lexists(journal):
                    # Its records carry the old token now: stale, never replayed.
                    os.truncate(journal, 0)
            except OSError as exc:
                self._needs_snapshot = True
                raise _save_error(exc, self.path) from None
            self.bytes_written += len(text)
            self._generation, self._snapshot_bytes, self._journal_bytes = gen, len(text), 0
            self._needs_snapshot = False
            self.save_error = None
            self._disk = self._disk_now()

    def _append(self, records: list[dict[str, Any]]) -> None:
        journal = self.journal_path
        assert journal is not None
        data = b"".join(json.dumps({"g": self._generation, **r}, separators=(",", ":"),
                                   allow_nan=False).encode("utf-8") + b"\n" for r in records)
        try:
            fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if FSYNC:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._needs_snapshot = True  # a half-written line: the next change rewrites all
            raise _save_error(exc, journal) from None
        self.bytes_written += len(data)
        self._journal_bytes += len(data)
        self._disk = self._disk_now()

    def _persist(self, records: list[dict[str, Any]]) -> None:
        if self.path is None:
            return
        with self._lock:
            if (self._needs_snapshot or self._generation is None
                    or self._snapshot_bytes < SNAPSHOT_ALWAYS_BELOW):
                self.save()
                return
            if not records:  # nothing changed on disk
                return
            self._append(records)
            if self._journal_bytes > COMPACT_RATIO * self._snapshot_bytes:
                self.save()

    def _put(self, job: Job) -> dict[str, Any]:
        """The record that places ``job`` where it now is among the running and pending."""
        i = next(k for k, j in enumerate(self._active) if j is job)
        return {"op": "put", "job": job.to_dict(),
                "after": self._active[i - 1].id if i else None}

    def _commit(self, job_id: str | None, records: list[dict[str, Any]] | None = None) -> None:
        try:
            self._persist(records or [])
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
            self._sync()
            for j in items:
                if j.state is not JobState.PENDING:
                    raise ValueError("only pending jobs can be queued")
            if front:
                at = sum(1 for j in self._active if j.state is JobState.RUNNING)
                self._active[at:at] = items
            else:
                self._active.extend(items)
            records = [self._put(j) for j in items]
        self._commit(None, records)
        return items

    def move(self, job_id: str, to_position: int) -> None:
        """Move a pending job to ``to_position`` (0-based among pending jobs)."""
        with self._lock:
            self._sync()
            pend = [j for j in self._active if j.state is JobState.PENDING]
            job = next((j for j in pend if j.id == job_id), None)
            if job is None:
                raise StudioError("only a pending job can be moved")
            pend.remove(job)
            to_position = max(0, min(to_position, len(pend)))
            pend.insert(to_position, job)
            self._active = [j for j in self._active if j.state is not JobState.PENDING] + pend
            records = [self._put(job)]
        self._commit(job_id, records)

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
            self._sync()
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
            records = [self._put(job)]
        self._commit(job_id, records)
        return old

    def cancel(self, job_id: str) -> bool:
        """Cancel a pending job now, or ask the running one to stop (the worker sees it within
        one step). Returns False when the job is already finished or unknown."""
        with self._lock:
            self._sync()
            job = self.get(job_id)
            if job is None or job.state.finished:
                return False
            if job.state is JobState.RUNNING:
                job.cancel_requested = True
                self.changed.emit(job_id)
                return True
            self._active.remove(job)
            records = [self._finish(job, JobState.CANCELLED)]
        self._commit(job_id, records)
        return True

    def cancel_all(self) -> int:
        """Cancel every pending job and the running one. Returns how many were affected."""
        n = 0
        records: list[dict[str, Any]] = []
        with self._lock:
            self._sync()
            for job in list(self._active):
                if job.state is JobState.RUNNING:
                    job.cancel_requested = True
                else:
                    self._active.remove(job)
                    records.append(self._finish(job, JobState.CANCELLED))
                n += 1
        self._commit(None, records)
        return n

    def pause(self) -> None:
        """Stop starting new jobs (the running one finishes)."""
        with self._lock:
            self._sync()
            self._paused = True
        self._commit(None, [{"op": "paused", "value": True}])

    def resume(self) -> None:
        with self._lock:
            self._sync()
            self._paused = False
        self._commit(None, [{"op": "paused", "value": False}])

    def clear_history(self) -> None:
        with self._lock:
            self._sync()
            self._history.clear()
        self._commit(None, [{"op": "clear"}])

    # -- the runner's side ----------------------------------------------------------------
    def start_next(self, limit: int = 1) -> Job | None:
        """Mark the first pending job running and return it (None when paused, empty, or when
        ``limit`` jobs already run: 1 for a local GPU, the number of servers for a farm)."""
        with self._lock:
            self._sync()
            if self.save_error is not None:
                self.save()  # the deferred save first: raises when the disk is still full
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
            try:
                self._persist([self._put(job)])
            except ProjectError:
                # Not claimed when the claim cannot be recorded: undo it (the error says why).
                job.state, job.started_at, job.stage = JobState.PENDING, None, ""
                raise
            finally:
                self.changed.emit(job.id)
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
            self._sync()
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
            records = [self._put(job)]
        self._commit(job_id, records)

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
            self._sync()
            job = next((j for j in self._active if j.id == job_id), None)
            if job is None:
                return
            self._active.remove(job)
            job.error = error
            job.notes.extend(notes)
            if timings:
                job.timings.update(timings)
            records = [self._finish(job, state)]
        try:
            self._commit(job_id, records)
        except ProjectError as exc:
            # The job's own outcome (often the very same full disk, on its take) is the news:
            # this save is retried with the next change and reported then, never in its place.
            self.save_error = exc

    def _finish(self, job: Job, state: JobState) -> dict[str, Any]:
        job.state = state
        job.finished_at = time.time()
        job.cancel_requested = False
        self._history.append(job)
        del self._history[:-HISTORY_LIMIT]
        return {"op": "end", "job": job.to_dict()}


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


def bookkeeping_run(folder: Path, n_jobs: int) -> float:
    """Seconds the queue's own bookkeeping takes for ``n_jobs`` jobs in ``folder`` (for
    ``bench scale``): each job added as a render queues it, then every job through its states
    (queued → running → done) as a render moves it, with every change persisted."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    q = JobQueue.load(folder / QUEUE_FILE)
    for i in range(n_jobs):
        q.add(Job(shot_id=f"shot{i % 97}", seed=i, label=f"Shot {i}"))
    while (job := q.start_next()) is not None:
        q.finish(job.id, {"total_s": 0.0})
    return time.perf_counter() - t0
