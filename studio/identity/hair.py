"""Hair and accessory drift: the head around the face against the pose-matched reference.

Frame and reference are brought into one canonical space of the reference's face (origin between
the eyes, x along the eye line, 1 unit = the inter-ocular distance, ``P`` pixels per unit); the
frame via a least-squares similarity on the stable points (eye corners, nose), so camera shift,
zoom and roll cancel. The canonical square covers x ∈ [-2.5, 2.5], y ∈ [-2.75, 3.25] units in
cells of 1/4 unit. Per cell: the mean colour in CIE Lab after the frame is scaled to the
reference's skin luminance (a brighter or darker light is not drift).

* **Hair.** Which reference cells are hair is estimated once (:func:`head_reference`): inside a
  head ellipse, outside the face, not skin-coloured, near the colour of the top of the head and
  nearer to it than to the background just outside the head. A frame cell's change is its
  colour distance to the reference's cell, the smaller of the two one-cell-shift tolerant
  distances (frame cell → nearest of the reference's 3×3 cells and back), so landmark jitter of a
  few pixels costs nothing. The hair score is the lower of (a) shape: the share of the hair area
  that changed (reference hair cells that changed, plus cells that became hair-coloured where
  the reference had none) and (b) colour: the systematic Lab shift averaged over the hair cells
  (a tint that stays under the per-cell bound is still caught).
* **Detail** (ears, neck: where earrings and necklaces live): the strongest cell changes beside
  the jaw at the ears and below the chin, with the face hulls of both faces excluded (an open
  mouth moves the chin).

Turned more than ``POSE_GATE`` degrees from the reference, or with the region mostly outside
the frame, a score is ``None`` (not measurable), never low. Cost ≈ 0.5 ms per 832×480 frame: only
the head's bounding box is touched, shrunk by a whole factor to 1-2 pixels per canonical pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.identity import metrics as M
from studio.identity.heatmap import CELL, STABLE, heatmap_shape

P = 24  # canonical pixels per inter-ocular distance
CELL_PX = 6  # canonical pixels per cell (1/4 inter-ocular distance)
X0, X1, Y0, Y1 = -2.5, 2.5, -2.75, 3.25  # canonical extent, inter-ocular units
GW, GH = int((X1 - X0) * P) // CELL_PX, int((Y1 - Y0) * P) // CELL_PX  # 20 x 24 cells

POSE_GATE = 20.0  # degrees of yaw/pitch from the reference beyond which nothing is compared
L_WEIGHT = 0.6  # lightness counts less than chroma: shading on hair varies with the light
CHANGE_LO, CHANGE_HI = 9.0, 22.0  # cell colour distance: noise below LO, a full change at HI
HAIR_FRAC_SCALE = 0.4  # share of the hair area changed at which the shape score reaches 0
HAIR_SHIFT_SCALE = 16.0  # systematic hair colour shift (weighted Lab) at which colour reaches 0
DETAIL_LO, DETAIL_HI = 5.0, 21.0  # ear/neck: top-cell-pair distance mapped from score 1 to 0
MIN_HAIR_CELLS = 6.0  # fewer hair cells in the reference (bald, cropped): hair not measurable
MIN_VISIBLE = 0.7  # share of a region's weight that must be inside the frame

HAIR_THRESHOLD = 0.45
DETAIL_THRESHOLD = 0.5

_LW = np.float32([L_WEIGHT, 1.0, 1.0])


@dataclass
class HeadRef:
    """The reference side, computed once per reference."""

    lm: np.ndarray  # 68x2 reference landmarks
    to_canon: np.ndarray  # 2x3 reference pixels -> canonical pixels
    lab: np.ndarray  # (GH, GW, 3) weighted Lab per cell
    valid: np.ndarray  # (GH, GW) bool: cell inside the reference image
    hair: np.ndarray  # (GH, GW) float32 hair weight (0/1)
    band: np.ndarray  # (GH, GW) bool: where new hair counts (head, beside and below the face)
    detail: np.ndarray  # (GH, GW) bool: ear and neck cells
    hair_lab: np.ndarray  # (3,) weighted Lab of the hair
    hair_tol: float  # colour distance within which a cell is "hair-coloured"
    skin_lab: np.ndarray  # (3,) weighted Lab of the face's skin
    skin_lum: float  # reference skin luminance (0..1 sRGB, Rec. 709 weights)
    pose: tuple[float, float]


@dataclass
class HeadResult:
    hair: float | None  # [0, 1], 1 = hair region as in the reference; None = not measurable
    detail: float | None  # [0, 1], ears + neck; None = not measurable
    heat: np.ndarray | None  # uint8 (ceil(H/8), ceil(W/8)) where hair/detail changed


def _canon_transform(lm: np.ndarray) -> np.ndarray:
    """Reference pixels -> canonical pixels: eye midpoint to (−X0, −Y0)·P, eye line horizontal."""
    a, b = M.eye_centers(lm)
    d = b - a
    iod = float(np.linalg.norm(d))
    ang = float(np.arctan2(d[1], d[0]))
    s = P / max(iod, 1e-6)
    co, si = np.cos(-ang) * s, np.sin(-ang) * s
    r = np.array([[co, -si], [si, co]], np.float64)
    t = -r @ ((a + b) / 2) + np.array([-X0 * P, -Y0 * P])
    return np.hstack([r, t[:, None]]).astype(np.float32)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ∘ b for 2x3 affines (b first)."""
    return (np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]]))[:2].astype(np.float32)


def _invert(m: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(m.astype(np.float64)).astype(np.float32)


def _cell_centres() -> np.ndarray:
    """(GH, GW, 2) canonical pixel coordinates of cell centres."""
    xs = (np.arange(GW) + 0.5) * CELL_PX
    ys = (np.arange(GH) + 0.5) * CELL_PX
    return np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float32)


_CENTRES = _cell_centres()
_UNITS = np.stack([_CENTRES[..., 0] / P + X0, _CENTRES[..., 1] / P + Y0], axis=-1)


def _cells_rgb(rgb: np.ndarray, img_to_canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB (0..1) per canonical cell and which cells lie inside the image. Only the
    bounding box of the canonical square in the image is read, never the whole frame."""
    import cv2

    h, w = rgb.shape[:2]
    inv = _invert(img_to_canon)
    cw, ch = GW * CELL_PX, GH * CELL_PX
    corners = M.apply_affine(inv, np.float32([[0, 0], [cw, 0], [0, ch], [cw, ch]]))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    centres = M.apply_affine(inv, _CENTRES.reshape(-1, 2)).reshape(GH, GW, 2)
    m = float(CELL_PX) / 2 / float(np.hypot(*img_to_canon[0, :2]))  # half a cell, image px
    valid = ((centres[..., 0] >= -0.5 + m) & (centres[..., 0] <= w - 0.5 - m)
             & (centres[..., 1] >= -0.5 + m) & (centres[..., 1] <= h - 0.5 - m))
    if x1 - x0 < 2 or y1 - y0 < 2 or not valid.any():
        return np.zeros((GH, GW, 3), np.float32), np.zeros((GH, GW), bool)
    crop = rgb[y0:y1, x0:x1]
    # A large face: first shrink the crop by a whole factor (area average, OpenCV's fast
    # integer path) to 1-2 image pixels per canonical pixel, then warp only the output pixels.
    scale = float(np.hypot(*img_to_canon[0, :2]))  # canonical px per image px
    k = max(1, int(1.0 / (scale * 1.25)))
    if k > 1:
        cw_k, ch_k = (x1 - x0) // k, (y1 - y0) // k
        crop = cv2.resize(crop[:ch_k * k, :cw_k * k], (cw_k, ch_k), interpolation=cv2.INTER_AREA)
    crop_to_img = np.float32([[k, 0, x0 + (k - 1) / 2], [0, k, y0 + (k - 1) / 2]])
    m_c = _compose(img_to_canon, crop_to_img)
    canon = cv2.warpAffine(crop, m_c, (cw, ch), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    cells = cv2.resize(canon, (GW, GH), interpolation=cv2.INTER_AREA)  # exact cell means
    return cells.astype(np.float32) / 255.0, valid


def _lab(rgb01: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.clip(rgb01, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab) * _LW


def _lum(c: np.ndarray) -> float:
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def _hull_mask(canon_lm: np.ndarray, grow_cells: int) -> np.ndarray:
    """(GH, GW) bool: cells whose centre lies in the face (jaw line closed over the brows,
    raised by 0.15 unit), grown by ``grow_cells`` cells."""
    import cv2

    pts = np.vstack([canon_lm[0:17], canon_lm[17:27][::-1] - [0, 0.15 * P]])
    cell_pts = (pts / CELL_PX - 0.5) * 16  # cell-centre coordinates, 4 fractional bits
    hull = cv2.convexHull(np.round(cell_pts).astype(np.int32).reshape(-1, 1, 2))
    mask = np.zeros((GH, GW), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    if grow_cells:
        k = 2 * grow_cells + 1
        mask = cv2.dilate(mask, np.ones((k, k), np.uint8))
    return mask.astype(bool)


def _chin_mask(canon_lm: np.ndarray) -> np.ndarray:
    """(GH, GW) bool: the lower jaw (landmarks 5-11 and the mouth) grown by one cell."""
    import cv2

    pts = (np.vstack([canon_lm[5:12], canon_lm[48:60]]) / CELL_PX - 0.5) * 16
    hull = cv2.convexHull(np.round(pts).astype(np.int32).reshape(-1, 1, 2))
    mask = np.zeros((GH, GW), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)


def _detail_mask(canon_lm: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Ear bands (within 0.75 unit of the jaw line from landmark 0 to 5 and 11 to 16, outside the
    face) and the neck (0.3–1.9 units below the chin, within 1.1 units of it sideways)."""
    u = _CENTRES / P
    out = np.zeros((GH, GW), bool)
    for seg in (canon_lm[0:6] / P, canon_lm[11:17] / P):
        d = np.min(np.linalg.norm(u[:, :, None, :] - seg[None, None], axis=-1), axis=-1)
        out |= d <= 0.75
    chin = canon_lm[8] / P
    dy = u[..., 1] - chin[1]
    out |= (dy >= 0.3) & (dy <= 1.9) & (np.abs(u[..., 0] - chin[0]) <= 1.1)
    return out & ~face


def _skin(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    return M.skin_rgb(rgb, lm)


def head_reference(rgb: np.ndarray, lm: np.ndarray) -> HeadRef | None:
    """The reference's canonical cells and where its hair, ears and neck are. None when the
    skin cannot be sampled or the head is not in the picture."""
    lm = np.asarray(lm, np.float32)
    skin = _skin(rgb, lm)
    if skin is None:
        return None
    to_canon = _canon_transform(lm)
    cells, valid = _cells_rgb(rgb, to_canon)
    if valid.mean() < 0.3:
        return None
    lab = _lab(cells)
    skin_lab = _lab(skin[None, None, :])[0, 0]
    canon_lm = M.apply_affine(to_canon, lm)
    face = _hull_mask(canon_lm, 0)
    ux, uy = _UNITS[..., 0], _UNITS[..., 1]
    # The head: an ellipse around the eye midpoint reaching ~2.5 units above the eyes and ~2.2
    # beside them, down to the mouth line (below it hair is long hair, shoulders or background).
    mouth_y = float((canon_lm[48, 1] + canon_lm[54, 1]) / 2) / P + Y0
    head = ((ux / 2.2) ** 2 + ((uy + 0.2) / 2.7) ** 2 <= 1.0) & (uy <= mouth_y)
    band = head & ~face & valid
    # Where new hair may appear (grown longer): also beside the face and below it, down to
    # 0.8 unit under the chin.
    chin_y = float(canon_lm[8, 1]) / P + Y0
    grow = ((head | ((np.abs(ux) <= 2.3) & (uy > -0.5) & (uy <= chin_y + 0.8)))
            & ~face & valid)
    d_skin = np.linalg.norm(lab - skin_lab, axis=-1)
    not_skin = d_skin > 6.0
    seed = band & not_skin & (np.abs(ux) < 0.6) & (uy > -2.0) & (uy < -1.45)
    if seed.sum() < 2:  # no hair on top of the head (bald, a hat of skin colour, cropped)
        seed = band & not_skin & (uy < -1.2)
    if seed.sum() < 2:
        return HeadRef(lm, to_canon, lab, valid, np.zeros((GH, GW), np.float32), grow,
                       _detail_mask(canon_lm, face) & valid, skin_lab.copy(), 0.0, skin_lab,
                       _lum(skin), M.pose(lm))
    hair_lab = np.median(lab[seed], axis=0)
    spread = float(np.median(np.linalg.norm(lab[seed] - hair_lab, axis=1)))
    tol = max(16.0, 2.5 * spread)
    d_hair = np.linalg.norm(lab - hair_lab, axis=-1)
    hair = band & not_skin & (d_hair < tol) & (d_hair < d_skin)
    # Background: the ring just outside the head ellipse, above the mouth; a cell nearer to
    # one of its colours than to the hair's is background.
    e = (ux / 2.2) ** 2 + ((uy + 0.2) / 2.7) ** 2
    ring = valid & (e > 1.0) & (e < 1.45) & (uy < -0.6) & (np.linalg.norm(
        lab - hair_lab, axis=-1) > 8.0)
    if ring.sum() >= 4:
        bg = lab[ring]
        d_bg = np.min(np.linalg.norm(lab[:, :, None, :] - bg[None, None], axis=-1), axis=-1)
        hair &= ~(d_bg < d_hair)
    return HeadRef(lm=lm, to_canon=to_canon, lab=lab, valid=valid,
                   hair=hair.astype(np.float32), band=grow,
                   detail=_detail_mask(canon_lm, face) & valid, hair_lab=hair_lab,
                   hair_tol=tol, skin_lab=skin_lab, skin_lum=_lum(skin), pose=M.pose(lm))


def _shift_min(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per cell of ``a``: the smallest distance to ``b``'s cell at the same place or one cell
    away (3x3); ``b`` cells outside the grid never match."""
    pad = np.pad(b, ((1, 1), (1, 1), (0, 0)), constant_values=1e4)
    shifted = np.stack([pad[dy:dy + GH, dx:dx + GW] for dy in range(3) for dx in range(3)])
    diff = shifted - a[None]
    return np.sqrt(np.einsum("kijc,kijc->kij", diff, diff).min(axis=0))


def head_scores(rgb: np.ndarray, lm: np.ndarray, ref: HeadRef) -> HeadResult:
    """Hair and detail scores of one frame against the pose-matched reference."""
    lm = np.asarray(lm, np.float32)
    none = HeadResult(None, None, None)
    pose = M.pose(lm)
    if abs(pose[0] - ref.pose[0]) > POSE_GATE or abs(pose[1] - ref.pose[1]) > POSE_GATE:
        return none
    skin = _skin(rgb, lm)
    if skin is None:
        return none
    f2c = _compose(ref.to_canon, M.similarity_transform(lm[STABLE], ref.lm[STABLE]))
    cells, vis = _cells_rgb(rgb, f2c)
    # One gain for the whole frame from the skin: a lighting change scales every colour alike.
    gain = float(np.clip(ref.skin_lum / max(_lum(skin), 1e-4), 0.5, 2.0))
    lab = _lab(cells * gain)
    ok = vis & ref.valid
    # Tolerant in both directions: a cell that only moved by one cell (landmark noise) is no
    # change; taking the larger keeps edges that really moved (hair cut off) visible.
    dist = np.maximum(_shift_min(lab, ref.lab), _shift_min(ref.lab, lab))
    dist = np.where(ok, dist, 0.0)
    change = np.clip((dist - CHANGE_LO) / (CHANGE_HI - CHANGE_LO), 0, 1)

    hair_score: float | None = None
    hair_heat = np.zeros((GH, GW), np.float32)
    wsum = float(ref.hair.sum())
    if wsum >= MIN_HAIR_CELLS and float((ref.hair * ok).sum()) >= MIN_VISIBLE * wsum:
        w = ref.hair * ok
        # New hair: hair-coloured cells of the frame in the band where the reference has none.
        d_hair = np.linalg.norm(lab - ref.hair_lab, axis=-1)
        d_skin = np.linalg.norm(lab - ref.skin_lab, axis=-1)
        new = (ref.band & ok & (ref.hair == 0) & (d_hair < ref.hair_tol)
               & (d_hair < d_skin)).astype(np.float32)
        frac = float((w * change).sum() + (new * change).sum()) / max(float(w.sum()), 1.0)
        shift = float(np.linalg.norm(((lab - ref.lab) * w[..., None]).sum((0, 1))
                                     / max(float(w.sum()), 1.0)))
        shape_s = 1 - frac / HAIR_FRAC_SCALE
        colour_s = 1 - shift / HAIR_SHIFT_SCALE
        hair_score = float(np.clip(min(shape_s, colour_s), 0, 1))
        hair_heat = change * np.maximum(w, new)

    detail_score: float | None = None
    detail_heat = np.zeros((GH, GW), np.float32)
    canon_lm = M.apply_affine(f2c, lm)
    # The frame's own face is never detail; around the chin one cell more (an open mouth
    # moves it), beside the jaw not (earrings hang right there).
    region = ref.detail & ~_hull_mask(canon_lm, 0) & ~_chin_mask(canon_lm)
    if region.sum() >= 4 and float((region & ok).sum()) >= MIN_VISIBLE * float(region.sum()):
        d = np.sort(dist[region & ok])[::-1]
        top = float(d[:2].mean())  # an earring is one or two cells: the strongest pair
        detail_score = float(np.clip(1 - (top - DETAIL_LO) / (DETAIL_HI - DETAIL_LO), 0, 1))
        detail_heat = np.where(region & ok, np.clip((dist - DETAIL_LO) / (DETAIL_HI - DETAIL_LO),
                                                    0, 1), 0.0)
    if hair_score is None and detail_score is None:
        return none
    return HeadResult(hair_score, detail_score,
                      _frame_heat(np.maximum(hair_heat, detail_heat), f2c, rgb.shape[:2]))


def _frame_heat(cell_map: np.ndarray, f2c: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Cell map (canonical) -> uint8 heat on the frame's 1/8 grid."""
    import cv2

    h, w = heatmap_shape(*hw)
    # Heat pixel (x, y) is centred at frame (8x + 3.5, 8y + 3.5); map it to cell coordinates.
    lin = f2c[:, :2] * CELL / CELL_PX
    trans = (f2c[:, 2] + f2c[:, :2] @ np.float32([(CELL - 1) / 2] * 2)) / CELL_PX - 0.5
    low_to_cell = np.hstack([lin, trans[:, None]]).astype(np.float32)
    out = cv2.warpAffine(cell_map.astype(np.float32), low_to_cell, (w, h),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
