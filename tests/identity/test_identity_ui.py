"""Qt identity pieces with real widgets (offscreen) and a real analysis on a real project."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from identity_helpers import astronaut, moving_frames
from studio.core.document import ProjectDocument
from studio.core.model import Character, Reference, Shot, Take
from studio.core.persistence import ensure_layout
from studio.identity.engines import get_engine
from studio.media.images import import_image
from studio.media.video import write_video
from studio.session.session import Session
from studio.ui.identity_widgets import (AnalysisController, PromptLintList,
                                        ReferenceQualityBadge)


def _doc(folder: Path) -> tuple[ProjectDocument, str, str]:
    ensure_layout(folder)
    doc = ProjectDocument(folder=folder)
    img = folder / "a.png"
    Image.fromarray(astronaut()).save(img)
    asset = import_image(folder, img)
    doc.add_asset(asset)
    char = Character(name="E", references=[Reference(asset=asset.path)])
    doc.insert_character(char)
    shot = Shot(character_id=char.id)
    doc.insert_shot(shot)
    rel = f"takes/{shot.id}/t.mp4"
    (folder / "takes" / shot.id).mkdir(parents=True)
    write_video(folder / rel, moving_frames(astronaut(), 8, amplitude=0.3), 16)
    doc.insert_take(shot.id, Take(id="t1", video=rel, seed=0, backend="preview", width=832,
                                  height=480, frames=8, fps=16.0))
    return doc, shot.id, "t1"


def test_controller_analyses_in_background_and_updates_take(qtbot, tmp_path: Path) -> None:
    doc, shot_id, take_id = _doc(tmp_path)
    ctl = AnalysisController(Session(doc, engine=get_engine("dlib")))
    try:
        progress: list[int] = []
        ctl.progress.connect(lambda t, d, n: progress.append(d))
        with qtbot.waitSignal(ctl.finished, timeout=60_000) as blocker:
            ctl.analyze(shot_id, take_id)
            ctl.analyze(shot_id, take_id)  # de-duplicated while running
        assert blocker.args[0] == take_id and blocker.args[1]["cached"] is False
        take = doc.project.shot(shot_id).take(take_id)
        assert take.identity_mean is not None and take.identity_mean > 0.8
        assert take.analysis_engine.startswith("dlib/")
        assert progress and progress[-1] == 8 and not ctl.busy
        with qtbot.waitSignal(ctl.failed, timeout=10_000) as blocker:
            ctl.analyze(shot_id, "nope")
        assert "no longer exists" in blocker.args[1]
    finally:
        ctl.shutdown()


def test_badge_and_lint(qtbot, tmp_path: Path) -> None:
    badge = ReferenceQualityBadge()
    qtbot.addWidget(badge)
    p = tmp_path / "a.png"
    Image.fromarray(astronaut()).save(p)
    badge.check(p, "front")
    assert badge.level == "warning" and "face is small" in badge.toolTip()
    badge.check(tmp_path / "missing.png")
    assert badge.level == "bad" and "missing.png" in badge.toolTip()
    lint = PromptLintList()
    qtbot.addWidget(lint)
    lint.set_shot(Shot(prompt="blonde woman as the lights go out", duration_s=9))
    assert lint.rules() == ["appearance", "lighting_change", "duration"]
    assert not lint.isHidden()
    lint.set_shot(Shot(prompt="she turns her head"))
    assert lint.count() == 0 and lint.isHidden()
