"""File ▸ Export: output path, formats, crossfade, burn-in, missing-take policy, a live preview of
what each shot will be (copied, conformed, re-encoded, held as a still, skipped), and the export
itself in the background (:func:`studio.ui.tasks.run_task`) with progress, ETA and a cancel that
leaves no partial file.

Entry point for the main window: :func:`open_export_dialog`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
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
        self.resize(760, 560)
        self.document = document
        self._plan: Any = None
        self._task: TaskHandle | None = None
        self.last_result: dict[str, Any] | None = None
        self.last_error: str | None = None

        folder = document.folder
        default = (default_film_path(folder, document.project.name)
                   if folder is not None else Path.home() / "film.mp4")
        self.out_edit = QLineEdit(str(default))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)

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
        form.addRow("Timeline", otio_row)
        form.addRow("", self.edl_check)
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
                    self.edl_check.toggled):
            sig.connect(self._replan_timer.start)
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
    def options(self) -> Any:
        from studio.export.plan import ExportOptions

        return ExportOptions(crossfade=self.crossfade_spin.value(),
                             burn_in=self.burn_check.isChecked(),
                             missing=self.missing_combo.currentData(),
                             force_reencode=self.reencode_check.isChecked())

    def refresh_preview(self) -> None:
        from studio.export.plan import plan_export
        from studio.export.interchange import check_edl

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
        if self.edl_check.isChecked():
            try:
                check_edl(plan)
            except StudioError as exc:
                edl_problem = str(exc)
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
                                       relative_media=self.relative_check.isChecked())
        self.last_result, self.last_error = None, None
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
            for kind in ("otio", "edl", "report"):
                if getattr(outputs, kind) is not None:
                    written[kind] = getattr(outputs, kind)
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
                  self.report_check, self.crossfade_spin, self.burn_check, self.missing_combo,
                  self.reencode_check):
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
        verb = {"copying": "Copying", "encoding": "Encoding", "finishing": "Finishing"}.get(
            p.stage, p.stage)
        shot = f" – {p.message}" if p.message else ""
        eta = eta_text(p.eta_s) or "estimating…"
        self.status_label.setText(f"{verb} frame {p.step} of {p.total}{shot} · {eta}")

    def _on_finished(self, written: dict[str, Any]) -> None:
        self._finish_task()
        self.last_result = written
        self.progress.setValue(self.progress.maximum())
        how = "copied without re-encoding" if written.get("mode") == "copy" else "re-encoded"
        files = [str(written["film"])] + [str(written[k]) for k in ("otio", "edl", "report")
                                          if k in written]
        self.status_label.setText(f"Done in {written['seconds']:.1f} s ({how}):\n"
                                  + "\n".join(files))
        self.export_ended.emit("done", written)

    def _on_failed(self, message: str) -> None:
        self._finish_task()
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
