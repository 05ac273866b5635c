"""The app collects garbage on the UI thread only (studio.ui.gc_guard)."""

from __future__ import annotations

import gc
import threading

from studio.ui.gc_guard import MainThreadGC


def test_collection_happens_on_the_ui_thread_not_in_workers(qapp, qtbot) -> None:
    seen: list[str] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(threading.current_thread().name)

    guard = MainThreadGC(qapp, interval_ms=10)
    gc.callbacks.append(on_gc)
    try:
        assert not gc.isenabled()

        class Cycle:
            def __init__(self) -> None:
                self.me = self

        def churn() -> None:  # a worker allocating far past the gen-0 threshold
            for _ in range(50_000):
                Cycle()

        worker = threading.Thread(target=churn, name="worker")
        worker.start()
        worker.join()
        assert "worker" not in seen  # the worker's allocations triggered nothing there
        qtbot.waitUntil(lambda: threading.main_thread().name in seen, timeout=5_000)
    finally:
        gc.callbacks.remove(on_gc)
        guard.deleteLater()
        guard.timer.stop()
        gc.enable()
    assert gc.isenabled()
