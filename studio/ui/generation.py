"""Generation in the app: a controller that owns the job queue and a QThread worker, the Generate
menu and toolbar, and the queue and takes docks.

Threading (napari's pattern): the UI thread picks the next job and builds its request from the
shot (:func:`studio.engine.runner.prepare_job`, pure Python), the worker thread runs the backend
and writes the take files (:func:`~studio.engine.runner.execute_job`: all heavy imports happen
there), and the result comes back through a queued signal so the take is inserted into the
document on the UI thread. The window stays responsive throughout.

Other features find the controller as ``main_window.generation`` and listen to its
``take_added(shot_id, take_id)`` signal (identity analysis runs after each take).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QToolBar

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.engine.queue import (QUEUE_FILE, DraftOverrides, Job, JobQueue, default_draft,
                                 make_jobs)

if TYPE_CHECKING:
    from studio.engine.runner import JobResult, JobSpec


class _Worker(QObject):
    """Runs one job at a time in the generation thread."""

    progress = Signal(str, int, int, str)  # job id, step, total, stage
    finished = Signal(str, object)  # job id, JobResult
    failed = Signal(str, str)  # job id, message
    cancelled = Signal(str)  # job id

    @Slot(object, object)
    def run(self, spec: "JobSpec", cancel_check: Any) -> None:
        from studio.engine.base import Cancelled
        from studio.engine.runner import error_text, execute_job

        job_id = spec.job_id
        try:
            result = execute_job(spec, lambda p: self.progress.emit(job_id, p.step, p.total,
                                                                    p.stage),
                                 cancel_check)
        except Cancelled:
            self.cancelled.emit(job_id)
            return
        except BaseException as exc:  # every failure reaches the user as a message
            import traceback

            traceback.print_exc()
            self.failed.emit(job_id, error_text(exc))
            return
        self.finished.emit(job_id, result)


class GenerationController(QObject):
    """Owns the queue of the open project and drives the worker thread."""

    queue_changed = Signal()
    job_progress = Signal(str)  # job id
    take_added = Signal(str, str)  # shot id, take id
    job_failed = Signal(str, str)  # job id, message
    note = Signal(str)  # something the user should see (restored queue, recovered takes)
    busy_changed = Signal(bool)
    draft_changed = Signal(bool)
    _start = Signal(object, object)  # to the worker: (spec, cancel check)

    def __init__(self, document: ProjectDocument, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread(self)
        self._thread.setObjectName("generation")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._start.connect(self._worker.run, Qt.QueuedConnection)
        self._worker.progress.connect(self._on_progress, Qt.QueuedConnection)
        self._worker.finished.connect(self._on_finished, Qt.QueuedConnection)
        self._worker.failed.connect(self._on_failed, Qt.QueuedConnection)
        self._worker.cancelled.connect(self._on_cancelled, Qt.QueuedConnection)
        # The thread runs only while there is work: an idle window owns no running thread, so
        # closing it can never destroy a running QThread.
        self._closed = False
        self._running: tuple[JobQueue, ProjectDocument, str] | None = None
        self._stop = threading.Event()  # set on shutdown: the running job stops within a step
        self._draft = False
        self.notes: list[str] = []
        self.document = document
        self.queue = JobQueue()
        self.set_document(document)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # -- state ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._running is not None

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
    def set_document(self, document: ProjectDocument) -> None:
        """Show ``document``'s queue (restored from its queue.json) and recover finished takes
        the project does not list yet (the app stopped before saving)."""
        if self._running is not None:
            self._interrupt_running()
        try:
            self.queue.changed.disconnect(self._on_queue_changed)
        except ValueError:
            pass
        for doc in {id(self.document): self.document, id(document): document}.values():
            try:
                doc.saved.disconnect(self._on_saved)
            except ValueError:
                pass
        document.saved.connect(self._on_saved)
        self.document = document
        if document.folder is not None:
            from studio.engine.takes import recover_takes

            try:
                found = recover_takes(document)
            except StudioError as exc:
                found = []
                self._note(f"could not check for unsaved takes: {exc}")
            if found:
                self._note(f"Recovered {len(found)} finished take(s) that were not saved in the "
                           "project yet.")
            self.queue = JobQueue.for_project(document.folder)
        else:
            self.queue = JobQueue()
        self.queue.changed.connect(self._on_queue_changed)
        for text in self.queue.restore_notes:
            self._note(text[0].upper() + text[1:] + ".")
        self.queue_changed.emit()
        self._pump()

    def _on_saved(self, _path: object = None) -> None:
        """Save As moves the project (and its copied queue.json) to another folder: follow it."""
        folder = self.document.folder
        if folder is not None and self.queue.path != Path(folder) / QUEUE_FILE:
            self.set_document(self.document)

    def _on_queue_changed(self, _job_id: object = None) -> None:
        self.queue_changed.emit()

    # -- user actions -----------------------------------------------------------------------
    def generate(self, shot_ids: list[str], count: int = 1, reroll: bool = False,
                 front: bool = False) -> list[Job]:
        """Queue ``count`` takes for each shot (re-rolls get new random seeds)."""
        if not shot_ids:
            raise StudioError("select a shot first")
        if self.document.folder is None:
            raise StudioError("save the project before generating (takes are stored in its "
                              "folder)")
        jobs: list[Job] = []
        for sid in shot_ids:
            shot = self.document.project.shot(sid)
            if shot is None:
                raise StudioError(f"no shot with id {sid!r}")
            draft = default_draft(shot) if self._draft else None
            jobs += make_jobs(self.document.project, [sid], count=count, reroll=reroll,
                              draft=draft, queue=self.queue)
        self.queue.add(jobs, front=front)
        self._pump()
        return jobs

    def reroll(self, shot_id: str, count: int = 1) -> list[Job]:
        return self.generate([shot_id], count=count, reroll=True)

    def generate_with(self, shot_id: str, draft: DraftOverrides | None = None, *,
                      backend: str | None = None, model: str | None = None) -> list[Job]:
        """One job with explicit overrides (API for other panels)."""
        jobs = make_jobs(self.document.project, [shot_id], draft=draft, backend=backend,
                         model=model, queue=self.queue)
        self.queue.add(jobs)
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
        """Start the next job if the worker is idle (UI thread)."""
        from studio.engine.runner import finished_take, prepare_job

        while self._running is None and not self._stop.is_set() and not self._closed:
            job = self.queue.start_next()
            if job is None:
                return
            if finished_take(self.document, job) is not None:
                self.queue.finish(job.id, notes=["its take was already saved before an "
                                                 "interruption"])
                continue
            try:
                spec = prepare_job(self.document, job)
            except StudioError as exc:
                self.queue.fail(job.id, str(exc))
                self.job_failed.emit(job.id, str(exc))
                continue
            queue = self.queue
            self._running = (queue, self.document, job.id)
            stop = self._stop
            job_id = job.id
            self.busy_changed.emit(True)
            if not self._thread.isRunning():
                self._thread.start()
            self._start.emit(spec, lambda: stop.is_set() or queue.cancel_requested(job_id))

    def _context(self, job_id: str) -> tuple[JobQueue, ProjectDocument] | None:
        if self._running is None or self._running[2] != job_id:
            return None
        return self._running[0], self._running[1]

    def _done(self) -> None:
        self._running = None
        self.busy_changed.emit(False)
        self._pump()
        if self._running is None:
            self._stop_thread()

    def _stop_thread(self) -> None:
        """Let the idle worker thread end (it restarts with the next job)."""
        if self._thread is not None and self._thread.isRunning():
            self._thread.quit()
            self._thread.wait(10_000)

    @Slot(str, int, int, str)
    def _on_progress(self, job_id: str, step: int, total: int, stage: str) -> None:
        from studio.engine.base import Progress

        ctx = self._context(job_id)
        if ctx is None:
            return
        ctx[0].report(job_id, Progress(step, total, stage))
        self.job_progress.emit(job_id)

    @Slot(str, object)
    def _on_finished(self, job_id: str, result: "JobResult") -> None:
        from studio.engine.runner import commit_take

        ctx = self._context(job_id)
        if ctx is None:
            return
        queue, document = ctx
        added = False
        if document is self.document:
            added = commit_take(document, result)
        try:
            queue.finish(job_id, result.timings, result.notes)
        except StudioError as exc:  # the queue file cannot be written
            self._note(str(exc))
        if added:
            self.take_added.emit(result.shot_id, result.take.id)
        self._done()

    @Slot(str, str)
    def _on_failed(self, job_id: str, message: str) -> None:
        ctx = self._context(job_id)
        if ctx is None:
            return
        try:
            ctx[0].fail(job_id, message)
        except StudioError as exc:  # the queue file cannot be written
            self._note(str(exc))
        self.job_failed.emit(job_id, message)
        self._done()

    @Slot(str)
    def _on_cancelled(self, job_id: str) -> None:
        ctx = self._context(job_id)
        if ctx is None:
            return
        try:
            ctx[0].mark_cancelled(job_id)
        except StudioError as exc:  # the queue file cannot be written
            self._note(str(exc))
        self._done()

    def _interrupt_running(self) -> None:
        """Stop the running job and put it back at the head of its queue (project switch,
        shutdown): it resumes the next time that project is open."""
        assert self._running is not None
        queue, _doc, job_id = self._running
        self._stop.set()
        self._running = None
        self._drain()
        try:
            queue.interrupt(job_id)
        except StudioError as exc:  # e.g. the untitled scratch folder was just removed
            self._note(f"the interrupted job could not be re-queued: {exc}")
        self._stop.clear()
        self.busy_changed.emit(False)

    def _drain(self, timeout_ms: int = 60_000) -> None:
        """Wait until the worker has returned from its current job."""
        import time

        if not self._thread.isRunning():
            return
        done = threading.Event()
        # A queued call to the worker runs only after its current job: a clean barrier.
        QApplication.processEvents()
        self._barrier = _Barrier(done)
        self._barrier.moveToThread(self._thread)
        self._barrier.hit.emit()
        end = time.monotonic() + timeout_ms / 1000
        while not done.is_set() and time.monotonic() < end:
            done.wait(0.02)

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        """Process events until no job is running and none is startable (tests, shutdown)."""
        import time

        end = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < end:
            QApplication.processEvents()
            if self._running is None and (self.queue.paused or not self.queue.pending()):
                return True
            time.sleep(0.005)
        return False

    def shutdown(self) -> None:
        """Stop the worker; the running job is re-queued for the next start."""
        if self._closed:
            return
        self._closed = True
        if self._running is not None:
            self._interrupt_running()
        self._stop.set()
        self._stop_thread()


class _Barrier(QObject):
    hit = Signal()

    def __init__(self, done: threading.Event) -> None:
        super().__init__()
        self._done = done
        self.hit.connect(self._set, Qt.QueuedConnection)

    @Slot()
    def _set(self) -> None:
        self._done.set()


# -- menu, toolbar and docks ----------------------------------------------------------------------

def install_generation(main_window: Any) -> GenerationController:
    """Add generation to ``main_window``: Generate menu + toolbar, queue and takes docks.

    Uses only MainWindow's integration points: ``document``, ``undo_stack``, ``menu()``,
    ``add_dock()``, ``selected_shot_id()``, ``shot_selected``, ``project_opened``,
    ``show_error()``."""
    from studio.engine.registry import LABELS
    from studio.ui.queue_panel import QueuePanel
    from studio.ui.takes_panel import TakesPanel

    ctl = GenerationController(main_window.document, main_window)
    main_window.generation = ctl
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

    def all_shots() -> list[str]:
        ids = [s.id for s in main_window.document.project.shots]
        if not ids:
            raise StudioError("the storyboard has no shots yet")
        return ids

    def missing() -> list[str]:
        queued = {j.shot_id for j in ctl.queue.pending()}
        ids = [s.id for s in main_window.document.project.shots
               if not s.takes and s.id not in queued]
        if not ids:
            raise StudioError("every shot has a take (or one is queued): use Re-roll for more")
        return ids

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

    ctl.generate_action = act("&Generate Shot", guarded(lambda: ctl.generate(selected())),
                              "Ctrl+G", "Queue a take of the selected shot")
    ctl.generate_next_action = act("Generate Shot &Next",
                                   guarded(lambda: ctl.generate(selected(), front=True)), None,
                                   "Queue a take of the selected shot at the front of the queue")
    ctl.generate_all_action = act("Generate &All Shots",
                                  guarded(lambda: ctl.generate(all_shots())), "Ctrl+Shift+G",
                                  "Queue a take of every shot")
    ctl.generate_missing_action = act("Generate Shots &Without Takes",
                                      guarded(lambda: ctl.generate(missing())), None,
                                      "Queue a take of every shot that has none")
    menu.addSeparator()
    ctl.reroll_action = act("&Re-roll", guarded(lambda: ctl.reroll(selected()[0], 1)), "Ctrl+R",
                            "A new take of the selected shot with a new seed, same settings")
    ctl.reroll4_action = act("Re-roll ×&4", guarded(lambda: ctl.reroll(selected()[0], 4)), None,
                             "Four new takes of the selected shot, each with a new seed")
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
    for a in (ctl.generate_action, ctl.generate_all_action, ctl.reroll_action,
              ctl.reroll4_action, ctl.draft_action, ctl.pause_action, ctl.cancel_action,
              ctl.cancel_all_action):
        toolbar.addAction(a)
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
                  ctl.reroll4_action):
            a.setEnabled(shot is not None)
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
        ctl.set_document(document)
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
    if hasattr(main_window, "events"):
        main_window.events.shot_changed.connect(refresh_actions)
    for text in ctl.notes:
        on_note(text)
    on_selected(main_window.selected_shot_id() or "")
    return ctl


def _cancel_running(ctl: GenerationController) -> None:
    job = ctl.queue.running()
    if job is None:
        raise StudioError("no job is running")
    ctl.cancel(job.id)
