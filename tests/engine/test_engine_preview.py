"""The CPU preview backend: determinism, camera moves from prompts, landmark-driven face motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine_fixtures import astronaut_landmarks
from studio.engine.base import Cancelled, GenerationRequest
from studio.engine.preview import CAMERA_MOVES, PreviewBackend, parse_motion


def _req(photo: Path, prompt: str, seed: int = 1, n: int = 12, w: int = 320, h: int = 192,
         landmarks=None, **extra) -> GenerationRequest:
    extra.setdefault("face_motion", landmarks is not None)
    return GenerationRequest(start_image=photo, prompt=prompt, width=w, height=h, num_frames=n,
                             fps=16, seed=seed, face_landmarks=landmarks, extra=extra)


@pytest.mark.parametrize("prompt, move", [
    ("static camera, she looks at us", "static"),
    ("Locked-off shot of the launch pad", "static"),
    ("slow push in on her face", "push_in"),
    ("the camera zooms in", "push_in"),
    ("Zoom out to reveal the rocket", "pull_out"),
    ("camera pulls back", "pull_out"),
    ("camera pans left across the flag", "pan_left"),
    ("pan right", "pan_right"),
    ("camera tilts up to the sky", "tilt_up"),
    ("tilt down to her hands", "tilt_down"),
    ("slow orbit around the astronaut", "orbit_left"),
    ("the camera orbits right", "orbit_right"),
    ("pans right, then a static camera", "pan_right"),  # the first camera phrase wins
])
def test_camera_moves_are_recognised_from_prompts(prompt: str, move: str) -> None:
    plan = parse_motion(prompt, {}, seed=3)
    assert plan.camera == move
    assert plan.camera_source == "prompt"


def test_shot_params_override_the_prompt_and_face_words_are_found() -> None:
    plan = parse_motion("pans left while she talks and smiles, then nods", {"camera": "tilt-down"}, 1)
    assert plan.camera == "tilt_down" and plan.camera_source == "params"
    assert set(plan.face_actions) == {"talk", "smile", "nod"}
    assert parse_motion("she blinks", {}, 1).face_actions == ("blink",)
    assert parse_motion("he turns his head left", {}, 1).face_actions == ("turn",)
    assert parse_motion("he turns his head left", {}, 1).turn_direction == -1
    bad = parse_motion("static camera", {"camera": "barrel roll"}, 1)
    assert bad.camera == "static" and "unknown camera move" in bad.notes[0]
    # Nothing said about the camera: the seed picks a move (re-rolls differ).
    picked = {parse_motion("a portrait", {}, s).camera for s in range(40)}
    assert picked <= set(CAMERA_MOVES) and len(picked) >= 3
    assert parse_motion("a portrait", {}, 5).camera_source == "seed"


def test_deterministic_per_seed_and_different_across_seeds(photo_png: Path) -> None:
    b = PreviewBackend()
    a1 = b.render(_req(photo_png, "a portrait of the commander", seed=11))
    a2 = b.render(_req(photo_png, "a portrait of the commander", seed=11))
    c = b.render(_req(photo_png, "a portrait of the commander", seed=12))
    assert a1.dtype == np.uint8 and a1.shape == (12, 192, 320, 3)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, c)
    # With face motion too (blink timing, talking mouth rhythm come from the seed).
    lm = astronaut_landmarks()
    f1 = b.render(_req(photo_png, "static camera, she talks", seed=3, n=16, landmarks=lm))
    f2 = b.render(_req(photo_png, "static camera, she talks", seed=3, n=16, landmarks=lm))
    f3 = b.render(_req(photo_png, "static camera, she talks", seed=4, n=16, landmarks=lm))
    assert np.array_equal(f1, f2) and not np.array_equal(f1, f3)


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    import cv2

    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
    return dx, dy


def test_camera_moves_move_the_picture(photo_png: Path) -> None:
    b = PreviewBackend()
    static = b.render(_req(photo_png, "static camera"))
    assert all(np.array_equal(static[0], f) for f in static)  # truly still without a face rig
    pan_l = b.render(_req(photo_png, "camera pans left", n=16))
    pan_r = b.render(_req(photo_png, "camera pans right", n=16))
    dx_l, _ = _shift(pan_l[0], pan_l[-1])
    dx_r, _ = _shift(pan_r[0], pan_r[-1])
    # Panning left moves the view left, so the picture slides right (and vice versa).
    assert dx_l > 3 and dx_r < -3
    tilt = b.render(_req(photo_png, "tilt up", n=16))
    _, dy = _shift(tilt[0], tilt[-1])
    assert dy > 3
    push = b.render(_req(photo_png, "push in", n=16))
    pull = b.render(_req(photo_png, "zoom out", n=16))

    def zoom_error(small: np.ndarray, big: np.ndarray, z: float) -> float:
        import cv2

        h, w = small.shape[:2]
        m = np.array([[z, 0, w / 2 * (1 - z)], [0, z, h / 2 * (1 - z)]])
        zoomed = cv2.warpAffine(small, m, (w, h))
        c = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
        return float(np.abs(zoomed[c].astype(int) - big[c].astype(int)).mean())

    # The last frame of a push-in is the first one magnified (a pull-out: the reverse).
    assert zoom_error(push[0], push[-1], 1.16) < zoom_error(push[0], push[-1], 1.0) * 0.6
    assert zoom_error(pull[-1], pull[0], 1.16) < zoom_error(pull[-1], pull[0], 1.0) * 0.6


def test_face_motion_changes_mouth_and_eyes_not_the_background(photo_png: Path) -> None:
    b = PreviewBackend()
    lm = np.array(astronaut_landmarks())
    w = h = 512  # the photo's own size and aspect: canvas pixels are image pixels
    talk = b.render(_req(photo_png, "static camera, she talks", n=24, w=w, h=h,
                         landmarks=[tuple(p) for p in lm], face_actions=["talk"]))
    assert b.last_plan is not None and b.last_plan.face_motion

    def region(points: np.ndarray, pad: int = 6) -> tuple[slice, slice]:
        x0, y0 = np.floor(points.min(0)).astype(int) - pad
        x1, y1 = np.ceil(points.max(0)).astype(int) + pad
        return slice(y0, y1), slice(x0, x1)

    mouth = region(lm[48:68])
    diffs = [np.abs(f[mouth].astype(int) - talk[0][mouth].astype(int)).mean() for f in talk]
    assert max(diffs) > 8  # the mouth opens and closes
    corner = (slice(0, 60), slice(0, 60))
    assert all(np.array_equal(f[corner], talk[0][corner]) for f in talk)  # background is still

    blink = b.render(_req(photo_png, "static camera, she blinks", n=48, w=w, h=h,
                          landmarks=[tuple(p) for p in lm], face_actions=["blink"]))
    eyes = region(lm[36:48], pad=3)
    eye_diff = [np.abs(f[eyes].astype(int) - blink[0][eyes].astype(int)).mean() for f in blink]
    rest = max(eye_diff[:2])
    assert max(eye_diff) > rest + 6  # at least one blink within 3 s

    # Without landmarks nothing moves on a static camera.
    still = b.render(_req(photo_png, "static camera, she talks", n=8, w=w, h=h))
    assert all(np.array_equal(f, still[0]) for f in still)
    assert "no face landmarks" in " ".join(b.last_plan.notes)


def test_output_size_and_aspect_crop(photo_png: Path) -> None:
    b = PreviewBackend()
    tall = b.render(_req(photo_png, "static camera", n=2, w=180, h=320))
    assert tall.shape == (2, 320, 180, 3)
    snapped, notes = b.snap(_req(photo_png, "x", n=7, w=321, h=191))
    assert (snapped.width, snapped.height, snapped.num_frames) == (320, 192, 7)  # round half to even
    assert notes


def test_cancel_within_one_frame(photo_png: Path) -> None:
    b = PreviewBackend()
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    steps: list[int] = []
    with pytest.raises(Cancelled):
        b.generate(_req(photo_png, "push in", n=40), lambda p: steps.append(p.step), cancelled)
    assert max(steps) == 3


def test_landmark_detection_failure_falls_back_to_no_face_motion(
        photo_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.identity.landmarks as lmmod

    def broken(rgb):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(lmmod, "detect_landmarks_68", broken)
    b = PreviewBackend()
    req = GenerationRequest(start_image=photo_png, prompt="static camera, she talks", width=64,
                            height=64, num_frames=3, fps=16, seed=1)
    frames = b.render(req)
    assert frames.shape == (3, 64, 64, 3)
    assert b.last_plan is not None and not b.last_plan.face_motion


def test_portrait_into_wide_frame_keeps_the_upper_part_without_landmarks() -> None:
    from studio.engine.preview import fit_crop

    # A square portrait into 16:9: the crop must cut the height, and without a face position it
    # keeps the upper part of the picture (where a portrait's face is), not the centre.
    x, y, w, h = fit_crop(512, 512, 832, 480)
    assert (x, w) == (0.0, 512.0) and round(h) == 295
    assert y < 512 * 0.15  # a centre crop would start at 108 and cut the head off
    # With a face position the crop follows the face.
    _, y_face, _, _ = fit_crop(512, 512, 832, 480, focus=(256.0, 400.0))
    assert y_face > y
    # A wide source into a wide frame is cut at the sides, centred.
    x2, y2, _, _ = fit_crop(1600, 600, 832, 480)
    assert y2 == 0.0 and abs(x2 - (1600 - 600 * 832 / 480) / 2) < 1e-6
