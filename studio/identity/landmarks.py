"""dlib face detection and 68-point landmarks, with models loaded once and lazily.

The models come from the PyPI package ``face-recognition-models``. Its ``__init__`` imports
``pkg_resources`` (gone from recent setuptools), so the files are located through the import
system without importing the package.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError

# HOG returns low-score false positives; faces above this score are real in practice.
HOG_MIN_SCORE = 0.3
# dlib's model objects are shared by every thread of the process (they are large and slow to
# load) but are not documented as thread-safe: analysis, the reference-quality check and the
# preview backend can run at the same time, and concurrent calls crashed the process. Every call
# into a shared model holds this lock (re-entrant: model loading takes it too). In-process
# threads gain nothing from running dlib concurrently anyway (it holds the GIL); the parallel
# analysis uses a second process, with its own models.
_lock = threading.RLock()


def models_dir() -> Path:
    """Folder holding dlib's .dat models from the ``face-recognition-models`` package."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:  # a PyInstaller bundle ships the files as data (packaging/continuity-studio.spec)
        folder = Path(frozen) / "face_recognition_models" / "models"
        if folder.is_dir():
            return folder
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise StudioError("the face models are missing: install the PyPI package "
                          "'face-recognition-models'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not folder.is_dir():
        raise StudioError("face model folder is missing", folder)
    return folder


def model_path(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise StudioError("face model file is missing (reinstall face-recognition-models)", path)
    return path


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - dlib-bin is a hard dependency
        raise StudioError(f"dlib is not installed ({exc}); install 'dlib-bin'") from None
    return dlib


@lru_cache(maxsize=None)
def hog_detector() -> Any:
    with _lock:
        return _dlib().get_frontal_face_detector()


@lru_cache(maxsize=None)
def shape_predictor_68() -> Any:
    with _lock:
        return _dlib().shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


@lru_cache(maxsize=None)
def shape_predictor_5() -> Any:
    with _lock:
        return _dlib().shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))


@lru_cache(maxsize=None)
def cnn_detector() -> Any:
    with _lock:
        return _dlib().cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@lru_cache(maxsize=None)
def face_encoder() -> Any:
    with _lock:
        return _dlib().face_recognition_model_v1(
            str(model_path("dlib_face_recognition_resnet_model_v1.dat")))


def as_rgb_u8(rgb: np.ndarray) -> np.ndarray:
    """C-contiguous uint8 HxWx3, as dlib requires."""
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 RGB image, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def detect_faces(rgb: np.ndarray, upsample: int = 0, min_score: float = HOG_MIN_SCORE,
                 ) -> list[tuple[tuple[float, float, float, float], float]]:
    """HOG faces as ``((x0, y0, x1, y1), score)``, best score first, scores ≥ ``min_score``."""
    img = as_rgb_u8(rgb)
    with _lock:
        rects, scores, _ = hog_detector().run(img, upsample, 0.0)
    out = [((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s))
           for r, s in zip(rects, scores) if s >= min_score]
    out.sort(key=lambda f: -f[1])
    return out


def cnn_detect_faces(rgb: np.ndarray, upsample: int = 0, min_conf: float = 0.5,
                     ) -> list[tuple[tuple[float, float, float, float], float]]:
    """CNN (MMOD) faces; slow (seconds per frame on CPU), used only as a rare fallback."""
    img = as_rgb_u8(rgb)
    with _lock:
        dets = cnn_detector()(img, upsample)
    out = [((float(d.rect.left()), float(d.rect.top()), float(d.rect.right()),
             float(d.rect.bottom())), float(d.confidence)) for d in dets if d.confidence >= min_conf]
    out.sort(key=lambda f: -f[1])
    return out


def landmarks_in_box(rgb: np.ndarray, box: tuple[float, float, float, float],
                     points: int = 68) -> np.ndarray:
    """Fit the 68- (or 5-) point shape inside ``box`` (x0, y0, x1, y1); returns (N, 2) float32."""
    dlib = _dlib()
    img = as_rgb_u8(rgb)
    rect = dlib.rectangle(int(round(box[0])), int(round(box[1])),
                          int(round(box[2])), int(round(box[3])))
    with _lock:
        pred = shape_predictor_68() if points == 68 else shape_predictor_5()
        shape = pred(img, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def encode_chip(chip: np.ndarray) -> np.ndarray:
    """The 128-d identity embedding of an aligned 150×150 face chip (dlib ResNet)."""
    with _lock:
        return np.asarray(face_encoder().compute_face_descriptor(chip), dtype=np.float32)


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def detect_landmarks_68(rgb: np.ndarray) -> np.ndarray | None:
    """68 landmarks (68×2 float32, frame pixels) of the largest face, or None when no face.

    HOG detector at upsample 0 first, then upsample 1 for small faces (< ~80 px).
    """
    img = as_rgb_u8(rgb)
    faces = detect_faces(img, 0) or detect_faces(img, 1)
    if not faces:
        return None
    box = max(faces, key=lambda f: _area(f[0]))[0]
    return landmarks_in_box(img, box, 68)
