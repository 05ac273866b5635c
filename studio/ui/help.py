"""The Help menu's own entries: Help ▸ User Guide (docs/GUIDE.md rendered in the app) and
Help ▸ Keyboard Shortcuts… (every shortcut of the window, read from the actions themselves).

Nothing here keeps its own list of menu shortcuts: :func:`collect_shortcuts` walks the window's
menus, every ``QAction`` of the window and its child widgets (toolbars, docks, views) and every
``QShortcut``, so a shortcut added anywhere appears in the dialog without touching this file.
The one exception is the take viewer's keys, which it handles in ``keyPressEvent`` (they are not
actions, so nothing can be read from them): they are listed in :data:`VIEWER_KEYS`, and
``tests/ui/test_ui_help.py`` sends every key to a real viewer so that table cannot drift.

:func:`apply_shortcut_tooltips` appends each action's shortcut to its tooltip ("Queue a take of
the selected shot (Ctrl+G)") and keeps it right when the action's text, tooltip or shortcut
changes later (the undo action's text changes with every edit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, QUrl
from PySide6.QtGui import (QAction, QDesktopServices, QKeySequence, QShortcut, QTextBlockFormat,
                           QTextCharFormat, QTextCursor, QTextDocument)
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDockWidget, QHeaderView, QLabel,
                               QLineEdit, QMainWindow, QMenu, QMenuBar, QPushButton, QTextBrowser,
                               QToolBar, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from studio.resources import resources_dir

if TYPE_CHECKING:
    from studio.ui.main_window import MainWindow

NATIVE = QKeySequence.SequenceFormat.NativeText
PORTABLE = QKeySequence.SequenceFormat.PortableText
VIEWER_GROUP = "Viewer"
VIEWER_FOCUS = "while the viewer has focus (click the picture)"
FRAMING_GROUP = "Framing (Inspector)"
FRAMING_FOCUS = "while the start-image framing has focus (click it)"
USER_GUIDE_SHORTCUT = QKeySequence.StandardKey.HelpContents  # F1 on Linux and Windows
SHORTCUTS_SHORTCUT = "Ctrl+/"
WIDGET_CONTEXTS = (Qt.ShortcutContext.WidgetShortcut, Qt.ShortcutContext.WidgetWithChildrenShortcut)

# The take viewer's keys (studio/ui/viewer/viewer.py ViewerWidget.keyPressEvent), in portable
# QKeySequence text. A test presses every key on a real viewer: each listed key must be handled
# and every key the viewer handles must be listed.
VIEWER_KEYS: tuple[tuple[str, str], ...] = (
    ("Space", "Play / pause"),
    ("J", "Play backwards (again: faster, up to 8×)"),
    ("K", "Stop"),
    ("L", "Play forwards (again: faster, up to 8×)"),
    ("Left", "Previous frame"),
    ("Right", "Next frame"),
    ("Shift+Left", "One second back"),
    ("Shift+Right", "One second forward"),
    ("Home", "First frame"),
    ("End", "Last frame"),
    ("I", "Loop in at the current frame"),
    ("O", "Loop out at the current frame"),
    ("X", "Clear the loop"),
    ("H", "Drift heatmap on / off"),
    ("F", "Face box and landmarks on / off"),
    ("R", "Flagged ranges on / off"),
    ("C", "Next compare mode (single, side by side, wipe)"),
)

# Dynamic properties kept on each action by apply_shortcut_tooltips.
_TIP_SET = "studioHelpTipSet"  # the tooltip we wrote last
_TIP_BASE = "studioHelpTipBase"  # the owner's explicit tooltip ("" = follows the text)
_TIP_HOOKED = "studioHelpTipHooked"


def plain_text(text: str) -> str:
    """A menu text without its mnemonic ampersands ("Save &As…" → "Save As…", "&&" → "&")."""
    return re.sub(r"&(.)", r"\1", text).strip()


def native(seq: QKeySequence) -> str:
    return seq.toString(NATIVE)


def _portable(seq: QKeySequence) -> str:
    return seq.toString(PORTABLE)


@dataclass
class Shortcut:
    """One row of the shortcuts dialog."""

    group: str  # the menu it lives in ("File", "File ▸ Open Recent"), else the panel or "Viewer"
    text: str  # what it does, without '&'
    keys: tuple[str, ...]  # each key sequence in the platform's native text
    where: str = ""  # "" = anywhere in the window; else when it works ("while … has focus")
    portable: tuple[str, ...] = ()  # the same sequences in portable text (comparisons)
    scope: Any = field(default=None, repr=False)  # None = the window; else the widget it needs
    source: Any = field(default=None, repr=False, compare=False)  # the QAction / QShortcut

    def matches(self, needle: str) -> bool:
        hay = " ".join((self.group, self.text, self.where, *self.keys, *self.portable)).lower()
        return all(word in hay for word in needle.lower().split())


# -- finding the shortcuts ---------------------------------------------------------------------
def _area_name(widget: QWidget | None, window: QWidget) -> str:
    """The part of the window a widget belongs to, in the words the user sees."""
    central = window.centralWidget() if isinstance(window, QMainWindow) else None
    w = widget
    while w is not None and w is not window:
        if isinstance(w, QDockWidget):
            return plain_text(w.windowTitle())
        if isinstance(w, QToolBar):
            return f"{plain_text(w.windowTitle()) or 'Tool'} toolbar"
        if central is not None and w is central:
            return VIEWER_GROUP
        w = w.parentWidget()
    return "Window"


def _where(context: Qt.ShortcutContext, widget: QWidget | None, window: QWidget) -> str:
    if context == Qt.ShortcutContext.ApplicationShortcut:
        return "anywhere in the application"
    if context in WIDGET_CONTEXTS and widget is not None and widget is not window:
        return f"while the {_area_name(widget, window).lower()} has focus"
    return ""


def _scope(context: Qt.ShortcutContext, widget: QWidget | None, window: QWidget) -> Any:
    if context in WIDGET_CONTEXTS and widget is not None and widget is not window:
        return widget
    return None


def _menu_title(menu: QMenu) -> str:
    return plain_text(menu.title()) or "Menu"


def _menu_path(menu: QMenu) -> list[str]:
    """["File", "Open Recent"] for a submenu reachable from the menu bar; [title] otherwise."""
    path = [_menu_title(menu)]
    seen = {id(menu)}
    current = menu
    while True:
        owners = current.menuAction().associatedObjects()
        if any(isinstance(o, QMenuBar) for o in owners):
            return path  # a menu-bar menu (even while shown in the bar's overflow popup)
        parents = [o for o in owners if isinstance(o, QMenu)]
        if not parents or id(parents[0]) in seen:
            return path
        current = parents[0]
        seen.add(id(current))
        path.insert(0, _menu_title(current))


def _sequences(seqs: list[QKeySequence]) -> list[QKeySequence]:
    """Non-empty, each once (QKeySequence.Redo is Ctrl+Y on some platforms, listed again)."""
    out: dict[str, QKeySequence] = {}
    for s in seqs:
        if not s.isEmpty():
            out.setdefault(_portable(s), s)
    return list(out.values())


def _action_entry(action: QAction, window: QWidget) -> Shortcut | None:
    seqs = _sequences(action.shortcuts())
    if not seqs:
        return None
    owners = [o for o in action.associatedObjects() if isinstance(o, QWidget)]
    if not owners:
        return None  # added to no widget: its shortcut never fires, so it is not listed
    menus = [o for o in owners if isinstance(o, QMenu)]
    bars = [o for o in owners if isinstance(o, QToolBar)]
    others = [o for o in owners if not isinstance(o, (QMenu, QMenuBar))]
    if menus:
        group = " ▸ ".join(_menu_path(menus[0]))
        anchor = others[0] if others else window
    elif bars:
        group, anchor = _area_name(bars[0], window), bars[0]
    else:
        anchor = others[0]
        group = _area_name(anchor, window)
    context = action.shortcutContext()
    return Shortcut(group=group, text=plain_text(action.text()) or plain_text(action.toolTip()),
                    keys=tuple(native(s) for s in seqs),
                    where=_where(context, anchor, window),
                    portable=tuple(_portable(s) for s in seqs),
                    scope=_scope(context, anchor, window), source=action)


def _all_actions(window: QWidget) -> list[QAction]:
    """Every action of the window: menus in menu-bar order first, then the window's, its
    children's and every child widget's (toolbars, docks, views, context actions)."""
    found: list[QAction] = []
    ids: set[int] = set()

    def add(action: QAction) -> None:
        if id(action) not in ids:
            ids.add(id(action))
            found.append(action)

    def walk(menu: QMenu, depth: int = 0) -> None:
        for act in menu.actions():
            sub = act.menu()
            if isinstance(sub, QMenu) and depth < 8:
                walk(sub, depth + 1)
            elif not act.isSeparator():
                add(act)

    if isinstance(window, QMainWindow):
        for top in window.menuBar().actions():
            sub = top.menu()
            if isinstance(sub, QMenu):
                walk(sub)
    for act in window.actions():
        add(act)
    for act in window.findChildren(QAction):
        add(act)
    for widget in window.findChildren(QWidget):
        for act in widget.actions():
            add(act)
    return found


def _shortcut_entry(sc: QShortcut, window: QWidget, viewer: dict[str, str]) -> Shortcut | None:
    seqs = _sequences(sc.keys())
    if not seqs:
        return None
    parent = sc.parent()
    widget = parent if isinstance(parent, QWidget) else None
    portable = tuple(_portable(s) for s in seqs)
    text = plain_text(sc.whatsThis())
    group = _area_name(widget, window) if widget is not None else "Window"
    if not text and all(p in viewer for p in portable):
        # A window-wide key forwarded to the viewer (studio/ui/viewer/install.py).
        text, group = " / ".join(dict.fromkeys(viewer[p] for p in portable)), VIEWER_GROUP
    context = sc.context()
    where = _where(context, widget, window)
    if group == VIEWER_GROUP and not where:
        where = "anywhere in the window"  # next to keys that need the viewer's focus
    return Shortcut(group=group, text=text or "(unnamed shortcut)",
                    keys=tuple(native(s) for s in seqs), where=where,
                    portable=portable, scope=_scope(context, widget, window), source=sc)


def _viewer_widget(window: QWidget) -> QWidget | None:
    viewer = getattr(window, "take_viewer", None)
    return viewer if isinstance(viewer, QWidget) else None


def collect_shortcuts(window: QWidget) -> list[Shortcut]:
    """Every keyboard shortcut of the window, grouped: the menus in menu-bar order, then the
    panels, the viewer's keys last."""
    entries: list[Shortcut] = []
    for action in _all_actions(window):
        entry = _action_entry(action, window)
        if entry is not None:
            entries.append(entry)
    viewer_text = {QKeySequence(k).toString(PORTABLE): t for k, t in VIEWER_KEYS}
    for sc in window.findChildren(QShortcut):
        entry = _shortcut_entry(sc, window, viewer_text)
        if entry is not None:
            entries.append(entry)
    viewer = _viewer_widget(window)
    if viewer is not None:
        taken = {p for e in entries if e.group == VIEWER_GROUP for p in e.portable}
        for key, text in VIEWER_KEYS:
            seq = QKeySequence(key)
            if _portable(seq) not in taken:
                entries.append(Shortcut(VIEWER_GROUP, text, (native(seq),), VIEWER_FOCUS,
                                        (_portable(seq),), scope=viewer))
    # The framing editor's keys (studio/ui/start_image_view.py FRAMING_KEYS, tested there).
    from studio.ui.start_image_view import FRAMING_KEYS, FramingEditor

    editor = next(iter(window.findChildren(FramingEditor)), None)
    if editor is not None:
        keys_of: dict[str, list[QKeySequence]] = {}  # "+" and "=" both zoom in: one row
        for key, text in FRAMING_KEYS:
            keys_of.setdefault(text.removeprefix("Framing: "), []).append(QKeySequence(key))
        for text, seqs in keys_of.items():
            entries.append(Shortcut(FRAMING_GROUP, text, tuple(native(q) for q in seqs),
                                    FRAMING_FOCUS, tuple(_portable(q) for q in seqs),
                                    scope=editor))
    _disambiguate(entries)
    order: dict[str, int] = {}
    if isinstance(window, QMainWindow):
        for i, top in enumerate(window.menuBar().actions()):
            order[plain_text(top.text())] = i

    def rank(e: Shortcut) -> tuple[int, str]:
        top = e.group.split(" ▸ ")[0]
        if top in order:
            return (0, f"{order[top]:03d}")
        if e.group in (VIEWER_GROUP, FRAMING_GROUP):
            return (2, e.group)
        return (1, e.group.lower())

    # Stable: the order inside a group stays the menu's order.
    return sorted(entries, key=rank)


def _widget_label(widget: Any) -> str:
    """A widget's name in words: its accessible name, else its object name split
    ("bibleReferences" → "bible references")."""
    if not isinstance(widget, QWidget):
        return ""
    name = widget.accessibleName() or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", widget.objectName())
    return name.replace("_", " ").strip().lower()


def _disambiguate(entries: list[Shortcut]) -> None:
    """Two rows of one group reading alike (the bible's two "Remove" on Delete): name the
    widget each one works in."""
    seen: dict[tuple[str, str], list[Shortcut]] = {}
    for e in entries:
        seen.setdefault((e.group, e.text), []).append(e)
    for same in seen.values():
        if len(same) > 1:
            for e in same:
                label = _widget_label(e.scope)
                if label:
                    e.text = f"{e.text} ({label})"


def _overlaps(a: Any, b: Any) -> bool:
    """Whether two shortcut scopes can both be active at once (None = the whole window)."""
    if a is None or b is None:
        return True
    return a is b or a.isAncestorOf(b) or b.isAncestorOf(a)


def conflicts(entries: list[Shortcut]) -> list[tuple[str, list[Shortcut]]]:
    """Keys bound twice where both can fire at once: Qt then runs neither ("Ambiguous shortcut
    overload"), or a window shortcut swallows a key the viewer handles itself."""
    by_key: dict[str, list[Shortcut]] = {}
    for e in entries:
        for p in e.portable:
            by_key.setdefault(p, []).append(e)
    found = []
    for key, group in by_key.items():
        clash = [e for i, e in enumerate(group)
                 if any(_overlaps(e.scope, o.scope) for j, o in enumerate(group) if j != i)]
        if len(clash) > 1:
            found.append((key, clash))
    return found


# -- tooltips ----------------------------------------------------------------------------------
def _default_tip(text: str) -> str:
    """The tooltip Qt derives from an action's text when none was set."""
    probe = QAction(text)
    return probe.toolTip()


def _sync_tip(action: QAction) -> None:
    if not shiboken6.isValid(action):
        return  # "changed" arrives while the action is being destroyed
    seqs = _sequences(action.shortcuts())
    current = action.toolTip()
    last = action.property(_TIP_SET)
    base = action.property(_TIP_BASE)
    if last is None or current != last:
        # First sight, or the owner set a new tooltip since: that is the new base.
        base = "" if current == _default_tip(action.text()) else current
        action.setProperty(_TIP_BASE, base)
    base_text = base or _default_tip(action.text())
    if not seqs:
        wanted = base_text
    else:
        wanted = f"{base_text} ({', '.join(native(s) for s in seqs)})"
    if base and not action.statusTip():
        action.setStatusTip(base)  # the owner's description, shown in the status bar
    action.setProperty(_TIP_SET, wanted)
    if current != wanted:
        action.setToolTip(wanted)


def apply_shortcut_tooltips(window: QWidget) -> int:
    """Append each action's shortcut to its tooltip, now and whenever the action changes.
    Returns how many actions with shortcuts it covers."""
    count = 0
    for action in _all_actions(window):
        if not action.property(_TIP_HOOKED):
            if not [s for s in action.shortcuts() if not s.isEmpty()]:
                continue  # never had a shortcut: leave its tooltip alone
            action.setProperty(_TIP_HOOKED, True)
            action.changed.connect(lambda a=action: _sync_tip(a))
        _sync_tip(action)
        count += 1
    return count


# -- the shortcuts dialog ------------------------------------------------------------------
class ShortcutsDialog(QDialog):
    """Every shortcut of the window, grouped by menu, with a filter (command, key or menu)."""

    def __init__(self, window: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else window)
        self.setObjectName("ShortcutsDialog")
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(780, 640)
        self._window = window
        self.entries: list[Shortcut] = []
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setObjectName("shortcutFilter")
        self.filter_edit.setPlaceholderText("Filter by command, key or menu (“save”, “ctrl+g”)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.set_filter)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("shortcutTree")
        self.tree.setHeaderLabels(["Command", "Shortcut", "Works"])
        self.tree.setRootIsDecorated(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        self.empty_label = QLabel("No shortcut matches the filter.", self)
        self.empty_label.setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.empty_label)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Read the shortcuts again (features may have added actions since)."""
        self.entries = collect_shortcuts(self._window)
        clashes = {id(e): key for key, group in conflicts(self.entries) for e in group}
        self.tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        for e in self.entries:
            top = groups.get(e.group)
            if top is None:
                top = QTreeWidgetItem(self.tree, [e.group])
                font = top.font(0)
                font.setBold(True)
                top.setFont(0, font)
                top.setFirstColumnSpanned(True)
                groups[e.group] = top
            where = e.where
            if id(e) in clashes:
                where = (where + "; " if where else "") + "⚠ key also used elsewhere"
            item = QTreeWidgetItem(top, [e.text, ", ".join(e.keys), where])
            item.setData(0, Qt.ItemDataRole.UserRole, e)
            item.setToolTip(0, e.text)
            item.setToolTip(1, ", ".join(e.keys))
        self.tree.expandAll()
        self.set_filter(self.filter_edit.text())

    def set_filter(self, text: str) -> None:
        shown = 0
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            group_hit = bool(text.strip()) and all(
                w in top.text(0).lower() for w in text.lower().split())
            visible_children = 0
            for j in range(top.childCount()):
                child = top.child(j)
                entry: Shortcut = child.data(0, Qt.ItemDataRole.UserRole)
                hit = group_hit or entry.matches(text)
                child.setHidden(not hit)
                visible_children += hit
            top.setHidden(visible_children == 0)
            shown += visible_children
        self.empty_label.setVisible(shown == 0)

    def visible_entries(self) -> list[Shortcut]:
        out = []
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            for j in range(top.childCount()):
                child = top.child(j)
                if not child.isHidden() and not top.isHidden():
                    out.append(child.data(0, Qt.ItemDataRole.UserRole))
        return out

    def showEvent(self, event: Any) -> None:  # noqa: N802
        self.refresh()
        super().showEvent(event)


# -- the user guide ---------------------------------------------------------------------------
def guide_path() -> Path:
    """docs/GUIDE.md: next to resources/ in a checkout, and in the frozen bundle (the
    PyInstaller spec ships it as docs/GUIDE.md beside resources/)."""
    return resources_dir().parent / "docs" / "GUIDE.md"


def heading_slug(text: str, used: dict[str, int] | None = None) -> str:
    """GitHub's anchor for a heading ("Read a take: the heatmap" → "read-a-take-the-heatmap"),
    so the guide's internal links work on GitHub and in the app alike."""
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    if used is not None:
        n = used.get(slug, 0)
        used[slug] = n + 1
        if n:
            slug = f"{slug}-{n}"
    return slug


def render_guide(document: QTextDocument, markdown: str) -> list[tuple[int, str, str]]:
    """Render Markdown into the document and give every heading its GitHub anchor (Qt's
    Markdown reader makes none). Returns the headings as (level, text, anchor)."""
    document.setMarkdown(markdown, QTextDocument.MarkdownFeature.MarkdownDialectGitHub)
    headings: list[tuple[int, str, str]] = []
    used: dict[str, int] = {}
    block = document.begin()
    while block.isValid():
        level = block.blockFormat().headingLevel()
        if level > 0 and block.text().strip():
            slug = heading_slug(block.text(), used)
            cursor = QTextCursor(block)
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock,
                                QTextCursor.MoveMode.KeepAnchor)
            fmt = QTextCharFormat()
            fmt.setAnchor(True)
            fmt.setAnchorNames([slug])
            cursor.mergeCharFormat(fmt)
            spacing = QTextBlockFormat()
            spacing.setTopMargin(14 if level <= 2 else 8)  # Qt's Markdown headings have none
            spacing.setBottomMargin(4)
            cursor.mergeBlockFormat(spacing)
            headings.append((level, block.text(), slug))
        block = block.next()
    return headings


class GuideDialog(QDialog):
    """docs/GUIDE.md in a QTextBrowser: internal links scroll, external ones open in the
    desktop's browser."""

    def __init__(self, parent: QWidget | None = None, path: Path | None = None,
                 on_shortcuts: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("GuideDialog")
        self.setWindowTitle("User Guide")
        self.resize(760, 720)
        self.path = path if path is not None else guide_path()
        self.browser = QTextBrowser(self)
        self.browser.setObjectName("guideBrowser")
        self.browser.setOpenLinks(False)  # every link goes through open_link
        self.browser.setOpenExternalLinks(False)
        self.browser.anchorClicked.connect(self.open_link)
        self.headings: list[tuple[int, str, str]] = []
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        if on_shortcuts is not None:
            keys = QPushButton("Keyboard Shortcuts…", self)
            keys.clicked.connect(on_shortcuts)
            buttons.addButton(keys, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.load()

    def load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            text = (f"# User guide not found\n\nThe guide should be at `{self.path}` "
                    f"({exc.strerror or exc}). It is `docs/GUIDE.md` in the source repository.")
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(self.path.parent) + "/"))
        self.headings = render_guide(self.browser.document(), text)
        self.browser.moveCursor(QTextCursor.MoveOperation.Start)  # open at the top
        self.browser.verticalScrollBar().setValue(0)

    def open_link(self, url: QUrl) -> None:
        if url.scheme() in ("", "file") and url.hasFragment() and (
                not url.path() or Path(url.toLocalFile() or url.path()).name == self.path.name):
            self.browser.scrollToAnchor(url.fragment())
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)
        else:  # a relative file next to the guide (another doc): the desktop opens it
            QDesktopServices.openUrl(self.browser.document().baseUrl().resolved(url))


# -- wiring ------------------------------------------------------------------------------------
class HelpActions(QObject):
    """The Help menu's guide and shortcuts entries, and their (single, non-modal) dialogs."""

    def __init__(self, window: QWidget, menu: QMenu) -> None:
        super().__init__(window)
        self.window = window
        self.guide_dialog: GuideDialog | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.guide_action = QAction("&User Guide", window)
        self.guide_action.setShortcut(QKeySequence(USER_GUIDE_SHORTCUT))
        self.guide_action.setStatusTip("A short guide to the first hour: characters, shots, "
                                       "takes, drift, export")
        self.guide_action.triggered.connect(self.show_guide)
        self.shortcuts_action = QAction("&Keyboard Shortcuts…", window)
        self.shortcuts_action.setShortcut(QKeySequence(SHORTCUTS_SHORTCUT))
        self.shortcuts_action.setStatusTip("Every keyboard shortcut, searchable")
        self.shortcuts_action.triggered.connect(self.show_shortcuts)
        menu.addAction(self.guide_action)
        menu.addAction(self.shortcuts_action)
        menu.addSeparator()
        # Features install their actions after the menus are built: cover them once the
        # window is finished (the event loop's first turn), and again whenever the list opens.
        QTimer.singleShot(0, self, lambda: apply_shortcut_tooltips(self.window))

    def show_guide(self) -> GuideDialog:
        if self.guide_dialog is None:
            self.guide_dialog = GuideDialog(self.window, on_shortcuts=self.show_shortcuts)
        self.guide_dialog.show()
        self.guide_dialog.raise_()
        self.guide_dialog.activateWindow()
        return self.guide_dialog

    def show_shortcuts(self) -> ShortcutsDialog:
        apply_shortcut_tooltips(self.window)
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(self.window)
        self.shortcuts_dialog.show()  # showEvent re-reads the shortcuts
        self.shortcuts_dialog.raise_()
        self.shortcuts_dialog.activateWindow()
        return self.shortcuts_dialog


def install_help(window: "MainWindow | QWidget", menu: QMenu) -> HelpActions:
    """Help ▸ User Guide and Help ▸ Keyboard Shortcuts…, above About."""
    return HelpActions(window, menu)
