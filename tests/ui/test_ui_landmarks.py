"""The face-landmark licence choice in the app: asked once when the window is first shown
(nothing chosen yet), Settings ▸ Face landmarks… to change it, and an analysis without a choice
telling the user what to do. The suite's conftest chooses dlib68 through CONTINUITY_LANDMARKS
for every test; these tests remove it, so the saved choice (in this test's own
CONTINUITY_STUDIO_HOME) is what counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QMessageBox
from pytestqt.qtbot import QtBot
from uitest_support import (make_settings, open_window, sample_project, start_app,
                            wait_until)

from studio.core.userdirs import config_dir
from studio.identity import landmarks as dl
from studio.identity import mesh_landmarks
from studio.ui.landmarks_dialog import ASK_DELAY_MS, LandmarksDialog
from studio.ui.main_window import MainWindow


@pytest.fixture
def no_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dl.LANDMARKS_ENV, raising=False)
    assert dl.landmark_choice() is None  # a fresh user folder: nothing saved yet


def _dialog(win: MainWindow) -> LandmarksDialog | None:
    dialog = win.findChild(LandmarksDialog, "LandmarksDialog")
    return dialog if dialog is not None and dialog.isVisible() else None


def _wait_for_dialog(qtbot: QtBot, win: MainWindow) -> LandmarksDialog:
    wait_until(qtbot, lambda: _dialog(win) is not None, 10_000)
    dialog = _dialog(win)
    assert dialog is not None
    return dialog


def _no_question_comes(qtbot: QtBot, win: MainWindow) -> None:
    qtbot.wait(ASK_DELAY_MS * 4)  # well past the moment the question would be asked
    assert _dialog(win) is None


def _visible_texts(dialog: LandmarksDialog) -> str:
    return "\n".join(label.text() for label in dialog.findChildren(QLabel) if label.isVisible())


def _saved() -> dict[str, object]:
    return json.loads((config_dir() / dl.CHOICE_FILE).read_text(encoding="utf-8"))


def test_the_first_show_asks_once_and_saves_the_choice(qtbot, tmp_path, no_choice) -> None:
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    dialog = _wait_for_dialog(qtbot, win)
    assert dialog.isModal() or dialog.windowModality() == Qt.WindowModal
    # Both options with their licence and note, readable before OK; nothing picked yet.
    texts = _visible_texts(dialog)
    for key in dl.LANDMARK_MODELS:
        opt = dl.LANDMARK_OPTIONS[key]
        assert dialog.radios[key].isVisible() and dialog.radios[key].text().startswith(opt["label"])
        assert opt["licence"] in texts
        assert opt["note"][1:] in texts  # shown as a sentence (capitalised, full stop)
    assert "non-commercial" in texts and "Apache" in texts
    assert dialog.choice() is None and not dialog.ok_button.isEnabled()

    qtbot.mouseClick(dialog.radios["dlib68"], Qt.LeftButton)
    assert dialog.choice() == "dlib68" and dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
    wait_until(qtbot, lambda: _dialog(win) is None)
    assert dl.landmark_choice() == "dlib68"
    assert (config_dir() / dl.CHOICE_FILE).is_file()
    assert _saved()["model"] == "dlib68" and _saved()["licence"] == dl.DLIB68_LICENCE
    assert dl.landmark_model() == "dlib68"  # analysis can run now
    assert "Face landmarks: dlib 68-point" in win.statusBar().currentMessage()

    # Shown again (e.g. restored from minimised): not asked a second time.
    win.hide()
    win.show()
    qtbot.waitExposed(win)
    _no_question_comes(qtbot, win)
    assert win.landmarks_first_use.asked


def test_a_click_on_an_option_card_picks_it(qtbot, tmp_path, no_choice) -> None:
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    dialog = _wait_for_dialog(qtbot, win)
    qtbot.mouseClick(dialog.cards["dlib68"].licence, Qt.LeftButton)  # the licence text, not the radio
    assert dialog.choice() == "dlib68"
    dialog.reject()


def test_cancel_leaves_no_choice_and_the_app_keeps_working(qapp, qtbot, tmp_path, request,
                                                           monkeypatch, no_choice) -> None:
    """Started through run_app, as `continuity-studio` does."""
    win = start_app(qapp, qtbot, request, monkeypatch)
    dialog = _wait_for_dialog(qtbot, win)
    cancel = dialog.buttons.button(QDialogButtonBox.Cancel)
    assert cancel.text() == "Decide later"
    qtbot.mouseClick(cancel, Qt.LeftButton)
    wait_until(qtbot, lambda: _dialog(win) is None)
    assert dl.landmark_choice() is None and not (config_dir() / dl.CHOICE_FILE).exists()
    assert "Settings ▸ Face landmarks" in win.statusBar().currentMessage()
    with pytest.raises(dl.LandmarkChoiceNeeded, match="Settings ▸ Face landmarks"):
        dl.landmark_model()
    # The app works on: edits, and no second question.
    win.storyboard.add_shot()
    assert len(win.document.project.shots) == 1
    _no_question_comes(qtbot, win)
    assert win.errors == []


def test_analysis_without_a_choice_says_how_to_choose(qtbot, tmp_path, photo_png, monkeypatch,
                                                      no_choice) -> None:
    """A real take (preview backend) is generated and analysed: the analysis fails, and the
    window shows LandmarkChoiceNeeded's message where analysis errors go."""
    from test_ui_integration import _project

    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    win = open_window(qtbot, _project(tmp_path / "p", photo_png), make_settings(tmp_path))
    try:
        _wait_for_dialog(qtbot, win).reject()
        win.select_shot("s1")
        with qtbot.waitSignal(win.identity.failed, timeout=120_000) as failed:
            win.generation.generate_action.trigger()
        take = win.document.project.shot("s1").active_take
        assert take is not None and failed.args[0] == take.id  # the take itself was made
        (shown,) = [e for e in win.errors if e.startswith("Identity analysis:")]
        assert "choose the face landmark model first" in shown
        assert shown.endswith("in the app: Settings ▸ Face landmarks…")
        assert "Traceback" not in shown and "unexpected error" not in shown
        assert win._error_box is not None and win._error_box.isVisible()
        assert "Settings ▸ Face landmarks…" in win._error_box.text()
        # …and the menu entry it names is there.
        assert win.landmarks_action in win.menu("Settings").actions()
        assert win.landmarks_action.text().replace("&", "") == "Face landmarks…"
    finally:
        win.generation.shutdown()
        win.identity.shutdown()


def test_the_menu_entry_reopens_the_dialog_and_switches_to_mesh(qtbot, tmp_path,
                                                                no_choice) -> None:
    if not mesh_landmarks.available():
        pytest.skip("MediaPipe's Face Mesh model is not installed here")
    dl.save_landmark_choice("dlib68")
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    _no_question_comes(qtbot, win)

    win.landmarks_action.trigger()
    dialog = _wait_for_dialog(qtbot, win)
    assert dialog.choice() == "dlib68"  # the saved choice is shown
    assert dialog.radios["mesh"].isEnabled() and "not installed" not in dialog.radios["mesh"].text()
    assert dialog.buttons.button(QDialogButtonBox.Cancel).text() == "Cancel"
    win.landmarks_action.trigger()  # a second trigger raises the same dialog
    assert win.findChildren(LandmarksDialog) == [dialog]

    qtbot.mouseClick(dialog.radios["mesh"], Qt.LeftButton)
    qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
    wait_until(qtbot, lambda: _dialog(win) is None)
    assert dl.landmark_choice() == "mesh" and _saved()["model"] == "mesh"
    assert dl.landmark_model() == "mesh"
    assert "out of date" in win.statusBar().currentMessage()

    # Opened again: now mesh is the current choice; Cancel changes nothing.
    win.landmarks_action.trigger()
    dialog = _wait_for_dialog(qtbot, win)
    assert dialog.choice() == "mesh"
    qtbot.mouseClick(dialog.radios["dlib68"], Qt.LeftButton)
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.Cancel), Qt.LeftButton)
    wait_until(qtbot, lambda: _dialog(win) is None)
    assert dl.landmark_choice() == "mesh"


def test_a_saved_choice_is_not_asked_again(qtbot, tmp_path, no_choice) -> None:
    dl.save_landmark_choice("dlib68")
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    _no_question_comes(qtbot, win)
    assert not win.landmarks_first_use.asked


def test_the_environment_choice_is_not_asked_and_is_named(qtbot, tmp_path,
                                                          monkeypatch) -> None:
    monkeypatch.setenv(dl.LANDMARKS_ENV, "dlib68")  # as the suite and scripted runs do
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    _no_question_comes(qtbot, win)
    win.landmarks_action.trigger()
    dialog = _wait_for_dialog(qtbot, win)
    assert dialog.env_note.isVisible()
    assert f"{dl.LANDMARKS_ENV}=dlib68" in dialog.env_note.text()
    dialog.reject()


def test_mesh_not_installed_is_offered_disabled(qtbot, tmp_path, monkeypatch, no_choice) -> None:
    # mediapipe is installed on this machine; its absence (a plain install) is simulated.
    monkeypatch.setattr(mesh_landmarks, "available", lambda: False)
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    dialog = _wait_for_dialog(qtbot, win)
    mesh = dialog.radios["mesh"]
    assert not mesh.isEnabled() and mesh.text().endswith("not installed")
    assert mesh_landmarks.CARRIER_REQUIREMENT in dialog.cards["mesh"].extra.text()
    assert dl.LANDMARK_OPTIONS["mesh"]["licence"] in _visible_texts(dialog)  # still readable
    qtbot.mouseClick(dialog.cards["mesh"].licence, Qt.LeftButton)  # a click does not pick it
    assert dialog.choice() is None
    dialog.reject()


def test_a_choice_that_cannot_be_saved_is_reported_in_the_dialog(qtbot, tmp_path,
                                                                 no_choice) -> None:
    # A folder where the choice file should be: the atomic rename onto it fails (really).
    blocker = config_dir() / dl.CHOICE_FILE
    blocker.mkdir()
    (blocker / "keep").write_text("x")
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    dialog = _wait_for_dialog(qtbot, win)
    dialog.select("dlib68")
    qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
    assert _dialog(win) is dialog  # stays open, says why
    assert dialog.error.isVisible()
    text = dialog.error.text()
    assert text.startswith(str(blocker)) and "cannot save the landmark choice" in text
    assert dl.landmark_choice() is None
    # Fixed meanwhile: OK again saves.
    (blocker / "keep").unlink()
    blocker.rmdir()
    qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
    wait_until(qtbot, lambda: _dialog(win) is None)
    assert dl.landmark_choice() == "dlib68"


def test_a_typo_in_the_environment_is_shown_not_asked(qtbot, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(dl.LANDMARKS_ENV, "dlib")
    win = open_window(qtbot, sample_project(tmp_path / "p"), make_settings(tmp_path))
    wait_until(qtbot, lambda: bool(win.errors), 10_000)
    assert "CONTINUITY_LANDMARKS='dlib' is not a landmark model" in win.errors[-1]
    assert _dialog(win) is None


def test_switching_models_marks_existing_analyses_stale_at_once(qtbot, tmp_path, photo_png,
                                                                monkeypatch, no_choice) -> None:
    if not mesh_landmarks.available():
        pytest.skip("MediaPipe's Face Mesh model is not installed here")
    from test_ui_integration import _project

    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    dl.save_landmark_choice("dlib68")
    win = open_window(qtbot, _project(tmp_path / "p", photo_png), make_settings(tmp_path))
    try:
        win.select_shot("s1")
        with qtbot.waitSignal(win.identity.finished, timeout=120_000):
            win.generation.generate_action.trigger()
        take = win.document.project.shot("s1").active_take
        assert win.session.analyses.status("s1", take.id).state == "fresh"
        win.landmarks_action.trigger()
        dialog = _wait_for_dialog(qtbot, win)
        dialog.select("mesh")
        qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
        assert win.session.analyses.status("s1", take.id).state == "stale"
    finally:
        win.generation.shutdown()
        win.identity.shutdown()


def test_reopening_the_project_shows_analyses_of_the_other_model_stale(
        qtbot, tmp_path, photo_png, monkeypatch, no_choice) -> None:
    """What holds today: the next session reads the new engine key."""
    if not mesh_landmarks.available():
        pytest.skip("MediaPipe's Face Mesh model is not installed here")
    from test_ui_integration import _project

    from studio.core.document import ProjectDocument
    from studio.core.persistence import load_project
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    dl.save_landmark_choice("dlib68")
    folder = tmp_path / "p"
    win = open_window(qtbot, _project(folder, photo_png), make_settings(tmp_path))
    try:
        win.select_shot("s1")
        with qtbot.waitSignal(win.identity.finished, timeout=120_000):
            win.generation.generate_action.trigger()
        take = win.document.project.shot("s1").active_take
        win.save()
        win.landmarks_action.trigger()
        dialog = _wait_for_dialog(qtbot, win)
        dialog.select("mesh")
        qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
        win.set_project(ProjectDocument(load_project(Path(folder)), folder))
        status = win.session.analyses.status("s1", take.id)
        assert status.state == "stale" and status.reasons
    finally:
        win.generation.shutdown()
        win.identity.shutdown()


def test_reference_checks_made_before_the_choice_run_again_after_it(qtbot, tmp_path, photo_png,
                                                                     no_choice) -> None:
    """A bible reference checked before any choice cannot be judged (its check needs the
    landmarks); once a model is chosen it is checked again and gets its real verdict."""
    from test_ui_integration import _project

    win = open_window(qtbot, _project(tmp_path / "p", photo_png), make_settings(tmp_path))
    dialog = _wait_for_dialog(qtbot, win)
    win.bible.characters.setCurrentRow(0)
    win.bible.references.setCurrentRow(0)
    path = str(win.bible.current_reference_path())
    checks = win.bible.checks
    wait_until(qtbot, lambda: checks.verdict(path, "front") is not None, 60_000)
    before = checks.verdict(path, "front")
    assert before["level"] == "unknown"
    assert "Settings ▸ Face landmarks" in " ".join(before["reasons"])
    badge = win.reference_quality.badge
    # Not checked is not unusable: the badge says the check could not run, and why.
    wait_until(qtbot, lambda: badge.level == "unknown")
    assert badge.text() == "? Not checked" and "Face landmarks" in badge.toolTip()

    dialog.select("dlib68")
    with qtbot.waitSignal(checks.ready, timeout=60_000):
        qtbot.mouseClick(dialog.ok_button, Qt.LeftButton)
    after = checks.verdict(path, "front")
    # The 512×512 astronaut photo is usable, but her face is small in the frame.
    assert after["level"] == "warning" and any("face is small" in r for r in after["reasons"])
    wait_until(qtbot, lambda: badge.level == "warning")
