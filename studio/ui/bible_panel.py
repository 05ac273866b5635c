"""The character bible: characters (name, colour tag, reference count) and the selected
character's reference portraits, tagged by angle.

Drop image files on a character to add references, on empty space to create a character; drag a
reference out onto a storyboard shot to make it the shot's start image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (QAction, QColor, QDrag, QDragEnterEvent, QDragMoveEvent, QDropEvent,
                           QFont, QIcon, QKeySequence, QPainter, QPixmap)
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QLabel,
                               QListView, QListWidget, QListWidgetItem, QMenu, QToolButton,
                               QVBoxLayout, QWidget)

from studio.core.model import ANGLE_LABELS, Angle, Character
from studio.core.tasks import Cancelled, CancelledFn, ProgressFn
from studio.ui import drops
from studio.ui.layouts import ElidedLabel
from studio.ui.tasks import ChildWorker, run_task, task_pool
from studio.ui.undo import (AddCharacterCommand, EditReferenceCommand, RemoveCharacterCommand,
                                RemoveReferenceCommand, push)

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

ID_ROLE = Qt.UserRole + 1
VERDICT_ROLE = Qt.UserRole + 2  # a reference tile's quality level: good/warning/bad/unknown
PATH_ROLE = Qt.UserRole + 3
ANGLE_ROLE = Qt.UserRole + 4
REF_THUMB = 160  # pixels of the longest side of a reference thumbnail in the bible
CHAR_ICON = 44
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif);;All files (*)"

# A reference tile's badge: glyph, colour, words (the same words as the selected reference's
# badge under the grid).
VERDICT_STYLE = {"good": ("✓", "#3c8d40", "Good reference"),
                 "warning": ("⚠", "#b8860b", "Check reference"),
                 "bad": ("✗", "#b03030", "Unusable reference"),
                 "unknown": ("?", "#707070", "Could not be checked")}
Verdict = dict[str, Any]  # {"level": str, "reasons": [str]}

class ReferenceChecks(QObject):
    """Quality verdicts of bible images (:func:`studio.identity.checks.reference_quality`: one
    face, its size, sharpness, light, background, the angle tag), made one at a time off the UI
    thread — face detection takes 0.1–2 s an image — and remembered by file and angle.

    Tiles ask with :meth:`want` (checked after a short pause, so opening a project does not load
    the face detector while the window first paints); an import asks with :meth:`check_now` and
    hears about the whole batch at once. ``ready(path, angle)`` follows every verdict."""

    ready = Signal(str, str)

    def __init__(self, parent: QObject | None = None, delay_ms: int = 800) -> None:
        super().__init__(parent)
        self.pool = task_pool(self, 1)  # the other core stays with the UI and generation
        # dlib holds the GIL for a whole detection: checks run in a child process
        self._checker = ChildWorker()
        self.destroyed.connect(lambda *_a, c=self._checker: c.close())
        self._verdicts: dict[tuple[str, str], Verdict] = {}
        self._running: set[tuple[str, str]] = set()
        self._waiting: list[tuple[str, str]] = []
        self._batches: list[tuple[set[tuple[str, str]], list[tuple[str, str]],
                                  Callable[[list[tuple[str, str, Verdict]]], None]]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._start_waiting)

    @staticmethod
    def _key(path: Path | str, angle: Angle | str) -> tuple[str, str]:
        return str(path), Angle(angle).value

    def verdict(self, path: Path | str, angle: Angle | str) -> Verdict | None:
        return self._verdicts.get(self._key(path, angle))

    def want(self, path: Path | str, angle: Angle | str) -> Verdict | None:
        """The verdict if known; otherwise it is checked soon and ``ready`` follows."""
        key = self._key(path, angle)
        if key in self._verdicts:
            return self._verdicts[key]
        if key not in self._running and key not in self._waiting:
            self._waiting.append(key)
            self._timer.start()
        return None

    def recheck_failed(self) -> int:
        """Check again the images whose check itself failed (verdict "unknown"), e.g. before
        the face landmark model was chosen; ``ready`` follows each. Returns how many."""
        failed = [k for k, v in self._verdicts.items() if v.get("level") == "unknown"]
        for key in failed:
            del self._verdicts[key]
            self._start(key)
        return len(failed)

    def check_now(self, items: list[tuple[Path | str, Angle | str]],
                  on_done: Callable[[list[tuple[str, str, Verdict]]], None]) -> None:
        """Check ``items`` (path, angle) now; ``on_done([(path, angle, verdict)])`` once all are
        known, in the same order."""
        keys = [self._key(p, a) for p, a in items]
        pending = {k for k in keys if k not in self._verdicts}
        if not pending:
            on_done([(k[0], k[1], self._verdicts[k]) for k in keys])
            return
        self._batches.append((pending, keys, on_done))
        for key in keys:
            if key in pending:
                self._start(key)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def pending(self) -> int:
        """Checks asked for and not answered yet (waiting for the pause, or running)."""
        return len(self._waiting) + len(self._running)

    def _start_waiting(self) -> None:
        for key in list(self._waiting):
            self._start(key)

    def _start(self, key: tuple[str, str]) -> None:
        if key in self._waiting:
            self._waiting.remove(key)
        if key in self._running or key in self._verdicts:
            return
        self._running.add(key)
        path, angle = key

        checker = self._checker

        def work(_progress: ProgressFn, cancelled: CancelledFn) -> Verdict:
            if cancelled():
                raise Cancelled()
            verdict = checker.call("studio.ui.child_work:reference_verdict",
                                   {"path": path, "angle": angle}, cancelled)
            return {"level": str(verdict["level"]),
                    "reasons": [str(r) for r in verdict["reasons"]]}

        run_task(work, parent=self, pool=self.pool, name="reference-check",
                 on_done=lambda verdict, k=key: self._done(k, verdict),
                 # an unreadable image is unusable; a checker that fails says so, no verdict
                 on_error=lambda message, k=key: self._done(k, {"level": "unknown",
                                                                "reasons": [message]}),
                 on_cancelled=lambda k=key: self._running.discard(k))

    def _done(self, key: tuple[str, str], verdict: Verdict) -> None:
        self._running.discard(key)
        self._verdicts[key] = verdict
        self.ready.emit(*key)
        for batch in list(self._batches):
            pending, keys, on_done = batch
            pending.discard(key)
            if not pending:
                self._batches.remove(batch)
                on_done([(k[0], k[1], self._verdicts.get(k, {"level": "unknown",
                                                             "reasons": ["not checked"]}))
                         for k in keys])


def verdict_words(verdict: Verdict) -> str:
    """"✗ Unusable reference: no face found"."""
    glyph, _colour, words = VERDICT_STYLE.get(verdict["level"], VERDICT_STYLE["unknown"])
    reasons = "; ".join(verdict.get("reasons") or [])
    return f"{glyph} {words}" + (f": {reasons}" if reasons else "")


def _with_badge(pix: QPixmap, level: str | None) -> QPixmap:
    """The thumbnail with its verdict in the top-right corner (pending: no badge yet)."""
    if level is None or pix.isNull():
        return pix
    glyph, colour, _words = VERDICT_STYLE.get(level, VERDICT_STYLE["unknown"])
    out = QPixmap(pix)
    p = QPainter(out)
    p.setRenderHint(QPainter.Antialiasing)
    side = max(14, min(out.width(), out.height()) // 5)
    rect = QRect(out.width() - side - 3, 3, side, side)
    p.setPen(QColor("#101010"))
    p.setBrush(QColor(colour))
    p.drawRoundedRect(rect, 4, 4)
    f = QFont()
    f.setBold(True)
    f.setPixelSize(int(side * 0.7))
    p.setFont(f)
    p.setPen(QColor("#ffffff"))
    p.drawText(rect, Qt.AlignCenter, glyph)
    p.end()
    return out


def _placeholder(side: int, colour: str, text: str = "") -> QPixmap:
    pix = QPixmap(side, side)
    pix.fill(QColor("#2c2f35"))
    p = QPainter(pix)
    p.fillRect(0, 0, 5, side, QColor(colour))
    if text:
        p.setPen(QColor("#8b919c"))
        p.drawText(pix.rect(), Qt.AlignCenter, text)
    p.end()
    return pix


def _character_icon(thumb: QPixmap | None, colour: str) -> QIcon:
    side = CHAR_ICON
    pix = QPixmap(side, side)
    pix.fill(QColor("#2c2f35"))
    p = QPainter(pix)
    p.setRenderHint(QPainter.SmoothPixmapTransform)
    if thumb is not None and not thumb.isNull():
        scaled = thumb.scaled(side, side, Qt.KeepAspectRatioByExpanding, Qt.SmoothTransformation)
        p.drawPixmap((side - scaled.width()) // 2, (side - scaled.height()) // 2, scaled)
    p.fillRect(0, 0, 6, side, QColor(colour))
    p.end()
    return QIcon(pix)


class _DropList(QListWidget):
    """A list that accepts image files (and optionally bible references) from drags."""

    files_dropped = Signal(list, str)  # (paths, item id or "" for empty space)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDropIndicatorShown(True)

    def _item_id_at(self, pos: QPoint) -> str:
        item = self.itemAt(pos)
        return item.data(ID_ROLE) if item is not None else ""

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if drops.file_paths(event.mimeData()):
            drops.accept_copy(event)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if drops.file_paths(event.mimeData()):
            drops.accept_copy(event)
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = drops.file_paths(event.mimeData())
        if not paths or not drops.accept_copy(event):
            event.ignore()
            return
        self.files_dropped.emit(paths, self._item_id_at(event.position().toPoint()))


class _ReferenceGrid(_DropList):
    """References as thumbnails; dragging one out carries its id (REFERENCE_MIME)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.IconMode)
        self.setIconSize(QSize(REF_THUMB - 40, REF_THUMB - 40))
        self.setGridSize(QSize(REF_THUMB - 20, REF_THUMB))
        self.setResizeMode(QListView.Adjust)
        self.setMovement(QListView.Static)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDrop)
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        # setViewMode() resets drop acceptance; file drops on the grid must keep working
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)

    def startDrag(self, supported: Qt.DropAction) -> None:
        item = self.currentItem()
        if item is None:
            return
        drag = QDrag(self)
        drag.setMimeData(drops.reference_mime(item.data(ID_ROLE)))
        icon = item.icon()
        if not icon.isNull():
            drag.setPixmap(icon.pixmap(64, 64))
        drag.exec(Qt.CopyAction)


class BiblePanel(QWidget):
    character_selected = Signal(str)  # "" when none
    rename_requested = Signal()  # double-click on a character: edit its name in the inspector
    reference_selected = Signal(str, str)  # (character id, reference id); "" when none

    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self._ref_items: dict[str, list[QListWidgetItem]] = {}  # asset abs path -> items
        self.checks = ReferenceChecks(self)
        self.checks.ready.connect(self._on_verdict)

        self.characters = _DropList(self)
        self.characters.setObjectName("bibleCharacters")
        self.characters.setIconSize(QSize(CHAR_ICON, CHAR_ICON))
        self.characters.setSpacing(2)
        self.characters.setToolTip("Drop portraits on a character to add references, "
                                   "or on empty space to create a character")
        self.references = _ReferenceGrid(self)
        self.references.setObjectName("bibleReferences")

        self.add_char_btn = self._tool("+", "Add a character", self.add_character)
        self.remove_char_btn = self._tool("−", "Remove the selected character", self.remove_character)
        self.add_refs_btn = self._tool("Add images…", "Import reference portraits for the "
                                       "selected character", self.add_images)
        self.angle_combo = QComboBox(self)
        self.angle_combo.setToolTip("Angle of the selected reference")
        for angle in Angle:
            self.angle_combo.addItem(ANGLE_LABELS[angle], angle.value)
        self.remove_ref_btn = self._tool("Remove", "Remove the selected reference",
                                         self.remove_reference)
        # Elided: a long character name must not widen the dock (and with it the window).
        self.refs_label = ElidedLabel("References", self, min_chars=8)
        self.refs_label.setObjectName("hint")
        self.empty_hint = QLabel("Drop portraits here to start a character bible.", self)
        self.empty_hint.setObjectName("hint")
        self.empty_hint.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("Characters", self))
        top.addStretch(1)
        top.addWidget(self.add_char_btn)
        top.addWidget(self.remove_char_btn)
        mid = QHBoxLayout()
        mid.addWidget(self.refs_label, 1)
        mid.addWidget(self.add_refs_btn)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Angle", self))
        bottom.addWidget(self.angle_combo, 1)
        bottom.addWidget(self.remove_ref_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(self.characters, 1)
        lay.addWidget(self.empty_hint)
        lay.addLayout(mid)
        lay.addWidget(self.references, 3)
        lay.addLayout(bottom)
        self._layout = lay

        # Delete removes the selected reference / character (undoable), only while that list has
        # focus so the key still edits text elsewhere.
        for view, slot in ((self.references, self.remove_reference),
                           (self.characters, self.remove_character)):
            act = QAction("Remove", view)
            act.setShortcut(QKeySequence.Delete)
            act.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            act.triggered.connect(slot)
            view.addAction(act)
        self.characters.setContextMenuPolicy(Qt.CustomContextMenu)
        self.characters.customContextMenuRequested.connect(self._character_menu)
        self.characters.currentItemChanged.connect(self._on_current_character)
        self.characters.itemDoubleClicked.connect(lambda _i: self.rename_requested.emit())
        self.characters.files_dropped.connect(self._on_files_on_characters)
        self.references.files_dropped.connect(self._on_files_on_references)
        self.references.currentItemChanged.connect(lambda *_: self._on_current_reference())
        self.references.customContextMenuRequested.connect(self._reference_menu)
        self.angle_combo.activated.connect(self._on_angle_chosen)

        ev = win.events
        ev.structure_changed.connect(self._on_structure)
        ev.character_changed.connect(self._on_character_changed)
        ev.assets_changed.connect(self._refresh_refs)
        win.thumbnails.ready.connect(self._on_thumb)
        self.reload()

    def _tool(self, text: str, tip: str, slot: object) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    # -- state ----------------------------------------------------------------------------------
    def current_character_id(self) -> str | None:
        item = self.characters.currentItem()
        return item.data(ID_ROLE) if item is not None else None

    def current_reference_id(self) -> str | None:
        item = self.references.currentItem()
        return item.data(ID_ROLE) if item is not None else None

    def select_character(self, char_id: str | None) -> None:
        for i in range(self.characters.count()):
            item = self.characters.item(i)
            if item.data(ID_ROLE) == char_id:
                self.characters.setCurrentItem(item)
                return
        self.characters.setCurrentItem(None)

    def character_item(self, char_id: str) -> QListWidgetItem | None:
        for i in range(self.characters.count()):
            if self.characters.item(i).data(ID_ROLE) == char_id:
                return self.characters.item(i)
        return None

    # -- building -------------------------------------------------------------------------------
    def reload(self) -> None:
        keep = self.current_character_id()
        self.characters.blockSignals(True)
        self.characters.clear()
        for char in self.win.document.project.characters:
            item = QListWidgetItem()
            item.setData(ID_ROLE, char.id)
            self._fill_character_item(item, char)
            self.characters.addItem(item)
        self.characters.blockSignals(False)
        chars = self.win.document.project.characters
        self.empty_hint.setVisible(not chars)
        if keep and self.win.document.project.character(keep) is not None:
            self.select_character(keep)
        elif chars:
            self.select_character(chars[0].id)
        self._on_current_character()

    def _thumb_path(self, rel: str) -> Path | None:
        try:
            return self.win.document.path_of(rel)
        except Exception:
            return None

    def _fill_character_item(self, item: QListWidgetItem, char: Character) -> None:
        n = len(char.references)
        item.setText(f"{char.name}\n{n} reference{'s' if n != 1 else ''}")
        thumb = None
        if char.references:
            path = self._thumb_path(char.references[0].asset)
            thumb = self.win.thumbnails.get(path, REF_THUMB) if path else None
        item.setIcon(_character_icon(thumb, char.color))
        item.setToolTip(char.notes or char.name)

    def _refresh_refs(self) -> None:
        self.references.blockSignals(True)
        keep = self.current_reference_id()
        self.references.clear()
        self._ref_items.clear()
        char = self.win.document.project.character(self.current_character_id())
        self.refs_label.setText(f"References of {char.name}" if char else "References")
        if char is not None:
            for ref in char.references:
                item = QListWidgetItem(ANGLE_LABELS[ref.angle])
                item.setData(ID_ROLE, ref.id)
                path = self._thumb_path(ref.asset)
                item.setData(PATH_ROLE, str(path) if path is not None else "")
                item.setData(ANGLE_ROLE, ref.angle.value)
                self._set_ref_icon(item, path, char.color)
                if path is not None:
                    self._ref_items.setdefault(str(path), []).append(item)
                self.references.addItem(item)
                if ref.id == keep or (keep is None and self.references.count() == 1):
                    self.references.setCurrentItem(item)
        self.references.blockSignals(False)
        self._on_current_reference()

    def _set_ref_icon(self, item: QListWidgetItem, path: Path | None, colour: str) -> None:
        """The tile's thumbnail with its quality badge, and the verdict in its tooltip: every
        tile shows whether its image can serve as a reference, selected or not."""
        pix = self.win.thumbnails.get(path, REF_THUMB) if path else None
        if pix is None:
            err = self.win.thumbnails.error(path, REF_THUMB) if path else "missing"
            pix = _placeholder(REF_THUMB - 40, colour, "missing" if err else "…")
        verdict = self.checks.want(path, item.data(ANGLE_ROLE)) if path is not None else None
        item.setData(VERDICT_ROLE, verdict["level"] if verdict else None)
        item.setIcon(QIcon(_with_badge(pix, verdict["level"] if verdict else None)))
        ref = self.win.document.project.find_reference(item.data(ID_ROLE) or "")
        asset = self.win.document.project.asset_by_path(ref[1].asset) if ref else None
        tip = f"{asset.original_name} — {asset.width}×{asset.height}" if asset else (
            ref[1].asset if ref else "")
        state = verdict_words(verdict) if verdict else "Checking the image…"
        item.setToolTip(f"{tip}\n{state}\nDrag onto a shot to make it the start image")
        item.setData(Qt.AccessibleTextRole, f"{item.text()}: {state}")

    def _on_verdict(self, path: str, angle: str) -> None:
        char = self.win.document.project.character(self.current_character_id())
        for item in self._ref_items.get(path, []):
            if item.data(ANGLE_ROLE) == angle and char is not None:
                self._set_ref_icon(item, Path(path), char.color)

    # -- extension points ------------------------------------------------------------------------
    def add_reference_widget(self, widget: QWidget) -> None:
        """Place a widget under the reference controls (e.g. a quality badge for the selected
        reference; follow ``reference_selected`` and ``current_reference_path()``)."""
        self._layout.addWidget(widget)

    def current_reference_path(self) -> Path | None:
        """The image file of the selected reference, or None."""
        char = self.win.document.project.character(self.current_character_id())
        ref = char.reference(self.current_reference_id() or "") if char else None
        return self._thumb_path(ref.asset) if ref is not None else None

    def _on_current_reference(self) -> None:
        self._sync_ref_controls()
        self.reference_selected.emit(self.current_character_id() or "",
                                     self.current_reference_id() or "")

    def _sync_ref_controls(self) -> None:
        char = self.win.document.project.character(self.current_character_id())
        ref = char.reference(self.current_reference_id() or "") if char else None
        self.angle_combo.setEnabled(ref is not None)
        self.remove_ref_btn.setEnabled(ref is not None)
        self.remove_char_btn.setEnabled(char is not None)
        if ref is not None:
            self.angle_combo.setCurrentIndex(self.angle_combo.findData(ref.angle.value))

    # -- document events ------------------------------------------------------------------------
    def _on_structure(self, kind: str) -> None:
        if kind == "characters":
            self.reload()

    def _on_character_changed(self, char_id: str) -> None:
        item = self.character_item(char_id)
        char = self.win.document.project.character(char_id)
        if item is not None and char is not None:
            self._fill_character_item(item, char)
        if char_id == self.current_character_id():
            self._refresh_refs()

    def _on_thumb(self, path: str, side: int) -> None:
        if side != REF_THUMB:
            return
        current = self.win.document.project.character(self.current_character_id())
        for item in self._ref_items.get(path, []):
            if current is not None:
                self._set_ref_icon(item, Path(path), current.color)
        for char in self.win.document.project.characters:
            if char.references and str(self._thumb_path(char.references[0].asset)) == path:
                item = self.character_item(char.id)
                if item is not None:
                    self._fill_character_item(item, char)

    def _on_current_character(self, *_: object) -> None:
        self._refresh_refs()
        self.character_selected.emit(self.current_character_id() or "")

    # -- actions --------------------------------------------------------------------------------
    def _run(self, cmd: object) -> bool:
        try:
            push(self.win.undo_stack, cmd)  # type: ignore[arg-type]
            return True
        except (ValueError, KeyError) as exc:
            self.win.show_error(exc)
            return False

    def add_character(self) -> None:
        doc = self.win.document
        char = Character(name=f"Character {len(doc.project.characters) + 1}",
                         color=drops.next_color(doc.project.characters))
        if self._run(AddCharacterCommand(doc, char)):
            self.select_character(char.id)

    def remove_character(self) -> None:
        cid = self.current_character_id()
        if cid:
            self._run(RemoveCharacterCommand(self.win.document, cid))

    def remove_reference(self) -> None:
        cid, rid = self.current_character_id(), self.current_reference_id()
        if cid and rid:
            self._run(RemoveReferenceCommand(self.win.document, cid, rid))

    def set_angle(self, ref_id: str, angle: Angle) -> None:
        cid = self.current_character_id()
        char = self.win.document.project.character(cid)
        ref = char.reference(ref_id) if char else None
        if cid and ref is not None and ref.angle != angle:
            self._run(EditReferenceCommand(self.win.document, cid, ref_id, angle=angle))

    def _on_angle_chosen(self, index: int) -> None:
        rid = self.current_reference_id()
        if rid:
            self.set_angle(rid, Angle(self.angle_combo.itemData(index)))

    def add_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add reference images", "", IMAGE_FILTER)
        if files:
            self._on_files_on_characters([Path(f) for f in files], self.current_character_id() or "")

    def _on_files_on_characters(self, paths: list[Path], char_id: str) -> None:
        if char_id:
            drops.import_then(self.win, paths,
                              lambda assets, _src: drops.add_to_character(self.win, char_id, assets))
        else:
            def make(assets: list, sources: list) -> object:
                cmd = drops.new_character_with(self.win, assets, sources)
                return cmd
            drops.import_then(self.win, paths, make)

    def _on_files_on_references(self, paths: list[Path], _ref_id: str) -> None:
        self._on_files_on_characters(paths, self.current_character_id() or "")

    def _character_menu(self, pos: QPoint) -> None:
        item = self.characters.itemAt(pos)
        menu = QMenu(self)
        menu.addAction("Add character", self.add_character)
        if item is not None:
            self.characters.setCurrentItem(item)
            menu.addAction("Add reference images…", self.add_images)
            menu.addSeparator()
            menu.addAction("Remove character", self.remove_character)
        menu.popup(self.characters.viewport().mapToGlobal(pos))

    def _reference_menu(self, pos: QPoint) -> None:
        item = self.references.itemAt(pos)
        if item is None:
            return
        self.references.setCurrentItem(item)
        rid = item.data(ID_ROLE)
        char = self.win.document.project.character(self.current_character_id())
        ref = char.reference(rid) if char else None
        if ref is None:
            return
        menu = QMenu(self)
        angles = menu.addMenu("Angle")
        for angle in Angle:
            act = QAction(ANGLE_LABELS[angle], angles)
            act.setCheckable(True)
            act.setChecked(angle == ref.angle)
            act.triggered.connect(lambda _=False, a=angle: self.set_angle(rid, a))
            angles.addAction(act)
        sid = self.win.selected_shot_id()
        use = menu.addAction("Use as start image of the selected shot")
        use.setEnabled(sid is not None)
        use.triggered.connect(lambda: self._use_as_start(sid, rid))
        menu.addSeparator()
        menu.addAction("Remove reference", self.remove_reference)
        menu.popup(self.references.viewport().mapToGlobal(pos))

    def _use_as_start(self, sid: str | None, rid: str) -> None:
        if sid:
            try:
                cmd = drops.start_image_from_reference(self.win, sid, rid)
                if cmd is not None:  # None: the user cancelled the character question
                    self._run(cmd)
            except Exception as exc:
                self.win.show_error(exc)
