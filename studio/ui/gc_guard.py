"""Garbage collection on the UI thread only.

Python's cyclic collector runs on whichever thread happens to allocate when a threshold is
crossed. In the app that is often a worker (a generation job, the ComfyUI client's websocket, a
task), and a cycle that holds a Qt object owned by Python (a dialog closed without a parent, a
lambda connected to a widget) would then be destroyed off the UI thread, which crashes Qt.
pyqtgraph's answer, used here too: switch off automatic collection and collect from a timer on
the UI thread, with the collector's own thresholds deciding which generations to collect.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 1000


class MainThreadGC(QObject):
    def __init__(self, parent: QObject, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)
        self.destroyed.connect(lambda *_a: gc.enable())

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (as gc itself would)."""
        counts = gc.get_count()
        if counts[0] > self.threshold[0]:
            generation = 0
            if counts[1] > self.threshold[1]:
                generation = 1
                if counts[2] > self.threshold[2]:
                    generation = 2
            gc.collect(generation)


def install(app: QObject) -> MainThreadGC:
    """Collect on ``app``'s thread from now on (the GUI entry point calls this once)."""
    return MainThreadGC(app)
