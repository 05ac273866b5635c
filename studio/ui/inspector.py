"""The inspector: edits the selected shot (and the character selected in the bible).

Widgets hold no state of their own: every user change becomes an undo command, and every widget
is refreshed from the document when it emits a change (so undo/redo, other panels and other
helpers' edits all show up here). ``_Binding`` keeps programmatic refreshes from echoing back
as edits.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRegularExpression, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QIcon, QPixmap, QRegularExpressionValidator
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QComboBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QMenu, QPlainTextEdit,
                               QPushButton, QScrollArea, QSpinBox, QToolButton, QVBoxLayout,
                               QWidget)

from studio.core.errors import StudioError
from studio.core.model import (ANGLE_LABELS, Angle, Aspect, ResolutionPreset, SeedMode, Shot,
                               preset_size)
from studio.ui.layouts import ElidedLabel
from studio.ui.start_image_view import FramingEditor
from studio.ui.undo import (EditCharacterCommand, EditProjectCommand, EditShotCommand, push,
                            quoted)

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow
    from studio.engine.base import Capabilities

START_THUMB = 160
SEED_MAX = 2**32 - 1
REF_ICON = 48  # px: the reference thumbnails in the inspector's list
REF_ROWS = 4  # the reference list shows this many rows before it scrolls
REF_ID_ROLE = Qt.UserRole + 1
REF_PATH_ROLE = Qt.UserRole + 2
# Why Auto chose a reference (studio.engine.references.ReferencePick.why), in words.
WHY_WORDS = {"start angle": "nearest the start angle", "front": "front view",
             "angle": "next nearest angle", "picked": "picked by hand"}

def _set_text(w: QLineEdit | QPlainTextEdit, value: str) -> None:
    """Set only when different, so the cursor of the field being typed in does not jump."""
    current = w.text() if isinstance(w, QLineEdit) else w.toPlainText()
    if current != value:
        if isinstance(w, QLineEdit):
            w.setText(value)
        else:
            w.setPlainText(value)

class _PlainText(QPlainTextEdit):
    """Multi-line prompt field with a compact default height."""

    def sizeHint(self) -> QSize:
        return QSize(200, 64)

class _ReferenceList(QListWidget):
    """The shot's references with 48 px thumbnails: as tall as its rows (at most
    :data:`REF_ROWS`), and never what sets the inspector's width (long names elide)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setIconSize(QSize(REF_ICON, REF_ICON))
        self.setUniformItemSizes(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.ElideRight)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SingleSelection)

    def _row_height(self) -> int:
        return max(REF_ICON + 6, 2 * self.fontMetrics().lineSpacing() + 6)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        rows = max(1, min(REF_ROWS, self.count()))
        return QSize(200, rows * self._row_height() + 2 * self.frameWidth())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        return QSize(REF_ICON + 40, self._row_height() + 2 * self.frameWidth())


def _placeholder_icon(colour: str) -> QIcon:
    """A square in the character's colour while its thumbnail is made (or when it cannot be)."""
    pix = QPixmap(REF_ICON, REF_ICON)
    pix.fill(QColor(colour).darker(250))
    return QIcon(pix)


class Inspector(QScrollArea):
    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self.shot_id: str | None = None
        self.character_id: str | None = None
        self._refreshing = 0
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # fields shrink instead
        body = QWidget(self)
        self.setWidget(body)

        # -- shot ---------------------------------------------------------------------------
        self.shot_box = QGroupBox("Shot", body)
        self.title = QLineEdit(self.shot_box)
        self.prompt = _PlainText(self.shot_box)
        self.prompt.setPlaceholderText("Motion prompt: what happens in the shot")
        self.negative = _PlainText(self.shot_box)
        self.negative.setPlaceholderText("Negative prompt")
        self.character = QComboBox(self.shot_box)
        # Further characters in the shot (two-shots, dialogue): a checkable menu of the others.
        self.cast_label = ElidedLabel("", self.shot_box, min_chars=6)
        self.cast_label.setObjectName("cast_label")
        self.cast_button = QToolButton(self.shot_box)
        self.cast_button.setText("…")
        self.cast_button.setToolTip("Other characters in the shot (a two-shot, dialogue): each "
                                    "is scored on its own")
        self.cast_menu = QMenu(self.cast_button)
        self.cast_button.setMenu(self.cast_menu)
        self.cast_button.setPopupMode(QToolButton.InstantPopup)
        # The bible references the take is held to: chosen automatically, or picked by hand.
        self.refs_mode = QComboBox(self.shot_box)
        self.refs_mode.addItem("Auto", "auto")
        self.refs_mode.addItem("Pick by hand", "pick")
        self.refs_mode.setToolTip("Auto: the reference nearest the start image's angle, then the "
                                  "front one, then the others.\nPick by hand: tick the "
                                  "references and put them in order.")
        self.refs_caption = QLabel(self.shot_box)
        self.refs_caption.setObjectName("hint")
        self.refs_caption.setWordWrap(True)
        self.refs_list = _ReferenceList(self.shot_box)
        self.refs_list.setObjectName("shot_references")
        self.refs_up = QToolButton(self.shot_box)
        self.refs_up.setText("▲")
        self.refs_up.setToolTip("Move the selected reference earlier (a model that takes fewer "
                                "gets the first ones)")
        self.refs_down = QToolButton(self.shot_box)
        self.refs_down.setText("▼")
        self.refs_down.setToolTip("Move the selected reference later")
        self._refs_key: tuple[Any, ...] | None = None  # what the list shows (rebuilt on change)
        self._ref_items: dict[str, list[QListWidgetItem]] = {}  # image path -> its items
        self._caps: dict[tuple[str, str | None], tuple[Capabilities | None, str]] = {}
        self.start_image = QComboBox(self.shot_box)
        self.start_image.setIconSize(QSize(48, 48))
        # The start image with the shot's frame on it: drag, wheel, reset (start_image_view.py).
        self.framing = FramingEditor(win, self.shot_box)
        self.framing_label = QLabel(self.shot_box)
        self.framing_label.setObjectName("hint")
        self.framing_label.setWordWrap(True)
        self.framing_reset = QToolButton(self.shot_box)
        self.framing_reset.setText("Reset to automatic")
        self.framing_reset.setToolTip("Frame the shot automatically again: on the face, with room "
                                      "above the head")
        self.duration = QDoubleSpinBox(self.shot_box)
        self.duration.setRange(0.1, 600.0)
        self.duration.setDecimals(1)
        self.duration.setSingleStep(0.5)
        self.duration.setSuffix(" s")
        self.duration.setKeyboardTracking(False)
        self.fps = QSpinBox(self.shot_box)
        self.fps.setRange(1, 120)
        self.fps.setSuffix(" fps")
        self.fps.setKeyboardTracking(False)
        self.frames_label = QLabel(self.shot_box)
        self.frames_label.setObjectName("hint")
        self.frames_label.setWordWrap(True)
        # Long shots are made in segments of the model's window; a shorter segment length can be
        # asked for (params["segment_frames"]), e.g. to preview how a long shot will be chained.
        self.segment_frames = QSpinBox(self.shot_box)
        self.segment_frames.setRange(0, 4000)
        self.segment_frames.setSpecialValueText("model's window")
        self.segment_frames.setSuffix(" frames")
        self.segment_frames.setSingleStep(8)
        self.segment_frames.setKeyboardTracking(False)
        self.segment_frames.setToolTip(
            "Longer shots are made as chained segments of at most this many frames, each "
            "started from the frame of the one before that best keeps the face")
        self.resolution = QComboBox(self.shot_box)
        for preset in ResolutionPreset:
            self.resolution.addItem(preset.value, preset.value)
        self.aspect = QComboBox(self.shot_box)
        for aspect in Aspect:
            self.aspect.addItem(aspect.value, aspect.value)
        self.size_label = QLabel(self.shot_box)
        self.size_label.setObjectName("hint")
        self.seed = QLineEdit(self.shot_box)
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,10}"), self.seed))
        self.seed_mode = QComboBox(self.shot_box)
        self.seed_mode.addItem("Fixed", SeedMode.FIXED.value)
        self.seed_mode.addItem("Random each take", SeedMode.RANDOM.value)
        self.new_seed = QToolButton(self.shot_box)
        self.new_seed.setText("New seed")
        self.backend = QComboBox(self.shot_box)
        from studio.engine.registry import LABELS  # registry only: no backend module is imported

        for name, label in LABELS.items():
            self.backend.addItem(label, name)
        # Long labels must not set the dock's (and the window's) minimum width: the combos
        # shrink to a few characters and show the full text when opened.
        for combo in (self.backend, self.seed_mode):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        self.model_path = QLineEdit(self.shot_box)
        self.model_path.setPlaceholderText("model folder (backend default when empty)")
        self.model_browse = QToolButton(self.shot_box)
        self.model_browse.setText("…")
        self.model_browse.setToolTip("Pick a registered model or a model folder")
        # The models added in Settings ▸ Models, then a folder picker; rebuilt on every opening so
        # the list follows the model manager.
        self.model_menu = QMenu(self.model_browse)
        self.model_menu.aboutToShow.connect(self._fill_model_menu)
        self.model_browse.setMenu(self.model_menu)
        self.model_browse.setPopupMode(QToolButton.InstantPopup)

        form = QFormLayout(self.shot_box)
        self._shot_form = form
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Title", self.title)
        form.addRow("Motion", self.prompt)
        form.addRow("Negative", self.negative)
        form.addRow("Character", self.character)
        cast_row = QHBoxLayout()
        cast_row.addWidget(self.cast_label, 1)
        cast_row.addWidget(self.cast_button)
        form.addRow("Also in shot", cast_row)
        form.addRow("Start image", self.start_image)
        form.addRow("Framing", self.framing)
        # Caption and button on rows of their own: side by side they widen the inspector.
        form.addRow("", self.framing_label)
        form.addRow("", self.framing_reset)
        # The order buttons beside the mode, so the list has the whole width for its names.
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.refs_mode, 1)
        mode_row.addWidget(self.refs_up)
        mode_row.addWidget(self.refs_down)
        form.addRow("References", mode_row)
        form.addRow("", self.refs_caption)
        form.addRow("", self.refs_list)
        timing = QHBoxLayout()
        timing.addWidget(self.duration, 1)
        timing.addWidget(self.fps, 1)
        form.addRow("Duration", timing)
        form.addRow("", self.frames_label)
        form.addRow("Segments", self.segment_frames)
        res = QHBoxLayout()
        res.addWidget(self.resolution, 1)
        res.addWidget(self.aspect, 1)
        form.addRow("Resolution", res)
        form.addRow("", self.size_label)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 2)
        seed_row.addWidget(self.new_seed)
        form.addRow("Seed", seed_row)
        form.addRow("Seed mode", self.seed_mode)
        form.addRow("Backend", self.backend)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_path, 1)
        model_row.addWidget(self.model_browse)
        form.addRow("Model", model_row)

        # -- character ----------------------------------------------------------------------
        self.char_box = QGroupBox("Character", body)
        self.char_name = QLineEdit(self.char_box)
        self.char_notes = _PlainText(self.char_box)
        self.char_notes.setPlaceholderText("Notes: wardrobe, age, distinguishing features")
        self.char_color = QPushButton(self.char_box)
        self.char_color.setToolTip("Colour tag shown on the character's shots")
        self.char_refs_label = QLabel(self.char_box)
        self.char_refs_label.setObjectName("hint")
        cform = QFormLayout(self.char_box)
        cform.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        cform.addRow("Name", self.char_name)
        cform.addRow("Notes", self.char_notes)
        cform.addRow("Colour", self.char_color)
        cform.addRow("", self.char_refs_label)

        # -- project (name and export settings) --------------------------------------------
        self.project_box = QGroupBox("Project", body)
        self.project_name = QLineEdit(self.project_box)
        self.out_resolution = QComboBox(self.project_box)
        for preset in ResolutionPreset:
            self.out_resolution.addItem(preset.value, preset.value)
        self.out_aspect = QComboBox(self.project_box)
        for aspect in Aspect:
            self.out_aspect.addItem(aspect.value, aspect.value)
        self.out_fps = QSpinBox(self.project_box)
        self.out_fps.setRange(1, 120)
        self.out_fps.setSuffix(" fps")
        self.out_fps.setKeyboardTracking(False)
        pform = QFormLayout(self.project_box)
        pform.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        pform.addRow("Name", self.project_name)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_resolution, 1)
        out_row.addWidget(self.out_aspect, 1)
        out_row.addWidget(self.out_fps, 1)
        pform.addRow("Output", out_row)

        self.empty = QLabel("Select a shot in the storyboard to edit it.", body)
        self.empty.setObjectName("hint")
        self.empty.setWordWrap(True)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.empty)
        lay.addWidget(self.shot_box)
        lay.addWidget(self.char_box)
        lay.addWidget(self.project_box)
        lay.addStretch(1)
        self._body_layout = lay

        # -- user edits -> commands ---------------------------------------------------------
        self.title.textEdited.connect(lambda t: self._edit_shot(title=t))
        self.prompt.textChanged.connect(lambda: self._edit_shot(prompt=self.prompt.toPlainText()))
        self.negative.textChanged.connect(
            lambda: self._edit_shot(negative_prompt=self.negative.toPlainText()))
        self.character.activated.connect(self._on_character_chosen)
        self.start_image.activated.connect(self._on_start_chosen)
        self.cast_menu.aboutToShow.connect(self._fill_cast_menu)
        self.cast_menu.triggered.connect(self._on_cast_action)
        self.refs_mode.activated.connect(
            lambda i: self.set_references_auto(self.refs_mode.itemData(i) == "auto"))
        self.refs_list.itemChanged.connect(self._on_ref_checked)
        self.refs_list.currentItemChanged.connect(lambda *_: self._sync_ref_buttons())
        self.refs_up.clicked.connect(lambda: self._move_selected_reference(-1))
        self.refs_down.clicked.connect(lambda: self._move_selected_reference(+1))
        self.framing_reset.clicked.connect(self.framing.reset)
        self.framing.changed.connect(self._refresh_framing_caption)
        self.duration.valueChanged.connect(lambda v: self._edit_shot(duration_s=round(v, 3)))
        self.fps.valueChanged.connect(lambda v: self._edit_shot(fps=v))
        self.segment_frames.valueChanged.connect(self._on_segment_frames)
        self.resolution.activated.connect(
            lambda i: self._edit_shot(resolution=ResolutionPreset(self.resolution.itemData(i))))
        self.aspect.activated.connect(
            lambda i: self._edit_shot(aspect=Aspect(self.aspect.itemData(i))))
        self.seed.editingFinished.connect(self._on_seed_entered)
        self.seed_mode.activated.connect(
            lambda i: self._edit_shot(seed_mode=SeedMode(self.seed_mode.itemData(i))))
        self.new_seed.clicked.connect(self.roll_seed)
        self.backend.activated.connect(lambda i: self._edit_shot(backend=self.backend.itemData(i)))
        self.model_path.textEdited.connect(lambda t: self._edit_shot(model=t.strip() or None))
        self.model_browse.clicked.connect(self._browse_model)
        self.char_name.textEdited.connect(lambda t: self._edit_character(name=t))
        self.char_notes.textChanged.connect(
            lambda: self._edit_character(notes=self.char_notes.toPlainText()))
        self.char_color.clicked.connect(self._pick_color)

        self.project_name.textEdited.connect(lambda t: self._edit_project(name=t))
        self.out_resolution.activated.connect(lambda i: self._edit_output(
            resolution=ResolutionPreset(self.out_resolution.itemData(i))))
        self.out_aspect.activated.connect(
            lambda i: self._edit_output(aspect=Aspect(self.out_aspect.itemData(i))))
        self.out_fps.valueChanged.connect(lambda v: self._edit_output(fps=v))

        ev = win.events
        ev.project_changed.connect(self.refresh_project)
        ev.shot_changed.connect(self._on_shot_changed)
        ev.character_changed.connect(self._on_character_changed)
        ev.structure_changed.connect(self._on_structure)
        win.thumbnails.ready.connect(lambda *_: self._refresh_start_images())
        win.thumbnails.ready.connect(self._on_ref_thumb)
        win.thumbnails.failed.connect(lambda path, side, _msg: self._on_ref_thumb(path, side))
        self.set_shot(None)
        self.set_character(None)
        self.refresh_project()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        """As narrow as the fields allow (plus the scroll bar), so the dock is never narrower
        than its content — the horizontal scroll bar is off, so it would be clipped."""
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is None:
            return hint
        width = body.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
        return QSize(max(width, 240), hint.height())

    # -- extension points ------------------------------------------------------------------------
    def add_shot_widget(self, widget: QWidget, label: str = "", after: QWidget | None = None) -> None:
        """Add a row to the shot section (e.g. prompt warnings), after ``after``'s row or last.
        Keep it current from ``win.shot_selected`` / ``win.events.shot_changed``."""
        form = self._shot_form
        if after is not None:
            row, _role = form.getWidgetPosition(after)
            if row >= 0:
                form.insertRow(row + 1, label, widget)
                return
        form.addRow(label, widget)

    def add_section(self, widget: QWidget) -> None:
        """Add a whole section (e.g. a QGroupBox) below the others."""
        self._body_layout.insertWidget(self._body_layout.count() - 1, widget)

    # -- selection ------------------------------------------------------------------------------
    def set_shot(self, shot_id: str | None) -> None:
        self.shot_id = shot_id or None
        self._caps.clear()  # the model list may have changed meanwhile (Settings ▸ Models)
        self.refresh_shot()

    def set_character(self, char_id: str | None) -> None:
        self.character_id = char_id or None
        self.refresh_character()

    # -- binding helpers ------------------------------------------------------------------------
    @contextmanager
    def _refresh(self) -> Iterator[None]:
        self._refreshing += 1
        try:
            yield
        finally:
            self._refreshing -= 1

    def _push(self, cmd: Any) -> None:
        try:
            push(self.win.undo_stack, cmd)
        except (StudioError, ValueError, KeyError) as exc:
            self.win.show_error(exc)
            self.refresh_shot()
            self.refresh_character()

    def _edit_shot(self, **fields: Any) -> None:
        if self._refreshing or self.shot_id is None:
            return
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None:
            return
        changed = {k: v for k, v in fields.items() if getattr(shot, k) != v}
        if changed:
            self._push(EditShotCommand(self.win.document, self.shot_id, **changed))

    def _edit_character(self, **fields: Any) -> None:
        if self._refreshing or self.character_id is None:
            return
        char = self.win.document.project.character(self.character_id)
        if char is None:
            return
        changed = {k: v for k, v in fields.items() if getattr(char, k) != v}
        if changed:
            self._push(EditCharacterCommand(self.win.document, self.character_id, **changed))

    # -- document -> widgets --------------------------------------------------------------------
    def _on_shot_changed(self, shot_id: str) -> None:
        if shot_id == self.shot_id:
            self.refresh_shot()

    def _on_character_changed(self, char_id: str) -> None:
        if char_id == self.character_id:
            self.refresh_character()
        shot = self.win.document.project.shot(self.shot_id)
        if shot is not None and shot.character_id == char_id:
            self.refresh_shot()
        elif shot is not None:
            self._refresh_character_combo(shot.character_id)
            with self._refresh():
                self._refresh_cast(shot)
                self._refresh_references(shot)  # a cast member's references changed

    def _on_structure(self, kind: str) -> None:
        if kind == "characters":
            if self.win.document.project.character(self.character_id) is None:
                self.character_id = None
            self.refresh_character()
        if self.win.document.project.shot(self.shot_id) is None:
            self.shot_id = None
        self.refresh_shot()

    def refresh_shot(self) -> None:
        shot = self.win.document.project.shot(self.shot_id)
        self.shot_box.setVisible(shot is not None)
        self.empty.setVisible(shot is None)
        if shot is None:
            self.framing.set_shot(None)
            return
        with self._refresh():
            self.shot_box.setTitle(f"Shot {self.win.document.project.shot_index(shot.id) + 1}")
            _set_text(self.title, shot.title)
            _set_text(self.prompt, shot.prompt)
            _set_text(self.negative, shot.negative_prompt)
            self._refresh_character_combo(shot.character_id)
            self._refresh_cast(shot)
            self._refresh_start_images()
            self.duration.setValue(shot.duration_s)
            self.fps.setValue(shot.fps)
            self.frames_label.setText(self._frames_text(shot))
            seg = shot.params.get("segment_frames")
            self.segment_frames.setValue(seg if isinstance(seg, int) and not isinstance(seg, bool)
                                         and seg >= 2 else 0)
            self.resolution.setCurrentIndex(self.resolution.findData(shot.resolution.value))
            self.aspect.setCurrentIndex(self.aspect.findData(shot.aspect.value))
            w, h = preset_size(shot.resolution, shot.aspect)
            self.size_label.setText(f"{w} × {h} pixels")
            if not self.seed.hasFocus() or self.seed.text() != str(shot.seed):
                _set_text(self.seed, str(shot.seed))
            self.seed_mode.setCurrentIndex(self.seed_mode.findData(shot.seed_mode.value))
            i = self.backend.findData(shot.backend)
            if i < 0:  # a backend this build does not know (e.g. from a newer project)
                self.backend.addItem(f"{shot.backend} (not installed)", shot.backend)
                i = self.backend.count() - 1
            self.backend.setCurrentIndex(i)
            _set_text(self.model_path, shot.model or "")
            comfy = shot.backend == "comfyui"  # its model is a workflow (a name, or a JSON file)
            self.model_path.setPlaceholderText(
                "workflow (default: Settings ▸ Generators)" if comfy
                else "model folder (backend default when empty)")
            self.model_browse.setToolTip("Pick a bundled or imported ComfyUI workflow" if comfy
                                         else "Pick a registered model or a model folder")
            self._refresh_references(shot)

    def _refresh_character_combo(self, current: str | None) -> None:
        with self._refresh():
            self.character.clear()
            self.character.addItem("(none)", "")
            for char in self.win.document.project.characters:
                swatch = QPixmap(12, 12)
                swatch.fill(QColor(char.color))
                self.character.addItem(QIcon(swatch), char.name, char.id)
            self.character.setCurrentIndex(max(0, self.character.findData(current or "")))

    def _refresh_start_images(self) -> None:
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None:
            return
        with self._refresh():
            self.start_image.clear()
            self.start_image.addItem("(none)", "")
            char = self.win.document.project.character(shot.character_id)
            refs = list(char.references) if char else []
            for ref in refs:
                asset = self.win.document.project.asset_by_path(ref.asset)
                name = asset.original_name if asset and asset.original_name else ref.asset
                self.start_image.addItem(self._thumb_icon(ref.asset),
                                         f"{ANGLE_LABELS[ref.angle]} — {name}", ref.id)
            index = self.start_image.findData(shot.start_reference_id or "") if shot.start_asset else 0
            if shot.start_asset and index <= 0:
                # the start image is not (or no longer) among this character's references
                self.start_image.addItem(self._thumb_icon(shot.start_asset), "(image not in this "
                                         "character's references)", "@" + shot.start_asset)
                index = self.start_image.count() - 1
            self.start_image.setCurrentIndex(max(0, index))
        self.framing.set_shot(shot.id)

    def _refresh_framing_caption(self) -> None:
        shot = self.win.document.project.shot(self.shot_id)
        frame = self.framing.frame()
        self.framing_label.setText(self.framing.describe() if frame is not None else "")
        self.framing_reset.setVisible(frame is not None)
        self.framing_reset.setEnabled(shot is not None and shot.start_framing is not None)

    def _thumb(self, rel: str) -> QPixmap | None:
        try:
            return self.win.thumbnails.get(self.win.document.path_of(rel), START_THUMB)
        except StudioError:
            return None

    def _thumb_icon(self, rel: str) -> QIcon:
        pix = self._thumb(rel)
        return QIcon(pix) if pix is not None else QIcon()

    def _edit_project(self, **fields: Any) -> None:
        if self._refreshing:
            return
        project = self.win.document.project
        changed = {k: v for k, v in fields.items() if getattr(project, k) != v}
        if changed:
            self._push(EditProjectCommand(self.win.document, **changed))

    def _edit_output(self, **fields: Any) -> None:
        if self._refreshing:
            return
        out = self.win.document.project.output
        if any(getattr(out, k) != v for k, v in fields.items()):
            self._push(EditProjectCommand(self.win.document,
                                          output=out.model_copy(update=fields)))

    def refresh_project(self) -> None:
        project = self.win.document.project
        with self._refresh():
            _set_text(self.project_name, project.name)
            self.out_resolution.setCurrentIndex(
                self.out_resolution.findData(project.output.resolution.value))
            self.out_aspect.setCurrentIndex(self.out_aspect.findData(project.output.aspect.value))
            self.out_fps.setValue(project.output.fps)

    def refresh_character(self) -> None:
        char = self.win.document.project.character(self.character_id)
        self.char_box.setVisible(char is not None)
        if char is None:
            return
        with self._refresh():
            self.char_box.setTitle(f"Character — {char.name}")
            _set_text(self.char_name, char.name)
            _set_text(self.char_notes, char.notes)
            self.char_color.setText(char.color)
            self.char_color.setStyleSheet(
                f"QPushButton {{ background: {char.color}; color: #101010; font-weight: 600; }}")
            n = len(char.references)
            self.char_refs_label.setText(f"{n} reference portrait{'s' if n != 1 else ''}")

    # -- widget handlers ------------------------------------------------------------------------
    def _on_character_chosen(self, index: int) -> None:
        char_id = self.character.itemData(index) or None
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or self._refreshing:
            return
        # The new main character leaves the cast (a shot names nobody twice), and picked
        # references of a character no longer in the shot go: one undo step for all of it.
        cast = [c for c in shot.cast if c != char_id]
        picks = _keep_picks(self.win.document.project, shot, [char_id, *cast])
        fields = {k: v for k, v in (("character_id", char_id), ("cast", cast),
                                    ("reference_ids", picks)) if getattr(shot, k) != v}
        if set(fields) <= {"character_id"}:
            self._edit_shot(**fields)  # the usual words: "Change character of 'X' to Y"
            return
        char = self.win.document.project.character(char_id)
        text = (f"Change character of {quoted(shot.title)} to {char.name}" if char is not None
                else f"Remove the character of {quoted(shot.title)}")
        self._push(EditShotCommand(self.win.document, shot.id, text=text, **fields))

    def _on_start_chosen(self, index: int) -> None:
        data = self.start_image.itemData(index) or ""
        if data.startswith("@"):
            return  # the current out-of-bible image: nothing changes
        if not data:
            self._edit_shot(start_asset=None, start_reference_id=None)
            return
        found = self.win.document.project.find_reference(data)
        if found is not None:
            self._edit_shot(start_asset=found[1].asset, start_reference_id=data)

    def _on_seed_entered(self) -> None:
        text = self.seed.text().strip()
        if not text:
            self.refresh_shot()
            return
        value = int(text)
        if value > SEED_MAX:
            self.win.show_error(f"a seed is at most {SEED_MAX}")
            self.refresh_shot()
            return
        self._edit_shot(seed=value)

    def roll_seed(self) -> None:
        self._edit_shot(seed=secrets.randbelow(SEED_MAX + 1))

    def _fill_model_menu(self) -> None:
        from studio.engine.model_library import ModelRegistry

        menu = self.model_menu
        menu.clear()
        shot = self.win.document.project.shot(self.shot_id) if self.shot_id else None
        if shot is not None and shot.backend == "comfyui":
            self._fill_workflow_menu(menu)
            return
        try:
            models = ModelRegistry().models()
        except StudioError as exc:
            models = []
            menu.addAction(f"Model list unreadable: {exc.problem}").setEnabled(False)
        for m in sorted(models, key=lambda m: m.name.lower()):
            action = menu.addAction(f"{m.name} — {m.family}")
            action.setToolTip(m.path)
            action.triggered.connect(lambda _=False, path=m.path: self._edit_shot(model=path))
        if not models:
            menu.addAction("No registered models").setEnabled(False)
        menu.addSeparator()
        menu.addAction("Choose folder…", self._browse_model)
        manage = menu.addAction("Manage models…")
        manage.triggered.connect(self._manage_models)
        if self.model_path.text():
            menu.addAction("Backend default", lambda: self._edit_shot(model=None))

    def _fill_workflow_menu(self, menu: QMenu) -> None:
        """For a ComfyUI shot the model is a workflow: the bundled ones, then the imported
        ones; hosted models say that they are billed."""
        from studio.engine.comfyui.check import known_workflows

        try:
            workflows = known_workflows()
        except StudioError as exc:
            menu.addAction(f"Workflows unreadable: {exc.problem}").setEnabled(False)
            workflows = {}
        for kind, title in (("test", None), ("local", "Local models"), ("hosted",
                                                                         "Hosted (billed to your Comfy account)")):
            group = [w for w in workflows.values() if w.manifest.kind == kind]
            if not group:
                continue
            if title:
                menu.addSection(title)
            for w in group:
                action = menu.addAction(w.manifest.label)
                needs = ", ".join(f"{m.folder}/{m.name}" for m in w.manifest.models)
                action.setToolTip((w.manifest.description or w.name)
                                  + (f"\nNeeds: {needs}" if needs else "")
                                  + (f"\n{w.manifest.cost_note}" if w.manifest.cost_note else ""))
                action.triggered.connect(lambda _=False, n=w.name: self._edit_shot(model=n))
        menu.addSeparator()
        menu.addAction("Import workflow (API JSON)…", self._import_workflow)
        if self.model_path.text():
            menu.addAction("Default workflow", lambda: self._edit_shot(model=None))

    def _import_workflow(self) -> None:
        from studio.engine.comfyui.workflow import import_workflow

        path, _ = QFileDialog.getOpenFileName(self, "Import a ComfyUI workflow (Export (API))",
                                              str(Path.home()), "ComfyUI API workflow (*.json)")
        if not path:
            return
        try:
            wf = import_workflow(Path(path))
        except StudioError as exc:
            self.win.show_error(f"Cannot import the workflow: {exc}")
            return
        self._edit_shot(model=wf.name)

    def _manage_models(self) -> None:
        from studio.ui.models_dialog import open_models_dialog

        try:
            open_models_dialog(self.window())
        except StudioError:
            pass  # already reported by the dialog

    def _browse_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder",
                                                  self.model_path.text() or str(Path.home()))
        if folder:
            self._edit_shot(model=folder)

    def set_color(self, colour: str) -> None:
        self._edit_character(color=QColor(colour).name())

    def _pick_color(self) -> None:
        char = self.win.document.project.character(self.character_id)
        if char is None:
            return
        colour = QColorDialog.getColor(QColor(char.color), self, "Character colour")
        if colour.isValid():
            self.set_color(colour.name())


    # -- who else is in the shot ----------------------------------------------------------------
    def _refresh_cast(self, shot: Shot) -> None:
        project = self.win.document.project
        names = [c.name for cid in shot.cast if (c := project.character(cid)) is not None]
        self.cast_label.setText(", ".join(names) if names else "nobody else")
        self.cast_label.setToolTip("\n".join(names) if names else
                                   "Only the shot's character; add others with …")
        self.cast_button.setEnabled(any(c.id != shot.character_id for c in project.characters))

    def _fill_cast_menu(self) -> None:
        """Built when the menu opens (never while one of its actions is being handled)."""
        self.cast_menu.clear()
        project = self.win.document.project
        shot = project.shot(self.shot_id)
        if shot is None:
            return
        others = [c for c in project.characters if c.id != shot.character_id]
        for char in others:
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(char.color))
            action = self.cast_menu.addAction(QIcon(swatch), char.name)
            action.setData(char.id)
            action.setCheckable(True)
            action.setChecked(char.id in shot.cast)
        if not others:
            self.cast_menu.addAction("No other characters in the bible").setEnabled(False)

    def _on_cast_action(self, action: QAction) -> None:
        if action.data():
            self.set_in_shot(str(action.data()), action.isChecked())

    def set_in_shot(self, char_id: str, present: bool) -> None:
        """Add ``char_id`` to the shot's further characters, or take it out (one undo step;
        references picked of a character who leaves go with it)."""
        shot = self.win.document.project.shot(self.shot_id)
        char = self.win.document.project.character(char_id)
        if shot is None or char is None or self._refreshing or char_id == shot.character_id:
            return
        if present == (char_id in shot.cast):
            return
        cast = [*shot.cast, char_id] if present else [c for c in shot.cast if c != char_id]
        picks = _keep_picks(self.win.document.project, shot,
                            [shot.character_id, *cast] if shot.character_id else cast)
        fields: dict[str, Any] = {"cast": cast}
        if picks != shot.reference_ids:
            fields["reference_ids"] = picks
        text = (f"Add {char.name} to {quoted(shot.title)}" if present
                else f"Remove {char.name} from {quoted(shot.title)}")
        self._push(EditShotCommand(self.win.document, shot.id, text=text, **fields))

    # -- long shots: segments -----------------------------------------------------------------
    def _frames_text(self, shot: Shot) -> str:
        n = shot.frame_count
        caps, _problem = self._capabilities(shot)
        window = int(caps.max_frames) if caps is not None else None
        seg = shot.params.get("segment_frames")
        if isinstance(seg, int) and not isinstance(seg, bool) and seg >= 2:
            window = min(window or seg, seg)
        if window is None or n <= window:
            return f"{n} frames"
        # Each later segment starts from a frame of the one before: about window - 1 new frames.
        count = 1 + -(-(n - window) // max(1, window - 1))
        return f"{n} frames, made in about {count} segments of ≤ {window}"

    def _on_segment_frames(self, value: int) -> None:
        if self._refreshing or self.shot_id is None:
            return
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None:
            return
        params = dict(shot.params)
        if value >= 2:
            params["segment_frames"] = int(value)
        else:
            params.pop("segment_frames", None)
        if params != shot.params:
            self._push(EditShotCommand(self.win.document, shot.id, params=params,
                                       text=f"Set segment length of {quoted(shot.title)}"))

    # -- the references the take is held to -----------------------------------------------------
    def _capabilities(self, shot: Shot) -> tuple["Capabilities | None", str]:
        """The shot's backend/model's capabilities, or None and why not. Cached per selection:
        it reads a workflow or model file."""
        key = (shot.backend, shot.model)
        if key not in self._caps:
            from studio.engine.registry import get_backend

            try:
                self._caps[key] = (get_backend(shot.backend).capabilities(shot.model), "")
            except StudioError as exc:
                self._caps[key] = (None, exc.problem if hasattr(exc, "problem") else str(exc))
            except Exception as exc:  # noqa: BLE001 (a broken model folder must not break the UI)
                self._caps[key] = (None, str(exc) or type(exc).__name__)
        return self._caps[key]

    def _capacity(self, shot: Shot) -> tuple[int, bool, str]:
        """(how many references the shot's backend/model takes, several subjects?, problem)."""
        caps, problem = self._capabilities(shot)
        if caps is None:
            return 0, False, problem
        return int(caps.max_references), bool(caps.multi_subject), ""

    def reference_rows(self) -> list[tuple[str, str, bool]]:
        """What the reference list shows: (reference id, text, ticked or sent) per row."""
        out = []
        for i in range(self.refs_list.count()):
            item = self.refs_list.item(i)
            on = (item.checkState() == Qt.Checked if item.flags() & Qt.ItemIsUserCheckable
                  else bool(item.flags() & Qt.ItemIsEnabled))
            out.append((item.data(REF_ID_ROLE), item.text(), on))
        return out

    def _refresh_references(self, shot: Shot) -> None:
        from studio.engine.references import choose_references, for_backend

        project = self.win.document.project
        pick = shot.reference_ids is not None
        self.refs_mode.setCurrentIndex(1 if pick else 0)
        chars = [c for cid in shot.character_ids if (c := project.character(cid)) is not None]
        refs = [(c, r) for c in chars for r in c.references]
        limit, multi, problem = self._capacity(shot)
        picks, notes = choose_references(project, shot)
        main = project.character(shot.character_id)
        several = len(chars) > 1  # whose reference it is matters (and is said) in a two-shot

        def title(n: int | None, angle: Angle | str, name: str) -> str:
            return ((f"{n}. " if n else "") + ANGLE_LABELS[Angle(angle)]
                    + (f" · {name}" if several else ""))

        # (id, line 1, line 2, checkable, on, asset, colour) per row
        rows: list[tuple[str, str, str, bool, bool, str, str]] = []
        if pick:
            order = [p.reference_id for p in picks]
            picked = {p.reference_id: p for p in picks}
            by_id = {r.id: (c, r) for c, r in refs}
            for n, rid in enumerate(order, 1):
                c, r = by_id[rid]
                sent = limit <= 0 or n <= limit
                rows.append((rid, title(n, r.angle, c.name),
                             "picked" if sent else "picked · not sent (the model takes fewer)",
                             True, True, r.asset, c.color))
            for c, r in refs:
                if r.id not in picked:
                    rows.append((r.id, title(None, r.angle, c.name), "not picked", True, False,
                                 r.asset, c.color))
        else:
            sent_ids = {p.reference_id for p in for_backend(picks, shot.character_id, limit, multi)}
            colours = {c.id: c.color for c in chars}
            names = {c.id: c.name for c in chars}
            for n, p in enumerate(picks, 1):
                sent = limit <= 0 or p.reference_id in sent_ids  # plain I2V: all of them judge
                why = WHY_WORDS.get(p.why, p.why)
                rows.append((p.reference_id, title(n, p.angle, names.get(p.character_id, "")),
                             why if sent else f"not sent · {why}", False, sent, p.asset,
                             colours.get(p.character_id, "#808080")))
        # The caption: what the model does with them.
        if main is None and not chars:
            caption = "Choose a character: its bible references guide and judge the take."
        elif not refs:
            caption = (f"No references in the bible of {', '.join(c.name for c in chars)}: add "
                       "portraits in the Character Bible.")
        elif problem:
            caption = f"Cannot tell how many references this model takes: {problem}"
        elif limit <= 0:
            caption = "Plain image-to-video: references guide nothing, they judge the take."
        else:
            caption = f"This model takes {limit} reference{'s' if limit != 1 else ''}"
            if len(chars) > 1 and not multi and main is not None:
                caption += f", of {main.name} only (one subject)"
            caption += "."
        if pick and refs and not picks:
            caption += " Nothing is ticked: the take is held to no reference."
        if notes:
            caption += " " + " ".join(n[0].upper() + n[1:] + "." for n in notes)
        self.refs_caption.setText(caption)
        self.refs_list.setVisible(bool(refs))
        self.refs_up.setVisible(pick and bool(refs))
        self.refs_down.setVisible(pick and bool(refs))
        key = (shot.id, pick, tuple(rows))
        if key == self._refs_key:
            self._sync_ref_buttons()
            return  # unchanged (a keystroke in the prompt): keep the selection and scroll
        self._refs_key = key
        keep = self.refs_list.currentItem().data(REF_ID_ROLE) if self.refs_list.currentItem() else None
        self.refs_list.blockSignals(True)
        self.refs_list.clear()
        self._ref_items.clear()
        for rid, line1, line2, checkable, on, asset, colour in rows:
            item = QListWidgetItem(f"{line1}\n{line2}")
            item.setData(REF_ID_ROLE, rid)
            item.setData(Qt.UserRole + 3, colour)
            flags = Qt.ItemIsEnabled | Qt.ItemIsSelectable
            if checkable:
                item.setFlags(flags | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Checked if on else Qt.Unchecked)
            else:
                item.setFlags(flags if on else Qt.ItemIsSelectable)  # greyed: not sent
            path = self._path_of(asset)
            item.setData(REF_PATH_ROLE, str(path) if path is not None else "")
            a = project.asset_by_path(asset)
            item.setToolTip(f"{line1}\n{line2}\n{a.original_name if a and a.original_name else asset}")
            self._set_ref_icon(item)
            if path is not None:
                self._ref_items.setdefault(str(path), []).append(item)
            self.refs_list.addItem(item)
            if rid == keep:
                self.refs_list.setCurrentItem(item)
        self.refs_list.blockSignals(False)
        self.refs_list.updateGeometry()
        self._sync_ref_buttons()

    def _path_of(self, rel: str) -> Path | None:
        try:
            return self.win.document.path_of(rel)
        except (StudioError, ValueError):
            return None

    def _set_ref_icon(self, item: QListWidgetItem) -> None:
        """The thumbnail when the service has it; otherwise it is made in the service's pool
        (never here: no decoding on the UI thread) and ``_on_ref_thumb`` sets it."""
        path = item.data(REF_PATH_ROLE)
        pix = self.win.thumbnails.get(path, START_THUMB) if path else None  # shared with the
        item.setIcon(QIcon(pix) if pix is not None  # start image menu: one decode per image
                     else _placeholder_icon(item.data(Qt.UserRole + 3) or "#808080"))

    def _on_ref_thumb(self, path: str, side: int) -> None:
        if side != START_THUMB:
            return
        for item in self._ref_items.get(path, []):
            self._set_ref_icon(item)

    def _sync_ref_buttons(self) -> None:
        shot = self.win.document.project.shot(self.shot_id)
        order = list(shot.reference_ids or []) if shot is not None else []
        item = self.refs_list.currentItem()
        rid = item.data(REF_ID_ROLE) if item is not None else None
        i = order.index(rid) if rid in order else -1
        self.refs_up.setEnabled(i > 0)
        self.refs_down.setEnabled(0 <= i < len(order) - 1)

    def set_references_auto(self, auto: bool) -> None:
        """Auto (``reference_ids`` None) or picked by hand: picking starts from what Auto
        would send (what the model takes, or all when it takes none). One undo step."""
        from studio.engine.references import choose_references, for_backend

        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or self._refreshing or auto == (shot.reference_ids is None):
            return
        if auto:
            self._push(EditShotCommand(self.win.document, shot.id, reference_ids=None,
                                       text=f"Choose the references of {quoted(shot.title)} "
                                            "automatically"))
            return
        picks, _notes = choose_references(self.win.document.project, shot)
        limit, multi, _problem = self._capacity(shot)
        if limit > 0:
            picks = for_backend(picks, shot.character_id, limit, multi)
        self._set_picks(shot, [p.reference_id for p in picks])

    def _set_picks(self, shot: Shot, ids: list[str]) -> None:
        if ids != shot.reference_ids:
            self._push(EditShotCommand(self.win.document, shot.id, reference_ids=ids,
                                       text=f"Pick the references of {quoted(shot.title)}"))

    def _valid_picks(self, shot: Shot) -> list[str]:
        from studio.engine.references import choose_references

        picks, _notes = choose_references(self.win.document.project, shot)
        return [p.reference_id for p in picks] if shot.reference_ids is not None else []

    def pick_reference(self, ref_id: str, on: bool) -> None:
        """Tick (appended last) or untick one reference; switches to Pick when in Auto."""
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or self._refreshing:
            return
        ids = self._valid_picks(shot)
        if on and ref_id not in ids:
            ids.append(ref_id)
        elif not on:
            ids = [r for r in ids if r != ref_id]
        self._set_picks(shot, ids)

    def move_reference(self, ref_id: str, delta: int) -> None:
        shot = self.win.document.project.shot(self.shot_id)
        if shot is None or self._refreshing:
            return
        ids = self._valid_picks(shot)
        if ref_id not in ids:
            return
        i = ids.index(ref_id)
        j = max(0, min(len(ids) - 1, i + delta))
        if i != j:
            ids.insert(j, ids.pop(i))
            self._set_picks(shot, ids)

    def _on_ref_checked(self, item: QListWidgetItem) -> None:
        if self._refreshing or not item.flags() & Qt.ItemIsUserCheckable:
            return
        rid, on = item.data(REF_ID_ROLE), item.checkState() == Qt.Checked
        # After the click has been handled: the edit rebuilds the list, deleting this item.
        QTimer.singleShot(0, self, lambda: self.pick_reference(rid, on))

    def _move_selected_reference(self, delta: int) -> None:
        item = self.refs_list.currentItem()
        if item is not None:
            self.move_reference(item.data(REF_ID_ROLE), delta)


def _keep_picks(project: Any, shot: Shot, char_ids: list[str | None]) -> list[str] | None:
    """The shot's picked references that belong to ``char_ids`` (None stays None: Auto)."""
    if shot.reference_ids is None:
        return None
    own = {r.id for cid in char_ids if (c := project.character(cid)) is not None
           for r in c.references}
    return [r for r in shot.reference_ids if r in own]
