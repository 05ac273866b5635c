"""A big project opens without freezing the window (issue 15, finding 10, the GUI part).

A 1000-shot project as a user's looks after some work (two takes a shot with sidecars, analysis
records, characters with reference photos: ``benchmarks.scale._make_project``, the generator
``bench scale`` measures) is opened by the real main window in a fresh process (offscreen), so
that no import, cache or thread of another test is warm. A 10 ms QTimer on the UI thread sees
every stall. The goal is no stall over 100 ms (``bench scale`` reports it); the bound here is
250 ms because this runs on a 2-core CI machine shared with other jobs, where a 60 ms piece of
work can take twice as long. Before the fix the open froze the window for 0.25–0.6 s at a time
(dlib's face detector holding the GIL in the reference and framing checks, takes recovery
re-reading every sidecar, first imports of numpy and PyAV on the UI thread).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = 1000
STALL_BOUND_S = 0.25  # the 100 ms goal, with headroom for a shared 2-core CI machine
FIRST_PAINT_BOUND_S = 3.0

CHILD = r"""
import json, os, sys, time
from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication

folder, settings_path = sys.argv[1], sys.argv[2]
app = QApplication(sys.argv[:1])
from studio.ui.main_window import MainWindow
from studio.ui.start_image_view import AutoFraming
from studio.ui.viewer import badges
from studio.ui.viewer.badges import shared_thumbnails

made = []  # every video thumbnail asked of the decoder (a disk-cache hit included)
_make = badges._video_thumbnail
def counting(path, *args):
    made.append(str(path))
    return _make(path, *args)
badges._video_thumbnail = counting

win = MainWindow(settings=QSettings(settings_path, QSettings.IniFormat))
win.resize(1440, 900)
win.show()
app.processEvents()
gaps, last, painted = [], [time.perf_counter()], []
def tick():
    now = time.perf_counter()
    gaps.append(now - last[0])
    last[0] = now
probe = QTimer()
probe.setInterval(10)
probe.timeout.connect(tick)
class Paint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint and not painted:
            painted.append(time.perf_counter())
        return False
filt = Paint()
probe.start()
last[0] = t0 = time.perf_counter()
assert win.open_project(folder), win.last_error
win.storyboard.view.viewport().installEventFilter(filt)
win.storyboard.view.viewport().update()

def pending():
    framing = win.findChild(AutoFraming, "autoFraming")
    return (shared_thumbnails().pending() + win.thumbnails.pending()
            + win.bible.checks.pending() + (framing.pending() if framing is not None else 0))

def visible_shots():
    view = win.storyboard.view
    rect = view.viewport().rect()
    rows = {view.indexAt(rect.topLeft()).row(), view.indexAt(rect.center()).row()}
    step = max(8, view.visualRect(view.model().index(0, 0)).width() // 2)
    for x in range(rect.left() + 2, rect.right(), step):
        rows.add(view.indexAt(rect.topLeft().__class__(x, rect.center().y())).row())
    shots = win.document.project.shots
    return [shots[r] for r in sorted(rows) if 0 <= r < len(shots)]

def finish():
    if (time.perf_counter() - t0 < 4.0 or pending()) and time.perf_counter() - t0 < 90:
        return
    check.stop()
    probe.stop()
    seen = visible_shots()
    sb = win.storyboard
    from studio.ui.viewer.badges import shot_badge
    thumbs = [s.id for s in seen
              if (v := shot_badge(win.document, s).video) is not None and str(v) in made
              and shared_thumbnails().get(v) is not None]  # the active take's own picture
    badges = [s.id for s in seen if sb.badge_for(s) is not None]
    print("BIG " + json.dumps({
        "first_paint_s": (painted[0] if painted else time.perf_counter()) - t0,
        "longest_stall_s": max(gaps + [0.0]), "stalls_over_100ms": sum(g > 0.1 for g in gaps),
        "visible": [s.id for s in seen], "thumbnails": thumbs, "badges": badges,
        "thumbnails_made": len(set(made)), "made": sorted(set(made))[:20], "errors": win.errors,
        "shots": len(win.document.project.shots),
        "takes": sum(len(s.takes) for s in win.document.project.shots)}), flush=True)
    os._exit(0)

check = QTimer()
check.setInterval(100)
check.timeout.connect(finish)
check.start()
app.exec()
"""


@pytest.fixture(scope="module")
def big_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT))
    from benchmarks.scale import _make_project

    folder = tmp_path_factory.mktemp("big") / "project"
    _make_project(folder, SHOTS)
    return folder


def _open_in_a_fresh_app(folder: Path, home: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CONTINUITY_STUDIO_HOME=str(home),
               CONTINUITY_LANDMARKS="dlib68",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(home / "s.ini")],
                          capture_output=True, text=True, timeout=240, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("BIG "):
            return json.loads(line[4:])
    raise AssertionError(f"the window printed no figures (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")


def test_a_1000_shot_project_with_takes_opens_without_ui_stalls(big_project: Path,
                                                                  tmp_path: Path) -> None:
    got = _open_in_a_fresh_app(big_project, tmp_path / "home")
    assert got["shots"] == SHOTS and got["takes"] == 2 * SHOTS  # nothing recovered, nothing lost
    assert got["errors"] == []
    assert got["first_paint_s"] < FIRST_PAINT_BOUND_S, got
    assert got["longest_stall_s"] < STALL_BOUND_S, got
    # On demand, not eagerly: the visible cards have their take's picture and identity badge ...
    assert len(got["visible"]) >= 3, got
    assert got["thumbnails"] == got["visible"], json.dumps(got)[:3000]
    assert got["badges"] == got["visible"], got
    # ... and thumbnails were made for about what is on screen, not for 1000 shots.
    assert len(got["visible"]) <= got["thumbnails_made"] <= 10 * len(got["visible"]) + 20, got


def test_an_edit_re_checks_the_analyses_of_what_it_changed_not_of_every_take(
        tmp_path: Path) -> None:
    """The analysis index used to re-judge every take of the project (a stat and a record
    check each: O(shots × takes)) on every shot or character edit; now a shot's edit re-checks
    that shot's takes and a character's edit the shots that use it."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.scale import TAKES_PER_SHOT, _make_project
    from studio.core.document import ProjectDocument
    from studio.core.persistence import load_project
    from studio.session.session import Session

    shots = 300
    _make_project(tmp_path / "p", shots)
    doc = ProjectDocument(load_project(tmp_path / "p"), tmp_path / "p")
    session = Session(doc)
    try:
        index = session.analyses
        checked: list[str] = []
        judge = index.stale_reasons

        def counting(shot_id: str, take_id: str) -> tuple[str, ...]:
            checked.append(take_id)
            return judge(shot_id, take_id)

        index.stale_reasons = counting  # type: ignore[method-assign]
        doc.update_shot("s7", prompt="she turns to the window")
        assert sorted(checked) == sorted(t.id for t in doc.project.shot("s7").takes)
        checked.clear()
        doc.update_character("friend", name="Best friend")  # the odd shots' character
        assert len(checked) == (shots // 2) * TAKES_PER_SHOT
        assert {doc.project.shot(s).character_id for s in
                {sh.id for sh in doc.project.shots for t in sh.takes if t.id in checked}} \
            == {"friend"}
    finally:
        session.close()
