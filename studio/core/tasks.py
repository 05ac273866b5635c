"""The one vocabulary of long work: a progress report, a cancel check and the cancel exception.

Every long operation in studio (generation, identity analysis, export, runtime installs) takes an
``on_progress: ProgressFn`` and a ``cancelled: CancelledFn`` and raises :class:`Cancelled` when
the check turns true; the session and the UI's task helper (``studio.ui.tasks``) treat it as a
clean stop, never as an error. Pure Python: no Qt, no threads of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


class Cancelled(Exception):
    """The work was cancelled; whatever it was writing has been removed."""


@dataclass(frozen=True)
class Progress:
    step: int  # units done: denoising steps, frames analysed or written
    total: int  # 0 when unknown
    stage: str = ""  # "loading", "generating", "encoding", "analysing", "copying", ...
    message: str = ""  # extra words for the user (a shot title, a model name)
    elapsed_s: float | None = None
    eta_s: float | None = None  # None until there is a rate to extrapolate from
    # A live preview of the work (a ComfyUI sampler's preview image): (format, encoded bytes).
    preview: tuple[str, bytes] | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


# A report whose stage is PLACED says where the work runs (its message: a server's URL).
PLACED = "placed"

ProgressFn = Callable[[Progress], None]
CancelledFn = Callable[[], bool]


def never_cancelled() -> bool:
    return False


def raise_if_cancelled(cancelled: CancelledFn | None) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled()


class ProgressMeter:
    """Counts units of work, checks the cancel flag on every step and reports throttled progress
    (about ``rate_hz`` a second, plus the last step) with elapsed time and an ETA."""

    def __init__(self, total: int, stage: str, on_progress: ProgressFn | None = None,
                 cancelled: CancelledFn | None = None, *, rate_hz: float = 10.0) -> None:
        self.total, self.stage = int(total), stage
        self.message = ""
        self.done = 0
        self._on, self._cancelled = on_progress, cancelled
        self._interval = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self._t0 = time.perf_counter()
        self._last = float("-inf")

    def step(self, n: int = 1, *, force: bool = False) -> None:
        self.done += n
        raise_if_cancelled(self._cancelled)
        now = time.perf_counter()
        if self._on is not None and (force or now - self._last >= self._interval
                                     or self.done >= self.total):
            self._last = now
            self.emit()

    def set(self, done: int, *, force: bool = False) -> None:
        self.step(done - self.done, force=force)

    def emit(self, stage: str | None = None) -> None:
        if self._on is None:
            return
        elapsed = time.perf_counter() - self._t0
        eta = (elapsed / self.done * max(0, self.total - self.done)
               if self.done > 0 and elapsed > 0.05 else None)
        self._on(Progress(self.done, self.total, stage or self.stage, self.message,
                          round(elapsed, 3), eta))
