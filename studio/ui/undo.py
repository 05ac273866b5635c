"""Undoable edits. Every change the UI makes to the project is one of these commands.

Each command wraps :class:`~studio.core.document.ProjectDocument` methods, which return what the
inverse needs. A command is applied once *before* it is pushed (:func:`push`), so a validation
error reaches the user as a message and never leaves a half-applied command on the stack; the
stack's own first ``redo()`` call is then skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QUndoCommand, QUndoStack

from studio.core.document import ProjectDocument
from studio.core.model import ANGLE_LABELS, Angle, Asset, Character, Reference, Shot, new_id

# Merge ids (QUndoCommand.id): consecutive edits of the same text field become one undo step.
_MERGE_SHOT_TEXT = 1001
_MERGE_CHARACTER_TEXT = 1002
_MERGE_PROJECT_NAME = 1003
SHOT_TEXT_FIELDS = frozenset({"title", "prompt", "negative_prompt", "model"})
CHARACTER_TEXT_FIELDS = frozenset({"name", "notes"})

# What the History panel and Edit ▸ Undo call each field: plain words, never attribute names.
_SHOT_FIELD_WORDS = {"title": "title", "prompt": "prompt", "negative_prompt": "negative prompt",
                     "character_id": "character", "start_asset": "start image",
                     "start_reference_id": "start image", "duration_s": "duration",
                     "fps": "frame rate", "resolution": "resolution", "aspect": "aspect ratio",
                     "seed": "seed", "seed_mode": "seed mode", "backend": "backend",
                     "model": "model", "params": "generation settings",
                     "start_framing": "framing"}
_CHARACTER_FIELD_WORDS = {"name": "name", "notes": "notes", "color": "colour", "lora": "LoRA"}
_BACKEND_WORDS = {"preview": "Preview", "diffusers": "diffusers"}


def quoted(name: str) -> str:
    """How a shot or character name appears in a History entry: 'Introduction'."""
    return f"'{name}'"


def _value(v: Any) -> Any:
    return getattr(v, "value", v)  # enums (or their strings) as the user sees them


def _field_list(words: list[str]) -> str:
    unique = list(dict.fromkeys(words))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


def _describe_shot_edit(doc: ProjectDocument, name: str, fields: dict[str, Any]) -> str:
    """E.g. "Change character of 'Introduction' to Admiral Hopper", "Rename shot 'One' to
    'Two'", "Change duration of 'One' to 3.5 s"."""
    keys = set(fields)
    of = quoted(name)
    if keys == {"title"}:
        return f"Rename shot {of} to {quoted(fields['title'])}"
    if keys == {"character_id"}:
        char = doc.project.character(fields["character_id"])
        return (f"Change character of {of} to {char.name}" if char is not None
                else f"Remove the character of {of}")
    if keys <= {"start_asset", "start_reference_id"}:
        return (f"Remove the start image of {of}" if fields.get("start_asset", "x") is None
                else f"Change start image of {of}")
    if keys <= {"start_asset", "start_reference_id", "character_id"}:
        char = doc.project.character(fields.get("character_id"))
        to = f" and switch to {char.name}" if char is not None else ""
        return f"Set start image of {of}{to}"
    if len(keys) == 1:
        (key,) = keys
        v = _value(fields[key])
        word = _SHOT_FIELD_WORDS.get(key, key.replace("_", " "))
        if key == "duration_s":
            return f"Change duration of {of} to {v:g} s"
        if key == "fps":
            return f"Change frame rate of {of} to {v} fps"
        if key in ("resolution", "aspect", "seed", "seed_mode"):
            return f"Change {word} of {of} to {v}"
        if key == "backend":
            return f"Change backend of {of} to {_BACKEND_WORDS.get(v, v)}"
        if key == "model":
            return (f"Change model of {of} to {Path(v).name or v}" if v
                    else f"Use the backend's default model for {of}")
        return f"Change {word} of {of}"
    words = [_SHOT_FIELD_WORDS.get(k, k.replace("_", " ")) for k in fields]
    return f"Change {_field_list(words)} of {of}"


def _describe_character_edit(name: str, fields: dict[str, Any]) -> str:
    of = quoted(name)
    if set(fields) == {"name"}:
        return f"Rename character {of} to {quoted(fields['name'])}"
    if set(fields) == {"lora"} and fields["lora"] is None:
        return f"Remove the LoRA of {of}"
    words = [_CHARACTER_FIELD_WORDS.get(k, k.replace("_", " ")) for k in fields]
    return f"Change {_field_list(words)} of {of}"


def _describe_project_edit(fields: dict[str, Any]) -> str:
    parts = []
    if "name" in fields:
        parts.append(f"Rename the project to {quoted(fields['name'])}")
    out = fields.get("output")
    if out is not None:
        what = (f"{_value(out.resolution)} {_value(out.aspect)} at {out.fps} fps"
                if hasattr(out, "fps") else "")
        parts.append("Change the film's output" + (f" to {what}" if what else ""))
    return "; ".join(parts) or "Change the project"


class DocCommand(QUndoCommand):
    """Base: subclasses implement ``_apply`` and ``_revert``."""

    def __init__(self, doc: ProjectDocument, text: str) -> None:
        super().__init__(text)
        self.doc = doc
        self._applied_once = False

    def apply_first(self) -> None:
        self._apply()
        self._applied_once = True

    def redo(self) -> None:  # noqa: D401 - Qt override
        if self._applied_once:
            self._applied_once = False  # the stack's first redo: already applied by push()
            return
        self._apply()

    def undo(self) -> None:
        self._revert()

    def _apply(self) -> None:
        raise NotImplementedError

    def _revert(self) -> None:
        raise NotImplementedError


def push(stack: QUndoStack, cmd: DocCommand) -> DocCommand:
    """Apply ``cmd`` (raising ValueError/KeyError/StudioError untouched if it is invalid), then
    record it on ``stack``."""
    cmd.apply_first()
    stack.push(cmd)
    return cmd


# -- project ----------------------------------------------------------------------------------

class _EditFieldsCommand(DocCommand):
    """Set some fields of one object through its ``ProjectDocument.update_*`` method; undo puts
    the old values back. Consecutive edits of the same single text field of the same object
    merge into one undo step (typing), when the subclass gives a ``MERGE_ID``."""

    MERGE_ID = -1
    MERGEABLE: frozenset[str] = frozenset()

    def __init__(self, doc: ProjectDocument, text: str, **fields: Any) -> None:
        super().__init__(doc, text)
        self.new = dict(fields)
        self.old: dict[str, Any] = {}

    def _update(self, **fields: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _target(self) -> tuple[str, ...]:
        return ()

    def _describe(self) -> str | None:
        """The History text for ``self.new`` (None: keep the text given)."""
        return None

    def _apply(self) -> None:
        old = self._update(**self.new)
        if not self.old:
            self.old = old

    def _revert(self) -> None:
        self._update(**self.old)

    def id(self) -> int:
        if len(self.new) == 1 and set(self.new) <= self.MERGEABLE:
            return self.MERGE_ID
        return -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if type(other) is not type(self) or other._target() != self._target() \
                or set(other.new) != set(self.new):
            return False
        self.new = dict(other.new)
        self.setObsolete(self.new == self.old)
        text = self._describe()  # typing on: "Rename shot 'One' to 'One!!'"
        if text:
            self.setText(text)
        return True


class EditProjectCommand(_EditFieldsCommand):
    """The project's name or output settings (resolution, aspect, fps of the export)."""

    MERGE_ID = _MERGE_PROJECT_NAME
    MERGEABLE = frozenset({"name"})

    def __init__(self, doc: ProjectDocument, **fields: Any) -> None:
        super().__init__(doc, _describe_project_edit(fields), **fields)

    def _describe(self) -> str | None:
        return _describe_project_edit(self.new)

    def _update(self, **fields: Any) -> dict[str, Any]:
        return self.doc.update_project(**fields)


# -- assets -----------------------------------------------------------------------------------

class RegisterAssetsCommand(DocCommand):
    """Record imported files in the project's asset table (the files are already copied)."""

    def __init__(self, doc: ProjectDocument, assets: list[Asset]) -> None:
        n = len(assets)
        super().__init__(doc, f"Import {n} image{'s' if n != 1 else ''}")
        self.assets = list(assets)
        self._added: list[str] = []

    def _apply(self) -> None:
        self._added = [a.sha256 for a in self.assets if self.doc.add_asset(a)]

    def _revert(self) -> None:
        for digest in reversed(self._added):
            self.doc.remove_asset(digest)


# -- characters -------------------------------------------------------------------------------

class AddCharacterCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, character: Character, index: int | None = None) -> None:
        super().__init__(doc, f"Add character {quoted(character.name)}")
        self.character = character
        self.index = index

    def _apply(self) -> None:
        self.index = self.doc.insert_character(self.character.model_copy(deep=True), self.index)

    def _revert(self) -> None:
        self.doc.remove_character(self.character.id)


class RemoveCharacterCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, char_id: str) -> None:
        char = doc.project.character(char_id)
        super().__init__(doc, f"Remove character {quoted(char.name if char else char_id)}")
        self.char_id = char_id
        self._saved: tuple[Character, int, dict[str, dict[str, Any]]] | None = None

    def _apply(self) -> None:
        self._saved = self.doc.remove_character(self.char_id)

    def _revert(self) -> None:
        assert self._saved is not None
        character, index, unlinked = self._saved
        self.doc.insert_character(character, index)
        for shot_id, fields in unlinked.items():
            self.doc.update_shot(shot_id, **fields)


class EditCharacterCommand(_EditFieldsCommand):
    MERGE_ID = _MERGE_CHARACTER_TEXT
    MERGEABLE = CHARACTER_TEXT_FIELDS

    def __init__(self, doc: ProjectDocument, char_id: str, **fields: Any) -> None:
        self.char_id = char_id
        char = doc.project.character(char_id)
        self._name = char.name if char is not None else char_id  # as it was before the edit
        super().__init__(doc, _describe_character_edit(self._name, fields), **fields)

    def _describe(self) -> str | None:
        return _describe_character_edit(self._name, self.new)

    def _target(self) -> tuple[str, ...]:
        return (self.char_id,)

    def _update(self, **fields: Any) -> dict[str, Any]:
        return self.doc.update_character(self.char_id, **fields)


def references_text(doc: ProjectDocument, char_id: str, n: int) -> str:
    """"Add a reference to 'Alice'", "Add 3 references to 'Alice'"."""
    char = doc.project.character(char_id)
    name = quoted(char.name) if char is not None else "a character"
    return f"Add {'a reference' if n == 1 else f'{n} references'} to {name}"


def _reference_words(doc: ProjectDocument, char_id: str, ref_id: str) -> str:
    """"the Front reference of 'Alice'"."""
    char = doc.project.character(char_id)
    ref = char.reference(ref_id) if char is not None else None
    angle = f"{ANGLE_LABELS[ref.angle]} " if ref is not None else ""
    return f"the {angle}reference of {quoted(char.name) if char else 'a character'}"


class AddReferencesCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, char_id: str, refs: list[Reference]) -> None:
        super().__init__(doc, references_text(doc, char_id, len(refs)))
        self.char_id = char_id
        self.refs = list(refs)

    def _apply(self) -> None:
        for ref in self.refs:
            self.doc.insert_reference(self.char_id, ref.model_copy(deep=True))

    def _revert(self) -> None:
        for ref in reversed(self.refs):
            self.doc.remove_reference(self.char_id, ref.id)


class RemoveReferenceCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, char_id: str, ref_id: str) -> None:
        super().__init__(doc, "Remove " + _reference_words(doc, char_id, ref_id))
        self.char_id = char_id
        self.ref_id = ref_id
        self._saved: tuple[Reference, int, list[str]] | None = None

    def _apply(self) -> None:
        self._saved = self.doc.remove_reference(self.char_id, self.ref_id)

    def _revert(self) -> None:
        assert self._saved is not None
        ref, index, unlinked = self._saved
        self.doc.insert_reference(self.char_id, ref, index)
        for shot_id in unlinked:
            self.doc.update_shot(shot_id, start_reference_id=ref.id)


class EditReferenceCommand(_EditFieldsCommand):
    """Change a reference's angle or note."""

    def __init__(self, doc: ProjectDocument, char_id: str, ref_id: str, **fields: Any) -> None:
        self.char_id, self.ref_id = char_id, ref_id
        what = _reference_words(doc, char_id, ref_id)
        if set(fields) == {"angle"}:
            label = f"Mark {what} as {ANGLE_LABELS[Angle(fields['angle'])]}"
        elif set(fields) == {"note"}:
            label = f"Change the note of {what}"
        else:
            label = f"Change {what}"
        super().__init__(doc, label[:1].upper() + label[1:], **fields)

    def _target(self) -> tuple[str, ...]:
        return (self.char_id, self.ref_id)

    def _update(self, **fields: Any) -> dict[str, Any]:
        return self.doc.update_reference(self.char_id, self.ref_id, **fields)


# -- shots ------------------------------------------------------------------------------------

class AddShotCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, shot: Shot, index: int | None = None,
                 text: str | None = None) -> None:
        super().__init__(doc, text or f"Add shot {quoted(shot.title)}")
        self.shot = shot
        self.index = index

    def _apply(self) -> None:
        self.index = self.doc.insert_shot(self.shot.model_copy(deep=True), self.index)

    def _revert(self) -> None:
        self.doc.remove_shot(self.shot.id)


def duplicate_of(shot: Shot) -> Shot:
    """A copy of ``shot`` with a new id and no takes (takes belong to the original)."""
    data = shot.model_dump()
    data.update(id=new_id(), takes=[], active_take_id=None,
                title=(shot.title + " copy")[:200])
    return Shot.model_validate(data)


class RemoveShotCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, shot_id: str) -> None:
        shot = doc.project.shot(shot_id)
        super().__init__(doc, f"Delete shot {quoted(shot.title if shot else shot_id)}")
        self.shot_id = shot_id
        self._saved: tuple[Shot, int] | None = None

    def _apply(self) -> None:
        self._saved = self.doc.remove_shot(self.shot_id)

    def _revert(self) -> None:
        assert self._saved is not None
        shot, index = self._saved
        self.doc.insert_shot(shot, index)


class MoveShotCommand(DocCommand):
    def __init__(self, doc: ProjectDocument, shot_id: str, to_index: int) -> None:
        shot = doc.project.shot(shot_id)
        super().__init__(doc, f"Move shot {quoted(shot.title if shot else shot_id)} to "
                              f"position {to_index + 1}")
        self.shot_id = shot_id
        self.to_index = to_index
        self.from_index = doc.project.shot_index(shot_id)

    def _apply(self) -> None:
        self.from_index = self.doc.move_shot(self.shot_id, self.to_index)

    def _revert(self) -> None:
        self.doc.move_shot(self.shot_id, self.from_index)


class EditShotCommand(_EditFieldsCommand):
    MERGE_ID = _MERGE_SHOT_TEXT
    MERGEABLE = SHOT_TEXT_FIELDS

    def __init__(self, doc: ProjectDocument, shot_id: str, text: str | None = None,
                 **fields: Any) -> None:
        self.shot_id = shot_id
        shot = doc.project.shot(shot_id)
        self._name = shot.title if shot is not None else shot_id  # as it was before the edit
        self._fixed_text = text
        super().__init__(doc, text or _describe_shot_edit(doc, self._name, fields), **fields)

    def _describe(self) -> str | None:
        return self._fixed_text or _describe_shot_edit(self.doc, self._name, self.new)

    def _target(self) -> tuple[str, ...]:
        return (self.shot_id,)

    def _update(self, **fields: Any) -> dict[str, Any]:
        return self.doc.update_shot(self.shot_id, **fields)


class CompoundCommand(DocCommand):
    """Several commands as one undo step (a drop that imports, adds to the bible and sets a start
    image). Like ``QUndoStack.beginMacro`` but all-or-nothing: if a later part is invalid, the
    parts already applied are reverted before the error propagates, so nothing half-done is left
    on the stack or in the model."""

    def __init__(self, doc: ProjectDocument, text: str, parts: list[DocCommand]) -> None:
        super().__init__(doc, text)
        self.parts = list(parts)

    def _apply(self) -> None:
        done: list[DocCommand] = []
        try:
            for part in self.parts:
                part._apply()
                done.append(part)
        except BaseException:
            for part in reversed(done):
                part._revert()
            raise

    def _revert(self) -> None:
        for part in reversed(self.parts):
            part._revert()
