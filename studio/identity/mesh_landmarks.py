"""68 iBUG-order landmarks from MediaPipe's Face Mesh model (Apache-2.0), run by OpenCV.

Why: dlib's 68-point model was trained on iBUG 300-W, whose licence forbids commercial use. The
MediaPipe Face Mesh network (``face_landmark.tflite``, 468 points, Apache-2.0, Google) ships
inside the PyPI wheel ``mediapipe==0.10.21`` (the last release that carries the legacy
``mediapipe/modules`` graphs; 0.10.30 and later ship only ``libmediapipe.so`` and download
``.task`` bundles at run time). That release requires numpy<2 and opencv-contrib-python, so it
is installed with ``pip install --no-deps`` purely as the carrier of the file: nothing here
imports mediapipe's Python code. The network has seven op types (CONV_2D, DEPTHWISE_CONV_2D,
PRELU, ADD, MAX_POOL_2D, PAD, DEQUANTIZE), which OpenCV's own TFLite importer
(``cv2.dnn.readNetFromTFLite``, OpenCV ≥ 4.8, already a dependency) runs; its output matches
Google's LiteRT interpreter to 1e-4 px (benchmarks/landmark_models.py checks it).

The 468-point mesh is mapped to the 68-point iBUG layout by resampling the mesh's own contour
polylines (face oval, brows, eyes, nose, lips from the mesh topology) at the iBUG positions,
measuring arc length in 3D so the spacing does not change as the head turns.
"""

from __future__ import annotations

import math

import importlib.util
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError

CARRIER = "mediapipe"  # the wheel that carries the model file
CARRIER_REQUIREMENT = "mediapipe==0.10.21"  # installed with --no-deps
MODEL_RELPATH = Path("modules") / "face_landmark" / "face_landmark.tflite"
MODEL_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
INPUT = 192  # the network's square input, pixels
# MediaPipe's landmark ROI is the landmarks' bounding box enlarged 1.5x (its
# face_landmark_landmarks_to_roi graph); dlib's HOG box is tighter (brows to chin), so the first
# crop from it is enlarged more. Both measured on the calibration set (benchmark).
ROI_SCALE = 1.5
BOX_SCALE = 2.1
# Re-crops on the mesh itself after the first crop from the box. Measured on the calibration set
# (benchmarks/landmark_models.py), equivariance mean/p95 in inter-ocular units: 0 → 0.066/0.17,
# 1 → 0.022/0.064, 2 → 0.009/0.025 (dlib: 0.016/0.045); each pass costs ~3 ms.
REFINE = 2
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # mesh vertices MediaPipe uses for the roll angle

# Contour polylines of the mesh (vertex ids from the mesh topology), and where on each the iBUG
# points sit, as fractions of the 3D arc length. "Right" is the subject's right (image left),
# which is where iBUG starts.
_JAW = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
        377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356)
# The ring of vertices just inside the oval. iBUG's jaw is the face's 2D outline: when the head
# turns, the near cheek's outline moves from the oval onto this ring (the oval goes behind it).
_JAW_INNER = (34, 227, 137, 177, 215, 138, 135, 169, 170, 140, 171, 175,
              396, 369, 395, 394, 364, 367, 435, 401, 366, 447, 264)
_BROW_R_UP, _BROW_R_LO = (70, 63, 105, 66, 107), (46, 53, 52, 65, 55)  # outer → inner
_BROW_L_UP, _BROW_L_LO = (336, 296, 334, 293, 300), (285, 295, 282, 283, 276)  # inner → outer
_BRIDGE = (168, 6, 197, 195, 5, 4, 1)  # nasion → tip
_NOSE_BASE = (98, 97, 2, 326, 327)  # right ala → subnasale → left ala
_EYE_R_UP = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer → inner
_EYE_R_LO = (33, 7, 163, 144, 145, 153, 154, 155, 133)
_EYE_L_UP = (362, 398, 384, 385, 386, 387, 388, 466, 263)  # inner → outer
_EYE_L_LO = (362, 382, 381, 380, 374, 373, 390, 249, 263)
_LIP_OUT_UP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)  # right corner → left
_LIP_OUT_LO = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)  # left corner → right
_LIP_IN_UP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LIP_IN_LO = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
# iBUG brow points lie between the brow's upper edge and its middle.
BROW_UPPER_WEIGHT = 0.5
INNER_LIP_T = 0.25

_local = threading.local()  # one cv2.dnn.Net per thread: a Net is not safe to share


def model_path() -> Path:
    """The ``face_landmark.tflite`` inside the installed mediapipe wheel (or a frozen bundle)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        path = Path(frozen) / CARRIER / MODEL_RELPATH
        if path.is_file():
            return path
    # find_spec on a top-level package locates it without running its __init__ (which would
    # import mediapipe's own dependencies: numpy<2, protobuf, opencv-contrib).
    spec = importlib.util.find_spec(CARRIER)
    if spec is None or not spec.submodule_search_locations:
        raise StudioError("the Face Mesh landmark model is missing: install it with "
                          f"'pip install --no-deps {CARRIER_REQUIREMENT}'")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_RELPATH
    if not path.is_file():
        raise StudioError("this mediapipe release does not carry the Face Mesh model; install "
                          f"'pip install --no-deps {CARRIER_REQUIREMENT}'", path)
    return path


def available() -> bool:
    """True when the model file is installed and this OpenCV can read TFLite models."""
    try:
        model_path()
        import cv2
    except (StudioError, ImportError):
        return False
    return hasattr(cv2.dnn, "readNetFromTFLite")


def licence() -> str:
    return ("MediaPipe Face Mesh (face_landmark.tflite, 468 points) by Google, Apache License "
            f"2.0; carried by the PyPI wheel {CARRIER_REQUIREMENT}")


@lru_cache(maxsize=None)
def _model_bytes() -> bytes:
    import hashlib

    path = model_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        # The mapping and the crop constants were measured on this exact network.
        raise StudioError("the Face Mesh model file is not the one this version expects "
                          f"(reinstall '{CARRIER_REQUIREMENT}')", path)
    return data


def _net() -> Any:
    net = getattr(_local, "net", None)
    if net is None:
        import cv2

        if not hasattr(cv2.dnn, "readNetFromTFLite"):
            raise StudioError(f"OpenCV {cv2.__version__} cannot read TFLite models "
                              "(need opencv-python-headless>=4.8)")
        try:
            _model_bytes()  # checks the file's SHA-256
            # OpenCV 5's new engine returns one output; the classic one (OpenCV 4's only
            # engine) returns the mesh and the face-presence score from one pass. (The
            # buffer overload ignores the engine, so the checked file is read by path.)
            classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
            path = str(model_path())
            net = (cv2.dnn.readNetFromTFLite(path) if classic is None
                   else cv2.dnn.readNetFromTFLite(path, engine=classic))
        except cv2.error as exc:
            raise StudioError(f"OpenCV could not load the Face Mesh model ({exc})",
                              model_path()) from None
        _local.net = net
    return net


def roi_matrix(center: np.ndarray, size: float, angle: float) -> np.ndarray:
    """2x3 affine from crop pixels (0..INPUT) to frame pixels, for a square ROI rotated by angle."""
    c, s = np.cos(angle), np.sin(angle)
    k = size / INPUT
    rot = np.array([[c, -s], [s, c]]) * k
    off = np.asarray(center, np.float64) - rot @ np.array([INPUT / 2, INPUT / 2])
    return np.hstack([rot, off[:, None]])


MESH_OUT, FLAG_OUT = "conv2d_21", "conv2d_31"  # the mesh (1404) and the face-presence logit


def _run_flag(img: np.ndarray, to_frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(mesh 468x3 in frame pixels — z in the same scale —, face presence in [0, 1]) for one
    ROI. The presence is the model's own judgement that the crop holds a face it fitted: a
    crop that slid onto the background or half a face scores near 0."""
    net = _net()
    net.setInput(input_blob(img, to_frame))
    mesh, flag = net.forward([MESH_OUT, FLAG_OUT])
    presence = 1.0 / (1.0 + math.exp(-float(np.clip(np.asarray(flag).ravel()[0], -60, 60))))
    return _to_frame(np.asarray(mesh, np.float64).reshape(468, 3), to_frame), presence


def fit_mesh(rgb: np.ndarray, box: tuple[float, float, float, float],
             refine: int = REFINE) -> tuple[np.ndarray, float]:
    """(mesh 468x3 in frame pixels, presence) of the face in a detector's ``box`` (x0, y0, x1,
    y1). The first crop is square around the box, upright; then ``refine`` more passes re-crop
    on the mesh itself (rolled, as MediaPipe tracks), which removes the box's own jitter."""
    from studio.identity.landmarks import as_rgb_u8

    img = as_rgb_u8(rgb)
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty face box {box}")
    size = max(x1 - x0, y1 - y0) * BOX_SCALE
    mesh, presence = _run_flag(img, roi_matrix(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), size,
                                               0.0))
    for _ in range(max(0, refine)):
        mesh, presence = _run_flag(img, _roi_from_mesh(mesh))
    return mesh, presence


def track_mesh(rgb: np.ndarray, prev: np.ndarray) -> tuple[np.ndarray, float]:
    """(mesh, presence) in this frame from the previous frame's mesh: one pass in the ROI the
    previous mesh implies — how MediaPipe itself tracks a face between detections."""
    from studio.identity.landmarks import as_rgb_u8

    return _run_flag(as_rgb_u8(rgb), _roi_from_mesh(prev))


def input_blob(img: np.ndarray, to_frame: np.ndarray) -> np.ndarray:
    """The network's input (1x3x192x192 float32, RGB in [0, 1], NCHW) for one ROI."""
    import cv2

    crop = cv2.warpAffine(img, to_frame, (INPUT, INPUT),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def _to_frame(out: np.ndarray, to_frame: np.ndarray) -> np.ndarray:
    mesh = np.empty_like(out)
    mesh[:, :2] = out[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
    mesh[:, 2] = out[:, 2] * np.hypot(to_frame[0, 0], to_frame[1, 0])
    return mesh


def _roi_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """MediaPipe's tracking ROI: rolled so the eyes are level, 1.5x the mesh's extent."""
    d = mesh[LEFT_EYE_OUTER, :2] - mesh[RIGHT_EYE_OUTER, :2]
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    upright = mesh[:, :2] @ np.array([[c, -s], [s, c]])  # rotate by -angle
    lo, hi = upright.min(0), upright.max(0)
    mid = (lo + hi) / 2
    center = np.array([[c, -s], [s, c]]) @ mid
    return roi_matrix(center, float((hi - lo).max()) * ROI_SCALE, angle)


def mesh_468(rgb: np.ndarray, box: tuple[float, float, float, float],
             refine: int = REFINE) -> np.ndarray:
    """The 468-point mesh (468x3 float64, frame pixels) of the face in ``box`` (x0, y0, x1, y1):
    :func:`fit_mesh` without the presence score."""
    return fit_mesh(rgb, box, refine)[0]


def _along(mesh: np.ndarray, path: tuple[int, ...], ts: list[float]) -> np.ndarray:
    """Points at fractions ``ts`` of a mesh polyline's 3D arc length, as (len(ts), 2)."""
    pts = mesh[list(path)]
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.asarray(ts) * cum[-1]
    return np.stack([np.interp(at, cum, pts[:, k]) for k in (0, 1)], axis=1)


def _jaw(mesh: np.ndarray) -> np.ndarray:
    """17 outline points: on each row from the oval to the inner ring, the outermost in 2D."""
    ts = list(np.linspace(0, 1, 17))
    outer, inner = _along(mesh, _JAW, ts), _along(mesh, _JAW_INNER, ts)
    center = mesh[list(_BRIDGE), :2].mean(0)  # the nose line: "outward" is away from it
    fr = np.linspace(0, 1, 6)[:, None, None]
    cand = outer[None] * (1 - fr) + inner[None] * fr  # (6, 17, 2)
    out_dir = outer - center
    out_dir /= np.linalg.norm(out_dir, axis=1, keepdims=True)
    score = ((cand - center) * out_dir[None]).sum(2)  # (6, 17)
    return cand[score.argmax(0), np.arange(17)]


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """iBUG 68 points (68x2 float32) from a 468x3 mesh."""
    w = BROW_UPPER_WEIGHT
    fifths = [0, .25, .5, .75, 1]
    thirds = [1 / 3, 2 / 3]
    sixths = [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]
    quarters = [INNER_LIP_T, .5, 1 - INNER_LIP_T]
    parts = [
        _jaw(mesh),                                                            # 0-16
        w * _along(mesh, _BROW_R_UP, fifths)
        + (1 - w) * _along(mesh, _BROW_R_LO, fifths),                          # 17-21
        w * _along(mesh, _BROW_L_UP, fifths)
        + (1 - w) * _along(mesh, _BROW_L_LO, fifths),                          # 22-26
        _along(mesh, _BRIDGE, [0, 1 / 3, 2 / 3, 1]),                           # 27-30
        _along(mesh, _NOSE_BASE, fifths),                                      # 31-35
        mesh[[_EYE_R_UP[0]], :2], _along(mesh, _EYE_R_UP, thirds),             # 36-38
        mesh[[_EYE_R_UP[-1]], :2], _along(mesh, _EYE_R_LO, thirds[::-1]),      # 39-41
        mesh[[_EYE_L_UP[0]], :2], _along(mesh, _EYE_L_UP, thirds),             # 42-44
        mesh[[_EYE_L_UP[-1]], :2], _along(mesh, _EYE_L_LO, thirds[::-1]),      # 45-47
        mesh[[_LIP_OUT_UP[0]], :2], _along(mesh, _LIP_OUT_UP, sixths),         # 48-53
        mesh[[_LIP_OUT_LO[0]], :2], _along(mesh, _LIP_OUT_LO, sixths),         # 54-59
        mesh[[_LIP_IN_UP[0]], :2], _along(mesh, _LIP_IN_UP, quarters),         # 60-63
        mesh[[_LIP_IN_LO[0]], :2], _along(mesh, _LIP_IN_LO, quarters),         # 64-67
    ]
    out = np.concatenate(parts, axis=0).astype(np.float32)
    assert out.shape == (68, 2)
    return out


def landmarks_68(rgb: np.ndarray, box: tuple[float, float, float, float],
                 refine: int = REFINE) -> np.ndarray:
    """68 landmarks (68x2 float32, frame pixels, iBUG order) of the face in ``box``.

    ``box`` is (x0, y0, x1, y1) as dlib's HOG detector gives it (``landmarks.detect_faces``).
    """
    return mesh_to_68(mesh_468(rgb, box, refine))
