"""The None-refcount guard for PySide6 6.12.0 on Python < 3.12 (see pyside_guard.py)."""

from __future__ import annotations

import sys

from PySide6.QtGui import QColor

from studio.ui.viewer.pyside_guard import guard_none_refcount, needs_guard


def test_void_qt_calls_cannot_exhaust_none(qapp) -> None:
    applied = guard_none_refcount()
    assert applied == needs_guard()
    c = QColor(1, 2, 3)
    before = sys.getrefcount(None)
    for _ in range(20_000):  # about ten seconds of viewer playback worth of void calls
        c.setAlpha(7)
    after = sys.getrefcount(None)
    if needs_guard():
        assert before - after >= 19_000  # the leak is real on this PySide6/Python pair...
        assert after > 2**39  # ...and None is out of its reach
    else:
        assert after > 1_000
