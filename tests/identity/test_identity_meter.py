"""The identity meter end to end (docs/IDENTITY.md "States", "Calibration"): unchanged faces
under camera moves are not flagged, other people and cuts are, a lost landmark fit is
"uncertain" instead of drift, a hair edit is caught with its own reason, and the colours agree.

Clips are real photographs (scikit-image's astronaut, the people of insightface's t1.jpg)
under synthetic camera moves, generated here; the face engine is the default (dlib) one."""

from __future__ import annotations

import numpy as np
import pytest

from studio.identity import colours
from studio.identity.analysis import analyze_frames, persistent_runs, prepare_reference
from studio.identity.engines import get_engine
from studio.identity.samples import CAMERA_MOVES, camera_move
from tests.identity.identity_helpers import astronaut, t1_faces

ENGINE = get_engine("dlib")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    faces = t1_faces()
    # the astronaut, a small three-quarter face (t1 #4), and two other people
    return {"astronaut": astronaut(), "t1_4": faces[4], "t1_0": faces[0], "t1_3": faces[3]}


@pytest.fixture(scope="module")
def refs(photos):
    return {k: prepare_reference(ENGINE, p, k, "front") for k, p in photos.items()}


def _run(frames, ref):
    res, arrays = analyze_frames(frames, 16.0, [ref], ENGINE, parallel=False)
    return res, arrays


@pytest.mark.parametrize("move,seed", [(m, 0) for m in CAMERA_MOVES] + [("jitter", 1)])
def test_unchanged_faces_under_camera_moves_are_not_flagged(photos, refs, move, seed) -> None:
    """The issue's bar: at most 1 frame in 40 flagged as drift on jitter, push-in, pan, roll
    (and a lighting ramp) of a face that never changes."""
    for name in ("astronaut", "t1_4", "t1_3"):
        res, _ = _run(camera_move(photos[name], move, 40, seed=seed)[0], refs[name])
        rows = res["frames"]
        flagged = [r for r in rows if r["flagged"]]
        assert len(flagged) <= 1, (name, move, [(r["index"], r["reasons"]) for r in flagged])
        assert all(r["flagged"] == (r["state"] == "drift") for r in rows)
        assert res["summary"]["states"]["match"] >= 29, (name, move, res["summary"]["states"])
        assert res["summary"]["states"]["uncertain"] <= 4, (name, move, res["summary"]["states"])


def test_another_person_is_drift_on_every_frame_and_red(photos, refs) -> None:
    res, _ = _run(camera_move(photos["t1_0"], "jitter", 40, seed=4)[0], refs["astronaut"])
    rows = res["frames"]
    assert sum(r["state"] == "drift" for r in rows) >= 38
    assert all("different person" in r["reasons"] for r in rows if r["flagged"])
    s = res["summary"]
    level = colours.take_band(s["identity_mean"], ENGINE.threshold, s["flagged_fraction"],
                              s["uncertain_fraction"], ENGINE.name)
    assert level == "drift" and colours.band_colour(level) == "#dc3c32"


def test_a_cut_to_another_person_is_flagged_from_the_cut(photos, refs) -> None:
    frames = (camera_move(photos["astronaut"], "jitter", 20, seed=3)[0]
              + camera_move(photos["t1_3"], "pan", 20)[0])
    res, _ = _run(frames, refs["astronaut"])
    rows = res["frames"]
    assert not any(r["flagged"] for r in rows[:20])
    assert sum(r["flagged"] for r in rows[20:]) >= 19  # ≥ 95 %
    assert res["summary"]["drift_ranges"][0]["start"] == 20


def test_a_lost_fit_is_uncertain_not_drift(photos, refs) -> None:
    """Two frames whose face is hidden by a grey card: the tracker cannot fit a face there;
    those frames are not claimed as drift, and the face is picked up again after."""
    frames, _ = camera_move(photos["astronaut"], "jitter", 30, seed=2)
    for i in (12, 13):
        frames[i] = frames[i].copy()
        frames[i][40:440, 250:600] = 128
    res, arrays = _run(frames, refs["astronaut"])
    rows = res["frames"]
    assert [r["state"] for r in rows[12:14]] == ["uncertain", "uncertain"]
    assert not any(r["flagged"] for r in rows)
    assert all(r["cautions"] for r in rows[12:14])
    assert np.isnan(arrays["landmarks"][12]).all() and not arrays["heatmaps"][12].any()
    assert all(r["state"] == "match" for r in rows[16:])
    assert res["summary"]["uncertain_fraction"] == pytest.approx(2 / 30, abs=1e-3)


def test_hair_recoloured_from_a_frame_on_is_flagged_with_its_reason(photos, refs) -> None:
    from studio.identity.landmarks import detect_landmarks_68
    from tests.identity.head_edits import recolour_hair

    photo = photos["astronaut"]
    blond = recolour_hair(photo, detect_landmarks_68(photo), "blond")
    plain = camera_move(photo, "jitter", 40, seed=1)[0]
    edited = camera_move(blond, "jitter", 40, seed=1)[0]
    frames = plain[:20] + edited[20:]
    res, arrays = _run(frames, refs["astronaut"])
    rows = res["frames"]
    assert not any(r["flagged"] for r in rows[:20])
    hits = [r for r in rows[20:] if "hair changed" in r["reasons"]]
    assert len(hits) >= 19, [(r["index"], r["hair"], r["reasons"]) for r in rows[18:]]
    assert all(r["identity"] is None or r["identity"] > 0.6 for r in rows)  # still her
    unedited, _ = _run(plain, refs["astronaut"])
    assert not any(r["flagged"] for r in unedited["frames"])


def test_persistence_and_hysteresis() -> None:
    v = [0.9, 0.4, 0.9, 0.9, 0.4, 0.4, 0.4, 0.52, 0.9, None, 0.4]
    drift, brief = persistent_runs(v, 0.5, 3, 0.05)
    # one low frame is brief; three in a row are drift and take in the 0.52 beside them
    assert drift == [False, False, False, False, True, True, True, True, False, False, False]
    assert brief == [False, True, False, False, False, False, False, False, False, False, True]
    # frames without a value neither extend nor break a run; a cut breaks it
    d2, _ = persistent_runs([0.4, None, 0.4, 0.4], 0.5, 3, 0.0)
    assert d2 == [True, False, True, True]
    d3, _ = persistent_runs([0.4, 0.4, 0.4, 0.4], 0.5, 3, 0.0,
                            breaks=[False, False, True, False])
    assert d3 == [False, False, False, False]
