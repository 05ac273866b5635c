"""Drag and drop of real image files onto the character bible and the storyboard."""

from __future__ import annotations


from PIL import Image
from PySide6.QtCore import QPointF

from studio.core.model import Angle
from studio.ui import drops
from studio.ui.storyboard import ID_ROLE
from uitest_support import (answers, drop_and_wait, dump, make_settings, open_window,  # noqa: F401
                            sample_project, send_drop)


def _item_center(listwidget, index: int) -> QPointF:
    return QPointF(listwidget.visualItemRect(listwidget.item(index)).center())


def _card_center(board, row: int) -> QPointF:
    return QPointF(board.view.visualRect(board.model.index(row)).center())


def test_drop_on_character_adds_references_undoably(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    before = dump(doc)
    chars = win.bible.characters
    result = drop_and_wait(qtbot, win, chars, [photo_png], _item_center(chars, 1))  # onto Bob

    assert result.errors == []
    bob = doc.project.character("bob")
    assert len(bob.references) == 1 and bob.references[0].angle is Angle.FRONT
    asset = doc.project.asset_by_path(bob.references[0].asset)
    assert asset.original_name == "astronaut.png" and (asset.width, asset.height) == (512, 512)
    assert (doc.folder / asset.path).is_file()
    assert doc.project.character("alice").references == []
    assert "1 reference" in chars.item(1).text()

    after = dump(doc)
    win.undo_stack.undo()
    assert dump(doc) == before  # the reference *and* the asset entry are gone
    win.undo_stack.redo()
    assert dump(doc) == after
    assert win.isWindowModified()


def test_drop_on_empty_space_creates_character(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.resize(1440, 900)  # room below the two characters (the offscreen screen is 800×800)
    qtbot.wait(20)
    chars = win.bible.characters
    empty = QPointF(20, chars.viewport().height() - 5)
    assert chars.itemAt(empty.toPoint()) is None
    second = tmp_path / "side_view.jpg"
    Image.open(photo_png).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(second, quality=90)
    drop_and_wait(qtbot, win, chars, [photo_png, second], empty)

    assert len(doc.project.characters) == 3
    new = doc.project.characters[-1]
    assert new.name == "Astronaut"  # named after the first file
    assert len(new.references) == 2
    assert new.color not in {"#e0a040", "#4c9be8"}  # a colour tag not used yet
    assert win.bible.current_character_id() in {"alice", new.id}
    win.undo_stack.undo()
    assert len(doc.project.characters) == 2 and len(doc.project.assets) == 0


def test_drop_on_reference_grid_and_change_angle(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.bible.select_character("alice")
    grid = win.bible.references
    drop_and_wait(qtbot, win, grid, [photo_png], QPointF(10, 10))
    alice = doc.project.character("alice")
    assert len(alice.references) == 1
    ref_id = alice.references[0].id
    # the reference's thumbnail arrives from the worker pool
    qtbot.waitUntil(lambda: win.thumbnails.get(doc.folder / alice.references[0].asset, 160)
                    is not None, timeout=20_000)
    assert not grid.item(0).icon().isNull()

    grid.setCurrentRow(0)
    combo = win.bible.angle_combo
    i = combo.findData(Angle.PROFILE_LEFT.value)
    combo.setCurrentIndex(i)
    combo.activated.emit(i)
    assert doc.project.character("alice").reference(ref_id).angle is Angle.PROFILE_LEFT
    assert grid.item(0).text() == "Profile left"
    win.undo_stack.undo()
    assert doc.project.character("alice").reference(ref_id).angle is Angle.FRONT

    grid.setCurrentRow(0)
    win.bible.remove_reference()
    assert doc.project.character("alice").references == []
    win.undo_stack.undo()
    assert doc.project.character("alice").references[0].id == ref_id


def test_drop_file_on_shot_sets_start_image_in_one_step(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    before = dump(doc)
    board = win.storyboard
    # s1 has no character: the portrait creates one
    drop_and_wait(qtbot, win, board.view, [photo_png], _card_center(board, 0))
    s1 = doc.project.shot("s1")
    assert s1.character_id is not None and s1.start_asset is not None
    char = doc.project.character(s1.character_id)
    assert [r.asset for r in char.references] == [s1.start_asset]
    assert s1.start_reference_id == char.references[0].id
    assert win.undo_stack.count() == 1
    win.undo_stack.undo()
    assert dump(doc) == before

    # s2 belongs to Bob: the portrait joins Bob's references
    drop_and_wait(qtbot, win, board.view, [photo_png], _card_center(board, 1))
    bob = doc.project.character("bob")
    s2 = doc.project.shot("s2")
    assert len(bob.references) == 1 and s2.start_reference_id == bob.references[0].id
    assert s2.character_id == "bob" and len(doc.project.characters) == 2
    # the viewer shows the selected shot's start image once its preview is decoded
    win.select_shot("s2")
    qtbot.waitUntil(lambda: win.viewer.current_pixmap() is not None, timeout=20_000)
    img = win.viewer.grab().toImage()
    centre = img.pixelColor(img.width() // 2, (img.height() - 30) // 2)
    assert centre.name() != "#111214"  # the photo, not the empty background


def test_drop_reference_on_shot(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    drop_and_wait(qtbot, win, win.bible.characters, [photo_png],
                  _item_center(win.bible.characters, 0))
    ref = doc.project.character("alice").references[0]
    board = win.storyboard
    assert send_drop(board.view, drops.reference_mime(ref.id), _card_center(board, 2))
    s3 = doc.project.shot("s3")
    assert (s3.start_asset, s3.start_reference_id, s3.character_id) == (ref.asset, ref.id, "alice")
    assert win.selected_shot_id() == "s3"
    assert win.inspector.start_image.currentData() == ref.id
    win.undo_stack.undo()
    assert doc.project.shot("s3").start_asset is None
    assert doc.project.shot("s3").character_id is None


def test_bad_files_are_reported_and_good_ones_imported(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(photo_png.read_bytes()[:5000])
    result = drop_and_wait(qtbot, win, win.bible.characters, [not_image, photo_png, truncated],
                           _item_center(win.bible.characters, 0))

    assert len(result.errors) == 2
    assert len(doc.project.character("alice").references) == 1
    shown = win.last_error
    assert "notes.png" in shown and "not an image" in shown
    assert "cut.png" in shown and "truncated" in shown
    assert "2 file(s) could not be imported" in win.statusBar().currentMessage()
    assert win.isVisible()  # the app keeps going
    assert win._error_box is not None and win._error_box.isVisible()
    win._error_box.close()
    # and it still works afterwards
    win.storyboard.add_shot()
    assert len(doc.project.shots) == 4


def test_reorder_shots_by_dragging_cards(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    board = win.storyboard
    right_of_last = board.view.visualRect(board.model.index(2))
    pos = QPointF(right_of_last.right() - 5, right_of_last.center().y())
    assert send_drop(board.view, drops.shot_mime("s1"), pos)
    assert [s.id for s in doc.project.shots] == ["s2", "s3", "s1"]
    assert board.selected_shot_id() == "s1"
    assert board.model.index(2).data(ID_ROLE) == "s1"
    # left half of the first card: move to the front
    first = board.view.visualRect(board.model.index(0))
    assert send_drop(board.view, drops.shot_mime("s3"), QPointF(first.left() + 5, first.center().y()))
    assert [s.id for s in doc.project.shots] == ["s3", "s2", "s1"]
    win.undo_stack.undo()
    win.undo_stack.undo()
    assert [s.id for s in doc.project.shots] == ["s1", "s2", "s3"]


def test_drop_file_on_empty_storyboard_makes_a_shot(qtbot, tmp_path, photo_png, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    view = win.storyboard.view
    last = view.visualRect(win.storyboard.model.index(2))
    pos = QPointF(last.right() + 60, last.center().y())
    assert view.indexAt(pos.toPoint()).isValid() is False
    drop_and_wait(qtbot, win, view, [photo_png], pos)
    assert len(doc.project.shots) == 4
    new = doc.project.shots[-1]
    assert new.start_asset is not None and new.character_id is not None
    win.undo_stack.undo()
    assert len(doc.project.shots) == 3 and len(doc.project.characters) == 2


def test_awkward_images_are_imported_upright(qtbot, tmp_path, photo_png, answers):
    """EXIF-rotated, CMYK and 16-bit files are handled (not rejected); the thumbnail the bible
    shows is upright."""
    import numpy as np

    src = Image.open(photo_png).convert("RGB").resize((200, 100))
    rotated = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise (portrait)
    src.save(rotated, exif=exif, quality=90)
    cmyk = tmp_path / "print.jpg"
    src.convert("CMYK").save(cmyk, quality=90)
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(100 * 200, dtype=np.uint16).reshape(100, 200) * 3)).save(deep)

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    result = drop_and_wait(qtbot, win, win.bible.characters, [rotated, cmyk, deep],
                           _item_center(win.bible.characters, 0))
    assert result.errors == []
    refs = doc.project.character("alice").references
    sizes = [(doc.project.asset_by_path(r.asset).width, doc.project.asset_by_path(r.asset).height)
             for r in refs]
    assert sizes == [(100, 200), (200, 100), (200, 100)]
    path = doc.folder / refs[0].asset
    qtbot.waitUntil(lambda: win.thumbnails.get(path, 160) is not None, timeout=20_000)
    thumb = win.thumbnails.get(path, 160)
    assert thumb.height() > thumb.width()  # shown upright, as the phone took it


def test_dragging_a_card_shows_where_it_lands(qtbot, tmp_path, answers):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent
    from PySide6.QtWidgets import QApplication

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    view = win.storyboard.view
    rect = view.visualRect(win.storyboard.model.index(1))
    mime = drops.shot_mime("s1")
    pos = QPointF(rect.right() - 3, rect.center().y())
    QApplication.sendEvent(view.viewport(), QDragEnterEvent(pos.toPoint(), Qt.MoveAction, mime, Qt.LeftButton,
                                                            Qt.NoModifier))
    ev = QDragMoveEvent(QPointF(rect.right() - 3, rect.center().y()).toPoint(), Qt.MoveAction, mime,
                        Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), ev)
    assert view._marker == 2  # after the second card
    view.grab()  # paints the marker without errors
    assert send_drop(view, mime, QPointF(rect.right() - 3, rect.center().y()))
    assert view._marker == -1
    assert [s.id for s in doc.project.shots] == ["s2", "s1", "s3"]


def test_a_move_offered_by_the_file_manager_is_taken_as_a_copy(qtbot, tmp_path, photo_png, answers):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    from uitest_support import file_mime

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    pos = _item_center(chars, 0)
    mime = file_mime([photo_png])
    # a file manager that proposes a move (e.g. Shift held) but also allows a copy
    args = (Qt.MoveAction | Qt.CopyAction, mime, Qt.LeftButton, Qt.ShiftModifier)
    only_move = QDragEnterEvent(QPointF(pos).toPoint(), Qt.MoveAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(chars.viewport(), only_move)
    assert not only_move.isAccepted()  # a source that only allows moving is refused
    enter = QDragEnterEvent(QPointF(pos).toPoint(), *args)
    QApplication.sendEvent(chars.viewport(), enter)
    assert enter.isAccepted() and enter.dropAction() == Qt.CopyAction
    drop = QDropEvent(QPointF(pos), *args)
    with qtbot.waitSignal(win.importer.finished, timeout=30_000):
        QApplication.sendEvent(chars.viewport(), drop)
    assert drop.dropAction() == Qt.CopyAction  # the source must not delete the original
    assert photo_png.exists()
    assert len(doc.project.character("alice").references) == 1


def test_delete_key_removes_reference_then_character(qtbot, tmp_path, photo_png, answers):
    from PySide6.QtCore import Qt

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    drop_and_wait(qtbot, win, chars, [photo_png], _item_center(chars, 0))
    win.activateWindow()
    grid = win.bible.references
    grid.setCurrentRow(0)
    grid.setFocus()
    qtbot.waitUntil(grid.hasFocus)
    qtbot.keyClick(grid, Qt.Key_Delete)
    assert doc.project.character("alice").references == []
    chars.setCurrentRow(0)
    chars.setFocus()
    qtbot.waitUntil(chars.hasFocus)
    qtbot.keyClick(chars, Qt.Key_Delete)
    assert doc.project.character("alice") is None
    win.undo_stack.undo()
    win.undo_stack.undo()
    assert len(doc.project.character("alice").references) == 1
