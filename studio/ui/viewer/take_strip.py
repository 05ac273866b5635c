"""Every take of the shot as a card: thumbnail, identity badge, seed, backend; which one is
active, which is being viewed (A) and compared (B), and which is best by identity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (QHBoxLayout, QMenu, QScrollArea, QSizePolicy, QWidget)

from studio.ui.viewer.badges import Badge, ThumbnailCache, paint_badge, take_badge

if TYPE_CHECKING:
    from collections.abc import Callable

    from studio.core.document import ProjectDocument
    from studio.core.model import Shot, Take

# Landscape cards (picture left, text right): the strip is one short row, so the viewer keeps
# its height for the picture on a 768-px screen.
CARD_W, CARD_H = 210, 64
THUMB_W = 100


class TakeCard(QWidget):
    clicked = Signal(str)
    context = Signal(str, object)  # take id, global QPoint

    def __init__(self, take: "Take", number: int, badge: Badge, parent: QWidget | None = None):
        super().__init__(parent)
        self.take, self.number, self.badge = take, number, badge
        self.active = self.viewing = self.comparing = self.best = False
        self.thumb = None
        self.setFixedSize(CARD_W, CARD_H)
        self.setToolTip(f"Take {number} · seed {take.seed} · {take.backend}"
                        + (f" · {take.model}" if take.model else "") + "\n" + badge.tooltip
                        + "\nClick to view, right-click for more")
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(CARD_W, CARD_H)

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r = QRectF(self.rect()).adjusted(2, 2, -2, -2)
        p.setPen(QPen(QColor(255, 200, 60) if self.viewing else
                      QColor(110, 170, 255) if self.comparing else QColor(60, 62, 68),
                      3 if (self.viewing or self.comparing) else 1))
        p.setBrush(QColor(40, 42, 46) if not self.best else QColor(40, 58, 44))
        p.drawRoundedRect(r, 6, 6)
        thumb_r = QRectF(r.x() + 4, r.y() + 4, THUMB_W, r.height() - 8)
        if self.thumb is not None:
            img = self.thumb
            s = min(thumb_r.width() / img.width(), thumb_r.height() / img.height())
            w, h = img.width() * s, img.height() * s
            p.drawImage(QRectF(thumb_r.x() + (thumb_r.width() - w) / 2,
                               thumb_r.y() + (thumb_r.height() - h) / 2, w, h), img)
        else:
            p.fillRect(thumb_r, QColor(28, 28, 30))
        paint_badge(p, QRectF(thumb_r.x() + 2, thumb_r.bottom() - 18, 58, 16), self.badge)
        if self.best:
            pill = QRectF(thumb_r.right() - 49, thumb_r.y() + 2, 47, 16)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 170))
            p.drawRoundedRect(pill, 8, 8)
            p.setPen(QColor(255, 220, 90))
            p.drawText(pill, Qt.AlignmentFlag.AlignCenter, "★ best")
        text_x = thumb_r.right() + 6
        text_w = r.right() - 4 - text_x
        fm = p.fontMetrics()
        line = max(14.0, (r.height() - 8) / 3)

        def text(row: int, s: str, colour: QColor) -> None:
            p.setPen(colour)
            p.drawText(QRectF(text_x, r.y() + 4 + row * line, text_w, line),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(s, Qt.TextElideMode.ElideRight, int(text_w)))

        tag = " · A" if self.viewing else " · B" if self.comparing else ""
        text(0, f"Take {self.number}{tag}", QColor(230, 230, 230))
        text(1, "● active" if self.active else self.take.backend,
             QColor(230, 230, 230) if self.active else QColor(160, 160, 165))
        text(2, f"seed {self.take.seed}", QColor(160, 160, 165))
        p.end()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.take.id)
        elif event.button() == Qt.MouseButton.RightButton:
            self.context.emit(self.take.id, event.globalPosition().toPoint())


class TakeStrip(QScrollArea):
    view_requested = Signal(str)
    compare_requested = Signal(str)  # "" = stop comparing
    make_active_requested = Signal(str)

    def __init__(self, thumbnails: ThumbnailCache, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.setWidgetResizable(True)
        self.setFixedHeight(CARD_H + 22)  # until _fit_height knows whether a scroll bar shows
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._inner = QWidget()
        self._layout = QHBoxLayout(self._inner)
        self._layout.setContentsMargins(4, 2, 4, 2)
        self._layout.setSpacing(6)
        self._layout.addStretch(1)
        self.setWidget(self._inner)
        self.cards: dict[str, TakeCard] = {}
        self._videos: dict[str, str] = {}
        self.thumbnails.ready.connect(self._on_thumb)

    def _fit_height(self) -> None:
        """As tall as a card, plus the scroll bar only while the cards do not fit: the viewer
        keeps those pixels for the picture on a short screen."""
        m = self._layout.contentsMargins()
        n = len(self.cards)
        needed = m.left() + m.right() + n * CARD_W + max(0, n - 1) * self._layout.spacing()
        frame = 2 * self.frameWidth()
        bar = self.horizontalScrollBar().sizeHint().height() if needed > self.width() - frame \
            else 0
        height = CARD_H + m.top() + m.bottom() + frame + bar
        if self.height() != height or self.minimumHeight() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_height()

    def set_takes(self, document: "ProjectDocument | None", shot: "Shot | None",
                  viewing: str | None, comparing: str | None, best: str | None,
                  stale: "Callable[[str], tuple[str, ...]] | None" = None) -> None:
        """``stale(take_id)`` says why a take's analysis no longer holds (shown grey)."""
        for card in self.cards.values():
            # Stay parented until Qt deletes it: a parentless widget would be owned by its
            # Python wrapper as well as by deleteLater.
            self._layout.removeWidget(card)
            card.hide()
            card.deleteLater()
        self.cards.clear()
        self._videos.clear()
        if document is None or shot is None:
            self._fit_height()
            return
        for n, take in enumerate(shot.takes, start=1):
            reasons = stale(take.id) if stale is not None else ()
            card = TakeCard(take, n, take_badge(document, take, reasons))
            card.active = take.id == shot.active_take_id
            card.viewing = take.id == viewing
            card.comparing = take.id == comparing
            card.best = take.id == best and len(shot.takes) > 1
            card.clicked.connect(self.view_requested)
            card.context.connect(self._menu)
            self._layout.insertWidget(self._layout.count() - 1, card)
            self.cards[take.id] = card
            if document.folder is not None:
                try:
                    path = document.path_of(take.video)
                except Exception:
                    continue
                self._videos[take.id] = str(path)
                card.thumb = self.thumbnails.get(path)
        self._fit_height()

    def _on_thumb(self, path: str) -> None:
        from pathlib import Path

        for tid, p in self._videos.items():
            if p == path and tid in self.cards:
                self.cards[tid].thumb = self.thumbnails.get(Path(p))
                self.cards[tid].update()

    def _menu(self, take_id: str, pos: Any) -> None:
        card = self.cards.get(take_id)
        if card is None:
            return
        menu = QMenu(self)
        menu.addAction("View", lambda: self.view_requested.emit(take_id))
        act = menu.addAction("Make active take", lambda: self.make_active_requested.emit(take_id))
        act.setEnabled(not card.active)
        if card.comparing:
            menu.addAction("Stop comparing", lambda: self.compare_requested.emit(""))
        else:
            cmp = menu.addAction("Compare with viewed take (B)",
                                 lambda: self.compare_requested.emit(take_id))
            cmp.setEnabled(not card.viewing)
        menu.popup(pos)
