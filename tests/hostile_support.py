"""Helpers for the hostile-file tests (issue 15): a call that must return instead of hanging."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def returns_within(fn: Callable[[], Any], seconds: float, fifo: Path | None = None) -> Any:
    """``fn()``'s result or exception; fails the test if it is still running after ``seconds``
    (a reader blocked on a FIFO is then released by opening the FIFO's write end, so a hang on
    the old code is a failure, not a stuck suite)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        t.join(5)
        pytest.fail(f"still running after {seconds} s (blocked?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")
