"""Small modal questions, in one place so tests can answer them (monkeypatch ``ask``)."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

Button = QMessageBox.StandardButton


def ask(parent: QWidget | None, title: str, text: str, buttons: list[Button],
        default: Button, labels: dict[Button, str] | None = None,
        informative: str = "") -> Button:
    """Ask a question with standard buttons (optionally relabelled); returns the button."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Question)
    box.setWindowTitle(title)
    box.setText(text)
    if informative:
        box.setInformativeText(informative)
    flags = QMessageBox.StandardButton.NoButton
    for b in buttons:
        flags |= b
    box.setStandardButtons(flags)
    box.setDefaultButton(default)
    for b, label in (labels or {}).items():
        btn = box.button(b)
        if btn is not None:
            btn.setText(label)
    result = box.exec()
    return QMessageBox.StandardButton(result)
