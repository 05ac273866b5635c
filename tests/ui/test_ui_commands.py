"""Every undo command restores the exact model on undo and the exact edited model on redo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtGui import QUndoStack

from studio.core.document import ProjectDocument
from studio.core.model import Angle, Character, Reference, Shot
from studio.media.images import import_image
from studio.ui.undo import (AddCharacterCommand, AddReferencesCommand, AddShotCommand,
                                CompoundCommand, DocCommand, EditCharacterCommand,
                                EditProjectCommand,
                                EditReferenceCommand, EditShotCommand, MoveShotCommand,
                                RegisterAssetsCommand, RemoveCharacterCommand,
                                RemoveReferenceCommand, RemoveShotCommand, duplicate_of, push)
from uitest_support import dump, sample_project


@pytest.fixture
def doc(tmp_path: Path, photo_png: Path) -> ProjectDocument:
    d = sample_project(tmp_path / "proj")
    asset = import_image(d.folder, photo_png)
    d.add_asset(asset)
    d.insert_reference("alice", Reference(id="r1", asset=asset.path))
    d.update_shot("s1", character_id="alice", start_asset=asset.path, start_reference_id="r1")
    return d


def _asset(d: ProjectDocument) -> str:
    return next(iter(d.project.assets.values())).path


CASES: dict[str, Callable[[ProjectDocument], DocCommand]] = {
    "add character": lambda d: AddCharacterCommand(d, Character(id="carol", name="Carol"), 1),
    "remove character (unlinks shots)": lambda d: RemoveCharacterCommand(d, "alice"),
    "edit character": lambda d: EditCharacterCommand(d, "bob", name="Robert", color="#123456"),
    "add references": lambda d: AddReferencesCommand(
        d, "bob", [Reference(id="r2", asset=_asset(d), angle=Angle.UP),
                   Reference(id="r3", asset=_asset(d))]),
    "remove reference (unlinks shots)": lambda d: RemoveReferenceCommand(d, "alice", "r1"),
    "change angle": lambda d: EditReferenceCommand(d, "alice", "r1", angle=Angle.PROFILE_RIGHT),
    "add shot": lambda d: AddShotCommand(d, Shot(id="s4", title="Four"), 0),
    "duplicate shot": lambda d: AddShotCommand(d, duplicate_of(d.project.shot("s1")), 1),
    "remove shot": lambda d: RemoveShotCommand(d, "s2"),
    "move shot": lambda d: MoveShotCommand(d, "s1", 2),
    "edit project": lambda d: EditProjectCommand(
        d, name="Feature", output=d.project.output.model_copy(update={"fps": 24})),
    "edit shot": lambda d: EditShotCommand(d, "s3", duration_s=7.5, fps=24, seed=4_000_000_000,
                                           resolution="720p", aspect="9:16", backend="diffusers",
                                           prompt="dolly in"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_undo_redo_restores_exact_model(doc: ProjectDocument, name: str, qapp) -> None:
    stack = QUndoStack()
    before = dump(doc)
    push(stack, CASES[name](doc))
    after = dump(doc)
    assert after != before
    for _ in range(2):  # several round trips stay exact
        stack.undo()
        assert dump(doc) == before
        stack.redo()
        assert dump(doc) == after


def test_consecutive_text_edits_merge_into_one_step(doc: ProjectDocument, qapp) -> None:
    stack = QUndoStack()
    for text in ("O", "On", "One!", "One!!"):
        push(stack, EditShotCommand(doc, "s1", title=text))
    push(stack, EditCharacterCommand(doc, "bob", notes="tall"))
    push(stack, EditCharacterCommand(doc, "bob", notes="tall, beard"))
    assert stack.count() == 2
    stack.undo()
    assert doc.project.character("bob").notes == ""
    stack.undo()
    assert doc.project.shot("s1").title == "One"
    stack.redo()
    assert doc.project.shot("s1").title == "One!!"
    # a different field starts a new step
    push(stack, EditShotCommand(doc, "s1", prompt="pan left"))
    push(stack, EditShotCommand(doc, "s1", title="X"))
    assert stack.count() == 3


def test_invalid_edit_is_not_pushed(doc: ProjectDocument, qapp) -> None:
    stack = QUndoStack()
    before = dump(doc)
    with pytest.raises(ValueError):
        push(stack, EditShotCommand(doc, "s1", duration_s=-3))
    with pytest.raises(ValueError):
        push(stack, EditShotCommand(doc, "s1", character_id="nobody"))
    assert stack.count() == 0 and dump(doc) == before


def test_compound_is_all_or_nothing(doc: ProjectDocument, qapp, tmp_path: Path) -> None:
    stack = QUndoStack()
    before = dump(doc)
    bad = CompoundCommand(doc, "x", [AddShotCommand(doc, Shot(id="s9")),
                                     EditShotCommand(doc, "s9", start_asset="assets/missing.png")])
    with pytest.raises(ValueError):
        push(stack, bad)
    assert dump(doc) == before and stack.count() == 0


def test_register_assets_keeps_known_assets_on_undo(doc: ProjectDocument, qapp) -> None:
    stack = QUndoStack()
    known = next(iter(doc.project.assets.values()))
    push(stack, RegisterAssetsCommand(doc, [known]))
    stack.undo()
    assert known.sha256 in doc.project.assets  # it was there before the command


def test_removing_a_reference_keeps_the_shots_start_image(doc: ProjectDocument, qapp) -> None:
    stack = QUndoStack()
    start = doc.project.shot("s1").start_asset
    push(stack, RemoveReferenceCommand(doc, "alice", "r1"))
    shot = doc.project.shot("s1")
    assert shot.start_reference_id is None and shot.start_asset == start  # no dangling link
    stack.undo()
    assert doc.project.shot("s1").start_reference_id == "r1"
