"""Qt pieces of identity analysis: a background analysis controller, a reference-quality badge
and a prompt-lint list. Standalone; the main window wires them in through
:func:`install_identity`.

Analysis runs on one dedicated worker thread (one job at a time: it is CPU-bound, and the
machine's other core stays with the UI and the generator). Results come back as queued signals;
the controller writes ``identity_mean`` / ``analysis_engine`` through
``ProjectDocument.update_take`` on the UI thread.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QWidget

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.core.model import Shot


class _Worker(QObject):
    progress = Signal(str, int, int)  # take_id, done, total
    finished = Signal(str, str, object)  # shot_id, take_id, summary dict
    failed = Signal(str, str, str)  # shot_id, take_id, message

    def __init__(self) -> None:
        super().__init__()
        self.cancel_flag = threading.Event()

    @Slot(object)
    def run_job(self, job: dict[str, Any]) -> None:
        from studio.core.tasks import Cancelled
        from studio.identity.api import analyze_take

        shot, take = job["shot"], job["take"]
        self.cancel_flag.clear()
        try:
            summary = analyze_take(job["folder"], job["project"], shot, take,
                                   lambda p: self.progress.emit(take.id, p.step, p.total),
                                   self.cancel_flag.is_set, engine=job.get("engine"),
                                   force=job.get("force", False))
        except Cancelled:
            self.failed.emit(shot.id, take.id, "analysis cancelled")
        except StudioError as exc:
            self.failed.emit(shot.id, take.id, str(exc))
        except Exception as exc:  # a bug must not kill the worker thread; report it readably
            traceback.print_exc()
            self.failed.emit(shot.id, take.id, f"analysis failed: {exc}")
        else:
            self.finished.emit(shot.id, take.id, summary)


class AnalysisController(QObject):
    """Queue of take analyses for one document. ``analyze(shot_id, take_id)`` on demand;
    connect ``take_added`` (e.g. from the generation queue) to analyse new takes automatically."""

    started = Signal(str)  # take_id
    progress = Signal(str, int, int)
    finished = Signal(str, object)  # take_id, summary
    failed = Signal(str, str)  # take_id, message
    _submit = Signal(object)

    def __init__(self, document: ProjectDocument, engine: Any = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.engine = engine
        self._queue: deque[tuple[str, str, bool]] = deque()
        self._busy: str | None = None
        self._thread = QThread(self)
        self._thread.setObjectName("identity-analysis")
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run_job)
        self._worker.progress.connect(self.progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy is not None

    def pending(self) -> list[str]:
        return [t for _, t, _ in self._queue]

    def analyze(self, shot_id: str, take_id: str, force: bool = False) -> None:
        if take_id == self._busy or any(t == take_id for _, t, _ in self._queue):
            return
        self._queue.append((shot_id, take_id, force))
        self._next()

    @Slot(str, str)
    def take_added(self, shot_id: str, take_id: str) -> None:
        self.analyze(shot_id, take_id)

    def cancel_current(self) -> None:
        self._worker.cancel_flag.set()

    def _next(self) -> None:
        if self._busy is not None or not self._queue:
            return
        if self.document.folder is None:
            self.failed.emit(self._queue.popleft()[1], "save the project before analysing takes")
            return self._next()
        shot_id, take_id, force = self._queue.popleft()
        project = self.document.project
        shot = project.shot(shot_id)
        take = shot.take(take_id) if shot else None
        if shot is None or take is None:
            self.failed.emit(take_id, "the take no longer exists")
            return self._next()
        self._busy = take_id
        self.started.emit(take_id)
        # The worker gets deep copies: the document may change while it runs.
        self._submit.emit({"folder": Path(self.document.folder), "shot": shot.model_copy(deep=True),
                           "take": take.model_copy(deep=True),
                           "project": project.model_copy(deep=True), "engine": self.engine,
                           "force": force})

    @Slot(str, str, object)
    def _on_finished(self, shot_id: str, take_id: str, summary: dict[str, Any]) -> None:
        self._busy = None
        shot = self.document.project.shot(shot_id)
        if shot is not None and shot.take(take_id) is not None and \
                summary.get("identity_mean") is not None:
            eng = summary.get("engine", {})
            self.document.update_take(shot_id, take_id,
                                      identity_mean=float(summary["identity_mean"]),
                                      analysis_engine=f"{eng.get('name')}/{eng.get('model')}")
        self.finished.emit(take_id, summary)
        self._next()

    @Slot(str, str, str)
    def _on_failed(self, shot_id: str, take_id: str, message: str) -> None:
        self._busy = None
        self.failed.emit(take_id, message)
        self._next()

    def set_document(self, document: ProjectDocument) -> None:
        """Follow the window to another project: what was queued for the old one is dropped."""
        self.cancel_current()
        self._queue.clear()
        self.document = document

    def shutdown(self) -> None:
        self.cancel_current()
        self._queue.clear()
        self._thread.quit()
        self._thread.wait(10_000)


_BADGE_STYLE = {"good": ("✓ Good reference", "#3c8d40"),
                "warning": ("⚠ Check reference", "#b8860b"),
                "bad": ("✗ Unusable reference", "#b03030"),
                "pending": ("… checking", "#707070")}


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


_LUT: Any = None


def heatmap_image(heat: Any) -> Any:
    """A low-resolution drift heatmap (uint8 (h, w), from the analysis npz) as a QImage
    (ARGB32 premultiplied, warm colours, transparent where 0). Paint it scaled over the frame
    with smooth transformation: Qt does the upscaling and blending, nothing full-size is built
    in numpy."""
    import numpy as np
    from PySide6.QtGui import QImage

    global _LUT
    if _LUT is None:  # value -> premultiplied BGRA (little-endian ARGB32), yellow→red
        v = np.arange(256, dtype=np.float32) / 255
        a = np.clip(v * 1.6, 0, 0.85)
        r, g, b = np.ones_like(v), np.clip(1 - v, 0, 1) * 0.9, np.zeros_like(v)
        _LUT = (np.stack([b * a, g * a, r * a, a], axis=1) * 255).round().astype(np.uint8)
    heat = np.ascontiguousarray(heat, dtype=np.uint8)
    h, w = heat.shape
    bgra = np.ascontiguousarray(_LUT[heat])
    img = QImage(bgra.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)
    return img.copy()  # own the pixels (bgra is freed on return)


class _QualityJob(QRunnable):
    """Reference-quality check off the UI thread (face detection takes ~0.1–1 s per image)."""

    class _Signals(QObject):
        done = Signal(str, object)  # cache key, QualityReport or error text

    def __init__(self, key: str, path: Path, angle: str) -> None:
        super().__init__()
        self.key, self.path, self.angle = key, path, angle
        self.signals = self._Signals()

    def run(self) -> None:
        from studio.identity.checks import reference_quality

        try:
            result: Any = reference_quality(self.path, self.angle)
        except StudioError as exc:
            result = str(exc)
        except Exception as exc:  # never lose the worker to an unexpected error
            result = f"{self.path}: quality check failed: {exc}"
        try:
            self.signals.done.emit(self.key, result)
        except RuntimeError:
            pass  # the window closed while the check ran: nobody is waiting for the result


class _ReferenceQualityBinder(QObject):
    """Keeps a badge in the bible panel showing the quality of the selected reference."""

    def __init__(self, main_window: Any) -> None:
        super().__init__(main_window)
        self.win = main_window
        self.badge = ReferenceQualityBadge()
        self.badge.setVisible(False)
        self._cache: dict[str, Any] = {}
        self._current = ""
        self._jobs: set[_QualityJob] = set()
        # Debounced: arrowing through references starts one check, for the one the user stops
        # on, and opening a project does not load dlib while the window is first painted.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.refresh)
        main_window.bible.add_reference_widget(self.badge)
        main_window.bible.reference_selected.connect(lambda *_: self._timer.start())
        main_window.events.character_changed.connect(lambda _cid: self._timer.start())
        main_window.project_opened.connect(lambda *_: self._timer.start())
        self._timer.start()  # the window selected a reference before this binder existed

    def refresh(self, *_: Any) -> None:
        bible = self.win.bible
        path = bible.current_reference_path()
        char = self.win.document.project.character(bible.current_character_id())
        ref = char.reference(bible.current_reference_id() or "") if char else None
        if path is None or ref is None:
            self.badge.setVisible(False)
            self._current = ""
            return
        key = f"{path}|{ref.angle.value}"
        self._current = key
        self.badge.setVisible(True)
        if key in self._cache:
            self._show(self._cache[key])
            return
        self.badge.set_report({"level": "pending", "reasons": []})
        job = _QualityJob(key, path, ref.angle.value)
        job.signals.done.connect(self._done)
        self._jobs.add(job)
        job.setAutoDelete(False)
        QThreadPool.globalInstance().start(job)

    @Slot(str, object)
    def _done(self, key: str, result: Any) -> None:
        self._jobs = {j for j in self._jobs if j.key != key}
        self._cache[key] = result
        if key == self._current:
            self._show(result)

    def _show(self, result: Any) -> None:
        if isinstance(result, str):
            self.badge.set_error(result)
        else:
            self.badge.set_report(result)


def install_identity(main_window: Any) -> AnalysisController:
    """Wire identity analysis into the main window:

    - ``main_window.identity``: an :class:`AnalysisController` following the open project;
      every take the generation queue finishes is analysed automatically;
    - Generate ▸ Analyze Active Take (on demand, recomputes);
    - a quality badge for the selected bible reference, checked off the UI thread;
    - prompt-lint warnings under the negative prompt in the inspector.
    """
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QAction

    controller = AnalysisController(main_window.document, parent=main_window)
    main_window.identity = controller
    app = QCoreApplication.instance()
    if app is not None:  # stop the worker thread before Qt tears objects down
        app.aboutToQuit.connect(controller.shutdown)
    # A window destroyed before the app quits (a second window, tests): stop the worker thread
    # first — Qt aborts the process when a running QThread is deleted.
    main_window.destroyed.connect(lambda *_a, c=controller: c.shutdown())
    main_window.project_opened.connect(controller.set_document)
    generation = getattr(main_window, "generation", None)
    if generation is not None:
        generation.take_added.connect(controller.take_added)

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
