"""One writer per project, as the window sees it (:mod:`studio.core.lock`).

Opening a project takes its lock. When another process (or another window of this app: flock
conflicts between two open descriptions even in one process) holds it, :func:`ask_when_locked`
names the holder and offers Open Read-Only / Wait / Cancel. Waiting polls the lock in a worker
(:func:`studio.ui.tasks.run_task`, the app's one background-work mechanism) so the UI thread never
sleeps on it; :class:`LockWaiter` reports on the UI thread when the lock is ours.

A read-only window shows :class:`ReadOnlyBar`: why it is read-only, and how to get write access.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QPushButton, QWidget

from studio.core.lock import ProjectLock, ProjectLocked, held_here
from studio.core.tasks import CancelledFn, ProgressFn
from studio.ui import dialogs
from studio.ui.tasks import TaskHandle, run_task

PROGRAM = "Continuity Studio (app)"
READ_ONLY, WAIT, CANCEL = "read-only", "wait", "cancel"
WAIT_POLL_S = 0.25


# Windows of this process share one lock per folder (the app runs one window per process; a
# second window in the same process, as tests make, is the same writer): counted here, released
# when the last window lets go.
_SHARED: dict[ProjectLock, int] = {}


def try_lock(folder: Path) -> ProjectLock:
    """The project's lock, taken now (or shared with another window of this process); raises
    :class:`ProjectLocked` naming the holder when another process has it."""
    lock = held_here(Path(folder))
    if lock is None or lock not in _SHARED:
        lock = ProjectLock(Path(folder), PROGRAM).acquire(0)
    _SHARED[lock] = _SHARED.get(lock, 0) + 1
    return lock


def adopt(lock: ProjectLock) -> ProjectLock:
    """Count ``lock`` (taken by a :class:`LockWaiter`) as held by one window."""
    _SHARED[lock] = _SHARED.get(lock, 0) + 1
    return lock


def release(lock: ProjectLock) -> None:
    """One window lets go of ``lock``; the last one releases it."""
    n = _SHARED.get(lock, 0) - 1
    if n > 0:
        _SHARED[lock] = n
        return
    _SHARED.pop(lock, None)
    lock.release()


def ask_when_locked(parent: QWidget | None, folder: Path, exc: ProjectLocked) -> str:
    """READ_ONLY, WAIT or CANCEL: what the user wants while ``exc.holder`` has the project."""
    who = exc.holder.describe() if exc.holder is not None else "another program"
    answer = dialogs.ask(
        parent, "Project in use",
        f"“{Path(folder).name}” is in use by {who}.",
        [QMessageBox.Open, QMessageBox.Retry, QMessageBox.Cancel], QMessageBox.Open,
        {QMessageBox.Open: "Open Read-Only", QMessageBox.Retry: "Wait",
         QMessageBox.Cancel: "Cancel"},
        informative="Open Read-Only shows the project without saving to it (Save As still "
                    "works); Wait opens it for writing as soon as the other program lets go.")
    if answer == QMessageBox.Cancel:
        return CANCEL
    if answer == QMessageBox.Retry:
        return WAIT
    return READ_ONLY  # the default button (and what any other answer falls back to)


class _Flag:
    """``ProjectLock.acquire`` polls ``cancelled.is_set()``; a task polls ``cancelled()``."""

    def __init__(self, cancelled: CancelledFn) -> None:
        self._cancelled = cancelled

    def is_set(self) -> bool:
        return self._cancelled()


class LockWaiter(QObject):
    """Waits off the UI thread for a project's lock. ``acquired(lock)`` on the UI thread when it
    is ours; ``stopped(message)`` when the wait was cancelled or failed."""

    acquired = Signal(object)  # studio.core.lock.ProjectLock
    stopped = Signal(str)

    def __init__(self, folder: Path, parent: QObject) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self._handle: TaskHandle | None = None

    @property
    def waiting(self) -> bool:
        return self._handle is not None and self._handle.running

    def start(self) -> None:
        folder = self.folder

        def work(_progress: ProgressFn, cancelled: CancelledFn) -> ProjectLock:
            lock = ProjectLock(folder, PROGRAM)
            try:
                return lock.acquire(wait_s=float("inf"), poll_s=WAIT_POLL_S,
                                    cancelled=_Flag(cancelled))  # type: ignore[arg-type]
            except ProjectLocked:
                if cancelled():
                    from studio.core.tasks import Cancelled

                    raise Cancelled() from None
                raise

        self._handle = run_task(work, parent=self, name="project-lock-wait",
                                on_done=self._on_done, on_error=self.stopped.emit,
                                on_cancelled=lambda: self.stopped.emit("stopped waiting"))

    def _on_done(self, lock: ProjectLock) -> None:
        self.acquired.emit(lock)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def wait(self, msecs: int = 5_000) -> bool:
        """Block until the worker returned (on quit: it polls its cancel flag every
        ``WAIT_POLL_S``)."""
        return self._handle is None or self._handle.wait(msecs)


class ReadOnlyBar(QWidget):
    """The strip over a read-only window: why, and the way out (wait for write access)."""

    def __init__(self, parent: QWidget | None = None,
                 on_wait: Callable[[], None] | None = None,
                 on_stop_wait: Callable[[], None] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("readOnlyBar")
        self.setStyleSheet("#readOnlyBar { background: #5a4a12; } QLabel { color: #f4e6b0; }")
        self.setAutoFillBackground(True)
        # A plain QWidget subclass paints a style-sheet background only with this attribute:
        # without it the pale words sat on the light window colour, unreadable.
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 8, 3)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.wait_button = QPushButton("Wait for Write Access", self)
        self.stop_button = QPushButton("Stop Waiting", self)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.wait_button)
        lay.addWidget(self.stop_button)
        if on_wait is not None:
            self.wait_button.clicked.connect(on_wait)
        if on_stop_wait is not None:
            self.stop_button.clicked.connect(on_stop_wait)
        self.set_state("", waiting=False)
        # Shown and hidden by its tool-bar action (MainWindow): an explicit hide here would
        # keep it hidden inside the bar for good.

    def set_state(self, holder: str, waiting: bool) -> None:
        who = holder or "another program"
        text = (f"Read-only: this project is in use by {who}. Changes cannot be saved here; "
                "use Save As to keep them in another folder.")
        if waiting:
            text += " Waiting for write access…"
        self.label.setText(text)
        self.wait_button.setVisible(not waiting)
        self.stop_button.setVisible(waiting)
