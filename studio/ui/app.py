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
from studio.resources import resource
from studio.ui.main_window import APP_NAME, MainWindow
from studio.ui.qt_libs import xcb_problem
from studio.ui.theme import apply_theme


def projects_root() -> Path:
    """The visible folder new projects, the demo and unsaved projects' exports go to by default:
    ``Continuity Studio`` in the user's documents folder (``XDG_DOCUMENTS_DIR``, when it
    exists), else in the home folder. Under ``CONTINUITY_STUDIO_HOME`` (tests, portable
    installs) it is ``$CONTINUITY_STUDIO_HOME/Continuity Studio``. Not created here."""
    override = os.environ.get("CONTINUITY_STUDIO_HOME")
    if override:
        return Path(override) / APP_NAME
    import platformdirs

    home = Path.home()
    docs = Path(platformdirs.user_documents_dir())
    return (docs if docs.is_dir() and docs != home else home) / APP_NAME


def copy_demo(dest: Path | None = None) -> Path:
    """Copy the bundled demo project (never modified itself) to a visible folder and return it:
    ``dest`` when it is new or an empty folder, a fresh ``Demo <date>`` folder inside ``dest``
    when that is a folder with other files, a fresh ``Demo <date>`` in :func:`projects_root`
    without ``dest``."""
    src = resource("demo")
    if not (src / "project.json").is_file():
        raise StudioError("the demo project is missing from this installation", src)
    if dest is not None:
        dest = Path(dest).expanduser().absolute()
        if dest.exists() and not dest.is_dir():
            raise StudioError("is a file, not a folder for the demo project", dest)
        if (dest / "project.json").exists():
            raise StudioError("is a project already; open it with `continuity-studio FOLDER`, "
                              "or choose a new folder for the demo", dest)
    if dest is None or (dest.is_dir() and any(dest.iterdir())):
        root = dest if dest is not None else projects_root()
        stamp = time.strftime("%Y-%m-%d")
        dest = root / f"Demo {stamp}"
        n = 1
        while dest.exists():
            n += 1
            dest = root / f"Demo {stamp} ({n})"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, dirs_exist_ok=True)  # dest is new or an empty folder
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


def run_app(project: str | None = None, demo: bool = False, demo_dir: Path | None = None) -> int:
    from studio.runtime.backend import register

    register()  # "diffusers" jobs run in the GPU runtime when one is installed (cheap: no torch)
    bench = os.environ.get("STUDIO_BENCH_STARTUP") == "1"
    if QApplication.instance() is None:
        problem = xcb_problem()  # Qt would abort (exit 134) without naming the missing libraries
        if problem:
            print(f"continuity-studio: {problem}", file=sys.stderr)
            return 1
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("ContinuityStudio")
    # Matches the installed .desktop file, so Wayland docks show the right icon and name.
    app.setDesktopFileName("continuity-studio")
    app.setWindowIcon(app_icon())
    apply_theme(app)
    from studio.ui.gc_guard import install as collect_on_ui_thread

    collect_on_ui_thread(app)  # worker threads never destroy Qt objects through the collector
    win = MainWindow()
    install_excepthook(win)
    if bench:
        watcher = _FirstPaint(app)
        win.installEventFilter(watcher)
    win.show()
    target: str | None = project
    if demo or demo_dir is not None:
        try:
            target = str(copy_demo(demo_dir))
            print(f"demo project: {target}", flush=True)  # where it is, for the terminal user
        except StudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            win.show_error(exc)
            target = None
    if target:
        made_demo = target != project

        def open_target() -> None:
            win.open_project(target)
            if made_demo:  # where the copy lives, for the artist who did not start a terminal
                win.statusBar().showMessage(f"Demo project created in {target}", 30_000)

        if bench:
            open_target()
        else:  # after the first paint, so a recovery question appears over the window
            QTimer.singleShot(0, open_target)
    return app.exec()
