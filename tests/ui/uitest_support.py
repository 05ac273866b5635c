"""Helpers for the UI tests: a main window on a real project folder, and drag-and-drop events
sent straight to a view's viewport (a real QDrag.exec returns at once on the offscreen
platform, so the events are what a drag would deliver)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from studio.core.document import ProjectDocument
from studio.core.model import Character, Project, Shot
from studio.core.persistence import save_project
from studio.ui import dialogs


class Answers:
    """Replaces dialogs.ask: answers from a queue (default Discard) and records questions."""

    def __init__(self) -> None:
        self.queue: list[QMessageBox.StandardButton] = []
        self.asked: list[str] = []
        self.questions: list[dict[str, Any]] = []  # each question with its text and labels

    def __call__(self, parent: Any, title: str, text: str, buttons: Any, default: Any,
                 labels: Any = None, informative: str = "") -> QMessageBox.StandardButton:
        self.asked.append(title)
        self.questions.append({"title": title, "text": text, "labels": dict(labels or {}),
                               "informative": informative})
        return self.queue.pop(0) if self.queue else QMessageBox.Discard


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Answers:
    a = Answers()
    monkeypatch.setattr(dialogs, "ask", a)
    return a


def make_settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


def sample_project(folder: Path) -> ProjectDocument:
    """A saved project with two characters (no references yet) and three shots."""
    project = Project(name="Sample", characters=[
        Character(id="alice", name="Alice", color="#e0a040"),
        Character(id="bob", name="Bob", color="#4c9be8")])
    project.shots = [Shot(id="s1", title="One", duration_s=2.0),
                     Shot(id="s2", title="Two", duration_s=3.5, character_id="bob"),
                     Shot(id="s3", title="Three", duration_s=1.5)]
    save_project(project, folder)
    return ProjectDocument(project, folder)


def open_window(qtbot: Any, doc: ProjectDocument | None, settings: QSettings) -> Any:
    from studio.ui.main_window import MainWindow

    win = MainWindow(doc, settings=settings)
    qtbot.addWidget(win, before_close_func=_drain)
    win.show()
    qtbot.waitExposed(win)
    return win


def _drain(win: Any) -> None:
    win.importer.wait()
    win.thumbnails.wait()
    QApplication.processEvents()


def file_mime(paths: list[Path]) -> QMimeData:
    m = QMimeData()
    m.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return m


def send_drop(view: Any, mime: QMimeData, pos: QPointF | QPoint,
              action: Qt.DropAction = Qt.CopyAction) -> bool:
    """Enter, move and drop at ``pos`` (viewport coordinates). Returns whether it was accepted."""
    target: QWidget = view.viewport()
    posf = QPointF(pos)
    buttons, mods = Qt.LeftButton, Qt.NoModifier
    # Qt 6 takes a QPoint for enter/move events and a QPointF for the drop.
    enter = QDragEnterEvent(posf.toPoint(), action, mime, buttons, mods)
    QApplication.sendEvent(target, enter)
    if not enter.isAccepted():
        return False
    move = QDragMoveEvent(posf.toPoint(), action, mime, buttons, mods)
    QApplication.sendEvent(target, move)
    drop = QDropEvent(posf, action, mime, buttons, mods)
    QApplication.sendEvent(target, drop)
    return drop.isAccepted()


def drop_and_wait(qtbot: Any, win: Any, view: Any, paths: list[Path], pos: QPointF | QPoint) -> Any:
    """Drop files and wait for the background import to be applied."""
    with qtbot.waitSignal(win.importer.finished, timeout=30_000) as blocker:
        assert send_drop(view, file_mime(paths), pos)
    return blocker.args[0]


def dump(doc: ProjectDocument) -> dict[str, Any]:
    return doc.project.model_dump(mode="json")


def wait_until(qtbot: Any, cond: Callable[[], bool], timeout: int = 20_000) -> None:
    qtbot.waitUntil(cond, timeout=timeout)


def start_app(qapp: QApplication, qtbot: Any, request: Any, monkeypatch: pytest.MonkeyPatch,
              **run_app_kw: Any) -> Any:
    """``run_app(**run_app_kw)`` as `continuity-studio` starts the window, returning the new
    MainWindow. Its event loop is not run (quitting it would shut the shared task pools for
    the tests that follow), nor its excepthook, theme or UI-thread collector installed (they
    would outlive this test on the shared QApplication); the names run_app gives the shared
    application are restored afterwards, and the window closes while dialogs.ask is patched."""
    from studio.ui import app as app_mod
    from studio.ui.main_window import MainWindow

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    monkeypatch.setattr(app_mod, "install_excepthook", lambda win: None)
    monkeypatch.setattr(app_mod, "apply_theme", lambda app: None)  # keep the session's style
    monkeypatch.setattr("studio.ui.gc_guard.install", lambda app: None)
    monkeypatch.setattr(qapp, "exec", lambda: 0)
    names = qapp.applicationName(), qapp.organizationName(), qapp.desktopFileName()

    def restore_names() -> None:
        qapp.setApplicationName(names[0])
        qapp.setOrganizationName(names[1])
        qapp.setDesktopFileName(names[2])

    request.addfinalizer(restore_names)
    before = set(QApplication.topLevelWidgets())
    assert app_mod.run_app(**run_app_kw) == 0
    (win,) = [w for w in QApplication.topLevelWidgets()
              if isinstance(w, MainWindow) and w not in before]
    qtbot.addWidget(win)
    request.addfinalizer(win.close)
    return win
