"""Generation in the app: a controller that drives the session's job queue from a worker thread,
the Generate menu and toolbar, and the queue and takes docks.

Threading (napari's pattern): the session (UI thread) picks the next job and builds its request
from the shot (:meth:`studio.session.session.Session.next_job`), the worker thread runs the backend
and writes the take files (:func:`~studio.engine.runner.execute_job`: all heavy imports happen
there), and the result comes back through a queued signal so the take is inserted into the
document by the session (:meth:`~studio.session.session.Session.job_done`) on the UI thread.
The window stays responsive throughout. Identity analysis of each new take is queued by the
session itself; other views listen to ``main_window.session_bridge``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QToolBar

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn
from studio.engine.queue import DraftOverrides, Job, JobQueue, default_draft
from studio.session import events as ev
from studio.session.session import Repeat, RepeatPolicy, Session
from studio.ui.tasks import TaskHandle, run_task, task_pool

MAX_PARALLEL = 16  # jobs at once at most, whatever the farm's size

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow
    from studio.engine.runner import JobResult, JobSpec


def _run_job(spec: "JobSpec", progress: ProgressFn, cancelled: CancelledFn) -> "JobResult":
    """The worker side of one job (runs in the generation pool): every failure becomes a
    StudioError whose message says what to do (out of memory, a missing library), with the
    traceback on stderr for anything unexpected; a cancel stays a Cancelled."""
    from studio.core.errors import error_text
    from studio.engine.runner import execute_job

    from studio.core.errors import GaveUp, Requeue

    try:
        return execute_job(spec, progress, cancelled)
    except Requeue as exc:  # not the job's fault (its server went away): back in the queue
        return _Requeued(str(exc))  # type: ignore[return-value]
    except GaveUp as exc:  # its previews showed another person: a series tries the next seed
        return _GaveUp(str(exc))  # type: ignore[return-value]
    except (Cancelled, StudioError):
        raise
    except Exception as exc:  # every failure reaches the user as a message
        import traceback

        traceback.print_exc()
        raise StudioError(error_text(exc)) from exc


def _series_text(document: ProjectDocument, e: ev.SeriesFinished) -> str:
    shot = document.project.shot(e.shot_id)
    return (e.text(shot.title if shot is not None else e.shot_id)
            + (" — it is now the active take." if e.made_active and e.best_take_id else "."))


def _listed_takes(session: Session) -> frozenset[tuple[str, str]]:
    return frozenset((shot.id, take.id) for shot in session.document.project.shots
                     for take in shot.takes)


def _unlisted_sidecars(folder: Path | None, listed: frozenset[tuple[str, str]]) -> bool:
    """True when ``takes/<shot>/`` holds a sidecar whose take ``listed`` lacks there (only then
    can :meth:`Session.recover_takes` find anything): one ``scandir`` a shot folder."""
    import os

    from studio.core.persistence import TAKES_DIR

    if folder is None:
        return False
    try:
        with os.scandir(os.path.join(folder, TAKES_DIR)) as shots:
            for entry in shots:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(entry.path) as files:
                    for f in files:
                        if f.name.endswith(".json") and not f.name.startswith(".") and \
                                (entry.name, f.name[:-5]) not in listed:
                            return True
    except FileNotFoundError:  # no takes folder: nothing to recover
        return False
    except OSError:  # unreadable: let recovery decide and report
        return True
    return False


class _Requeued:
    """The outcome of a job whose server stopped answering: it goes back in the queue."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _GaveUp(_Requeued):
    """The outcome of a take given up early (studio.engine.early_stop)."""


class GenerationController(QObject):
    """Drives the session's job queue from a worker thread: the session decides what runs and
    records every outcome; this controller only moves the work between threads."""

    queue_changed = Signal()
    job_progress = Signal(str)  # job id
    job_preview = Signal(str, bytes)  # job id, encoded image (a ComfyUI sampler's live preview)
    take_added = Signal(str, str)  # shot id, take id
    job_failed = Signal(str, str)  # job id, message
    note = Signal(str)  # something the user should see (restored queue, recovered takes)
    busy_changed = Signal(bool)
    draft_changed = Signal(bool)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # Jobs run through the UI's one task helper: one at a time, or one per server of a
        # ComfyUI farm (the session says how many); the pool's threads end when idle, so a
        # closing window never owns a running thread.
        self._pool = task_pool(self, MAX_PARALLEL)
        self._closed = False
        self._running: dict[str, tuple[Session, TaskHandle | None]] = {}  # job id → (session, task)
        self._stop = threading.Event()  # set on shutdown: the running job stops within a step
        self._draft = False
        self.notes: list[str] = []
        self.session = session
        self._unsubscribe: Any = None
        self._recovery_pending = False  # a window's open: unsaved takes not checked for yet
        self.set_session(session)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- state ----------------------------------------------------------------------------
    @property
    def document(self) -> ProjectDocument:
        return self.session.document

    @property
    def queue(self) -> JobQueue:
        return self.session.queue

    @property
    def busy(self) -> bool:
        return bool(self._running)

    @property
    def draft(self) -> bool:
        return self._draft

    def set_draft(self, on: bool) -> None:
        if bool(on) != self._draft:
            self._draft = bool(on)
            self.draft_changed.emit(self._draft)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.note.emit(text)

    # -- project switching and restore ------------------------------------------------------
    def set_session(self, session: Session, defer_recovery: bool = False) -> None:
        """Follow ``session`` (another project, or the same one after Save As): a job running
        for the previous one goes back to the head of its queue, finished takes the project
        does not list yet are recovered, the restored queue resumes."""
        if self._running:
            self._interrupt_running()
        try:
            self.session.queue.changed.disconnect(self._on_queue_changed)
        except ValueError:
            pass
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.session = session
        self._unsubscribe = session.events.subscribe(self._on_event)
        session.queue.changed.connect(self._on_queue_changed)
        for text in session.restore_notes:
            self._note(text)
        self.queue_changed.emit()
        self._recovery_pending = False  # a check for an earlier session no longer counts
        if not defer_recovery:
            if _unlisted_sidecars(session.document.folder, _listed_takes(session)):
                self._recover(session)
            self._pump()
            return
        # A project opened in the window: which takes/<shot>/ folders hold unlisted sidecars is
        # found by a worker (one listing a shot: 70 ms at 2000 shots); no job starts before it
        # is known, so a take made by a job is recovered before that job could run again.
        self._recovery_pending = True
        listed = _listed_takes(session)
        folder = session.document.folder

        def done(unlisted: bool, s: Session = session) -> None:
            if s is not self.session:
                return
            self._recovery_pending = False
            if unlisted:
                self._recover(s)
            self._pump()

        run_task(lambda _p, _c: _unlisted_sidecars(folder, listed), parent=self,
                 name="recovery-check", on_done=done, on_error=lambda _m: done(True),
                 on_cancelled=lambda: setattr(self, "_recovery_pending", False))

    def _recover(self, session: Session) -> None:
        found = session.recover_takes()
        if found:
            self._note(f"Recovered {len(found)} finished take(s) that were not saved in the "
                       "project yet.")

    def _on_event(self, e: ev.SessionEvent) -> None:
        if isinstance(e, ev.Note):
            self._note(e.text)
        elif isinstance(e, ev.JobFailed):
            self.job_failed.emit(e.job_id, e.message)
        elif isinstance(e, ev.QueueMoved):
            self._follow_queue(e.old)
        elif isinstance(e, ev.JobPreview):
            self.job_preview.emit(e.job_id, e.image)
        elif isinstance(e, ev.JobRequeued):
            self._note(f"A job went back to the queue: {e.reason}.")
        elif isinstance(e, ev.JobQueued):
            # The session queues on its own too (a series' next try, after an analysis):
            # start it once the current event has been handled.
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, self, self._pump)
        elif isinstance(e, ev.JobGaveUp):
            self._note(f"A take was given up early: {e.reason}.")
        elif isinstance(e, ev.SeriesFinished):
            self._note(_series_text(self.document, e))

    def _follow_queue(self, old: JobQueue) -> None:
        """Save As: the running job goes back to the head of the old queue (its copy in the new
        folder is re-queued there already), and the new queue runs."""
        if self._running:
            self._interrupt_running(old)
        try:
            old.changed.disconnect(self._on_queue_changed)
        except ValueError:
            pass
        self.queue.changed.connect(self._on_queue_changed)
        self.queue_changed.emit()
        self._pump()

    def _on_queue_changed(self, _job_id: object = None) -> None:
        self.queue_changed.emit()

    # -- user actions -----------------------------------------------------------------------
    def generate(self, shot_ids: list[str], count: int = 1, reroll: bool = False,
                 front: bool = False, *, ask: bool = False) -> list[Job]:
        """Queue ``count`` takes for each shot (re-rolls get new random seeds). A job that would
        repeat a take exactly (same seed and settings) is asked about when ``ask`` (the menu
        and toolbar), otherwise queued and announced as a note. Returns what was queued."""
        if not shot_ids:
            raise StudioError("select a shot first")
        jobs: list[Job] = []
        for sid in shot_ids:
            shot = self.document.project.shot(sid)
            draft = default_draft(shot) if self._draft and shot is not None else None
            jobs += self.session.plan_takes([sid], count=count, reroll=reroll, draft=draft)
        paid = self.session.paid_jobs(jobs)
        if paid and not self._confirm_paid(paid):
            return []
        policy = RepeatPolicy.NOTE
        if ask:
            found = self.session.find_repeats(jobs)
            if found:
                choice = self._ask_about_repeats(found)
                if choice is None:
                    return []
                policy = choice
        self.session.add_jobs(jobs, front=front, repeats=policy)
        self._pump()
        return jobs

    def generate_until(self, shot_ids: list[str], *, threshold: float, max_takes: int,
                       give_up: bool = False, front: bool = False) -> list[Job]:
        """Queue a "generate until identity ≥ threshold" series for each shot as Generate
        queues takes: draft sizes when Draft is on, and a question first when a shot runs a
        hosted model billed per take (a series may make up to ``max_takes`` of them)."""
        if not shot_ids:
            raise StudioError("select a shot first")
        jobs: list[Job] = []
        for sid in shot_ids:  # one plan per shot: each gets its own draft size
            shot = self.document.project.shot(sid)
            draft = default_draft(shot) if self._draft and shot is not None else None
            jobs += self.session.plan_until([sid], threshold=threshold, max_takes=max_takes,
                                            give_up=give_up, draft=draft)
        paid = self.session.paid_jobs(jobs)
        if paid and not self._confirm_paid(paid, most=max_takes):
            return []
        self.session.add_jobs(jobs, front=front, repeats=RepeatPolicy.NEW_SEED)
        self._pump()
        return jobs

    def remake_segment(self, shot_id: str, take_id: str, index: int) -> Job | None:
        """Queue a re-make of one segment of a chained take (a new take), asking first when it
        runs on a hosted, billed model; None when the user says no."""
        job = self.session.plan_segment(shot_id, take_id, index)
        paid = self.session.paid_jobs([job])
        if paid and not self._confirm_paid(paid):
            return None
        self.session.add_jobs([job])
        self._pump()
        return job

    def _confirm_paid(self, paid: list[tuple[Job, str, str]], most: int = 1) -> bool:
        """Hosted models cost money: say so, and what, before anything is queued. ``most``:
        how many takes each job may make (a "generate until" series)."""
        from PySide6.QtWidgets import QMessageBox, QWidget

        from studio.ui import dialogs

        labels = sorted({label for _j, label, _n in paid})
        n = len(paid) * max(1, most)
        takes = f"{'up to ' if most > 1 else ''}{n} take{'s' if n != 1 else ''}"
        parent = self.parent()
        answer = dialogs.ask(
            parent if isinstance(parent, QWidget) else None, "Generate with a paid service?",
            f"{takes[:1].upper() + takes[1:]} will run on {', '.join(labels)}, billed to your "
            "Comfy account.",
            [QMessageBox.Yes, QMessageBox.Cancel], QMessageBox.Cancel,
            {QMessageBox.Yes: f"Queue {takes.replace('take', 'paid take')}"},
            informative=paid[0][2])
        return answer == QMessageBox.Yes

    def _ask_about_repeats(self, found: list[Repeat]) -> RepeatPolicy | None:
        """Use a new seed / Generate anyway / Cancel (None)."""
        from PySide6.QtWidgets import QMessageBox, QWidget

        from studio.ui import dialogs

        if len(found) == 1:
            text = found[0].text + "."
        else:
            text = (f"{len(found)} of these takes would repeat takes exactly (same seed and "
                    "settings):\n" + "\n".join(f"• {r.what} (seed {r.job.seed})" for r in found))
        parent = self.parent()
        answer = dialogs.ask(
            parent if isinstance(parent, QWidget) else None, "Repeat a take exactly?", text,
            [QMessageBox.Yes, QMessageBox.Ignore, QMessageBox.Cancel], QMessageBox.Yes,
            {QMessageBox.Yes: "Use a new seed", QMessageBox.Ignore: "Generate anyway"},
            informative="A new seed makes a different take; the shot keeps its own seed and "
                        "every take records the one it was made with. Change the prompt or "
                        "settings first to compare them with the same seed.")
        if answer == QMessageBox.Yes:
            return RepeatPolicy.NEW_SEED
        if answer == QMessageBox.Ignore:
            return RepeatPolicy.ALLOW
        return None

    def reroll(self, shot_id: str, count: int = 1) -> list[Job]:
        return self.generate([shot_id], count=count, reroll=True)

    def generate_with(self, shot_id: str, draft: DraftOverrides | None = None, *,
                      backend: str | None = None, model: str | None = None) -> list[Job]:
        """One job with explicit overrides (API for other panels)."""
        jobs = self.session.queue_takes([shot_id], draft=draft, backend=backend, model=model)
        self._pump()
        return jobs

    def cancel(self, job_id: str) -> bool:
        return self.queue.cancel(job_id)

    def cancel_all(self) -> int:
        return self.queue.cancel_all()

    def pause(self) -> None:
        self.queue.pause()

    def resume(self) -> None:
        self.queue.resume()
        self._pump()

    def set_paused(self, paused: bool) -> None:
        self.pause() if paused else self.resume()

    def move(self, job_id: str, position: int) -> None:
        self.queue.move(job_id, position)

    def move_by(self, job_id: str, delta: int) -> None:
        self.queue.move_by(job_id, delta)

    def edit(self, job_id: str, **changes: Any) -> None:
        self.queue.edit(job_id, **changes)

    def clear_history(self) -> None:
        self.queue.clear_history()

    # -- running ----------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start jobs while the session allows more to run (UI thread)."""
        while not self._stop.is_set() and not self._closed and not self._recovery_pending:
            limit = min(MAX_PARALLEL, self.session.job_slots())
            if len(self._running) >= limit:
                return
            spec = self.session.next_job(limit)  # a job that cannot start fails with JobFailed
            if spec is None:
                return
            session, job_id = self.session, spec.job_id
            queue = session.queue
            self._running[job_id] = (session, None)
            stop = self._stop
            self.busy_changed.emit(True)

            def work(progress: ProgressFn, cancelled: CancelledFn, spec: "JobSpec" = spec,
                     job_id: str = job_id) -> "JobResult":
                # Stops within a step on: the job's cancel (queue panel), shutdown or a
                # project switch (stop), or the task being cancelled (window destroyed).
                return _run_job(spec, progress, lambda: cancelled() or stop.is_set()
                                or queue.cancel_requested(job_id))

            task = run_task(
                work, parent=self, pool=self._pool, name=f"generation-{job_id}",
                on_progress=lambda p, j=job_id: self._on_progress(j, p),
                on_done=lambda result, j=job_id: self._on_finished(j, result),
                on_error=lambda msg, j=job_id: self._on_failed(j, msg),
                on_cancelled=lambda j=job_id: self._on_cancelled(j))
            if job_id in self._running:  # (an outcome may already have arrived)
                self._running[job_id] = (session, task)

    def _context(self, job_id: str) -> Session | None:
        """The session of ``job_id`` while it is one of this controller's running jobs."""
        entry = self._running.get(job_id)
        return entry[0] if entry is not None else None

    def _done(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self.busy_changed.emit(bool(self._running))
        self._pump()

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        session = self._context(job_id)
        if session is None:
            return
        session.job_progress(job_id, progress)
        self.job_progress.emit(job_id)

    def _on_finished(self, job_id: str, result: "JobResult") -> None:
        session = self._context(job_id)
        if session is None:
            return
        if isinstance(result, _GaveUp):
            session.job_gave_up(job_id, result.reason)
            self._done(job_id)
            return
        if isinstance(result, _Requeued):
            session.job_requeued(job_id, result.reason)
            self._done(job_id)
            return
        added = session.job_done(result)
        if added:
            self.take_added.emit(result.shot_id, result.take.id)
        self._done(job_id)

    def _on_failed(self, job_id: str, message: str) -> None:
        session = self._context(job_id)
        if session is None:
            return
        session.job_failed(job_id, message)  # job_failed is emitted from its JobFailed event
        self._done(job_id)

    def _on_cancelled(self, job_id: str) -> None:
        session = self._context(job_id)
        if session is None:
            return
        session.job_cancelled(job_id)
        self._done(job_id)

    def _interrupt_running(self, queue: JobQueue | None = None) -> None:
        """Stop the running jobs and put them back at the head of their queue (project switch,
        shutdown): they resume the next time that project is open."""
        running, self._running = dict(self._running), {}
        self._stop.set()
        self._drain([task for _s, task in running.values()])
        for job_id, (session, _task) in running.items():
            session.job_interrupted(job_id, queue)
        self._stop.clear()
        self.busy_changed.emit(False)

    def _drain(self, tasks: "list[TaskHandle | None]", timeout_ms: int = 60_000) -> None:
        """Wait until the workers have returned from their jobs (outcomes delivered later are
        ignored: the jobs are no longer this controller's running ones)."""
        for task in tasks:
            if task is not None:
                task.wait(timeout_ms)

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        """Process events until no job is running and none is startable (tests, shutdown)."""
        import time

        end = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < end:
            QApplication.processEvents()
            if not self._running and (self.queue.paused or not self.queue.pending()):
                return True
            time.sleep(0.005)
        return False

    def shutdown(self) -> None:
        """Stop the worker; the running job is re-queued for the next start."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            self._interrupt_running()
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


# -- menu, toolbar and docks ----------------------------------------------------------------------

def install_generation(main_window: "MainWindow") -> GenerationController:
    """Add generation to ``main_window``: Generate menu + toolbar, queue and takes docks.

    Uses only MainWindow's integration points: ``document``, ``undo_stack``, ``menu()``,
    ``add_dock()``, ``selected_shot_id()``, ``shot_selected``, ``project_opened``,
    ``show_error()``."""
    from studio.engine.registry import LABELS
    from studio.ui.queue_panel import QueuePanel
    from studio.ui.takes_panel import TakesPanel

    ctl = GenerationController(main_window.session, main_window)
    main_window.session_bridge.attached.connect(
        lambda session: ctl.set_session(session, defer_recovery=True))
    # A window destroyed while a job runs: stop the worker first (the job is re-queued).
    main_window.destroyed.connect(lambda *_a, c=ctl: c.shutdown())
    menu = main_window.menu("Generate")
    toolbar = QToolBar("Generate", main_window)
    toolbar.setObjectName("toolbar_generate")
    main_window.addToolBar(Qt.TopToolBarArea, toolbar)

    def guarded(fn: Any) -> Any:
        def call(*_a: Any) -> None:
            try:
                fn()
            except StudioError as exc:
                main_window.show_error(exc)
        return call

    def selected() -> list[str]:
        sid = main_window.selected_shot_id()
        if not sid:
            raise StudioError("select a shot in the storyboard first")
        return [sid]

    def missing() -> list[str]:
        """Shots with no take and none on its way that can be generated (a start image)."""
        project = main_window.document.project
        ids = ctl.session.shots_without_takes()
        if not ids:
            raise StudioError("every shot has a take (or one is queued): re-roll a shot for "
                              "more takes")
        ready = [sid for sid in ids if project.shot(sid).start_asset]
        skipped = [project.shot(sid).title for sid in ids if sid not in ready]
        if not ready:
            raise StudioError("no shot without a take has a start image yet: drop a portrait "
                              "or a bible reference on its card")
        if skipped:
            names = ", ".join(f"'{t}'" for t in skipped[:5]) + (" …" if len(skipped) > 5 else "")
            main_window.statusBar().showMessage(
                f"Queued {len(ready)} shot(s); skipped {names}: no start image yet", 10_000)
        return ready

    def act(text: str, slot: Any, shortcut: str | None = None, tip: str = "",
            checkable: bool = False) -> QAction:
        a = QAction(text, main_window)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setToolTip(tip or text)
        a.setStatusTip(tip or text)
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        menu.addAction(a)
        return a

    ctl.generate_action = act("&Generate Shot",
                              guarded(lambda: ctl.generate(selected(), ask=True)),
                              "Ctrl+G", "Queue a take of the selected shot")
    ctl.generate_next_action = act("Generate Shot &Next",
                                   guarded(lambda: ctl.generate(selected(), front=True,
                                                                ask=True)), None,
                                   "Queue a take of the selected shot at the front of the queue")
    # "Generate all" makes the missing takes only: re-rendering shots that have takes (with
    # their fixed seeds) would repeat them; more takes of a shot are an explicit re-roll.
    ctl.generate_missing_action = act("Generate Shots &Without Takes",
                                      guarded(lambda: ctl.generate(missing(), ask=True)),
                                      "Ctrl+Shift+G", "Queue a take of every shot that has none")
    menu.addSeparator()
    ctl.reroll_action = act("&Re-roll", guarded(lambda: ctl.reroll(selected()[0], 1)), "Ctrl+R",
                            "A new take of the selected shot with a new seed, same settings")
    ctl.reroll4_action = act("Re-roll ×&4", guarded(lambda: ctl.reroll(selected()[0], 4)), None,
                             "Four new takes of the selected shot, each with a new seed")

    def until() -> None:
        from studio.engine.queue import score_text
        from studio.ui.until_dialog import ask_until

        ids = selected()
        shot = main_window.document.project.shot(ids[0])
        what = f"'{shot.title}'" if shot is not None and len(ids) == 1 else f"{len(ids)} shots"
        choice = ask_until(main_window, ctl.session.default_until_threshold(), what)
        if choice is not None:
            jobs = ctl.generate_until(ids, threshold=choice.threshold,
                                      max_takes=choice.max_takes, give_up=choice.give_up)
            if jobs:
                main_window.statusBar().showMessage(
                    f"Queued a series for {what}: until identity ≥ "
                    f"{score_text(choice.threshold)}, at most {choice.max_takes} "
                    f"take{'s' if choice.max_takes != 1 else ''}", 10_000)

    ctl.generate_until_action = act("Generate &Until Identity…", guarded(until), None,
                                    "Takes of the selected shot with new seeds, one after "
                                    "another, until one holds the character's face")
    ctl.draft_action = act("&Draft", ctl.set_draft, None,
                           "Draft takes: half size, at most 33 frames, 8 steps — check the "
                           "motion before spending time on the full take", checkable=True)
    ctl.draft_changed.connect(ctl.draft_action.setChecked)
    menu.addSeparator()
    ctl.pause_action = act("&Pause Queue", ctl.set_paused, None,
                           "Finish the running job, start no new ones", checkable=True)
    ctl.cancel_action = act("&Cancel Running Job", guarded(lambda: _cancel_running(ctl)), None,
                            "Stop the running job (within one step)")
    ctl.cancel_all_action = act("Cancel A&ll", guarded(ctl.cancel_all), None,
                                "Cancel the running job and every queued one")
    for a in (ctl.generate_action, ctl.generate_missing_action, ctl.reroll_action,
              ctl.reroll4_action, ctl.draft_action, ctl.pause_action, ctl.cancel_action,
              ctl.cancel_all_action):
        toolbar.addAction(a)
    # The storyboard's shot menu offers the same, beside each other as in the Generate menu.
    main_window.storyboard.add_card_actions([ctl.generate_action, ctl.reroll_action,
                                             ctl.generate_until_action])
    backend_label = QLabel("")
    backend_label.setObjectName("generation_backend_label")
    backend_label.setContentsMargins(8, 0, 8, 0)
    toolbar.addWidget(backend_label)

    queue_panel = QueuePanel(ctl)
    takes_panel = TakesPanel(main_window.document, main_window.undo_stack, ctl)
    main_window.queue_panel = queue_panel
    main_window.takes_panel = takes_panel
    main_window.add_dock("Queue", queue_panel, Qt.RightDockWidgetArea)
    main_window.add_dock("Takes", takes_panel, Qt.RightDockWidgetArea)

    def refresh_actions(*_a: Any) -> None:
        sid = main_window.selected_shot_id()
        shot = main_window.document.project.shot(sid) if sid else None
        for a in (ctl.generate_action, ctl.generate_next_action, ctl.reroll_action,
                  ctl.reroll4_action, ctl.generate_until_action):
            a.setEnabled(shot is not None)
        n_missing = len(ctl.session.shots_without_takes())
        ctl.generate_missing_action.setEnabled(n_missing > 0)
        ctl.generate_missing_action.setToolTip(
            f"Queue a take of each of the {n_missing} shot{'s' if n_missing != 1 else ''} "
            "without one" if n_missing else
            "Every shot has a take or one on its way: re-roll a shot for more takes")
        running = ctl.queue.running()
        ctl.cancel_action.setEnabled(running is not None)
        ctl.cancel_all_action.setEnabled(running is not None or bool(ctl.queue.pending()))
        ctl.pause_action.blockSignals(True)
        ctl.pause_action.setChecked(ctl.queue.paused)
        ctl.pause_action.blockSignals(False)
        if shot is not None:
            label = LABELS.get(shot.backend, shot.backend)
            backend_label.setText(f"Backend: {label}")
            backend_label.setToolTip("The Preview backend makes a CPU animatic from the start "
                                     "image (camera moves, blinks, talking mouth); it is a "
                                     "preview, not a generated video."
                                     if shot.backend == "preview" else label)
        else:
            backend_label.setText("")

    def on_selected(shot_id: str) -> None:
        takes_panel.set_shot(shot_id or None)
        refresh_actions()

    def on_project(document: ProjectDocument) -> None:
        takes_panel.set_document(document)
        takes_panel.set_shot(main_window.selected_shot_id())
        refresh_actions()

    def on_note(text: str) -> None:
        main_window.statusBar().showMessage(text, 15_000)

    def on_take(shot_id: str, take_id: str) -> None:
        shot = main_window.document.project.shot(shot_id)
        title = shot.title if shot is not None else shot_id
        main_window.statusBar().showMessage(f"New take of “{title}” is ready", 8_000)

    main_window.shot_selected.connect(on_selected)
    main_window.project_opened.connect(on_project)
    ctl.queue_changed.connect(refresh_actions)
    ctl.note.connect(on_note)
    ctl.take_added.connect(on_take)
    ctl.job_failed.connect(lambda _jid, msg: main_window.show_error(f"Generation failed: {msg}"))
    main_window.events.shot_changed.connect(refresh_actions)
    main_window.events.structure_changed.connect(refresh_actions)  # shots added or removed
    for text in ctl.notes:
        on_note(text)
    on_selected(main_window.selected_shot_id() or "")
    return ctl


def _cancel_running(ctl: GenerationController) -> None:
    jobs = ctl.queue.running_jobs()
    if not jobs:
        raise StudioError("no job is running")
    for job in jobs:  # a farm runs several: Cancel Running stops them all
        ctl.cancel(job.id)
