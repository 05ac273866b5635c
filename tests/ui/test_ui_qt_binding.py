"""The Qt binding must not leak references: PySide6 6.12.0 dropped a reference to None on every
Qt call returning nothing, which aborts Python < 3.12 ("none_dealloc") within seconds of video
playback. pyproject.toml excludes that release; this test catches any release that does it."""

from __future__ import annotations

import sys

from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QWidget


def test_void_qt_calls_do_not_leak_none(qtbot) -> None:
    widget = QWidget()
    qtbot.addWidget(widget)
    image = QImage(8, 8, QImage.Format.Format_ARGB32)
    before = sys.getrefcount(None)
    for _ in range(2000):
        widget.update()
        painter = QPainter(image)
        painter.setPen(QColor(1, 2, 3))
        painter.end()
    leaked = before - sys.getrefcount(None)
    assert leaked < 100, f"{leaked} references to None lost in 6000 void Qt calls"
