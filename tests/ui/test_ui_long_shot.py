"""A 12 s shot made from chained segments, from the GUI (the Inspector's segment length, then
Generate Shot) and from the CLI: one take of the full length whose sidecar lists the segments,
each later one started from an identity-chosen frame. Real main window offscreen, the real
preview backend, real H.264 takes and the real dlib scores at the joins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402
from uitest_support import answers, make_settings, open_window, wait_until  # noqa: E402, F401

from studio.engine.takes import read_sidecar, sidecar_segments  # noqa: E402
from studio.media.video import probe  # noqa: E402


def _check_take(folder: Path, take, frames: int) -> list:  # noqa: ANN001
    assert take.frames == frames and probe(folder / take.video).frames == frames
    segments = sidecar_segments(read_sidecar(folder / take.sidecar), take.frames)
    assert len(segments) == 3 and segments[0].from_frame is None
    for before, seg in zip(segments, segments[1:]):
        # Each later segment began at one of the last frames of the one before, chosen by its
        # identity score (the chain's candidates), and the frames follow on without a gap.
        assert before.start_frame <= seg.from_frame <= before.end_frame
        assert before.end_frame - seg.from_frame < 8
        assert seg.from_identity is not None and seg.from_identity > 0.5
    return segments


def test_a_long_shot_is_one_take_from_chained_segments_in_the_app(
        qtbot, tmp_path: Path, photo_png: Path, answers) -> None:  # noqa: ANN001, F811
    doc = make_project(tmp_path / "p", photo_png, shots=1, duration_s=12.0)
    win = open_window(qtbot, doc, make_settings(tmp_path))
    shot_id = doc.project.shots[0].id
    win.select_shot(shot_id)
    inspector = win.inspector
    assert inspector.frames_label.text() == "192 frames"  # the preview makes 4000 at once
    inspector.segment_frames.setValue(81)  # as a Wan model would: 81 frames at a time
    shot = doc.project.shot(shot_id)
    assert shot.params["segment_frames"] == 81
    assert "3 segments" in inspector.frames_label.text()
    win.undo_stack.undo()
    assert "segment_frames" not in doc.project.shot(shot_id).params
    win.undo_stack.redo()
    ctl = win.generation
    ctl.generate([shot_id])
    wait_until(qtbot, lambda: bool(doc.project.shot(shot_id).takes) and not ctl.busy,
               timeout=240_000)
    [take] = doc.project.shot(shot_id).takes
    _check_take(doc.folder, take, 192)
    assert ctl.wait_idle(30_000)
    win.identity.shutdown()
    ctl.shutdown()


def test_a_long_shot_from_the_cli(tmp_path: Path, photo_png: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    from studio.cli import main
    from studio.core.persistence import load_project

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1, duration_s=12.0,
                 params={"face_motion": False, "segment_frames": 81})
    assert main(["render", str(folder), "--size", "320x192"]) == 0
    [take] = load_project(folder).shots[0].takes
    _check_take(folder, take, 192)
    assert "segment" in capsys.readouterr().err
