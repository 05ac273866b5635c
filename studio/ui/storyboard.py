"""The storyboard timeline: shot cards in order, left to right.

Each card shows the start-image thumbnail, number, title, duration, the character's colour, and
slots for a badge and a take count that later features fill through :meth:`Storyboard.
set_badge_provider` / :meth:`Storyboard.set_thumbnail_provider`. Cards drag to reorder (a move
command); image files or bible references dropped on a card set its start image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QPersistentModelIndex, QPoint,
                            QRect, QSize, Qt, Signal)
from PySide6.QtGui import (QAction, QColor, QDrag, QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent,
                           QDropEvent, QFont, QPainter, QPaintEvent, QPen, QPixmap, QPixmapCache)
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListView, QMenu,
                               QSizePolicy, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QToolButton,
                               QVBoxLayout, QWidget)

from studio.core.errors import StudioError
from studio.core.model import Shot
from studio.identity.colours import NONE_COLOUR
from studio.ui import drops
from studio.ui.undo import (AddShotCommand, MoveShotCommand, RemoveShotCommand, duplicate_of,
                                push, quoted)

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

ID_ROLE = Qt.UserRole + 1
CARD_W, CARD_H = 196, 170
THUMB_W, THUMB_H = CARD_W - 16, 100
THUMB_SIDE = 256  # thumbnail request size (longest side)


@dataclass
class Badge:
    """A small coloured label in a card's top-right corner (e.g. an identity score)."""

    text: str
    color: str = NONE_COLOUR  # a badge that names no colour claims no verdict: grey
    tooltip: str = ""


def format_duration(seconds: float) -> str:
    """``75.5`` -> ``1:15.5``: minutes and seconds with one decimal."""
    total = max(0.0, seconds)
    minutes = int(total // 60)
    return f"{minutes}:{total - minutes * 60:04.1f}"


class ShotListModel(QAbstractListModel):
    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win

    @property
    def shots(self) -> list[Shot]:
        return self.win.document.project.shots

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.shots)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.shots):
            return None
        shot = self.shots[index.row()]
        if role == Qt.DisplayRole:
            return shot.title
        if role == ID_ROLE:
            return shot.id
        if role == Qt.ToolTipRole:
            w, h = shot.size
            tip = (f"{shot.title}\n{shot.duration_s:g} s at {shot.fps} fps, {w}×{h}\n"
                   f"{shot.prompt[:200]}")
            board = getattr(self.win, "storyboard", None)
            badge = board.badge_for(shot) if board is not None else None
            return tip + (f"\n{badge.tooltip}" if badge is not None and badge.tooltip else "")
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid():
            return base | Qt.ItemIsDragEnabled | Qt.ItemIsDropEnabled
        return base | Qt.ItemIsDropEnabled

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def shot_updated(self, shot_id: str) -> None:
        for row, s in enumerate(self.shots):
            if s.id == shot_id:
                idx = self.index(row)
                self.dataChanged.emit(idx, idx)
                return

    def row_of(self, shot_id: str | None) -> int:
        for row, s in enumerate(self.shots):
            if s.id == shot_id:
                return row
        return -1


class ShotCardDelegate(QStyledItemDelegate):
    def __init__(self, board: "Storyboard") -> None:
        super().__init__(board)
        self.board = board

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(CARD_W, CARD_H)

    def paint(self, p: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        shots = self.board.win.document.project.shots
        if index.row() >= len(shots):
            return
        shot = shots[index.row()]
        r = option.rect.adjusted(4, 4, -4, -4)
        selected = bool(option.state & QStyle.State_Selected)
        p.save()
        p.setRenderHint(QPainter.Antialiasing)
        p.setPen(QPen(QColor("#4c9be8") if selected else QColor("#34373e"), 2 if selected else 1))
        p.setBrush(QColor("#2a2d33") if selected else QColor("#24262b"))
        p.drawRoundedRect(r, 6, 6)

        char = self.board.win.document.project.character(shot.character_id)
        if char is not None:  # the character's colour tag along the card's top
            p.setPen(Qt.NoPen)
            p.setBrush(QColor(char.color))
            p.drawRoundedRect(QRect(r.left() + 1, r.top() + 1, r.width() - 2, 5), 2, 2)

        thumb_rect = QRect(r.left() + 8, r.top() + 10, r.width() - 16, THUMB_H)
        p.setPen(Qt.NoPen)
        p.setBrush(QColor("#17181b"))
        p.drawRoundedRect(thumb_rect, 4, 4)
        pix = self.board.thumbnail_for(shot)
        if pix is not None and not pix.isNull():
            # smooth scaling every paint is wasteful with many cards: cache by pixmap and size
            key = f"card:{pix.cacheKey()}:{thumb_rect.width()}x{thumb_rect.height()}"
            scaled = QPixmapCache.find(key)
            if scaled is None:
                scaled = pix.scaled(thumb_rect.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
                QPixmapCache.insert(key, scaled)
            x = thumb_rect.left() + (thumb_rect.width() - scaled.width()) // 2
            y = thumb_rect.top() + (thumb_rect.height() - scaled.height()) // 2
            p.drawPixmap(x, y, scaled)
        else:
            p.setPen(QColor("#6a6f78"))
            p.drawText(thumb_rect, Qt.AlignCenter | Qt.TextWordWrap,
                       "Drop a portrait\nor a reference" if shot.start_asset is None else "…")

        number = f"{index.row() + 1}"
        p.setPen(QColor("#ffffff"))
        num_rect = QRect(thumb_rect.left() + 4, thumb_rect.top() + 4, 22, 18)
        p.setBrush(QColor(0, 0, 0, 150))
        p.setPen(Qt.NoPen)
        p.drawRoundedRect(num_rect, 4, 4)
        p.setPen(QColor("#ffffff"))
        p.drawText(num_rect, Qt.AlignCenter, number)

        badge = self.board.badge_for(shot)
        if badge is not None:
            f = QFont(option.font)
            f.setPointSizeF(max(6.0, f.pointSizeF() * 0.85))
            f.setBold(True)
            p.setFont(f)
            bw = p.fontMetrics().horizontalAdvance(badge.text) + 10
            b_rect = QRect(thumb_rect.right() - bw - 4, thumb_rect.top() + 4, bw, 18)
            p.setPen(Qt.NoPen)
            p.setBrush(QColor(badge.color))
            p.drawRoundedRect(b_rect, 4, 4)
            p.setPen(QColor("#101010"))
            p.drawText(b_rect, Qt.AlignCenter, badge.text)
            p.setFont(option.font)

        text_top = thumb_rect.bottom() + 6
        title_font = QFont(option.font)
        title_font.setBold(True)
        p.setFont(title_font)
        p.setPen(QColor("#dcdfe4"))
        fm = p.fontMetrics()
        title = fm.elidedText(shot.title, Qt.ElideRight, r.width() - 16)
        p.drawText(QRect(r.left() + 8, text_top, r.width() - 16, fm.height()),
                   Qt.AlignLeft | Qt.AlignVCenter, title)
        p.setFont(option.font)
        fm = p.fontMetrics()
        info_rect = QRect(r.left() + 8, text_top + fm.height() + 2, r.width() - 16, fm.height())
        p.setPen(QColor("#8b919c"))
        left = f"{shot.duration_s:g} s · {char.name if char else 'no character'}"
        n = len(shot.takes)
        room = info_rect.width() - (fm.horizontalAdvance("99 takes") + 8 if n else 0)
        p.drawText(info_rect, Qt.AlignLeft | Qt.AlignVCenter,
                   fm.elidedText(left, Qt.ElideRight, room))
        if n:
            p.drawText(info_rect, Qt.AlignRight | Qt.AlignVCenter, f"{n} take{'s' if n != 1 else ''}")
        p.restore()


class ShotListView(QListView):
    """Horizontal card strip with our own drag and drop (reorder, files, references)."""

    files_dropped = Signal(list, str, int)  # (paths, shot id or "", insert row)
    reference_dropped = Signal(str, str)  # (reference id, shot id)
    shot_moved = Signal(str, int)  # (shot id, target row)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFlow(QListView.LeftToRight)
        self.setWrapping(False)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollPerPixel)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDrop)
        self.setDropIndicatorShown(True)
        self.setMinimumHeight(CARD_H + 24)
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        self._marker = -1  # insertion row shown while a card is dragged

    def startDrag(self, supported: Qt.DropAction) -> None:
        idx = self.currentIndex()
        if not idx.isValid():
            return
        drag = QDrag(self)
        drag.setMimeData(drops.shot_mime(idx.data(ID_ROLE)))
        pix = QPixmap(self.visualRect(idx).size())
        pix.fill(Qt.transparent)
        self.viewport().render(pix, QPoint(), self.visualRect(idx))
        drag.setPixmap(pix.scaledToWidth(120, Qt.SmoothTransformation))
        drag.exec(Qt.MoveAction)

    def _accepts(self, event: QDragMoveEvent | QDragEnterEvent) -> bool:
        m = event.mimeData()
        return bool(drops.shot_id(m) or drops.reference_id(m) or drops.file_paths(m))

    def _accept(self, event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> None:
        if drops.shot_id(event.mimeData()):
            event.setDropAction(Qt.MoveAction)
            event.accept()
        else:
            drops.accept_copy(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._accepts(event):
            self._accept(event)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._accepts(event):
            self._accept(event)
            pos = event.position().toPoint()
            # a card being moved shows where it will land; files/references target a card
            marker = self.drop_row(pos) if drops.shot_id(event.mimeData()) else -1
            if marker != self._marker:
                self._marker = marker
                self.viewport().update()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._clear_marker()
        super().dragLeaveEvent(event)

    def _clear_marker(self) -> None:
        if self._marker != -1:
            self._marker = -1
            self.viewport().update()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        n = self.model().rowCount()
        if n == 0:
            p = QPainter(self.viewport())
            p.setPen(QColor("#6a6f78"))
            p.drawText(self.viewport().rect(), Qt.AlignCenter,
                       "No shots yet: click + Shot, or drop a portrait here to start one")
            p.end()
        if self._marker < 0:
            return
        if n == 0:
            return
        if self._marker < n:
            x = self.visualRect(self.model().index(self._marker, 0)).left() + 1
        else:
            x = self.visualRect(self.model().index(n - 1, 0)).right() - 1
        p = QPainter(self.viewport())
        p.fillRect(QRect(x - 2, 4, 4, self.viewport().height() - 8), QColor("#4c9be8"))
        p.end()

    def drop_row(self, pos: QPoint) -> int:
        """Insertion row for a drop at ``pos``: before a card when on its left half."""
        idx = self.indexAt(pos)
        n = self.model().rowCount()
        if not idx.isValid():
            return n
        rect = self.visualRect(idx)
        return idx.row() + (1 if pos.x() > rect.center().x() else 0)

    def dropEvent(self, event: QDropEvent) -> None:
        self._clear_marker()
        m = event.mimeData()
        pos = event.position().toPoint()
        idx = self.indexAt(pos)
        target = idx.data(ID_ROLE) if idx.isValid() else ""
        if (sid := drops.shot_id(m)) is not None:
            event.setDropAction(Qt.MoveAction)
            event.accept()
            self.shot_moved.emit(sid, self.drop_row(pos))
        elif (rid := drops.reference_id(m)) is not None:
            if drops.accept_copy(event) and target:
                self.reference_dropped.emit(rid, target)
        elif (paths := drops.file_paths(m)) and drops.accept_copy(event):
            self.files_dropped.emit(paths, target, self.drop_row(pos))
        else:
            event.ignore()


class Storyboard(QWidget):
    shot_selected = Signal(str)  # "" when none
    total_changed = Signal(str)

    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self._badge_provider: Callable[[Shot], Badge | None] | None = None
        self._thumb_provider: Callable[[Shot], QPixmap | None] | None = None
        self._card_actions: list[QAction] = []  # add_card_actions (generation)
        self.last_card_menu: QMenu | None = None
        self.model = ShotListModel(win)
        self.view = ShotListView(self)
        self.view.setObjectName("storyboardView")
        self.view.setModel(self.model)
        self.view.setItemDelegate(ShotCardDelegate(self))

        self.add_btn = self._tool("+ Shot", "Add a shot after the selected one (Ctrl+Shift+N)",
                                  self.add_shot)
        self.dup_btn = self._tool("Duplicate", "Duplicate the selected shot (Ctrl+D)",
                                  self.duplicate_shot)
        self.del_btn = self._tool("Delete", "Delete the selected shot", self.delete_shot)
        self.left_btn = self._tool("◀", "Move the selected shot earlier", lambda: self.nudge(-1))
        self.right_btn = self._tool("▶", "Move the selected shot later", lambda: self.nudge(1))
        self.total_label = QLabel(self)
        self.total_label.setObjectName("total")

        bar = QHBoxLayout()
        bar.setContentsMargins(6, 4, 6, 0)
        for b in (self.add_btn, self.dup_btn, self.del_btn, self.left_btn, self.right_btn):
            bar.addWidget(b)
        bar.addStretch(1)
        hint = QLabel("Drag cards to reorder · drop portraits or references on a card", self)
        hint.setObjectName("hint")
        # A hint, not a control: it may be cut off rather than widen the window's minimum size.
        hint.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        hint.setMinimumWidth(0)
        bar.addWidget(hint)
        bar.addSpacing(12)
        bar.addWidget(self.total_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(bar)
        lay.addWidget(self.view, 1)

        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.customContextMenuRequested.connect(self._card_menu)
        self.view.shot_moved.connect(self.move_shot)
        self.view.files_dropped.connect(self._on_files)
        self.view.reference_dropped.connect(self._on_reference)
        win.events.structure_changed.connect(self._on_structure)
        win.events.shot_changed.connect(self._on_shot_changed)
        win.events.character_changed.connect(lambda _cid: self.view.viewport().update())
        win.thumbnails.ready.connect(lambda *_: self.view.viewport().update())
        self.reload()

    def _tool(self, text: str, tip: str, slot: Callable[[], None]) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    # -- extension points for later features ----------------------------------------------------
    def set_badge_provider(self, fn: Callable[[Shot], Badge | None] | None) -> None:
        """``fn(shot)`` returns the card's badge (or None); called on every paint, keep it cheap."""
        self._badge_provider = fn
        self.view.viewport().update()

    def set_thumbnail_provider(self, fn: Callable[[Shot], QPixmap | None] | None) -> None:
        """``fn(shot)`` returns the card's picture (e.g. the active take's frame) or None to fall
        back to the start image."""
        self._thumb_provider = fn
        self.view.viewport().update()

    def refresh(self) -> None:
        self.view.viewport().update()

    def badge_for(self, shot: Shot) -> Badge | None:
        return self._badge_provider(shot) if self._badge_provider else None

    def thumbnail_for(self, shot: Shot) -> QPixmap | None:
        if self._thumb_provider is not None:
            pix = self._thumb_provider(shot)
            if pix is not None:
                return pix
        if shot.start_asset is None:
            return None
        try:
            path = self.win.document.path_of(shot.start_asset)
        except StudioError:
            return None
        return self.win.thumbnails.get(path, THUMB_SIDE)

    # -- selection ------------------------------------------------------------------------------
    def selected_shot_id(self) -> str | None:
        idx = self.view.currentIndex()
        return idx.data(ID_ROLE) if idx.isValid() else None

    def select_shot(self, shot_id: str | None) -> None:
        row = self.model.row_of(shot_id)
        if row < 0:
            self.view.setCurrentIndex(QModelIndex())
            self.view.clearSelection()
            self.shot_selected.emit("")
            return
        idx = self.model.index(row)
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)

    def _on_current(self, current: QModelIndex, _prev: QModelIndex) -> None:
        self._sync_buttons()
        self.shot_selected.emit(current.data(ID_ROLE) if current.isValid() else "")

    def _sync_buttons(self) -> None:
        row = self.view.currentIndex().row()
        has = row >= 0
        n = self.model.rowCount()
        self.dup_btn.setEnabled(has)
        self.del_btn.setEnabled(has)
        self.left_btn.setEnabled(has and row > 0)
        self.right_btn.setEnabled(has and row < n - 1)

    # -- document events ------------------------------------------------------------------------
    def reload(self) -> None:
        keep = self.selected_shot_id()
        self.view.selectionModel().blockSignals(True)
        self.model.reset()
        self.view.selectionModel().blockSignals(False)
        shots = self.win.document.project.shots
        if keep and self.model.row_of(keep) >= 0:
            target: str | None = keep
        else:
            target = None
        if target:
            self.view.selectionModel().blockSignals(True)
            self.select_shot(target)
            self.view.selectionModel().blockSignals(False)
            self._sync_buttons()
        else:
            self.select_shot(shots[0].id if shots else None)
        self._update_total()

    def _on_structure(self, kind: str) -> None:
        if kind == "shots":
            before = self.selected_shot_id()
            self.reload()
            if self.selected_shot_id() != before:
                self.shot_selected.emit(self.selected_shot_id() or "")

    def _on_shot_changed(self, shot_id: str) -> None:
        self.model.shot_updated(shot_id)
        self._update_total()

    def _update_total(self) -> None:
        project = self.win.document.project
        n = len(project.shots)
        text = f"Total {format_duration(project.total_duration_s)} · {n} shot{'s' if n != 1 else ''}"
        if text != self.total_label.text():
            self.total_label.setText(text)
            self.total_changed.emit(text)

    # -- actions --------------------------------------------------------------------------------
    def _run(self, cmd: Any) -> bool:
        try:
            push(self.win.undo_stack, cmd)
            return True
        except (StudioError, ValueError, KeyError) as exc:
            self.win.show_error(exc)
            return False

    def new_shot_character(self) -> str | None:
        """Whom a new shot is of: the character selected in the bible, else the selected
        shot's, else the first one."""
        project = self.win.document.project
        current = project.shot(self.selected_shot_id())
        for cid in (self.win.bible.current_character_id(),
                    current.character_id if current is not None else None):
            if project.character(cid) is not None:
                return cid
        return project.characters[0].id if project.characters else None

    def add_shot(self) -> None:
        """A new shot after the selected one (at the end when none is selected), titled after
        its place ("Shot 3" as the third), of the character selected in the bible."""
        doc = self.win.document
        current = doc.project.shot(self.selected_shot_id())
        row = self.model.row_of(current.id) + 1 if current else len(doc.project.shots)
        fields: dict[str, Any] = {"title": drops.shot_title_at(doc.project, row),
                                  "character_id": self.new_shot_character()}
        if current is not None:  # a new shot continues the selected one's technical setup
            fields.update(fps=current.fps, resolution=current.resolution, aspect=current.aspect,
                          backend=current.backend, model=current.model)
        shot = Shot.model_validate(fields)
        if self._run(AddShotCommand(doc, shot, row)):
            self.select_shot(shot.id)

    def duplicate_shot(self) -> None:
        doc = self.win.document
        shot = doc.project.shot(self.selected_shot_id())
        if shot is None:
            return
        copy = duplicate_of(shot)
        if self._run(AddShotCommand(doc, copy, self.model.row_of(shot.id) + 1,
                                    text=f"Duplicate shot {quoted(shot.title)}")):
            self.select_shot(copy.id)

    def delete_shot(self) -> None:
        sid = self.selected_shot_id()
        if sid:
            self._run(RemoveShotCommand(self.win.document, sid))

    def move_shot(self, shot_id: str, insert_row: int) -> None:
        """Move to an insertion row (0..n, as a drop indicator shows it)."""
        doc = self.win.document
        try:
            old = doc.project.shot_index(shot_id)
        except KeyError:
            return
        to_index = insert_row - 1 if insert_row > old else insert_row
        to_index = max(0, min(to_index, len(doc.project.shots) - 1))
        if to_index != old and self._run(MoveShotCommand(doc, shot_id, to_index)):
            self.select_shot(shot_id)

    def nudge(self, delta: int) -> None:
        sid = self.selected_shot_id()
        if not sid:
            return
        row = self.model.row_of(sid)
        self.move_shot(sid, row + delta + (1 if delta > 0 else 0))

    def _card_menu(self, pos: QPoint) -> None:
        idx = self.view.indexAt(pos)
        if idx.isValid():
            self.view.setCurrentIndex(idx)
        menu = QMenu(self)
        menu.addAction("Add shot", self.add_shot)
        if idx.isValid():
            menu.addAction("Duplicate shot", self.duplicate_shot)
            menu.addSeparator()
            menu.addAction("Move earlier", lambda: self.nudge(-1)).setEnabled(idx.row() > 0)
            menu.addAction("Move later", lambda: self.nudge(1)).setEnabled(
                idx.row() < self.model.rowCount() - 1)
            menu.addSeparator()
            menu.addAction("Delete shot", self.delete_shot)
            if self._card_actions:
                menu.addSeparator()
                for action in self._card_actions:
                    menu.addAction(action)
        self.last_card_menu = menu
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def add_card_actions(self, actions: list[QAction]) -> None:
        """Offer window actions (Generate, Re-roll…) in a shot card's context menu; they act on
        the selected shot, which the menu selects first."""
        self._card_actions += list(actions)

    def _on_files(self, paths: list[Path], target: str, row: int) -> None:
        if target:
            drops.import_then(self.win, paths,
                              lambda a, s: drops.start_image_from_files(self.win, target, a, s))
        else:
            def make(assets: list, sources: list) -> Any:
                cmd = drops.new_shot_from_files(self.win, assets, sources, row)
                return cmd
            drops.import_then(self.win, paths, make)

    def _on_reference(self, ref_id: str, target: str) -> None:
        try:
            cmd = drops.start_image_from_reference(self.win, target, ref_id)
        except StudioError as exc:
            self.win.show_error(exc)
            return
        if cmd is not None and self._run(cmd):  # None: the user cancelled
            self.select_shot(target)
