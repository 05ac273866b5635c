"""The main window: character bible (left), inspector (right), storyboard (bottom), viewer
(centre), menus, project lifecycle (new / open / save / save as / autosave / recovery).

Stable integration points for other features: ``document``, ``undo_stack``, ``events``,
``thumbnails``, ``selected_shot_id()``, ``shot_selected``, ``project_opened``, ``menu(name)``,
``add_dock(title, widget, area)``, ``set_project(document)``, ``show_error(exc_or_text)``.
"""

from __future__ import annotations

import os
import re
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (QByteArray, QEvent, QEventLoop, QObject, QSettings, QSize, Qt, QTimer,
                            Signal)
from PySide6.QtGui import (QAction, QCloseEvent, QGuiApplication, QKeySequence, QShowEvent,
                           QUndoStack)
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox,
                               QToolBar, QToolButton, QUndoView, QWidget)

from studio import __version__
from studio.core.document import ProjectDocument
from studio.core.errors import ProjectError, StudioError, error_text
from studio.core.lock import ProjectLock, ProjectLocked
from studio.core.model import Project, new_id
from studio.core.persistence import (AUTOSAVE_FILE, PROJECT_FILE, discard_recovery, ensure_layout,
                                     load_project, load_recovery, project_file, recovery_available)
from studio.core.userdirs import data_dir
from studio.session.session import Session
from studio.ui import dialogs
from studio.ui.bible_panel import BiblePanel
from studio.ui.events import DocumentEvents
from studio.ui.session_bridge import SessionBridge
from studio.ui.inspector import Inspector
from studio.ui import project_lock as locks
from studio.ui.project_lock import (READ_ONLY, WAIT, LockWaiter, ReadOnlyBar, ask_when_locked,
                                    try_lock)
from studio.ui.settings import add_recent, app_settings, recent_projects, remove_recent
from studio.ui.storyboard import Storyboard
from studio.ui.start_image_view import StartImageView
from studio.ui.workers import ImportService, ThumbnailService

if TYPE_CHECKING:
    from PySide6.QtCore import QObject
    from PySide6.QtWidgets import QStackedWidget

    from studio.ui.export_dialog import ExportDialog
    from studio.ui.generation import GenerationController
    from studio.ui.identity_widgets import AnalysisController, PromptLintList
    from studio.ui.queue_panel import QueuePanel
    from studio.ui.takes_panel import TakesPanel
    from studio.ui.viewer.viewer import ViewerWidget

APP_NAME = "Continuity Studio"
AUTOSAVE_MS = 60_000
DEFAULT_SIZE = (1440, 900)  # first start; bounded by the screen (_default_size)
MENU_NAMES = ("File", "Edit", "View", "Generate", "Settings", "Help")
# A project.json above this is parsed in a worker while the window keeps painting.
BIG_PROJECT_BYTES = 256 * 1024


def untitled_root() -> Path:
    return data_dir("untitled")


def new_untitled_document() -> ProjectDocument:
    """An empty project in a scratch folder, so images can be imported before Save As."""
    folder = untitled_root() / new_id()
    ensure_layout(folder)
    return ProjectDocument(Project(name="Untitled"), folder)


def _is_inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


# Imported by a worker as the window starts: a first import on the UI thread (numpy, PyAV, the
# landmark module behind the face checks) costs 0.1–0.4 s, a visible freeze while a project
# opens. Only modules the window is about to need anyway.
PRELOAD_MODULES = ("numpy", "PIL.Image", "av", "studio.identity.landmarks", "studio.media.video",
                   "studio.media.frames", "studio.identity.record")


def _preload_libraries(parent: QWidget) -> None:
    import importlib

    from studio.ui.tasks import run_task

    def work(_progress: object, cancelled: object) -> None:
        for name in PRELOAD_MODULES:
            if cancelled():  # type: ignore[operator]
                return
            try:
                importlib.import_module(name)
            except ImportError:  # an optional library: its feature says so when used
                pass
        from studio.identity.record import AnalysisRecord

        AnalysisRecord.model_rebuild()  # its validator is built on first use: 0.05 s

    run_task(work, parent=parent, name="preload", on_error=lambda _m: None)


AFTER_PAINT_MS = 100


class _AfterFirstPaint(QObject):
    """Calls ``then`` once, on the event-loop turn after its window's first paint."""

    def __init__(self, win: QWidget, then: Callable[[], None]) -> None:
        super().__init__(win)
        self._then = then

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self._then is not None:
            then, self._then = self._then, None
            obj.removeEventFilter(self)
            # Not 0 ms: a zero timer queued by another watcher of the same paint (the start-up
            # benchmark's) must come first, and timers fire in order of their deadlines.
            QTimer.singleShot(AFTER_PAINT_MS, self, then)
        return False


class MainWindow(QMainWindow):
    shot_selected = Signal(str)
    character_selected = Signal(str)
    project_opened = Signal(object)  # the new ProjectDocument (after set_project)

    # What the features installed by _install_extensions() add: typed, so a feature reaches
    # another through an attribute the type checker knows, never through getattr strings.
    generation: "GenerationController"
    queue_panel: "QueuePanel"
    takes_panel: "TakesPanel"
    take_viewer: "ViewerWidget"
    centre_stack: "QStackedWidget"
    identity: "AnalysisController"
    analyze_action: QAction
    reference_quality: "QObject"
    prompt_lint: "PromptLintList"
    export_action: QAction
    export_dialog: "ExportDialog | None" = None
    models_action: QAction
    runtime_action: QAction
    generators_action: QAction
    landmarks_action: QAction
    landmarks_first_use: "QObject"  # landmarks_dialog: asks once, after the first paint

    def __init__(self, document: ProjectDocument | None = None,
                 settings: QSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("MainWindow")
        self.settings = settings if settings is not None else app_settings()
        self.undo_stack = QUndoStack(self)
        self.events = DocumentEvents(self)
        self.thumbnails = ThumbnailService(self)
        self.importer = ImportService(self)
        self.document = document if document is not None else new_untitled_document()
        self._untitled = document is None
        self._external_dirty = False  # edits made outside the undo stack (engine, analysis)
        self._stack_rev = self.document.revision
        self.errors: list[str] = []  # every message shown, newest last (status/tests)
        self._error_box: QMessageBox | None = None
        self._menus: dict[str, QMenu] = {}
        # One writer per project: the lock of the open project (None: untitled, read-only, or
        # given by the caller), read-only mode while another writer holds it.
        self.project_lock: ProjectLock | None = None
        self.read_only = False
        self.lock_holder = ""
        self._lock_waiter: LockWaiter | None = None
        self._opening = False
        self.events.attach(self.document)
        # The project at work (Qt-free): queue, analyses, one event stream; views listen to it
        # through the bridge, which outlives the session when another project opens.
        self.session_bridge = SessionBridge(self)
        self.session = Session(self.document)
        self.session_bridge.attach(self.session)

        self.setWindowTitle(APP_NAME)
        self.setDockNestingEnabled(True)
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
        self.viewer = StartImageView(self)
        self.setCentralWidget(self.viewer)
        self._build_menus()
        self.bible = BiblePanel(self)
        self.inspector = Inspector(self)
        self.storyboard = Storyboard(self)
        self.bible_dock = self.add_dock("Character Bible", self.bible, Qt.LeftDockWidgetArea)
        self.inspector_dock = self.add_dock("Inspector", self.inspector, Qt.RightDockWidgetArea)
        self.storyboard_dock = self.add_dock("Storyboard", self.storyboard, Qt.BottomDockWidgetArea)
        self.history = QUndoView(self.undo_stack, self)
        self.history.setEmptyLabel("<opened>")
        self.history_dock = self.add_dock("History", self.history, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(self.inspector_dock, self.history_dock)
        self.inspector_dock.raise_()
        self._build_edit_actions()
        self._build_status_bar()
        self._build_read_only_bar()

        self.storyboard.shot_selected.connect(self._on_shot_selected)
        self.bible.character_selected.connect(self._on_character_selected)
        self.bible.rename_requested.connect(self._rename_character)
        self.undo_stack.cleanChanged.connect(lambda _c: self._update_title())
        self.undo_stack.indexChanged.connect(self._on_stack_index)
        self.events.changed.connect(self._on_doc_changed)
        self.events.project_changed.connect(self._update_title)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()

        self._install_extensions()
        self._preloaded = False  # the libraries of an open are imported after the first show
        self.resize(self._default_size())
        if not self.restore_layout():
            self._default_layout()
        self._on_shot_selected(self.storyboard.selected_shot_id() or "")
        self._on_character_selected(self.bible.current_character_id() or "")
        self._update_title()

    def _install_extensions(self) -> None:
        """Features built in other modules attach themselves here (menus, docks, badges);
        each is one line calling that module's ``install_*(self)``."""
        # Imported here, not at module level, so each feature module can import MainWindow's
        # module without a cycle. None of them may pull heavy libraries in (test_architecture).
        from studio.ui.export_dialog import install_export
        from studio.ui.generation import install_generation
        from studio.ui.identity_widgets import install_identity
        from studio.ui.models_dialog import install_models
        from studio.ui.generators_dialog import install_generators
        from studio.ui.landmarks_dialog import install_landmarks
        from studio.ui.runtime_dialog import install_runtime
        from studio.ui.viewer.install import install_viewer

        self.generation = install_generation(self)  # first: the viewer's re-roll uses it
        self.take_viewer = install_viewer(self)
        install_export(self)
        self.identity = install_identity(self)
        install_models(self)
        install_runtime(self)
        install_generators(self)
        self.landmarks_action = install_landmarks(self)  # and the question at first use

    # -- integration points ---------------------------------------------------------------------
    def menu(self, name: str) -> QMenu:
        return self._menus[name]

    def add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName("dock_" + re.sub(r"\W+", "_", title.lower()).strip("_"))
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetClosable
                         | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self._menus["View"].addAction(dock.toggleViewAction())
        return dock

    def selected_shot_id(self) -> str | None:
        return self.storyboard.selected_shot_id()

    def select_shot(self, shot_id: str | None) -> None:
        self.storyboard.select_shot(shot_id)

    def show_error(self, exc_or_text: BaseException | str) -> None:
        """Report a problem in the status bar and a (non-blocking) dialog; the app keeps going."""
        text = error_text(exc_or_text)
        self.errors.append(text)
        self.statusBar().showMessage(text.splitlines()[0], 15_000)
        if self._error_box is None:
            box = QMessageBox(self)
            box.setIcon(QMessageBox.Warning)
            box.setWindowTitle(f"{APP_NAME}: problem")
            box.setStandardButtons(QMessageBox.Ok)
            box.setWindowModality(Qt.WindowModal)
            self._error_box = box
        box = self._error_box
        if box.isVisible():  # several problems in a row: one dialog listing them all
            box.setText(box.text() + "\n\n" + text)
        else:
            box.setText(text)
        box.open()

    @property
    def last_error(self) -> str | None:
        return self.errors[-1] if self.errors else None

    # -- menus ----------------------------------------------------------------------------------
    def _action(self, menu: QMenu, text: str, slot: object,
                shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        for name in MENU_NAMES:
            self._menus[name] = bar.addMenu("&" + name)
        f = self._menus["File"]
        self.new_action = self._action(f, "&New", self.new_project, QKeySequence.New)
        self.open_action = self._action(f, "&Open…", lambda: self.open_project(), QKeySequence.Open)
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        f.addSeparator()
        self.save_action = self._action(f, "&Save", self.save, QKeySequence.Save)
        self.save_as_action = self._action(f, "Save &As…", lambda: self.save_as(),
                                           QKeySequence.SaveAs)
        f.addSeparator()
        self.quit_action = self._action(f, "&Quit", self.close, QKeySequence.Quit)
        self.quit_action.setMenuRole(QAction.QuitRole)

        e = self._menus["Edit"]
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence(QKeySequence.Redo), QKeySequence("Ctrl+Y")])
        e.addAction(self.undo_action)
        e.addAction(self.redo_action)
        e.addSeparator()

        h = self._menus["Help"]
        from studio.ui.help import install_help  # User Guide, Keyboard Shortcuts, shortcut tooltips

        self.user_help = install_help(self, h)
        about = self._action(h, f"&About {APP_NAME}", self.about)
        about.setMenuRole(QAction.AboutRole)

    def _build_edit_actions(self) -> None:
        e = self._menus["Edit"]
        self._action(e, "Add &Shot", self.storyboard.add_shot, "Ctrl+Shift+N")
        self._action(e, "&Duplicate Shot", self.storyboard.duplicate_shot, "Ctrl+D")
        delete = QAction("Delete Shot", self)
        delete.setShortcut(QKeySequence.Delete)
        # Only while the storyboard has focus: Delete in a text field must edit the text.
        delete.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        delete.triggered.connect(self.storyboard.delete_shot)
        self.storyboard.view.addAction(delete)
        self._action(e, "Delete Shot", self.storyboard.delete_shot)
        e.addSeparator()
        self._action(e, "Add &Character", self.bible.add_character)
        self._action(e, "Add Reference &Images…", self.bible.add_images)

    def _build_status_bar(self) -> None:
        self.total_label = QLabel(self)
        self.total_label.setObjectName("total")
        self.statusBar().addPermanentWidget(self.total_label)
        self.total_label.setText(self.storyboard.total_label.text())
        self.storyboard.total_changed.connect(self.total_label.setText)
        self.importer.busy_changed.connect(
            lambda busy: self.statusBar().showMessage("Importing…") if busy else None)

    def _build_read_only_bar(self) -> None:
        self.read_only_bar = ReadOnlyBar(self, on_wait=self.wait_for_write_access,
                                         on_stop_wait=self.stop_waiting)
        bar = QToolBar("Read-only", self)
        bar.setObjectName("readOnlyToolBar")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.toggleViewAction().setVisible(False)
        # A widget in a tool bar is shown and hidden through its action, never setVisible (the
        # bar would keep an 8-pixel stub); and on a row of its own, so the words fit at 1366 px.
        self._read_only_bar_action = bar.addWidget(self.read_only_bar)
        self.addToolBar(Qt.TopToolBarArea, bar)
        # A row of its own: the tool bars the extensions add come after this break (beside it,
        # the Generate bar would squeeze the words to nothing at 1366 px).
        self.addToolBarBreak(Qt.TopToolBarArea)
        self._read_only_toolbar = bar
        bar.setVisible(False)

    # -- one writer per project -----------------------------------------------------------------
    def _hold_lock(self, lock: ProjectLock | None, read_only: bool, holder: str = "") -> None:
        """Keep ``lock`` (the open project's), dropping the one held before."""
        old, self.project_lock = self.project_lock, lock
        if old is not None and old is not lock:
            locks.release(old)
        if self._lock_waiter is not None:  # a wait belongs to the project it was started for
            self._lock_waiter.cancel()
            self._lock_waiter = None
        self.read_only = read_only
        self.lock_holder = holder if read_only else ""
        self._apply_read_only()

    def _apply_read_only(self) -> None:
        ro = self.read_only
        self._read_only_toolbar.setVisible(ro)
        self._read_only_bar_action.setVisible(ro)
        self.read_only_bar.set_state(self.lock_holder, self._lock_waiter is not None
                                     and self._lock_waiter.waiting)
        self.save_action.setEnabled(not ro)  # Save As stays: a copy elsewhere is allowed
        for name in ("Edit", "Generate"):
            menu = self._menus.get(name)
            if menu is not None:
                for act in menu.actions():
                    if not act.isSeparator() and act not in (self.undo_action, self.redo_action):
                        act.setEnabled(not ro)
        self.inspector.setEnabled(not ro)
        for panel in (self.bible, self.storyboard):
            for button in panel.findChildren(QToolButton):
                button.setEnabled(not ro)
        self.storyboard.view.viewport().setAcceptDrops(not ro)
        self.bible.setAcceptDrops(not ro)
        if ro:
            self.undo_stack.clear()
        self._update_title()

    def wait_for_write_access(self) -> None:
        """Poll the open project's lock off the UI thread; open it for writing when free."""
        folder = self.document.folder
        if not self.read_only or folder is None or (
                self._lock_waiter is not None and self._lock_waiter.waiting):
            return
        waiter = LockWaiter(folder, self)
        waiter.acquired.connect(lambda lock, w=waiter: self._on_write_access(w, lock))
        waiter.stopped.connect(lambda message, w=waiter: self._on_wait_stopped(w, message))
        self._lock_waiter = waiter
        waiter.start()
        self._apply_read_only()

    def stop_waiting(self) -> None:
        if self._lock_waiter is not None:
            self._lock_waiter.cancel()

    def _on_wait_stopped(self, waiter: LockWaiter, message: str) -> None:
        if waiter is self._lock_waiter:
            self._lock_waiter = None
            if message != "stopped waiting":
                self.show_error(message)
            self._apply_read_only()
        waiter.deleteLater()

    def _on_write_access(self, waiter: LockWaiter, lock: ProjectLock) -> None:
        folder = self.document.folder
        if waiter is not self._lock_waiter or folder is None or not self.read_only \
                or lock.folder != folder:
            lock.release()  # another project is open now
            return
        locks.adopt(lock)
        self._lock_waiter = None
        waiter.deleteLater()
        try:  # the other writer may have changed it: show what is on disk now
            project = self._load_project_file(folder, recovery=False)
        except StudioError as exc:
            locks.release(lock)
            self.show_error(exc)
            self._apply_read_only()
            return
        self._hold_lock(lock, read_only=False)
        self.set_project(ProjectDocument(project, folder), untitled=False)
        self.statusBar().showMessage(f"Opened {folder} for writing", 8000)

    def _take_lock(self, folder: Path) -> tuple[ProjectLock | None, str, str] | None:
        """(lock, mode, holder) for opening ``folder``: mode "" (ours to write), READ_ONLY or
        WAIT; None when the user cancels."""
        if self.project_lock is not None and self.project_lock.held and \
                self.project_lock.folder.resolve() == folder.resolve():
            return self.project_lock, "", ""  # reopening our own project
        try:
            return try_lock(folder), "", ""
        except ProjectLocked as exc:
            holder = exc.holder.describe() if exc.holder is not None else ""
            choice = ask_when_locked(self, folder, exc)
            if choice in (READ_ONLY, WAIT):
                return None, choice, holder
            return None
        except ProjectError as exc:  # a read-only folder: nobody can write it, so read-only
            self.statusBar().showMessage(str(exc), 15_000)
            return None, READ_ONLY, exc.problem

    def _load_project_file(self, folder: Path, recovery: bool) -> Project:
        """Load project.json (or the autosave); a big one is parsed in a worker while the
        window keeps handling events (a nested loop: the caller still gets its answer)."""
        from studio.core.safeio import check_regular

        path = folder / (AUTOSAVE_FILE if recovery else PROJECT_FILE)
        st = check_regular(path, ProjectError)  # a FIFO or a device is refused before any read
        load = (lambda: load_recovery(folder)) if recovery else (lambda: load_project(folder))
        if st.st_size <= BIG_PROJECT_BYTES:
            return load()
        from studio.ui.tasks import run_task

        loop = QEventLoop(self)
        box: dict[str, object] = {}

        def finish(key: str, value: object) -> None:
            box[key] = value
            loop.quit()

        run_task(lambda _p, _c: load(), parent=self, name="open-project",
                 on_done=lambda project: finish("project", project),
                 on_error=lambda message: finish("error", message),
                 on_cancelled=lambda: finish("error", f"{path}: the open was cancelled"))
        self.statusBar().showMessage(f"Opening {folder}…")
        loop.exec()
        if "error" in box:
            raise StudioError(str(box["error"]))
        project = box["project"]
        assert isinstance(project, Project)
        return project

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        items = recent_projects(self.settings)
        if not items:
            act = self.recent_menu.addAction("(no recent projects)")
            act.setEnabled(False)
            return
        for i, path in enumerate(items):
            label = f"&{i + 1} {Path(path).name}" if i < 9 else Path(path).name
            act = self.recent_menu.addAction(label)
            act.setToolTip(path)
            act.triggered.connect(lambda _=False, p=path: self._open_recent(p))
        self.recent_menu.addSeparator()
        self.recent_menu.addAction("Clear Recent", self._clear_recent)

    def _open_recent(self, path: str) -> None:
        if not (Path(path) / PROJECT_FILE).exists():
            remove_recent(self.settings, path)
            self.show_error(ProjectError("the project is no longer there", path))
            return
        self.open_project(path)

    def _clear_recent(self) -> None:
        self.settings.setValue("recent/projects", "[]")

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<b>{APP_NAME}</b> {__version__}<br>Storyboard to video with "
                          "image-to-video models, keeping every face consistent.")

    # -- selection ------------------------------------------------------------------------------
    def _on_shot_selected(self, shot_id: str) -> None:
        self.inspector.set_shot(shot_id or None)
        self.viewer.show_shot(shot_id or None)
        self.shot_selected.emit(shot_id)

    def _on_character_selected(self, char_id: str) -> None:
        self.inspector.set_character(char_id or None)
        self.character_selected.emit(char_id)

    def _rename_character(self) -> None:
        self.inspector_dock.show()
        self.inspector_dock.raise_()
        self.inspector.ensureWidgetVisible(self.inspector.char_name)
        self.inspector.char_name.setFocus()
        self.inspector.char_name.selectAll()

    # -- dirty state ----------------------------------------------------------------------------
    def is_dirty(self) -> bool:
        return not self.undo_stack.isClean() or self._external_dirty

    def _on_stack_index(self, _index: int) -> None:
        self._stack_rev = self.document.revision
        self._update_title()

    def _on_doc_changed(self) -> None:
        # Undo commands change the document and then move the stack index synchronously; an
        # edit that is not followed by an index change came from elsewhere (e.g. analysis).
        QTimer.singleShot(0, self._check_external_edit)

    def _check_external_edit(self) -> None:
        if self.document.revision != self._stack_rev and not self._external_dirty:
            self._external_dirty = True
            self._stack_rev = self.document.revision
            self._update_title()

    def _mark_clean(self) -> None:
        self.undo_stack.setClean()
        self._external_dirty = False
        self._stack_rev = self.document.revision
        self._update_title()

    def _update_title(self) -> None:
        name = self.document.project.name or "Untitled"
        where = "" if self._untitled or self.document.folder is None else f" ({self.document.folder})"
        ro = " (read-only)" if self.read_only else ""
        self.setWindowTitle(f"{name}[*]{where}{ro} — {APP_NAME}")
        self.setWindowModified(self.is_dirty())

    # -- project lifecycle ----------------------------------------------------------------------
    @property
    def is_untitled(self) -> bool:
        return self._untitled

    def set_project(self, document: ProjectDocument, untitled: bool = False) -> None:
        """Show ``document`` (replacing the current one; the undo history is cleared)."""
        old_untitled = self.document.folder if self._untitled else None
        self.document = document
        self._untitled = untitled
        self.undo_stack.clear()
        self.events.attach(document)
        self._open_session(document)
        self._external_dirty = False
        self._stack_rev = document.revision
        self.bible.reload()
        self.storyboard.reload()
        self.inspector.set_character(self.bible.current_character_id())
        self.inspector.refresh_project()
        self._on_shot_selected(self.storyboard.selected_shot_id() or "")
        self._update_title()
        if old_untitled is not None and old_untitled != document.folder:
            self._remove_scratch(old_untitled)
        self.project_opened.emit(document)

    def _open_session(self, document: ProjectDocument) -> None:
        """A new session for ``document`` (its saved queue restored); the old one is closed.
        A job still running in the old session is put back in its queue by the generation
        controller, which hears ``session_bridge.attached``. (Save As keeps the session: it
        follows the project to its new folder by itself.)"""
        old = self.session
        # The window holds the project's lock itself (studio.ui.project_lock); a read-only
        # window's session must never write the folder (not even the queue it restores).
        self.session = Session(document, read_only=True if self.read_only else None)
        self.session_bridge.attach(self.session)
        old.close()

    def _remove_scratch(self, folder: Path | None) -> None:
        if folder is not None and _is_inside(folder, untitled_root()):
            self.importer.wait()
            shutil.rmtree(folder, ignore_errors=True)

    def new_project(self) -> bool:
        if not self.maybe_save():
            return False
        try:
            doc = new_untitled_document()
        except StudioError as exc:
            self.show_error(exc)
            return False
        self._hold_lock(None, read_only=False)
        self.set_project(doc, untitled=True)
        return True

    def open_project(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Open a project folder (or its project.json). Asks first if there are unsaved changes;
        offers to recover an autosave left by a crash."""
        if path is None:
            chosen = QFileDialog.getExistingDirectory(self, "Open project folder",
                                                      self._last_dir())
            if not chosen:
                return False
            path = chosen
        folder = project_file(Path(path)).parent
        if self._opening:  # a big project is being parsed: one open at a time
            return False
        if not self.maybe_save():
            return False
        taken = self._take_lock(folder)
        if taken is None:
            return False
        lock, mode, holder = taken
        self._opening = True
        recovered = False
        try:
            # A read-only window never recovers (discarding or recovering writes the folder).
            if not mode and recovery_available(folder):
                answer = dialogs.ask(
                    self, "Recover unsaved changes?",
                    f"“{folder.name}” has unsaved changes from a session that did not close "
                    "normally. Recover unsaved changes?",
                    [QMessageBox.Yes, QMessageBox.Discard], QMessageBox.Yes,
                    {QMessageBox.Yes: "Recover", QMessageBox.Discard: "Discard"},
                    informative="Recover loads the autosaved version; Discard deletes it and "
                                "opens the last saved project.")
                if answer == QMessageBox.Yes:
                    project = self._load_project_file(folder, recovery=True)
                    recovered = True
                else:
                    discard_recovery(folder)
                    project = self._load_project_file(folder, recovery=False)
            else:
                project = self._load_project_file(folder, recovery=False)
        except StudioError as exc:
            if lock is not None and lock is not self.project_lock:
                locks.release(lock)
            self.show_error(exc)
            return False
        finally:
            self._opening = False
        self._hold_lock(lock, read_only=bool(mode), holder=holder)
        document = ProjectDocument(project, folder)
        document.read_only = bool(mode)  # the document refuses a save in place by itself too
        self.set_project(document, untitled=False)
        self._apply_read_only()  # on the new project's panels
        if mode == WAIT:
            self.wait_for_write_access()
        if recovered:
            self.document.saved_revision = -1  # differs from the file on disk until saved
            self._external_dirty = True
            self._update_title()
            self.statusBar().showMessage("Recovered unsaved changes from the autosave", 8000)
        elif mode:
            self.statusBar().showMessage(f"Opened {folder} read-only", 8000)
        else:
            self.statusBar().showMessage(f"Opened {folder}", 5000)
        add_recent(self.settings, folder)
        return True

    def _last_dir(self) -> str:
        recent = recent_projects(self.settings)
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def save(self) -> bool:
        if self._untitled or self.document.folder is None:
            return self.save_as()
        if self.read_only:
            self.show_error(ProjectError(
                "opened read-only (in use by " + (self.lock_holder or "another program")
                + "): it is not saved in place; use Save As to keep the changes in another "
                  "folder", self.document.folder / PROJECT_FILE))
            return False
        try:
            self.document.save()
        except StudioError as exc:
            self.show_error(exc)
            return False
        self._mark_clean()
        add_recent(self.settings, self.document.folder)
        self.statusBar().showMessage(f"Saved {self.document.folder}", 4000)
        return True

    def save_as(self, folder: str | os.PathLike[str] | None = None) -> bool:
        """Save into another folder, copying assets/takes/analysis with it, and switch to it."""
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(
                self, "Save project in folder (choose or create an empty folder)", self._last_dir())
            if not chosen:
                return False
            folder = chosen
        target = Path(folder).expanduser()
        source = self.document.folder
        if source is not None and target.resolve() == source.resolve():
            self._untitled = False
            return self.save()
        if source is not None and _is_inside(target, source):
            self.show_error(ProjectError("cannot save a project inside its own folder", target))
            return False
        if (target / PROJECT_FILE).exists():
            answer = dialogs.ask(self, "Replace project?",
                                 f"{target} already holds a project. Replace it?",
                                 [QMessageBox.Yes, QMessageBox.Cancel], QMessageBox.Cancel,
                                 {QMessageBox.Yes: "Replace"})
            if answer != QMessageBox.Yes:
                return False
        elif target.is_dir() and any(target.iterdir()):
            answer = dialogs.ask(self, "Folder not empty",
                                 f"{target} already contains files. Save the project into it "
                                 "anyway? (A project is best kept in a folder of its own.)",
                                 [QMessageBox.Save, QMessageBox.Cancel], QMessageBox.Cancel)
            if answer != QMessageBox.Save:
                return False
        self.importer.wait()
        was_untitled = self._untitled
        try:
            target.mkdir(parents=True, exist_ok=True)
            new_lock = try_lock(target)  # the copy is ours to write; refused if in use
        except ProjectLocked as exc:
            self.show_error(exc)
            return False
        except StudioError as exc:
            self.show_error(exc)
            return False
        except OSError as exc:
            self.show_error(ProjectError(f"cannot create the folder: {exc.strerror or exc}",
                                         target))
            return False
        try:
            if source is not None and source.is_dir():
                self._copy_project_files(source, target)
            if was_untitled and self.document.project.name == "Untitled":
                self.document.update_project(name=target.name[:200] or "Untitled")
            self.document.save(target)
        except StudioError as exc:
            locks.release(new_lock)
            self.show_error(exc)
            return False
        except OSError as exc:
            locks.release(new_lock)
            self.show_error(ProjectError(f"cannot copy the project: {exc.strerror or exc}", target))
            return False
        self._hold_lock(new_lock, read_only=False)
        self._untitled = False
        self._mark_clean()
        add_recent(self.settings, target)
        if was_untitled:
            self._remove_scratch(source)
        self.statusBar().showMessage(f"Saved as {target}", 5000)
        return True

    @staticmethod
    def _copy_project_files(source: Path, target: Path) -> None:
        skip = {PROJECT_FILE, AUTOSAVE_FILE}
        for entry in source.iterdir():
            if entry.name in skip or entry.name.startswith(".") or entry.is_symlink():
                continue
            dest = target / entry.name
            if entry.is_dir():
                shutil.copytree(entry, dest, dirs_exist_ok=True, symlinks=False)
            else:
                shutil.copy2(entry, dest)

    def autosave(self) -> Path | None:
        if not self.is_dirty() or self.read_only:  # read-only: nothing is written in the folder
            return None
        try:
            path = self.document.autosave()
        except StudioError as exc:  # shown in the status bar only: it will be retried
            self.statusBar().showMessage(f"Autosave failed: {exc}", 10_000)
            return None
        if path is not None:
            self.statusBar().showMessage("Autosaved", 2000)
        return path

    def maybe_save(self) -> bool:
        """Ask Save / Discard / Cancel when there are unsaved changes. True = go on."""
        if not self.is_dirty():
            return True
        answer = dialogs.ask(self, "Unsaved changes",
                             f"Save the changes to “{self.document.project.name}”?",
                             [QMessageBox.Save, QMessageBox.Discard, QMessageBox.Cancel],
                             QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save_as() if self.read_only else self.save()
        if answer == QMessageBox.Discard:
            if self.document.folder is not None and not self._untitled and not self.read_only:
                try:
                    discard_recovery(self.document.folder)
                except OSError as exc:
                    self.show_error(f"cannot remove the autosave: {exc}")
            self._mark_clean()
            return True
        return False

    # -- window state ---------------------------------------------------------------------------
    def _default_size(self) -> QSize:
        """1440×900, or less where the screen is smaller (a 1366×768 laptop): the window must
        open on the screen, not past its edges."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        size = QSize(*DEFAULT_SIZE)
        if screen is not None:
            avail = screen.availableGeometry().size()
            size = size.boundedTo(QSize(avail.width() * 95 // 100, avail.height() * 95 // 100))
        return size.expandedTo(self.minimumSizeHint())

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def restore_layout(self) -> bool:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        ok = False
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            ok = self.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and not state.isEmpty():
            ok = self.restoreState(state) and ok
        return ok

    def _default_layout(self) -> None:
        # Docks added by feature modules (generation's Queue and Takes) get a place that keeps
        # the inspector readable: the queue under the bible, the takes list tabbed with the
        # inspector (the viewer's take strip shows the same takes with their scores).
        queue = self.findChild(QDockWidget, "dock_queue")
        takes = self.findChild(QDockWidget, "dock_takes")
        if queue is not None:
            self.addDockWidget(Qt.LeftDockWidgetArea, queue)
            self.splitDockWidget(self.bible_dock, queue, Qt.Vertical)
            self.resizeDocks([self.bible_dock, queue], [620, 280], Qt.Vertical)
        if takes is not None:
            self.tabifyDockWidget(self.inspector_dock, takes)
        self.inspector_dock.raise_()
        self.resizeDocks([self.bible_dock, self.inspector_dock], [290, 370], Qt.Horizontal)
        self.resizeDocks([self.storyboard_dock], [230], Qt.Vertical)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._preloaded:
            self._preloaded = True
            # After the first paint (the show comes before it): start-up itself stays light
            # and the imports never compete with the first frame. A filter, not an event()
            # override: a Python event() would hold the GIL through every C++ teardown it runs.
            self.installEventFilter(_AfterFirstPaint(self, lambda: _preload_libraries(self)))

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        self.save_layout()
        self.autosave_timer.stop()
        self.importer.wait()
        self.thumbnails.wait()
        if self._untitled:
            self._remove_scratch(self.document.folder)
        if self._lock_waiter is not None:
            self._lock_waiter.cancel()
            self._lock_waiter.wait()
            self._lock_waiter = None
        self._hold_lock(None, read_only=False)  # the next writer may go on at once
        event.accept()

    def report_exception(self, exc_type: type[BaseException], exc: BaseException,
                         tb: object) -> None:
        """sys.excepthook target: show an unexpected error; the app keeps running."""
        details = "".join(traceback.format_exception(exc_type, exc, tb))  # type: ignore[arg-type]
        if isinstance(exc, StudioError):
            self.show_error(exc)
        else:
            self.show_error(f"Unexpected error: {exc_type.__name__}: {exc}\n\n"
                            f"{details[-1500:]}")
