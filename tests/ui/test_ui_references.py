"""The inspector's "Also in shot" and "References": who else is in a shot, which bible references
its takes are held to (Auto, or picked by hand and put in order), how many the shot's model
takes. Real window offscreen, a real project with real photographs (the astronaut and t1.jpg's
people), the bundled ComfyUI workflows' real capabilities (no server is needed to read them),
every edit through the undo stack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

from engine_fixtures import add_references as _add_refs, make_project  # noqa: E402
from identity_helpers import t1_faces  # noqa: E402
from uitest_support import answers, make_settings, open_window, wait_until  # noqa: E402, F401

from studio.core.model import Angle, Character  # noqa: E402
from studio.ui.inspector import REF_ICON, REF_ID_ROLE  # noqa: E402
from studio.ui.undo import EditShotCommand, push  # noqa: E402


@pytest.fixture
def bible(tmp_path: Path, photo_png: Path):  # noqa: ANN201
    """A shot of the astronaut (her front photo is the start image) with a three-quarter and a
    second front reference of her, and Ben (another person) with a front and a three-quarter."""
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    char = doc.project.characters[0]
    faces = t1_faces()
    tql, front2 = _add_refs(doc, tmp_path, char.id, faces[:2],
                            [Angle.THREE_QUARTER_LEFT, Angle.FRONT])
    ben = Character(name="Ben", color="#4c9be8")
    doc.insert_character(ben)
    ben_front, ben_tqr = _add_refs(doc, tmp_path, ben.id, faces[3:5],
                                   [Angle.FRONT, Angle.THREE_QUARTER_RIGHT])
    doc.save()
    refs = {"start": char.references[0].id, "tql": tql, "front2": front2,
            "ben_front": ben_front, "ben_tqr": ben_tqr}
    return doc, char, ben, refs


def _ids(insp) -> list[str]:  # noqa: ANN001
    return [rid for rid, _text, _on in insp.reference_rows()]


def _sent(insp) -> list[str]:  # noqa: ANN001
    return [rid for rid, _text, on in insp.reference_rows() if on]


def _set_model(win, shot_id: str, backend: str, model: str | None) -> None:  # noqa: ANN001
    push(win.undo_stack, EditShotCommand(win.document, shot_id, backend=backend, model=model))


def test_auto_shows_the_order_the_take_uses_with_thumbnails_and_the_models_capacity(
        qtbot, tmp_path: Path, bible, answers) -> None:  # noqa: ANN001, F811
    doc, char, ben, r = bible
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot = doc.project.shots[0]
    win.select_shot(shot.id)
    insp = win.inspector
    assert insp.refs_mode.currentData() == "auto" and insp.refs_list.isVisibleTo(insp)
    # The start image is a front photo: another front photo first (it adds what the start image
    # cannot show), then the start image as the front reference, then the three-quarter one.
    assert _ids(insp) == [r["front2"], r["start"], r["tql"]]
    texts = [t for _rid, t, _on in insp.reference_rows()]
    # (one character: the names are not repeated on every row)
    assert texts == ["1. Front\nnearest the start angle", "2. Front\nfront view",
                     "3. Three-quarter left\nnext nearest angle"]
    # The preview is plain image-to-video: every reference judges the take, none guides it.
    assert insp.refs_caption.text().startswith("Plain image-to-video: references guide nothing")
    assert _sent(insp) == _ids(insp)
    assert not insp.refs_up.isVisibleTo(insp)  # nothing to order in Auto

    # The thumbnails come from the image files through the thumbnail service's pool.
    def thumbs_shown() -> bool:
        items = [insp.refs_list.item(i) for i in range(insp.refs_list.count())]
        return all(max(s.width() for s in it.icon().availableSizes()) > REF_ICON for it in items)

    wait_until(qtbot, thumbs_shown, timeout=30_000)
    assert insp.refs_list.iconSize().width() == REF_ICON

    # Wan VACE (ComfyUI) takes one reference: the first is sent, the others are greyed.
    _set_model(win, shot.id, "comfyui", "wan-vace-r2v")
    assert insp.refs_caption.text() == "This model takes 1 reference."
    assert _sent(insp) == [r["front2"]]
    assert insp.reference_rows()[1][1] == "2. Front\nnot sent · front view"
    # Phantom takes four, of several people.
    _set_model(win, shot.id, "comfyui", "wan-phantom-s2v")
    assert insp.refs_caption.text() == "This model takes 4 references."
    assert _sent(insp) == [r["front2"], r["start"], r["tql"]]
    win.undo_stack.undo()
    win.undo_stack.undo()
    assert insp.refs_caption.text().startswith("Plain image-to-video")


def test_also_in_shot_edits_the_cast_undoably_and_brings_their_references(
        qtbot, tmp_path: Path, bible, answers) -> None:  # noqa: ANN001, F811
    doc, char, ben, r = bible
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    insp = win.inspector
    assert insp.cast_label.text() == "nobody else" and insp.cast_button.isEnabled()
    insp.cast_menu.aboutToShow.emit()  # what opening the menu does
    actions = {a.text(): a for a in insp.cast_menu.actions()}
    assert list(actions) == ["Ben"]  # the others, never the shot's own character
    assert not actions["Ben"].isChecked()
    actions["Ben"].trigger()
    assert doc.project.shot(shot_id).cast == [ben.id]
    assert insp.cast_label.text() == "Ben"
    assert win.undo_stack.undoText() == "Add Ben to 'Shot 1'"
    insp.cast_menu.aboutToShow.emit()
    assert [a.isChecked() for a in insp.cast_menu.actions()] == [True]

    # A two-shot on Phantom (several subjects, four references): the two people interleave,
    # the main character first.
    _set_model(win, shot_id, "comfyui", "wan-phantom-s2v")
    assert _ids(insp) == [r["front2"], r["ben_front"], r["start"], r["ben_tqr"], r["tql"]]
    assert _sent(insp) == _ids(insp)[:4]
    assert insp.reference_rows()[1][1] == "2. Front · Ben\nfront view"  # two people: named
    # Wan VACE takes one subject: only the astronaut's, and the caption says so.
    _set_model(win, shot_id, "comfyui", "wan-vace-r2v")
    assert insp.refs_caption.text() == "This model takes 1 reference, of Astronaut only (one subject)."
    assert _sent(insp) == [r["front2"]]

    win.undo_stack.undo()
    win.undo_stack.undo()
    win.undo_stack.undo()
    assert doc.project.shot(shot_id).cast == [] and insp.cast_label.text() == "nobody else"
    assert _ids(insp) == [r["front2"], r["start"], r["tql"]]
    win.undo_stack.redo()
    assert doc.project.shot(shot_id).cast == [ben.id] and insp.cast_label.text() == "Ben"

    # Ben becomes the shot's character: he leaves the cast in the same undo step.
    i = insp.character.findData(ben.id)
    insp.character.setCurrentIndex(i)
    insp.character.activated.emit(i)
    s = doc.project.shot(shot_id)
    assert (s.character_id, s.cast) == (ben.id, [])
    assert win.undo_stack.undoText() == "Change character of 'Shot 1' to Ben"
    win.undo_stack.undo()
    s = doc.project.shot(shot_id)
    assert (s.character_id, s.cast) == (char.id, [ben.id])


def test_pick_by_hand_ticks_and_orders_references_and_auto_comes_back(
        qtbot, tmp_path: Path, bible, answers) -> None:  # noqa: ANN001, F811
    doc, char, ben, r = bible
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    insp = win.inspector
    _set_model(win, shot_id, "comfyui", "wan-phantom-s2v")
    base = win.undo_stack.index()

    def ids() -> list[str] | None:
        return doc.project.shot(shot_id).reference_ids

    # Pick starts from what Auto sends (Phantom takes four; the astronaut has three).
    insp.refs_mode.setCurrentIndex(1)
    insp.refs_mode.activated.emit(1)
    assert ids() == [r["front2"], r["start"], r["tql"]]
    assert insp.refs_mode.currentData() == "pick" and insp.refs_up.isVisibleTo(insp)
    assert [on for _rid, _t, on in insp.reference_rows()] == [True, True, True]
    assert insp.reference_rows()[0][1] == "1. Front\npicked"

    def row(rid: str):  # noqa: ANN202
        for i in range(insp.refs_list.count()):
            if insp.refs_list.item(i).data(REF_ID_ROLE) == rid:
                return insp.refs_list.item(i)
        raise AssertionError(rid)

    # Untick the start image (what a click on its box does), then tick it again: it goes last.
    row(r["start"]).setCheckState(Qt.Unchecked)
    wait_until(qtbot, lambda: ids() == [r["front2"], r["tql"]])
    assert _ids(insp)[-1] == r["start"] and "not picked" in insp.reference_rows()[-1][1]
    row(r["start"]).setCheckState(Qt.Checked)
    wait_until(qtbot, lambda: ids() == [r["front2"], r["tql"], r["start"]])
    # Up and down move the selected one.
    insp.refs_list.setCurrentItem(row(r["start"]))
    assert insp.refs_up.isEnabled() and not insp.refs_down.isEnabled()
    insp.refs_up.click()
    assert ids() == [r["front2"], r["start"], r["tql"]]
    insp.refs_up.click()
    assert ids() == [r["start"], r["front2"], r["tql"]]
    assert not insp.refs_up.isEnabled() and insp.refs_down.isEnabled()
    assert _ids(insp) == ids()  # the list follows the stored order
    assert win.undo_stack.undoText() == "Pick the references of 'Shot 1'"

    # Back to Auto: None again, one undo step.
    insp.refs_mode.setCurrentIndex(0)
    insp.refs_mode.activated.emit(0)
    assert ids() is None and _ids(insp) == [r["front2"], r["start"], r["tql"]]
    win.undo_stack.undo()
    assert ids() == [r["start"], r["front2"], r["tql"]] and insp.refs_mode.currentData() == "pick"
    while win.undo_stack.index() > base:
        win.undo_stack.undo()
    assert ids() is None and insp.refs_mode.currentData() == "auto"
    while win.undo_stack.canRedo():
        win.undo_stack.redo()
    assert ids() is None

    # Ben joins the shot while picking: his references are offered, not ticked; when he
    # leaves, the ones of his that were picked go with him.
    win.undo_stack.undo()  # picked again: start, front2, tql
    insp.set_in_shot(ben.id, True)
    assert {r["ben_front"], r["ben_tqr"]} <= set(_ids(insp))
    row(r["ben_tqr"]).setCheckState(Qt.Checked)
    wait_until(qtbot, lambda: ids() == [r["start"], r["front2"], r["tql"], r["ben_tqr"]])
    # Phantom takes four: all four are sent; on Wan VACE (one) the rest are said not to be.
    _set_model(win, shot_id, "comfyui", "wan-vace-r2v")
    assert "not sent" in insp.reference_rows()[1][1]
    insp.set_in_shot(ben.id, False)
    assert ids() == [r["start"], r["front2"], r["tql"]]
    assert win.undo_stack.undoText() == "Remove Ben from 'Shot 1'"
    win.undo_stack.undo()
    assert ids() == [r["start"], r["front2"], r["tql"], r["ben_tqr"]]
