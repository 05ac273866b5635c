"""Undoable take edits: make a take active, delete a take (its files stay on disk for undo)."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from studio.core.document import ProjectDocument
from studio.core.model import Take


class SetActiveTakeCommand(QUndoCommand):
    def __init__(self, document: ProjectDocument, shot_id: str, take_id: str | None) -> None:
        super().__init__("Make take active")
        self.document = document
        self.shot_id = shot_id
        self.take_id = take_id
        self.old: str | None = None

    def redo(self) -> None:
        self.old = self.document.set_active_take(self.shot_id, self.take_id)

    def undo(self) -> None:
        self.document.set_active_take(self.shot_id, self.old)


class DeleteTakeCommand(QUndoCommand):
    """Remove a take from its shot. The MP4 and sidecar are kept, so undo (or a later
    recovery) brings the take back intact."""

    def __init__(self, document: ProjectDocument, shot_id: str, take_id: str) -> None:
        super().__init__("Delete take")
        self.document = document
        self.shot_id = shot_id
        self.take_id = take_id
        self._removed: tuple[Take, int, bool] | None = None
        self._old_active: str | None = None

    def redo(self) -> None:
        shot = self.document.project.shot(self.shot_id)
        self._old_active = shot.active_take_id if shot is not None else None
        self._removed = self.document.remove_take(self.shot_id, self.take_id)

    def undo(self) -> None:
        if self._removed is None:
            return
        take, index, was_active = self._removed
        self.document.insert_take(self.shot_id, take, index, make_active=was_active)
        if self._old_active is not None:
            shot = self.document.project.shot(self.shot_id)
            if shot is not None and shot.active_take_id != self._old_active:
                self.document.set_active_take(self.shot_id, self._old_active)
