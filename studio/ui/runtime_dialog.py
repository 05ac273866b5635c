"""Settings ▸ Install GPU runtime…: detect the GPU, install / verify / repair / remove the managed
torch + diffusers environment, with a progress bar and the installer's log.

Every operation (detection included: nvidia-smi can take a second, the deep status check starts
the runtime's Python) runs in the background (:func:`studio.ui.tasks.run_task`); each log line
comes back as a progress report (``Progress(0, 0, "log", line)``) and is appended to the log
view, and Cancel stops pip at once (the process group is killed). One operation at a time.

Entry point for the main window: :func:`install_runtime`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.tasks import CancelledFn, Progress, ProgressFn
from studio.ui.tasks import TaskHandle, run_task

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

BUILDS = ("Automatic", "cpu", "cu126", "cu128", "cu130", "rocm6.4", "default")


class RuntimeDialog(QDialog):
    operation_finished = Signal(str, object)  # (operation, result | StudioError)
    log_line = Signal(str)  # every line appended to the log view, as it is appended

    def __init__(self, manager: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from studio.runtime.manager import RuntimeManager

        self.setWindowTitle("GPU runtime")
        self.setObjectName("RuntimeDialog")
        self.resize(760, 520)
        self.manager = manager if manager is not None else RuntimeManager()
        self.system_site_packages = False  # developers/tests: reuse this Python's packages
        self.confirm_remove: Callable[[], bool] = self._ask_remove
        self._task: TaskHandle | None = None
        self._op = ""

        self.gpu_label = QLabel("detecting…")
        self.build_combo = QComboBox()
        self.build_combo.addItems(BUILDS)
        self.build_combo.setToolTip("The torch build to install; Automatic picks it from the GPU and driver")
        self.build_label = QLabel("")
        self.build_label.setWordWrap(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.wheelhouse_edit = QLineEdit()
        self.wheelhouse_edit.setPlaceholderText("optional: a folder of wheels to install offline")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        wh = QHBoxLayout()
        wh.addWidget(self.wheelhouse_edit, 1)
        wh.addWidget(browse)
        form = QFormLayout()
        form.addRow("GPU:", self.gpu_label)
        build_row = QHBoxLayout()
        build_row.addWidget(self.build_combo)
        build_row.addWidget(self.build_label, 1)
        form.addRow("torch build:", build_row)
        form.addRow("Offline wheels:", wh)
        form.addRow("Status:", self.status_label)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setObjectName("runtime_log")

        self.install_button = QPushButton("Install")
        self.verify_button = QPushButton("Verify")
        self.repair_button = QPushButton("Repair")
        self.remove_button = QPushButton("Remove")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        close = QPushButton("Close")
        self.install_button.clicked.connect(self.install)
        self.verify_button.clicked.connect(self.verify)
        self.repair_button.clicked.connect(self.repair)
        self.remove_button.clicked.connect(self.remove)
        self.cancel_button.clicked.connect(self.cancel)
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.install_button, self.verify_button, self.repair_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.log_view, 1)
        layout.addLayout(buttons)
        self.refresh_status()
        self._start("detect", self._detect)

    # -- state --

    @property
    def busy(self) -> bool:
        return self._task is not None and self._task.running

    def refresh_status(self, status: dict[str, Any] | None = None) -> None:
        st = status if status is not None else self.manager.status(deep=False)
        s = st.get("state") or {}
        if not st.get("installed"):
            text = "not installed"
            if st.get("problem") and "not installed" not in str(st["problem"]):
                text += f" ({st['problem']})"
        else:
            pk = (st.get("probe") or {}).get("packages") or s.get("packages") or {}
            text = ", ".join(f"{k} {v}" for k, v in pk.items() if k in ("torch", "diffusers", "transformers"))
            device = s.get("device") or "?"
            if s.get("device_name"):
                device += f" ({s['device_name']})"
            verified = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["verified"])) if s.get("verified") else "never"
            text = f"installed: {text}; device {device}; verified {verified}"
            if st.get("problem"):
                text += f"\n⚠ {st['problem']}"
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #d9534f;" if st.get("problem") and st.get("installed") else "")
        self._sync_buttons(st)

    def _sync_buttons(self, st: dict[str, Any] | None = None) -> None:
        busy = self.busy
        installed = self.manager.installed() if st is None else bool(st.get("installed"))
        self.install_button.setEnabled(not busy)
        self.install_button.setText("Reinstall" if installed else "Install")
        self.verify_button.setEnabled(not busy and installed)
        self.repair_button.setEnabled(not busy and installed)
        self.remove_button.setEnabled(not busy and (installed or self.manager.root.exists()))
        self.build_combo.setEnabled(not busy)
        self.wheelhouse_edit.setEnabled(not busy)

    def _append(self, line: str) -> None:
        self.log_view.appendPlainText(line)
        self.log_line.emit(line)

    # -- operations --

    def _start(self, op: str, fn: Callable[[Callable[[str], None], CancelledFn], Any]) -> bool:
        """Run ``fn(log, cancelled)`` in the background; ``log(line)`` lines reach the log view."""
        if self.busy:
            return False
        self._op = op

        def work(progress: ProgressFn, cancelled: CancelledFn) -> Any:
            return fn(lambda line: progress(Progress(0, 0, "log", line)), cancelled)

        self._task = run_task(work, parent=self, name=f"runtime-{op}",
                              on_progress=lambda p: self._append(p.message),
                              on_done=lambda result: self._finished(op, result),
                              on_error=lambda message: self._finished(op, StudioError(message)),
                              on_cancelled=lambda: self._finished(op, StudioError("cancelled")))
        if op != "detect":
            self.progress.setVisible(True)
            self.progress.setFormat(f"{op}…")
            self.cancel_button.setVisible(op in ("install", "repair", "verify"))
        self._sync_buttons()
        return True

    def _finished(self, op: str, result: Any) -> None:
        self._task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if op == "detect":
            if isinstance(result, StudioError):
                self.gpu_label.setText(f"detection failed: {result}")
            else:
                gpu, build, status = result
                self.gpu_label.setText(gpu.describe())
                self.build_label.setText(f"automatic: {build.tag} — {build.reason}")
                self.refresh_status(status)
        elif isinstance(result, StudioError):
            msg = "cancelled" if str(result) == "cancelled" else f"error: {result}"
            self._append(f"{op} {msg}" if msg == "cancelled" else msg)
            self.refresh_status()
        else:
            self._append(f"{op}: done")
            self.refresh_status()
        self._sync_buttons()
        self.operation_finished.emit(op, result)

    def _detect(self, log: Callable[[str], None], cancelled: Callable[[], bool]) -> Any:
        from studio.runtime.manager import choose_torch, detect_gpu

        gpu = detect_gpu()
        return gpu, choose_torch(gpu), self.manager.status(deep=True)

    def _options(self) -> Any:
        from studio.runtime.manager import InstallOptions

        build = self.build_combo.currentText()
        wheelhouse = self.wheelhouse_edit.text().strip() or None
        return InstallOptions(torch=None if build == "Automatic" else build, wheelhouse=wheelhouse,
                              system_site_packages=self.system_site_packages)

    def install(self) -> bool:
        opts = self._options()
        return self._start("install", lambda log, c: self.manager.install(opts, log=log, cancelled=c))

    def verify(self) -> bool:
        return self._start("verify", lambda log, c: self.manager.verify(log=log, cancelled=c))

    def repair(self) -> bool:
        return self._start("repair", lambda log, c: self.manager.repair(log=log, cancelled=c))

    def remove(self) -> bool:
        if self.busy or not self.confirm_remove():
            return False
        return self._start("remove", lambda log, c: self.manager.remove(log=log))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._append("cancelling…")

    def _ask_remove(self) -> bool:
        return QMessageBox.question(
            self, "Remove the GPU runtime",
            f"Delete {self.manager.root} (torch, diffusers and their caches)? Models and projects are kept.",
        ) == QMessageBox.StandardButton.Yes

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of wheels")
        if folder:
            self.wheelhouse_edit.setText(folder)

    def wait(self, timeout: float = 60.0) -> bool:
        """Tests: block until the running operation's function returns (its outcome still needs
        the event loop)."""
        return self._task is None or self._task.wait(int(timeout * 1000))


def open_runtime_dialog(parent: QWidget | None = None, manager: Any = None) -> RuntimeDialog:
    """Show the dialog (non-modal); one per window, shown again while an install runs."""
    existing = parent.findChild(RuntimeDialog, "RuntimeDialog") if parent is not None else None
    dialog = existing if existing is not None and manager is None else RuntimeDialog(manager, parent)
    dialog.show()
    dialog.raise_()
    return dialog


def install_runtime(main_window: "MainWindow") -> None:
    """Settings ▸ Install GPU runtime…"""
    from PySide6.QtGui import QAction

    action = QAction("Install &GPU runtime…", main_window)
    action.setStatusTip("Install, verify, repair or remove torch + diffusers for local generation")
    action.triggered.connect(lambda: open_runtime_dialog(main_window))
    main_window.menu("Settings").addAction(action)
    main_window.runtime_action = action
