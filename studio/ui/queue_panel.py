"""The queue dock: every job with its position, state, progress/ETA and error. Pending jobs are
reordered by drag and drop or the up/down buttons; any job can be cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (QAbstractTableModel, QByteArray, QMimeData, QModelIndex, QObject,
                            QPersistentModelIndex, QSize, Qt)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QHBoxLayout, QHeaderView,
                               QInputDialog, QLabel, QMenu, QPushButton, QStyle,
                               QStyledItemDelegate, QStyleOptionProgressBar,
                               QStyleOptionViewItem, QTableView, QToolButton, QVBoxLayout,
                               QWidget)

from studio.core.errors import StudioError
from studio.engine.queue import Job, JobState
from studio.ui.tasks import eta_text

if TYPE_CHECKING:
    from studio.ui.generation import GenerationController

JOB_MIME = "application/x-continuity-studio-job"
COLUMNS = ("#", "Shot", "Seed", "Backend", "Status", "Progress", "Details")
COLUMN_TIPS = ("Place in the queue (▶ running now)", "The shot the take is for",
               "The seed of the take (a re-roll gets a new one)",
               "What makes the take: the backend and the model it uses",
               "Waiting, running (loading, generating, encoding), done, failed or cancelled",
               "How far the running take is, and the time left",
               "How long a finished take took, or why it failed")
STAGE_WORDS = {"": "Running", "starting": "Starting", "loading": "Loading model",
               "generating": "Generating", "encoding": "Encoding",
               "waiting": "Waiting for a server", "uploading": "Uploading images",
               "downloading": "Downloading"}
STATE_COLORS = {JobState.RUNNING: "#6aa8ff", JobState.DONE: "#7cc47c",
                JobState.FAILED: "#e07070", JobState.CANCELLED: "#a0a0a0",
                JobState.PENDING: "#d0d0d0"}
GAVE_UP_COLOR = "#d8b060"
ProgressRole = Qt.UserRole + 1
PREVIEW_HEIGHT = 120  # px: the live preview of a running ComfyUI job


class QueueModel(QAbstractTableModel):
    def __init__(self, controller: "GenerationController", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._jobs: list[Job] = []
        self._model_names: dict[str, str] = {}
        controller.queue_changed.connect(self.reload)
        controller.job_progress.connect(self._on_progress)
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self._jobs = self.controller.queue.jobs()
        self._model_names.clear()  # the Models dialog may have renamed or added models
        self.endResetModel()

    def backend_text(self, job: Job) -> str:
        """The backend and model the job uses (a finished one: what its take was made with),
        in the words the app uses elsewhere: "Preview", "Wan 2.1 I2V (diffusers)"."""
        shot = self.controller.document.project.shot(job.shot_id)
        take = shot.take(job.take_id) if shot is not None else None
        if take is not None:
            backend, model = take.backend, take.model
        else:
            backend = job.backend or (shot.backend if shot is not None else None)
            model = job.model or (shot.model if shot is not None else None)
        if backend is None:
            text = "—"
        elif backend == "preview":
            text = "Preview"
        elif backend == "diffusers":
            text = (f"{self._model_name(model)} (diffusers)" if model
                    else "diffusers (no model chosen)")
        elif backend == "comfyui":
            text = f"{self._workflow_name(model)} (ComfyUI)"
            if job.state is JobState.RUNNING and job.where:
                text += f" on {job.where}"
        else:
            text = backend
        if job.draft:
            size = f" {job.width}×{job.height}" if job.width and job.height else ""
            text += f" · draft{size}"
        return text

    def _workflow_name(self, model: str | None) -> str:
        key = f"comfyui:{model}"
        if key not in self._model_names:
            from studio.engine.registry import get_backend

            try:
                self._model_names[key] = get_backend("comfyui").workflow(model).manifest.label  # type: ignore[attr-defined]
            except StudioError:
                self._model_names[key] = model or "default workflow"
        return self._model_names[key]

    def _model_name(self, model: str) -> str:
        """A registered model's family ("Wan 2.1 I2V") or name, else the folder's name."""
        if model not in self._model_names:
            from studio.engine.model_library import FAMILIES, ModelRegistry

            name = Path(model).name or model
            try:
                for info in ModelRegistry().models():
                    if model in (info.path, info.id):
                        fam = FAMILIES.get(info.family)
                        name = fam.label if fam is not None else info.name
                        break
            except StudioError:  # a damaged model list: the folder's name still says it
                pass
            self._model_names[model] = name
        return self._model_names[model]


    def status_text(self, job: Job) -> str:
        if job.gave_up:
            return "Given up"
        if job.state is JobState.RUNNING:
            if job.cancel_requested:
                return "Cancelling…"
            return STAGE_WORDS.get(job.stage, job.stage.capitalize())
        if job.state is JobState.PENDING:
            return "Waiting (queue paused)" if self.controller.queue.paused else "Waiting"
        return {JobState.DONE: "Done", JobState.FAILED: "Failed",
                JobState.CANCELLED: "Cancelled"}[job.state]

    def progress_text(self, job: Job) -> str:
        if job.state is JobState.RUNNING and job.total:
            eta = eta_text(job.eta_s)
            return f"{round(100 * job.fraction)}%" + (f" · {eta}" if eta else "")
        return "100%" if job.state is JobState.DONE else ""

    def details_text(self, job: Job) -> str:
        """One line (rows keep their height; the column elides): what went wrong first for a
        failed job, else the series' rule or the segment, then how the job went."""
        rule = job.kind_text
        if job.state is JobState.FAILED:
            first = job.error.splitlines()[0] if job.error else ""
            return " · ".join(b for b in (first, rule) if b)
        state = ""
        if job.state is JobState.DONE and job.timings.get("total_s"):
            state = f"took {job.timings['total_s']:.1f} s"
        elif job.state is JobState.RUNNING and job.total:
            unit = "frames" if job.stage == "encoding" else "steps"
            state = f"{job.step} of {job.total} {unit}"
        elif job.requeued and job.state is JobState.PENDING:
            state = "re-queued after an interruption"
        return " · ".join(b for b in (rule, state) if b)

    def _on_progress(self, job_id: str) -> None:
        for row, job in enumerate(self._jobs):
            if job.id == job_id:
                self.dataChanged.emit(self.index(row, 4), self.index(row, 6))
                return

    def job_at(self, row: int) -> Job | None:
        return self._jobs[row] if 0 <= row < len(self._jobs) else None

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:
        if orientation == Qt.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.DisplayRole:
                return COLUMNS[section]
            if role == Qt.ToolTipRole:
                return COLUMN_TIPS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.DisplayRole) -> Any:
        job = self.job_at(index.row())
        if job is None:
            return None
        col = index.column()
        if role == Qt.DisplayRole:
            if col == 0:
                pos = self.controller.queue.position(job.id)
                return "▶" if job.state is JobState.RUNNING else (str(pos) if pos else "")
            if col == 1:  # a series' try stays in sight when the dock shows only this column
                extra = [f"segment {job.segment_number}"] if job.segment is not None else []
                extra += [job.try_text] if job.try_text else []
                return " · ".join([job.label or job.shot_id, *extra])
            if col == 2:
                return str(job.seed)
            if col == 3:
                return self.backend_text(job)
            if col == 4:
                return self.status_text(job)
            if col == 5:
                return self.progress_text(job)
            if col == 6:
                return self.details_text(job)
        if role == ProgressRole and col == 5:
            if job.state is JobState.RUNNING:
                return job.fraction
            return 1.0 if job.state is JobState.DONE else None
        if role == Qt.ForegroundRole and col == 4:
            return QColor(GAVE_UP_COLOR if job.gave_up else STATE_COLORS[job.state])
        if role == Qt.ToolTipRole:
            tip = (f"{job.label or job.shot_id} · seed {job.seed} · {self.backend_text(job)}"
                   f"\ntake {job.take_id}\n{self.status_text(job)}")
            rule = job.kind_text
            if rule:
                tip += f"\n{rule}"
            if job.until_identity is not None and job.early_stop:
                tip += "\ngives a take up early when its previews show another person"
            if job.error:
                tip += f"\nerror: {job.error}"
            notes = [n for n in job.notes if "\n" not in n]
            if notes:
                tip += "\n" + "\n".join(notes[-3:])
            return tip
        return None

    # -- drag and drop reordering of pending jobs ------------------------------------------
    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = Qt.ItemIsEnabled | Qt.ItemIsSelectable
        job = self.job_at(index.row()) if index.isValid() else None
        if job is not None and job.state is JobState.PENDING:
            base |= Qt.ItemIsDragEnabled
        if not index.isValid() or job is not None and job.state is JobState.PENDING:
            base |= Qt.ItemIsDropEnabled
        return base

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.MoveAction | Qt.CopyAction

    def mimeTypes(self) -> list[str]:
        return [JOB_MIME]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:
        md = QMimeData()
        rows = sorted({i.row() for i in indexes})
        job = self.job_at(rows[0]) if rows else None
        if job is not None:
            md.setData(JOB_MIME, QByteArray(job.id.encode()))
        return md

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                     parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not data.hasFormat(JOB_MIME):
            return False
        job_id = bytes(data.data(JOB_MIME).data()).decode()
        if row < 0:
            row = parent.row() if parent.isValid() else len(self._jobs)
        # Translate a table row into a place among pending jobs.
        pending = [j.id for j in self._jobs if j.state is JobState.PENDING]
        before = [j.id for j in self._jobs[:row] if j.state is JobState.PENDING and j.id != job_id]
        target = len(before)
        if job_id not in pending:
            return False
        try:
            self.controller.move(job_id, target)
        except StudioError:
            return False
        return False  # the model reloads itself; the view must not delete the dragged row


class _ProgressDelegate(QStyledItemDelegate):
    def paint(self, painter: Any, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        frac = index.data(ProgressRole)
        if frac is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(frac * 1000)
        bar.text = index.data(Qt.DisplayRole) or ""
        bar.textVisible = True
        QApplication.style().drawControl(QStyle.CE_ProgressBar, bar, painter)


class QueuePanel(QWidget):
    def __init__(self, controller: "GenerationController", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queue_panel")
        self.controller = controller
        self.model = QueueModel(controller, self)
        self.view = QTableView()
        self.view.setObjectName("queue_view")
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.view.setDragEnabled(True)
        self.view.setAcceptDrops(True)
        self.view.setDropIndicatorShown(True)
        self.view.setDragDropMode(QAbstractItemView.DragDrop)
        self.view.setDefaultDropAction(Qt.CopyAction)  # never let the view remove rows itself
        self.view.verticalHeader().hide()
        # One line a job: long details (a series' rule, an error) end in "…" (the tooltip has
        # them whole) instead of wrapping into rows that grow or clip.
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.ElideRight)
        self.view.setItemDelegateForColumn(5, _ProgressDelegate(self.view))
        hh = self.view.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setStretchLastSection(True)
        self.view.setContextMenuPolicy(Qt.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)

        self.note = QLabel("")
        self.note.setObjectName("queue_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("background: #3a3320; color: #f0d890; padding: 4px;")
        self.note_close = QToolButton()
        self.note_close.setText("✕")
        self.note_close.setToolTip("Dismiss")
        self.note_close.clicked.connect(self.hide_note)
        note_row = QHBoxLayout()
        note_row.addWidget(self.note, 1)
        note_row.addWidget(self.note_close)
        self.note_box = QWidget()
        self.note_box.setLayout(note_row)
        note_row.setContentsMargins(0, 0, 0, 0)
        self.note_box.hide()

        self.summary = QLabel("")
        self.up_button = QPushButton("▲")
        self.up_button.setToolTip("Move the selected job earlier")
        self.down_button = QPushButton("▼")
        self.down_button.setToolTip("Move the selected job later")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_all_button = QPushButton("Cancel All")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.clear_button = QPushButton("Clear Finished")
        self.up_button.clicked.connect(lambda: self._move(-1))
        self.down_button.clicked.connect(lambda: self._move(+1))
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.cancel_all_button.clicked.connect(lambda: self._guard(controller.cancel_all))
        self.pause_button.toggled.connect(lambda on: self._guard(lambda: controller.set_paused(on)))
        self.clear_button.clicked.connect(lambda: self._guard(controller.clear_history))
        # Two rows, so the panel fits a side column (~280 px) next to the bible.
        buttons = QVBoxLayout()
        for group in ((self.up_button, self.down_button, self.cancel_button, self.pause_button),
                      (self.cancel_all_button, self.clear_button)):
            row = QHBoxLayout()
            for b in group:
                row.addWidget(b)
            row.addStretch(1)
            buttons.addLayout(row)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #e07070")
        self.error.setWordWrap(True)
        self.error.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.note_box)
        lay.addWidget(self.summary)
        # The running job's live preview (ComfyUI sends the sampler's latest image); hidden
        # while nothing is being previewed.
        self.preview = QLabel("")
        self.preview.setObjectName("queue_preview")
        self.preview.setAlignment(Qt.AlignCenter)
        self.preview.hide()
        self._preview_job: str | None = None
        lay.addWidget(self.preview)
        controller.job_preview.connect(self.show_preview)
        lay.addWidget(self.view, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.error)
        controller.queue_changed.connect(self._refresh)
        controller.note.connect(self.show_note)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._refresh_buttons())
        self.model.modelReset.connect(self._refresh_buttons)
        for text in controller.notes:
            self.show_note(text)
        self._refresh()

    # -- notes ------------------------------------------------------------------------------
    def show_note(self, text: str) -> None:
        current = self.note.text() if self.note_box.isVisibleTo(self) else ""
        self.note.setText(f"{current}\n{text}".strip())
        self.note_box.show()

    def hide_note(self) -> None:
        self.note.setText("")
        self.note_box.hide()

    def show_preview(self, job_id: str, data: bytes) -> None:
        """Show a running job's latest preview image (decoded here: a few KB of JPEG)."""
        from PySide6.QtGui import QPixmap

        pix = QPixmap()
        if not pix.loadFromData(data):
            return  # a damaged preview is not worth a message: the next one replaces it
        # Small enough to leave the job list in view (the dock may be short).
        box = QSize(max(120, min(320, self.width() - 16)),
                    max(64, min(PREVIEW_HEIGHT, self.height() // 4)))
        self.preview.setPixmap(pix.scaled(box, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        job = self.controller.queue.get(job_id)
        self.preview.setToolTip(f"Live preview of {job.label if job else 'the running job'} "
                                "(from the ComfyUI sampler)")
        self._preview_job = job_id
        self.preview.show()

    # -- helpers ----------------------------------------------------------------------------
    def _guard(self, fn: Any) -> None:
        self.error.hide()
        try:
            fn()
        except StudioError as exc:
            self.error.setText(str(exc))
            self.error.show()

    def selected_job(self) -> Job | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.job_at(rows[0].row()) if rows else None

    def select_job(self, job_id: str) -> None:
        for row in range(self.model.rowCount()):
            job = self.model.job_at(row)
            if job is not None and job.id == job_id:
                self.view.selectRow(row)
                return

    def _move(self, delta: int) -> None:
        job = self.selected_job()
        if job is None:
            return
        job_id = job.id
        self._guard(lambda: self.controller.move_by(job_id, delta))
        self.select_job(job_id)

    def cancel_selected(self) -> None:
        job = self.selected_job()
        if job is not None:
            self._guard(lambda: self.controller.cancel(job.id))

    def _refresh(self) -> None:
        q = self.controller.queue
        pending = len(q.pending())
        running_jobs = q.running_jobs()
        parts = []
        if len(running_jobs) > 1:
            parts.append(f"{len(running_jobs)} running")
        elif running_jobs:
            parts.append(f"running: {running_jobs[0].label or running_jobs[0].shot_id}")
        if self._preview_job is not None and self._preview_job not in {j.id for j in running_jobs}:
            self._preview_job = None  # its job ended: the preview goes
            self.preview.clear()
            self.preview.hide()
        parts.append(f"{pending} waiting")
        if q.paused:
            parts.append("PAUSED")
        self.summary.setText(" · ".join(parts))
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(q.paused)
        self.pause_button.setText("Resume" if q.paused else "Pause")
        self.pause_button.blockSignals(False)
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        job = self.selected_job()
        pending = job is not None and job.state is JobState.PENDING
        self.up_button.setEnabled(pending)
        self.down_button.setEnabled(pending)
        self.cancel_button.setEnabled(job is not None and not job.state.finished)

    def _context_menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        job = self.model.job_at(index.row()) if index.isValid() else None
        if job is None:
            return
        menu = QMenu(self)
        if job.state is JobState.PENDING:
            menu.addAction("Move to Top", lambda: self._guard(lambda: self.controller.move(job.id, 0)))
            menu.addAction("Edit Seed…", lambda: self._edit_seed(job))
        if not job.state.finished:
            menu.addAction("Cancel", lambda: self._guard(lambda: self.controller.cancel(job.id)))
        menu.exec(self.view.viewport().mapToGlobal(pos))

    def _edit_seed(self, job: Job) -> None:
        seed, ok = QInputDialog.getInt(self, "Edit seed", f"Seed for {job.label}:", job.seed, 0,
                                       2**31 - 1)
        if ok:
            self._guard(lambda: self.controller.edit(job.id, seed=int(seed)))
