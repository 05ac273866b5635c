"""Bible and prompt checks: reference-image quality badges and motion-prompt lint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.model import ANGLE_LABELS, Angle

MIN_SHORT_SIDE = 512
FACE_HEIGHT_MIN = 0.35  # estimated face height / image height ("about 40%" for a portrait)
LIGHT_IMBALANCE_MAX = 0.25  # |left - right| / mean luminance of the two face halves
SHARPNESS_MIN = 60.0  # variance of the Laplacian on the face normalised to 64 px inter-ocular
BACKGROUND_BUSY_MAX = 14.0  # mean gradient magnitude of the background (grey 0..255, 256 px)


@dataclass
class QualityReport:
    level: str  # "good" | "warning" | "bad"
    reasons: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.level == "good"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _face_halves_luminance(grey: np.ndarray, lm: np.ndarray) -> tuple[float, float]:
    """Mean luminance of the image-left and image-right halves of the face (split on the nose
    line; cheeks and jaw, not hair)."""
    import cv2

    h, w = grey.shape
    left = np.concatenate([lm[0:9], lm[27:31][::-1]]).astype(np.int32)
    right = np.concatenate([lm[8:17], lm[27:31]]).astype(np.int32)
    out = []
    for poly in (left, right):
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [cv2.convexHull(poly)], 1)
        vals = grey[mask.astype(bool)]
        out.append(float(vals.mean()) if vals.size else 0.0)
    return out[0], out[1]


def _sharpness(rgb: np.ndarray, lm: np.ndarray) -> float:
    import cv2

    from studio.identity.metrics import interocular

    s = 64.0 / interocular(lm)
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    crop = rgb[max(0, int(y0)):int(y1) + 1, max(0, int(x0)):int(x1) + 1]
    if crop.size == 0:
        return 0.0
    crop = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1
                      else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _background_busyness(rgb: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Mean gradient magnitude outside an enlarged face/hair/shoulders box (256 px image)."""
    import cv2

    h, w = rgb.shape[:2]
    s = 256.0 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    mag = np.sqrt(gx * gx + gy * gy) / 4
    x0, y0, x1, y1 = (v * s for v in box)
    bw, bh = x1 - x0, y1 - y0
    mask = np.ones_like(mag, bool)
    # Person region: head (face box widened for hair) down to the chin, then the shoulders.
    chin = int(y1 + 0.2 * bh)
    mask[max(0, int(y0 - 0.8 * bh)):chin, max(0, int(x0 - 0.45 * bw)):int(x1 + 0.45 * bw) + 1] = \
        False
    mask[max(0, chin):, max(0, int(x0 - 1.0 * bw)):int(x1 + 1.0 * bw) + 1] = False
    return float(mag[mask].mean()) if mask.any() else 0.0


def reference_quality(image_path: Path | str, angle: Angle | str = Angle.FRONT,
                      engine: Any = None) -> QualityReport:
    """Badge for a bible image: size, exactly one face, face size, even lighting, sharpness,
    plain background, angle tag vs measured pose. Raises AssetError if unreadable."""
    import cv2

    from studio.identity import metrics as M
    from studio.identity.engines import get_engine
    from studio.media.images import load_rgb

    engine = engine or get_engine("dlib")
    rgb = load_rgb(Path(image_path))
    h, w = rgb.shape[:2]
    reasons: list[str] = []
    meas: dict[str, Any] = {"width": w, "height": h}
    if min(h, w) < MIN_SHORT_SIDE:
        reasons.append(f"image is small: shortest side {min(h, w)} px (use at least "
                       f"{MIN_SHORT_SIDE} px)")
    # Work on at most 1024 px (detection speed); measurements are scale-free.
    s = min(1.0, 1024.0 / max(h, w))
    work = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) \
        if s < 1 else rgb
    faces = engine.detect_thorough(work)
    meas["faces"] = len(faces)
    if not faces:
        reasons.append("no face found")
        return QualityReport("bad", reasons, meas)
    if len(faces) > 1:
        reasons.append(f"{len(faces)} faces found (use a picture with exactly one face)")
    best = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    lm = engine.landmarks(work, best.box)
    face_h = float(lm[:, 1].max() - lm[:, 1].min()) * 1.35  # brows→chin plus forehead
    frac = face_h / work.shape[0]
    meas["face_height_fraction"] = round(frac, 3)
    if frac < FACE_HEIGHT_MIN:
        reasons.append(f"face is small in the frame ({frac:.0%} of the height; about 40% "
                       "or more works best for a portrait)")
    grey = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lum_l, lum_r = _face_halves_luminance(grey, lm)
    imb = abs(lum_l - lum_r) / max((lum_l + lum_r) / 2, 1.0)
    meas["lighting_imbalance"] = round(imb, 3)
    if imb > LIGHT_IMBALANCE_MAX:
        darker = "left" if lum_l < lum_r else "right"
        reasons.append(f"uneven lighting: the image-{darker} half of the face is {imb:.0%} "
                       "darker (use soft, even light)")
    sharp = _sharpness(work, lm)
    meas["sharpness"] = round(sharp, 1)
    if sharp < SHARPNESS_MIN:
        reasons.append("face is blurred (out of focus or motion blur)")
    busy = _background_busyness(work, best.box)
    meas["background_busyness"] = round(busy, 2)
    if busy > BACKGROUND_BUSY_MAX:
        reasons.append("busy background (a plain or soft background works best)")
    yaw, pitch = M.pose(lm)
    meas["pose"] = [round(yaw, 1), round(pitch, 1)]
    measured = M.angle_for_pose(yaw, pitch)
    meas["measured_angle"] = measured
    tag = Angle(angle)
    if tag is not Angle.OTHER and measured != tag.value and not _angles_close(tag.value, yaw,
                                                                               pitch):
        reasons.append(f"tagged {ANGLE_LABELS[tag]!r} but the face looks "
                       f"{ANGLE_LABELS[Angle(measured)].lower()} (yaw {yaw:+.0f}°, "
                       f"pitch {pitch:+.0f}°)")
    bad = meas["faces"] != 1
    return QualityReport("bad" if bad else ("warning" if reasons else "good"), reasons, meas)


def _angles_close(tag: str, yaw: float, pitch: float) -> bool:
    """Tolerate measurements near a category boundary (the pose estimate is ±10°)."""
    from studio.identity.metrics import ANGLE_POSES

    ty, tp = ANGLE_POSES.get(tag, (0.0, 0.0))
    return math.hypot(ty - yaw, tp - pitch) < 15.0


# Prompt lint lives in its own numpy-free module (the inspector runs it at start-up).
from studio.identity.prompt_lint import (APPEARANCE_PATTERNS, LIGHTING_PATTERNS,  # noqa: E402,F401
                                         LintWarning, lint_prompt)
