"""Generate ▸ Generate Until Identity…: a small dialog for a "take after take until the face
holds" series (``GenerationController.generate_until`` queues what it returns, as Generate
queues a take: the draft toggle, the confirmation before a billed hosted model).

The series itself belongs to the session (:meth:`studio.session.session.Session.queue_until`):
after each take's analysis it queues the next seed, until a take reaches the identity asked for
or the tries run out, and announces the end (``SeriesFinished``: the controller shows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QLabel, QSpinBox, QVBoxLayout, QWidget)

from studio.engine.queue import score_text
from studio.session.session import UNTIL_MAX_TAKES

MIN_IDENTITY, MAX_IDENTITY = 0.05, 0.99
MAX_TAKES = 20  # the dialog's limit (the session allows more from scripts)


@dataclass(frozen=True)
class UntilChoice:
    """What the artist asked for: reach ``threshold`` within ``max_takes`` takes."""

    threshold: float
    max_takes: int = UNTIL_MAX_TAKES
    give_up: bool = False


class UntilDialog(QDialog):
    def __init__(self, parent: QWidget | None, *, threshold: float, what: str,
                 max_takes: int = UNTIL_MAX_TAKES) -> None:
        super().__init__(parent)
        self.setObjectName("until_dialog")
        self.setWindowTitle("Generate until identity")
        intro = QLabel(f"Make takes of {what} one after another, each with a new seed, until one "
                       "holds the face of the character's bible.", self)
        intro.setWordWrap(True)
        self.threshold = QDoubleSpinBox(self)
        self.threshold.setRange(MIN_IDENTITY, MAX_IDENTITY)
        self.threshold.setDecimals(3)  # the session's default has three (engine threshold + margin)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(min(MAX_IDENTITY, max(MIN_IDENTITY, float(threshold))))
        self.threshold.setToolTip("The identity score a take must reach (its mean over the "
                                  f"frames; the default, {score_text(threshold)}, is a little above "
                                  "the face engine's same-person threshold)")
        self.max_takes = QSpinBox(self)
        self.max_takes.setRange(1, MAX_TAKES)
        self.max_takes.setValue(max(1, min(MAX_TAKES, int(max_takes))))
        self.max_takes.setSuffix(" takes")
        self.max_takes.setToolTip("Stop after this many takes even if none reached it: the best "
                                  "one becomes the active take")
        self.give_up = QCheckBox("Give a take up early when its live previews show another "
                                 "person (experimental)", self)
        self.give_up.setChecked(False)
        self.give_up.setToolTip("Only backends that send live previews (ComfyUI) can do this; "
                                "a take given up counts as one of the tries")
        form = QFormLayout()
        form.addRow("Identity to reach", self.threshold)
        form.addRow("At most", self.max_takes)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        buttons.button(QDialogButtonBox.Ok).setText("Queue")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.give_up)
        lay.addWidget(buttons)
        self.give_up.setMinimumWidth(0)
        self.resize(max(360, self.sizeHint().width()), self.sizeHint().height())

    def choice(self) -> UntilChoice:
        return UntilChoice(threshold=round(self.threshold.value(), 3),
                           max_takes=int(self.max_takes.value()),
                           give_up=self.give_up.isChecked())


def ask_until(parent: QWidget | None, default_threshold: float, what: str) -> UntilChoice | None:
    """Show the dialog (modal); None when cancelled."""
    dialog = UntilDialog(parent, threshold=default_threshold, what=what)
    try:
        return dialog.choice() if dialog.exec() == QDialog.Accepted else None
    finally:
        dialog.deleteLater()
