"""The time ruler: frame ticks, playhead, loop in/out, flagged (drift) ranges, frames that could
not be judged, the state row (every frame in its state's colour: match, close, drift,
uncertain — :data:`studio.identity.colours.STATE_COLOURS`), the segments of a chained take (a
thin line at each join, numbered, with the segment's identity); drag to scrub.

Every frame owns an equal cell of the ruler's width, so a press or drag at x lands on exactly
``floor((x - margin) / cell)``: scrubbing is frame-accurate at any zoom.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from studio.engine.takes import Segment
from studio.identity.colours import STATE_COLOURS
from studio.ui.viewer.analysis import state_runs

MARGIN = 8.0
STATE_ROW = 5.0  # px: the state row along the bottom of the track
STATE_QCOLORS = {k: QColor(v) for k, v in STATE_COLOURS.items()}


class TimeRuler(QWidget):
    scrubbed = Signal(int)  # a frame chosen by press/drag
    scrub_started = Signal()
    scrub_finished = Signal()
    context_requested = Signal(int, QPoint)  # frame under a right click, global position

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
        self.ranges: list[tuple[int, int]] = []  # flagged (drift), inclusive
        self.show_ranges = True
        # Per frame: its state and its verdict in words (the tooltip); empty: not analysed.
        self.states: list[str] = []
        self.frame_notes: list[str] = []
        self._state_runs: list[tuple[int, int, str]] = []
        self._dragging = False
        # A chained take's segments, each one's tooltip and its short readout ("2 · 0.81");
        # ``segment_note`` is the tooltip when there are none to show (e.g. unreadable).
        self.segments: list[Segment] = []
        self.segment_tips: list[str] = []
        self.segment_labels: list[str] = []
        self.segment_note = ""

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

    def set_states(self, states: list[str], notes: list[str] | None = None) -> None:
        """Each frame's state ("match" | "close" | "drift" | "uncertain") and, for the tooltip,
        its verdict in words."""
        self.states = list(states)
        self.frame_notes = list(notes or [])
        self._state_runs = state_runs(self.states)
        self.update()

    def state_color(self, frame: int) -> QColor | None:
        """The colour the state row paints ``frame`` in (None: no state known)."""
        if 0 <= frame < len(self.states):
            return QColor(STATE_QCOLORS.get(self.states[frame], QColor(120, 120, 125)))
        return None

    def set_segments(self, segments: list[Segment], tips: list[str], labels: list[str],
                     note: str = "") -> None:
        self.segments, self.segment_tips, self.segment_labels = list(segments), tips, labels
        self.segment_note = note
        self.update()

    def segment_at(self, frame: int) -> Segment | None:
        return next((s for s in self.segments if s.start_frame <= frame <= s.end_frame), None)

    def boundaries(self) -> list[int]:
        """Frames where a segment after the first begins: where the ruler draws a join."""
        return [s.start_frame for s in self.segments if s.start_frame > 0]

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
            # Drift ranges red, frames that could not be judged violet (never red: nothing is
            # claimed there), both in the colours of the one scale.
            for s, e in self.ranges:
                shade = QColor(STATE_QCOLORS["drift"])
                shade.setAlpha(170)
                p.fillRect(QRectF(self.x_of(s), track.y(), (e - s + 1) * cell, track.height()),
                           shade)
            for s, e, st in self._state_runs:
                if st == "uncertain":
                    shade = QColor(STATE_QCOLORS["uncertain"])
                    shade.setAlpha(150)
                    p.fillRect(QRectF(self.x_of(s), track.y(), (e - s + 1) * cell,
                                      track.height()), shade)
        if self._state_runs:
            row = QRectF(MARGIN, track.bottom() - STATE_ROW, track.width(), STATE_ROW)
            for s, e, st in self._state_runs:
                p.fillRect(QRectF(self.x_of(s), row.y(), (e - s + 1) * cell, row.height()),
                           STATE_QCOLORS.get(st, QColor(120, 120, 125)))
        self._paint_segments(p, track)
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

    def _paint_segments(self, p: QPainter, track: QRectF) -> None:
        """A thin line at each join, its number above the track, and each segment's number and
        identity inside its span where it fits; a dot marks a re-made segment."""
        if not self.segments:
            return
        p.save()
        font = QFont(p.font())
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.82))
        p.setFont(font)
        fm = p.fontMetrics()
        for k, seg in enumerate(self.segments):
            x = self.x_of(seg.start_frame)
            span = seg.frames * self.cell()
            if seg.start_frame > 0:
                p.setPen(QPen(QColor(150, 200, 255, 200), 1))
                p.drawLine(QPointF(x, 2), QPointF(x, track.bottom()))
            label = self.segment_labels[k] if k < len(self.segment_labels) else str(k + 1)
            room = span - 8 - (8 if seg.remade else 0)
            if room > 4:
                text = fm.elidedText(label, Qt.TextElideMode.ElideRight, int(room))
                if text and text != "…":
                    p.setPen(QColor(200, 215, 235, 190))
                    p.drawText(QRectF(x + 4, track.y(), room, track.height()),
                               Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
            if seg.remade:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(90, 220, 200))
                dx = x + 4 + min(fm.horizontalAdvance(label), max(0.0, room)) + 4
                p.drawEllipse(QPointF(min(dx, x + span - 4), track.center().y()), 2.5, 2.5)
        p.restore()

    def frame_tip(self, frame: int) -> str:
        """"Frame 12: uncertain: the landmark fit is unstable" ("" when not analysed)."""
        if 0 <= frame < len(self.frame_notes) and self.frame_notes[frame]:
            return f"Frame {frame}: {self.frame_notes[frame]}"
        return ""

    def tooltip_at(self, x: float) -> str:
        """The segment under ``x`` (its frames, seed, start, identity), else the note; then
        the frame's state and why."""
        frame = self.frame_at(x)
        here = self.frame_tip(frame)
        if not self.segments:
            return "\n".join(t for t in (self.segment_note, here) if t)
        seg = self.segment_at(frame)
        if seg is None or seg.index >= len(self.segment_tips):
            return here
        return "\n".join(t for t in (self.segment_tips[seg.index], here,
                                      "Right-click to re-make it") if t)

    def event(self, event: Any) -> bool:  # noqa: D102
        if event.type() == QEvent.Type.ToolTip:
            tip = self.tooltip_at(event.pos().x())  # a QHelpEvent
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    def contextMenuEvent(self, event: Any) -> None:  # noqa: N802
        self.context_requested.emit(self.frame_at(event.pos().x()), event.globalPos())
        event.accept()

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
