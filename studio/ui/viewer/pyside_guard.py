"""Work around PySide6 6.12.0's reference leak on ``None`` (Python < 3.12 only).

Measured here: with PySide6-Essentials 6.12.0 on CPython 3.11, every call of a Qt method that
returns void (``QWidget.update``, ``QPainter.setPen``, ``QColor.setAlpha``...) lowers
``sys.getrefcount(None)`` by one (6.11.3 does not). ``None`` starts with a few thousand
references, so an interactive window aborts with ``Fatal Python error: none_dealloc`` after
seconds of playback (the viewer paints ~60 such calls per frame). CPython 3.12+ makes ``None``
immortal, so nothing happens there.

The guard adds 2**40 to ``None``'s reference count once: at one leaked reference per Qt call that
is centuries of continuous painting. It is applied only for the affected combination and is a
no-op otherwise. The real fix is a PySide6 release without the leak (pin ``!=6.12.0``).
"""

from __future__ import annotations

import sys

_applied = False


def needs_guard() -> bool:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    import PySide6

    return PySide6.__version__.startswith("6.12.0")


def guard_none_refcount() -> bool:
    """Apply the guard once if this PySide6/Python pair needs it. True when applied (now or
    earlier)."""
    global _applied
    if _applied:
        return True
    if not needs_guard():
        return False
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40
    _applied = True
    return True
