"""Settings ▸ Models: the local diffusers models the app knows about.

Lists every registered model (name, family, size, memory mode, weight fingerprint, validity,
folder) and offers Add folder…, Add from HF cache…, Download…, Validate, Remove and a per-model
memory mode. Validation reads safetensors headers and hashes a few MB per weight file, and
downloads take minutes, so every registry operation runs in the background
(:func:`studio.ui.tasks.run_task`); the dialog stays responsive and shows progress, and only one
operation runs at a time.

Entry point for the main window: :func:`open_models_dialog`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFileDialog, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QProgressBar, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from studio.core.errors import StudioError
from studio.core.tasks import CancelledFn, Progress, ProgressFn
from studio.engine.memory import MODE_LABELS
from studio.engine.model_library import FAMILIES, MEMORY_MODES, ModelInfo, ModelRegistry
from studio.ui.tasks import TaskHandle, run_task

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

COLUMNS = ("Name", "Family", "Size", "Memory", "Fingerprint", "Status", "Folder")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class ModelsDialog(QDialog):
    # Emitted on the UI thread when a background operation ends: (operation, result or error).
    operation_finished = Signal(str, object)
    models_changed = Signal()

    def __init__(self, registry: ModelRegistry | None = None, parent: QWidget | None = None,
                 hf_cache_dir: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setObjectName("ModelsDialog")
        self.resize(980, 420)
        self.registry = registry if registry is not None else ModelRegistry()
        self.hf_cache_dir = hf_cache_dir
        self._task: TaskHandle | None = None

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._sync_buttons)

        self.add_folder_button = QPushButton("Add folder…")
        self.add_cache_button = QPushButton("Add from HF cache…")
        self.download_button = QPushButton("Download…")
        self.validate_button = QPushButton("Validate")
        self.remove_button = QPushButton("Remove")
        self.memory_combo = QComboBox()
        for mode in MEMORY_MODES:
            self.memory_combo.addItem(MODE_LABELS.get(mode, mode), mode)
        self.memory_combo.setToolTip("How the selected model uses GPU memory; Automatic decides from the "
                                     "free GPU memory when the model is loaded.")
        self.add_folder_button.clicked.connect(self._ask_folder)
        self.add_cache_button.clicked.connect(self._ask_cache)
        self.download_button.clicked.connect(self._ask_download)
        self.validate_button.clicked.connect(self.validate_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.memory_combo.activated.connect(self._memory_chosen)

        buttons = QHBoxLayout()
        for w in (self.add_folder_button, self.add_cache_button, self.download_button,
                  self.validate_button, self.remove_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Memory:"))
        buttons.addWidget(self.memory_combo)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 100)
        bottom.addWidget(self.cancel_button)
        bottom.addStretch(1)  # keeps Close at its size on the right while no progress shows
        bottom.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addLayout(bottom)
        self.refresh()

    # -- table ---------------------------------------------------------------------------------

    def refresh(self, select_id: str | None = None) -> None:
        keep = select_id or self.selected_id()
        models = sorted(self.registry.models(), key=lambda m: m.name.lower())
        self.table.setRowCount(len(models))
        for row, m in enumerate(models):
            fam = FAMILIES.get(m.family)
            status = "ok" if m.valid else f"invalid: {m.problem}"
            cells = (m.name, fam.label if fam else m.family, _size(m.size_bytes),
                     MODE_LABELS.get(m.memory, m.memory), m.fingerprint, status, m.path)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                item.setToolTip(text)
                if not m.valid:
                    item.setForeground(Qt.GlobalColor.red)
                self.table.setItem(row, col, item)
            if m.id == keep:
                self.table.selectRow(row)
        self.table.resizeColumnsToContents()
        self._sync_buttons()

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def select(self, model_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == model_id:
                self.table.selectRow(row)
                return

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def cancel(self) -> None:
        """Stop the running download (the other operations finish: they take seconds)."""
        if self._task is not None:
            self._task.cancel()

    def _sync_buttons(self) -> None:
        selected = self.registry.get(self.selected_id() or "")
        for w in (self.add_folder_button, self.add_cache_button, self.download_button):
            w.setEnabled(not self.busy)
        for w in (self.validate_button, self.remove_button, self.memory_combo):
            w.setEnabled(not self.busy and selected is not None)
        if selected is not None:
            self.memory_combo.setCurrentIndex(max(0, self.memory_combo.findData(selected.memory)))

    def _show(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e05050;" if error else "")

    # -- operations (public: the buttons ask for input and call these) ---------------------------

    def add_folder(self, folder: str | Path) -> None:
        registry = self.registry
        self._start("add", f"Checking {folder}…", lambda _p, _c: registry.add_folder(folder))

    def add_from_hf_cache(self, repo_id: str) -> None:
        registry, cache = self.registry, self.hf_cache_dir
        self._start("add", f"Looking for {repo_id} in the Hugging Face cache…",
                    lambda _p, _c: registry.add_hf_cache(repo_id, cache_dir=cache))

    def download(self, repo_id: str) -> None:
        registry, cache = self.registry, self.hf_cache_dir

        def run(progress: ProgressFn, cancelled: CancelledFn) -> ModelInfo:
            # byte counts: Progress carries Python ints (a Qt int signal would overflow)
            return registry.add_download(
                repo_id, on_progress=lambda d, t, msg: progress(Progress(d, t, "downloading", msg)),
                cancelled=cancelled, cache_dir=cache)

        self._start("download", f"Downloading {repo_id}…", run, cancellable=True)

    def validate_selected(self) -> None:
        model_id = self.selected_id()
        if model_id is None:
            return
        registry = self.registry
        self._start("validate", "Validating…", lambda _p, _c: registry.revalidate(model_id))

    def remove_selected(self) -> None:
        model_id = self.selected_id()
        if model_id is None or self.busy:
            return
        info = self.registry.get(model_id)
        self.registry.remove(model_id)
        self.refresh()
        self._show(f"Removed {info.name if info else model_id} from the list (its files were not deleted).")
        self.models_changed.emit()

    def set_memory(self, mode: str) -> None:
        model_id = self.selected_id()
        if model_id is None or self.busy:  # the worker thread may be writing the list
            return
        try:
            self.registry.set_memory(model_id, mode)
        except StudioError as exc:
            self._show(str(exc), error=True)
            return
        self.refresh(model_id)
        self.models_changed.emit()

    def _memory_chosen(self, index: int) -> None:
        self.set_memory(str(self.memory_combo.itemData(index)))

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder "
                                                        "(the one with model_index.json)")
        if folder:
            self.add_folder(folder)

    def _ask_cache(self) -> None:
        repo, ok = QInputDialog.getText(self, "Add from Hugging Face cache",
                                        "Model id already downloaded (owner/name):")
        if ok and repo.strip():
            self.add_from_hf_cache(repo.strip())

    def _ask_download(self) -> None:
        repo, ok = QInputDialog.getText(self, "Download model", "Hugging Face model id (owner/name), "
                                        "diffusers format:")
        if ok and repo.strip():
            self.download(repo.strip())

    # -- background plumbing ------------------------------------------------------------------

    def _start(self, op: str, message: str, fn: Callable[[ProgressFn, CancelledFn], Any],
               cancellable: bool = False) -> None:
        if self.busy:
            self._show("Another model operation is still running.", error=True)
            return
        self._show(message)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.setVisible(True)
        self.cancel_button.setVisible(cancellable)
        self._task = run_task(
            fn, parent=self, name=f"models-{op}", on_progress=self._on_progress,
            on_done=lambda result: self._on_done(op, result),
            on_error=lambda message: self._on_done(op, StudioError(message)),
            on_cancelled=lambda: self._on_done(op, StudioError(f"{op} cancelled")))
        self._sync_buttons()

    def _on_progress(self, p: Progress) -> None:
        if p.total > 0:  # per mille: byte counts overflow QProgressBar's int range
            self.progress.setRange(0, 1000)
            self.progress.setValue(min(1000, p.step * 1000 // p.total))
        self._show(p.message)

    def _on_done(self, op: str, result: Any) -> None:
        self._task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if isinstance(result, StudioError):
            self._show(str(result), error=True)
            self._sync_buttons()
        else:
            info: ModelInfo = result
            self.refresh(info.id)
            if info.valid:
                fam = FAMILIES.get(info.family)
                self._show(f"{info.name}: {fam.label if fam else info.family}, {_size(info.size_bytes)}, "
                           f"fingerprint {info.fingerprint}.")
            else:
                self._show(f"{info.name}: {info.problem}", error=True)
            self.models_changed.emit()
        self.operation_finished.emit(op, result)

    def wait(self, timeout: float = 30.0) -> bool:
        """Tests: block until the running operation's function returns (its outcome still needs
        the event loop)."""
        return self._task is None or self._task.wait(int(timeout * 1000))



def open_models_dialog(parent: QWidget | None = None, registry: ModelRegistry | None = None) -> ModelsDialog:
    """Show Settings ▸ Models (non-modal) and return the dialog. One dialog per parent window is
    kept and shown again: closing it does not stop a running download (Cancel does), and the
    reopened dialog shows its progress."""
    existing = parent.findChild(ModelsDialog, "ModelsDialog") if parent is not None else None
    if existing is not None and registry is None:
        dialog = existing
        if not dialog.busy:
            dialog.registry.load()
            dialog.refresh()
    else:
        try:
            dialog = ModelsDialog(registry=registry, parent=parent)
        except StudioError as exc:  # e.g. a damaged models.json: say so instead of crashing the menu
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(parent, "Models", str(exc))
            raise
    dialog.show()
    dialog.raise_()
    return dialog


def install_models(main_window: "MainWindow") -> None:
    """Settings ▸ Models…: the model manager for the diffusers backend."""
    from PySide6.QtGui import QAction

    action = QAction("&Models…", main_window)
    action.setStatusTip("Add, validate and remove local image-to-video models")

    def open_dialog() -> None:
        try:
            open_models_dialog(main_window)
        except StudioError:
            pass  # already reported by open_models_dialog

    action.triggered.connect(open_dialog)
    main_window.menu("Settings").addAction(action)
    main_window.models_action = action
