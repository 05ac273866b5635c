"""Qt pieces of identity analysis: a background analysis controller, a reference-quality badge
and a prompt-lint list. Standalone; the main window wires them in through
:func:`install_identity`.

Analysis runs on one dedicated worker thread (one job at a time: it is CPU-bound, and the
machine's other core stays with the UI and the generator) through the UI's one task helper
(:mod:`studio.ui.tasks`). What to analyse and what to do with a result belong to the session
(:class:`studio.session.session.Session`: it queues every new take and stores the score on it);
views hear about results from ``main_window.session_bridge``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QWidget

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import Shot
from studio.core.tasks import CancelledFn, ProgressFn
from studio.session import events as ev
from studio.session.session import Session, run_analysis
from studio.ui.tasks import TaskHandle, run_task, task_pool

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow


class AnalysisController(QObject):
    """Runs the session's queued take analyses, one at a time, on a dedicated worker thread
    (it is CPU-bound; the machine's other core stays with the UI and the generator). The
    session decides what to analyse (every new take, or on demand) and records each result;
    this controller only moves the work off the UI thread and re-emits the outcome."""

    started = Signal(str)  # take_id
    progress = Signal(str, int, int)  # take_id, done, total
    finished = Signal(str, object)  # take_id, summary
    failed = Signal(str, str)  # take_id, message

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = task_pool(self, 1)  # one analysis at a time, in order
        self._task: TaskHandle | None = None
        self._closed = False
        self.session = session
        self._unsubscribe = session.events.subscribe(self._on_event)

    @property
    def document(self) -> ProjectDocument:
        return self.session.document

    @property
    def busy(self) -> bool:
        return self._task is not None

    def pending(self) -> list[str]:
        return self.session.pending_analyses()

    def analyze(self, shot_id: str, take_id: str, force: bool = False) -> None:
        self.session.request_analysis(shot_id, take_id, force)
        self._next()

    def cancel_current(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def set_session(self, session: Session) -> None:
        """Follow the window to another project: the running analysis is cancelled and what
        was queued for the old one stays with it."""
        self.cancel_current()
        self._unsubscribe()
        self.session = session
        self._unsubscribe = session.events.subscribe(self._on_event)
        self._next()

    def _on_event(self, e: ev.SessionEvent) -> None:
        # The session speaks for every outcome, also those it decides alone (a take deleted
        # before its turn): re-emit them as this controller's signals.
        if isinstance(e, ev.AnalysisStarted):
            self.started.emit(e.take_id)
        elif isinstance(e, ev.AnalysisProgress):
            self.progress.emit(e.take_id, e.progress.step, e.progress.total)
        elif isinstance(e, ev.AnalysisReady):
            self.finished.emit(e.take_id, e.summary)
        elif isinstance(e, ev.AnalysisFailed):
            self.failed.emit(e.take_id, e.message)
        elif isinstance(e, ev.AnalysisCancelled):
            self.failed.emit(e.take_id, "analysis cancelled")
        elif isinstance(e, ev.AnalysisQueued):
            # After the event that queued it (a TakeReady) has reached every listener.
            QTimer.singleShot(0, self, self._next)

    def _next(self) -> None:
        if self._closed or self._task is not None:
            return
        session = self.session
        job = session.next_analysis()
        if job is None:
            return

        def work(progress: ProgressFn, cancelled: CancelledFn) -> dict[str, Any]:
            return run_analysis(job, progress, cancelled)

        def finish(outcome: Any) -> None:
            self._task = None
            outcome()
            self._next()

        self._task = run_task(
            work, parent=self, pool=self.pool, name=f"analysis-{job.take.id}",
            on_progress=lambda p: session.analysis_progress(job.take.id, p),
            on_done=lambda summary: finish(lambda: session.analysis_done(job, summary)),
            on_error=lambda msg: finish(lambda: session.analysis_failed(job, msg)),
            on_cancelled=lambda: finish(lambda: session.analysis_cancelled(job)))

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.cancel_current()
        self.session.cancel_analyses()
        self.pool.waitForDone(10_000)
        self._unsubscribe()


_BADGE_STYLE = {"good": ("✓ Good reference", "#3c8d40"),
                "warning": ("⚠ Check reference", "#b8860b"),
                "bad": ("✗ Unusable reference", "#b03030"),
                "pending": ("… checking", "#707070"),
                # the check itself could not run (no landmark model chosen yet, …): says
                # nothing about the image
                "unknown": ("? Not checked", "#707070")}


class ReferenceQualityBadge(QLabel):
    """A small coloured label; the tooltip lists the reasons. Call :meth:`set_report` with a
    ``QualityReport`` (or its dict), or :meth:`check` to compute it (in the calling thread —
    use the analysis thread or a pool for many images)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.level = "pending"
        self.reasons: list[str] = []
        self._apply()

    def set_report(self, report: Any) -> None:
        d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        self.level, self.reasons = d["level"], list(d["reasons"])
        self._apply()

    def set_error(self, message: str) -> None:
        self.level, self.reasons = "bad", [message]
        self._apply()

    def check(self, image_path: Path, angle: str = "front") -> None:
        from studio.identity.checks import reference_quality

        try:
            self.set_report(reference_quality(image_path, angle))
        except StudioError as exc:
            self.set_error(str(exc))

    def _apply(self) -> None:
        text, colour = _BADGE_STYLE[self.level]
        self.setText(text)
        self.setStyleSheet(f"QLabel {{ color: white; background: {colour}; border-radius: 3px;"
                           " padding: 1px 5px; }")
        self.setToolTip("\n".join(f"• {r}" for r in self.reasons) or "No problems found")
        self.setAccessibleName(f"{text}: " + "; ".join(self.reasons))


class PromptLintList(QListWidget):
    """Warnings for the selected shot's prompt/duration; hidden when there are none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setVisible(False)

    def set_shot(self, shot: Shot | None) -> None:
        from studio.identity.prompt_lint import lint_prompt

        self.clear()
        warnings = lint_prompt(shot) if shot is not None else []
        for w in warnings:
            item = QListWidgetItem(f"⚠ {w.message[0].upper()}{w.message[1:]}. "
                                   f"Suggestion: {w.suggestion}.")
            item.setData(256, w.rule)  # Qt.UserRole
            item.setToolTip(w.suggestion)
            self.addItem(item)
        self.setVisible(bool(warnings))

    def rules(self) -> list[str]:
        return [self.item(i).data(256) for i in range(self.count())]


class _ReferenceQualityBinder(QObject):
    """Keeps a badge in the bible panel showing the quality of the selected reference: the
    verdict the bible's :class:`~studio.ui.bible_panel.ReferenceChecks` made for its tile (one
    check per image, off the UI thread; never a second face detection for the same file)."""

    def __init__(self, main_window: Any) -> None:
        super().__init__(main_window)
        self.win = main_window
        self.badge = ReferenceQualityBadge()
        self.badge.setVisible(False)
        self._current: tuple[str, str] | None = None  # (path, angle) shown
        bible = main_window.bible
        bible.add_reference_widget(self.badge)
        bible.reference_selected.connect(lambda *_: self.refresh())
        bible.checks.ready.connect(self._on_ready)
        main_window.events.character_changed.connect(lambda _cid: self.refresh())
        main_window.project_opened.connect(lambda *_: self.refresh())
        self.refresh()  # the window selected a reference before this binder existed

    def refresh(self, *_: Any) -> None:
        bible = self.win.bible
        path = bible.current_reference_path()
        char = self.win.document.project.character(bible.current_character_id())
        ref = char.reference(bible.current_reference_id() or "") if char else None
        if path is None or ref is None:
            self.badge.setVisible(False)
            self._current = None
            return
        self._current = (str(path), ref.angle.value)
        self.badge.setVisible(True)
        verdict = bible.checks.want(path, ref.angle)
        self._show(verdict)

    def _on_ready(self, path: str, angle: str) -> None:
        if self._current == (path, angle):
            self._show(self.win.bible.checks.verdict(path, angle))

    def _show(self, verdict: dict[str, Any] | None) -> None:
        if verdict is None:
            self.badge.set_report({"level": "pending", "reasons": []})
        elif verdict["level"] == "unknown":  # the check itself failed: its message
            self.badge.set_report({"level": "unknown", "reasons": list(verdict["reasons"])
                                   or ["could not be checked"]})
        else:
            self.badge.set_report(verdict)


def install_identity(main_window: "MainWindow") -> AnalysisController:
    """Wire identity analysis into the main window:

    - an :class:`AnalysisController` (``main_window.identity``) running the open session's
      analyses; the session queues every take the generation queue finishes;
    - Generate ▸ Analyze Active Take (on demand, recomputes);
    - a quality badge for the selected bible reference, checked off the UI thread;
    - prompt-lint warnings under the negative prompt in the inspector.
    """
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QAction

    controller = AnalysisController(main_window.session, parent=main_window)
    main_window.session_bridge.attached.connect(controller.set_session)
    app = QCoreApplication.instance()
    if app is not None:  # stop the worker thread before Qt tears objects down
        app.aboutToQuit.connect(controller.shutdown)
    # A window destroyed before the app quits (a second window, tests): stop the worker thread
    # first — Qt aborts the process when a running QThread is deleted.
    main_window.destroyed.connect(lambda *_a, c=controller: c.shutdown())

    def status(text: str, ms: int = 6000) -> None:
        main_window.statusBar().showMessage(text, ms)

    controller.started.connect(lambda _t: status("Analysing identity…", 0))
    controller.finished.connect(
        lambda _t, summary: status(
            f"Identity analysed: mean {summary.get('identity_mean', 0) or 0:.2f}"
            if summary.get("identity_mean") is not None else "Identity analysed: no face found"))
    controller.failed.connect(lambda _t, msg: main_window.show_error(f"Identity analysis: {msg}"))

    def analyze_active() -> None:
        shot = main_window.document.project.shot(main_window.selected_shot_id())
        if shot is None or shot.active_take is None:
            status("Select a shot with a take to analyse")
            return
        controller.analyze(shot.id, shot.active_take.id, force=True)

    action = QAction("Analyze Active Take", main_window)
    action.setShortcut("Ctrl+Shift+A")
    action.triggered.connect(analyze_active)
    main_window.menu("Generate").addSeparator()
    main_window.menu("Generate").addAction(action)
    main_window.analyze_action = action

    main_window.reference_quality = _ReferenceQualityBinder(main_window)

    lint = PromptLintList()
    lint.setMaximumHeight(110)
    main_window.inspector.add_shot_widget(lint, "", after=main_window.inspector.negative)
    main_window.prompt_lint = lint

    def refresh_lint(*_: Any) -> None:
        lint.set_shot(main_window.document.project.shot(main_window.selected_shot_id()))

    main_window.shot_selected.connect(refresh_lint)
    main_window.events.shot_changed.connect(refresh_lint)
    main_window.project_opened.connect(refresh_lint)
    refresh_lint()
    return controller
