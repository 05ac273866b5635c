"""Identity badges and storyboard helpers."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter

from studio.ui.viewer import identity_level, paint_badge, shot_badge, take_badge, timecode
from studio.ui.viewer.badges import ThumbnailCache, best_take_id
from viewer_media import decode_number, make_project


def test_levels_against_the_threshold() -> None:
    assert identity_level(0.80, 0.7) == "match"
    assert identity_level(0.75, 0.7) == "close"  # passes, but only just
    assert identity_level(0.70, 0.7) == "close"
    assert identity_level(0.69, 0.7) == "drift"  # below the threshold is never amber
    assert identity_level(0.43, 0.5, 1.0) == "drift"  # the wrong person
    assert identity_level(0.90, 0.7, 0.2) == "close"  # a drift episode
    assert identity_level(0.90, 0.7, 0.6) == "drift"  # most frames flagged
    assert identity_level(None, 0.7) == "none"
    assert identity_level(float("nan"), 0.7) == "none"


def test_timecode() -> None:
    assert timecode(0, 16) == "00:00:00:00"
    assert timecode(17, 16) == "00:00:01:01"
    assert timecode(24 * 3600 + 5, 24) == "01:00:00:05"
    assert timecode(30, 29.97) == "00:00:01:00"


def test_shot_and_take_badges(qtbot, tmp_path: Path) -> None:
    doc = make_project(tmp_path / "p", takes=3, analysed=2)
    shot = doc.project.shot("shot1")
    b0 = take_badge(doc, shot.takes[0])
    # mean 0.81 passes 0.7, but 5 of 40 frames are flagged: amber
    assert b0.level == "close" and b0.threshold == 0.7 and "threshold 0.70" in b0.tooltip
    assert take_badge(doc, shot.takes[2]).level == "none"
    # The analysis record decides, as in the HTML report (record.band()): a project score
    # that disagrees with it does not change the badge ...
    doc.update_take("shot1", "take1", identity_mean=0.45)
    b1 = take_badge(doc, shot.takes[1])
    assert b1.level == "close" and b1.value > 0.8 and b1.analysed
    # ... and once the file is gone the project's recorded mean is what is left to show.
    for suffix in (".json", ".npz"):
        (doc.folder / "analysis" / f"take1{suffix}").unlink()
    b1 = take_badge(doc, doc.project.shot("shot1").takes[1])
    assert b1.level == "drift" and b1.value == 0.45 and not b1.analysed
    assert best_take_id(doc, shot) == "take0"
    sb = shot_badge(doc, shot)
    assert sb.take_count == 3 and sb.active_take_id == "take0"
    assert sb.video == tmp_path / "p" / "takes/shot1/take0.mp4"
    img = QImage(120, 24, QImage.Format.Format_ARGB32)
    img.fill(0)
    p = QPainter(img)
    paint_badge(p, QRectF(0, 0, 120, 24), sb.badge, sb.take_count)
    p.end()
    c = img.pixelColor(int(24 * 0.2 + 24 * 0.3), 12)  # the dot: amber
    assert c.red() > 200 and 120 < c.green() < 200 and c.blue() < 90
    empty = doc.project.shot("shot1").model_copy(update={"takes": [], "active_take_id": None})
    assert shot_badge(doc, empty).take_count == 0 and shot_badge(doc, empty).badge.level == "none"


def test_thumbnails_are_the_middle_frame_and_cached(qtbot, tmp_path: Path) -> None:
    doc = make_project(tmp_path / "p", takes=1, analysed=0)
    cache = ThumbnailCache(max_side=80, proxy_dir=tmp_path / "px")
    path = doc.path_of("takes/shot1/take0.mp4")
    assert cache.get(path) is None  # scheduled
    with qtbot.waitSignal(cache.ready, timeout=10000):
        pass
    img = cache.get(path)
    assert img is not None and max(img.width(), img.height()) == 80
    rgb = img.convertToFormat(QImage.Format.Format_RGB888)
    import numpy as np

    arr = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    arr = arr[:, : rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3)
    assert decode_number(arr) == 20
    # a second cache finds the PNG on disk (no decoding): same picture
    other = ThumbnailCache(max_side=80)
    other.get(path)
    with qtbot.waitSignal(other.ready, timeout=10000):
        pass
    assert other.get(path).size() == img.size()
    assert cache.get(tmp_path / "missing.mp4") is None


def test_a_passing_take_with_a_drift_episode_is_amber(qtbot, tmp_path: Path) -> None:
    from viewer_media import write_analysis

    doc = make_project(tmp_path / "p", takes=1)
    take = doc.project.shot("shot1").takes[0]
    badge = take_badge(doc, take)
    assert badge.flagged > 0.1  # frames 10-14 of 40
    assert badge.value > badge.threshold and badge.level == "close"
    assert "12% of frames flagged" in badge.tooltip  # 0.125, banker-rounded by format
    assert "calibration" not in badge.tooltip and "FaceSim" not in badge.tooltip  # not known
    # The calibration's expected false alarms and FaceSim-Arc, when the record has them.
    write_analysis(doc.folder, "take0", take.video, 40, 160, 96, 16.0,
                   summary_extra={"expected_false_alarm": 0.0041, "facesim_arc": 0.612})
    tip = take_badge(doc, take).tooltip
    assert "flagged on at most 0.4% of frames (calibration)" in tip
    assert "FaceSim-Arc 0.612" in tip
    # Rewritten without the drift episode (a new file, a new mtime): the badge follows.
    write_analysis(doc.folder, "take0", take.video, 40, 160, 96, 16.0, drift=None)
    import os

    jpath = doc.folder / "analysis" / "take0.json"
    os.utime(jpath, ns=(1, 1))  # a different mtime: the cached summary is re-read
    assert take_badge(doc, take).level == "match"


def test_an_unreadable_analysis_reads_as_not_analysed(qtbot, tmp_path: Path) -> None:
    doc = make_project(tmp_path / "p", takes=1)
    take = doc.project.shot("shot1").takes[0]
    (doc.folder / "analysis" / "take0.json").write_text('{"format": 2, "frames": "x"}')
    assert take_badge(doc, take).level == "none"
