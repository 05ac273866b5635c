"""The open project at work: its document, its job queue, its analyses, and one event stream.

A :class:`Session` is owned by one thread (the UI thread in the app, the main thread in the CLI):
every method is called there. The slow parts run elsewhere and come back through it:

* generation: :meth:`Session.next_job` builds the next job's frozen request from its shot;
  :func:`~studio.engine.runner.execute_job` runs it (worker); :meth:`Session.job_done` /
  :meth:`job_failed` / :meth:`job_cancelled` record the outcome, insert the take and, when
  ``analyze_new_takes`` is on, queue its identity analysis;
* analysis: :meth:`Session.next_analysis` snapshots what the worker needs;
  :func:`run_analysis` runs it (worker); :meth:`Session.analysis_done` stores the score on the
  take and makes the analysis index forget its cached record.

"Take done → analyse → store the score" therefore exists once, here; the CLI drives it
synchronously with :meth:`Session.run_jobs` / :meth:`Session.run_analyses`, the app drives the
same methods from worker threads (``studio.ui.generation``).

Two kinds of change reach the document: the user's edits (undoable commands in the UI) and
derived writes made here — a generated take inserted, a score stored on a take, takes recovered
after a crash. Derived writes are never on the undo stack (undoing an edit must not delete a
render); each is announced as a :mod:`studio.session.events` event instead.
"""

from __future__ import annotations

import atexit
import json
import threading
import traceback
import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.document import ProjectDocument
from studio.core.errors import ProjectError, StudioError, error_text
from studio.core.lock import ProjectLock, ProjectLocked, held_here, read_holder
from studio.core.model import Project, Shot, Take
from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn
from studio.engine.queue import (GAVE_UP, DraftOverrides, Job, JobQueue, JobState, make_jobs,
                                 random_seed)
from studio.session import events as ev
from studio.session.analyses import AnalysisIndex

if TYPE_CHECKING:
    from studio.engine.runner import JobResult, JobSpec
    from studio.identity.engines import FaceEngine


class ReadOnlySession(ProjectError):
    """A write asked of a session that opened its project read-only (or was taken over by a
    newer session of this process): nothing is written to project.json, the queue or takes."""


PROGRAM = "Continuity Studio"
# Under the lock no other program writes the project; an encoder of this process touches its
# temp file every frame, so a temp file a minute old is debris.
DEBRIS_AGE_UNDER_LOCK_S = 60.0
# The session of this process that writes each project (resolved folder -> session). A newer
# session on the same project takes the writer's role (and the lock) over from an older one.
_WRITERS: "dict[Path, weakref.ref[Session]]" = {}
_WRITERS_GUARD = threading.Lock()


def _release_all_at_exit() -> None:
    """The kernel drops a dead process's flock anyway; releasing here also clears the lock
    file's words, so nobody reads a finished process's name as the holder."""
    with _WRITERS_GUARD:
        sessions = [ref() for ref in _WRITERS.values()]
    for session in sessions:
        if session is not None and session._lock is not None:
            session._release()


atexit.register(_release_all_at_exit)


def _writer_of(key: Path) -> "Session | None":
    with _WRITERS_GUARD:
        ref = _WRITERS.get(key)
    session = ref() if ref is not None else None
    return session if session is not None and session._lock is not None else None


def _claim(folder: Path, *, read_only: bool | None, lock_wait: float, take_over: bool,
           program: str) -> tuple[ProjectLock | None, str]:
    """(the writer's lock, "") for ``folder``; (None, why) for a read-only session; (None, "")
    for a session whose caller manages the lock.

    ``read_only`` True: no lock, read-only. False: the lock, or :class:`ProjectLocked` naming its
    holder. None: no lock taken here (the window takes its own, :mod:`studio.ui.project_lock`,
    and shows read-only mode itself). A lock this process already holds is shared rather than
    refused (flock would refuse our own second descriptor): a newer session takes it over from
    an older one, unless ``take_over`` is False (a second window), which gets ProjectLocked."""
    if read_only:
        return None, "opened read-only"
    if read_only is None:
        return None, ""
    held = held_here(folder)
    if held is not None and held.held:
        if not take_over and _writer_of(folder.resolve()) is not None:
            raise ProjectLocked(folder, read_holder(folder))
        return held, ""
    return ProjectLock(folder, program).acquire(wait_s=lock_wait), ""


@dataclass(frozen=True)
class AnalysisJob:
    """What the analysis worker needs: deep copies, since the document may change meanwhile."""

    folder: Path
    project: Project
    shot: Shot
    take: Take
    force: bool = False
    engine: Any = None  # a FaceEngine, or None for the default one


def run_analysis(job: AnalysisJob, on_progress: ProgressFn | None = None,
                 cancelled: CancelledFn | None = None) -> dict[str, Any]:
    """Analyse one take (worker thread): writes its analysis record, returns the summary."""
    from studio.identity.api import analyze_take

    return analyze_take(job.folder, job.project, job.shot, job.take, on_progress, cancelled,
                        engine=job.engine, force=job.force)


MAX_REQUEUES = 5  # a job whose server keeps disappearing fails after this many re-queues
# "Generate until identity ≥ T": T defaults to the face engine's same-person threshold plus this
# margin (a take just at the threshold is as likely to be flagged on some frames as not), and a
# series makes at most this many takes unless told otherwise.
UNTIL_MARGIN = 0.05
UNTIL_MAX_TAKES = 4
# A take that is judged another person on more than this share of its face frames never holds
# the face, whatever its mean: a take that turns into someone else two thirds of the way
# through can still average above the threshold.
UNTIL_MAX_OTHER = 0.05


class RepeatPolicy(str, Enum):
    """What :meth:`Session.add_jobs` does with a job that would repeat a take exactly."""

    NOTE = "note"  # queue it and say so (a Note event): the CLI, scripts
    ALLOW = "allow"  # queue it silently: the user was asked and chose "Generate anyway"
    NEW_SEED = "new_seed"  # give it a new random seed, as a re-roll would


@dataclass(frozen=True)
class Repeat:
    """A job that would make a take identical to one that exists or is already on its way:
    same shot, same seed and the same generation settings (backend, model, prompt, negative
    prompt, start image, size, frames, fps, steps, guidance, LoRAs, params)."""

    job: Job
    shot_title: str
    take_id: str | None = None  # the existing take it repeats …
    take_number: int | None = None  # … as the takes list numbers it (1-based)
    job_id: str | None = None  # … or the queued job it repeats

    @property
    def what(self) -> str:
        if self.take_number is not None:
            return f"take {self.take_number} of '{self.shot_title}'"
        return f"a take of '{self.shot_title}' that is already queued"

    @property
    def text(self) -> str:
        return f"This would repeat {self.what} exactly (same seed {self.job.seed} and settings)"


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (job id, error)
    cancelled: list[str] = field(default_factory=list)
    analysis_failed: list[tuple[str, str]] = field(default_factory=list)  # (take id, error)
    gave_up: list[tuple[str, str]] = field(default_factory=list)  # (job id, reason)
    series: list[ev.SeriesFinished] = field(default_factory=list)


class Session:
    """The open project at work. One writer per project: a session that writes its project holds
    the project's lock (:mod:`studio.core.lock`) from construction to :meth:`close`.

    ``read_only``: True never writes the folder (no lock, the queue is shown but never saved);
    False takes the lock (waiting up to ``lock_wait`` seconds) or raises :class:`ProjectLocked`
    naming its holder (the CLI's writers); None (the default) leaves the lock to the caller (the
    window holds it itself and passes True when it opened the project read-only).
    """

    def __init__(self, document: ProjectDocument, *, queue: JobQueue | None = None,
                 analyze_new_takes: bool = True, engine: "FaceEngine | None" = None,
                 save_after_take: bool = False, read_only: bool | None = None,
                 lock_wait: float = 0.0, take_over: bool = True, program: str = PROGRAM,
                 _claimed: tuple[ProjectLock | None, str] | None = None) -> None:
        from studio.runtime.backend import register

        self._lock: ProjectLock | None = None
        self.read_only_reason = ""
        if document.folder is not None:
            # Before the queue is read: a waiting writer must see the holder's last queue.
            lock, why = _claimed if _claimed is not None else _claim(
                Path(document.folder), read_only=read_only, lock_wait=lock_wait,
                take_over=take_over, program=program)
            self._lock, self.read_only_reason = lock, why
        register()  # the GPU runtime serves "diffusers" jobs whenever it is installed
        self.events = ev.EventStream()
        self.analyze_new_takes = analyze_new_takes
        self.save_after_take = save_after_take  # the CLI: a kill loses at most the running job
        self.engine = engine  # None: the default face engine (studio.identity.engines)
        self.document = document
        if queue is None:
            if document.folder is None:
                queue = JobQueue()
            elif self.read_only:
                queue = _read_only_queue(Path(document.folder))
            else:
                queue = JobQueue.for_project(document.folder)
        elif self.read_only:
            queue.path = None  # a read-only session never saves the queue it was given
        self.queue = queue
        self.analyses = AnalysisIndex(self)
        self._analysis_queue: deque[tuple[str, str, bool]] = deque()
        self.analysing: str | None = None  # take id being analysed
        self._told_repeat: set[str] = set()  # jobs whose repeat was announced or accepted
        self._series_waiting: dict[str, str] = {}  # take id -> the series job that made it
        self.restore_notes = [_sentence(t) + "." for t in queue.restore_notes]
        if self.read_only and document.folder is not None:
            self.restore_notes.append(_sentence(self.read_only_reason) + ".")
        document.saved.connect(self._on_saved)
        if self._lock is not None:
            self._become_writer(Path(document.folder))  # type: ignore[arg-type]
        if document.folder is not None and not self.read_only and (
                self._lock is not None or held_here(Path(document.folder)) is not None):
            self._clean_debris(Path(document.folder))

    @staticmethod
    def _clean_debris(folder: Path) -> None:
        """Remove the temp files killed writes left in the project (a render killed mid-take
        leaves ``takes/<shot>/.<take>.<random>.part``; a killed save a ``.tmp``). Only the
        writer holding the project's lock does it, so no other program is writing them; the
        age rule still spares a write of this very process that is in progress."""
        from studio.core.atomic import remove_debris
        from studio.core.persistence import ANALYSIS_DIR, TAKES_DIR

        remove_debris(folder, min_age_s=DEBRIS_AGE_UNDER_LOCK_S)
        remove_debris(folder / TAKES_DIR, min_age_s=DEBRIS_AGE_UNDER_LOCK_S, recursive=True)
        remove_debris(folder / ANALYSIS_DIR, min_age_s=DEBRIS_AGE_UNDER_LOCK_S)

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Path, **kw: Any) -> "Session":
        """Load the project in ``folder`` (or its project.json) with its saved queue. A writer
        takes the lock before reading project.json: after a wait it reads the holder's last
        save, never a copy from before it (which would drop the holder's takes when saved)."""
        from studio.core.persistence import load_project, project_file

        path = project_file(folder)
        shared = held_here(path.parent)
        claimed = _claim(path.parent, read_only=kw.pop("read_only", None),
                         lock_wait=kw.pop("lock_wait", 0.0), take_over=kw.pop("take_over", True),
                         program=kw.pop("program", PROGRAM))
        try:
            document = ProjectDocument(load_project(path), path.parent)
        except BaseException:
            if claimed[0] is not None and claimed[0] is not shared:
                claimed[0].release()  # taken for this open only: nobody else shares it
            raise
        return cls(document, _claimed=claimed, **kw)

    @property
    def folder(self) -> Path | None:
        return Path(self.document.folder) if self.document.folder is not None else None

    @property
    def read_only(self) -> bool:
        """True when this session never writes its project (opened so, closed, or taken over
        by a newer session of this process)."""
        return bool(self.read_only_reason)

    @property
    def lock(self) -> ProjectLock | None:
        return self._lock

    def _become_writer(self, folder: Path) -> None:
        """Register as the project's writer; an older session of this process on it becomes
        read-only (its writes are refused from now on)."""
        key = folder.resolve()
        with _WRITERS_GUARD:
            ref = _WRITERS.get(key)
            _WRITERS[key] = weakref.ref(self)
        older = ref() if ref is not None else None
        if older is not None and older is not self:
            older._demote("a newer session of this process took the project over",
                          detach_queue=older.queue is not self.queue)

    def _demote(self, why: str, detach_queue: bool = True) -> None:
        self._lock = None  # not released: the newer session holds it now
        self.read_only_reason = why
        if detach_queue:  # its queue stays on screen but is never saved over the newer one's
            self.queue.path = None

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        key = lock.folder.resolve()
        with _WRITERS_GUARD:
            ref = _WRITERS.get(key)
            if ref is not None and ref() in (self, None):
                del _WRITERS[key]
        lock.release()

    def close(self) -> None:
        """Stop: the project's lock is released (a newer session of this process that took
        it over keeps it)."""
        try:
            self.document.saved.disconnect(self._on_saved)
        except ValueError:
            pass
        self.analyses.close()
        self._analysis_queue.clear()
        if self._lock is not None:
            self._release()
            self.read_only_reason = "closed"  # nothing more is written once the lock is gone

    shutdown = close

    def _refuse(self, what: str) -> None:
        """Raise :class:`ReadOnlySession` when this session may not write its project."""
        if self.read_only:
            from studio.core.persistence import PROJECT_FILE

            raise ReadOnlySession(f"cannot {what}: the project is {_read_only_words(self)}",
                                  Path(self.document.folder) / PROJECT_FILE)  # type: ignore[arg-type]

    def _on_saved(self, _path: object = None) -> None:
        """Save As moves the project (and its copied queue.json) to another folder: new jobs
        and their takes must land there, so the session follows with the queue saved there
        and writes it under that folder's lock."""
        from studio.engine.queue import QUEUE_FILE

        folder = self.folder
        if folder is None or self.read_only or self.queue.path == folder / QUEUE_FILE:
            return
        old, old_lock = self.queue, self._lock
        if old_lock is None:  # the caller manages the lock (the window): follow, as ever
            self.queue = JobQueue.for_project(folder)
            self.events.emit(ev.QueueMoved(old))
            return
        try:
            lock, why = _claim(folder, read_only=False, lock_wait=0.0, take_over=True,
                               program=old_lock.program)
        except StudioError as exc:
            lock, why = None, str(exc)
        if old_lock is not lock:
            self._release()
        self._lock, self.read_only_reason = lock, why
        if lock is None:
            self.queue = _read_only_queue(folder)
            self.note(f"the saved copy is {_read_only_words(self)}")
        else:
            self._become_writer(folder)
            self.queue = JobQueue.for_project(folder)
        self.events.emit(ev.QueueMoved(old))

    def note(self, text: str) -> None:
        self.events.emit(ev.Note(_sentence(text)))

    def recover_takes(self) -> list[tuple[str, str]]:
        """Re-add finished takes the project does not list yet (the app or a render stopped
        before saving). A derived write: announced, never undoable."""
        from studio.engine.takes import recover_takes

        if self.document.folder is None or self.read_only:
            return []  # recovering is a write; the writer that holds the project does it
        try:
            found = recover_takes(self.document)
            found += self._recover_unrecorded_takes()
        except StudioError as exc:
            self.note(f"could not check for unsaved takes: {exc}")
            return []
        if found:
            self.events.emit(ev.TakesRecovered(tuple(t for _s, t in found)))
        return found

    def _recover_unrecorded_takes(self) -> list[tuple[str, str]]:
        """Takes on disk made by a job the queue still lists as unfinished (its render stopped
        between writing the take and recording it). Such a take was never listed, so it cannot
        have been deleted, however old it is next to the project's last save: the timestamp
        rule of :func:`~studio.engine.takes.recover_takes` would otherwise drop it and the job
        would run a second time over it."""
        from studio.core.model import Take
        from studio.engine.takes import read_sidecar, take_files

        folder = Path(self.document.folder)  # type: ignore[arg-type]
        project = self.document.project
        found: list[tuple[str, str]] = []
        shots = {s.id: s for s in project.shots}
        listed = {t.id for s in project.shots for t in s.takes}
        for job in self.queue.pending():
            shot = shots.get(job.shot_id)
            if shot is None or job.take_id in listed:
                continue
            try:
                video, sidecar = take_files(folder, job.shot_id, job.take_id)
                if not (sidecar.is_file() and video.is_file()):
                    continue
                take = Take.model_validate(read_sidecar(sidecar)["take"])
            except Exception:  # noqa: BLE001 - a damaged or hostile sidecar: the job runs again
                continue
            if take.id != job.take_id or (folder / take.video).resolve() != video:
                continue
            self.document.insert_take(job.shot_id, take)
            listed.add(take.id)
            found.append((job.shot_id, take.id))
        return found

    # -- generation: queueing -------------------------------------------------------------------
    def queue_takes(self, shot_ids: list[str], *, count: int = 1, reroll: bool = False,
                    front: bool = False, draft: DraftOverrides | None = None,
                    backend: str | None = None, model: str | None = None,
                    repeats: RepeatPolicy = RepeatPolicy.NOTE) -> list[Job]:
        """Queue ``count`` takes of each shot (re-rolls get new random seeds). A job that would
        repeat a take exactly is handled as ``repeats`` says (by default queued and announced)."""
        jobs = self.plan_takes(shot_ids, count=count, reroll=reroll, draft=draft,
                               backend=backend, model=model)
        return self.add_jobs(jobs, front=front, repeats=repeats)

    def plan_takes(self, shot_ids: list[str], *, count: int = 1, reroll: bool = False,
                   draft: DraftOverrides | None = None, backend: str | None = None,
                   model: str | None = None) -> list[Job]:
        """The jobs :meth:`queue_takes` would queue, not queued yet (check them with
        :meth:`find_repeats`, then :meth:`add_jobs`)."""
        if not shot_ids:
            raise StudioError("select a shot first")
        if self.document.folder is None:
            raise StudioError("save the project before generating (takes are stored in its "
                              "folder)")
        for sid in shot_ids:
            if self.document.project.shot(sid) is None:
                raise StudioError(f"no shot with id {sid!r}")
        return make_jobs(self.document.project, shot_ids, count=count, reroll=reroll,
                         draft=draft, backend=backend, model=model, queue=self.queue)

    def add_jobs(self, jobs: list[Job], *, front: bool = False,
                 repeats: RepeatPolicy = RepeatPolicy.NOTE) -> list[Job]:
        """Queue planned jobs. Repeats (:meth:`find_repeats`) get a new seed, are announced or
        are queued as they are, as ``repeats`` says: never silently unless the caller asked."""
        self._refuse("queue takes")
        found = self.find_repeats(jobs)
        if found and repeats is RepeatPolicy.NEW_SEED:
            for r in found:
                self._reseed(r.job, jobs)
            found = []
        self.queue.add(jobs, front=front)
        self.events.emit(ev.JobQueued(tuple(j.id for j in jobs)))
        for r in found:
            if repeats is RepeatPolicy.ALLOW:
                self._told_repeat.add(r.job.id)  # the user chose it: not said again at start
            else:  # also said again when it starts (a CLI listening only from then on hears it)
                self.note(f"{r.text}; queued anyway (a re-roll gives a new seed)")
        return jobs

    # -- generation: until the face holds ---------------------------------------------------
    def default_until_threshold(self) -> float:
        """The identity a "generate until" series asks for by default: the face engine's
        same-person threshold plus :data:`UNTIL_MARGIN`."""
        engine = self.engine
        if engine is None:
            from studio.identity.engines import get_engine

            engine = get_engine()
        return round(min(0.99, float(engine.threshold) + UNTIL_MARGIN), 3)

    def queue_until(self, shot_ids: list[str], *, front: bool = False, **kw: Any) -> list[Job]:
        """Queue a "generate until identity ≥ threshold (at most max_takes takes)" series for
        each shot (:meth:`plan_until` takes the same keywords): one job now; after each take's
        analysis the session queues the next seed, until a take holds the face or the tries
        run out (:class:`~studio.session.events.SeriesFinished`)."""
        return self.add_jobs(self.plan_until(shot_ids, **kw), front=front,
                             repeats=RepeatPolicy.NEW_SEED)

    def plan_until(self, shot_ids: list[str], *, threshold: float | None = None,
                   max_takes: int = UNTIL_MAX_TAKES, give_up: bool = False,
                   draft: DraftOverrides | None = None, backend: str | None = None,
                   model: str | None = None) -> list[Job]:
        """The first job of a series per shot, not queued yet (ask about paid workflows, then
        :meth:`add_jobs` with ``RepeatPolicy.NEW_SEED``). ``give_up``: give a take up early
        when its live previews show another person (a try spent, the next seed follows)."""
        if threshold is None:
            threshold = self.default_until_threshold()
        if not 0.0 < float(threshold) <= 1.0:
            raise StudioError(f"the identity to reach must lie between 0 and 1, not {threshold}")
        if not 1 <= int(max_takes) <= 100:
            raise StudioError(f"the number of takes must be from 1 to 100, not {max_takes}")
        project = self.document.project
        for sid in shot_ids:
            shot = project.shot(sid)
            char = project.character(shot.character_id) if shot is not None else None
            if shot is not None and (char is None or not char.references):
                raise StudioError(f"shot {shot.title!r} needs a character with bible references "
                                  "to generate until its face holds")
        jobs: list[Job] = []
        for sid in shot_ids:
            shot = project.shot(sid)
            [job] = self.plan_takes([sid], reroll=bool(shot.takes) if shot else False,
                                    draft=draft, backend=backend, model=model)
            job.until_identity, job.max_takes = float(threshold), int(max_takes)
            job.attempt, job.series, job.early_stop = 1, job.id, bool(give_up)
            job.series_active = shot.active_take_id if shot is not None else None
            jobs.append(job)
        return jobs

    def queue_segment(self, shot_id: str, take_id: str, index: int, *,
                      front: bool = False) -> Job:
        """Re-make segment ``index`` of a chained take with a new seed, keeping its other
        segments: the result is a new take of the shot (the old one stays)."""
        [job] = self.add_jobs([self.plan_segment(shot_id, take_id, index)], front=front)
        return job

    def plan_segment(self, shot_id: str, take_id: str, index: int) -> Job:
        """The job :meth:`queue_segment` would queue, not queued yet: the take's backend, model
        and draft size, a seed none of the shot's takes, segments or jobs uses."""
        from studio.engine.takes import read_sidecar, sidecar_segments

        shot = self.document.project.shot(shot_id)
        take = shot.take(take_id) if shot is not None else None
        folder = self.folder
        if shot is None or take is None or take.sidecar is None or folder is None:
            raise StudioError("that take is no longer in the project")
        side = read_sidecar(folder / take.sidecar)
        segments = sidecar_segments(side, take.frames)
        if not 0 <= index < len(segments):
            raise StudioError(f"take {take.id} has {len(segments) or 'no'} segments; there is "
                              f"no segment {index + 1} to re-make")
        used = {t.seed for t in shot.takes} | {s.seed for s in segments}
        used |= {j.seed for j in self.queue.jobs() if j.shot_id == shot_id}
        overrides = side.get("draft_overrides") if isinstance(side.get("draft_overrides"), dict) else {}
        size = {k: v for k, v in overrides.items() if k in ("width", "height", "frames", "steps")
                and isinstance(v, int) and not isinstance(v, bool) and v >= 1}
        return Job(shot_id=shot_id, seed=random_seed(used), label=shot.title,
                   backend=take.backend, model=take.model, draft=take.draft, reroll=True,
                   segment={"take_id": take.id, "index": int(index)}, **size)

    def _series_step(self, job: Job, take_id: str | None, identity: float | None,
                     failure: str = "") -> None:
        """After a try of a series (its take analysed, given up, or failed): stop, or queue
        the next seed at the head of the queue."""
        if job.until_identity is None or job.series is None:
            return
        takes = list(job.series_takes) + ([take_id] if take_id else [])
        met = take_id is not None and self.holds_face(take_id, job.until_identity, identity)
        last = job.attempt >= (job.max_takes or 1)
        if met or last or failure:
            self._series_finish(job, takes, met, failure)
            return
        shot = self.document.project.shot(job.shot_id)
        if shot is None:
            self._series_finish(job, takes, False, "its shot was deleted")
            return
        used = {t.seed for t in shot.takes} | {j.seed for j in self.queue.jobs()
                                               if j.shot_id == job.shot_id}
        nxt = Job(shot_id=job.shot_id, seed=random_seed(used), label=shot.title,
                  backend=job.backend, model=job.model, width=job.width, height=job.height,
                  frames=job.frames, steps=job.steps, draft=job.draft, reroll=True,
                  until_identity=job.until_identity, max_takes=job.max_takes,
                  attempt=job.attempt + 1, series=job.series, series_takes=takes,
                  series_active=job.series_active, early_stop=job.early_stop)
        self.queue.add([nxt], front=True)
        self.events.emit(ev.JobQueued((nxt.id,)))

    def _series_finish(self, job: Job, takes: list[str], met: bool, failure: str) -> None:
        """The series is over: the best of its takes becomes active unless the artist chose
        another take meanwhile (or the take active before the series scores higher)."""
        shot = self.document.project.shot(job.shot_id)
        # The best: a take that is nobody else on its frames before any that is, then by mean.
        scored = [(self._other_share(t.id) <= UNTIL_MAX_OTHER, t.identity_mean, t.id)
                  for t in (shot.takes if shot is not None else [])
                  if t.id in takes and t.identity_mean is not None]
        _holds, best_identity, best = max(scored) if scored else (False, None, None)
        made_active = False
        if shot is not None and best is not None:
            before = shot.take(job.series_active)
            untouched = shot.active_take_id in (None, job.series_active, *takes)
            better = (before is None or before.identity_mean is None
                      or before.id in takes or best_identity >= before.identity_mean)
            if untouched and better and shot.active_take_id != best:
                self.document.set_active_take(shot.id, best)
                if self.save_after_take:
                    self.document.save()
            made_active = untouched and better
        self.events.emit(ev.SeriesFinished(
            job.shot_id, job.series or job.id, job.attempt, job.max_takes or job.attempt,
            float(job.until_identity or 0.0), met, best, best_identity, tuple(takes),
            gave_up=job.attempt - len(takes), made_active=made_active, reason=failure))

    def holds_face(self, take_id: str, threshold: float, identity: float | None = None) -> bool:
        """Whether a take holds the face for a "generate until" series: its mean identity
        (``identity``, default the one stored on the take) reaches ``threshold`` and at most
        :data:`UNTIL_MAX_OTHER` of its face frames are judged another person."""
        if identity is None:
            take = next((t for sh in self.document.project.shots for t in sh.takes
                         if t.id == take_id), None)
            identity = take.identity_mean if take is not None else None
        return (identity is not None and identity >= threshold
                and self._other_share(take_id) <= UNTIL_MAX_OTHER)

    def _other_share(self, take_id: str) -> float:
        """The share of a take's face frames that its analysis judges another person (below
        the engine's same-person threshold); 0 when the record cannot be read."""
        try:
            rec = self.analyses.record(take_id)
        except StudioError:
            return 0.0
        if rec is None:
            return 0.0
        faces = [f for f in rec.frames if f.face_found and f.identity is not None]
        if not faces:
            return 0.0
        other = sum(1 for f in faces if f.identity < rec.engine.threshold)
        return other / len(faces)

    def _series_job_of_take(self, take_id: str) -> Job | None:
        """The series job whose new take's analysis this is (once: a later re-analysis of the
        take by hand does not move its series on)."""
        job_id = self._series_waiting.pop(take_id, None)
        job = self.queue.get(job_id) if job_id is not None else None
        return job if job is not None and job.until_identity is not None else None

    def find_repeats(self, jobs: list[Job]) -> list[Repeat]:
        """The jobs of ``jobs`` that would make a take identical to an existing take of their
        shot (its video still on disk), to a queued or running job, or to an earlier job of
        ``jobs``. Only takes with the same seed are compared (their sidecars are read)."""
        out: list[Repeat] = []
        earlier: list[tuple[Job, str]] = []
        queued = [j for j in ([self.queue.running()] + self.queue.pending()) if j is not None]
        for job in jobs:
            key = self._job_key(job)
            if key is None:
                continue
            hit = self._repeat_of(job, key, queued, earlier)
            if hit is not None:
                out.append(hit)
            earlier.append((job, key))
        return out

    def _repeat_of(self, job: Job, key: str, queued: list[Job],
                   earlier: list[tuple[Job, str]]) -> Repeat | None:
        shot = self.document.project.shot(job.shot_id)
        if shot is None:
            return None
        for number, take in enumerate(shot.takes, 1):
            if take.seed == job.seed and self._take_key(take) == key:
                return Repeat(job, shot.title, take_id=take.id, take_number=number)
        for other in queued:
            if (other.id != job.id and other.shot_id == job.shot_id and other.seed == job.seed
                    and self._job_key(other) == key):
                return Repeat(job, shot.title, job_id=other.id)
        for other, other_key in earlier:
            if other.shot_id == job.shot_id and other_key == key:
                return Repeat(job, shot.title, job_id=other.id)
        return None

    def _reseed(self, job: Job, batch: list[Job]) -> None:
        """A new random seed, unused by the shot's takes and jobs: the job becomes a re-roll
        (the shot keeps its own seed; the take records the one it was made with)."""
        shot = self.document.project.shot(job.shot_id)
        used = {t.seed for t in shot.takes} if shot is not None else set()
        used |= {j.seed for j in self.queue.jobs() + batch if j.shot_id == job.shot_id}
        job.seed = random_seed(used)
        job.reroll = True

    def _job_key(self, job: Job) -> str | None:
        """The job's generation settings as they stand now (None: it cannot start)."""
        from studio.engine.runner import request_record, prepare_job

        try:
            spec = prepare_job(self.document, job)
        except (StudioError, KeyError, ValueError):
            return None
        return _settings_key(spec.backend, spec.model,
                             request_record(spec.request, spec.folder))

    def _take_key(self, take: Take) -> str | None:
        """The settings a take was made with, from its sidecar (None: unknown, or its video is
        gone: re-making it then is no repeat)."""
        from studio.engine.takes import read_sidecar

        folder = self.folder
        if folder is None or take.sidecar is None or not (folder / take.video).is_file():
            return None
        try:
            side = read_sidecar(folder / take.sidecar)
            backend = side.get("backend") or {}
            record = side.get("request_unsnapped")
            if not isinstance(record, dict):
                # Takes made before the unsnapped request was recorded: the snapped request
                # with the size and frame count as asked.
                record = dict(side["request"])
                record.update(side.get("requested") or {})
            return _settings_key(backend.get("name", take.backend), backend.get("model"), record)
        except (StudioError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def paid_jobs(self, jobs: list[Job] | None = None) -> list[tuple[Job, str, str]]:
        """The jobs (of ``jobs``, default the pending ones) that run a hosted model billed to
        the user's Comfy account: (job, workflow label, what it costs). Shown before queueing."""
        from studio.engine.registry import get_backend

        out = []
        for job in (self.queue.pending() if jobs is None else jobs):
            shot = self.document.project.shot(job.shot_id)
            backend = job.backend or (shot.backend if shot is not None else None)
            if backend != "comfyui":
                continue
            try:  # the shot's model is its workflow (None: the default one)
                w = get_backend("comfyui").workflow(  # type: ignore[attr-defined]
                    job.model or (shot.model if shot else None))
            except StudioError:
                continue
            if w.manifest.needs_api_key or w.manifest.kind == "hosted":
                out.append((job, w.manifest.label, w.manifest.cost_note or
                            "billed by the provider through your Comfy account"))
        return out

    def shots_without_takes(self, shot_ids: list[str] | None = None) -> list[str]:
        """Shots (of ``shot_ids``, default all) with no take and none on its way."""
        queued = {j.shot_id for j in self.queue.pending()}
        running = self.queue.running()
        if running is not None:
            queued.add(running.shot_id)
        wanted = set(shot_ids) if shot_ids is not None else None
        return [s.id for s in self.document.project.shots
                if (wanted is None or s.id in wanted) and not s.takes and s.id not in queued]

    # -- generation: running --------------------------------------------------------------------
    def job_slots(self) -> int:
        """How many jobs may run at once, as the backend of the next pending job says: 1 for a
        local GPU or the preview, one per server for a farm of ComfyUI servers."""
        from studio.engine.registry import PARALLEL, get_backend

        pending = self.queue.pending()
        if not pending:
            return 1
        job = pending[0]
        shot = self.document.project.shot(job.shot_id)
        name = job.backend or (shot.backend if shot is not None else None)
        if name not in PARALLEL:
            return 1
        try:
            return max(1, int(get_backend(name).slots()))
        except Exception:  # noqa: BLE001 - a backend that cannot say runs one job at a time
            return 1

    def next_job(self, limit: int = 1) -> "JobSpec | None":
        """Start the next runnable job and return its frozen request (None: nothing to run, or
        ``limit`` jobs already run). Jobs whose take already exists finish at once; jobs whose
        shot cannot be generated fail with the reason; both are announced."""
        from studio.engine.runner import finished_take, prepare_job

        if self.read_only:
            return None  # takes are written by the project's writer only
        while True:
            job = self.queue.start_next(limit)
            if job is None:
                return None
            if finished_take(self.document, job) is not None:
                self.queue.finish(job.id, notes=["its take was already saved before an "
                                                 "interruption"])
                self.events.emit(ev.TakeReady(job.id, job.shot_id, job.take_id, added=False))
                continue
            try:
                spec = prepare_job(self.document, job)
            except StudioError as exc:
                self.job_failed(job.id, str(exc))
                continue
            self.events.emit(ev.JobStarted(job.id, job.shot_id, job.take_id, job.describe()))
            self._note_repeat_at_start(job)
            return spec

    def _note_repeat_at_start(self, job: Job) -> None:
        """A job that repeats a take when it starts is announced then (its seed was edited in
        the queue, the shot was changed back, the queue was restored after a crash), unless the
        user chose "Generate anyway" when it was queued."""
        if job.id in self._told_repeat:
            self._told_repeat.discard(job.id)
            return
        key = self._job_key(job)
        shot = self.document.project.shot(job.shot_id)
        if key is None or shot is None:
            return
        for number, take in enumerate(shot.takes, 1):
            if take.seed == job.seed and self._take_key(take) == key:
                self.note(f"'{shot.title}': this take repeats take {number} exactly (same seed "
                          f"{job.seed} and settings)")
                return

    def job_progress(self, job_id: str, progress: Progress) -> None:
        """A running job's report: recorded on the job (the queue keeps the generation rate
        for its ETA) and announced with that ETA."""
        if progress.preview is not None:  # a live preview: shown, not a step
            fmt, data = progress.preview
            self.events.emit(ev.JobPreview(job_id, bytes(data), str(fmt)))
            if not progress.total:
                return
            progress = replace(progress, preview=None)
        self.queue.report(job_id, progress)
        job = self.queue.get(job_id)
        if job is not None and job.state is JobState.RUNNING:
            self.events.emit(ev.JobProgress(job_id, replace(progress, eta_s=job.eta_s)))

    def job_done(self, result: "JobResult") -> bool:
        """Record a finished job: insert its take (a derived write), finish the job, queue the
        take's analysis. Returns whether the take was added (False: its shot was deleted)."""
        from studio.engine.runner import commit_take

        job = self.queue.get(result.job_id)
        series = job is not None and job.until_identity is not None
        added = commit_take(self.document, result)
        if added and self.save_after_take and not self.read_only:
            self.document.save()  # the take is safe before anything else happens
        try:
            self.queue.finish(result.job_id, result.timings, result.notes)
        except StudioError as exc:  # the queue file cannot be written: the take is still safe
            self.note(str(exc))
        self.events.emit(ev.TakeReady(result.job_id, result.shot_id, result.take.id,
                                      added=added, timings=dict(result.timings),
                                      notes=tuple(result.notes)))
        if added and series:
            self._series_waiting[result.take.id] = result.job_id
        if added and (self.analyze_new_takes or series):
            # A "generate until" series is judged on each take's analysis.
            self.request_analysis(result.shot_id, result.take.id)
        elif series and job is not None:
            self._series_step(job, None, None, "its take could not be added (its shot was "
                              "deleted)")
        return added

    def job_failed(self, job_id: str, message: str) -> None:
        job = self.queue.get(job_id)
        try:
            self.queue.fail(job_id, message)
        except StudioError as exc:
            self.note(str(exc))
        self.events.emit(ev.JobFailed(job_id, job.shot_id if job else "", message))
        if job is not None:
            self._series_step(job, None, None, f"a try failed: {message}")

    def job_gave_up(self, job_id: str, reason: str) -> None:
        """A take given up early (its live previews showed another person): the job ends
        without a take, and a series moves on to its next seed."""
        job = self.queue.get(job_id)
        try:
            self.queue.fail(job_id, f"{GAVE_UP}: {reason}")
        except StudioError as exc:
            self.note(str(exc))
        self.events.emit(ev.JobGaveUp(job_id, job.shot_id if job else "", reason))
        if job is not None:
            self._series_step(job, None, None)

    def job_cancelled(self, job_id: str) -> None:
        job = self.queue.get(job_id)
        try:
            self.queue.mark_cancelled(job_id)
        except StudioError as exc:
            self.note(str(exc))
        self.events.emit(ev.JobCancelled(job_id, job.shot_id if job else ""))
        if job is not None:
            self._series_step(job, None, None, "it was cancelled")

    def job_requeued(self, job_id: str, reason: str) -> None:
        """A running job goes back to the head of the queue with ``reason`` (its server stopped
        answering); a job that keeps coming back fails instead of looping."""
        job = self.queue.get(job_id)
        if job is not None and job.requeued >= MAX_REQUEUES:
            self.job_failed(job_id, f"{reason} (tried {job.requeued + 1} times)")
            return
        try:
            self.queue.requeue(job_id, reason)
        except StudioError as exc:
            self.note(str(exc))
        self.events.emit(ev.JobRequeued(job_id, job.shot_id if job else "", reason))

    def job_interrupted(self, job_id: str, queue: JobQueue | None = None) -> None:
        """Put a running job back at the head of its queue (project switch, shutdown; after
        Save As it is the previous ``queue``)."""
        try:
            (queue or self.queue).interrupt(job_id)
        except StudioError as exc:  # e.g. the untitled scratch folder was just removed
            self.note(f"the interrupted job could not be re-queued: {exc}")

    def run_jobs(self, *, cancelled: CancelledFn | None = None) -> RunSummary:
        """Run the queue until it is empty or paused (the CLI, tests), analysing each new take
        when ``analyze_new_takes`` is on.

        Jobs and analyses run on worker threads; everything that touches the document or the
        queue happens here, on the calling thread, as their outcomes arrive. As many jobs run
        at once as their backend has slots (a farm: one per server). With one slot the next job
        waits for the previous take's analysis, so a take is scored before the next begins."""
        import queue as queue_mod
        import threading

        from studio.engine.runner import execute_job

        summary = RunSummary()
        unsubscribe = self.events.subscribe(lambda e: _summarise(summary, e))
        inbox: "queue_mod.Queue[tuple[str, str, Any]]" = queue_mod.Queue()
        stop = threading.Event()  # KeyboardInterrupt or the caller's cancel: workers stop
        jobs: set[str] = set()
        analysis: AnalysisJob | None = None

        def stopped() -> bool:
            if cancelled is not None and cancelled():
                stop.set()
            return stop.is_set()

        def report(kind: str, key: str, progress: Progress) -> None:
            # Handed over and waited for: a listener that cancels on a progress report stops
            # the job before its next step, as when it ran on this thread.
            seen = threading.Event()
            inbox.put((kind, key, (progress, seen)))
            while not seen.wait(0.5) and not stop.is_set():
                pass

        def job_worker(spec: "JobSpec") -> None:
            j = spec.job_id
            try:
                result = execute_job(spec, lambda p: report("progress", j, p),
                                     lambda: self.queue.cancel_requested(j) or stopped())
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the owner
                tb = None if isinstance(exc, (StudioError, Cancelled)) else \
                    traceback.format_exc(limit=6)[-2000:]
                inbox.put(("error", j, (exc, tb)))
            else:
                inbox.put(("done", j, result))

        def analysis_worker(job: AnalysisJob) -> None:
            t = job.take.id
            try:
                out = run_analysis(job, lambda p: report("aprogress", t, p), stopped)
            except BaseException as exc:  # noqa: BLE001
                if not isinstance(exc, (StudioError, Cancelled)):
                    traceback.print_exc()
                inbox.put(("aerror", t, exc))
            else:
                inbox.put(("adone", t, out))

        def spawn(target: Any, arg: Any, name: str) -> None:
            # Daemon threads: a Ctrl+C in the CLI never waits for a job to end.
            threading.Thread(target=target, args=(arg,), name=name, daemon=True).start()

        try:
            while True:
                slots = self.job_slots()
                while not stop.is_set() and (analysis is None or slots > 1):
                    spec = self.next_job(limit=slots)
                    if spec is None:
                        break
                    jobs.add(spec.job_id)
                    spawn(job_worker, spec, f"job-{spec.job_id}")
                if analysis is None and not stop.is_set():
                    analysis = self.next_analysis()
                    if analysis is not None:
                        spawn(analysis_worker, analysis, f"analysis-{analysis.take.id}")
                        continue  # with one slot the next job waits for this analysis
                if not jobs and analysis is None:
                    break
                try:
                    kind, key, payload = inbox.get(timeout=0.2)
                except queue_mod.Empty:
                    stopped()
                    continue
                if kind in ("progress", "aprogress"):
                    progress, seen = payload
                    try:
                        if kind == "aprogress":
                            self.analysis_progress(key, progress)
                        elif key in jobs:
                            self.job_progress(key, progress)
                    finally:
                        seen.set()
                elif kind in ("done", "error"):
                    jobs.discard(key)
                    self._job_outcome(key, kind, payload)
                elif analysis is not None:  # adone / aerror
                    done, analysis = analysis, None
                    if kind == "adone":
                        self.analysis_done(done, payload)
                    else:
                        self._analysis_error(done, payload)
        except BaseException:
            # Ctrl+C: the running jobs stay "running" in queue.json, so the next run re-queues
            # them at the front (as after a crash); the workers stop within a step.
            stop.set()
            raise
        finally:
            unsubscribe()
        return summary

    def _job_outcome(self, job_id: str, kind: str, payload: Any) -> None:
        from studio.core.errors import GaveUp, Requeue

        if kind == "done":
            self.job_done(payload)
            return
        exc, tb = payload
        if isinstance(exc, Cancelled):
            self.job_cancelled(job_id)
        elif isinstance(exc, GaveUp):
            self.job_gave_up(job_id, str(exc))
        elif isinstance(exc, Requeue):
            self.job_requeued(job_id, str(exc))
        else:
            job = self.queue.get(job_id)
            if job is not None and tb:
                job.notes.append(tb)
            self.job_failed(job_id, error_text(exc))

    # -- analysis -------------------------------------------------------------------------------
    def request_analysis(self, shot_id: str, take_id: str, force: bool = False) -> bool:
        """Queue a take's identity analysis (False when it is already queued or running)."""
        if take_id == self.analysing or any(t == take_id for _s, t, _f in self._analysis_queue):
            return False
        self._analysis_queue.append((shot_id, take_id, force))
        self.events.emit(ev.AnalysisQueued(shot_id, take_id))
        return True

    def pending_analyses(self) -> list[str]:
        return [t for _s, t, _f in self._analysis_queue]

    def next_analysis(self) -> AnalysisJob | None:
        """Start the next queued analysis and snapshot what its worker needs."""
        while self._analysis_queue and self.analysing is None:
            shot_id, take_id, force = self._analysis_queue.popleft()
            if self.read_only:  # an analysis writes analysis/<take>.json
                self.events.emit(ev.AnalysisFailed(shot_id, take_id,
                                                   f"the project is {_read_only_words(self)}"))
                continue
            if self.document.folder is None:
                self.events.emit(ev.AnalysisFailed(shot_id, take_id,
                                                   "save the project before analysing takes"))
                continue
            project = self.document.project
            shot = project.shot(shot_id)
            take = shot.take(take_id) if shot is not None else None
            if shot is None or take is None:
                self.events.emit(ev.AnalysisFailed(shot_id, take_id, "the take no longer exists"))
                continue
            self.analysing = take_id
            self.events.emit(ev.AnalysisStarted(shot_id, take_id))
            return AnalysisJob(Path(self.document.folder), project.model_copy(deep=True),
                               shot.model_copy(deep=True), take.model_copy(deep=True), force,
                               self.engine)
        return None

    def analysis_progress(self, take_id: str, progress: Progress) -> None:
        self.events.emit(ev.AnalysisProgress(take_id, progress))

    def analysis_done(self, job: AnalysisJob, summary: dict[str, Any]) -> None:
        """Store the take's mean identity on it (a derived write) and announce the record."""
        self.analysing = None
        self.analyses.forget(job.take.id)
        shot = self.document.project.shot(job.shot.id)
        mean = summary.get("identity_mean")
        if shot is not None and shot.take(job.take.id) is not None and mean is not None:
            eng = summary.get("engine", {})
            self.document.update_take(job.shot.id, job.take.id, identity_mean=float(mean),
                                      analysis_engine=f"{eng.get('name')}/{eng.get('model')}")
            if self.save_after_take and not self.read_only:
                self.document.save()
        self.events.emit(ev.AnalysisReady(job.shot.id, job.take.id, dict(summary),
                                          cached=bool(summary.get("cached"))))
        series = self._series_job_of_take(job.take.id)
        if series is not None:
            self._series_step(series, job.take.id, None if mean is None else float(mean))

    def analysis_failed(self, job: AnalysisJob, message: str) -> None:
        self.analysing = None
        self.events.emit(ev.AnalysisFailed(job.shot.id, job.take.id, message))
        series = self._series_job_of_take(job.take.id)
        if series is not None:
            self._series_step(series, job.take.id, None, f"its analysis failed: {message}")

    def analysis_cancelled(self, job: AnalysisJob) -> None:
        self.analysing = None
        self.events.emit(ev.AnalysisCancelled(job.shot.id, job.take.id))
        series = self._series_job_of_take(job.take.id)
        if series is not None:
            self._series_step(series, job.take.id, None, "its analysis was cancelled")

    def cancel_analyses(self) -> None:
        """Drop every queued analysis (the running one is cancelled by its worker's flag)."""
        self._analysis_queue.clear()

    def run_analyses(self, *, cancelled: CancelledFn | None = None) -> None:
        """Run the queued analyses synchronously (the CLI)."""
        while True:
            job = self.next_analysis()
            if job is None:
                return
            try:
                summary = run_analysis(job, lambda p, t=job.take.id: self.analysis_progress(t, p),
                                       cancelled)
            except Exception as exc:  # a bug must reach the user as a message
                if not isinstance(exc, (StudioError, Cancelled)):
                    traceback.print_exc()
                self._analysis_error(job, exc)
            else:
                self.analysis_done(job, summary)

    def _analysis_error(self, job: AnalysisJob, exc: BaseException) -> None:
        """Record an analysis that ended without a summary: cancelled, or failed in words."""
        if isinstance(exc, Cancelled):
            self.analysis_cancelled(job)
        elif isinstance(exc, StudioError):
            self.analysis_failed(job, str(exc))
        else:
            self.analysis_failed(job, f"analysis failed: {error_text(exc)}")


def _settings_key(backend: str | None, model: str | None, record: dict[str, Any]) -> str:
    """One comparable string for "the same generation": the request as the sidecar records it
    (JSON-normalised) plus the backend and model. ``face_landmarks`` is left out: a backend may
    find the landmarks itself."""
    rec = {k: v for k, v in record.items() if k != "face_landmarks"}
    return json.dumps({"backend": backend, "model": model, "request": rec}, sort_keys=True,
                      default=str)


def _read_only_queue(folder: Path) -> JobQueue:
    """The project's saved queue, shown but never saved (a read-only session's)."""
    from studio.engine.queue import QUEUE_FILE, read_queue_files

    queue = JobQueue()  # no path: nothing it does is written
    try:
        state = read_queue_files(Path(folder) / QUEUE_FILE)
    except StudioError as exc:
        queue.restore_notes.append(str(exc))
        return queue
    queue._adopt(state)  # as JobQueue.load, without re-queueing the writer's running jobs
    queue.restore_notes.extend(state.problems)
    return queue


def _read_only_words(session: "Session") -> str:
    why = session.read_only_reason or "opened read-only"
    return f"read-only here ({why})"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _summarise(summary: RunSummary, event: ev.SessionEvent) -> None:
    if isinstance(event, ev.TakeReady):
        summary.done.append(event.job_id)
    elif isinstance(event, ev.JobFailed):
        summary.failed.append((event.job_id, event.message))
    elif isinstance(event, ev.JobCancelled):
        summary.cancelled.append(event.job_id)
    elif isinstance(event, ev.AnalysisFailed):
        summary.analysis_failed.append((event.take_id, event.message))
    elif isinstance(event, ev.JobGaveUp):
        summary.gave_up.append((event.job_id, event.reason))
    elif isinstance(event, ev.SeriesFinished):
        summary.series.append(event)

