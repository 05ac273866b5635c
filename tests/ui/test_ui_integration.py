"""The features built in separate modules, working together in the real main window:
generate a take → it is analysed automatically → the score lands on the take; the reference
quality badge, prompt lint, and the Settings / File / Generate menu entries."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from studio.core.document import ProjectDocument
from studio.core.model import Character, Project, Reference, Shot
from studio.core.persistence import load_project, save_project
from studio.media.images import import_image
from uitest_support import make_settings, open_window, wait_until


def _project(folder: Path, photo: Path) -> ProjectDocument:
    project = Project(name="Integration")
    asset = import_image(folder, photo)
    project.assets[asset.sha256] = asset
    project.characters = [Character(id="ada", name="Ada", references=[
        Reference(id="r1", asset=asset.path)])]
    project.shots = [Shot(id="s1", title="One", character_id="ada", start_asset=asset.path,
                          start_reference_id="r1", duration_s=0.5, fps=16,
                          prompt="static camera, she blinks")]
    save_project(project, folder)
    return ProjectDocument(load_project(folder), folder)


def test_take_is_generated_and_analysed_in_the_window(qtbot, tmp_path, photo_png, monkeypatch):
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    doc = _project(tmp_path / "p", photo_png)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    try:
        generate = [a.text() for a in win.menu("Generate").actions()]
        assert "Analyze Active Take" in generate and "&Generate Shot" in generate
        assert "&Models…" in [a.text() for a in win.menu("Settings").actions()]
        assert any("Export" in a.text() for a in win.menu("File").actions())

        win.select_shot("s1")
        with qtbot.waitSignal(win.identity.finished, timeout=120_000) as analysed:
            win.generation.generate_action.trigger()
        take = doc.project.shot("s1").active_take
        assert take is not None and analysed.args[0] == take.id
        assert (tmp_path / "p" / "analysis" / f"{take.id}.json").is_file()
        assert take.identity_mean is not None and take.identity_mean > 0.5  # same face
        assert take.analysis_engine and take.analysis_engine.startswith("dlib")
    finally:
        win.generation.shutdown()
        win.identity.shutdown()


def test_prompt_lint_and_reference_badge(qtbot, tmp_path, photo_png, monkeypatch):
    from studio.ui import dialogs

    monkeypatch.setattr(dialogs, "ask", lambda *a, **k: QMessageBox.Discard)
    doc = _project(tmp_path / "p", photo_png)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    win.select_shot("s1")
    assert win.prompt_lint.isHidden() and win.prompt_lint.rules() == []
    doc.update_shot("s1", prompt="she turns, wearing a red jacket", duration_s=8.0)
    assert set(win.prompt_lint.rules()) == {"appearance", "duration"}
    assert not win.prompt_lint.isHidden()

    win.bible.characters.setCurrentRow(0)
    win.bible.references.setCurrentRow(0)
    badge = win.reference_quality.badge
    wait_until(qtbot, lambda: badge.level != "pending" and not badge.isHidden(), 60_000)
    # The 512×512 astronaut photo is a usable reference, but her face is small in the frame.
    assert badge.level == "warning" and "face is small" in badge.toolTip()
