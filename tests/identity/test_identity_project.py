"""analyze_take on a real project folder: files in the shared format, caching, the character
matrix, and the analyze CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from identity_helpers import astronaut, moving_frames, t1_faces
from studio.core.document import ProjectDocument
from studio.core.model import Character, Reference, Shot, Take
from studio.core.persistence import ensure_layout, save_project
from studio.identity import api
from studio.identity.engines import get_engine
from studio.identity.record import analysis_paths, parse_record, read_record
from studio.media.images import import_image
from studio.media.video import write_video

ENGINE = get_engine("dlib")


def _make_project(folder: Path) -> ProjectDocument:
    ensure_layout(folder)
    doc = ProjectDocument(folder=folder)
    img = folder / "astro.png"
    Image.fromarray(astronaut()).save(img)
    asset = import_image(folder, img)
    doc.add_asset(asset)
    char = Character(name="Eileen", references=[Reference(asset=asset.path, angle="front")])
    doc.insert_character(char)
    for n, (photo, title) in enumerate([(astronaut(), "A"), (astronaut(), "B"),
                                        (t1_faces()[0], "C")]):
        shot = Shot(title=title, character_id=char.id)
        doc.insert_shot(shot)
        rel = f"takes/{shot.id}/t{n}.mp4"
        (folder / "takes" / shot.id).mkdir(parents=True, exist_ok=True)
        write_video(folder / rel, moving_frames(photo, 12, amplitude=0.4 + 0.2 * n), 16)
        doc.insert_take(shot.id, Take(id=f"take{n}", video=rel, seed=n, backend="preview",
                                      width=832, height=480, frames=12, fps=16.0))
    save_project(doc.project, folder)
    return doc


def test_analyze_take_writes_shared_format_and_caches(tmp_path: Path) -> None:
    doc = _make_project(tmp_path)
    project = doc.project
    shot = project.shots[0]
    take = shot.active_take
    calls: list[tuple[int, int]] = []
    summary = api.analyze_take(tmp_path, project, shot, take, lambda p: calls.append((p.step, p.total)),
                               lambda: False, engine=ENGINE)
    assert summary["cached"] is False and calls[-1] == (12, 12)
    jp, npz = analysis_paths(tmp_path, take.id)
    data = json.loads(jp.read_text())
    assert summary["identity_mean"] > 0.8
    assert summary["flagged_fraction"] == 0.0, [f for f in data["frames"] if f["flagged"]]
    assert data["format"] == 4 and data["created_at"] > 0
    assert data["take_id"] == take.id and data["shot_id"] == shot.id
    assert set(data["engine"]) == {"name", "model", "version", "license", "threshold"}
    assert data["take"]["frames"] == 12 and len(data["take"]["sha256"]) == 64
    assert data["take"]["width"] == 832 and data["take"]["height"] == 480
    for key in ("identity_mean", "identity_min", "flagged_fraction", "worst_frames",
                "drift_ranges", "motion", "embedding"):
        assert key in data["summary"]
    frame_keys = {"index", "time", "face_found", "faces", "identity", "identity_source",
                  "proportions", "eye_shape", "skin_tone", "stability", "matched_reference",
                  "flagged", "reasons"}
    assert all(frame_keys <= set(f) for f in data["frames"])
    for f in data["frames"]:
        for k in ("identity", "proportions", "eye_shape", "skin_tone", "stability"):
            assert f[k] is None or 0.0 <= f[k] <= 1.0
    with np.load(npz) as z:
        assert z["heatmaps"].dtype == np.uint8 and z["heatmaps"].shape == (12, 60, 104)
        assert z["landmarks"].dtype == np.float32 and z["landmarks"].shape == (12, 68, 2)
        assert z["boxes"].shape == (12, 4)
    loaded = read_record(tmp_path, take.id, arrays=True)
    assert loaded is not None and loaded.arrays.heatmaps.shape[0] == 12
    assert loaded.identity_mean == summary["identity_mean"]
    assert not loaded.stale_reasons(project, shot, ENGINE.key)
    # Reopening: same take hash + engine -> no recomputation (the files are not rewritten).
    mtime = jp.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = api.analyze_take(tmp_path, project, shot, take, engine=ENGINE)
    assert again["cached"] is True and time.perf_counter() - t0 < 0.5
    assert jp.stat().st_mtime_ns == mtime
    assert again["identity_mean"] == summary["identity_mean"]
    # A changed video invalidates the cache.
    write_video(tmp_path / take.video, moving_frames(astronaut(), 12, amplitude=1.0), 16)
    assert api.analyze_take(tmp_path, project, shot, take, engine=ENGINE)["cached"] is False


def test_cancel_and_missing_character(tmp_path: Path) -> None:
    from studio.core.errors import StudioError
    from studio.core.tasks import Cancelled

    doc = _make_project(tmp_path)
    shot = doc.project.shots[0]
    with pytest.raises(Cancelled):
        api.analyze_take(tmp_path, doc.project, shot, shot.active_take, None, lambda: True,
                         engine=ENGINE, force=True)
    assert read_record(tmp_path, shot.active_take.id) is None  # nothing half-written
    doc.update_shot(shot.id, character_id=None)
    with pytest.raises(StudioError, match="no character"):
        api.analyze_take(tmp_path, doc.project, shot, shot.active_take, engine=ENGINE)


def test_character_matrix(tmp_path: Path) -> None:
    doc = _make_project(tmp_path)
    p = doc.project
    for shot in p.shots[:2] + p.shots[2:]:
        api.analyze_take(tmp_path, p, shot, shot.active_take, engine=ENGINE)
    m = api.character_matrix(tmp_path, p, p.characters[0].id, engine=ENGINE)
    assert [t["shot"] for t in m["takes"]] == ["A", "B", "C"]
    mat = m["matrix"]
    assert mat[0][0] == pytest.approx(1.0)
    assert mat[0][1] > m["threshold"] + 0.2  # same person in both cuts
    assert mat[0][2] < m["threshold"] and mat[2][1] < m["threshold"]  # shot C recast
    # An analysis from another engine is not mixed in.
    path = analysis_paths(tmp_path, "take2")[0]
    data = json.loads(path.read_text())
    data["engine"].update(name="arcface", model="x", version="y")
    data["engine_key"] = "arcface/x/y"
    path.write_text(json.dumps(data))
    m2 = api.character_matrix(tmp_path, p, p.characters[0].id, engine=ENGINE)
    assert m2["matrix"][2][0] is None and m2["takes"][2]["analysed"] is False
    assert m2["takes"][2]["status"] == "other engine"
    # Without an engine, the one that analysed most of the takes is used (dlib, calibrated).
    m3 = api.character_matrix(tmp_path, p, p.characters[0].id)
    assert m3["engine_key"] == ENGINE.key and m3["matrix"][0][1] == mat[0][1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True,
                          text=True, timeout=240)


def test_analyze_cli_json_and_heatmaps(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, moving_frames(astronaut(), 6, amplitude=0.5) +
                moving_frames(t1_faces()[0], 6, amplitude=0.5), 16)
    ref = tmp_path / "ref.png"
    Image.fromarray(astronaut()).save(ref)
    out = tmp_path / "out.json"
    r = _cli("analyze", str(clip), "--reference", str(ref), "--json", str(out), "--heatmaps",
             str(tmp_path / "hm"), "--engine", "dlib")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert {"engine", "summary", "frames"} <= set(data)
    assert data["format"] == 4 and data["take_id"] is None  # the record, without a take
    assert parse_record(out.read_bytes()).frame_count == 12
    assert len(data["frames"]) == 12
    for f in data["frames"]:
        assert {"index", "time", "face_found", "identity", "identity_source", "flagged",
                "reasons"} <= set(f)
    assert [f["flagged"] for f in data["frames"]] == [False] * 6 + [True] * 6
    assert "frames 6-11: different person" in r.stdout
    assert (tmp_path / "hm" / "heatmaps.npz").is_file()
    assert len(list((tmp_path / "hm").glob("frame_*.png"))) == 12
    # Project mode and a readable error for an unknown character.
    _make_project(tmp_path / "proj")
    r2 = _cli("analyze", str(clip), "--project", str(tmp_path / "proj"), "--character", "Eileen",
              "--json", "-", "--engine", "dlib")
    assert r2.returncode == 0, r2.stderr
    assert parse_record(r2.stdout).summary.drift_ranges[0].start == 6
    r3 = _cli("analyze", str(clip), "--project", str(tmp_path / "proj"), "--character", "Nobody")
    assert r3.returncode == 1 and "no character named 'Nobody'" in r3.stderr
