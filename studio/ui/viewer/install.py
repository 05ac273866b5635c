"""Wiring the take viewer into the main window (one call from ``MainWindow._install_extensions``).

* The centre becomes a stack: the start-image view (``main_window.viewer``, kept as it is) for a
  shot without takes, the take viewer for a shot with takes; it follows the storyboard selection
  and switches when a shot gets its first take.
* Re-roll buttons go to the generation controller (``main_window.generation``) when it exists;
  "re-make segment" queues through the session (its JobQueued event starts the controller).
* The reference thumbnails beside the picture come from the window's thumbnail cache.
* The storyboard's badge and thumbnail providers show the active take's middle frame and its
  identity badge (the take count is already on the card).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QKeyEvent, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import QApplication, QStackedWidget

from studio.ui.viewer.badges import shared_thumbnails, shot_badge
from studio.ui.viewer.viewer import ViewerWidget

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow
    from studio.ui.storyboard import Storyboard
    from studio.core.document import ProjectDocument
    from studio.core.model import Shot


TRANSPORT_KEYS = (Qt.Key.Key_Space, Qt.Key.Key_J, Qt.Key.Key_K, Qt.Key.Key_L)


def _install_transport_shortcuts(win: Any, viewer: ViewerWidget, stack: QStackedWidget) -> None:
    """Space and J/K/L drive the take viewer from anywhere in the window, as in an editor —
    not only while the picture has focus. Text fields still receive them while typing (they
    claim printable keys through ShortcutOverride); arrow keys are left to the lists, which use
    them to move between shots and references."""

    def forward(key: Qt.Key) -> None:
        if stack.currentWidget() is not viewer:
            return
        press = QKeyEvent(QEvent.Type.KeyPress, key, Qt.KeyboardModifier.NoModifier)
        viewer.keyPressEvent(press)

    for key in TRANSPORT_KEYS:
        shortcut = QShortcut(QKeySequence(key), win)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(lambda k=key: forward(k))


def install_viewer(win: "MainWindow") -> ViewerWidget:
    viewer = ViewerWidget(win.document, win.undo_stack, win.events, win)
    start_view = win.takeCentralWidget()  # the start-image view; take it, do not delete it
    stack = QStackedWidget(win)
    stack.setObjectName("centreStack")
    if start_view is not None:
        stack.addWidget(start_view)
    stack.addWidget(viewer)
    win.setCentralWidget(stack)
    win.take_viewer = viewer
    win.centre_stack = stack

    def show_page() -> None:
        shot = win.document.project.shot(viewer.shot_id)
        use_viewer = shot is not None and bool(shot.takes)
        stack.setCurrentWidget(viewer if use_viewer or start_view is None else start_view)

    def on_selected(shot_id: str) -> None:
        viewer.set_shot(shot_id or None)
        show_page()

    def on_shot_changed(shot_id: str) -> None:
        if shot_id == viewer.shot_id:
            show_page()
        win.storyboard.refresh()

    def on_project(document: "ProjectDocument") -> None:
        viewer.set_document(document)
        # The selected shot's take opens on the next turn of the event loop: an open's work
        # comes in pieces the window paints between (no stall over 100 ms on a big project).
        QTimer.singleShot(0, viewer, lambda: on_selected(win.selected_shot_id() or "")
                          if viewer.document is document else None)

    def reroll(shot_id: str, count: int) -> None:
        win.generation.reroll(shot_id, count)

    viewer.reroll_handler = reroll
    viewer.remake_handler = lambda shot_id, take_id, index: win.generation.remake_segment(
        shot_id, take_id, index)
    # The references a take was generated against: thumbnails from the bible's cache.
    if getattr(win, "thumbnails", None) is not None:
        viewer.reference.set_thumbnail_service(win.thumbnails)
    win.shot_selected.connect(on_selected)
    win.project_opened.connect(on_project)
    viewer.set_session(win.session)
    win.session_bridge.attached.connect(viewer.set_session)
    win.session_bridge.event.connect(viewer.on_session_event)
    win.events.shot_changed.connect(on_shot_changed)
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(viewer.shutdown)

    _install_transport_shortcuts(win, viewer, stack)

    install_storyboard_badges(win, win.storyboard)
    # Open the selected shot's take after the window is up: decoding libraries (PyAV, OpenCV)
    # stay off the start-up path.
    QTimer.singleShot(0, viewer, lambda: on_selected(win.selected_shot_id() or ""))
    return viewer


def install_storyboard_badges(win: "MainWindow", storyboard: "Storyboard") -> None:
    """Fill the storyboard cards' badge and picture slots from the active take."""
    from studio.ui.storyboard import Badge as CardBadge

    thumbs = shared_thumbnails()
    pixmaps: dict[tuple[str, int], QPixmap] = {}  # stable pixmaps: the card caches by cacheKey

    def badge(shot: "Shot") -> CardBadge | None:
        info = shot_badge(win.document, shot, win.session.analyses.stale_reasons)
        if info.take_count == 0:
            return None
        b = info.badge
        return CardBadge(b.text, b.color.name(), b.tooltip)

    def picture(shot: "Shot") -> QPixmap | None:
        info = shot_badge(win.document, shot)
        if info.video is None:
            return None
        img = thumbs.get(info.video)
        if img is None:
            return None
        key = (str(info.video), img.cacheKey())
        pix = pixmaps.get(key)
        if pix is None:
            if len(pixmaps) > 512:
                pixmaps.clear()
            pix = pixmaps[key] = QPixmap.fromImage(img)
        return pix

    win.session_bridge.analysis_stale.connect(lambda _r: storyboard.refresh())
    win.session_bridge.analysis_ready.connect(lambda *_a: storyboard.refresh())
    storyboard.set_badge_provider(badge)
    storyboard.set_thumbnail_provider(picture)
    # The storyboard's own method as receiver: Qt drops the connection when the storyboard goes
    # (the thumbnail cache is process-wide and outlives windows).
    thumbs.ready.connect(storyboard.refresh)

