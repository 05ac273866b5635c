"""dlib face detection and 68-point landmarks, with models loaded once and lazily.

The models come from the PyPI package ``face-recognition-models``. Its ``__init__`` imports
``pkg_resources`` (gone from recent setuptools), so the files are located through the import
system without importing the package.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
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


LANDMARKS_ENV = "CONTINUITY_LANDMARKS"  # "dlib68" or "mesh": overrides the saved choice
LANDMARK_MODELS = ("dlib68", "mesh")
CHOICE_FILE = "landmarks.json"  # in the user's config folder
DLIB68_LICENCE = ("dlib's 68-point model was trained on iBUG 300-W, whose licence allows "
                  "non-commercial research use only")
# What the choice offers (the app's first-use dialog and `continuity-studio landmarks` show
# these words; the figures are docs/IDENTITY.md "Landmarks and licences").
LANDMARK_OPTIONS: dict[str, dict[str, str]] = {
    "dlib68": {"label": "dlib 68-point landmarks (recommended for drift)",
               "licence": DLIB68_LICENCE,
               "note": "sees feature drift: both eyes enlarged by a local warp score 0.36-0.80 "
                       "on the calibration photos"},
    "mesh": {"label": "MediaPipe Face Mesh (Apache-2.0)",
             "licence": "Apache License 2.0 (Google), a file inside the mediapipe==0.10.21 "
                        "wheel",
             "note": "steadier under camera motion, but its face prior hides local feature "
                     "drift: the same enlarged eyes score 0.83-0.99 (not flagged)"},
}


class LandmarkChoiceNeeded(StudioError):
    """No landmark model has been chosen yet (the choice is a licence decision)."""


def _choice_path() -> Path:
    from studio.core.userdirs import config_dir

    return config_dir() / CHOICE_FILE


_CHOICE_CACHE: dict[str, tuple[tuple[int, int], str | None]] = {}


def landmark_choice() -> str | None:
    """The chosen landmark model: CONTINUITY_LANDMARKS, else the saved choice, else None.
    A damaged choice file counts as no choice (the user is asked again). Every landmark fit
    asks, so the file is read again only when its size or mtime changed (one stat a call)."""
    import json
    import os

    choice = os.environ.get(LANDMARKS_ENV, "").strip().lower()
    if choice:
        if choice not in LANDMARK_MODELS:
            raise StudioError(f"{LANDMARKS_ENV}={choice!r} is not a landmark model; use "
                              + " or ".join(LANDMARK_MODELS))
        return choice
    path = _choice_path()
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CHOICE_CACHE.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    model = None
    if st.st_size <= 4096:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        model = doc.get("model") if isinstance(doc, dict) else None
    model = model if model in LANDMARK_MODELS else None
    _CHOICE_CACHE[str(path)] = (stamp, model)
    return model


def save_landmark_choice(model: str) -> Path:
    """Remember the user's landmark model (atomically, in the config folder)."""
    import json
    import time

    from studio.core.atomic import atomic_write_text

    if model not in LANDMARK_MODELS:
        raise StudioError(f"{model!r} is not a landmark model; use " + " or ".join(LANDMARK_MODELS))
    if model == "mesh":
        _require_mesh()
    path = _choice_path()
    atomic_write_text(path, json.dumps({"model": model, "licence": LANDMARK_OPTIONS[model][
        "licence"], "chosen_at": time.time()}, indent=1) + "\n")
    return path


def _require_mesh() -> None:
    from studio.identity import mesh_landmarks

    if not mesh_landmarks.available():
        raise StudioError(
            "the Face Mesh landmark model is not installed: 'pip install --no-deps "
            f"{mesh_landmarks.CARRIER_REQUIREMENT}' (Apache-2.0), or choose dlib's 68-point "
            f"model ({DLIB68_LICENCE})")


def landmark_model(for_animation: bool = False) -> str:
    """The 68-point landmark model in use, as the user chose it (:func:`landmark_choice`):
    "dlib68" — dlib's, more sensitive to feature drift, non-commercial licence — or "mesh" —
    MediaPipe's Face Mesh (Apache-2.0, shipped inside the mediapipe wheel, run by OpenCV).
    Raises :class:`LandmarkChoiceNeeded` until a choice was made: the app asks at first use,
    the CLI says how (docs/IDENTITY.md "Landmarks and licences")."""
    choice = landmark_choice()
    if choice is None and for_animation:
        # Animating a start image (the preview backend) measures nothing: before the choice
        # it uses the permissively licensed mesh when it is installed.
        from studio.identity import mesh_landmarks

        if mesh_landmarks.available():
            return "mesh"
    if choice is None:
        raise LandmarkChoiceNeeded(
            "choose the face landmark model first (a licence decision): dlib's 68-point model "
            "(more sensitive to feature drift; trained on iBUG 300-W, whose licence allows "
            "non-commercial research use only) or MediaPipe's Face Mesh (Apache-2.0; less "
            "sensitive to feature drift); in the app: Settings ▸ Face landmarks…")
    if choice == "mesh":
        _require_mesh()
    return choice


@dataclass
class Fit:
    """One face's 68 points (iBUG order, frame pixels) and what the model says of its fit:
    ``presence`` in [0, 1] (the mesh model's face score; None for dlib's, which has none) and
    the model's own state for tracking the face into the next frame (the 468-point mesh)."""

    lm: np.ndarray
    presence: float | None = None
    mesh: np.ndarray | None = None


def fit_in_box(rgb: np.ndarray, box: tuple[float, float, float, float],
               for_animation: bool = False) -> Fit:
    """The 68 points of the face in a detector's ``box`` with the model in use."""
    if landmark_model(for_animation) == "mesh":
        from studio.identity import mesh_landmarks

        mesh, presence = mesh_landmarks.fit_mesh(rgb, box)
        return Fit(mesh_landmarks.mesh_to_68(mesh), presence, mesh)
    return Fit(dlib_landmarks_in_box(rgb, box, 68))


def track_fit(rgb: np.ndarray, prev: Fit) -> Fit | None:
    """The face of ``prev`` (last frame) in this frame, tracked by the model itself; None when
    the model cannot track (dlib's: the caller re-fits in a box carried over)."""
    if prev.mesh is None:
        return None
    from studio.identity import mesh_landmarks

    mesh, presence = mesh_landmarks.track_mesh(rgb, prev.mesh)
    return Fit(mesh_landmarks.mesh_to_68(mesh), presence, mesh)


def landmarks_in_box(rgb: np.ndarray, box: tuple[float, float, float, float],
                     points: int = 68) -> np.ndarray:
    """Fit the 68- (or dlib's 5-) point shape inside ``box`` (x0, y0, x1, y1) with the
    landmark model in use (:func:`landmark_model`); returns (N, 2) float32."""
    if points == 68:
        return fit_in_box(rgb, box).lm
    return dlib_landmarks_in_box(rgb, box, points)


def dlib_landmarks_in_box(rgb: np.ndarray, box: tuple[float, float, float, float],
                          points: int = 68) -> np.ndarray:
    """dlib's own 68- or 5-point fit inside ``box`` (the 68-point model's licence:
    :data:`DLIB68_LICENCE`)."""
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


def detect_landmarks_68(rgb: np.ndarray, for_animation: bool = False) -> np.ndarray | None:
    """68 landmarks (68×2 float32, frame pixels) of the largest face, or None when no face.

    HOG detector at upsample 0 first, then upsample 1 for small faces (< ~80 px).
    ``for_animation``: see :func:`landmark_model`.
    """
    img = as_rgb_u8(rgb)
    faces = detect_faces(img, 0) or detect_faces(img, 1)
    if not faces:
        return None
    box = max(faces, key=lambda f: _area(f[0]))[0]
    return fit_in_box(img, box, for_animation).lm
