"""MediaPipe Face Mesh → iBUG 68 (studio.identity.mesh_landmarks) on real photographs.

Needs the model file from ``pip install --no-deps mediapipe==0.10.21``; the accuracy tests skip
without it. Bounds come from benchmarks/landmark_models.py on the same photos (measured: NME vs
dlib 0.034-0.082 per photo, 0.106 on t1's three-quarter profile; equivariance mean 0.009 IOD).
"""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.identity import mesh_landmarks as ml
from studio.identity.landmarks import detect_faces, landmarks_in_box

from identity_helpers import astronaut, t1_faces

needs_model = pytest.mark.skipif(not ml.available(), reason="the Face Mesh model is not "
                                 "installed (pip install --no-deps mediapipe==0.10.21)")


def _box(img: np.ndarray) -> tuple[float, float, float, float]:
    faces = detect_faces(img, 0) or detect_faces(img, 1)
    assert faces
    return max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[0]


def _nme(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref, axis=1).mean() / np.linalg.norm(ref[36] - ref[45]))


@needs_model
def test_agrees_with_dlib_on_real_photos() -> None:
    photos = [astronaut(), *t1_faces()]
    nmes = []
    for img in photos:
        box = _box(img)
        lm = ml.landmarks_68(img, box)
        assert lm.shape == (68, 2) and lm.dtype == np.float32
        nmes.append(_nme(lm, landmarks_in_box(img, box, 68)))
        # iBUG order: image-left eye (36-41) left of the other, mouth below the eyes, chin (8)
        # below the mouth.
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
        assert lm[48:68, 1].mean() > lm[36:48, 1].mean() and lm[8, 1] > lm[57, 1]
    assert max(nmes) < 0.15, nmes
    assert float(np.mean(nmes)) < 0.07, nmes


@needs_model
def test_follows_a_known_camera_move() -> None:
    """Roll 8°, zoom 1.2, shift: the landmarks mapped back by the inverse warp land where they
    were on the unwarped photo (this is what keeps per-frame metrics still on a camera move)."""
    import cv2

    img = astronaut()
    base = ml.landmarks_68(img, _box(img)).astype(np.float64)
    m = cv2.getRotationMatrix2D((256, 256), 8, 1.2)
    m[:, 2] += (20, -15)
    warped = cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
    near = base.mean(0) @ m[:, :2].T + m[:, 2]
    faces = [f for f in detect_faces(warped, 1)
             if abs((f[0][0] + f[0][2]) / 2 - near[0]) < 40]  # not the mirrored border copy
    lm = ml.landmarks_68(warped, faces[0][0]).astype(np.float64)
    inv = cv2.invertAffineTransform(m)
    back = lm @ inv[:, :2].T + inv[:, 2]
    iod = np.linalg.norm(base[36] - base[45])
    err = np.linalg.norm(back - base, axis=1) / iod
    assert err.mean() < 0.03 and err.max() < 0.1, (err.mean(), err.max())


@needs_model
def test_refining_on_the_mesh_removes_the_box_offset() -> None:
    """Two boxes a quarter face apart give nearly the same landmarks after refinement."""
    img = astronaut()
    x0, y0, x1, y1 = _box(img)
    q = (x1 - x0) / 4
    a = ml.landmarks_68(img, (x0, y0, x1, y1))
    b = ml.landmarks_68(img, (x0 + q, y0 - q, x1 + q, y1 - q))
    raw_a = ml.landmarks_68(img, (x0, y0, x1, y1), refine=0)
    raw_b = ml.landmarks_68(img, (x0 + q, y0 - q, x1 + q, y1 - q), refine=0)
    assert _nme(b, a) < 0.03
    assert _nme(b, a) < _nme(raw_b, raw_a)


def test_missing_wheel_is_a_readable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A carrier name that no installed package has: the real import system finds nothing.
    monkeypatch.setattr(ml, "CARRIER", "no_such_face_mesh_carrier")
    monkeypatch.setattr(ml.sys, "_MEIPASS", None, raising=False)
    assert ml.available() is False
    with pytest.raises(StudioError, match="pip install --no-deps mediapipe==0.10.21"):
        ml.model_path()
    assert "Apache" in ml.licence()
