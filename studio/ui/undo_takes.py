"""Undoable take edits: make a take active, delete a take (its files stay on disk for undo).

Both follow the :class:`~studio.ui.undo.DocCommand` protocol: :func:`~studio.ui.undo.push`
applies them first, so an invalid edit raises and never reaches the undo stack.
"""

from __future__ import annotations

from studio.core.document import ProjectDocument
from studio.core.model import Take
from studio.ui.undo import DocCommand


class SetActiveTakeCommand(DocCommand):
    def __init__(self, document: ProjectDocument, shot_id: str, take_id: str | None) -> None:
        super().__init__(document, "Make take active")
        self.shot_id = shot_id
        self.take_id = take_id
        self.old: str | None = None

    def _apply(self) -> None:
        self.old = self.doc.set_active_take(self.shot_id, self.take_id)

    def _revert(self) -> None:
        self.doc.set_active_take(self.shot_id, self.old)


class DeleteTakeCommand(DocCommand):
    """Remove a take from its shot. The MP4 and sidecar are kept, so undo (or a later
    recovery) brings the take back intact."""

    def __init__(self, document: ProjectDocument, shot_id: str, take_id: str) -> None:
        super().__init__(document, "Delete take")
        self.shot_id = shot_id
        self.take_id = take_id
        self._removed: tuple[Take, int, bool] | None = None
        self._old_active: str | None = None

    def _apply(self) -> None:
        shot = self.doc.project.shot(self.shot_id)
        self._old_active = shot.active_take_id if shot is not None else None
        self._removed = self.doc.remove_take(self.shot_id, self.take_id)

    def _revert(self) -> None:
        if self._removed is None:
            return
        take, index, was_active = self._removed
        self.doc.insert_take(self.shot_id, take, index, make_active=was_active)
        if self._old_active is not None:
            shot = self.doc.project.shot(self.shot_id)
            if shot is not None and shot.active_take_id != self._old_active:
                self.doc.set_active_take(self.shot_id, self._old_active)
