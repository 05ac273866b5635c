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

from PySide6.QtCore import QRegularExpression, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPixmap, QRegularExpressionValidator
from PySide6.QtWidgets import (QColorDialog, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QMenu, QPlainTextEdit,
                               QPushButton, QScrollArea, QSpinBox, QToolButton, QVBoxLayout,
                               QWidget)

from studio.core.errors import StudioError
from studio.core.model import (ANGLE_LABELS, Aspect, ResolutionPreset, SeedMode, preset_size)
from studio.ui.start_image_view import FramingEditor
from studio.ui.undo import EditCharacterCommand, EditProjectCommand, EditShotCommand, push

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

START_THUMB = 160
SEED_MAX = 2**32 - 1

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
        form.addRow("Start image", self.start_image)
        form.addRow("Framing", self.framing)
        # Caption and button on rows of their own: side by side they widen the inspector.
        form.addRow("", self.framing_label)
        form.addRow("", self.framing_reset)
        timing = QHBoxLayout()
        timing.addWidget(self.duration, 1)
        timing.addWidget(self.fps, 1)
        form.addRow("Duration", timing)
        form.addRow("", self.frames_label)
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
        self.framing_reset.clicked.connect(self.framing.reset)
        self.framing.changed.connect(self._refresh_framing_caption)
        self.duration.valueChanged.connect(lambda v: self._edit_shot(duration_s=round(v, 3)))
        self.fps.valueChanged.connect(lambda v: self._edit_shot(fps=v))
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
            self._refresh_start_images()
            self.duration.setValue(shot.duration_s)
            self.fps.setValue(shot.fps)
            self.frames_label.setText(f"{shot.frame_count} frames")
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
        self._edit_shot(character_id=char_id)

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
