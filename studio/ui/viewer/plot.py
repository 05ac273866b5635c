"""Per-frame metric plot under the picture: curves in [0, 1], threshold line, flagged (drift)
ranges shaded red and frames that could not be judged violet (the one colour scale), playhead;
press or drag to seek. Uses the ruler's frame-cell geometry so a frame sits at the same x in
both. Uncertain frames have no scores: their curves break there."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.identity.colours import BAND_COLOURS
from studio.ui.viewer.ruler import MARGIN

if TYPE_CHECKING:
    import numpy as np

METRIC_COLORS = {
    "identity": QColor(255, 200, 60),
    "proportions": QColor(110, 190, 255),
    "eye_shape": QColor(180, 130, 255),
    "skin_tone": QColor(255, 140, 110),
    "stability": QColor(120, 220, 140),
    "hair": QColor(235, 235, 235),
    "detail": QColor(90, 215, 215),
}
# Flagged ranges and the threshold line in the "drift" colour of the one score scale; frames
# that could not be judged in its "uncertain" colour.
DRIFT_COLOR = QColor(BAND_COLOURS["drift"])
UNCERTAIN_COLOR = QColor(BAND_COLOURS["uncertain"])


class MetricPlot(QWidget):
    seek_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(56)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.frames = 1
        self.series: dict[str, "np.ndarray"] = {}
        self.visible: list[str] = ["identity"]
        self.threshold: float | None = None
        self.ranges: list[tuple[int, int]] = []
        self.uncertain: list[tuple[int, int]] = []  # runs of uncertain frames, inclusive
        self.current = 0
        self.empty_text = "No analysis for this take yet"
        self._dragging = False

    def sizeHint(self) -> QSize:  # noqa: N802
        # 90 px when there is room; down to the minimum when the window is short.
        return QSize(400, 90)

    def set_data(self, frames: int, series: dict[str, "np.ndarray"], threshold: float | None,
                 ranges: list[tuple[int, int]],
                 uncertain: list[tuple[int, int]] | None = None) -> None:
        self.frames = max(1, frames)
        self.series, self.threshold, self.ranges = series, threshold, list(ranges)
        self.uncertain = list(uncertain or [])
        self.update()

    def set_visible_metrics(self, keys: list[str]) -> None:
        self.visible = list(keys)
        self.update()

    def set_current(self, index: int) -> None:
        if index != self.current:
            self.current = index
            self.update()

    def cell(self) -> float:
        return max(1e-6, (self.width() - 2 * MARGIN) / self.frames)

    def frame_at(self, x: float) -> int:
        return max(0, min(self.frames - 1, math.floor((x - MARGIN) / self.cell())))

    def _area(self) -> QRectF:
        return QRectF(MARGIN, 6, self.width() - 2 * MARGIN, self.height() - 12)

    def y_of(self, v: float) -> float:
        a = self._area()
        return a.bottom() - max(0.0, min(1.0, v)) * a.height()

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), QColor(26, 27, 30))
        area = self._area()
        cell = self.cell()
        for runs, colour, alpha in ((self.ranges, DRIFT_COLOR, 70),
                                    (self.uncertain, UNCERTAIN_COLOR, 80)):
            shade = QColor(colour)
            shade.setAlpha(alpha)
            for s, e in runs:
                p.fillRect(QRectF(MARGIN + s * cell, area.top(), (e - s + 1) * cell,
                                  area.height()), shade)
        p.setPen(QPen(QColor(60, 62, 68), 1))
        for v in (0.25, 0.5, 0.75):
            p.drawLine(QPointF(area.left(), self.y_of(v)), QPointF(area.right(), self.y_of(v)))
        if not self.series:
            p.setPen(QColor(140, 140, 140))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text)
        for key in self.visible:
            vals = self.series.get(key)
            if vals is None:
                continue
            pen = QPen(METRIC_COLORS.get(key, QColor(200, 200, 200)),
                       2.0 if key == "identity" else 1.3)
            p.setPen(pen)
            path = QPainterPath()
            pen_down = False
            for i, v in enumerate(vals.tolist()):
                if v != v:  # NaN: not measurable -> gap
                    pen_down = False
                    continue
                pt = QPointF(MARGIN + (i + 0.5) * cell, self.y_of(v))
                if pen_down:
                    path.lineTo(pt)
                else:
                    path.moveTo(pt)
                    path.addEllipse(pt, 1.2, 1.2)
                    path.moveTo(pt)
                    pen_down = True
            p.drawPath(path)
        if self.threshold is not None:
            y = self.y_of(self.threshold)
            p.setPen(QPen(DRIFT_COLOR, 1, Qt.PenStyle.DashLine))
            p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            p.drawText(QPointF(area.left() + 3, y - 3), f"threshold {self.threshold:.2f}")
        x = MARGIN + (self.current + 0.5) * cell
        p.setPen(QPen(QColor(255, 255, 255, 200), 1))
        p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        p.end()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self.seek_requested.emit(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802
        if self._dragging:
            self.seek_requested.emit(self.frame_at(event.position().x()))

    def mouseReleaseEvent(self, event: Any) -> None:  # noqa: N802
        self._dragging = False
