"""The viewer and how a take was made: a chained take's segments on the ruler (a line at each
join, each segment's identity from the analysis), "re-make segment N" queueing a real job, a
malformed segment list shown as nothing (and said so), the references the take was generated
against beside the matched reference, and a multi-character analysis' cast rows.

Takes are real files: videos encoded with PyAV and sidecars written by the engine's take writer
(studio.engine.takes.write_take); analyses by the real record writer. One test makes a real
chained take with the preview backend through the session's queue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage

from studio.core.model import Angle, Character, Reference
from studio.engine.takes import write_take
from studio.session.session import Session
from studio.ui.viewer import ViewerWidget
from viewer_media import frame_pixels, make_project, write_analysis

FRAMES, W, H, FPS = 40, 160, 96, 16.0
# Three segments tiling 40 frames: 0–15, 16–27 (re-made), 28–39.
SEGMENTS = [
    {"index": 0, "start_frame": 0, "frames": 16, "seed": 11, "from_frame": None,
     "from_identity": None},
    {"index": 1, "start_frame": 16, "frames": 12, "seed": 22, "from_frame": 15,
     "from_identity": 0.83, "remade": True},
    {"index": 2, "start_frame": 28, "frames": 12, "seed": 33, "from_frame": 27,
     "from_identity": 0.8},
]


def add_chained_take(doc, take_id: str = "chain", segments: object = SEGMENTS,
                     references: list[dict] | None = None, analysed: bool = True):
    """A take written by the engine's take writer with a sidecar listing ``segments`` and
    ``references``, inserted into shot1 and (by default) analysed."""
    folder = doc.folder
    frames = np.stack([frame_pixels(i, W, H) for i in range(FRAMES)])
    refs = references if references is not None else [
        {"character_id": "hero", "reference_id": "ref0", "asset": doc.project.character("hero")
         .references[0].asset, "sha256": None, "angle": "front", "why": "start angle"},
        # A reference deleted from the bible since: its image is still in the project.
        {"character_id": "hero", "reference_id": "gone", "asset": doc.project.character("hero")
         .references[1].asset, "sha256": None, "angle": "profile_left", "why": "angle"},
    ]
    take = write_take(folder, shot_id="shot1", take_id=take_id, frames=frames, fps=FPS, seed=11,
                      backend="preview", model=None, draft=False,
                      sidecar={"segments": segments, "references": refs})
    doc.insert_take("shot1", take)
    doc.set_active_take("shot1", take_id)
    if analysed:
        write_analysis(folder, take_id, take.video, FRAMES, W, H, FPS,
                       ref_ids=["ref0", "ref1"], drift=(10, 14), project=doc.project,
                       shot_id="shot1")
    doc.save()
    return take


def expected_identity(lo: int, hi: int) -> float:
    """What viewer_media.write_analysis writes: 0.45 inside the drift (10–14), else 0.9-0.002i."""
    vals = [0.45 if 10 <= i <= 14 else 0.9 - 0.002 * i for i in range(lo, hi + 1)]
    return float(np.mean(np.float32(vals)))


def open_viewer(qtbot, doc, tmp_path: Path, session: Session | None = None) -> ViewerWidget:
    v = ViewerWidget(doc, proxy_dir=tmp_path / "proxies")
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    if session is not None:
        v.set_session(session)
    v.set_shot("shot1")
    assert v.src_a is not None and v.src_a.source.wait_ready(60), v.src_a.source.error
    qtbot.waitUntil(lambda: v.view.a.image is not None)
    return v


def ruler_rgb(v: ViewerWidget) -> np.ndarray:
    img = v.ruler.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def join_columns(v: ViewerWidget) -> list[int]:
    """x of the columns where the painted ruler shows a join line above the frame ticks (the
    bluish segment line; frame ticks and labels are grey)."""
    rgb = ruler_rgb(v).astype(int)
    dpr = v.ruler.devicePixelRatioF()
    top = rgb[: int(7 * dpr)]  # above the frame ticks (they start at y=8)
    blue = (top[..., 2] - top[..., 0] > 60).any(axis=0)
    return [int(x / dpr) for x in np.nonzero(blue)[0]]


@pytest.fixture
def project(tmp_path: Path):
    doc = make_project(tmp_path / "proj", takes=1)
    add_chained_take(doc)
    return doc


def test_ruler_marks_each_join_and_each_segments_identity(qtbot, project, tmp_path) -> None:
    v = open_viewer(qtbot, project, tmp_path, Session(project))
    try:
        assert v.take_id == "chain"
        assert v.ruler.boundaries() == [16, 28]
        cols = join_columns(v)
        for frame in (16, 28):
            x = v.ruler.x_of(frame)
            assert any(abs(c - x) <= 1.5 for c in cols), (frame, x, cols)
        assert all(any(abs(c - v.ruler.x_of(f)) <= 1.5 for f in (16, 28)) for c in cols), cols
        # identity per segment: the mean of the analysis' frames inside it
        ids = [expected_identity(0, 15), expected_identity(16, 27), expected_identity(28, 39)]
        assert v.segment_identities == pytest.approx(ids, abs=1e-4)
        assert v.ruler.segment_labels == [f"{k + 1} · {x:.2f}" for k, x in enumerate(ids)]
        tip = v.ruler.tooltip_at(v.ruler.x_of(20) + 1)
        assert tip.startswith(f"Segment 2: frames 16–27, seed 22, started from frame 15 "
                              f"(identity 0.83); identity {ids[1]:.2f}")
        assert "Re-made" in tip
        first = v.ruler.tooltip_at(v.ruler.x_of(3) + 1)
        assert first.startswith("Segment 1: frames 0–15, seed 11, started from the shot's start "
                                f"image; identity {ids[0]:.2f}")
        assert "Re-made" not in first
        # the re-make button follows the playhead's segment
        assert v.btn_remake.isVisible() and v.btn_remake.isEnabled()
        assert v.btn_remake.text() == "Re-make segment 1"
        v.seek(30)
        qtbot.waitUntil(lambda: v.current == 30)
        assert v.btn_remake.text() == "Re-make segment 3"
        assert "frames 28–39" in v.btn_remake.toolTip()
    finally:
        v.shutdown()


def test_remake_from_the_ruler_menu_queues_that_segment(qtbot, project, tmp_path) -> None:
    session = Session(project)
    v = open_viewer(qtbot, project, tmp_path, session)
    try:
        menu = v.ruler_menu(20)
        [act] = [a for a in menu.actions() if a.objectName() == "remakeSegment"]
        assert act.text() == "Re-make segment 2" and act.isEnabled()
        queued: list[tuple[str, int]] = []
        v.segment_queued.connect(lambda job_id, k: queued.append((job_id, k)))
        act.trigger()
        [job] = [j for j in session.queue.pending() if j.segment is not None]
        assert job.segment == {"take_id": "chain", "index": 1}
        assert job.shot_id == "shot1" and job.seed not in {11, 22, 33, 1000}
        assert queued == [(job.id, 1)]
        assert f"seed {job.seed}" in v.status_text
        # the button queues the segment under the playhead
        v.seek(35)
        qtbot.waitUntil(lambda: v.current == 35)
        v.btn_remake.click()
        assert [j.segment for j in session.queue.pending() if j.segment is not None] == [
            {"take_id": "chain", "index": 1}, {"take_id": "chain", "index": 2}]
    finally:
        v.shutdown()


def test_a_take_without_segments_cannot_be_remade_and_says_why(qtbot, project, tmp_path) -> None:
    session = Session(project)
    v = open_viewer(qtbot, project, tmp_path, session)
    try:
        v.set_take("take0")  # made in one piece, no sidecar
        assert v.ruler.segments == [] and v.ruler.boundaries() == []
        assert not v.btn_remake.isVisible()
        act = v.ruler_menu(5).actions()[0]
        assert not act.isEnabled() and "made in one piece" in act.toolTip()
        assert v.remake_segment(0) is None
        assert not [j for j in session.queue.pending() if j.segment is not None]
        assert join_columns(v) == []
        assert v.reference.used == [] and not v.reference.used_strip.isVisibleTo(v.reference)
    finally:
        v.shutdown()


def test_malformed_segments_show_nothing_and_say_so(qtbot, tmp_path) -> None:
    doc = make_project(tmp_path / "proj", takes=1)
    bad = [dict(SEGMENTS[0]), dict(SEGMENTS[1], start_frame=18), dict(SEGMENTS[2])]  # a gap
    add_chained_take(doc, segments=bad)
    session = Session(doc)
    v = open_viewer(qtbot, doc, tmp_path, session)
    try:
        assert v.take_id == "chain"
        assert v.ruler.segments == [] and join_columns(v) == []
        assert not v.btn_remake.isVisible()
        note = v.ruler.tooltip_at(v.ruler.x_of(20))
        assert "unreadable" in note and "segment 2 does not follow" in note and "chain.json" in note
        act = v.ruler_menu(20).actions()[0]
        assert not act.isEnabled() and "unreadable" in act.toolTip()
        assert v.remake_segment(1) is None and "unreadable" in v.status_text
        # the references are still shown: only the segments were bad
        assert len(v.reference.used) == 2
    finally:
        v.shutdown()


def test_an_unreadable_sidecar_shows_nothing_and_says_so(qtbot, project, tmp_path) -> None:
    (project.folder / "takes/shot1/chain.json").write_text("{not json", encoding="utf-8")
    v = open_viewer(qtbot, project, tmp_path, Session(project))
    try:
        assert v.ruler.segments == [] and v.reference.used == []
        assert "cannot read the take sidecar" in v.ruler.tooltip_at(10)
    finally:
        v.shutdown()


def test_references_used_are_shown_beside_the_matched_one(qtbot, project, tmp_path) -> None:
    v = open_viewer(qtbot, project, tmp_path, Session(project))
    try:
        panel = v.reference
        assert panel.used_strip.isVisibleTo(panel) and panel.used_title.isVisibleTo(panel)
        assert [t.reference_id for t in panel.used] == ["ref0", "gone"]
        kept, gone = panel.used
        assert "Hero · Front — nearest the start image's angle" in kept.toolTip()
        assert "Not in the bible any more" not in kept.toolTip() and not kept.missing
        assert "Profile left" in gone.toolTip() and "Not in the bible any more" in gone.toolTip()
        assert gone.missing
        # thumbnails are decoded in the worker pool, then painted: the references' colours
        qtbot.waitUntil(lambda: all(t.pixmap is not None for t in panel.used), timeout=15000)
        for thumb, colour in ((kept, (200, 60, 40)), (gone, (200, 180, 40))):
            img = thumb.pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
            px = img.pixelColor(img.width() // 2, img.height() // 2)
            assert abs(px.red() - colour[0]) < 12 and abs(px.green() - colour[1]) < 12
        # frame 0 matched ref0 (the analysis alternates ref0, ref1): outlined in the strip
        v.seek(0)
        assert panel.reference_id == "ref0" and kept.matched and not gone.matched
        v.seek(1)
        qtbot.waitUntil(lambda: panel.reference_id == "ref1")
        assert not kept.matched
        # the bible changes while the take is shown: the deleted reference is marked at once
        project.remove_reference("hero", "ref0")
        assert "Not in the bible any more" in v.reference.used[0].toolTip()
        assert v.reference.used[0].missing
    finally:
        v.shutdown()


def test_cast_rows_show_each_characters_identity(qtbot, tmp_path) -> None:
    from studio.identity.record import AnalysisRecord, read_record, write_record

    doc = make_project(tmp_path / "proj", takes=1)
    doc.insert_character(Character(id="side", name="Sidekick", references=[
        Reference(id="sref", asset=doc.project.character("hero").references[1].asset,
                  angle=Angle.FRONT)]))
    add_chained_take(doc)
    rec = read_record(doc.folder, "chain", arrays=True)
    hero_ids = [f.identity for f in rec.frames]
    side_ids = [0.5 if i % 4 == 0 else None for i in range(FRAMES)]
    n_side = sum(v is not None for v in side_ids)

    def entry(cid, ids, flagged):
        vals = [v for v in ids if v is not None]
        return {"character_id": cid, "identity_mean": float(np.mean(vals)),
                "identity_min": float(min(vals)), "face_frames": len(vals),
                "sampled_frames": FRAMES, "flagged_fraction": flagged, "drift_ranges": [],
                "identity": ids, "missing": [i for i, v in enumerate(ids) if v is None]}

    data = rec.model_dump(mode="json")
    data["cast"] = [entry("hero", hero_ids, 0.125), entry("side", side_ids, 0.25)]
    rec2 = AnalysisRecord.model_validate(data)
    arrays = rec.arrays.as_dict()
    arrays["cast_boxes"] = np.full((2, FRAMES, 4), np.nan, np.float32)
    write_record(doc.folder, rec2, arrays)
    v = open_viewer(qtbot, doc, tmp_path, Session(doc))
    try:
        rows = [r.text() for r in v.reference.cast_rows]
        assert rows == [f"Hero  {np.mean(hero_ids):.2f} · 12% flagged",
                        "Sidekick  0.50 · 25% flagged"]
        assert v.reference.cast_box.isVisibleTo(v.reference)
        assert f"face found on {n_side} frames" in v.reference.cast_rows[1].toolTip()
        v.set_take("take0")  # a record without a cast block: no rows
        assert v.reference.cast_rows == [] and not v.reference.cast_box.isVisibleTo(v.reference)
    finally:
        v.shutdown()


def test_right_click_on_the_ruler_asks_for_that_frame(qtbot, project, tmp_path) -> None:
    v = open_viewer(qtbot, project, tmp_path, Session(project))
    try:
        got: list[int] = []
        v.ruler.context_requested.disconnect()  # the real handler would open a modal menu
        v.ruler.context_requested.connect(lambda f, _p: got.append(f))
        from PySide6.QtGui import QContextMenuEvent

        x = int(v.ruler.x_of(29) + v.ruler.cell() / 2)
        ev = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, QPoint(x, 20),
                               v.ruler.mapToGlobal(QPoint(x, 20)))
        v.ruler.contextMenuEvent(ev)
        assert got == [29]
        assert v.ruler_menu(got[0]).actions()[0].text() == "Re-make segment 3"
    finally:
        v.shutdown()


def test_a_real_chained_take_from_the_preview_backend(qtbot, tmp_path) -> None:
    """shot.params["segment_frames"] = 24, a 4 s shot at 16 fps, through Session.queue_takes and
    run_jobs; then one segment re-made from the viewer and run, giving a new take."""
    from PIL import Image

    from studio.engine.queue import DraftOverrides
    from studio.identity.samples import astronaut
    from studio.media.images import import_image

    if not (Path(__file__).resolve().parents[2] / "studio/engine/chain.py").is_file():
        pytest.skip("studio/engine/chain.py (chained long takes) is not in this tree yet")
    folder = tmp_path / "proj"
    doc = make_project(folder, takes=0)
    Image.fromarray(astronaut()).save(folder / "astro.png")
    asset = import_image(folder, folder / "astro.png")
    doc.add_asset(asset)
    doc.insert_reference("hero", Reference(id="astro", asset=asset.path, angle=Angle.FRONT))
    doc.update_shot("shot1", duration_s=4.0, fps=16, backend="preview",
                    params={"segment_frames": 24}, start_reference_id="astro",
                    start_asset=asset.path)
    doc.save()
    session = Session(doc)
    session.queue_takes(["shot1"], draft=DraftOverrides(width=128, height=96))
    summary = session.run_jobs()
    assert summary.done and not summary.failed, summary
    take = doc.project.shot("shot1").takes[-1]
    side = json.loads((folder / take.sidecar).read_text())
    starts = [s["start_frame"] for s in side["segments"]]
    assert len(starts) >= 2  # 64 frames in windows of 24
    v = open_viewer(qtbot, doc, tmp_path, session)
    try:
        assert v.take_id == take.id
        assert v.ruler.boundaries() == starts[1:]
        cols = join_columns(v)
        for frame in starts[1:]:
            assert any(abs(c - v.ruler.x_of(frame)) <= 1.5 for c in cols), (frame, cols)
        assert len(v.segment_identities) == len(starts)
        tip = v.ruler.tooltip_at(v.ruler.x_of(starts[1]) + 1)
        assert tip.startswith(f"Segment 2: frames {starts[1]}–")
        job = v.remake_segment(1)
        assert job is not None and job.segment == {"take_id": take.id, "index": 1}
        summary = session.run_jobs()
        assert summary.done and not summary.failed, summary
        new = doc.project.shot("shot1").takes[-1]
        assert new.id != take.id
        v.set_take(new.id)
        assert [s.remade for s in v.making.segments][1] is True
        assert [s.seed for s in v.making.segments][1] == job.seed
    finally:
        v.shutdown()


def test_in_the_main_window_the_remake_goes_to_the_generation_queue(qtbot, project,
                                                                     tmp_path) -> None:
    from PySide6.QtCore import QSettings

    from studio.ui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(project, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.generation.pause()  # keep it queued: this checks the queue, not generation
    viewer = win.take_viewer
    try:
        win.select_shot("shot1")
        qtbot.waitUntil(lambda: viewer.take_id == "chain" and viewer.src_a is not None)
        assert viewer.ruler.boundaries() == [16, 28]
        assert viewer.reference.thumbnails() is win.thumbnails  # the bible's thumbnail cache
        viewer.ruler_menu(20).actions()[0].trigger()
        [job] = [j for j in win.generation.queue.pending() if j.segment is not None]
        assert job.segment == {"take_id": "chain", "index": 1}
        assert "Queued: segment 2 of take 2" in win.statusBar().currentMessage()
    finally:
        viewer.shutdown()
        win.generation.shutdown()


def test_a_remake_on_a_hosted_model_asks_first_in_the_main_window(qtbot, project,
                                                                   tmp_path) -> None:
    """A take made on a hosted, billed workflow (Kling through ComfyUI) costs money to re-make:
    the generation controller asks, as Generate does; No queues nothing."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from studio.ui import dialogs
    from studio.ui.main_window import MainWindow

    project.update_take("shot1", "chain", backend="comfyui", model="kling-i2v")
    asked: list[str] = []
    answer = [QMessageBox.Cancel]

    def ask(parent, title, text, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        asked.append(text)
        return answer[0]

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    original = dialogs.ask
    dialogs.ask = ask
    win = MainWindow(project, settings=settings)
    qtbot.addWidget(win)
    win.show()
    win.generation.pause()
    viewer = win.take_viewer
    try:
        win.select_shot("shot1")
        qtbot.waitUntil(lambda: viewer.take_id == "chain" and viewer.src_a is not None)
        assert viewer.remake_segment(1) is None
        assert asked and "1 take will run on Kling" in asked[0]
        assert not [j for j in win.generation.queue.pending() if j.segment is not None]
        answer[0] = QMessageBox.Yes
        job = viewer.remake_segment(1)
        assert job is not None and (job.backend, job.model) == ("comfyui", "kling-i2v")
        assert [j.id for j in win.generation.queue.pending()] == [job.id]
    finally:
        dialogs.ask = original
        viewer.shutdown()
        win.generation.shutdown()
