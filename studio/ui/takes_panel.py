"""Every take of the selected shot: seed, backend, draft flag; make one active, delete, re-roll."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QUndoStack
from PySide6.QtWidgets import (QGridLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.ui.undo import push
from studio.ui.undo_takes import DeleteTakeCommand, SetActiveTakeCommand

if TYPE_CHECKING:
    from studio.core.model import Shot, Take
    from studio.ui.generation import GenerationController

BACKEND_SHORT = {"preview": "Preview", "diffusers": "diffusers"}


def take_label(index: int, take: "Take", active: bool) -> str:
    bits = [f"Take {index + 1}", f"seed {take.seed}", BACKEND_SHORT.get(take.backend, take.backend),
            f"{take.width}×{take.height}", f"{take.frames} f"]
    if take.draft:
        bits.append("DRAFT")
    if take.identity_mean is not None:
        bits.append(f"identity {take.identity_mean:.2f}")
    return ("★ " if active else "   ") + " · ".join(bits)


class TakesPanel(QWidget):
    def __init__(self, document: ProjectDocument, undo_stack: QUndoStack,
                 controller: "GenerationController | None" = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("takes_panel")
        self.undo_stack = undo_stack
        self.controller = controller
        self.document: ProjectDocument | None = None
        self.shot_id: str | None = None
        self.title = QLabel("No shot selected")
        self.title.setWordWrap(True)
        self.list = QListWidget()
        self.list.setObjectName("takes_list")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.Monospace)
        self.list.setFont(mono)
        self.list.itemDoubleClicked.connect(lambda _i: self.make_active())
        self.list.currentRowChanged.connect(lambda _r: self._update_buttons())
        self.active_button = QPushButton("Make Active")
        self.delete_button = QPushButton("Delete")
        self.reroll_button = QPushButton("Re-roll")
        self.reroll4_button = QPushButton("Re-roll ×4")
        self.active_button.clicked.connect(lambda: self.make_active())
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.reroll_button.clicked.connect(lambda: self._reroll(1))
        self.reroll4_button.clicked.connect(lambda: self._reroll(4))
        self.reroll_button.setToolTip("A new take with a new seed and the same settings")
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #e07070")
        self.error.hide()
        # Two by two, so the panel fits a side column (~220 px) instead of widening the window.
        row = QGridLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for i, b in enumerate((self.active_button, self.delete_button, self.reroll_button,
                               self.reroll4_button)):
            row.addWidget(b, i // 2, i % 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        lay.addWidget(self.error)
        self.set_document(document)

    # -- binding ----------------------------------------------------------------------------
    def set_document(self, document: ProjectDocument) -> None:
        if self.document is not None:
            try:
                self.document.shot_changed.disconnect(self._on_shot_changed)
                self.document.structure_changed.disconnect(self._on_structure)
            except ValueError:
                pass
        self.document = document
        document.shot_changed.connect(self._on_shot_changed)
        document.structure_changed.connect(self._on_structure)
        self.shot_id = None
        self.refresh()

    def set_shot(self, shot_id: str | None) -> None:
        self.shot_id = shot_id
        self.refresh()

    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id == self.shot_id:
            self.refresh()

    def _on_structure(self, kind: str) -> None:
        if kind == "shots":
            self.refresh()

    def _shot(self) -> "Shot | None":
        if self.document is None or not self.shot_id:
            return None
        return self.document.project.shot(self.shot_id)

    def refresh(self) -> None:
        shot = self._shot()
        current = self.selected_take_id()
        self.list.clear()
        if shot is None:
            self.title.setText("No shot selected")
            self._update_buttons()
            return
        n = len(shot.takes)
        self.title.setText(f"“{shot.title}”: {n} take{'s' if n != 1 else ''}"
                           + (" — the Preview backend makes CPU animatics" if any(
                               t.backend == "preview" for t in shot.takes) else ""))
        for i, take in enumerate(shot.takes):
            item = QListWidgetItem(take_label(i, take, take.id == shot.active_take_id))
            item.setData(Qt.UserRole, take.id)
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(take.created_at)) \
                if take.created_at else "unknown"
            item.setToolTip(f"{take.video}\ncreated {when}\nbackend {take.backend}"
                            + (f", model {take.model}" if take.model else "")
                            + ("\ndraft: low resolution / few steps" if take.draft else ""))
            self.list.addItem(item)
            if take.id == current:
                self.list.setCurrentItem(item)
        self._update_buttons()

    def take_ids(self) -> list[str]:
        return [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]

    def selected_take_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item is not None else None

    def select_take(self, take_id: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.UserRole) == take_id:
                self.list.setCurrentRow(i)
                return

    def _update_buttons(self) -> None:
        has_shot = self._shot() is not None
        has_take = self.selected_take_id() is not None
        self.active_button.setEnabled(has_take)
        self.delete_button.setEnabled(has_take)
        self.reroll_button.setEnabled(has_shot and self.controller is not None)
        self.reroll4_button.setEnabled(has_shot and self.controller is not None)

    # -- actions ----------------------------------------------------------------------------
    def _show_error(self, exc: Any) -> None:
        self.error.setText(str(exc))
        self.error.show()

    def make_active(self, take_id: str | None = None) -> None:
        take_id = take_id or self.selected_take_id()
        shot = self._shot()
        if shot is None or take_id is None or self.document is None:
            return
        if shot.active_take_id == take_id:
            return
        push(self.undo_stack, SetActiveTakeCommand(self.document, shot.id, take_id))

    def delete_selected(self, take_id: str | None = None) -> None:
        take_id = take_id or self.selected_take_id()
        shot = self._shot()
        if shot is None or take_id is None or self.document is None:
            return
        push(self.undo_stack, DeleteTakeCommand(self.document, shot.id, take_id))

    def _reroll(self, count: int) -> None:
        if self.controller is None or not self.shot_id:
            return
        self.error.hide()
        try:
            self.controller.reroll(self.shot_id, count)
        except StudioError as exc:
            self._show_error(exc)
