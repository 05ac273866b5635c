"""The window and the session: from "Generate" to the viewer's plot showing the new analysis,
carried by session events alone (no file watching), and stale scores shown as stale.

Real window (offscreen), real preview backend, real H.264 takes, real dlib analysis.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402
from uitest_support import answers, make_settings, open_window  # noqa: E402,F401

from studio.core.model import Character, Reference  # noqa: E402
from studio.session import events as ev  # noqa: E402


@pytest.fixture
def no_file_watching(monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer must hear about analyses from the session, not from the disk."""
    from PySide6 import QtCore

    class Forbidden(QtCore.QObject):
        def __init__(self, *_a: object, **_k: object) -> None:
            raise AssertionError("QFileSystemWatcher used: listen to the session instead")

    import studio.ui.viewer.viewer as viewer_module

    monkeypatch.setattr(QtCore, "QFileSystemWatcher", Forbidden)
    monkeypatch.setattr(viewer_module, "QFileSystemWatcher", Forbidden, raising=False)


def test_generate_to_plot_through_session_events(qtbot, tmp_path: Path, photo_png: Path,
                                                 no_file_watching: None, answers) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    seen: list[ev.SessionEvent] = []
    win.session_bridge.event.connect(seen.append)
    win.generation.set_draft(True)
    with qtbot.waitSignal(win.session_bridge.analysis_ready, timeout=120_000) as blocker:
        win.generation.generate([shot_id])
    _shot, take_id = blocker.args
    viewer = win.take_viewer
    qtbot.waitUntil(lambda: viewer.take_id == take_id, timeout=10_000)
    qtbot.waitUntil(lambda: viewer.analysis_a is not None, timeout=10_000)
    identity = viewer.plot.series.get("identity")
    assert identity is not None and np.isfinite(identity).any()
    take = win.document.project.shot(shot_id).take(take_id)
    assert take.identity_mean is not None  # stored by the session, not by a widget
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("TakeReady") < kinds.index("AnalysisStarted") < kinds.index("AnalysisReady")
    assert win.is_dirty()  # derived writes count as unsaved, but are not undoable
    assert win.undo_stack.count() == 0
    win.generation.shutdown()
    win.identity.shutdown()


def test_changing_the_shots_character_shows_the_score_as_stale(qtbot, tmp_path: Path,
                                                               photo_png: Path, answers) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    win.generation.set_draft(True)
    with qtbot.waitSignal(win.session_bridge.analysis_ready, timeout=120_000):
        win.generation.generate([shot_id])
    shot = win.document.project.shot(shot_id)
    fresh = win.storyboard.badge_for(shot)
    assert fresh is not None and "stale" not in fresh.tooltip.lower()
    asset = win.document.project.characters[0].references[0].asset
    other = Character(name="Commander Hopper", references=[Reference(asset=asset)])
    win.document.insert_character(other)
    with qtbot.waitSignal(win.session_bridge.analysis_stale, timeout=5_000):
        win.document.update_shot(shot_id, character_id=other.id)
    badge = win.storyboard.badge_for(win.document.project.shot(shot_id))
    assert badge is not None and "stale" in badge.tooltip.lower()
    viewer = win.take_viewer
    assert "stale" in viewer.engine_label.text().lower()
    card = viewer.strip.cards[viewer.take_id]
    assert card.badge.stale and "stale" in card.badge.tooltip.lower()
    assert card.badge.color.name() == badge.color.lower()  # grey in the strip and the card
    win.generation.shutdown()
    win.identity.shutdown()
