"""Format-4 frame states in the app, on the one colour scale (studio.identity.colours): a wrong
person is red everywhere (storyboard card, take strip, viewer, HTML report); frames the
analysis could not judge are violet in the viewer's state row, the plot and the report, and
labelled on the picture; the app's badge and the report's colour agree for every kind of take.
Real widgets (offscreen), real H.264 takes, records written by the real record writer."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QWidget

from studio.export.plan import plan_export
from studio.export.report import build_report
from studio.identity import colours
from studio.ui.viewer import ViewerWidget, take_badge
from studio.ui.viewer.ruler import MARGIN, STATE_ROW
from viewer_media import UNSTABLE, make_project, write_analysis

FRAMES = 40
RED, AMBER, GREEN, VIOLET = (colours.BAND_COLOURS[k]
                             for k in ("drift", "close", "match", "uncertain"))
BRIEF = "eye shape drifted (briefly)"


def rgb_of(widget: QWidget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def count(rgb: np.ndarray, hex_colour: str) -> int:
    c = QColor(hex_colour)
    return int(np.all(rgb == (c.red(), c.green(), c.blue()), axis=-1).sum())


def hexes(rgb: np.ndarray) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb)


def record(doc, take_id: str, identity: list[float], states: list[str],
           cautions: list[list[str]] | None = None) -> None:
    """A dlib record (threshold 0.5, the engine's calibrated bands) of ``take_id``, fresh for
    the project's session."""
    write_analysis(doc.folder, take_id, f"takes/shot1/{take_id}.mp4", FRAMES, 160, 96, 16.0,
                   threshold=0.5, project=doc.project, shot_id="shot1", ref_ids=["ref0"],
                   identity=identity, states=states, cautions=cautions)


def wrong_person(doc, take_id: str = "take0") -> None:
    """Every frame another person: identity 0.43 under dlib's 0.5, every frame drift."""
    record(doc, take_id, [0.43] * FRAMES, ["drift"] * FRAMES)


def with_uncertain(doc, take_id: str = "take0") -> None:
    """Frames 20–27 uncertain (no fit), 28–31 close (a brief eye-shape dip), the rest match."""
    states = ["match"] * 20 + ["uncertain"] * 8 + ["close"] * 4 + ["match"] * 8
    ident = [0.9] * 28 + [0.55] * 4 + [0.9] * 8
    cautions = [[BRIEF, "identity close to the threshold"] if st == "close" else []
                for st in states]
    record(doc, take_id, ident, states, cautions)


class _Report(HTMLParser):
    """Per shot section: the take's band (first band dot) and the state strip's rectangles."""

    def __init__(self) -> None:
        super().__init__()
        self.section = ""
        self.band: dict[str, tuple[str, str]] = {}
        self.states: dict[str, list[dict[str, str]]] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.section = a.get("id", "")
        elif tag == "span" and a.get("class") == "band" and self.section:
            self.band.setdefault(self.section, (a["data-band"],
                                                a["style"].split("background:")[1]))
        elif tag == "rect" and a.get("class") == "state":
            self.states.setdefault(self.section, []).append(a)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def report_of(doc) -> _Report:
    parser = _Report()
    parser.feed(build_report(doc.project, doc.folder, plan_export(doc.project, doc.folder)))
    return parser


def state_row_colour(v: ViewerWidget, rgb: np.ndarray, frame: int) -> str:
    """The colour the ruler's state row shows at ``frame`` (centre of its cell)."""
    r = v.ruler
    y = int(r.height() - 4 - STATE_ROW / 2)  # the track ends 4 px above the ruler's bottom
    x = int(r.x_of(frame) + r.cell() / 2)
    return hexes(rgb[y, x])


def open_viewer(qtbot, doc, tmp_path: Path) -> ViewerWidget:
    v = ViewerWidget(doc, proxy_dir=tmp_path / "proxies")
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    v.set_shot("shot1")
    assert v.src_a is not None and v.src_a.source.wait_ready(60), v.src_a.source.error
    qtbot.waitUntil(lambda: v.view.a.image is not None)
    return v


def show_frame(qtbot, v: ViewerWidget, frame: int) -> None:
    v.seek(frame)
    qtbot.waitUntil(lambda: v.view.a.index == frame and v.current == frame)


# -- the wrong person is red everywhere ----------------------------------------------------------

def test_a_wrong_person_take_is_red_everywhere(qtbot, tmp_path: Path) -> None:
    from studio.ui.main_window import MainWindow

    doc = make_project(tmp_path / "proj", takes=1, analysed=0)
    wrong_person(doc)
    win = MainWindow(doc, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    qtbot.waitExposed(win)
    try:
        shot = doc.project.shot("shot1")
        # The storyboard card's badge: its colour and its painted pixels.
        card = win.storyboard.badge_for(shot)
        assert card is not None and card.text == "0.43" and card.color.lower() == RED
        assert "identity drifted" in card.tooltip
        sb = win.storyboard
        sb.refresh()
        rect = sb.view.visualRect(sb.model.index(0))
        pix = rgb_of(sb.view.viewport())[rect.top():rect.top() + 40, rect.left():rect.right()]
        assert count(pix, RED) > 100 and count(pix, AMBER) == 0 and count(pix, GREEN) == 0
        # The viewer: the take strip's card and the state row of the ruler.
        win.select_shot("shot1")
        v = win.take_viewer
        qtbot.waitUntil(lambda: v.shot_id == "shot1" and v.analysis_a is not None)
        strip_card = v.strip.cards["take0"]
        assert strip_card.badge.level == "drift" and strip_card.badge.color.name() == RED
        card_rgb = rgb_of(strip_card)
        assert count(card_rgb, RED) > 30 and count(card_rgb, AMBER) == 0
        assert v.ruler.states == ["drift"] * FRAMES and v.ruler.ranges == [(0, FRAMES - 1)]
        ruler = rgb_of(v.ruler)
        assert {state_row_colour(v, ruler, f) for f in range(1, FRAMES)} == {RED}
        assert "⚑ different person" in v.position.text()
        # The HTML report of the same record.
        rep = report_of(doc)
        assert rep.band["shot-shot1"] == ("drift", RED)
        strip = rep.states["shot-shot1"]
        assert [(r["data-state"], r["fill"], r["data-start"], r["data-end"]) for r in strip] == \
            [("drift", RED, "0", str(FRAMES - 1))]
    finally:
        win.take_viewer.shutdown()
        win.generation.shutdown()


# -- uncertain frames are violet, never red --------------------------------------------------------

def test_uncertain_frames_are_violet_and_labelled_in_the_viewer(qtbot, tmp_path: Path) -> None:
    doc = make_project(tmp_path / "proj", takes=1, analysed=0)
    with_uncertain(doc)
    v = open_viewer(qtbot, doc, tmp_path)
    try:
        a = v.analysis_a
        assert a is not None and a.state(22) == "uncertain" and a.uncertain_runs() == [(20, 27)]
        # Ruler: the state row, frame by frame; the uncertain cells of the track tinted violet
        # (blue above red), and no drift range anywhere.
        show_frame(qtbot, v, 0)
        assert v.ruler.ranges == []
        ruler = rgb_of(v.ruler)
        for f in range(1, FRAMES):
            want = VIOLET if 20 <= f <= 27 else AMBER if 28 <= f <= 31 else GREEN
            assert state_row_colour(v, ruler, f) == want, f
            assert v.ruler.state_color(f).name() == want
        x = int(v.ruler.x_of(22) + v.ruler.cell() / 2)
        r, g, b = (int(c) for c in ruler[18, x])
        assert b > r + 25 and b > g + 25, (r, g, b)
        assert "Frame 22: uncertain: " + UNSTABLE in v.ruler.tooltip_at(x)
        assert f"Frame 29: close: {BRIEF}" in v.ruler.tooltip_at(v.ruler.x_of(29) + 1)
        # Plot: uncertain frames shaded violet (the identity curve has a gap there).
        assert v.plot.uncertain == [(20, 27)] and v.plot.ranges == []
        plot = rgb_of(v.plot)
        px = int(MARGIN + (22 + 0.5) * v.plot.cell())
        r, g, b = (int(c) for c in plot[10, px])
        assert b > r + 15, (r, g, b)
        # The picture: an uncertain frame has no landmarks and no heatmap, but a violet label
        # saying why; a matching frame shows its landmarks and no such label.
        v.set_face_visible(True)
        v.set_heatmap_visible(True)
        show_frame(qtbot, v, 22)
        assert v.view.a.state_label == "uncertain: " + UNSTABLE
        pic = rgb_of(v.view)
        assert count(pic, VIOLET) > 20
        assert count(pic, "#fff050") == 0  # the landmark dots' yellow
        assert "uncertain: " + UNSTABLE in v.position.text()
        show_frame(qtbot, v, 5)
        assert v.view.a.state_label == ""
        pic = rgb_of(v.view)
        assert count(pic, VIOLET) == 0 and count(pic, "#fff050") > 0
        # A close frame says why in the info line (and its tooltip, whole).
        show_frame(qtbot, v, 29)
        assert f"close: {BRIEF}" in v.position.text()
        assert f"close: {BRIEF}; identity close to the threshold" in v.position.toolTip()
        # The ranges toggle hides the violet shading with the red one; the state row stays.
        v.set_ranges_visible(False)
        assert v.plot.uncertain == []
        assert state_row_colour(v, rgb_of(v.ruler), 22) == VIOLET
    finally:
        v.shutdown()


def test_the_report_shows_uncertain_frames_violet(qtbot, tmp_path: Path) -> None:
    doc = make_project(tmp_path / "proj", takes=1, analysed=0)
    with_uncertain(doc)
    rep = report_of(doc)
    strip = [(r["data-state"], r["fill"], int(r["data-start"]), int(r["data-end"]))
             for r in rep.states["shot-shot1"]]
    assert strip == [("match", GREEN, 0, 19), ("uncertain", VIOLET, 20, 27),
                     ("close", AMBER, 28, 31), ("match", GREEN, 32, 39)]
    text = " ".join(rep.text)
    assert "8 of 40 frames" in text and "match 28 · close 4 · drift 0 · uncertain 8" in text


# -- the app and the report agree -----------------------------------------------------------------

CASES = {
    "match": ([0.9] * FRAMES, ["match"] * FRAMES, GREEN),
    "close": ([0.55] * FRAMES, ["close"] * FRAMES, AMBER),  # within dlib's warning band
    "drift episode": ([0.9] * 10 + [0.45] * 6 + [0.9] * 24,
                      ["match"] * 10 + ["drift"] * 6 + ["match"] * 24, AMBER),  # 15 % flagged
    "wrong person": ([0.43] * FRAMES, ["drift"] * FRAMES, RED),
    "mostly flagged": ([0.9] * 15 + [0.45] * 25, ["match"] * 15 + ["drift"] * 25, RED),
    "uncertain-heavy": ([0.9] * FRAMES, ["match"] * 15 + ["uncertain"] * 25, VIOLET),
}


@pytest.mark.parametrize("case", list(CASES))
def test_app_badges_and_report_agree(qtbot, tmp_path: Path, case: str) -> None:
    identity, states, expected = CASES[case]
    doc = make_project(tmp_path / "proj", takes=1, analysed=0)
    record(doc, "take0", identity, states)
    take = doc.project.shot("shot1").takes[0]
    badge = take_badge(doc, take)
    level, colour = report_of(doc).band["shot-shot1"]
    assert badge.analysed and level == badge.level, case
    assert colour == badge.color.name() == expected, case
    # the take strip paints the same colour
    from studio.ui.viewer.badges import ThumbnailCache
    from studio.ui.viewer.take_strip import TakeStrip

    strip = TakeStrip(ThumbnailCache(max_side=80, proxy_dir=tmp_path / "px"))
    qtbot.addWidget(strip)
    strip.set_takes(doc, doc.project.shot("shot1"), "take0", None, None)
    strip.resize(400, 100)
    card = strip.cards["take0"]
    card.resize(card.sizeHint())
    assert card.badge.color.name() == expected
    assert count(rgb_of(card), expected) > 30
