"""Application start-up: ``run_app(project, demo)``.

Start-up is kept fast by importing only Qt and the pure-Python core here; Pillow, numpy and the
generation stack load later, in worker threads, when first needed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QEvent, QObject, QSize, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from studio.core.errors import StudioError
from studio.core.userdirs import data_dir
from studio.resources import resource
from studio.ui.main_window import APP_NAME, MainWindow
from studio.ui.theme import apply_theme


def copy_demo(dest_root: Path | None = None) -> Path:
    """Copy the bundled demo project to a fresh folder (the bundled one is never modified)."""
    src = resource("demo")
    if not (src / "project.json").is_file():
        raise StudioError("the demo project is missing from this installation", src)
    root = dest_root if dest_root is not None else data_dir("demo-projects")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = root / f"demo-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = root / f"demo-{stamp}-{n}"
    try:
        shutil.copytree(src, dest)
    except OSError as exc:
        raise StudioError(f"cannot copy the demo project: {exc.strerror or exc}", dest) from None
    return dest


class _FirstPaint(QObject):
    """For the start-up benchmark: print when the window has painted once, then quit."""

    def __init__(self, app: QApplication) -> None:
        super().__init__()
        self._app = app
        self._done = False

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if not self._done and event.type() == QEvent.Paint:
            self._done = True
            QTimer.singleShot(0, self._report)  # after this paint has finished
        return False

    def _report(self) -> None:
        print(f"STARTUP_SHOWN {time.time()}", flush=True)
        self._app.exit(0)


def install_excepthook(win: MainWindow) -> None:
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        previous(exc_type, exc, tb)  # keep the traceback on the console
        try:
            win.report_exception(exc_type, exc, tb)
        except Exception:  # never recurse into the hook
            pass

    sys.excepthook = hook


def app_icon() -> QIcon:
    """The application icon from resources/icons (PNG sizes; Qt loads a size only when drawn)."""
    from studio.resources import resource

    icon = QIcon()
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        path = resource("icons", f"continuity-studio-{size}.png")
        if path.is_file():
            icon.addFile(str(path), QSize(size, size))
    return icon


def run_app(project: str | None = None, demo: bool = False) -> int:
    from studio.runtime.backend import register

    register()  # "diffusers" jobs run in the GPU runtime when one is installed (cheap: no torch)
    bench = os.environ.get("STUDIO_BENCH_STARTUP") == "1"
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("ContinuityStudio")
    # Matches the installed .desktop file, so Wayland docks show the right icon and name.
    app.setDesktopFileName("continuity-studio")
    app.setWindowIcon(app_icon())
    apply_theme(app)
    win = MainWindow()
    install_excepthook(win)
    if bench:
        watcher = _FirstPaint(app)
        win.installEventFilter(watcher)
    win.show()
    target: str | None = project
    if demo:
        try:
            target = str(copy_demo())
        except StudioError as exc:
            win.show_error(exc)
            target = None
    if target:
        if bench:
            win.open_project(target)
        else:  # after the first paint, so a recovery question appears over the window
            QTimer.singleShot(0, lambda: win.open_project(target))
    return app.exec()
