"""The undoable framing edit: which part of the start image fills a shot's frame.

One drag or one burst of wheel turns in the framing editor is one gesture: every step of it is
pushed (so the storyboard, the centre view and the sidecar of the next take see the frame move
live), and the steps of one gesture merge into a single undo step.
"""

from __future__ import annotations

import itertools

from PySide6.QtGui import QUndoCommand

from studio.core.document import ProjectDocument
from studio.core.model import Framing
from studio.ui.undo import DocCommand

_MERGE_FRAMING = 1701  # QUndoCommand.id of framing edits (undo.py uses 1001–1003)
_gestures = itertools.count(1)


def new_gesture() -> int:
    """A fresh gesture id: the framing edits pushed with it merge into one undo step."""
    return next(_gestures)


class SetFramingCommand(DocCommand):
    """Set (or, with ``framing=None``, clear: automatic) the framing of one shot."""

    def __init__(self, doc: ProjectDocument, shot_id: str, framing: Framing | None,
                 gesture: int | None = None) -> None:
        shot = doc.project.shot(shot_id)
        title = shot.title if shot is not None else shot_id
        text = (f"Reset framing of '{title}' to automatic" if framing is None
                else f"Change framing of '{title}'")
        super().__init__(doc, text)
        self.shot_id = shot_id
        self.gesture = gesture
        self.new = framing
        self.old: Framing | None = None
        self._have_old = False

    def _apply(self) -> None:
        old = self.doc.update_shot(self.shot_id, framing=self.new)["framing"]
        if not self._have_old:
            self.old, self._have_old = old, True

    def _revert(self) -> None:
        self.doc.update_shot(self.shot_id, framing=self.old)

    def id(self) -> int:
        return _MERGE_FRAMING if self.gesture is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetFramingCommand) or other.shot_id != self.shot_id \
                or other.gesture is None or other.gesture != self.gesture:
            return False
        self.new = other.new
        self.setText(other.text())
        self.setObsolete(self.new == self.old)  # dragged back to where it started: no step
        return True
