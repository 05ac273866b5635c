"""The inspector's framing editor: the shot's frame drawn on its start image (automatic on the face
until the artist frames it), drag to move, wheel to zoom, reset, one undo step per gesture; the
centre view and the generation request follow."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from studio.core.document import ProjectDocument
from studio.core.model import Character, Project, Reference, Shot
from studio.core.persistence import ensure_layout, save_project
from studio.media.images import import_image
from uitest_support import answers, make_settings, open_window  # noqa: F401


def _project(folder: Path, photo: Path, other: Path) -> ProjectDocument:
    """One character with two portraits; shot s1 starts on the first, s2 has no start image."""
    ensure_layout(folder)
    a, b = import_image(folder, photo), import_image(folder, other)
    ra, rb = Reference(id="ra", asset=a.path), Reference(id="rb", asset=b.path)
    project = Project(name="Framing", characters=[Character(id="c1", name="Eileen", references=[ra, rb])],
                      assets={a.sha256: a, b.sha256: b})
    project.shots = [Shot(id="s1", title="One", character_id="c1", start_asset=a.path,
                          start_reference_id="ra"),
                     Shot(id="s2", title="Two")]
    save_project(project, folder)
    return ProjectDocument(project, folder)


@pytest.fixture
def window(qtbot, tmp_path: Path, photo_png: Path, answers):  # noqa: F811
    from PIL import Image

    other = tmp_path / "flipped.png"
    Image.open(photo_png).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    doc = _project(tmp_path / "proj", photo_png, other)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.resize(1366, 768)
    win.select_shot("s1")
    win.inspector_dock.raise_()
    return win


def _wheel(widget, pos: QPointF, notches: int) -> None:
    ev = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)
    assert ev.isAccepted()


def _wait_face(qtbot, editor) -> None:
    """Until the window's face finder has answered (its ``ready`` delivered to the views)."""
    from studio.ui.start_image_view import auto_framing

    finder = auto_framing(editor.win)
    qtbot.waitUntil(lambda: finder.pending() == 0 and editor.frame().source != "pending",
                    timeout=30_000)


def test_automatic_frame_is_shown_and_found_off_the_ui_thread(qtbot, window) -> None:
    editor = window.inspector.framing
    assert editor.isVisibleTo(window) and editor.width() <= window.inspector.width()
    # At first the face is not known (the detector starts a moment later, in a worker): the
    # editor already draws a frame of the shot's aspect.
    first = editor.frame()
    assert first is not None and first.source == "pending"
    _wait_face(qtbot, editor)
    frame = editor.frame()
    assert frame.source == "face"
    assert window.inspector.framing_label.text().startswith("Automatic: on the face")
    assert not window.inspector.framing_reset.isEnabled()  # nothing to reset yet
    x, y, w, h = frame.box
    assert w / h == pytest.approx(832 / 480, rel=1e-3)
    rect = editor.frame_rect()
    assert rect.width() / rect.height() == pytest.approx(832 / 480, rel=0.02)
    assert editor.image_rect().contains(rect.adjusted(1, 1, -1, -1))
    # The centre view draws the same frame, at its own scale.
    view = window.viewer
    vr, vi = view.frame_rect(), view._image_rect(frame.src)
    er, ei = rect, editor.image_rect()
    for a, b in [((vr.left() - vi.left()) / vi.width(), (er.left() - ei.left()) / ei.width()),
                 ((vr.top() - vi.top()) / vi.height(), (er.top() - ei.top()) / ei.height()),
                 (vr.width() / vi.width(), er.width() / ei.width())]:
        assert a == pytest.approx(b, abs=0.01)
    # A shot without a start image says so.
    window.select_shot("s2")
    assert window.inspector.framing.frame() is None


def test_wheel_and_drag_are_one_undo_step_each(qtbot, window) -> None:
    doc, stack = window.document, window.undo_stack
    editor = window.inspector.framing
    _wait_face(qtbot, editor)
    before = stack.count()
    auto_box = editor.frame().box
    # Three notches in a row: zoom in about the frame's centre, one undo step.
    centre = editor.frame_rect().center()
    for _ in range(3):
        _wheel(editor, centre, 1)
    assert stack.count() == before + 1
    assert stack.text(stack.count() - 1) == "Change framing of 'One'"
    zoomed = doc.project.shot("s1").framing
    assert zoomed is not None and zoomed.asset == doc.project.shot("s1").start_asset
    assert zoomed.w * 512 == pytest.approx(auto_box[2] / 1.15 ** 3, rel=1e-3)
    assert zoomed.w * 512 / (zoomed.h * 512) == pytest.approx(832 / 480, rel=1e-3)
    assert window.inspector.framing_label.text() == "Custom framing"
    assert window.inspector.framing_reset.isEnabled()

    # A drag, in several moves: the frame follows the mouse, one more undo step.
    editor.end_gesture()
    image = editor.image_rect()
    per_px = 512 / image.width()  # source pixels per widget pixel
    start = editor.frame_rect().center().toPoint()
    qtbot.mousePress(editor, Qt.LeftButton, pos=start)
    for k in range(1, 6):
        qtbot.mouseMove(editor, start + QPoint(-4 * k, 3 * k))
    qtbot.mouseRelease(editor, Qt.LeftButton, pos=start + QPoint(-20, 15))
    assert stack.count() == before + 2
    moved = doc.project.shot("s1").framing
    assert (moved.x - zoomed.x) * 512 == pytest.approx(-20 * per_px, abs=0.6)
    assert (moved.y - zoomed.y) * 512 == pytest.approx(15 * per_px, abs=0.6)
    assert (moved.w, moved.h) == (zoomed.w, zoomed.h)
    # A drag that comes back to where it started leaves no step at all.
    start = editor.frame_rect().center().toPoint()
    qtbot.mousePress(editor, Qt.LeftButton, pos=start)
    qtbot.mouseMove(editor, start + QPoint(10, 0))
    qtbot.mouseMove(editor, start)
    qtbot.mouseRelease(editor, Qt.LeftButton, pos=start)
    assert stack.count() == before + 2 and doc.project.shot("s1").framing == moved
    # Dragging far past the edge keeps the frame on the image.
    qtbot.mousePress(editor, Qt.LeftButton, pos=start)
    qtbot.mouseMove(editor, start + QPoint(-2000, -2000))
    qtbot.mouseRelease(editor, Qt.LeftButton, pos=start + QPoint(-2000, -2000))
    corner = doc.project.shot("s1").framing
    assert (corner.x, corner.y) == (0.0, 0.0)

    # Reset, then undo all the way back and redo.
    window.inspector.framing_reset.click()
    assert doc.project.shot("s1").framing is None
    assert stack.text(stack.count() - 1) == "Reset framing of 'One' to automatic"
    stack.undo()
    assert doc.project.shot("s1").framing == corner
    stack.undo()
    assert doc.project.shot("s1").framing == moved
    stack.undo()
    assert doc.project.shot("s1").framing == zoomed
    stack.undo()
    assert doc.project.shot("s1").framing is None and stack.count() - stack.index() == 4
    stack.redo()
    stack.redo()
    assert doc.project.shot("s1").framing == moved


def test_keys_nudge_and_zoom_and_a_pause_starts_a_new_step(qtbot, window) -> None:
    stack = window.undo_stack
    editor = window.inspector.framing
    _wait_face(qtbot, editor)
    editor.setFocus()
    before = stack.count()
    qtbot.keyClick(editor, Qt.Key_Plus)
    qtbot.keyClick(editor, Qt.Key_Plus)
    qtbot.keyClick(editor, Qt.Key_Right)
    assert stack.count() == before + 1
    qtbot.wait(int(editor._burst_timer.interval() * 1.5))  # a pause: the next key is a new step
    qtbot.keyClick(editor, Qt.Key_Down)
    assert stack.count() == before + 2
    qtbot.keyClick(editor, Qt.Key_Backspace)
    assert window.document.project.shot("s1").framing is None


def test_framing_follows_aspect_and_start_image_and_reaches_the_job(qtbot, window) -> None:
    from studio.engine.queue import Job
    from studio.engine.runner import prepare_job

    doc = window.document
    editor = window.inspector.framing
    _wait_face(qtbot, editor)
    _wheel(editor, editor.frame_rect().center(), 2)
    framing = doc.project.shot("s1").framing
    job = Job(shot_id="s1", take_id="t1", seed=1)
    assert prepare_job(doc, job).request.crop == pytest.approx(framing.as_tuple())

    # 9:16: the frame keeps its centre and area, at the new aspect.
    combo = window.inspector.aspect
    i = combo.findData("9:16")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    x, y, w, h = editor.frame().box
    assert w / h == pytest.approx(480 / 832, rel=1e-3)
    assert w * h == pytest.approx(framing.w * framing.h * 512 * 512, rel=1e-3)
    assert (x + w / 2) / 512 == pytest.approx(framing.x + framing.w / 2, abs=1e-3)

    # Another start image: framed automatically (the framing was made for the first one)...
    combo = window.inspector.start_image
    i = combo.findData("rb")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    shot = doc.project.shot("s1")
    assert shot.framing == framing and shot.start_framing is None
    _wait_face(qtbot, editor)
    assert editor.frame().source == "face" and prepare_job(doc, job).request.crop is None
    # ...and back on the first one, its framing applies again.
    i = combo.findData("ra")
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    assert editor.frame().source == "shot"


def test_every_listed_framing_key_is_handled(qtbot, window) -> None:
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QKeyEvent, QKeySequence

    from studio.ui.start_image_view import FRAMING_KEYS

    editor = window.inspector.framing
    _wait_face(qtbot, editor)
    editor.setFocus()
    for text, _what in FRAMING_KEYS:
        combo = QKeySequence(text)[0]
        ev = QKeyEvent(QEvent.KeyPress, combo.key(), combo.keyboardModifiers())
        QApplication.sendEvent(editor, ev)
        assert ev.isAccepted(), text
    ev = QKeyEvent(QEvent.KeyPress, Qt.Key_Q, Qt.NoModifier)
    QApplication.sendEvent(editor, ev)
    assert not ev.isAccepted()  # other keys go on to the window
