"""The open project as an evented, Qt-free document.

All edits go through the methods here (the UI wraps each in an undoable QUndoCommand; the CLI and
the engine call them directly). Each mutating method returns what its inverse needs, so an undo
command is two lines. Listeners subscribe to :class:`Signal` objects; the UI adapts them to Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import ProjectError
from studio.core.model import Asset, Character, Project, Reference, Shot, Take
from studio.core.persistence import resolve_inside, save_project, write_autosave


class Signal:
    """A minimal synchronous signal (Qt-free)."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable[..., Any]) -> None:
        self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)


def _apply(obj: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate ``fields`` against ``obj``'s model, then set them; returns the old values."""
    new = _validated(obj, fields)
    old = {k: getattr(obj, k) for k in fields}
    for k in fields:
        setattr(obj, k, getattr(new, k))
    return old


def _validated(obj: Any, fields: dict[str, Any]) -> Any:
    """A validated copy of pydantic ``obj`` with ``fields`` changed (raises ValueError)."""
    unknown = set(fields) - set(type(obj).model_fields)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    data = obj.model_dump()
    data.update({k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in fields.items()})
    return type(obj).model_validate(data)


class ProjectDocument:
    def __init__(self, project: Project | None = None, folder: Path | None = None) -> None:
        self.project = project if project is not None else Project()
        self.folder = Path(folder) if folder is not None else None
        self.revision = 0
        self.saved_revision = 0
        # (kind) where kind is "characters" or "shots": the list changed shape
        self.structure_changed = Signal()
        self.character_changed = Signal()  # (character_id)
        self.shot_changed = Signal()  # (shot_id)
        self.assets_changed = Signal()
        self.project_changed = Signal()  # (field names of the project itself)
        self.saved = Signal()  # (path)
        # Opened read-only (another writer holds the project, or the user asked): saving in
        # place is refused and autosave skipped; Save As to another folder clears it.
        self.read_only = False

    # -- state ---------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self.revision != self.saved_revision

    def _touch(self) -> None:
        self.revision += 1

    def path_of(self, rel: str) -> Path:
        if self.folder is None:
            raise ProjectError("the project has no folder yet")
        return resolve_inside(self.folder, rel)

    def save(self, folder: Path | None = None) -> Path:
        moving = folder is not None and (self.folder is None
                                         or Path(folder).resolve() != self.folder.resolve())
        if self.read_only and not moving:
            raise ProjectError("the project is open read-only: save it to another folder "
                               "(Save As)", self.folder)
        if folder is not None:
            self.folder = Path(folder)
        if self.folder is None:
            raise ProjectError("choose a folder to save the project in")
        path = save_project(self.project, self.folder)
        if moving:
            self.read_only = False
        self.saved_revision = self.revision
        self.saved.emit(path)
        return path

    def autosave(self) -> Path | None:
        if self.folder is None or not self.dirty or self.read_only:
            return None
        return write_autosave(self.project, self.folder)

    # -- project -------------------------------------------------------------------------
    def update_project(self, **fields: Any) -> dict[str, Any]:
        """Change top-level fields (name, output). Returns the old values."""
        allowed = {"name", "output"}
        if set(fields) - allowed:
            raise ValueError(f"cannot edit {set(fields) - allowed}")
        old = _apply(self.project, fields)
        self._touch()
        self.project_changed.emit(tuple(fields))
        return old

    # -- assets --------------------------------------------------------------------------
    def add_asset(self, asset: Asset) -> bool:
        """Register an imported asset; returns False if it was already known."""
        if asset.sha256 in self.project.assets:
            return False
        self.project.assets[asset.sha256] = asset
        self._touch()
        self.assets_changed.emit()
        return True

    def remove_asset(self, digest: str) -> Asset:
        """Forget an asset that nothing uses any more (undo of an import). The file stays in
        ``assets/``: it is content-addressed, so a redo finds it there."""
        asset = self.project.assets.get(digest)
        if asset is None:
            raise KeyError(digest)
        in_use = {r.asset for c in self.project.characters for r in c.references}
        in_use |= {s.start_asset for s in self.project.shots if s.start_asset}
        if asset.path in in_use:
            raise ValueError(f"asset {asset.path!r} is still used")
        del self.project.assets[digest]
        self._touch()
        self.assets_changed.emit()
        return asset

    # -- characters ----------------------------------------------------------------------
    def insert_character(self, character: Character, index: int | None = None) -> int:
        if self.project.character(character.id) is not None:
            raise ValueError(f"character {character.id} exists")
        self._check_assets(r.asset for r in character.references)
        chars = self.project.characters
        index = len(chars) if index is None else max(0, min(index, len(chars)))
        chars.insert(index, character)
        self._touch()
        self.structure_changed.emit("characters")
        return index

    def remove_character(self, char_id: str) -> tuple[Character, int, dict[str, dict[str, Any]]]:
        """Remove a character; shots that used it (as their character or in their cast) lose
        it. Returns (character, index, {shot_id: the shot's old fields}) for undo."""
        index = self.project.character_index(char_id)
        character = self.project.characters.pop(index)
        unlinked: dict[str, dict[str, Any]] = {}
        for shot in self.project.shots:
            old: dict[str, Any] = {}
            if shot.character_id == char_id:
                old["character_id"] = char_id
                shot.character_id = None
            if char_id in shot.cast:
                old["cast"] = list(shot.cast)
                shot.cast = [c for c in shot.cast if c != char_id]
            if old:
                unlinked[shot.id] = old
                self.shot_changed.emit(shot.id)
        self._touch()
        self.structure_changed.emit("characters")
        return character, index, unlinked

    def update_character(self, char_id: str, **fields: Any) -> dict[str, Any]:
        if "references" in fields or "id" in fields:
            raise ValueError("use the reference methods to change references")
        char = self._character(char_id)
        old = _apply(char, fields)
        self._touch()
        self.character_changed.emit(char_id)
        return old

    def insert_reference(self, char_id: str, ref: Reference, index: int | None = None) -> int:
        char = self._character(char_id)
        self._check_assets([ref.asset])
        if self.project.find_reference(ref.id) is not None:
            raise ValueError(f"reference {ref.id} exists")
        index = len(char.references) if index is None else max(0, min(index, len(char.references)))
        char.references.insert(index, ref)
        self._touch()
        self.character_changed.emit(char_id)
        return index

    def remove_reference(self, char_id: str, ref_id: str) -> tuple[Reference, int, list[str]]:
        """Remove a reference. Shots that started from it keep their start image but lose the
        link to the reference. Returns (reference, index, ids of those shots) for undo."""
        char = self._character(char_id)
        for i, r in enumerate(char.references):
            if r.id == ref_id:
                char.references.pop(i)
                unlinked = [s.id for s in self.project.shots if s.start_reference_id == ref_id]
                for shot_id in unlinked:
                    self._shot(shot_id).start_reference_id = None
                self._touch()
                self.character_changed.emit(char_id)
                for shot_id in unlinked:
                    self.shot_changed.emit(shot_id)
                return r, i, unlinked
        raise KeyError(ref_id)

    def update_reference(self, char_id: str, ref_id: str, **fields: Any) -> dict[str, Any]:
        char = self._character(char_id)
        ref = char.reference(ref_id)
        if ref is None:
            raise KeyError(ref_id)
        if "id" in fields:
            raise ValueError("a reference id cannot change")
        new = _validated(ref, fields)
        self._check_assets([new.asset])
        old = {k: getattr(ref, k) for k in fields}
        for k in fields:
            setattr(ref, k, getattr(new, k))
        self._touch()
        self.character_changed.emit(char_id)
        return old

    # -- shots ---------------------------------------------------------------------------
    def insert_shot(self, shot: Shot, index: int | None = None) -> int:
        if self.project.shot(shot.id) is not None:
            raise ValueError(f"shot {shot.id} exists")
        self._check_shot_links(shot)
        shots = self.project.shots
        index = len(shots) if index is None else max(0, min(index, len(shots)))
        shots.insert(index, shot)
        self._touch()
        self.structure_changed.emit("shots")
        return index

    def remove_shot(self, shot_id: str) -> tuple[Shot, int]:
        index = self.project.shot_index(shot_id)
        shot = self.project.shots.pop(index)
        self._touch()
        self.structure_changed.emit("shots")
        return shot, index

    def move_shot(self, shot_id: str, to_index: int) -> int:
        """Move a shot to ``to_index`` (in the list after removal). Returns the old index."""
        shots = self.project.shots
        index = self.project.shot_index(shot_id)
        to_index = max(0, min(to_index, len(shots) - 1))
        if to_index != index:
            shots.insert(to_index, shots.pop(index))
            self._touch()
            self.structure_changed.emit("shots")
        return index

    def update_shot(self, shot_id: str, **fields: Any) -> dict[str, Any]:
        if {"id", "takes"} & set(fields):
            raise ValueError("use the take methods to change takes")
        shot = self._shot(shot_id)
        new = _validated(shot, fields)
        self._check_shot_links(new)
        old = {k: getattr(shot, k) for k in fields}
        for k in fields:
            setattr(shot, k, getattr(new, k))
        self._touch()
        self.shot_changed.emit(shot_id)
        return old

    # -- takes ---------------------------------------------------------------------------
    def insert_take(self, shot_id: str, take: Take, index: int | None = None,
                    make_active: bool = False) -> int:
        shot = self._shot(shot_id)
        if any(s.take(take.id) is not None for s in self.project.shots):
            raise ValueError(f"take {take.id} exists")
        index = len(shot.takes) if index is None else max(0, min(index, len(shot.takes)))
        shot.takes.insert(index, take)
        if make_active or shot.active_take_id is None:
            shot.active_take_id = take.id
        self._touch()
        self.shot_changed.emit(shot_id)
        return index

    def remove_take(self, shot_id: str, take_id: str) -> tuple[Take, int, bool]:
        """Remove a take record (its files stay on disk so undo can bring it back)."""
        shot = self._shot(shot_id)
        for i, t in enumerate(shot.takes):
            if t.id == take_id:
                shot.takes.pop(i)
                was_active = shot.active_take_id == take_id
                if was_active:
                    shot.active_take_id = shot.takes[-1].id if shot.takes else None
                self._touch()
                self.shot_changed.emit(shot_id)
                return t, i, was_active
        raise KeyError(take_id)

    def set_active_take(self, shot_id: str, take_id: str | None) -> str | None:
        shot = self._shot(shot_id)
        if take_id is not None and shot.take(take_id) is None:
            raise KeyError(take_id)
        old = shot.active_take_id
        shot.active_take_id = take_id
        self._touch()
        self.shot_changed.emit(shot_id)
        return old

    def update_take(self, shot_id: str, take_id: str, **fields: Any) -> dict[str, Any]:
        shot = self._shot(shot_id)
        take = shot.take(take_id)
        if take is None:
            raise KeyError(take_id)
        old = _apply(take, fields)
        self._touch()
        self.shot_changed.emit(shot_id)
        return old

    # -- helpers -------------------------------------------------------------------------
    def _character(self, char_id: str) -> Character:
        char = self.project.character(char_id)
        if char is None:
            raise KeyError(char_id)
        return char

    def _shot(self, shot_id: str) -> Shot:
        shot = self.project.shot(shot_id)
        if shot is None:
            raise KeyError(shot_id)
        return shot

    def _check_assets(self, paths: Any) -> None:
        known = {a.path for a in self.project.assets.values()}
        for p in paths:
            if p not in known:
                raise ValueError(f"asset {p!r} is not in the project (import it first)")

    def _check_shot_links(self, shot: Shot) -> None:
        if shot.character_id is not None and self.project.character(shot.character_id) is None:
            raise ValueError(f"unknown character {shot.character_id!r}")
        for cid in shot.cast:
            if self.project.character(cid) is None:
                raise ValueError(f"unknown character {cid!r}")
        if len(set(shot.cast)) != len(shot.cast) or shot.character_id in shot.cast:
            raise ValueError("the shot names a character twice")
        if shot.start_asset is not None:
            self._check_assets([shot.start_asset])
