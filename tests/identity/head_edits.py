"""Synthetic head edits on real photographs, for the hair/accessory drift tests and end-to-end
tests: hair recoloured, hair cut shorter or grown longer, an earring, a necklace.

The hair mask is found independently of :mod:`studio.identity.hair` (GrabCut seeded from the
landmarks), so the tests do not grade the metric with its own segmentation.
"""

from __future__ import annotations

import numpy as np

from studio.identity import metrics as M


def _frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Eye midpoint, unit vectors along / across the eye line (down), inter-ocular distance."""
    a, b = M.eye_centers(lm)
    iod = float(np.linalg.norm(b - a))
    ex = (b - a) / iod
    ey = np.array([-ex[1], ex[0]], np.float32)
    return (a + b) / 2, ex, ey, iod


def _face_mask(shape: tuple[int, ...], lm: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """The jaw line closed over the brows (raised by ``grow`` inter-ocular distances)."""
    import cv2

    c, _, ey, iod = _frame(lm)
    brows = lm[17:27][::-1] - ey * (0.15 + grow) * iod
    poly = np.vstack([lm[0:17], brows]).astype(np.float32)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask


def hair_mask(rgb: np.ndarray, lm: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """bool HxW: the hair of the portrait, found on a crop at 24 px per inter-ocular distance:
    the pixels of the head (an ellipse around the face, the face itself excluded) whose colour
    is near that of the top of the head (Lab distance within the spread seen there), connected
    to it."""
    import cv2

    c, ex, ey, iod = _frame(lm)
    h, w = rgb.shape[:2]
    s = min(1.0, 24.0 / iod)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    yy, xx = np.mgrid[:sh, :sw].astype(np.float32) / s
    u = ((xx - c[0]) * ex[0] + (yy - c[1]) * ex[1]) / iod  # along the eye line, iod units
    v = ((xx - c[0]) * ey[0] + (yy - c[1]) * ey[1]) / iod  # down the face
    lab = cv2.cvtColor(small.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    head = ((u / 2.2) ** 2 + ((v + 0.2) / 2.7) ** 2) <= 1.0
    face = cv2.resize(_face_mask(rgb.shape, lm, 0.1), (sw, sh),
                      interpolation=cv2.INTER_NEAREST).astype(bool)
    seed = (np.abs(u) < 0.5) & (v > -1.95) & (v < -1.55) & ~face
    ref = np.median(lab[seed], axis=0)
    spread = np.median(np.linalg.norm(lab[seed] - ref, axis=1))
    d = np.linalg.norm((lab - ref) * np.float32([0.6, 1, 1]), axis=2)  # light varies in hair
    hair = head & ~face & (d < tolerance * max(14.0, 2.5 * spread))
    # Background: the ring just outside the head ellipse above the mouth, in a few colours; a
    # pixel nearer to one of them than to the hair colour is background.
    e = (u / 2.2) ** 2 + ((v + 0.2) / 2.7) ** 2
    ring = (e > 1.0) & (e < 1.35) & (v < -0.6)
    if ring.sum() >= 16:
        pts = (lab[ring] * np.float32([0.6, 1, 1])).astype(np.float32)
        k = min(4, len(pts))
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
        _, _, centres = cv2.kmeans(pts, k, None, crit, 2, cv2.KMEANS_PP_CENTERS)
        for cen in centres:
            if np.linalg.norm(cen - ref * np.float32([0.6, 1, 1])) > 8.0:  # not hair itself
                db = np.linalg.norm(lab * np.float32([0.6, 1, 1]) - cen, axis=2)
                hair &= ~(db < d)
    hair = hair.astype(np.uint8)
    hair = cv2.morphologyEx(hair, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    hair = cv2.morphologyEx(hair, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    n, comp = cv2.connectedComponents(hair)
    if n > 1:  # the parts holding the top of the head (stray background bits go)
        ids = np.unique(comp[seed & (hair > 0)])
        hair = np.isin(comp, ids[ids > 0]).astype(np.uint8)
    hair &= ~face
    big = cv2.resize(hair.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return big > 0.5


def _lab_edit(rgb: np.ndarray, mask: np.ndarray, target_rgb: tuple[int, int, int],
              keep_texture: float = 1.0) -> np.ndarray:
    """Give the masked pixels the target colour's hue and mean lightness, keeping their own
    light/dark texture (strands, highlights)."""
    import cv2

    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    tgt = cv2.cvtColor(np.float32([[target_rgb]]) / 255, cv2.COLOR_RGB2Lab)[0, 0]
    sel = lab[mask]
    out = sel.copy()
    out[:, 0] = tgt[0] + keep_texture * (sel[:, 0] - sel[:, 0].mean())
    out[:, 1:] = tgt[1:]
    lab[mask] = out
    res = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[:, :, None]
    blend = res * soft + rgb.astype(np.float32) / 255 * (1 - soft)
    return np.clip(blend * 255 + 0.5, 0, 255).astype(np.uint8)


HAIR_COLOURS = {"blond": (222, 190, 120), "red": (150, 40, 20), "black": (22, 20, 22),
                "brown": (95, 60, 35)}


def recolour_hair(rgb: np.ndarray, lm: np.ndarray, colour: str | tuple[int, int, int] = "blond",
                  mask: np.ndarray | None = None) -> np.ndarray:
    """The photo with its hair pixels (``hair_mask``) dyed ``colour`` (a name in
    ``HAIR_COLOURS`` or RGB); face and background untouched."""
    m = hair_mask(rgb, lm) if mask is None else mask
    target = HAIR_COLOURS[colour] if isinstance(colour, str) else colour
    return _lab_edit(rgb, m, target)


def _inpaint(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import cv2

    m = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    return cv2.inpaint(np.ascontiguousarray(rgb), m, 5, cv2.INPAINT_TELEA)


def cut_hair(rgb: np.ndarray, lm: np.ndarray, amount: float = 0.5,
             mask: np.ndarray | None = None) -> np.ndarray:
    """Hair cut shorter: the outer ``amount`` (share of the hair's reach from the eyes) of the
    hair replaced by its surroundings (inpainted)."""
    c, ex, ey, iod = _frame(lm)
    m = hair_mask(rgb, lm) if mask is None else mask
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(xx - c[0], yy - c[1])
    reach = float(r[m].max()) if m.any() else 0.0
    inner = float(r[m].min()) if m.any() else 0.0
    cut = m & (r > inner + (1 - amount) * (reach - inner))
    # Filled from the surroundings of the whole hair (background, skin), not from the hair
    # that stays: inpainting only the cut part would smear hair colour into it.
    filled = _inpaint(rgb, m)
    out = rgb.copy()
    out[cut] = filled[cut]
    return out


def extend_hair(rgb: np.ndarray, lm: np.ndarray, length: float = 1.0,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Hair grown longer: the hair's own pixels copied ``length`` inter-ocular distances further
    down beside the face (where there was no hair), so the new hair has its texture."""
    import cv2

    c, ex, ey, iod = _frame(lm)
    m = hair_mask(rgb, lm) if mask is None else mask
    h, w = rgb.shape[:2]
    off = ey * length * iod
    shift = np.float32([[1, 0, off[0]], [0, 1, off[1]]])
    moved = cv2.warpAffine(rgb, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
    mm = cv2.warpAffine(m.astype(np.uint8), shift, (w, h)) > 0
    face = _face_mask(rgb.shape, lm, 0.3).astype(bool)
    face = cv2.dilate(face.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    below_eyes = ((xx - c[0]) * ey[0] + (yy - c[1]) * ey[1]) > 0  # grows down, not over the brow
    new = mm & ~m & ~face & below_eyes
    out = rgb.copy()
    out[new] = moved[new]
    return out


def _ear_point(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where an earring hangs (below the ear lobe of the side facing the camera) and the
    outward direction."""
    c, ex, ey, iod = _frame(lm)
    nose = lm[30]
    # The side whose jaw line is farther from the nose faces the camera more.
    left = float(np.linalg.norm(lm[2] - nose)) >= float(np.linalg.norm(lm[14] - nose))
    base, out_dir = (lm[2], -ex) if left else (lm[14], ex)
    return base + out_dir * 0.12 * iod + ey * 0.25 * iod, out_dir


def add_earring(rgb: np.ndarray, lm: np.ndarray, colour: tuple[int, int, int] = (230, 190, 60),
                size: float = 0.13) -> np.ndarray:
    """A gold drop earring (a stud and a disc pendant of radius ``size`` inter-ocular
    distances, with a darker rim) hanging below the ear lobe on the side facing the camera."""
    import cv2

    _, _, ey, iod = _frame(lm)
    p, _ = _ear_point(lm)
    out = np.ascontiguousarray(rgb.copy())
    r = max(2, int(round(size * iod)))
    centre = p + ey * 1.4 * r
    pt = lambda q: (int(round(q[0])), int(round(q[1])))  # noqa: E731
    cv2.circle(out, pt(p), max(1, r // 3), colour, -1, cv2.LINE_AA)
    cv2.line(out, pt(p), pt(centre), colour, max(1, r // 4), cv2.LINE_AA)
    cv2.circle(out, pt(centre), r, colour, -1, cv2.LINE_AA)
    cv2.circle(out, pt(centre), r, (150, 110, 30), max(1, r // 4), cv2.LINE_AA)
    return out


def add_necklace(rgb: np.ndarray, lm: np.ndarray, colour: tuple[int, int, int] = (235, 235, 240),
                 drop: float = 0.9) -> np.ndarray:
    """A pearl necklace: beads along an arc ``drop`` inter-ocular distances below the chin."""
    import cv2

    c, ex, ey, iod = _frame(lm)
    out = np.ascontiguousarray(rgb.copy())
    chin = lm[8]
    r = max(2, int(round(0.07 * iod)))
    for t in np.linspace(-1, 1, 13):
        p = chin + ex * t * 0.9 * iod + ey * (drop - 0.45 * (1 - t * t)) * iod
        cv2.circle(out, (int(round(p[0])), int(round(p[1]))), r, colour, -1, cv2.LINE_AA)
        cv2.circle(out, (int(round(p[0])), int(round(p[1]))), r, (120, 120, 130), 1,
                   cv2.LINE_AA)
    return out


# --- camera moves of a still photo (known affine warps) ------------------------------------

def move_params(move: str, n: int, seed: int = 0) -> list[tuple[float, float, float, float, float]]:
    """Per frame (roll degrees, zoom, dx, dy, brightness gain) of a named camera move
    (:func:`studio.identity.samples.camera_params`) with this file's gentler roll (±8°) and light
    ramp (0.85 → 1.15)."""
    from studio.identity.samples import camera_params

    return camera_params(move, n, seed, roll=8.0, light=(0.85, 1.15))


MOVES = ("jitter", "push_in", "pull_out", "pan", "roll", "light")


def render(photos: list[np.ndarray] | np.ndarray, params: list[tuple[float, float, float, float,
           float]], size: tuple[int, int] = (832, 480), jpeg: int | None = 85,
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames of the photo (or one photo per frame) under the camera params, JPEG-compressed at
    ``jpeg`` quality, reflected borders; also the 2x3 photo->frame affines."""
    from studio.identity.samples import render_camera

    return render_camera(photos, params, size, reflect=True, jpeg=jpeg)


def track_landmarks(frames: list[np.ndarray], mats: list[np.ndarray], ref_box: tuple[float, ...],
                    ) -> list[np.ndarray]:
    """The 68 points of each frame, fitted by dlib's predictor in the reference's detection box
    carried into the frame by the known camera warp (as the analysis carries its box over)."""
    from studio.identity.landmarks import landmarks_in_box

    x0, y0, x1, y1 = ref_box
    out = []
    for f, m in zip(frames, mats):
        corners = M.apply_affine(m, np.float32([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
        cx, cy = corners.mean(0)
        s = float(np.hypot(*m[0, :2])) * (x1 - x0) / 2
        out.append(landmarks_in_box(f, (cx - s, cy - s, cx + s, cy + s)))
    return out
