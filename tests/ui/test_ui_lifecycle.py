"""New / open / save / save as / autosave / recovery / close, settings and error reporting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMessageBox

from studio.core.persistence import AUTOSAVE_FILE, load_project, recovery_available
from studio.core.userdirs import data_dir
from studio.ui.undo import EditShotCommand, push
from uitest_support import (answers, drop_and_wait, dump, make_settings, open_window,  # noqa: F401
                            sample_project)


def test_untitled_import_then_save_as_and_reopen(qtbot, tmp_path, photo_png, answers):
    settings = make_settings(tmp_path)
    win = open_window(qtbot, None, settings)
    assert win.is_untitled
    scratch = win.document.folder
    assert scratch is not None and str(scratch).startswith(str(data_dir("untitled")))
    chars = win.bible.characters
    drop_and_wait(qtbot, win, chars, [photo_png], QPointF(20, 20))  # empty list: new character
    win.storyboard.add_shot()
    assert win.isWindowModified()
    assert "Untitled" in win.windowTitle()

    target = tmp_path / "My Film"
    assert win.save_as(target)
    assert not win.is_untitled and not win.isWindowModified()
    assert win.document.folder == target and not scratch.exists()  # scratch folder cleaned up
    assert "My Film" in win.windowTitle()
    asset = next(iter(win.document.project.assets.values()))
    assert (target / asset.path).is_file()  # assets were copied with the project
    saved = dump(win.document)

    win2 = open_window(qtbot, None, settings)
    assert win2.open_project(target / "project.json")
    assert dump(win2.document) == saved
    assert win2.document.project.name == "My Film"
    assert win2.storyboard.model.rowCount() == 1 and win2.bible.characters.count() == 1
    assert win2.settings.value("recent/projects") and str(target.resolve()) in \
        json.loads(win2.settings.value("recent/projects"))


def test_save_writes_project_and_clears_dirty(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    assert not win.isWindowModified()
    push(win.undo_stack, EditShotCommand(doc, "s1", title="Opening"))
    assert win.isWindowModified()
    assert win.autosave() is not None and recovery_available(doc.folder)
    assert win.save_action.shortcut() == QKeySequence(QKeySequence.Save)
    win.save_action.trigger()
    assert not win.isWindowModified()
    assert load_project(doc.folder).shot("s1").title == "Opening"
    assert not (doc.folder / AUTOSAVE_FILE).exists()  # saving drops the stale autosave
    win.undo_stack.undo()
    assert win.isWindowModified()
    win.undo_stack.redo()
    assert not win.isWindowModified()  # back at the saved state


def test_external_edit_marks_dirty(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    doc.update_project(name="Renamed by a script")  # not through the undo stack
    qtbot.waitUntil(win.isWindowModified, timeout=2000)
    assert "Renamed by a script" in win.windowTitle()


def test_recovery_prompt_recover_and_discard(qtbot, tmp_path, answers):
    folder = tmp_path / "proj"
    doc = sample_project(folder)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    push(win.undo_stack, EditShotCommand(doc, "s2", title="Unsaved title"))
    win.autosave()
    # the app "crashes": the autosave stays behind
    win._mark_clean()

    win2 = open_window(qtbot, None, make_settings(tmp_path))
    answers.queue = [QMessageBox.Yes]  # Recover
    assert win2.open_project(folder)
    assert answers.asked == ["Recover unsaved changes?"]
    assert win2.document.project.shot("s2").title == "Unsaved title"
    assert win2.isWindowModified()  # recovered changes are not saved yet

    win3 = open_window(qtbot, None, make_settings(tmp_path))
    answers.asked.clear()
    answers.queue = [QMessageBox.Discard]
    win2._mark_clean()  # (win2 would otherwise ask on close)
    assert win3.open_project(folder)
    assert answers.asked == ["Recover unsaved changes?"]
    assert win3.document.project.shot("s2").title == "Two"
    assert not (folder / AUTOSAVE_FILE).exists()


def test_close_with_unsaved_changes_asks(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    push(win.undo_stack, EditShotCommand(doc, "s1", title="Changed"))
    win.autosave()
    answers.queue = [QMessageBox.Cancel]
    assert not win.close()
    assert win.isVisible() and answers.asked == ["Unsaved changes"]
    answers.queue = [QMessageBox.Save]
    assert win.close()
    assert load_project(doc.folder).shot("s1").title == "Changed"

    doc2 = sample_project(tmp_path / "proj2")
    win2 = open_window(qtbot, doc2, make_settings(tmp_path))
    push(win2.undo_stack, EditShotCommand(doc2, "s1", title="Thrown away"))
    win2.autosave()
    answers.queue = [QMessageBox.Discard]
    assert win2.close()
    assert load_project(doc2.folder).shot("s1").title == "One"
    assert not (doc2.folder / AUTOSAVE_FILE).exists()  # Discard removes the autosave


def test_window_state_is_remembered(qtbot, tmp_path, answers):
    settings_file = tmp_path / "settings.ini"
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.inspector_dock.hide()
    win.addDockWidget(Qt.RightDockWidgetArea, win.bible_dock)  # the user moved the bible
    assert win.close()
    text = settings_file.read_text()
    assert "geometry" in text and "state" in text

    win2 = open_window(qtbot, sample_project(tmp_path / "proj2"), make_settings(tmp_path))
    assert not win2.inspector_dock.isVisible() and win2.bible_dock.isVisible()
    assert win2.dockWidgetArea(win2.bible_dock) == Qt.RightDockWidgetArea
    assert win2.restore_layout()


def test_hostile_project_is_reported_and_app_keeps_going(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    data = json.loads((doc.folder / "project.json").read_text())
    data["assets"] = {"a" * 64: {"path": "../../etc/passwd", "sha256": "a" * 64, "width": 1,
                                 "height": 1}}
    (bad / "project.json").write_text(json.dumps(data))
    assert not win.open_project(bad)
    assert "project.json" in win.last_error and "escapes the project folder" in win.last_error
    assert win.document is doc  # still showing the previous project
    (bad / "project.json").write_text("{not json")
    assert not win.open_project(bad)
    assert "not valid JSON" in win.last_error
    assert not win.open_project(tmp_path / "nowhere")
    assert "no such file" in win.last_error


@pytest.mark.qt_no_exception_capture  # the app's own hook is what is under test
def test_unexpected_exception_is_shown_and_app_keeps_running(qtbot, tmp_path, answers):
    from studio.ui.app import install_excepthook

    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    old = sys.excepthook
    try:
        install_excepthook(win)
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = old
    assert "RuntimeError: boom in a slot" in win.last_error
    assert win._error_box.isVisible()
    win.storyboard.add_shot()  # still usable
    assert len(doc.project.shots) == 4


def test_gui_start_path_imports_no_heavy_libraries():
    code = ("import sys, studio.ui.app, studio.ui.main_window;"
            "heavy = [m for m in ('numpy', 'PIL', 'cv2', 'av', 'torch', 'diffusers', 'dlib')"
            " if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_startup_signal_for_the_benchmark(tmp_path):
    env = {"STUDIO_BENCH_STARTUP": "1", "QT_QPA_PLATFORM": "offscreen",
           "CONTINUITY_STUDIO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "studio", "--demo"], capture_output=True,
                         text=True, timeout=60, env=env, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("STARTUP_SHOWN ") for line in out.stdout.splitlines())
    copies = list((tmp_path / "home" / "Continuity Studio").iterdir())
    assert len(copies) == 1 and (copies[0] / "project.json").is_file()


def test_save_as_asks_before_using_a_folder_with_other_files(qtbot, tmp_path, answers):
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    busy = tmp_path / "Documents"
    busy.mkdir()
    (busy / "letter.txt").write_text("hello")
    answers.queue = [QMessageBox.Cancel]
    assert not win.save_as(busy)
    assert answers.asked == ["Folder not empty"] and not (busy / "project.json").exists()
    answers.queue = [QMessageBox.Cancel]
    assert not win.save_as(doc.folder / "assets")  # inside its own folder: refused outright
    assert "inside its own folder" in win.last_error
    answers.queue = [QMessageBox.Cancel]
    assert win.save_as(tmp_path / "copy")  # a new folder needs no question
    assert answers.asked == ["Folder not empty"]
    assert load_project(tmp_path / "copy").name == "Sample"
    assert win.document.folder == tmp_path / "copy"
    answers.queue = [QMessageBox.Cancel]
    assert not win.save_as(tmp_path / "proj")  # holds a project: Replace? -> Cancel
    assert answers.asked[-1] == "Replace project?"


def test_application_icon_has_every_size(qapp) -> None:
    from studio.ui.app import app_icon

    sizes = {s.width() for s in app_icon().availableSizes()}
    assert {16, 32, 48, 64, 128, 256}.issubset(sizes)
