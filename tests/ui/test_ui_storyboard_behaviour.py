"""Storyboard and bible behaviour a new user meets first: "+ Shot" goes where it is expected with
the expected title and character, another character's portrait on a shot asks whom the shot is
of, "Generate" never repeats a take silently, bad references are flagged when imported, History
and the queue speak plain words.

Real windows offscreen, real project folders, real image files, the real preview backend and the
real reference checks (dlib); questions are answered through ``dialogs.ask``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QMessageBox, QToolBar

from studio.core.model import Angle, Character, Reference, Take
from studio.media.images import import_image
from studio.ui import dialogs, drops
from studio.ui.bible_panel import ID_ROLE, VERDICT_ROLE, VERDICT_STYLE
from studio.ui.undo import (AddCharacterCommand, EditCharacterCommand, EditReferenceCommand,
                            EditShotCommand, MoveShotCommand, RemoveShotCommand, push)
from studio.ui.undo_takes import DeleteTakeCommand, SetActiveTakeCommand
from uitest_support import (Answers, drop_and_wait, make_settings, open_window, sample_project, send_drop,
                            wait_until)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

from engine_fixtures import make_project  # noqa: E402
from identity_helpers import insightface_image, t1_faces  # noqa: E402


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Answers:
    a = Answers()
    monkeypatch.setattr(dialogs, "ask", a)
    return a


def _card_center(board: Any, row: int) -> QPointF:
    return QPointF(board.view.visualRect(board.model.index(row)).center())


def _history(win: Any) -> list[str]:
    return [win.undo_stack.text(i) for i in range(win.undo_stack.count())]


def _flipped(photo: Path, folder: Path) -> Path:
    out = folder / "mirror.png"
    Image.open(photo).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(out)
    return out


def _with_references(doc: Any, photo: Path, other: Path) -> tuple[Reference, Reference]:
    """Alice and Bob each get a reference portrait (two different images)."""
    refs = []
    for char_id, image in (("alice", photo), ("bob", other)):
        asset = import_image(doc.folder, image)
        doc.add_asset(asset)
        ref = Reference(asset=asset.path)
        doc.insert_reference(char_id, ref)
        refs.append(ref)
    return refs[0], refs[1]


# -- + Shot ------------------------------------------------------------------------------------

def test_add_shot_goes_after_the_selection_titled_by_place_of_the_bible_character(
        qtbot, tmp_path, asked) -> None:
    doc = sample_project(tmp_path / "proj")  # One (nobody), Two (Bob), Three (nobody)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    board = win.storyboard
    # Bob's shot is selected, Alice is selected in the bible: as in the issue (Collins' shot,
    # Hopper selected), the new shot must be Alice's, right after Two, titled by its place.
    win.select_shot("s2")
    win.bible.select_character("alice")
    board.add_btn.click()
    shots = doc.project.shots
    new = shots[2]
    assert [s.id for s in shots[:2]] == ["s1", "s2"] and shots[3].id == "s3"
    assert new.title == "Shot 3" and new.character_id == "alice"
    assert board.selected_shot_id() == new.id
    assert _history(win)[-1] == "Add shot 'Shot 3'"

    # After the first shot: position 2, "Shot 2".
    win.select_shot("s1")
    board.add_btn.click()
    assert doc.project.shots[1].title == "Shot 2"
    # Again after the first: "Shot 2" is taken by the shot just made (now third) and the
    # user's titles are never changed, so the insert is "Shot 1A".
    win.select_shot("s1")
    board.add_btn.click()
    titles = [s.title for s in doc.project.shots]
    assert titles == ["One", "Shot 1A", "Shot 2", "Two", "Shot 3", "Three"]

    # Nothing selected: at the end.
    win.select_shot(None)
    board.add_btn.click()
    assert doc.project.shots[-1].title == "Shot 7"

    # No character selected in the bible: the selected shot's, then the first.
    win.bible.characters.setCurrentItem(None)
    win.select_shot("s2")
    board.add_btn.click()
    assert doc.project.shots[4].character_id == "bob"
    win.select_shot("s1")  # nobody's
    board.add_btn.click()
    assert doc.project.shots[1].character_id == "alice"

    for _ in range(6):
        win.undo_stack.undo()
    assert [s.id for s in doc.project.shots] == ["s1", "s2", "s3"]


def test_a_portrait_dropped_on_empty_storyboard_space_is_titled_by_its_place(
        qtbot, tmp_path, photo_png, asked) -> None:
    doc = sample_project(tmp_path / "proj")
    doc.update_shot("s3", title="Shot 4")  # the user's title, in the way of the automatic one
    win = open_window(qtbot, doc, make_settings(tmp_path))
    view = win.storyboard.view
    last = view.visualRect(win.storyboard.model.index(2))
    drop_and_wait(qtbot, win, view, [photo_png], QPointF(last.right() + 60, last.center().y()))
    new = doc.project.shots[-1]
    assert new.title == "Shot 3A" and doc.project.shot("s3").title == "Shot 4"
    assert _history(win)[-1] == "Add shot 'Shot 3A' from astronaut.png"


# -- another character's portrait on a shot ---------------------------------------------------

def test_dropping_another_characters_reference_asks_and_undo_restores_both(
        qtbot, tmp_path, photo_png, asked) -> None:
    doc = sample_project(tmp_path / "proj")
    alice_ref, bob_ref = _with_references(doc, photo_png, _flipped(photo_png, tmp_path))
    doc.update_shot("s2", start_asset=bob_ref.asset, start_reference_id=bob_ref.id)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    board = win.storyboard
    before = doc.project.shot("s2").model_copy(deep=True)

    asked.queue = [QMessageBox.Yes]  # "Switch to Alice"
    assert send_drop(board.view, drops.reference_mime(alice_ref.id), _card_center(board, 1))
    (q,) = asked.questions
    assert q["labels"] == {QMessageBox.Yes: "Switch to Alice", QMessageBox.No: "Keep Bob"}
    assert "reference of Alice" in q["text"] and "'Two' is a shot of Bob" in q["text"]
    s2 = doc.project.shot("s2")
    assert (s2.character_id, s2.start_asset, s2.start_reference_id) == (
        "alice", alice_ref.asset, alice_ref.id)
    assert _history(win)[-1] == "Set start image of 'Two' and switch to Alice"
    assert win.inspector.start_image.currentData() == alice_ref.id  # no "not in this character"
    win.undo_stack.undo()  # one step restores the start image *and* the character
    assert doc.project.shot("s2") == before

    asked.queue = [QMessageBox.No]  # "Keep Bob": the artist's explicit choice
    assert send_drop(board.view, drops.reference_mime(alice_ref.id), _card_center(board, 1))
    s2 = doc.project.shot("s2")
    assert s2.character_id == "bob" and s2.start_reference_id == alice_ref.id
    assert _history(win)[-1] == "Change start image of 'Two'"
    win.undo_stack.undo()

    n = win.undo_stack.count()
    asked.queue = [QMessageBox.Cancel]
    send_drop(board.view, drops.reference_mime(alice_ref.id), _card_center(board, 1))
    assert doc.project.shot("s2") == before and win.undo_stack.count() == n

    # A shot of nobody takes the reference's owner without a question.
    asked.questions.clear()
    assert send_drop(board.view, drops.reference_mime(bob_ref.id), _card_center(board, 0))
    assert doc.project.shot("s1").character_id == "bob" and not asked.questions
    # Bob's own reference on Bob's shot: no question either.
    assert send_drop(board.view, drops.reference_mime(bob_ref.id), _card_center(board, 1))
    assert not asked.questions

    # The bible's "Use as start image of the selected shot" takes the same path.
    asked.queue = [QMessageBox.Yes]
    win.bible._use_as_start("s2", alice_ref.id)
    assert doc.project.shot("s2").character_id == "alice" and len(asked.questions) == 1


def test_dropping_another_characters_portrait_file_asks_and_reuses_its_reference(
        qtbot, tmp_path, photo_png, asked) -> None:
    doc = sample_project(tmp_path / "proj")
    mirror = _flipped(photo_png, tmp_path)
    alice_ref, _bob_ref = _with_references(doc, photo_png, mirror)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    board = win.storyboard
    before = doc.project.shot("s2").model_copy(deep=True)
    asked.queue = [QMessageBox.Yes]
    # Alice's portrait, dropped again from the file manager onto Bob's shot.
    drop_and_wait(qtbot, win, board.view, [photo_png], _card_center(board, 1))
    assert asked.questions and asked.questions[0]["labels"][QMessageBox.Yes] == "Switch to Alice"
    s2 = doc.project.shot("s2")
    assert (s2.character_id, s2.start_reference_id) == ("alice", alice_ref.id)
    # the image stays Alice's one reference; Bob's bible is untouched
    assert len(doc.project.character("alice").references) == 1
    assert len(doc.project.character("bob").references) == 1
    win.undo_stack.undo()
    assert doc.project.shot("s2") == before


# -- History in plain words ---------------------------------------------------------------------

def test_history_entries_read_as_plain_words(qtbot, tmp_path, photo_png, asked) -> None:
    doc = sample_project(tmp_path / "proj")
    alice_ref, _ = _with_references(doc, photo_png, _flipped(photo_png, tmp_path))
    doc.insert_take("s1", Take(id="t1", video="takes/s1/t1.mp4", seed=1, backend="preview",
                               width=64, height=48, frames=2, fps=16))
    doc.insert_take("s1", Take(id="t2", video="takes/s1/t2.mp4", seed=2, backend="preview",
                               width=64, height=48, frames=2, fps=16))
    win = open_window(qtbot, doc, make_settings(tmp_path))
    stack = win.undo_stack
    insp = win.inspector

    # Through the inspector, as a user does it.
    win.select_shot("s1")
    insp.character.setCurrentIndex(insp.character.findData("bob"))
    insp.character.activated.emit(insp.character.currentIndex())
    insp.prompt.setPlainText("she turns her head to the left")
    insp.duration.setValue(3.5)
    # Typing a title merges into one step whose words follow the typing.
    for text in ("O", "On", "Ones"):
        push(stack, EditShotCommand(doc, "s1", title=text))
    push(stack, EditShotCommand(doc, "s1", resolution="720p", aspect="9:16"))
    push(stack, MoveShotCommand(doc, "s3", 0))
    push(stack, RemoveShotCommand(doc, "s2"))
    push(stack, AddCharacterCommand(doc, Character(id="carol", name="Carol")))
    push(stack, EditCharacterCommand(doc, "carol", name="Caroline"))
    push(stack, EditCharacterCommand(doc, "alice", color="#123456"))
    push(stack, EditReferenceCommand(doc, "alice", alice_ref.id, angle=Angle.PROFILE_LEFT))
    push(stack, SetActiveTakeCommand(doc, "s1", "t2"))
    push(stack, DeleteTakeCommand(doc, "s1", "t1"))

    entries = _history(win)
    expected = ["Change character of 'One' to Bob",
                "Change prompt of 'One'",
                "Change duration of 'One' to 3.5 s",
                "Rename shot 'One' to 'Ones'",
                "Change resolution and aspect ratio of 'Ones'",
                "Move shot 'Three' to position 1",
                "Delete shot 'Two'",
                "Add character 'Carol'",
                "Rename character 'Carol' to 'Caroline'",
                "Change colour of 'Alice'",
                "Mark the Front reference of 'Alice' as Profile left",
                "Make take 2 of 'Ones' active",
                "Delete take 1 of 'Ones'"]
    for want in expected:
        assert want in entries, (want, entries)
    for text in entries:  # never attribute names or programmer words
        assert "_" not in text and " id" not in text and not text.startswith("Edit "), text
    # The History panel shows exactly these words.
    model = win.history.model()
    shown = [model.data(model.index(i, 0)) for i in range(1, model.rowCount())]
    assert shown == entries


# -- Generate: only what is missing, never a silent repeat ---------------------------------------

def _gen_window(qtbot: Any, tmp_path: Path, photo_png: Path, shots: int = 3) -> Any:
    from studio.core.document import ProjectDocument
    from studio.core.persistence import load_project

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=shots)
    win = open_window(qtbot, ProjectDocument(load_project(folder), folder),
                      make_settings(tmp_path))
    win.generation.set_draft(True)  # half size, few frames: quick takes
    win.identity.shutdown()  # no identity analysis needed here
    return win


def test_generate_all_makes_only_the_missing_takes_and_is_on_the_toolbar(
        qtbot, tmp_path, photo_png, asked) -> None:
    win = _gen_window(qtbot, tmp_path, photo_png, shots=3)
    ctl, doc = win.generation, win.document
    try:
        s1, s2, s3 = (s.id for s in doc.project.shots)
        doc.update_shot(s3, start_asset=None, start_reference_id=None)  # cannot be generated
        bar = win.findChild(QToolBar, "toolbar_generate")
        assert ctl.generate_missing_action in bar.actions()
        # No action re-renders every shot any more (that repeated takes with their fixed seeds).
        assert not [a for a in win.menu("Generate").actions() if "All Shots" in a.text()]
        assert ctl.generate_missing_action.text() == "Generate Shots &Without Takes"

        win.select_shot(s1)
        ctl.generate_action.trigger()
        assert ctl.wait_idle(60_000) and len(doc.project.shot(s1).takes) == 1
        ctl.generate_missing_action.trigger()
        assert "skipped 'Shot 3': no start image yet" in win.statusBar().currentMessage()
        assert [j.shot_id for j in ctl.queue.pending() + [ctl.queue.running()] if j] == [s2]
        assert ctl.wait_idle(60_000)
        assert [len(doc.project.shot(s).takes) for s in (s1, s2, s3)] == [1, 1, 0]
        assert not asked.questions  # nothing repeated, nothing asked

        doc.update_shot(s3, start_asset=doc.project.shot(s1).start_asset)
        ctl.generate_missing_action.trigger()
        assert ctl.wait_idle(60_000)
        assert [len(doc.project.shot(s).takes) for s in (s1, s2, s3)] == [1, 1, 1]
        # Every shot has a take: the action says so and does nothing.
        assert not ctl.generate_missing_action.isEnabled()
        assert "re-roll" in ctl.generate_missing_action.toolTip()
    finally:
        ctl.shutdown()


def test_generate_asks_before_repeating_a_take_exactly(qtbot, tmp_path, photo_png,
                                                        asked) -> None:
    win = _gen_window(qtbot, tmp_path, photo_png, shots=1)
    ctl, doc = win.generation, win.document
    try:
        sid = doc.project.shots[0].id
        win.select_shot(sid)
        ctl.generate_action.trigger()
        assert ctl.wait_idle(60_000)
        seed = doc.project.shot(sid).seed
        assert [t.seed for t in doc.project.shot(sid).takes] == [seed]

        ctl.pause()  # keep what is queued where the test can see it
        asked.queue = [QMessageBox.Cancel]
        ctl.generate_action.trigger()
        (q,) = asked.questions
        assert q["text"] == (f"This would repeat take 1 of 'Shot 1' exactly (same seed {seed} "
                             "and settings).")
        assert q["labels"] == {QMessageBox.Yes: "Use a new seed",
                               QMessageBox.Ignore: "Generate anyway"}
        assert not ctl.queue.pending()  # cancelled: nothing queued

        asked.queue = [QMessageBox.Yes]  # a new seed: a different take; the shot keeps its seed
        ctl.generate_action.trigger()
        (job,) = ctl.queue.pending()
        assert job.seed != seed and doc.project.shot(sid).seed == seed
        ctl.cancel_all()

        asked.queue = [QMessageBox.Ignore]  # generate anyway: the same seed, as asked
        ctl.generate_action.trigger()
        (job,) = ctl.queue.pending()
        assert job.seed == seed
        # Queueing it once more: asked again (it still repeats take 1, and the waiting job).
        asked.queue = [QMessageBox.Cancel]
        ctl.generate_action.trigger()
        assert len(asked.questions) == 4 and len(ctl.queue.pending()) == 1

        # A different prompt is a different take: no question.
        n = len(asked.questions)
        ctl.cancel_all()
        doc.update_shot(sid, prompt="static camera, she blinks")
        ctl.generate_action.trigger()
        assert len(asked.questions) == n and len(ctl.queue.pending()) == 1
        ctl.cancel_all()
    finally:
        ctl.shutdown()


# -- bad references flagged at import -----------------------------------------------------------

def test_bad_references_are_flagged_at_import_and_on_every_tile(qtbot, tmp_path, photo_png,
                                                                 asked) -> None:
    from skimage import data

    cup = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(cup)  # a real photograph of a cup of coffee
    group = insightface_image("t1.jpg")  # a real photograph of six people
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    win.bible.select_character("alice")
    pos = QPointF(chars.visualItemRect(chars.item(0)).center())
    drop_and_wait(qtbot, win, chars, [photo_png, cup, group], pos)
    assert len(doc.project.character("alice").references) == 3  # imported, then graded
    assert win.bible.checks.busy  # the checks run off the UI thread: the drop returned first
    wait_until(qtbot, lambda: not win.bible.checks.busy, 60_000)

    shown = win.last_error
    assert shown.startswith("2 of the 3 imported images cannot serve as a reference:")
    assert "• coffee.png (Alice): no face found" in shown
    assert "• t1.jpg (Alice): 6 faces found" in shown
    assert "Worth checking:\n• astronaut.png (Alice): face is small" in shown

    grid = win.bible.references
    wait_until(qtbot, lambda: all(grid.item(i).data(VERDICT_ROLE) for i in range(3)))
    assert grid.currentRow() == 0  # the cup is not selected, and still shows its verdict
    assert [grid.item(i).data(VERDICT_ROLE) for i in range(3)] == ["warning", "bad", "bad"]
    assert "✗ Unusable reference" in grid.item(1).toolTip()
    assert "no face found" in grid.item(1).toolTip()
    # The badge is painted on the tile: the top-right corner carries the verdict's colour.
    icon = grid.item(1).icon().pixmap(grid.iconSize()).toImage()
    corner = icon.pixelColor(icon.width() - 8, 8)
    red = VERDICT_STYLE["bad"][1]
    assert corner.name() == red, (corner.name(), red)
    # An angle change is a new question: graded again for the new tag.
    grid.setCurrentRow(1)
    win.bible.set_angle(grid.item(1).data(ID_ROLE), Angle.PROFILE_LEFT)
    wait_until(qtbot, lambda: win.bible.references.item(1).data(VERDICT_ROLE) == "bad", 60_000)


def test_good_references_are_said_to_be_good(qtbot, tmp_path, asked) -> None:
    face = tmp_path / "portrait.png"
    Image.fromarray(t1_faces()[0]).save(face)
    doc = sample_project(tmp_path / "proj")
    win = open_window(qtbot, doc, make_settings(tmp_path))
    chars = win.bible.characters
    win.bible.select_character("bob")
    drop_and_wait(qtbot, win, chars, [face],
                  QPointF(chars.visualItemRect(chars.item(1)).center()))
    wait_until(qtbot, lambda: not win.bible.checks.busy, 60_000)
    grid = win.bible.references
    wait_until(qtbot, lambda: grid.item(0).data(VERDICT_ROLE) is not None)
    assert grid.item(0).data(VERDICT_ROLE) in ("good", "warning")
    assert win.last_error is None  # nothing unusable: no problem dialog


# -- the queue's columns ------------------------------------------------------------------------

def test_queue_columns_say_what_they_mean(qtbot, tmp_path, photo_png) -> None:
    import json

    from PySide6.QtCore import Qt

    from studio.core.document import ProjectDocument
    from studio.core.persistence import load_project
    from studio.core.userdirs import config_dir
    from studio.engine.model_library import REGISTRY_FORMAT, ModelInfo
    from studio.engine.queue import DraftOverrides
    from studio.session.session import Session
    from studio.ui.generation import GenerationController
    from studio.ui.queue_panel import COLUMNS, QueuePanel

    wan = tmp_path / "models" / "Wan2.1-I2V-14B-480P-Diffusers"
    info = ModelInfo(id="wan", name="Wan2.1-I2V-14B-480P-Diffusers", path=str(wan),
                     family="wan21_i2v", pipeline_class="WanImageToVideoPipeline",
                     size_bytes=1, fingerprint="x", components={}, rules={})
    (config_dir() / "models.json").write_text(json.dumps({"format": REGISTRY_FORMAT,
                                                           "models": [info.to_json()]}))
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=3)
    doc = ProjectDocument(load_project(folder), folder)
    s1, s2, s3 = doc.project.shots
    doc.update_shot(s2.id, backend="diffusers", model=str(wan))
    doc.update_shot(s3.id, backend="diffusers")
    ctl = GenerationController(Session(doc, analyze_new_takes=False))
    ctl.pause()
    panel = QueuePanel(ctl)
    qtbot.addWidget(panel)
    try:
        ctl.generate([s1.id, s2.id, s3.id])
        ctl.session.queue_takes([s1.id], draft=DraftOverrides(width=128, height=80, frames=4),
                                reroll=True)
        m = panel.model
        assert COLUMNS == ("#", "Shot", "Seed", "Backend", "Status", "Progress", "Details")
        assert all(m.headerData(c, Qt.Horizontal, Qt.ToolTipRole) for c in range(len(COLUMNS)))
        rows = [[m.data(m.index(r, c)) for c in range(len(COLUMNS))] for r in range(4)]
        assert [r[3] for r in rows] == ["Preview", "Wan 2.1 I2V (diffusers)",
                                        "diffusers (no model chosen)", "Preview · draft 128×80"]
        assert [r[4] for r in rows] == ["Waiting (queue paused)"] * 4
        assert not any("shot's" in str(v) for r in rows for v in r)

        # Run the preview takes: while one runs the status says what it does and the progress
        # has its time left; finished, how long it took.
        ctl.cancel(ctl.queue.pending()[1].id)
        ctl.cancel(ctl.queue.pending()[1].id)
        ctl.resume()
        job_id = ctl.queue.running().id if ctl.queue.running() else None
        statuses: set[str] = set()

        def watch(jid: str) -> None:
            row = next(r for r in range(m.rowCount()) if m.job_at(r).id == jid)
            statuses.add(m.data(m.index(row, 4)))
            progress = m.data(m.index(row, 5))
            if progress and "left" in progress:
                statuses.add("eta")

        ctl.job_progress.connect(watch)
        assert ctl.wait_idle(60_000) and job_id is not None
        assert statuses & {"Generating", "Encoding", "Loading model"}
        done = [m.job_at(r) for r in range(m.rowCount())]
        by_id = {j.id: r for r, j in enumerate(done)}
        row = by_id[job_id]
        assert m.data(m.index(row, 4)) == "Done" and m.data(m.index(row, 5)) == "100%"
        assert m.data(m.index(row, 6)).startswith("took ")
        assert "Cancelled" in [m.data(m.index(r, 4)) for r in range(m.rowCount())]
    finally:
        ctl.shutdown()
