"""Settings ▸ Face landmarks…: which 68-point face landmark model the identity analysis uses.

The choice is a licence decision (docs/IDENTITY.md "Landmarks and licences"): dlib's model sees
feature drift best but its training data allows non-commercial research use only; MediaPipe's
Face Mesh is Apache-2.0 but its face prior hides local drift. ``studio.identity.landmarks`` owns
the choice (``landmark_choice``, ``save_landmark_choice``, the words in ``LANDMARK_OPTIONS``);
this module only shows it:

- :class:`LandmarksDialog` — both options with their label, licence and note; OK saves.
- :func:`install_landmarks` — the menu entry, and the question at first use: once the window
  has painted, if nothing is chosen, the dialog is opened (window-modal, never ``exec``), once
  per window. Cancelling leaves the app working; analyses then fail with
  ``LandmarkChoiceNeeded``, whose message the window shows ("Identity analysis: …").

``studio.identity`` (numpy at import) and ``mesh_landmarks.available`` (cv2) are imported inside
functions: nothing of it may load before the window's first paint (tests/test_architecture.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QFrame, QLabel,
                               QRadioButton, QVBoxLayout, QWidget)

from studio.core.errors import StudioError, error_text
from studio.ui import theme

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

# After the window's first paint, so the question never delays or covers start-up painting
# (and the start-up benchmark, which quits at the first paint, never loads numpy for it).
ASK_DELAY_MS = 250
CARD_QSS = (f"QFrame#landmark_option {{ border: 1px solid {theme.BORDER}; border-radius: 6px;"
            f" background: {theme.ALT_BASE}; }}"
            f"QFrame#landmark_option[chosen=\"true\"] {{ border: 1px solid {theme.ACCENT};"
            f" background: #1d2733; }}"
            "QFrame#landmark_option QLabel, QFrame#landmark_option QRadioButton {"
            " border: none; background: transparent; }"
            # Fusion's dark radio circle is nearly invisible on the card: a ring, filled when on.
            f"QFrame#landmark_option QRadioButton::indicator {{ width: 12px; height: 12px;"
            f" border-radius: 8px; border: 2px solid {theme.MUTED}; background: {theme.BASE}; }}"
            f"QFrame#landmark_option QRadioButton::indicator:checked {{ border: 2px solid"
            f" {theme.ACCENT}; background: qradialgradient(cx:0.5, cy:0.5, radius:0.5, fx:0.5,"
            f" fy:0.5, stop:0 #ffffff, stop:0.45 #ffffff, stop:0.55 {theme.ACCENT},"
            f" stop:1 {theme.ACCENT}); }}"
            f"QFrame#landmark_option QRadioButton::indicator:disabled {{ border: 2px solid"
            f" {theme.BORDER}; }}")


class _OptionCard(QFrame):
    """One option: its radio button (the label) with the licence and the note under it. A
    click anywhere on the card picks it, as on the radio button."""

    def __init__(self, radio: QRadioButton, licence: str, note: str, extra: str,
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("landmark_option")
        self.radio = radio
        font = radio.font()
        font.setBold(True)
        radio.setFont(font)
        self.licence = QLabel(f"<b>Licence:</b> {licence}", self)
        self.note = QLabel(note[:1].upper() + note[1:] + ".", self)
        self.extra = QLabel(extra, self)
        self.extra.setStyleSheet(f"color: {theme.WARN};")
        self.extra.setVisible(bool(extra))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 8)
        lay.setSpacing(3)
        lay.addWidget(radio)
        for label in (self.licence, self.note, self.extra):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)  # licence words can be copied
            label.setContentsMargins(24, 0, 0, 0)  # under the radio's text, not its circle
            label.installEventFilter(self)  # selectable labels keep their clicks to themselves
            lay.addWidget(label)
        radio.toggled.connect(self._restyle)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.MouseButtonPress:
            self._pick(event)  # type: ignore[arg-type]
        return False

    def _restyle(self, on: bool) -> None:
        self.setProperty("chosen", on)
        self.style().unpolish(self)
        self.style().polish(self)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._pick(event)
        super().mousePressEvent(event)

    def _pick(self, event: QMouseEvent) -> None:
        if self.radio.isEnabled() and event.button() == Qt.LeftButton:
            self.radio.setChecked(True)


class LandmarksDialog(QDialog):
    """Both landmark models with their licence and what they see; OK saves the choice with
    ``save_landmark_choice`` (errors are shown in the dialog, which stays open). The current
    choice is selected; at first use nothing is, and OK waits for a pick."""

    chosen = Signal(str)  # the model saved ("dlib68" | "mesh")

    def __init__(self, parent: QWidget | None = None, *, first_use: bool = False) -> None:
        from studio.identity import landmarks as dl
        from studio.identity import mesh_landmarks

        super().__init__(parent)
        self.setObjectName("LandmarksDialog")
        self.setWindowTitle("Face landmarks")
        self.setStyleSheet(CARD_QSS)
        self.saved_path: Path | None = None
        self.first_use = first_use
        try:
            self.current = dl.landmark_choice()
            problem = ""
        except StudioError as exc:  # e.g. CONTINUITY_LANDMARKS=typo: say so, offer the choice
            self.current, problem = None, str(exc)
        except OSError as exc:  # the config folder cannot be made
            self.current = None
            problem = str(StudioError(f"cannot read the landmark choice: {exc.strerror or exc}",
                                      _choice_file()))
        self.mesh_available = mesh_landmarks.available()

        heading = QLabel("Choose the face landmark model" if first_use or self.current is None
                         else "Face landmark model", self)
        hfont = heading.font()
        hfont.setPointSizeF(hfont.pointSizeF() * 1.25)
        hfont.setBold(True)
        heading.setFont(hfont)
        intro = QLabel(
            "The identity analysis fits 68 points to the face in every frame of a take to see "
            "whether the eyes, nose and mouth keep their shape. Two models can do it. Which one "
            "you may use is a licence decision: read each licence before you choose.", self)
        intro.setWordWrap(True)

        self.group = QButtonGroup(self)
        self.radios: dict[str, QRadioButton] = {}
        self.cards: dict[str, _OptionCard] = {}
        cards = QVBoxLayout()
        cards.setSpacing(8)
        for key in dl.LANDMARK_MODELS:
            opt = dl.LANDMARK_OPTIONS[key]
            radio = QRadioButton(opt["label"], self)
            radio.setObjectName(f"landmarks_{key}")
            extra = ""
            if key == "mesh" and not self.mesh_available:
                radio.setText(opt["label"] + " — not installed")
                radio.setEnabled(False)
                extra = (f"Not installed: pip install --no-deps "
                         f"{mesh_landmarks.CARRIER_REQUIREMENT}, then restart the app.")
            self.group.addButton(radio)
            self.radios[key] = radio
            card = _OptionCard(radio, opt["licence"], opt["note"], extra, self)
            card.setEnabled(radio.isEnabled())
            self.cards[key] = card
            cards.addWidget(card)
        if self.current in self.radios and self.radios[self.current].isEnabled():
            self.radios[self.current].setChecked(True)

        later = QLabel("You can change this later in Settings ▸ Face landmarks…; takes analysed "
                       "with the other model then need a new analysis.", self)
        later.setObjectName("hint")
        later.setWordWrap(True)
        override = os.environ.get(dl.LANDMARKS_ENV, "").strip()
        self.env_note = QLabel(
            f"{dl.LANDMARKS_ENV}={override} is set in this app's environment: it is used "
            "instead of the choice saved here." if override else "", self)
        self.env_note.setWordWrap(True)
        self.env_note.setStyleSheet(f"color: {theme.WARN};")
        self.env_note.setVisible(bool(override))
        self.error = QLabel(problem, self)
        self.error.setObjectName("landmarks_error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error.setStyleSheet(f"color: {theme.DANGER};")
        self.error.setVisible(bool(problem))

        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        self.ok_button = self.buttons.button(QDialogButtonBox.Ok)
        self.ok_button.setText("Use this model")
        self.buttons.button(QDialogButtonBox.Cancel).setText(
            "Decide later" if self.current is None else "Cancel")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.group.buttonToggled.connect(lambda *_a: self._update_ok())

        lay = QVBoxLayout(self)
        lay.setContentsMargins(18, 16, 18, 14)
        lay.setSpacing(10)
        lay.addWidget(heading)
        lay.addWidget(intro)
        lay.addLayout(cards)
        lay.addWidget(later)
        lay.addWidget(self.env_note)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self._update_ok()
        # Wide enough that the licences read in a few lines; height follows the wrapped text.
        self.setMinimumWidth(560)
        self.resize(620, self.heightForWidth(620) if self.layout().hasHeightForWidth()
                    else self.sizeHint().height())

    def choice(self) -> str | None:
        """The model picked in the dialog (not necessarily saved yet)."""
        return next((k for k, r in self.radios.items() if r.isChecked()), None)

    def select(self, model: str) -> None:
        self.radios[model].setChecked(True)

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(self.choice() is not None)

    def accept(self) -> None:
        from studio.identity import landmarks as dl

        model = self.choice()
        if model is None:
            return
        try:
            self.saved_path = dl.save_landmark_choice(model)
        except StudioError as exc:
            self._show_error(error_text(exc))
            return
        except OSError as exc:  # the config folder cannot be written
            self._show_error(error_text(StudioError(
                f"cannot save the landmark choice: {exc.strerror or exc}", _choice_file())))
            return
        self.error.hide()
        self.chosen.emit(model)
        super().accept()

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()


def _choice_file() -> str:
    """Where the choice is saved, for messages (the folder itself may be what fails)."""
    from studio.core.userdirs import config_dir
    from studio.identity.landmarks import CHOICE_FILE

    try:
        return str(config_dir() / CHOICE_FILE)
    except OSError:
        return CHOICE_FILE


def open_landmarks_dialog(main_window: MainWindow, first_use: bool = False) -> LandmarksDialog:
    """Show the dialog over the window (window-modal, without a nested event loop) and return
    it; one per window: a dialog already open is raised instead."""
    existing = main_window.findChild(LandmarksDialog, "LandmarksDialog")
    if existing is not None and existing.isVisible():
        existing.raise_()
        existing.activateWindow()
        return existing
    if existing is not None:
        existing.deleteLater()
    dialog = LandmarksDialog(main_window, first_use=first_use)
    dialog.setAttribute(Qt.WA_DeleteOnClose)
    dialog.chosen.connect(lambda model, d=dialog: _chosen(main_window, model, d.current))
    if first_use:
        dialog.rejected.connect(lambda: _declined(main_window))
    dialog.setWindowModality(Qt.WindowModal)
    dialog.open()
    return dialog


def _chosen(main_window: MainWindow, model: str, before: str | None) -> None:
    from studio.identity.landmarks import LANDMARK_OPTIONS

    label = LANDMARK_OPTIONS[model]["label"]
    # The face engine's key names the landmark model: analyses made with the other one are
    # stale, and the open session's analysis index says so at once.
    main_window.session.analyses.engine_changed()
    if before is not None and before != model:
        text = (f"Face landmarks: {label}. Takes analysed with the other model are out of "
                "date: re-analyse them (Generate ▸ Analyze Active Take) to score them with it.")
    else:
        text = f"Face landmarks: {label}."
    main_window.statusBar().showMessage(text, 15_000)
    # Reference checks made before the choice could not fit the landmarks: check them again.
    main_window.bible.checks.recheck_failed()


def _declined(main_window: MainWindow) -> None:
    # Never over a message already there (e.g. where the demo was created).
    if not main_window.statusBar().currentMessage():
        main_window.statusBar().showMessage(
            "No face landmark model chosen: identity analysis waits for it "
            "(Settings ▸ Face landmarks…)", 15_000)


class _FirstUseAsk(QObject):
    """Asks once per window, a moment after its first paint, when nothing is chosen yet."""

    def __init__(self, main_window: MainWindow) -> None:
        super().__init__(main_window)
        self.win = main_window
        self.scheduled = False
        self.asked = False  # the dialog was opened (tests, and never twice)
        main_window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self.scheduled and obj is self.win and event.type() == QEvent.Paint:
            self.scheduled = True
            self.win.removeEventFilter(self)
            QTimer.singleShot(ASK_DELAY_MS, self, self.ask_if_needed)
        return False

    def ask_if_needed(self) -> None:
        from studio.identity.landmarks import landmark_choice

        if self.asked or not self.win.isVisible():
            return
        try:
            if landmark_choice() is not None:
                return
        except StudioError as exc:  # a CONTINUITY_LANDMARKS typo: the window says which
            self.win.show_error(exc)
            return
        except OSError:  # the config folder cannot be made: the dialog says so
            pass
        self.asked = True
        open_landmarks_dialog(self.win, first_use=True)


def install_landmarks(main_window: MainWindow) -> QAction:
    """Settings ▸ Face landmarks…, and the question at first use."""
    action = QAction("Face &landmarks…", main_window)
    action.setStatusTip("Choose the face landmark model of the identity analysis "
                        "(a licence decision)")
    action.triggered.connect(lambda: open_landmarks_dialog(main_window))
    main_window.menu("Settings").addAction(action)
    main_window.landmarks_first_use = _FirstUseAsk(main_window)
    return action
