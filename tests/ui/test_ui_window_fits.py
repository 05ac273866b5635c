"""The main window fits a 1366×768 laptop screen in every state, never resizes itself, and its
toggle buttons show whether they are on.

Real window (offscreen) with the app's real theme, the bundled demo project, real preview
takes with their dlib analysis. Before the fix the window's minimum width jumped to 1912–1959 px
once a take existed (long labels and button rows in the viewer), the viewer's controls overlapped
when squeezed, and checked toggles looked like unchecked ones.
"""

from __future__ import annotations

import shutil
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QImage, QPalette
from PySide6.QtWidgets import (QApplication, QDockWidget, QPushButton, QSizePolicy, QToolButton,
                               QWidget)

from uitest_support import answers, make_settings, open_window, wait_until  # noqa: F401

from studio.resources import resource
from studio.ui.theme import apply_theme
from studio.ui.undo import EditCharacterCommand, EditShotCommand, push

LIMIT = QSize(1280, 720)  # what must fit: a 1366×768 screen less a panel and a title bar
WINDOW = QSize(1280, 720)  # the size the window is given and must keep


@pytest.fixture
def themed(qapp: QApplication):
    """The app's own look (Fusion, dark palette, the stylesheet): sizes and the checked look
    depend on it. Restored afterwards so other tests keep the default one."""
    style, palette, sheet = qapp.style().name(), QPalette(qapp.palette()), qapp.styleSheet()
    apply_theme(qapp)
    yield qapp
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)
    qapp.setStyle(style)


def settle(qtbot, ms: int = 50) -> None:
    QApplication.processEvents()
    qtbot.wait(ms)
    QApplication.processEvents()


def widest(win: QWidget, n: int = 6) -> str:
    """The widgets asking for the most width (named in a failure message)."""
    rows = []
    for w in win.findChildren(QWidget):
        if w.isVisibleTo(win) and not w.isWindow():
            m = w.minimumSizeHint().expandedTo(w.minimumSize())
            text = w.text()[:40] if callable(getattr(w, "text", None)) else ""
            rows.append((m.width(), m.height(), type(w).__name__, w.objectName(), text))
    return "; ".join(str(r) for r in sorted(rows, reverse=True)[:n])


def assert_fits(qtbot, win, state: str) -> None:
    settle(qtbot)
    minimum = win.minimumSizeHint().expandedTo(win.minimumSize())
    assert minimum.width() <= LIMIT.width() and minimum.height() <= LIMIT.height(), (
        f"{state}: the window needs {minimum.width()}×{minimum.height()}; widest: {widest(win)}")
    assert win.size() == WINDOW, f"{state}: the window resized itself to {win.size()}"
    # Every dock that is showing lies inside the window (none pushed past its right edge).
    inside = QRect(QPoint(0, 0), win.size())
    for dock in win.findChildren(QDockWidget):
        if dock.isVisible() and not dock.isFloating() and dock.geometry().intersects(inside):
            assert inside.contains(dock.geometry()), f"{state}: {dock.objectName()} cut off"


def _smart_minimum(w: QWidget) -> QSize:
    """What a layout must give ``w`` (Qt's qSmartMinSize: an explicit minimum wins, else the
    hint, unless the policy ignores it)."""
    hint, explicit = w.minimumSizeHint(), w.minimumSize()
    pol = w.sizePolicy()
    width = explicit.width() or (0 if pol.horizontalPolicy() == QSizePolicy.Policy.Ignored
                                 else max(0, hint.width()))
    height = explicit.height() or (0 if pol.verticalPolicy() == QSizePolicy.Policy.Ignored
                                   else max(0, hint.height()))
    return QSize(width, height)


def bar_widgets(viewer) -> list[QWidget]:
    """The viewer's header, control bar and transport: every widget a user sees there (the
    plain QWidget groups that hold them are containers, not controls)."""
    out: list[QWidget] = [viewer.title, viewer.engine_label]
    for bar in (viewer.control_bar, viewer.transport_bar):
        out += [w for w in bar.findChildren(QWidget)
                if type(w) is not QWidget and not w.isWindow() and w.isVisibleTo(viewer)
                and w.parentWidget() is not None and type(w.parentWidget()) is QWidget]
    return [w for w in out if w.isVisibleTo(viewer)]


def assert_bars_laid_out(viewer, state: str) -> None:
    widgets = bar_widgets(viewer)
    names = {w: (w.objectName() or (w.text() if callable(getattr(w, "text", None)) else "")
                 or type(w).__name__) for w in widgets}
    assert len(widgets) >= 17, f"{state}: expected the viewer's controls, got {list(names.values())}"
    area = viewer.scroll.viewport()
    rects = {}
    for w in widgets:
        r = QRect(w.mapTo(area, QPoint(0, 0)), w.size())
        need = _smart_minimum(w)
        assert w.width() >= need.width() and w.height() >= need.height(), (
            f"{state}: {names[w]!r} squeezed to {w.width()}×{w.height()} below its minimum "
            f"{need.width()}×{need.height()}")
        assert r.left() >= 0 and r.right() < area.width(), (
            f"{state}: {names[w]!r} at x {r.left()}–{r.right()} is outside the viewer "
            f"(width {area.width()})")
        rects[w] = r
    for a, b in combinations(widgets, 2):
        assert not rects[a].intersects(rects[b]), (
            f"{state}: {names[a]!r} {rects[a].getRect()} overlaps {names[b]!r} {rects[b].getRect()}")


@pytest.mark.usefixtures("answers")  # closing the edited window: Discard
def test_window_fits_a_laptop_screen_in_every_state_and_never_resizes_itself(
        qtbot, tmp_path: Path, themed) -> None:
    win = open_window(qtbot, None, make_settings(tmp_path))
    win.resize(WINDOW)
    assert_fits(qtbot, win, "empty project")

    demo = tmp_path / "Demo"
    shutil.copytree(resource("demo"), demo)
    assert win.open_project(demo), win.last_error
    assert_fits(qtbot, win, "demo project")

    shot_id = win.document.project.shots[0].id
    win.select_shot(shot_id)
    win.generation.set_draft(True)  # small, quick takes: their labels are what matters here
    win.generation.generate([shot_id])
    win.generation.reroll(shot_id, 1)

    def analysed() -> bool:
        takes = win.document.project.shot(shot_id).takes
        return len(takes) == 2 and all(t.identity_mean is not None for t in takes)

    wait_until(qtbot, analysed, timeout=180_000)
    viewer = win.take_viewer
    win.select_shot(shot_id)
    wait_until(qtbot, lambda: win.centre_stack.currentWidget() is viewer
               and viewer.analysis_a is not None and bool(viewer.engine_label.text()))
    assert "scored by" in viewer.engine_label.text() and "identity" in viewer.position.text()
    assert_fits(qtbot, win, "viewer with takes")
    assert_bars_laid_out(viewer, "viewer with takes")

    viewer.set_compare_mode("side")
    wait_until(qtbot, lambda: viewer.compare_take_id is not None)
    assert viewer.compare_take.currentData() == viewer.compare_take_id
    assert_fits(qtbot, win, "A/B compare")
    assert_bars_laid_out(viewer, "A/B compare")

    for dock in win.findChildren(QDockWidget):  # each dock shown, and raised in its tab group
        dock.show()
        dock.raise_()
        assert_fits(qtbot, win, f"dock {dock.objectName()} shown")

    # Edits with long texts must not widen the window (labels elide or wrap).
    long = "Introduction of the commander before the launch, seen from the gantry " * 2
    push(win.undo_stack, EditShotCommand(win.document, shot_id, title=long.strip()))
    char_id = win.document.project.shots[0].character_id
    push(win.undo_stack, EditCharacterCommand(win.document, char_id,
                                              name="Commander Eileen Marie Collins of STS-93"))
    assert_fits(qtbot, win, "long titles")
    assert_bars_laid_out(viewer, "long titles")

    win.storyboard.add_shot()
    assert_fits(qtbot, win, "after + Shot")

    # Squeezed to its minimum, the viewer's controls wrap instead of overlapping.
    win.select_shot(shot_id)
    wait_until(qtbot, lambda: win.centre_stack.currentWidget() is viewer)
    win.resize(win.minimumSize())
    settle(qtbot, 100)
    assert_bars_laid_out(viewer, "window at its minimum size")
    assert viewer.control_bar.height() > viewer.compare_take.height()  # really wrapped

    win.generation.shutdown()
    win.identity.shutdown()
    viewer.shutdown()


def grab(widget: QWidget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    return np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(
        h, img.bytesPerLine())[:, : w * 3].reshape(h, w, 3).astype(int)


def assert_looks_different(qtbot, button: QToolButton | QPushButton, what: str) -> None:
    button.setChecked(False)
    settle(qtbot, 10)
    off = grab(button)
    text = button.text()
    button.setChecked(True)
    settle(qtbot, 10)
    on = grab(button)
    assert button.text() == text  # the state shows in the look, the label stays
    assert off.shape == on.shape, f"{what}: the size changed when checked"
    changed = np.abs(off - on).max(axis=2) > 40  # a clearly different colour, not a shade
    assert changed.mean() > 0.4, f"{what}: only {changed.mean():.0%} of pixels differ when on"


def test_checked_toggle_buttons_look_different_from_unchecked(qtbot, themed) -> None:
    for cls in (QToolButton, QPushButton):
        b = cls()
        b.setText("Heatmap")
        b.setCheckable(True)
        qtbot.addWidget(b)
        b.show()
        qtbot.waitExposed(b)
        assert_looks_different(qtbot, b, cls.__name__)


def _viewer(qtbot, tmp_path: Path, takes: int = 2):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "viewer"))
    from viewer_media import make_project

    from studio.ui.viewer.viewer import ViewerWidget

    doc = make_project(tmp_path / "proj", takes=takes)
    viewer = ViewerWidget(doc, proxy_dir=tmp_path / "proxies")
    qtbot.addWidget(viewer)
    viewer.resize(900, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.set_shot(doc.project.shots[0].id)
    return viewer


def test_viewer_controls_wrap_instead_of_overlapping(qtbot, tmp_path: Path, themed) -> None:
    viewer = _viewer(qtbot, tmp_path)
    viewer.set_compare_mode("side")
    viewer.set_loop(3, 30)
    viewer.player.shuttle_reverse()
    viewer.player.pause()
    narrowest = viewer.minimumSizeHint().width()
    assert narrowest <= 480  # a viewer column beside two docks on a 1366-px screen
    lines = {}
    for width in (narrowest, 520, 760, 1000, 1280):
        viewer.resize(width, 560)
        settle(qtbot, 30)
        assert_bars_laid_out(viewer, f"viewer {width} px wide")
        lines[width] = viewer.transport_bar.height()
    assert lines[narrowest] > lines[1280]  # wrapped onto more lines when narrow
    # Short: the viewer scrolls rather than squeezing the picture, plot and strip together.
    viewer.resize(narrowest, 200)
    settle(qtbot, 30)
    assert viewer.scroll.verticalScrollBar().maximum() > 0
    assert_bars_laid_out(viewer, "viewer 200 px high")
    viewer.shutdown()


def test_viewer_overlay_toggles_show_their_state(qtbot, tmp_path: Path, themed) -> None:
    viewer = _viewer(qtbot, tmp_path, takes=1)
    for button in (viewer.btn_heat, viewer.btn_face, viewer.btn_ranges):
        assert_looks_different(qtbot, button, button.text())
    # The keys toggle the same buttons, so the look follows H as well as a click.
    viewer.set_heatmap_visible(False)
    before = grab(viewer.btn_heat)
    viewer.set_heatmap_visible(True)
    assert (np.abs(grab(viewer.btn_heat) - before).max(axis=2) > 40).mean() > 0.4
    viewer.shutdown()
