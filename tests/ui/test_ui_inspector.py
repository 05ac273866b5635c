"""The inspector edits the selected shot and character through undo commands."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.core.model import Aspect, ResolutionPreset, SeedMode
from uitest_support import answers, dump, make_settings, open_window, sample_project  # noqa: F401


def _choose(combo, data) -> None:
    i = combo.findData(data)
    assert i >= 0, data
    combo.setCurrentIndex(i)
    combo.activated.emit(i)


def test_shot_fields_land_in_model_and_undo(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.select_shot("s3")
    insp = win.inspector
    assert insp.shot_id == "s3" and insp.title.text() == "Three"
    before = dump(doc)

    insp.title.setFocus()
    insp.title.selectAll()
    qtbot.keyClicks(insp.title, "Finale")
    assert doc.project.shot("s3").title == "Finale"
    insp.prompt.setPlainText("slow dolly in")
    insp.duration.setValue(4.5)
    insp.fps.setValue(24)
    _choose(insp.resolution, "720p")
    _choose(insp.aspect, "9:16")
    assert insp.size_label.text() == "720 × 1280 pixels"
    _choose(insp.character, "bob")
    _choose(insp.seed_mode, "random")
    _choose(insp.backend, "diffusers")
    insp.seed.setText("4000000000")
    insp.seed.editingFinished.emit()
    insp.model_path.setText("")
    qtbot.keyClicks(insp.model_path, "/models/wan")

    s3 = doc.project.shot("s3")
    assert (s3.title, s3.prompt, s3.duration_s, s3.fps) == ("Finale", "slow dolly in", 4.5, 24)
    assert (s3.resolution, s3.aspect, s3.size) == (ResolutionPreset.P720, Aspect.TALL, (720, 1280))
    assert (s3.character_id, s3.seed_mode, s3.backend) == ("bob", SeedMode.RANDOM, "diffusers")
    assert (s3.seed, s3.model) == (4_000_000_000, "/models/wan")
    assert insp.frames_label.text() == "108 frames"
    # typing the title (6 keys) and the model path were one step each
    assert win.undo_stack.count() == 11
    old_seed = s3.seed
    insp.new_seed.click()
    assert doc.project.shot("s3").seed != old_seed
    assert win.storyboard.total_label.text() == "Total 0:10.0 · 3 shots"

    while win.undo_stack.canUndo():
        win.undo_stack.undo()
    assert dump(doc) == before
    # the widgets follow the model on undo
    assert insp.title.text() == "Three" and insp.duration.value() == 1.5
    assert insp.resolution.currentData() == "480p" and insp.character.currentData() == ""
    assert not win.isWindowModified()


def test_start_image_combo_lists_the_characters_references(qtbot, tmp_path, photo_png, answers):
    from PySide6.QtCore import QPointF

    from uitest_support import drop_and_wait

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    drop_and_wait(qtbot, win, chars, [photo_png], QPointF(chars.visualItemRect(chars.item(1)).center()))
    ref = doc.project.character("bob").references[0]
    win.select_shot("s2")  # Bob's shot
    combo = win.inspector.start_image
    assert combo.count() == 2 and combo.itemData(1) == ref.id
    _choose(combo, ref.id)
    assert doc.project.shot("s2").start_asset == ref.asset
    _choose(combo, "")
    assert doc.project.shot("s2").start_asset is None


def test_character_section_edits(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.bible.select_character("bob")
    insp = win.inspector
    assert insp.char_box.isVisibleTo(win) and insp.char_name.text() == "Bob"
    insp.char_name.selectAll()
    qtbot.keyClicks(insp.char_name, "Robert")
    insp.char_notes.setPlainText("beard")
    insp.set_color("#ff0000")
    bob = doc.project.character("bob")
    assert (bob.name, bob.notes, bob.color) == ("Robert", "beard", "#ff0000")
    assert win.bible.characters.item(1).text().startswith("Robert")
    assert win.undo_stack.count() == 3
    win.undo_stack.undo()
    win.undo_stack.undo()
    win.undo_stack.undo()
    assert doc.project.character("bob").name == "Bob"
    assert insp.char_name.text() == "Bob"


def test_storyboard_buttons_and_shortcuts(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    board = win.storyboard
    win.select_shot("s2")
    board.duplicate_shot()
    ids = [s.id for s in doc.project.shots]
    assert len(ids) == 4 and ids[:2] == ["s1", "s2"] and ids[3] == "s3"
    copy = doc.project.shots[2]
    assert copy.title == "Two copy" and copy.character_id == "bob" and copy.takes == []
    assert win.selected_shot_id() == copy.id
    board.nudge(-1)
    assert [s.id for s in doc.project.shots][1] == copy.id
    win.activateWindow()
    qtbot.waitActive(win)
    board.view.setFocus()
    qtbot.waitUntil(board.view.hasFocus)
    qtbot.keyClick(board.view, Qt.Key_Delete)
    assert copy.id not in [s.id for s in doc.project.shots]
    board.add_shot()
    assert len(doc.project.shots) == 4
    assert "4 shots" in win.total_label.text()
    # Undo is the standard shortcut
    qtbot.keyClick(board.view, Qt.Key_Z, Qt.ControlModifier)
    QApplication.processEvents()
    assert len(doc.project.shots) == 3


def test_project_section_edits_name_and_output(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    insp = win.inspector
    assert insp.project_name.text() == "Sample"
    insp.project_name.selectAll()
    qtbot.keyClicks(insp.project_name, "Moon")
    assert doc.project.name == "Moon" and "Moon" in win.windowTitle()
    _choose(insp.out_resolution, "1080p")
    _choose(insp.out_aspect, "1:1")
    insp.out_fps.setValue(25)
    out = doc.project.output
    assert (out.resolution, out.aspect, out.fps) == (ResolutionPreset.P1080, Aspect.SQUARE, 25)
    assert win.undo_stack.count() == 4
    for _ in range(4):
        win.undo_stack.undo()
    assert doc.project.name == "Sample" and doc.project.output.fps == 16
    assert insp.project_name.text() == "Sample" and insp.out_fps.value() == 16


def test_double_click_on_a_character_edits_its_name(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    chars.setCurrentRow(1)  # the press of a real double-click selects the item
    chars.itemDoubleClicked.emit(chars.item(1))
    assert win.inspector.character_id == "bob"
    assert win.inspector.char_name.selectedText() == "Bob"


def test_empty_storyboard_paints_a_hint(qtbot, tmp_path, answers):
    win = open_window(qtbot, None, make_settings(tmp_path))
    assert win.storyboard.model.rowCount() == 0
    assert win.selected_shot_id() is None and not win.inspector.shot_box.isVisibleTo(win)
    img = win.storyboard.view.viewport().grab().toImage()
    assert img.width() > 0  # painted without error (the hint text)
    win.storyboard.add_shot()
    assert win.selected_shot_id() == win.document.project.shots[0].id
    assert win.inspector.shot_box.isVisibleTo(win)


def test_extension_points_for_other_features(qtbot, tmp_path, photo_png, answers):
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QGroupBox, QLabel

    from uitest_support import drop_and_wait

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    warn = QLabel("prompt warning")
    win.inspector.add_shot_widget(warn, "", after=win.inspector.negative)
    row, _ = win.inspector._shot_form.getWidgetPosition(warn)
    assert row == win.inspector._shot_form.getWidgetPosition(win.inspector.negative)[0] + 1
    box = QGroupBox("Extra")
    win.inspector.add_section(box)
    qtbot.waitUntil(lambda: box.isVisibleTo(win))  # layouts show new children on the next loop
    badge = QLabel("badge")
    win.bible.add_reference_widget(badge)
    qtbot.waitUntil(lambda: badge.isVisibleTo(win))

    chars = win.bible.characters
    seen: list[tuple[str, str]] = []
    win.bible.reference_selected.connect(lambda c, r: seen.append((c, r)))
    drop_and_wait(qtbot, win, chars, [photo_png], QPointF(chars.visualItemRect(chars.item(0)).center()))
    ref = doc.project.character("alice").references[0]
    assert seen[-1] == ("alice", ref.id)  # the new (only) reference is selected
    assert win.bible.current_reference_path() == doc.folder.resolve() / ref.asset


def test_model_menu_offers_the_registered_models(qtbot, tmp_path, answers):
    from studio.engine.model_library import ModelInfo, ModelRegistry

    folder = tmp_path / "models" / "wan21-i2v"
    folder.mkdir(parents=True)
    registry = ModelRegistry()  # in this test's own config folder (conftest)
    registry._put(ModelInfo(id="m1", name="Wan 2.1 I2V 480p", path=str(folder), family="wan21",
                            pipeline_class="WanImageToVideoPipeline", size_bytes=1,
                            fingerprint="f", components={}, rules={}))
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.select_shot("s1")
    insp = win.inspector
    insp.model_menu.aboutToShow.emit()
    texts = [a.text() for a in insp.model_menu.actions()]
    assert "Wan 2.1 I2V 480p — wan21" in texts and "Choose folder…" in texts
    assert "Manage models…" in texts
    next(a for a in insp.model_menu.actions() if a.text().startswith("Wan 2.1")).trigger()
    assert doc.project.shot("s1").model == str(folder)
    assert insp.model_path.text() == str(folder)
    win.undo_stack.undo()
    assert doc.project.shot("s1").model is None
