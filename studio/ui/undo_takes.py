"""Undoable take edits: make a take active, delete a take (its files stay on disk for undo).

Both follow the :class:`~studio.ui.undo.DocCommand` protocol: :func:`~studio.ui.undo.push`
applies them first, so an invalid edit raises and never reaches the undo stack.
"""

from __future__ import annotations

from studio.core.document import ProjectDocument
from studio.core.model import Take
from studio.ui.undo import DocCommand, quoted


def _take_words(document: ProjectDocument, shot_id: str, take_id: str | None) -> tuple[str, str]:
    """("take 2", "'Introduction'"): the take as the takes list numbers it, and its shot."""
    shot = document.project.shot(shot_id)
    if shot is None:
        return "a take", "a deleted shot"
    number = next((i for i, t in enumerate(shot.takes, 1) if t.id == take_id), None)
    return (f"take {number}" if number else "a take"), quoted(shot.title)


class SetActiveTakeCommand(DocCommand):
    def __init__(self, document: ProjectDocument, shot_id: str, take_id: str | None) -> None:
        take, shot = _take_words(document, shot_id, take_id)
        super().__init__(document, f"Make {take} of {shot} active" if take_id is not None
                         else f"Clear the active take of {shot}")
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
        take, shot = _take_words(document, shot_id, take_id)
        super().__init__(document, f"Delete {take} of {shot}")
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
