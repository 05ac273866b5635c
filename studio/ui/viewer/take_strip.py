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

CARD_W, CARD_H = 150, 118


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
        thumb_r = QRectF(r.x() + 5, r.y() + 5, r.width() - 10, 68)
        if self.thumb is not None:
            img = self.thumb
            s = min(thumb_r.width() / img.width(), thumb_r.height() / img.height())
            w, h = img.width() * s, img.height() * s
            p.drawImage(QRectF(thumb_r.x() + (thumb_r.width() - w) / 2, thumb_r.y(), w, h), img)
        else:
            p.fillRect(thumb_r, QColor(28, 28, 30))
        paint_badge(p, QRectF(thumb_r.x() + 3, thumb_r.bottom() - 19, 58, 16), self.badge)
        if self.best:
            pill = QRectF(thumb_r.right() - 50, thumb_r.y() + 3, 47, 16)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 170))
            p.drawRoundedRect(pill, 8, 8)
            p.setPen(QColor(255, 220, 90))
            p.drawText(pill, Qt.AlignmentFlag.AlignCenter, "★ best")
        p.setPen(QColor(230, 230, 230))
        tag = "  ● active" if self.active else ""
        tag += "  A" if self.viewing else "  B" if self.comparing else ""
        p.drawText(QRectF(r.x() + 6, thumb_r.bottom() + 3, r.width() - 12, 16),
                   Qt.AlignmentFlag.AlignLeft, f"Take {self.number}{tag}")
        p.setPen(QColor(160, 160, 165))
        p.drawText(QRectF(r.x() + 6, thumb_r.bottom() + 21, r.width() - 12, 16),
                   Qt.AlignmentFlag.AlignLeft,
                   p.fontMetrics().elidedText(f"seed {self.take.seed} · {self.take.backend}",
                                              Qt.TextElideMode.ElideRight, int(r.width() - 12)))
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
        self.setFixedHeight(CARD_H + 22)
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
