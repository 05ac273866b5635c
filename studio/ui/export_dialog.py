"""File ▸ Export: output path (the project's ``exports/`` folder by default, shown), formats
(OTIO, EDL, FCP 7 XML, report), frame rate (ticking EDL or XML on a 16 fps project conforms to
24 fps, visibly), crossfade, burn-in, missing-take policy, a live preview of what each shot will
be (copied, conformed, re-encoded, held as a still, skipped), and the export itself in the
background (:func:`studio.ui.tasks.run_task`) with progress, ETA and a cancel that leaves no
partial file; afterwards "Show in folder" and "Play" open the result.

Entry point for the main window: :func:`open_export_dialog`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QColor, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                               QPushButton, QSpinBox, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from studio.core.document import ProjectDocument
from studio.core.errors import StudioError
from studio.export.names import default_film_path
from studio.ui.tasks import TaskHandle, eta_text, run_task

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow


class ExportDialog(QDialog):
    # Emitted on the UI thread when an export ends: ("done" | "failed" | "cancelled", detail).
    export_ended = Signal(str, object)

    def __init__(self, document: ProjectDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export film")
        self.setObjectName("ExportDialog")
        self.resize(760, 620)
        self.document = document
        self._plan: Any = None
        self._task: TaskHandle | None = None
        self.last_result: dict[str, Any] | None = None
        self.last_error: str | None = None

        self.out_edit = QLineEdit(str(default_export_path(document)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        # Where the files go, in words (an unsaved project's scratch folder is not offered).
        self.where_label = QLabel()
        self.where_label.setWordWrap(True)
        self.where_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.out_edit.textChanged.connect(self._show_where)

        self.otio_check = QCheckBox("OpenTimelineIO timeline (.otio)")
        self.otio_check.setChecked(True)
        self.relative_check = QCheckBox("relative media paths")
        self.relative_check.setToolTip("Paths relative to the .otio file, so a moved project "
                                       "folder relinks by itself")
        otio_row = QHBoxLayout()
        otio_row.addWidget(self.otio_check)
        otio_row.addWidget(self.relative_check)
        otio_row.addStretch(1)
        self.edl_check = QCheckBox("CMX 3600 EDL (.edl)")
        self.xml_check = QCheckBox("Final Cut Pro 7 XML (.xml): Premiere Pro, DaVinci Resolve")
        # The film's and the timeline's rate; EDL and XML need SMPTE timecode (24/25/30...).
        self.fps_combo = QComboBox()
        self._project_fps = 0
        self._fill_fps_combo()
        self.fps_note = QLabel()
        self.fps_note.setWordWrap(True)
        self.report_check = QCheckBox("Drift report (.html)")
        self.report_check.setChecked(True)
        self.crossfade_spin = QSpinBox()
        self.crossfade_spin.setRange(0, 240)
        self.crossfade_spin.setSuffix(" frames")
        self.crossfade_spin.setSpecialValueText("none (cuts)")
        self.burn_check = QCheckBox("Burn in shot name and timecode (review copy)")
        self.missing_combo = QComboBox()
        self.missing_combo.addItem("Skip the shot", "skip")
        self.missing_combo.addItem("Hold the start image for the shot's duration", "still")
        self.reencode_check = QCheckBox("Always re-encode")

        form = QFormLayout()
        form.addRow("Film (MP4)", out_row)
        form.addRow("", self.where_label)
        form.addRow("Timeline", otio_row)
        form.addRow("", self.edl_check)
        form.addRow("", self.xml_check)
        form.addRow("Frame rate", self.fps_combo)
        form.addRow("", self.fps_note)
        form.addRow("Report", self.report_check)
        form.addRow("Crossfade", self.crossfade_spin)
        form.addRow("Shots without a take", self.missing_combo)
        form.addRow("", self.burn_check)
        form.addRow("", self.reencode_check)

        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.preview = QTreeWidget()
        self.preview.setHeaderLabels(["#", "Shot", "Action", "Details"])
        self.preview.setRootIsDecorated(False)
        self.preview.setColumnWidth(0, 36)
        self.preview.setColumnWidth(1, 180)
        self.preview.setColumnWidth(2, 110)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel export",
                                                    QDialogButtonBox.ButtonRole.ActionRole)
        # After an export: open the folder in the file manager, play the film.
        self.show_folder_button = self.buttons.addButton("Show in folder",
                                                         QDialogButtonBox.ButtonRole.ActionRole)
        self.play_button = self.buttons.addButton("Play", QDialogButtonBox.ButtonRole.ActionRole)
        for b in (self.show_folder_button, self.play_button):
            b.setEnabled(False)
        self.show_folder_button.clicked.connect(self.show_in_folder)
        self.play_button.clicked.connect(self.play_film)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.cancel_button.setEnabled(False)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)

        # Re-plan (probing the takes) shortly after the options settle, not on every keystroke.
        self._replan_timer = QTimer(self)
        self._replan_timer.setSingleShot(True)
        self._replan_timer.setInterval(150)
        self._replan_timer.timeout.connect(self.refresh_preview)
        for sig in (self.crossfade_spin.valueChanged, self.burn_check.toggled,
                    self.missing_combo.currentIndexChanged, self.reencode_check.toggled,
                    self.edl_check.toggled, self.xml_check.toggled,
                    self.fps_combo.currentIndexChanged):
            sig.connect(self._replan_timer.start)
        # Ticking a timecode format on a 16 fps project picks a rate it has (one click).
        self.edl_check.toggled.connect(self._timecode_format_toggled)
        self.xml_check.toggled.connect(self._timecode_format_toggled)
        self._show_where()
        # Edits made while the dialog is open (a take finishing, a shot moved) re-plan too.
        self._doc_signals = (document.shot_changed, document.structure_changed,
                             document.project_changed)
        for doc_sig in self._doc_signals:
            doc_sig.connect(self._on_document_changed)
        self.refresh_preview()

    def _on_document_changed(self, *_args: Any) -> None:
        if not self.running:
            self._replan_timer.start()

    # -- options and plan ---------------------------------------------------------------------
    def _fill_fps_combo(self) -> None:
        """The project's rate first, then the SMPTE rates editors use (again when the project's
        rate changes while the dialog is open)."""
        fps = int(self.document.project.output.fps)
        if fps == self._project_fps:
            return
        chosen = self.fps_combo.currentData()
        self._project_fps = fps
        self.fps_combo.blockSignals(True)
        self.fps_combo.clear()
        self.fps_combo.addItem(f"{fps} fps (the project's rate)", fps)
        for rate in (24, 25, 30):
            if rate != fps:
                self.fps_combo.addItem(f"{rate} fps (takes conformed)", rate)
        self.fps_combo.setCurrentIndex(max(0, self.fps_combo.findData(chosen)))
        self.fps_combo.blockSignals(False)

    def _timecode_format_toggled(self, checked: bool) -> None:
        """EDL and FCP XML count SMPTE timecode: on a project at a rate it lacks (16 fps),
        ticking either chooses the rate to conform to, in the Frame rate box for all to see."""
        from studio.export.interchange import conform_rate_for, edl_supported

        if checked and not edl_supported(float(self.fps_combo.currentData())):
            index = self.fps_combo.findData(conform_rate_for(self._project_fps))
            if index >= 0:
                self.fps_combo.setCurrentIndex(index)

    def _show_where(self) -> None:
        out = Path(self.out_edit.text().strip() or ".").expanduser()
        text = f"Files are written to {out.parent}"
        if self.document.folder is not None and _is_scratch(self.document.folder):
            text += (" (this project is not saved yet; its own folder is a temporary one "
                     "that is deleted when it closes)")
        self.where_label.setText(text)

    def options(self) -> Any:
        from studio.export.plan import ExportOptions

        fps = self.fps_combo.currentData()
        return ExportOptions(crossfade=self.crossfade_spin.value(),
                             burn_in=self.burn_check.isChecked(),
                             missing=self.missing_combo.currentData(),
                             force_reencode=self.reencode_check.isChecked(),
                             fps=None if fps in (None, self._project_fps) else int(fps))

    def refresh_preview(self) -> None:
        from studio.export.interchange import check_edl, check_fcp_xml
        from studio.export.plan import plan_export

        self._fill_fps_combo()
        self.preview.clear()
        self._plan = None
        if self.document.folder is None:
            self._set_plan_error("Save the project first: exports need its folder.")
            return
        try:
            plan = plan_export(self.document.project, self.document.folder, self.options())
        except StudioError as exc:
            self._set_plan_error(str(exc))
            return
        self._plan = plan
        edl_problem = ""
        for check, wanted in ((check_edl, self.edl_check), (check_fcp_xml, self.xml_check)):
            if wanted.isChecked() and not edl_problem:
                try:
                    check(plan)
                except StudioError as exc:
                    edl_problem = (f"{exc} (choose 24, 25 or 30 fps under Frame rate)"
                                   if "timecode" in exc.problem else str(exc))
        self.fps_note.setText(self._fps_note(plan))
        for i, it in enumerate(plan.items, 1):
            if it.kind == "skip":
                action = "skip"
            elif it.kind == "still":
                action = "still"
            elif plan.mode == "copy":
                action = "copy"
            elif any(a.startswith(("scale", "conform")) for a in it.actions):
                action = "conform"
            else:
                action = "re-encode"
            details = ", ".join(a for a in it.actions if a not in ("copy", "re-encode"))
            length = f"{it.out_frames} frames" if it.included else ""
            details = "; ".join(x for x in (length, details, it.note) if x)
            row = QTreeWidgetItem([str(i), it.shot_title, action, details])
            if action == "skip":
                for c in range(4):
                    row.setForeground(c, QColor("#b04040"))
            self.preview.addTopLevelItem(row)
        lines = plan.summary_lines()[:2]
        if plan.skipped:
            lines.append(f"{len(plan.skipped)} shot(s) will be skipped.")
        if edl_problem:
            lines.append(edl_problem)
        self.summary_label.setText("\n".join(lines))
        self.summary_label.setStyleSheet("color: #b04040;" if edl_problem else "")
        self.export_button.setEnabled(bool(plan.included) and not edl_problem
                                      and not self.running)
        if not plan.included:
            self.summary_label.setText(self.summary_label.text()
                                       + "\nNothing to export: no shot has a usable take.")

    def _fps_note(self, plan: Any) -> str:
        if not plan.conformed:
            return ""
        note = (f"The film and the timeline run at {plan.fps} fps, conformed from the project's "
                f"{plan.project_fps} fps: frames repeat or drop, every shot keeps its duration.")
        if any(it.needs_conformed_media for it in plan.included) and (
                self.otio_check.isChecked() or self.edl_check.isChecked()
                or self.xml_check.isChecked()):
            note += (f" The timeline files reference copies of the takes at {plan.fps} fps, "
                     "written beside the film.")
        return note

    def _set_plan_error(self, text: str) -> None:
        self.summary_label.setText(text)
        self.summary_label.setStyleSheet("color: #b04040;")
        self.export_button.setEnabled(False)

    def preview_rows(self) -> list[tuple[str, str, str]]:
        """(shot, action, details) per row, as shown (used by tests and accessibility)."""
        out = []
        for i in range(self.preview.topLevelItemCount()):
            row = self.preview.topLevelItem(i)
            out.append((row.text(1), row.text(2), row.text(3)))
        return out

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export film", self.out_edit.text(),
                                              "MP4 video (*.mp4)")
        if path:
            if not path.lower().endswith(".mp4"):
                path += ".mp4"
            self.out_edit.setText(path)

    # -- running ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and self._task.running

    def start_export(self) -> None:
        if self.running:
            return
        self.refresh_preview()
        if self._plan is None or not self.export_button.isEnabled():
            return
        out = Path(self.out_edit.text().strip()).expanduser()
        if not out.name:
            self._on_failed("choose a file name for the film")
            return
        if out.suffix.lower() != ".mp4":
            out = out.with_suffix(".mp4")
        # The export works on a snapshot: the user may keep editing while it runs.
        project = self.document.project.model_copy(deep=True)
        folder = self.document.folder
        try:  # plan the snapshot itself, so nothing the worker reads is shared with the UI
            from studio.export.plan import plan_export

            plan = plan_export(project, folder, self.options())
        except StudioError as exc:
            self._on_failed(str(exc))
            return
        from studio.session.export import ExportTargets

        targets = ExportTargets.beside(out, otio=self.otio_check.isChecked(),
                                       edl=self.edl_check.isChecked(),
                                       report=self.report_check.isChecked(),
                                       relative_media=self.relative_check.isChecked(),
                                       xml=self.xml_check.isChecked())
        self.last_result, self.last_error = None, None
        self.show_folder_button.setEnabled(False)
        self.play_button.setEnabled(False)
        self.progress.setRange(0, max(1, plan.total_frames))
        self.progress.setValue(0)
        self.status_label.setText("Starting…")
        self.status_label.setStyleSheet("")
        self._set_running(True)

        def work(progress: Any, cancelled: Any) -> dict[str, Any]:
            from studio.session.export import export_project

            outputs = export_project(project, folder, out, plan, targets, on_progress=progress,
                                     cancelled=cancelled)
            film = outputs.film
            written: dict[str, Any] = {"film": film.path, "mode": film.mode, "frames": film.frames,
                                       "seconds": film.seconds, "notes": list(film.notes)}
            for kind in ("otio", "edl", "xml", "report"):
                if getattr(outputs, kind) is not None:
                    written[kind] = getattr(outputs, kind)
            if outputs.media:
                written["media"] = list(outputs.media)
            written["warnings"] = list(outputs.warnings)  # e.g. a damaged sidecar set aside
            return written

        self._task = run_task(work, parent=self, name="export", on_done=self._on_finished,
                              on_error=self._on_failed, on_progress=self._on_progress,
                              on_cancelled=self._on_cancelled)

    def cancel_export(self) -> None:
        if self._task is not None and self._task.running:
            self._task.cancel()
            self.status_label.setText("Cancelling…")

    def _set_running(self, running: bool) -> None:
        for w in (self.out_edit, self.otio_check, self.relative_check, self.edl_check,
                  self.xml_check, self.fps_combo, self.report_check, self.crossfade_spin,
                  self.burn_check, self.missing_combo, self.reencode_check):
            w.setEnabled(not running)
        self.export_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _finish_task(self) -> None:
        self._task = None
        self._set_running(False)
        self.refresh_preview()  # files may have changed meanwhile; also re-checks Export

    def _on_progress(self, p: Any) -> None:
        self.progress.setMaximum(max(1, p.total))
        self.progress.setValue(p.step)
        verb = {"copying": "Copying", "encoding": "Encoding", "finishing": "Finishing",
                "conforming": "Conforming takes for the timeline:"}.get(p.stage, p.stage)
        shot = f" – {p.message}" if p.message else ""
        eta = eta_text(p.eta_s) or "estimating…"
        self.status_label.setText(f"{verb} frame {p.step} of {p.total}{shot} · {eta}")

    def _on_finished(self, written: dict[str, Any]) -> None:
        self._finish_task()
        self.last_result = written
        self.progress.setValue(self.progress.maximum())
        how = "copied without re-encoding" if written.get("mode") == "copy" else "re-encoded"
        files = [str(written["film"])] + [str(written[k]) for k in ("otio", "edl", "xml", "report")
                                          if k in written]
        media = written.get("media") or []
        if media:
            files.append(f"{len(media)} conformed take(s) in {Path(media[0]).parent}")
        warnings = [f"warning: {w}" for w in written.get("warnings") or []]
        self.status_label.setText(f"Done in {written['seconds']:.1f} s ({how}):\n"
                                  + "\n".join(files + warnings))
        self.show_folder_button.setEnabled(True)
        self.play_button.setEnabled(True)
        self.export_ended.emit("done", written)

    def show_in_folder(self) -> None:
        """Open the folder of the last exported film in the file manager."""
        if self.last_result is not None:
            self._open(Path(self.last_result["film"]).parent, "the folder")

    def play_film(self) -> None:
        """Play the last exported film in the system's video player."""
        if self.last_result is not None:
            self._open(Path(self.last_result["film"]), "the film")

    def _open(self, path: Path, what: str) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self.status_label.setText(f"No application could open {what}: {path}")

    def _on_failed(self, message: str) -> None:
        self._finish_task()
        # The export layer words its suggestions for the CLI; here the film's field is --out.
        message = message.replace("choose another folder with --out",
                                  "choose another folder for the film")
        self.last_error = message
        self.status_label.setText(f"Export failed: {message}")
        self.status_label.setStyleSheet("color: #b04040;")
        self.export_ended.emit("failed", message)

    def _on_cancelled(self) -> None:
        self._finish_task()
        self.progress.setValue(0)
        self.status_label.setText("Cancelled; no file was written.")
        self.export_ended.emit("cancelled", None)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        for doc_sig in self._doc_signals:
            try:
                doc_sig.disconnect(self._on_document_changed)
            except ValueError:
                pass
        if self._task is not None and self._task.running:  # no orphan encode behind the window
            self._task.cancel()
            self._task.wait(10_000)
        super().closeEvent(event)


def _is_scratch(folder: Path) -> bool:
    """The temporary folder of a project not saved yet (deleted when it closes)."""
    from studio.core.userdirs import data_dir

    try:
        Path(folder).resolve().relative_to(data_dir("untitled").resolve())
        return True
    except ValueError:
        return False


def default_export_path(document: ProjectDocument) -> Path:
    """``<project>/exports/<project name>.mp4``; for a project not saved yet, whose folder is a
    temporary one, ``Continuity Studio/Exports/<name>.mp4`` in the documents (or home) folder."""
    folder = document.folder
    if folder is not None and not _is_scratch(folder):
        return default_film_path(folder, document.project.name)
    from studio.export.names import safe_file_name
    from studio.ui.app import projects_root

    return projects_root() / "Exports" / f"{safe_file_name(document.project.name)}.mp4"


def open_export_dialog(main_window: "MainWindow") -> ExportDialog:
    """Show the Export dialog for the main window's project (non-modal; one at a time)."""
    existing = main_window.export_dialog
    if isinstance(existing, ExportDialog) and existing.isVisible() and (
            existing.document is main_window.document):
        existing.raise_()
        existing.activateWindow()
        return existing
    dialog = ExportDialog(main_window.document, main_window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    main_window.export_dialog = dialog
    dialog.show()
    return dialog


def install_export(main_window: "MainWindow") -> QAction:
    """Add File ▸ Export… (Ctrl+E) to ``main_window``, above Quit."""
    action = QAction("&Export…", main_window)
    action.setShortcut(QKeySequence("Ctrl+E"))
    action.setStatusTip("Assemble the film as MP4, with OTIO/EDL and a drift report")
    action.setObjectName("action_export")

    def trigger() -> None:
        try:
            open_export_dialog(main_window)
        except StudioError as exc:
            main_window.show_error(exc)

    action.triggered.connect(trigger)
    menu = main_window.menu("File")
    quit_action = main_window.quit_action
    if quit_action in menu.actions():
        menu.insertAction(quit_action, action)
        menu.insertSeparator(quit_action)
    else:
        menu.addAction(action)
    main_window.export_action = action
    return action
