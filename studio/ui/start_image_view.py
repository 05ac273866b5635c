"""The centre of the window: shows the selected shot's start image scaled to fit, with a
caption. The take viewer (studio/ui/viewer/) replaces or extends this widget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.core.errors import StudioError

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

VIEW_SIDE = 1280  # longest side of the decoded preview (huge originals are never shown 1:1)


class StartImageView(QWidget):
    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self.shot_id: str | None = None
        self.setObjectName("viewerArea")
        self.setMinimumSize(320, 200)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        win.events.shot_changed.connect(self._on_shot_changed)
        win.events.structure_changed.connect(lambda _k: self.update())
        win.events.character_changed.connect(lambda _c: self.update())
        win.thumbnails.ready.connect(self._on_thumb)
        win.thumbnails.failed.connect(self._on_thumb)

    def show_shot(self, shot_id: str | None) -> None:
        self.shot_id = shot_id or None
        self.update()

    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id == self.shot_id:
            self.update()

    def _on_thumb(self, *_: object) -> None:
        self.update()

    def _image_path(self) -> str | None:
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or shot.start_asset is None:
            return None
        try:
            return str(self.win.document.path_of(shot.start_asset))
        except StudioError:
            return None

    def current_pixmap(self) -> QPixmap | None:
        path = self._image_path()
        return self.win.thumbnails.get(path, VIEW_SIDE) if path else None

    def caption(self) -> str:
        doc = self.win.document
        shot = doc.project.shot(self.shot_id)
        if shot is None:
            return "No shot selected"
        w, h = shot.size
        char = doc.project.character(shot.character_id)
        parts = [f"Shot {doc.project.shot_index(shot.id) + 1} — {shot.title}",
                 f"{shot.duration_s:g} s", f"{w}×{h}", char.name if char else "no character"]
        return "  ·  ".join(parts)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#111214"))
        caption_h = 30
        area = self.rect().adjusted(16, 16, -16, -16 - caption_h)
        shot = self.win.document.project.shot(self.shot_id)
        path = self._image_path()
        pix = self.win.thumbnails.get(path, VIEW_SIDE) if path else None
        if pix is not None and not pix.isNull() and area.width() > 0 and area.height() > 0:
            scaled = pix.scaled(area.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            x = area.left() + (area.width() - scaled.width()) // 2
            y = area.top() + (area.height() - scaled.height()) // 2
            p.drawPixmap(x, y, scaled)
        else:
            p.setPen(QColor("#6a6f78"))
            if shot is None:
                msg = "Select or add a shot in the storyboard"
            elif path is None:
                msg = "This shot has no start image.\nDrop a portrait or a bible reference on its card."
            else:
                err = self.win.thumbnails.error(path, VIEW_SIDE)
                msg = f"Cannot show the start image:\n{err}" if err else "Loading…"
            p.drawText(area, Qt.AlignCenter | Qt.TextWordWrap, msg)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.05)
        p.setFont(f)
        p.setPen(QColor("#dcdfe4"))
        cap = QRect(16, self.height() - caption_h - 8, self.width() - 32, caption_h)
        p.drawText(cap, Qt.AlignCenter, p.fontMetrics().elidedText(self.caption(), Qt.ElideRight,
                                                                     cap.width()))
        p.end()
