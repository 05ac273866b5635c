"""The viewer inside the main window: follows the storyboard, re-rolls through the generation
queue with new seeds, fills the storyboard badges, survives a damaged take."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from studio.core.model import Shot
from viewer_media import make_project


@pytest.fixture
def win(qtbot, tmp_path: Path):
    from studio.ui.main_window import MainWindow

    doc = make_project(tmp_path / "proj")
    doc.insert_shot(Shot(id="empty", title="No takes yet"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(doc, settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.generation.pause()  # keep re-rolls queued: this test checks the queue, not generation
    yield w
    w.take_viewer.shutdown()
    w.generation.shutdown()


def test_viewer_follows_the_storyboard_selection(qtbot, win) -> None:
    viewer = win.take_viewer
    win.select_shot("shot1")
    qtbot.waitUntil(lambda: viewer.shot_id == "shot1")
    assert win.centre_stack.currentWidget() is viewer
    assert viewer.take_id == "take0"  # the active take
    assert viewer.src_a.source.wait_ready(60)
    win.select_shot("empty")
    qtbot.waitUntil(lambda: viewer.shot_id == "empty")
    assert win.centre_stack.currentWidget() is win.viewer  # start-image view for no takes
    win.select_shot("shot1")
    qtbot.waitUntil(lambda: win.centre_stack.currentWidget() is viewer)


def test_reroll_from_the_viewer_queues_jobs_with_new_seeds(qtbot, win) -> None:
    ctl = win.generation
    viewer = win.take_viewer
    win.select_shot("shot1")
    qtbot.waitUntil(lambda: viewer.shot_id == "shot1")
    existing = {t.seed for t in win.document.project.shot("shot1").takes}
    viewer.btn_reroll4.click()
    viewer.btn_reroll.click()
    jobs = [j for j in ctl.queue.pending() if j.shot_id == "shot1"]
    assert len(jobs) == 5
    seeds = [j.seed for j in jobs]
    assert len(set(seeds)) == 5 and not set(seeds) & existing


def test_storyboard_cards_show_the_active_takes_badge(qtbot, win) -> None:
    shot = win.document.project.shot("shot1")
    badge = win.storyboard.badge_for(shot)
    assert badge is not None and badge.text == "0.81"
    assert "threshold 0.70" in badge.tooltip
    assert badge.color.lower() == "#ebaa28"  # amber: passes, but 5 of 40 frames flagged
    assert win.storyboard.badge_for(win.document.project.shot("empty")) is None
    # the card picture becomes the active take's middle frame once decoded
    qtbot.waitUntil(lambda: win.storyboard.thumbnail_for(shot) is not None, timeout=15000)


def test_a_missing_take_file_does_not_break_the_window(qtbot, win) -> None:
    viewer = win.take_viewer
    win.select_shot("empty")
    qtbot.waitUntil(lambda: viewer.shot_id == "empty")
    (win.document.folder / "takes/shot1/take0.mp4").unlink()
    win.select_shot("shot1")
    qtbot.waitUntil(lambda: viewer.shot_id == "shot1")
    assert "missing" in viewer.view.message
    win.select_shot("empty")
    win.select_shot("shot1")
    viewer.set_take("take1")
    assert viewer.view.message == "" and viewer.src_a is not None
    assert win.document.project.shot("shot1").active_take_id == "take0"


def test_transport_keys_work_from_anywhere_but_not_while_typing(qtbot, win, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    from studio.ui import dialogs

    # The typing below edits the project: closing the window must not wait on "Save changes?".
    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    viewer = win.take_viewer
    win.select_shot("shot1")
    qtbot.waitUntil(lambda: win.centre_stack.currentWidget() is viewer)
    assert viewer.src_a.source.wait_ready(60)
    # Focus on the storyboard: Space still plays the take, K stops it.
    win.storyboard.view.setFocus()
    qtbot.waitUntil(lambda: win.storyboard.view.hasFocus())
    qtbot.keyClick(win.storyboard.view, " ")
    assert viewer.player.playing
    qtbot.keyClick(win.storyboard.view, "k")
    assert not viewer.player.playing
    # Typing a prompt: the space goes into the text, the take does not start.
    editor = win.inspector.title
    editor.setFocus()
    qtbot.waitUntil(lambda: editor.hasFocus())
    before = editor.text()
    qtbot.keyClick(editor, " ")
    assert editor.text() != before and not viewer.player.playing
