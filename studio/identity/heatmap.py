"""Drift heatmaps: where on the face a frame deviates from its matched reference.

Both faces are brought into one canonical 96x96 space (the reference's face box), the frame by
a similarity transform fitted on the stable points (eye corners, nose): two maps are built
there and the result is warped back onto the frame at 1/8 resolution:

* landmark displacement: each of the 68 points, after alignment, splats a blurred disc whose
  height grows with its distance from the reference's point beyond landmark noise
  (0.03 inter-ocular = 0, 0.15 = full);
* local appearance: 1 - local correlation of contrast-normalised grey crops (lighting-robust),
  over the face hull.

A warped eye moves the eye points and changes the eye texture, so the eyes light up, not the
mouth. Cost ≈ 1 ms per frame; a reference keeps only its 96x96 crop and landmarks.
"""

from __future__ import annotations

import numpy as np

from studio.identity.metrics import apply_affine, interocular, similarity_transform

CANON = 96
CELL = 8  # heatmap cell size in frame pixels
STABLE = [27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45]
DISP_FLOOR = 0.03  # landmark noise of dlib's predictor (inter-ocular units): ignored
DISP_FULL = 0.15  # displacement (inter-ocular units) that maps to 255


def heatmap_shape(height: int, width: int) -> tuple[int, int]:
    return (height + CELL - 1) // CELL, (width + CELL - 1) // CELL


def canonical_transform(ref_lm: np.ndarray) -> np.ndarray:
    """Scale+translate taking the reference's landmark box into the canonical square."""
    lo, hi = ref_lm.min(0), ref_lm.max(0)
    size = float(max(hi - lo)) * 1.1
    s = (CANON - 4) / max(size, 1e-6)
    c = (lo + hi) / 2
    return np.array([[s, 0, CANON / 2 - s * c[0]], [0, s, CANON / 2 - s * c[1]]], np.float32)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ∘ b for 2x3 affines (apply b first)."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2].astype(np.float32)


def normalised_grey(crop_rgb: np.ndarray) -> np.ndarray:
    """Grey with local mean removed and local contrast equalised: robust to light level."""
    import cv2

    g = crop_rgb.astype(np.float32).mean(axis=2) if crop_rgb.ndim == 3 else crop_rgb.astype(
        np.float32)
    mu = cv2.GaussianBlur(g, (0, 0), 4)
    d = g - mu
    sd = np.sqrt(cv2.GaussianBlur(d * d, (0, 0), 4)) + 4.0
    return (d / sd).astype(np.float32)


def canonical_crop(rgb: np.ndarray, frame_to_canon: np.ndarray) -> np.ndarray:
    import cv2

    crop = cv2.warpAffine(rgb, frame_to_canon, (CANON, CANON), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return normalised_grey(crop)


def face_mask(canon_lm: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros((CANON, CANON), np.uint8)
    hull = cv2.convexHull(np.round(canon_lm).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5)


class RefCanon:
    """The reference's side of the comparison, computed once per reference."""

    def __init__(self, ref_rgb: np.ndarray, ref_lm: np.ndarray) -> None:
        self.lm = ref_lm.astype(np.float32)
        self.to_canon = canonical_transform(self.lm)
        self.canon_lm = apply_affine(self.to_canon, self.lm)
        self.crop = canonical_crop(ref_rgb, self.to_canon)
        self.mask = face_mask(self.canon_lm)
        self.iod = interocular(self.lm)
        self.sigma = max(1.5, 0.12 * self.iod * float(self.to_canon[0, 0]))

    def frame_to_canon(self, lm: np.ndarray) -> np.ndarray:
        align = similarity_transform(lm[STABLE], self.lm[STABLE])
        return _compose(self.to_canon, align)

    def canonical_map(self, rgb: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(deviation map in canonical space in [0, 1], frame->canonical affine)."""
        import cv2

        m = self.frame_to_canon(lm)
        aligned = apply_affine(m, lm.astype(np.float32))
        disp = np.linalg.norm(aligned - self.canon_lm, axis=1) / (
            self.iod * float(self.to_canon[0, 0]))
        amp = np.clip((disp - DISP_FLOOR) / (DISP_FULL - DISP_FLOOR), 0, 1).astype(np.float32)
        # Splat: a disc per landmark at its amplitude (largest drawn last, so it wins), then a
        # Gaussian blur — close to a max of Gaussians at a fraction of the cost and memory.
        dmap = np.zeros((CANON, CANON), np.float32)
        if amp.any():
            r = max(1, int(round(self.sigma)))
            for i in np.argsort(amp):
                if amp[i] > 0:
                    x, y = self.canon_lm[i]
                    cv2.circle(dmap, (int(round(x)), int(round(y))), r, float(amp[i]), -1)
            dmap = cv2.GaussianBlur(dmap, (0, 0), self.sigma * 0.6)
        crop = canonical_crop(rgb, m)
        g = lambda x: cv2.GaussianBlur(x, (0, 0), 2.0)  # noqa: E731
        corr = g(crop * self.crop) / np.sqrt(g(crop * crop) * g(self.crop * self.crop) + 1e-3)
        amap = np.clip((1 - corr) / 2 - 0.1, 0, None) / 0.5
        out = np.clip(np.maximum(dmap, np.clip(amap, 0, 1) * self.mask), 0, 1)
        return out.astype(np.float32), m

    def frame_heatmap(self, rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """uint8 (ceil(H/8), ceil(W/8)) map in frame coordinates, 0 = no deviation."""
        import cv2

        cmap, m = self.canonical_map(rgb, lm)
        h, w = heatmap_shape(*rgb.shape[:2])
        # Low-res pixel (x, y) has its centre at frame (8x + 3.5, 8y + 3.5); map it to canonical.
        lin = m[:, :2] * CELL
        trans = m[:, 2] + m[:, :2] @ np.array([(CELL - 1) / 2] * 2, np.float32)
        low_to_canon = np.hstack([lin, trans[:, None]]).astype(np.float32)
        out = cv2.warpAffine(cmap, low_to_canon, (w, h),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """The heatmap blended over the frame in the one heatmap colour map
    (:func:`studio.identity.colours.heat_lut`; 0 leaves the frame untouched), for PNG export and
    previews. ``alpha`` scales the colour map's own opacity."""
    import cv2

    from studio.identity.colours import blend_heatmap

    h, w = rgb.shape[:2]
    big = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    return blend_heatmap(rgb, big, alpha)
