"""Making a take active as one undoable step.

Uses the engine helper's ``studio.ui.take_commands.SetActiveTakeCommand`` when it is there;
otherwise a minimal command on the DocCommand/push protocol of studio/ui/commands.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoStack

from studio.ui.commands import DocCommand, push

if TYPE_CHECKING:
    from studio.core.document import ProjectDocument


class SetActiveTakeCommand(DocCommand):
    def __init__(self, doc: "ProjectDocument", shot_id: str, take_id: str | None) -> None:
        super().__init__(doc, "Make take active")
        self.shot_id, self.take_id = shot_id, take_id
        self._old: str | None = None

    def _apply(self) -> None:
        self._old = self.doc.set_active_take(self.shot_id, self.take_id)

    def _revert(self) -> None:
        self.doc.set_active_take(self.shot_id, self._old)


def set_active_take(doc: "ProjectDocument", stack: QUndoStack | None, shot_id: str,
                    take_id: str) -> None:
    shot = doc.project.shot(shot_id)
    if shot is None or shot.take(take_id) is None:
        raise KeyError(take_id)
    if shot.active_take_id == take_id:
        return
    if stack is None:
        doc.set_active_take(shot_id, take_id)
        return
    try:  # the engine helper's command (a plain QUndoCommand: redo runs on push)
        from studio.ui.take_commands import SetActiveTakeCommand as EngineCommand
    except ImportError:
        push(stack, SetActiveTakeCommand(doc, shot_id, take_id))
        return
    stack.push(EngineCommand(doc, shot_id, take_id))
