"""Face engines behind one interface: detect, landmarks, align, embed, compare.

Two engines:

* :class:`DlibEngine` (default, no download): HOG detector (CNN detector as a rare fallback for
  reference images), 68-point landmarks, the 128-d ResNet embedding of ``face-recognition-models``.
  Raw score: Euclidean distance ``d`` (dlib's "same person" threshold is 0.6).
  Similarity ``s = clip(1 - d / 1.2, 0, 1)``, so d = 0.6 maps to the threshold 0.5.
* :class:`ArcFaceEngine`: InsightFace ArcFace recognition (+ SCRFD detector when the pack has one)
  run with our own onnxruntime code from a model-pack folder (buffalo_l / antelopev2 layout).
  Nothing is ever downloaded: a missing folder is an error before any model is touched.
  Raw score: cosine similarity ``c``; similarity ``s = clip(c, 0, 1)`` (the FaceSim-Arc
  convention); threshold 0.35.

Landmarks for the per-frame metrics always come from dlib's 68-point predictor (both engines):
the metrics and heatmaps need 68 points whatever the identity model is.
Scores of different engines are never compared: every stored score carries :attr:`FaceEngine.key`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.identity import landmarks as dl

Box = tuple[float, float, float, float]

# ArcFace's canonical 5-point template for a 112x112 crop (eyes, nose tip, mouth corners).
ARCFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


@dataclass
class Detection:
    box: Box
    score: float
    kps: np.ndarray | None = None  # 5x2 (eyes, nose, mouth corners) when the detector gives them


def five_from_68(lm: np.ndarray) -> np.ndarray:
    """ArcFace-order 5 points (image-left eye, image-right eye, nose tip, mouth corners)."""
    return np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]],
                    dtype=np.float32)


class FaceEngine:
    name = "base"
    model = ""
    version = ""
    license = ""
    threshold = 0.5  # similarity in [0, 1] at or above which two faces are the same person

    @property
    def key(self) -> str:
        return f"{self.name}/{self.model}/{self.full_version}"

    @property
    def full_version(self) -> str:
        """The identity model's version and the landmark model's: both change the scores
        (dlib's 68-point model keeps the versions written before the mesh existed)."""
        lm = dl.landmark_model()
        return self.version if lm == "dlib68" else f"{self.version}+{lm}1"

    @property
    def full_license(self) -> str:
        lm = dl.landmark_model()
        if lm == "dlib68":
            return self.license + "; 68-point landmarks: " + dl.DLIB68_LICENCE
        from studio.identity import mesh_landmarks

        return self.license + "; landmarks: " + mesh_landmarks.licence()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "version": self.full_version,
                "license": self.full_license, "threshold": self.threshold}

    # --- detection and landmarks -------------------------------------------------------------
    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Detection]:
        return [Detection(b, s) for b, s in dl.detect_faces(rgb, upsample)]

    def detect_thorough(self, rgb: np.ndarray) -> list[Detection]:
        """For still images (references): upsample once for small faces; CNN as a last resort."""
        faces = self.detect(rgb, 0) or self.detect(rgb, 1)
        if not faces and max(rgb.shape[:2]) <= 1600:  # CNN costs seconds; only for stills
            faces = [Detection(b, s) for b, s in dl.cnn_detect_faces(rgb, 0)]
        return faces

    def landmarks(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        return dl.landmarks_in_box(rgb, box, 68)

    def fit(self, rgb: np.ndarray, box: Box) -> "dl.Fit":
        """68 points in a detector's box, with the landmark model's presence score."""
        return dl.fit_in_box(rgb, box)

    def track(self, rgb: np.ndarray, prev: "dl.Fit") -> "dl.Fit | None":
        """The previous frame's face tracked into this one (None: the model cannot track)."""
        return dl.track_fit(rgb, prev)

    # --- embeddings ----------------------------------------------------------------------------
    def align(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_score(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError

    def to_similarity(self, raw: float) -> float:
        raise NotImplementedError

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.to_similarity(self.raw_score(a, b))

    def mean_embedding(self, embs: list[np.ndarray]) -> np.ndarray:
        return np.mean(np.stack(embs), axis=0).astype(np.float32)


class DlibEngine(FaceEngine):
    name = "dlib"
    model = "dlib_face_recognition_resnet_model_v1"
    version = "20.0-frm0.3.0-sim1"
    license = "embedding, 5-point and detector models: CC0 / Boost (dlib)"  # + landmarks
    threshold = 0.5
    DISTANCE_THRESHOLD = 0.6
    _chip_size = 150

    def align(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        import dlib

        img = dl.as_rgb_u8(rgb)
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in lm68]
        x0, y0 = lm68.min(0)
        x1, y1 = lm68.max(0)
        rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        shape = dlib.full_object_detection(rect, parts)
        return np.asarray(dlib.get_face_chip(img, shape, self._chip_size, 0.25))

    def embed(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        return self.embed_chip(self.align(rgb, lm68))

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        return dl.encode_chip(chip)

    def raw_score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))

    def to_similarity(self, raw: float) -> float:
        return float(np.clip(1.0 - raw / (2 * self.DISTANCE_THRESHOLD), 0.0, 1.0))


# --- InsightFace ArcFace via onnxruntime ---------------------------------------------------------

def insightface_home() -> Path:
    return Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()


def find_model_pack(folder: Path | str | None = None) -> Path | None:
    """A model-pack folder holding .onnx files: ``folder`` itself, or the first of
    buffalo_l / antelopev2 (/ any pack) in the InsightFace home folder. Never downloads."""
    if folder is not None:
        p = Path(folder).expanduser()
        if not p.is_dir():
            raise StudioError("model pack folder does not exist", p)
        onnx = sorted(p.glob("*.onnx")) or sorted(p.glob("*/*.onnx"))
        if not onnx:
            raise StudioError("no .onnx models in the model pack folder", p)
        return onnx[0].parent
    models = insightface_home() / "models"
    for name in ("buffalo_l", "antelopev2"):
        cand = models / name
        if cand.is_dir() and (list(cand.glob("*.onnx")) or list(cand.glob("*/*.onnx"))):
            return find_model_pack(cand)
    return None


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise StudioError(f"cannot load ONNX model: {exc}", path) from None


def classify_onnx(path: Path) -> tuple[str, Any]:
    """('recognition' | 'detection' | 'other', session), by input/output signature like
    insightface's model_zoo: a square input ≥ 112 divisible by 16 with one output is ArcFace;
    a detector has 6 or 9 outputs (SCRFD with or without keypoints)."""
    sess = _session(path)
    inp = sess.get_inputs()[0]
    outs = sess.get_outputs()
    shape = inp.shape
    h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if len(outs) >= 5:
        return "detection", sess
    if (len(outs) == 1 and isinstance(h, int) and h == w and h >= 112 and h % 16 == 0):
        return "recognition", sess
    return "other", sess


class ScrfdDetector:
    """SCRFD face detector (InsightFace det_10g / scrfd_*): anchor-free distances per stride."""

    def __init__(self, session: Any, input_size: int = 640) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        n = len(session.get_outputs())
        self.use_kps = n in (9, 15)
        self.fmc = 3 if n in (6, 9) else 5
        self.strides = [8, 16, 32] if self.fmc == 3 else [8, 16, 32, 64, 128]
        self.num_anchors = 2 if self.fmc == 3 else 1
        shp = session.get_inputs()[0].shape
        self.input_size = shp[2] if isinstance(shp[2], int) else input_size

    def detect(self, rgb: np.ndarray, threshold: float = 0.5) -> list[Detection]:
        import cv2

        size = self.input_size
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        nh, nw = int(round(h * scale)), int(round(w * scale))
        canvas = np.zeros((size, size, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh))
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
        outs = self.session.run(None, {self.input_name: blob})
        boxes, scores, kpss = [], [], []
        for i, stride in enumerate(self.strides):
            sc = np.asarray(outs[i]).reshape(-1)
            bb = np.asarray(outs[i + self.fmc]).reshape(-1, 4) * stride
            fh, fw = size // stride, size // stride
            yy, xx = np.mgrid[:fh, :fw]
            centers = (np.stack([xx, yy], -1).reshape(-1, 2) * stride).astype(np.float32)
            centers = np.repeat(centers, self.num_anchors, axis=0)
            n = min(len(sc), len(centers), len(bb))
            keep = np.where(sc[:n] >= threshold)[0]
            c = centers[keep]
            d = bb[keep]
            boxes.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1],
                                   c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], -1))
            scores.append(sc[keep])
            if self.use_kps:
                kp = np.asarray(outs[i + 2 * self.fmc]).reshape(-1, 10)[keep] * stride
                kpss.append((kp.reshape(-1, 5, 2) + c[:, None, :]))
        if not boxes:
            return []
        b = np.concatenate(boxes) / scale
        s = np.concatenate(scores)
        k = np.concatenate(kpss) / scale if self.use_kps else None
        order = _nms(b, s, 0.4)
        return [Detection(tuple(float(v) for v in b[i]), float(s[i]),
                          None if k is None else k[i].astype(np.float32)) for i in order]


def _nms(b: np.ndarray, s: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-s))
    keep: list[int] = []
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            xx0, yy0 = max(b[i, 0], b[j, 0]), max(b[i, 1], b[j, 1])
            xx1, yy1 = min(b[i, 2], b[j, 2]), min(b[i, 3], b[j, 3])
            inter = max(0.0, xx1 - xx0) * max(0.0, yy1 - yy0)
            if inter / max(area[i] + area[j] - inter, 1e-9) <= thr:
                rest.append(j)
        order = rest
    return keep


def _quick_hash(path: Path) -> str:
    """Size + SHA-256 of the first and last MiB: identifies a model file without reading all
    of it (copying a pack keeps the key; replacing the weights changes it)."""
    import hashlib

    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


class ArcFaceEngine(FaceEngine):
    name = "arcface"
    license = ("InsightFace pretrained packs (buffalo_l, antelopev2): non-commercial research "
               "use only")
    threshold = 0.35

    def __init__(self, pack: Path | str | None = None) -> None:
        folder = find_model_pack(pack)
        if folder is None:
            raise StudioError(f"no InsightFace model pack found in {insightface_home() / 'models'}"
                              " (copy buffalo_l or antelopev2 there, or point to a pack folder)")
        self.folder = folder
        self.recognizer: Any = None
        self.detector: ScrfdDetector | None = None
        for path in sorted(folder.glob("*.onnx")):
            kind, sess = classify_onnx(path)
            if kind == "recognition" and self.recognizer is None:
                self.recognizer, self.rec_path = sess, path
            elif kind == "detection" and self.detector is None:
                self.detector = ScrfdDetector(sess)
        if self.recognizer is None:
            raise StudioError("the model pack has no ArcFace recognition model "
                              "(a 1x3x112x112 -> embedding ONNX)", folder)
        self.input_name = self.recognizer.get_inputs()[0].name
        self.input_size = int(self.recognizer.get_inputs()[0].shape[2])
        self.model = f"{folder.name}/{self.rec_path.stem}"
        self.version = f"onnx-{_quick_hash(self.rec_path)}-sim1"
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Detection]:
        if self.detector is None:
            return super().detect(rgb, upsample)
        return self.detector.detect(dl.as_rgb_u8(rgb))

    def align(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        import cv2

        src = five_from_68(lm68)
        dst = ARCFACE_DST * (self.input_size / 112.0)
        m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if m is None:
            raise StudioError("cannot align the face for ArcFace")
        return cv2.warpAffine(dl.as_rgb_u8(rgb), m, (self.input_size, self.input_size),
                              borderValue=0.0)

    def embed(self, rgb: np.ndarray, lm68: np.ndarray) -> np.ndarray:
        return self.embed_chip(self.align(rgb, lm68))

    def embed_chip(self, chip: np.ndarray) -> np.ndarray:
        blob = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        with self._lock:
            out = self.recognizer.run(None, {self.input_name: blob})[0]
        v = np.asarray(out, np.float32).reshape(-1)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def raw_score(self, a: np.ndarray, b: np.ndarray) -> float:
        a = np.asarray(a, np.float32)
        b = np.asarray(b, np.float32)
        return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))

    def to_similarity(self, raw: float) -> float:
        return float(np.clip(raw, 0.0, 1.0))


_engines: dict[str, FaceEngine] = {}
_engines_lock = threading.Lock()


def get_engine(name: str | None = None, pack: Path | str | None = None) -> FaceEngine:
    """An engine by name ('dlib' | 'arcface'); None picks ArcFace when a pack is installed in
    the InsightFace home folder (preferred), else dlib. Engines are cached."""
    if name is None:
        name = "arcface" if (pack is not None or find_model_pack() is not None) else "dlib"
    key = f"{name}:{pack}"
    with _engines_lock:
        if key not in _engines:
            if name == "dlib":
                _engines[key] = DlibEngine()
            elif name == "arcface":
                _engines[key] = ArcFaceEngine(pack)
            else:
                raise StudioError(f"unknown face engine {name!r} (use 'dlib' or 'arcface')")
        return _engines[key]
