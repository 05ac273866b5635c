"""Playback clock: which frame should be on screen now.

A precise QTimer ticks several times per frame; the frame shown is derived from an elapsed-time
clock (``anchor + floor(elapsed * fps * rate)``), never from counting ticks, so timer jitter
cannot make playback drift. Frames the clock passes without being shown are counted as dropped.
When a frame is not decodable yet (proxy still building) the clock holds instead of skipping.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QElapsedTimer, QObject, Qt, QTimer, Signal

MAX_RATE = 8.0


class Player(QObject):
    frame_due = Signal(int)  # the frame to show now
    state_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.frames = 1
        self.fps = 16.0
        self.current = 0
        self.rate = 0.0  # frames per frame-period; negative = reverse; 0 = paused
        self.loop_in: int | None = None
        self.loop_out: int | None = None
        self.dropped = 0
        self.shown = 0
        self._clock = QElapsedTimer()
        self._anchor = 0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    # -- configuration -------------------------------------------------------------------
    def set_take(self, frames: int, fps: float) -> None:
        self.pause()
        self.frames, self.fps = max(1, frames), fps if fps > 0 else 16.0
        self.loop_in = self.loop_out = None
        self.current = min(self.current, self.frames - 1)

    def bounds(self) -> tuple[int, int]:
        lo = self.loop_in if self.loop_in is not None else 0
        hi = self.loop_out if self.loop_out is not None else self.frames - 1
        lo, hi = max(0, min(lo, self.frames - 1)), max(0, min(hi, self.frames - 1))
        return (lo, hi) if lo <= hi else (hi, lo)

    @property
    def playing(self) -> bool:
        return self.rate != 0.0

    # -- transport -----------------------------------------------------------------------
    def play(self, rate: float = 1.0) -> None:
        self.rate = max(-MAX_RATE, min(MAX_RATE, rate))
        lo, hi = self.bounds()
        if not lo <= self.current <= hi:
            self.current = lo if self.rate > 0 else hi
            self.frame_due.emit(self.current)
        self._restart_clock()
        period_ms = 1000.0 / (self.fps * abs(self.rate))
        self._timer.start(max(1, min(10, int(period_ms / 4))))
        self.state_changed.emit()

    def pause(self) -> None:
        if self.rate != 0.0:
            self.rate = 0.0
            self._timer.stop()
            self.state_changed.emit()

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play(1.0)

    def shuttle_forward(self) -> None:
        """L: play forward; again = faster (x2 up to x8)."""
        self.play(min(MAX_RATE, self.rate * 2) if self.rate > 0 else 1.0)

    def shuttle_reverse(self) -> None:
        """J: play backward; again = faster."""
        self.play(max(-MAX_RATE, self.rate * 2) if self.rate < 0 else -1.0)

    def seek(self, index: int) -> None:
        """Jump (keeps playing if playing, from the new position)."""
        self.current = max(0, min(self.frames - 1, int(index)))
        if self.playing:
            self._restart_clock()
        self.frame_due.emit(self.current)

    def step(self, delta: int) -> None:
        self.pause()
        self.seek(self.current + delta)

    def hold(self) -> None:
        """The due frame is not available yet: wait for it instead of skipping ahead."""
        if self.playing:
            self._restart_clock()

    def _restart_clock(self) -> None:
        self._anchor = self.current
        self._clock.restart()

    def _tick(self) -> None:
        if not self.playing:
            return
        elapsed = self._clock.nsecsElapsed() / 1e9
        advance = math.floor(elapsed * self.fps * abs(self.rate) + 1e-9)
        step = 1 if self.rate > 0 else -1
        target = self._anchor + step * advance
        if target == self.current:
            return
        lo, hi = self.bounds()
        skipped = abs(target - self.current) - 1
        if target > hi or target < lo:
            span = hi - lo + 1
            target = lo + (target - lo) % span
            self._anchor = target
            self._clock.restart()
        # At rates above 1x frames are skipped on purpose (shuttle), not dropped.
        if abs(self.rate) <= 1.0 and skipped > 0:
            self.dropped += skipped
        self.current = target
        self.shown += 1
        self.frame_due.emit(target)
