"""Qt face of :class:`studio.media.frames.FrameSource`: worker-thread callbacks become queued
signals delivered on the GUI thread."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from studio.media.frames import FrameCache, FrameSource

if TYPE_CHECKING:
    import numpy as np


class QtFrameSource(QObject):
    frame_ready = Signal(int)
    status_changed = Signal()

    def __init__(self, video: Path, cache: FrameCache, proxy_dir: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._closed = False  # set before the worker thread can call back
        # Raises AssetError (missing/unreadable file) before any thread starts.
        self.source = FrameSource(video, cache=cache, proxy_dir=proxy_dir,
                                  on_ready=self._ready, on_status=self._status)
        # Deleted with its parent without close(): stop the worker anyway. The slot must not
        # touch this (already destroyed) QObject, only the plain-Python source.
        source = self.source
        self.destroyed.connect(lambda *_: source.close())

    def _ready(self, index: int) -> None:
        if not self._closed:
            try:
                self.frame_ready.emit(index)
            except RuntimeError:  # the Qt object went away under the worker
                self._closed = True

    def _status(self) -> None:
        if not self._closed:
            try:
                self.status_changed.emit()
            except RuntimeError:
                self._closed = True

    # Convenience pass-throughs
    @property
    def frame_count(self) -> int:
        return self.source.frame_count

    @property
    def fps(self) -> float:
        return self.source.fps

    def get(self, index: int, reduce: int = 1) -> "np.ndarray | None":
        return self.source.get(index, reduce)

    def prefetch(self, start: int, direction: int = 1, count: int = 8, reduce: int = 1) -> None:
        self.source.prefetch(start, direction, count, reduce)

    def close(self) -> None:
        self._closed = True
        self.source.close()
