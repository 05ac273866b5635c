"""Help ▸ Keyboard Shortcuts… and Help ▸ User Guide on the real main window (offscreen)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt, QUrl
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut, QTextCursor, QUndoCommand
from PySide6.QtWidgets import QApplication, QToolBar

from studio.ui import help as help_mod
from studio.ui.help import (VIEWER_GROUP, VIEWER_KEYS, GuideDialog, Shortcut,
                            apply_shortcut_tooltips, collect_shortcuts, conflicts, guide_path,
                            heading_slug)
from uitest_support import make_settings, open_window, sample_project

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "GUIDE.md"


def native(key: Any) -> str:
    return QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText)


@pytest.fixture
def win(qtbot: Any, tmp_path: Path) -> Any:
    return open_window(qtbot, sample_project(tmp_path / "proj"), make_settings(tmp_path))


def find(entries: list[Shortcut], text: str, group: str | None = None) -> Shortcut:
    hits = [e for e in entries if e.text == text and (group is None or e.group == group)]
    assert hits, f"{text!r} ({group}) not listed: {[(e.group, e.text) for e in entries]}"
    return hits[0]


# -- the shortcuts dialog ----------------------------------------------------------------------
def test_help_menu_has_guide_and_shortcuts_before_about(win: Any) -> None:
    texts = [a.text() for a in win.menu("Help").actions() if not a.isSeparator()]
    assert texts[:2] == ["&User Guide", "&Keyboard Shortcuts…"]
    assert texts[-1].startswith("&About")
    help_key = QKeySequence(QKeySequence.StandardKey.HelpContents)
    assert win.user_help.guide_action.shortcut() == help_key
    assert not win.user_help.shortcuts_action.shortcut().isEmpty()


def test_dialog_lists_the_real_shortcuts_grouped_by_menu(win: Any, qtbot: Any) -> None:
    dialog = win.user_help.show_shortcuts()
    qtbot.waitExposed(dialog)
    entries = dialog.entries
    assert find(entries, "Undo", "Edit").keys[0] == native(QKeySequence.StandardKey.Undo)
    assert find(entries, "Save", "File").keys == (native(QKeySequence.StandardKey.Save),)
    assert find(entries, "Save As…", "File").keys == (native(QKeySequence.StandardKey.SaveAs),)
    assert native("Ctrl+Y") in find(entries, "Redo", "Edit").keys
    assert find(entries, "Export…", "File").keys == (native("Ctrl+E"),)
    assert find(entries, "Generate Shot", "Generate").keys == (native("Ctrl+G"),)
    assert find(entries, "Keyboard Shortcuts…", "Help").keys == (native("Ctrl+/"),)
    delete = find(entries, "Delete Shot", "Storyboard")  # a view's own action, not a menu's
    assert delete.keys == (native(QKeySequence.StandardKey.Delete),)
    assert "storyboard has focus" in delete.where
    # Window-wide QShortcuts that drive the viewer, and the viewer's own keys.
    play = find(entries, "Play / pause", VIEWER_GROUP)
    assert play.keys == (native("Space"),) and isinstance(play.source, QShortcut)
    assert find(entries, "Drift heatmap on / off", VIEWER_GROUP).keys == (native("H"),)
    # Grouped: the tree has one top-level item per group, menus first in menu-bar order.
    groups = [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]
    assert len(groups) == len(set(groups))
    assert groups.index("File") < groups.index("Edit") < groups.index("Generate") \
        < groups.index("Help") < groups.index(VIEWER_GROUP)
    file_item = dialog.tree.topLevelItem(groups.index("File"))
    rows = [file_item.child(j).text(0) for j in range(file_item.childCount())]
    assert rows.index("Open…") < rows.index("Save") < rows.index("Save As…")  # the menu's order
    # No text keeps its mnemonic ampersand.
    assert not any("&" in e.text or "&" in e.group for e in entries)


def test_every_action_with_a_shortcut_is_listed(win: Any, qtbot: Any) -> None:
    """Whatever a feature adds — a menu action, an action on a panel's widget, a toolbar-only
    action, a QShortcut — is in the dialog without this module knowing about it."""
    menu_act = QAction("&Frobnicate Takes", win)
    menu_act.setShortcut(QKeySequence("Ctrl+Alt+F"))
    sub = win.menu("Generate").addMenu("&Tools")
    sub.addAction(menu_act)
    view_act = QAction("Nudge Shot", win.storyboard.view)
    view_act.setShortcut(QKeySequence("Alt+N"))
    view_act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    win.storyboard.view.addAction(view_act)
    bar = QToolBar("Review", win)
    win.addToolBar(bar)
    bar_act = QAction("Mark Good", win)
    bar_act.setShortcuts([QKeySequence("Ctrl+Alt+G"), QKeySequence("Ctrl+Alt+M")])
    bar.addAction(bar_act)
    window_act = QAction("Hidden Helper", win)
    window_act.setShortcut(QKeySequence("Ctrl+Alt+H"))
    win.addAction(window_act)
    sc = QShortcut(QKeySequence("Ctrl+Alt+Q"), win)
    sc.setWhatsThis("Quick &Look")
    free = QAction("Free Floating")  # no QObject parent: found through the widget it is on
    free.setShortcut(QKeySequence("Ctrl+Alt+E"))
    free.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
    win.bible.references.addAction(free)
    orphan = QAction("Never Added", win)  # added to no widget: its shortcut cannot fire
    orphan.setShortcut(QKeySequence("Ctrl+Alt+O"))

    dialog = win.user_help.show_shortcuts()
    qtbot.waitExposed(dialog)
    entries = dialog.entries
    assert find(entries, "Frobnicate Takes", "Generate ▸ Tools").keys == (native("Ctrl+Alt+F"),)
    nudge = find(entries, "Nudge Shot", "Storyboard")
    assert "storyboard has focus" in nudge.where
    assert find(entries, "Mark Good", "Review toolbar").keys == (native("Ctrl+Alt+G"),
                                                                 native("Ctrl+Alt+M"))
    assert find(entries, "Hidden Helper", "Window").keys == (native("Ctrl+Alt+H"),)
    assert find(entries, "Quick Look").keys == (native("Ctrl+Alt+Q"),)
    assert "character bible has focus" in find(entries, "Free Floating", "Character Bible").where
    assert not [e for e in entries if e.text == "Never Added"]
    shown = {(dialog.tree.topLevelItem(i).text(0), dialog.tree.topLevelItem(i).child(j).text(0))
             for i in range(dialog.tree.topLevelItemCount())
             for j in range(dialog.tree.topLevelItem(i).childCount())}
    assert ("Generate ▸ Tools", "Frobnicate Takes") in shown
    assert ("Review toolbar", "Mark Good") in shown

    # A shortcut given to an existing action later is picked up when the dialog opens again.
    dialog.close()
    later = QAction("&Later Shortcut", win)
    win.menu("Edit").addAction(later)
    assert not [e for e in collect_shortcuts(win) if e.text == "Later Shortcut"]
    later.setShortcut(QKeySequence("Ctrl+Alt+W"))
    dialog = win.user_help.show_shortcuts()
    assert find(dialog.entries, "Later Shortcut", "Edit").keys == (native("Ctrl+Alt+W"),)


def test_filter_finds_by_command_key_and_menu(win: Any, qtbot: Any) -> None:
    dialog = win.user_help.show_shortcuts()
    qtbot.waitExposed(dialog)
    total = len(dialog.visible_entries())
    assert total == len(dialog.entries) > 10
    qtbot.keyClicks(dialog.filter_edit, "undo")
    assert [e.text for e in dialog.visible_entries()] == ["Undo"]
    assert not dialog.empty_label.isVisible()
    dialog.filter_edit.setText(native("Ctrl+G"))
    assert "Generate Shot" in [e.text for e in dialog.visible_entries()]
    assert all(native("Ctrl+G").lower() in " ".join(e.keys).lower()
               for e in dialog.visible_entries())
    dialog.filter_edit.setText("viewer")  # a group name shows the whole group
    assert {e.group for e in dialog.visible_entries()} == {VIEWER_GROUP}
    assert len(dialog.visible_entries()) >= len(VIEWER_KEYS)
    dialog.filter_edit.setText("no such command at all")
    assert dialog.visible_entries() == []
    assert dialog.empty_label.isVisible()
    dialog.filter_edit.clear()
    assert len(dialog.visible_entries()) == total


def test_the_window_has_no_ambiguous_shortcuts(win: Any) -> None:
    """Qt runs neither of two shortcuts bound to one key in the same place."""
    entries = collect_shortcuts(win)
    assert conflicts(entries) == []
    clash = QAction("Clashing", win)
    clash.setShortcut(QKeySequence("Ctrl+G"))  # Generate Shot's key, window-wide
    win.addAction(clash)
    steal = QAction("Steals H", win)
    steal.setShortcut(QKeySequence("H"))  # would swallow the viewer's heatmap key
    win.addAction(steal)
    found = {key: sorted(e.text for e in group) for key, group in conflicts(collect_shortcuts(win))}
    assert found["Ctrl+G"] == ["Clashing", "Generate Shot"]
    assert found["H"] == ["Drift heatmap on / off", "Steals H"]
    # Delete in the storyboard and in the bible's lists are different widgets: no clash.
    assert "Del" not in found


# -- tooltips ----------------------------------------------------------------------------------
def test_tooltips_show_the_shortcut_and_follow_changes(win: Any) -> None:
    gen = win.generation.generate_action
    assert gen.toolTip() == f"Queue a take of the selected shot ({native('Ctrl+G')})"
    assert gen.statusTip() == "Queue a take of the selected shot"  # the description, no key
    save = win.save_action
    assert save.toolTip() == f"Save ({native(QKeySequence.StandardKey.Save)})"
    undo = win.undo_action
    assert undo.toolTip() == f"Undo ({native(QKeySequence.StandardKey.Undo)})"
    win.undo_stack.push(QUndoCommand("Rename shot"))
    assert undo.toolTip() == f"Undo Rename shot ({native(QKeySequence.StandardKey.Undo)})"
    win.undo_stack.undo()  # back to the clean state: closing the window asks nothing
    assert undo.toolTip() == f"Undo ({native(QKeySequence.StandardKey.Undo)})"
    # The owner changes the tooltip or the shortcut later: still right, no stale key.
    gen.setToolTip("Queue one take")
    assert gen.toolTip() == f"Queue one take ({native('Ctrl+G')})"
    gen.setShortcut(QKeySequence("Ctrl+Alt+G"))
    assert gen.toolTip() == f"Queue one take ({native('Ctrl+Alt+G')})"
    gen.setShortcut(QKeySequence())
    assert gen.toolTip() == "Queue one take"
    # An action that never had a shortcut keeps its own tooltip.
    quiet = QAction("Quiet", win)
    quiet.setToolTip("Does something quietly")
    win.menu("Edit").addAction(quiet)
    apply_shortcut_tooltips(win)
    assert quiet.toolTip() == "Does something quietly" and quiet.statusTip() == ""
    # Actions added later are covered on the next pass (the dialog runs one when it opens).
    late = QAction("Late Action", win)
    late.setShortcut(QKeySequence("Ctrl+Alt+L"))
    win.menu("Edit").addAction(late)
    assert apply_shortcut_tooltips(win) >= 10
    assert late.toolTip() == f"Late Action ({native('Ctrl+Alt+L')})"


def test_toolbar_buttons_show_the_shortcut_in_their_tooltip(win: Any) -> None:
    bar = win.findChild(QToolBar, "toolbar_generate")
    button = bar.widgetForAction(win.generation.generate_action)
    assert button is not None and button.toolTip().endswith(f"({native('Ctrl+G')})")


# -- the viewer's keys -------------------------------------------------------------------------
CANDIDATE_KEYS = (
    [getattr(Qt.Key, f"Key_{c}") for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"]
    + [Qt.Key.Key_Space, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down,
       Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown,
       Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape, Qt.Key.Key_Tab,
       Qt.Key.Key_Backspace, Qt.Key.Key_Delete, Qt.Key.Key_Plus, Qt.Key.Key_Minus,
       Qt.Key.Key_Comma, Qt.Key.Key_Period, Qt.Key.Key_Slash, Qt.Key.Key_BracketLeft,
       Qt.Key.Key_BracketRight, Qt.Key.Key_Backslash, Qt.Key.Key_Equal]
    + [getattr(Qt.Key, f"Key_F{i}") for i in range(1, 13)])


def _handles(viewer: Any, key: Qt.Key, mods: Qt.KeyboardModifier) -> bool:
    event = QKeyEvent(QEvent.Type.KeyPress, key, mods)
    viewer.keyPressEvent(event)
    return event.isAccepted()


def test_viewer_key_table_matches_what_the_viewer_handles(win: Any) -> None:
    """VIEWER_KEYS is the one list that is not read from actions: press every key on the real
    viewer, so a key added to (or removed from) ViewerWidget.keyPressEvent fails here."""
    viewer = win.take_viewer
    none = Qt.KeyboardModifier.NoModifier
    handled = {QKeySequence(key).toString() for key in CANDIDATE_KEYS
               if _handles(viewer, key, none)}
    listed = {QKeySequence(k).toString() for k, _ in VIEWER_KEYS if "+" not in k}
    assert handled == listed
    for key, _text in VIEWER_KEYS:  # modified ones (Shift+Left) too
        combo = QKeySequence(key)[0]
        assert _handles(viewer, combo.key(), combo.keyboardModifiers()), key


# -- the user guide ----------------------------------------------------------------------------
def _guide_headings() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, re.MULTILINE)]


def test_guide_ships_next_to_resources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert guide_path() == GUIDE and GUIDE.is_file()
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert guide_path() == tmp_path / "docs" / "GUIDE.md"  # the spec puts it there


def test_guide_opens_from_the_help_menu_and_renders_the_file(win: Any, qtbot: Any) -> None:
    win.user_help.guide_action.trigger()
    dialog = win.user_help.guide_dialog
    assert isinstance(dialog, GuideDialog)
    qtbot.waitExposed(dialog)
    headings = _guide_headings()
    assert len(headings) >= 10
    assert [text for _level, text, _slug in dialog.headings] == headings
    doc = dialog.browser.document()
    # Rendered as Markdown: real heading blocks, not the raw text.
    assert "## " not in doc.toPlainText()
    levels = {text: level for level, text, _slug in dialog.headings}
    assert levels[headings[0]] == 1 and levels["Make a character"] == 2
    assert "User Guide" in dialog.windowTitle()
    # The same dialog comes back on the next trigger, and it offers the shortcuts list.
    win.user_help.guide_action.trigger()
    assert win.user_help.guide_dialog is dialog


def _link_point(browser: Any, href: str) -> QPoint:
    """Where the link to ``href`` is drawn in the browser's viewport."""
    doc = browser.document()
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.charFormat().isAnchor() and frag.charFormat().anchorHref() == href:
                cursor = QTextCursor(doc)
                cursor.setPosition(frag.position() + max(1, frag.length() // 2))
                browser.setTextCursor(cursor)
                browser.ensureCursorVisible()
                return browser.cursorRect(cursor).center()
            it += 1
        block = block.next()
    raise AssertionError(f"no link to {href}")


def test_guide_internal_links_scroll_to_their_heading(win: Any, qtbot: Any) -> None:
    dialog = win.user_help.show_guide()
    dialog.resize(600, 400)
    qtbot.waitExposed(dialog)
    QApplication.processEvents()
    browser = dialog.browser
    bar = browser.verticalScrollBar()
    bar.setValue(0)
    target = heading_slug("Export")
    point = _link_point(browser, f"#{target}")  # the contents list, near the top
    before = bar.value()
    qtbot.mouseClick(browser.viewport(), Qt.MouseButton.LeftButton, pos=point)
    QApplication.processEvents()
    assert bar.value() > before
    # The heading is now at the top of the view.
    block = next(b for b in _blocks(browser.document())
                 if b.text() == "Export" and b.blockFormat().headingLevel() == 2)
    top = browser.document().documentLayout().blockBoundingRect(block).top()
    assert abs(top - bar.value()) < 40


def _blocks(doc: Any) -> list[Any]:
    out, block = [], doc.begin()
    while block.isValid():
        out.append(block)
        block = block.next()
    return out


def test_guide_external_links_open_in_the_desktop_browser(win: Any, qtbot: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[QUrl] = []
    monkeypatch.setattr(help_mod.QDesktopServices, "openUrl",
                        staticmethod(lambda url: opened.append(QUrl(url)) or True))
    dialog = win.user_help.show_guide()
    dialog.resize(700, 500)
    qtbot.waitExposed(dialog)
    url = "https://pytorch.org/get-started/locally/"
    point = _link_point(dialog.browser, url)
    bar = dialog.browser.verticalScrollBar().value()
    qtbot.mouseClick(dialog.browser.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert [u.toString() for u in opened] == [url]
    assert dialog.browser.verticalScrollBar().value() == bar  # the guide stays where it was
    assert "pytorch" not in dialog.browser.source().toString()


def test_guide_links_are_anchors_or_web_addresses() -> None:
    """Internal links must reach a heading (GitHub's slugs, which the app uses too); nothing
    may point at another repository file, which the installed app does not have."""
    text = GUIDE.read_text(encoding="utf-8")
    slugs: dict[str, int] = {}
    anchors = {heading_slug(h, slugs) for h in _guide_headings()}
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert links
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, link
        else:
            assert link.startswith(("https://", "http://")), link


def test_guide_points_at_the_shortcuts_dialog_instead_of_listing_keys() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert "Help ▸ Keyboard Shortcuts…" in text
    # No key combinations copied into the guide: they would drift from the actions.
    assert not re.search(r"\b(Ctrl|Shift|Alt|Cmd)\+\w", text)


def test_a_missing_guide_says_where_it_should_be(qtbot: Any, tmp_path: Path) -> None:
    dialog = GuideDialog(None, path=tmp_path / "docs" / "GUIDE.md")
    qtbot.addWidget(dialog)
    assert dialog.headings[0][1] == "User guide not found"
    assert str(tmp_path / "docs" / "GUIDE.md") in dialog.browser.toPlainText()


def test_framing_editor_keys_are_listed(win: Any) -> None:
    """The Inspector's framing editor handles its keys itself (FRAMING_KEYS): each is listed once,
    keys doing the same thing share a row, and none clashes with a window shortcut."""
    from studio.ui.help import FRAMING_GROUP
    from studio.ui.start_image_view import FRAMING_KEYS

    entries = collect_shortcuts(win)
    framing = [e for e in entries if e.group == FRAMING_GROUP]
    listed = {p for e in framing for p in e.portable}
    assert listed == {QKeySequence(k).toString(QKeySequence.SequenceFormat.PortableText) for k, _ in FRAMING_KEYS}
    zoom_in = next(e for e in framing if e.text == "zoom in")
    assert len(zoom_in.keys) == 2
    assert not [k for k, clash in conflicts(entries) if any(e.group == FRAMING_GROUP for e in clash)]
