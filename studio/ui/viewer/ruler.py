"""The time ruler: frame ticks, playhead, loop in/out, flagged ranges; drag to scrub.

Every frame owns an equal cell of the ruler's width, so a press or drag at x lands on exactly
``floor((x - margin) / cell)``: scrubbing is frame-accurate at any zoom.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtCore import QPointF
from PySide6.QtWidgets import QSizePolicy, QWidget

MARGIN = 8.0


class TimeRuler(QWidget):
    scrubbed = Signal(int)  # a frame chosen by press/drag
    scrub_started = Signal()
    scrub_finished = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.frames = 1
        self.fps = 16.0
        self.current = 0
        self.loop_in: int | None = None
        self.loop_out: int | None = None
        self.ranges: list[tuple[int, int]] = []  # flagged, inclusive
        self.show_ranges = True
        self._dragging = False

    # -- model ---------------------------------------------------------------------------
    def set_take(self, frames: int, fps: float) -> None:
        self.frames, self.fps = max(1, frames), fps if fps > 0 else 16.0
        self.current = min(self.current, self.frames - 1)
        self.update()

    def set_current(self, index: int) -> None:
        if index != self.current:
            self.current = index
            self.update()

    def set_loop(self, loop_in: int | None, loop_out: int | None) -> None:
        self.loop_in, self.loop_out = loop_in, loop_out
        self.update()

    def set_ranges(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = list(ranges)
        self.update()

    # -- geometry ------------------------------------------------------------------------
    def cell(self) -> float:
        return max(1e-6, (self.width() - 2 * MARGIN) / self.frames)

    def x_of(self, index: float) -> float:
        """Left edge of frame ``index``'s cell."""
        return MARGIN + index * self.cell()

    def frame_at(self, x: float) -> int:
        return max(0, min(self.frames - 1, math.floor((x - MARGIN) / self.cell())))

    # -- painting ------------------------------------------------------------------------
    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        h = self.height()
        p.fillRect(self.rect(), QColor(32, 33, 36))
        cell = self.cell()
        track = QRectF(MARGIN, 14, self.width() - 2 * MARGIN, h - 18)
        p.fillRect(track, QColor(48, 50, 54))
        if self.loop_in is not None or self.loop_out is not None:
            a = self.loop_in if self.loop_in is not None else 0
            b = self.loop_out if self.loop_out is not None else self.frames - 1
            p.fillRect(QRectF(self.x_of(a), track.y(), (b - a + 1) * cell, track.height()),
                       QColor(70, 110, 170, 120))
        if self.show_ranges:
            for s, e in self.ranges:
                p.fillRect(QRectF(self.x_of(s), track.y(), (e - s + 1) * cell, track.height()),
                           QColor(220, 60, 50, 170))
        # ticks: one per frame when there is room, else per second
        p.setPen(QPen(QColor(120, 122, 128), 1))
        fps_i = max(1, round(self.fps))
        step = 1 if cell >= 6 else fps_i if cell * fps_i >= 6 else fps_i * math.ceil(6 / (cell * fps_i))
        label_every = fps_i
        while label_every * cell < 48:
            label_every *= 2
        fm = p.fontMetrics()
        for i in range(0, self.frames, step):
            x = self.x_of(i)
            major = i % fps_i == 0
            p.drawLine(QPointF(x, 14 - (6 if major else 3)), QPointF(x, 14))
            if i % label_every == 0:
                p.drawText(QPointF(x + 2, fm.ascent()), str(i))
        # playhead
        x = self.x_of(self.current)
        p.fillRect(QRectF(x, track.y(), max(2.0, cell), track.height()), QColor(255, 200, 60))
        p.setBrush(QColor(255, 200, 60))
        p.setPen(Qt.PenStyle.NoPen)
        cx = x + max(2.0, cell) / 2
        p.drawPolygon(QPolygonF([QPointF(cx - 5, 8), QPointF(cx + 5, 8), QPointF(cx, 14)]))
        p.end()

    # -- scrubbing -----------------------------------------------------------------------
    def mousePressEvent(self, event: Any) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self.scrub_started.emit()
            self.scrubbed.emit(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802
        if self._dragging:
            self.scrubbed.emit(self.frame_at(event.position().x()))

    def mouseReleaseEvent(self, event: Any) -> None:  # noqa: N802
        if self._dragging:
            self._dragging = False
            self.scrub_finished.emit()
