"""Geometry and colour measurements on 68-point faces, each mapped to a score in [0, 1].

1 = matches the reference; a frame is flagged when a score falls below its threshold (see
:data:`THRESHOLDS`). Landmark indices follow the iBUG 300-W 68-point scheme (0-16 jaw, 17-26
brows, 27-35 nose, 36-41 image-left eye, 42-47 image-right eye, 48-67 mouth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Score thresholds (below = flagged). Chosen on the test photographs (see docs/IDENTITY.md):
# small rotations / scale / light / JPEG changes of one photo stay well above them.
THRESHOLDS = {"proportions": 0.5, "eye_shape": 0.5, "skin_tone": 0.5, "stability": 0.5}

# Scales: the deviation at which a score reaches 0 (so threshold 0.5 = half of it).
PROPORTION_SCALE = 0.24  # mean relative change of the proportion ratios
EYE_SCALE = 0.7  # weighted |log| change of eye width and opening (see eye_shape_score)
SKIN_SCALE = 16.0  # CIEDE2000 units (threshold 0.5 -> dE 8: a clearly visible shift)
# landmark second difference, in inter-ocular distances per frame: 0.5 ↦ 0.08 iod. The
# unchanged faces of the calibration (docs/IDENTITY.md) reach 0.063 at their 0.1 % quantile.
JITTER_SCALE = 0.16

FAR_EYE_YAW = 15.0  # degrees of yaw from which the far eye is not judged
BLINK_RATIO = 0.8  # both eyes' opening below this fraction of the reference's = a blink
# (neither landmark model closes an eye fully on a painted lid: dlib measures 0.5-0.6 of the
# open eye, the Face Mesh 0.73; a squint counted as a blink loses nothing: both eyes closing
# together costs nothing either way)


def eye_centers(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(0), lm[42:48].mean(0)


def interocular(lm: np.ndarray) -> float:
    a, b = eye_centers(lm)
    return float(max(np.linalg.norm(b - a), 1e-6))


def pose(lm: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees from 2-D landmarks. Yaw > 0: the nose points to the image right;
    pitch > 0: looking down. Rough (±10°) but monotonic, enough to pick a reference angle."""
    left, right = lm[0], lm[16]
    mid = (left + right) / 2
    half = max(float(np.linalg.norm(right - left)) / 2, 1e-6)
    axis = (right - left) / (2 * half)
    r = float(np.dot(lm[30] - mid, axis)) / half
    yaw = math.degrees(math.asin(float(np.clip(r, -1, 1))))
    eyes = (lm[36:48].mean(0))
    mouth = (lm[48] + lm[54]) / 2
    span = max(float(np.linalg.norm(mouth - eyes)), 1e-6)
    ratio = float(np.dot(lm[30] - eyes, (mouth - eyes) / span)) / span
    # ~0.62 for a frontal face in dlib's 68 points; looking down pushes the nose tip towards the
    # mouth line in projection, looking up towards the eyes.
    pitch = float(np.clip((ratio - 0.62) * 200.0, -90, 90))
    return yaw, pitch


ANGLE_POSES: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0), "three_quarter_left": (-35.0, 0.0), "three_quarter_right": (35.0, 0.0),
    "profile_left": (-75.0, 0.0), "profile_right": (75.0, 0.0), "up": (0.0, -25.0),
    "down": (0.0, 25.0),
}


def angle_for_pose(yaw: float, pitch: float) -> str:
    """The bible angle tag a measured pose corresponds to."""
    if abs(yaw) >= 55:
        return "profile_right" if yaw > 0 else "profile_left"
    if abs(yaw) >= 20:
        return "three_quarter_right" if yaw > 0 else "three_quarter_left"
    if pitch <= -18:
        return "up"
    if pitch >= 18:
        return "down"
    return "front"


def _roll_free(lm: np.ndarray) -> np.ndarray:
    """Landmarks rotated so the eye line is horizontal, scaled to unit inter-ocular distance."""
    a, b = eye_centers(lm)
    d = b - a
    ang = math.atan2(float(d[1]), float(d[0]))
    c, s = math.cos(-ang), math.sin(-ang)
    rot = np.array([[c, -s], [s, c]], np.float32)
    return ((lm - (a + b) / 2) @ rot.T) / interocular(lm)


def proportions(lm: np.ndarray) -> np.ndarray:
    """Ratios normalised by inter-ocular distance: inner eye gap, nose width, mouth width, jaw
    width, nose length, eyes-to-mouth, face height (nose bridge to chin), brow height."""
    p = _roll_free(lm)
    w = lambda i, j: abs(float(p[j, 0] - p[i, 0]))  # noqa: E731
    h = lambda i, j: abs(float(p[j, 1] - p[i, 1]))  # noqa: E731
    eyes_y = float(p[36:48, 1].mean())
    mouth_y = float((p[48, 1] + p[54, 1]) / 2)
    return np.array([w(39, 42), w(31, 35), w(48, 54), w(0, 16), h(27, 33),
                     abs(mouth_y - eyes_y), h(27, 8), abs(eyes_y - float(p[17:27, 1].mean()))],
                    np.float32)


def proportions_score(lm: np.ndarray, ref: np.ndarray) -> float:
    a, b = proportions(lm), proportions(ref)
    dev = float(np.mean(np.abs(a - b) / np.maximum(b, 1e-3)))
    return float(np.clip(1 - dev / PROPORTION_SCALE, 0, 1))


def eye_features(lm: np.ndarray) -> np.ndarray:
    """Per eye (image-left, image-right): (width / inter-ocular, opening = eye aspect ratio)."""
    out = []
    for s in (36, 42):
        e = lm[s:s + 6]
        width = float(np.linalg.norm(e[3] - e[0]))
        opening = (float(np.linalg.norm(e[1] - e[5])) + float(np.linalg.norm(e[2] - e[4]))) / (
            2 * max(width, 1e-6))
        out.append((width / interocular(lm), opening))
    return np.array(out, np.float32)


@dataclass
class EyeResult:
    score: float
    blink: bool
    per_eye: list[float] = field(default_factory=list)


def eye_shape_score(lm: np.ndarray, ref: np.ndarray, feats: np.ndarray | None = None,
                    ) -> EyeResult:
    """Width and opening per eye against the reference. When both eyes close together (a blink)
    only the widths are compared: closing the eyes is motion, not drift. ``feats`` replaces
    ``eye_features(lm)`` (the video pipeline passes a 3-frame median: landmark noise on small
    eyes is ±5 %)."""
    f = eye_features(lm) if feats is None else feats
    r = eye_features(ref)
    open_ratio = np.maximum(f[:, 1] / np.maximum(r[:, 1], 1e-3), 0.05)
    both = math.exp(float(np.mean(np.log(open_ratio))))  # shared opening change
    asym = abs(math.log(open_ratio[0] / open_ratio[1]))
    blink = bool(both < BLINK_RATIO and asym < 0.5)
    scores = []
    for i in range(2):
        dev = 2.5 * abs(math.log(max(f[i, 0], 1e-3) / max(r[i, 0], 1e-3)))
        if not blink:
            # One eye changing alone is drift. Both closing together (blink on its way, squint,
            # smile) is expression and costs nothing; both widening (eyes growing) costs half.
            dev += abs(math.log(open_ratio[i] / both)) + 0.5 * max(0.0, math.log(both))
        scores.append(float(np.clip(1 - dev / EYE_SCALE, 0, 1)))
    # A head turned ≥ 15° foreshortens the far eye to a sliver whose fitted width wobbles by
    # ±15 % (the three-quarter face of the calibration set): only the near eye is judged.
    yaw = pose(lm)[0]
    if abs(yaw) >= FAR_EYE_YAW:
        near = 0 if yaw > 0 else 1  # nose to the image right: the image-right eye is far
        return EyeResult(scores[near], blink, scores)
    return EyeResult(min(scores), blink, scores)


# --- skin tone -----------------------------------------------------------------------------

def _skin_points(lm: np.ndarray) -> list[np.ndarray]:
    """Centres of cheek and nose-bridge patches (skin in nearly every face, rarely hair)."""
    return [(lm[1] + lm[3] + lm[31] + lm[41]) / 4, (lm[15] + lm[13] + lm[35] + lm[46]) / 4,
            (lm[28] + lm[29]) / 2]


def skin_rgb(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """Median RGB (0..1) of the skin patches, or None when they fall outside the frame."""
    r = max(2, int(round(0.12 * interocular(lm))))
    h, w = rgb.shape[:2]
    samples = []
    for c in _skin_points(lm):
        x, y = int(round(c[0])), int(round(c[1]))
        if r <= x < w - r and r <= y < h - r:
            samples.append(rgb[y - r:y + r, x - r:x + r].reshape(-1, 3))
    if not samples:
        return None
    return np.median(np.concatenate(samples), axis=0).astype(np.float32) / 255.0


def skin_delta_e(frame_skin: np.ndarray, ref_skin: np.ndarray) -> float:
    """CIEDE2000 after a lighting-robust normalisation: both colours are scaled to the same
    luminance (a brighter or darker light changes all channels by one factor), so only
    chromaticity and its hue are compared."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    def norm(c: np.ndarray) -> np.ndarray:
        lum = float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])
        return np.clip(c * (0.45 / max(lum, 1e-4)), 0, 1)

    a = rgb2lab(norm(frame_skin)[None, None, :])
    b = rgb2lab(norm(ref_skin)[None, None, :])
    return float(deltaE_ciede2000(a, b)[0, 0])


def skin_score(delta_e: float) -> float:
    return float(np.clip(1 - delta_e / SKIN_SCALE, 0, 1))


def jitter(prev: np.ndarray | None, cur: np.ndarray, nxt: np.ndarray | None) -> float | None:
    """Non-rigid landmark flicker in inter-ocular units: the neighbours are first aligned onto
    the current frame by a similarity transform (so head motion, even accelerating, is not
    jitter), then the second difference of the shapes is measured."""
    if prev is None or nxt is None:
        return None
    p = apply_affine(similarity_transform(prev, cur), prev)
    n = apply_affine(similarity_transform(nxt, cur), nxt)
    d = cur - (p + n) / 2
    return float(np.mean(np.linalg.norm(d, axis=1)) / interocular(cur))


def stability_score(j: float | None) -> float | None:
    return None if j is None else float(np.clip(1 - j / JITTER_SCALE, 0, 1))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (Umeyama) mapping src points onto dst points."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ sign) / max(var, 1e-12))
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]
