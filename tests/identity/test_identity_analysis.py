"""Per-frame analysis on clips made from real photographs: cuts, blinks, local distortions,
skin tone, frozen faces, the stored format, caching and the CLI."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from identity_helpers import (astronaut, close_eyes, magnify, moving_frames, region_mean,
                              t1_faces)
from studio.identity import metrics as M
from studio.identity.analysis import analyze_frames, drift_ranges, prepare_reference
from studio.identity.engines import get_engine
from studio.identity.heatmap import RefCanon
from studio.identity.landmarks import detect_landmarks_68

ENGINE = get_engine("dlib")


@pytest.fixture(scope="module")
def astro_ref():
    return prepare_reference(ENGINE, astronaut(), "astro-front", "front")


def test_cut_to_another_person_is_flagged_from_the_cut(astro_ref) -> None:
    a = moving_frames(astronaut(), 20, amplitude=0.5)
    b = moving_frames(t1_faces()[0], 20, amplitude=0.5)
    result, arrays = analyze_frames(a + b, 16.0, [astro_ref], ENGINE)
    rows = result["frames"]
    assert len(rows) == 40 and arrays["heatmaps"].shape == (40, 60, 104)
    assert all(r["face_found"] for r in rows)
    before, after = rows[:20], rows[20:]
    assert not any("different person" in r["reasons"] for r in before)
    assert all("different person" in r["reasons"] and r["flagged"] for r in after)
    assert after[0]["identity_source"] == "embedded"  # the cut itself is embedded, not guessed
    ranges = result["summary"]["drift_ranges"]
    assert ranges[-1]["start"] == 20 and ranges[-1]["end"] == 39
    assert "different person" in ranges[-1]["reasons"]
    sources = {r["identity_source"] for r in rows}
    assert sources == {"embedded", "interpolated"}
    assert result["summary"]["embedded_frames"] < 20  # adaptive, not every frame


def test_morph_cannot_hide_between_embedding_samples(astro_ref) -> None:
    """A gradual cross-fade to another person within one embedding interval still gets
    embedded frames inside it (appearance bound), so the change is measured, not interpolated."""
    a = moving_frames(astronaut(), 1, amplitude=0.0)[0].astype(np.float32)
    b = moving_frames(t1_faces()[0], 1, amplitude=0.0)[0].astype(np.float32)
    frames = [a.astype(np.uint8)] * 4 + [((1 - w) * a + w * b).astype(np.uint8)
                                         for w in np.linspace(0.15, 1.0, 6)] + [b.astype(np.uint8)] * 2
    result, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE, detect_every=100,
                               embed_every=100)
    rows = result["frames"]
    assert sum(r["identity_source"] == "embedded" for r in rows[4:10]) >= 2
    assert rows[-1]["identity"] < ENGINE.threshold and "different person" in rows[-1]["reasons"]


def test_blink_is_not_flagged(astro_ref) -> None:
    frames = moving_frames(astronaut(), 16, amplitude=0.3)
    for i in (7, 8, 9):  # a three-frame blink
        lm = detect_landmarks_68(frames[i])
        frames[i] = close_eyes(frames[i], lm)
    result, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE)
    rows = result["frames"]
    assert [r["blink"] for r in rows[7:10]] == [True, True, True]
    assert not any(r["blink"] for r in rows[:6])
    assert not any(r["flagged"] for r in rows), [r["reasons"] for r in rows if r["flagged"]]


def test_eye_warp_lights_the_eyes_not_the_mouth(astro_ref) -> None:
    img = astronaut()
    lm = detect_landmarks_68(img)
    iod = M.interocular(lm)
    warped = magnify(img, [lm[36:42].mean(0), lm[42:48].mean(0)], 0.55 * iod, 0.6)
    wl = detect_landmarks_68(warped)
    heat = astro_ref.canon.frame_heatmap(warped, wl)
    eyes, mouth = region_mean(heat, lm[36:48]), region_mean(heat, lm[48:68])
    assert eyes > 30 and eyes > 4 * mouth, (eyes, mouth)
    assert region_mean(astro_ref.canon.frame_heatmap(img, lm), lm) < 3  # itself: no deviation
    # Far from the face the map stays 0.
    assert heat[:, :8].max() == 0
    # And the metric says which feature drifted.
    # A lasting change (drift) is flagged; eye features are a 5-frame median, so from the
    # second frame of the change on.
    result, _ = analyze_frames([img] * 3 + [warped] * 4, 16.0, [astro_ref], ENGINE)
    rows = result["frames"]
    assert all("eye shape drifted" in r["reasons"] for r in rows[4:]), rows
    assert not any(r["flagged"] for r in rows[:3])


def test_mouth_warp_lights_the_mouth_not_the_eyes(astro_ref) -> None:
    img = astronaut()
    lm = detect_landmarks_68(img)
    warped = magnify(img, [lm[48:68].mean(0)], 0.7 * M.interocular(lm), 0.6)
    heat = RefCanon(img, lm).frame_heatmap(warped, detect_landmarks_68(warped))
    assert region_mean(heat, lm[48:68]) > 3 * region_mean(heat, lm[36:48])


def test_skin_tone_shift_flagged_but_brightness_is_not() -> None:
    img = astronaut()
    lm = detect_landmarks_68(img)
    ref = M.skin_rgb(img, lm)
    darker = M.skin_rgb((img * 0.55).astype(np.uint8), lm)
    green = M.skin_rgb(np.clip(img * np.array([0.75, 1.1, 0.8]), 0, 255).astype(np.uint8), lm)
    assert M.skin_score(M.skin_delta_e(darker, ref)) > 0.8
    assert M.skin_score(M.skin_delta_e(green, ref)) < M.THRESHOLDS["skin_tone"]


def test_frozen_face_reports_no_motion(astro_ref) -> None:
    frozen, _ = analyze_frames(moving_frames(astronaut(), 10, amplitude=0.0), 16.0,
                               [astro_ref], ENGINE)
    moving, _ = analyze_frames(moving_frames(astronaut(), 10, amplitude=1.0), 16.0,
                               [astro_ref], ENGINE)
    assert frozen["summary"]["motion"] < 0.002
    assert moving["summary"]["motion"] > 5 * max(frozen["summary"]["motion"], 1e-4)
    assert frozen["summary"]["identity_mean"] > 0.8


def test_missing_face_and_pose_based_reference() -> None:
    img = astronaut()
    turned = cv2.flip(img, 1)
    refs = [prepare_reference(ENGINE, img, "a", "front"),
            prepare_reference(ENGINE, turned, "b", "front")]
    blank = np.full_like(moving_frames(img, 1)[0], 90)
    result, arrays = analyze_frames([moving_frames(img, 1)[0], blank], 16.0, refs, ENGINE)
    r0, r1 = result["frames"]
    assert r0["face_found"] and r0["matched_reference"] in {"a", "b"}
    assert not r1["face_found"] and r1["identity"] is None and r1["reasons"] == ["face missing"]
    assert np.isnan(arrays["landmarks"][1]).all() and np.isnan(arrays["boxes"][1]).all()
    assert arrays["heatmaps"][1].max() == 0


def test_drift_ranges_merge_consecutive_frames() -> None:
    rows = [{"flagged": f, "reasons": r} for f, r in [
        (False, []), (True, ["a"]), (True, ["a", "b"]), (False, []), (True, ["b"])]]
    assert drift_ranges(rows) == [{"start": 1, "end": 2, "reasons": ["a", "b"]},
                                  {"start": 4, "end": 4, "reasons": ["b"]}]


def test_pose_estimate_is_monotonic() -> None:
    img = astronaut()
    lm = detect_landmarks_68(img)
    yaw, pitch = M.pose(lm)
    assert abs(yaw) < 15 and M.angle_for_pose(yaw, pitch) == "front"
    flipped = M.pose(detect_landmarks_68(cv2.flip(img, 1)))
    assert math.isclose(flipped[0], -yaw, abs_tol=6)


def test_flicker_lowers_stability_but_smooth_motion_does_not(astro_ref) -> None:
    smooth, _ = analyze_frames(moving_frames(astronaut(), 9, amplitude=1.0), 16.0, [astro_ref],
                               ENGINE)
    assert all(r["stability"] is None or r["stability"] > 0.6 for r in smooth["frames"])
    frames = moving_frames(astronaut(), 9, amplitude=0.0)
    lm = detect_landmarks_68(frames[0])
    bulged = magnify(frames[4], [lm[48:68].mean(0)], 0.8 * M.interocular(lm), 0.7)
    frames[4] = bulged  # one-frame flicker of the mouth
    flick, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE)
    assert flick["frames"][4]["stability"] < min(r["stability"] for r in smooth["frames"]
                                                 if r["stability"] is not None)


def test_parallel_embedding_matches_in_process_and_falls_back(astro_ref, monkeypatch) -> None:
    from concurrent.futures import Future

    from studio.identity import parallel

    frames = moving_frames(astronaut(), 12, amplitude=0.5)
    serial, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE, parallel=False)
    par, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE, parallel=True)
    assert [r["identity"] for r in par["frames"]] == [r["identity"] for r in serial["frames"]]

    def broken(chip):  # a worker that died: the chip is embedded in-process instead
        fut: Future = Future()
        fut.set_exception(RuntimeError("worker died"))
        return fut

    monkeypatch.setattr(parallel, "submit", broken)
    monkeypatch.setattr(parallel, "disable", lambda: None)
    fallback, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE, parallel=True)
    assert [r["identity"] for r in fallback["frames"]] == [r["identity"] for r in serial["frames"]]


def test_geometry_not_compared_across_poses() -> None:
    """With only a reference 40° away in yaw, proportions and eye shape are not measurable
    (null), rather than flagged; identity and skin are still measured."""
    img = astronaut()
    ref = prepare_reference(ENGINE, img, "turned", "three_quarter_right")
    ref.pose = (ref.pose[0] + 40.0, ref.pose[1])
    result, _ = analyze_frames(moving_frames(img, 4, amplitude=0.3), 16.0, [ref], ENGINE)
    for r in result["frames"]:
        assert r["proportions"] is None and r["eye_shape"] is None
        assert r["identity"] > 0.8 and r["skin_tone"] is not None and not r["flagged"]


def test_preview_backend_animation_is_not_drift(astro_ref) -> None:
    """Integration with the built-in preview backend: a smiling, blinking, pushed-in animatic
    of the bible photo is the same person and not flagged."""
    from studio.engine.base import GenerationRequest
    from studio.engine.preview import PreviewBackend

    img = astronaut()
    lm = detect_landmarks_68(img)
    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(img).save(Path(tmp) / "a.png")
        req = GenerationRequest(start_image=Path(tmp) / "a.png", width=832, height=480,
                                prompt="she smiles and blinks, slow push in", num_frames=33,
                                fps=16, seed=3, face_landmarks=tuple(map(tuple, lm.tolist())))
        frames = list(PreviewBackend().render(req))
    result, _ = analyze_frames(frames, 16.0, [astro_ref], ENGINE)
    s = result["summary"]
    assert s["identity_min"] > ENGINE.threshold + 0.2
    assert s["flagged_fraction"] == 0.0, [r for r in result["frames"] if r["flagged"]]
    assert s["motion"] > 0.003
