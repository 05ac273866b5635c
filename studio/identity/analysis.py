"""Per-frame identity drift analysis of a video against a character's bible references.

Speed (goal ≥ 32 frames/s at 832x480 on 2 cores) comes from doing the expensive steps rarely
without letting anything hide between them:

* detection (HOG, on a half-size frame) every ``detect_every`` frames, on every frame while no
  face is found, and at every cut (a jump of the frame's 32x18 thumbnail); in between the
  68-point shape is re-fitted each frame in a box carried over from the previous landmarks;
* the identity embedding (the costly step, ≈ 75 ms) every ``embed_every`` frames, plus every
  frame where the landmarks (shape after alignment) or the aligned face's appearance changed more
  than a bound since the last embedded frame, plus at cuts and at the end of each face run.
  Identity of the other frames is interpolated between embedded neighbours; each frame records
  ``identity_source`` "embedded" or "interpolated".

All other metrics (proportions, eye shape, skin tone, stability, heatmap) are measured on every
frame.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn
from studio.identity import metrics as M
from studio.identity.engines import Detection, FaceEngine
from studio.identity.heatmap import RefCanon, heatmap_shape

ANALYSIS_VERSION = 2  # 2: tracked fits checked, states, persistence

# Bounds that trigger an extra embedding (since the last embedded frame).
SHAPE_BOUND = 0.05  # mean landmark change after alignment, inter-ocular units
APPEARANCE_BOUND = 0.35  # mean |difference| of contrast-normalised aligned 32x32 crops
CUT_BOUND = 22.0  # mean |difference| of normalised 32x18 thumbnails (_thumb) = a cut

# A landmark fit is believed only when it passes these checks (measured on 1,365 carried-over dlib
# fits of seven photographs under camera moves, docs/IDENTITY.md "Tracking, states and
# persistence"): refitted in the box its own points imply, a good fit moves 0.011 inter-ocular
# (median; 90 % under 0.03), a lost one 0.25 (median); its aligned appearance correlates ≥ 0.88
# with the previous frame's (5th percentile of good fits) against a median 0.14 for lost ones.
FIT_SELF_MAX = 0.05  # carry-over fit: movement of the refit (inter-ocular units)
FIT_DET_MAX = 0.08  # detector-box fit, refitted with the earlier detections' box relation
FIT_CORR_MIN = 0.7  # aligned appearance vs the previous trusted frame
PRESENCE_MIN = 0.5  # the mesh model's own face score (≈ 1 on a face, ≈ 0 off it)

POSE_GATE = 20.0  # degrees of yaw or pitch between frame and reference for geometry metrics
EYE_WINDOW = 2  # eye features: median over ±2 frames (blinks of ≥ 3 frames survive it)

SMOOTH = 5  # running-median window (frames) for pose, proportions, skin tone and flicker

# Budgets (issue 15): a take's memory must not grow with its resolution past these. Faces are
# found on a frame scaled to at most 4K UHD (dlib's HOG pyramid of an 8192x8192 frame, upsampled,
# is what threw std::bad_alloc); the upsampled pass (faces under ≈ 80 px) only runs on frames
# of at most 1080p, where such faces are plausible. Takes above 8K (8192x4320) are refused
# outright, before decoding.
DETECT_MAX_PIXELS = 3840 * 2160
DETECT_MAX_SIDE = 3840
UPSAMPLE_MAX_PIXELS = 1920 * 1080
MAX_ANALYSIS_PIXELS = 8192 * 4320  # a frame ("8K", as the media layer reads); above: refused
MAX_ANALYSIS_SIDE = 8192
PREFETCH_BYTES = 128 * 1024 * 1024  # decoded frames waiting for the analysis, all together

REASONS = {
    "face_missing": "face missing",
    "extra_faces": "more than one face",  # more faces than characters in the shot
    "identity": "different person",
    "proportions": "facial proportions changed",
    "eye_shape": "eye shape drifted",
    "skin_tone": "skin tone shifted",
    "stability": "face jitters between frames",
    "hair": "hair changed",
    "detail": "ears or neck changed (earrings, necklace)",
}
REASON_ORDER = ("face_missing", "extra_faces", "identity", "proportions", "eye_shape",
                "skin_tone", "stability", "hair", "detail")


@dataclass
class ReferenceFace:
    id: str
    angle: str
    source: str
    landmarks: np.ndarray
    embedding: np.ndarray
    pose: tuple[float, float]
    skin: np.ndarray | None
    canon: RefCanon
    faces: int = 1
    head: Any = None  # hair.HeadRef: hair, ears and neck (None: not measurable in the image)


def prepare_reference(engine: FaceEngine, rgb: np.ndarray, ref_id: str, angle: str = "front",
                      source: str = "") -> ReferenceFace:
    """Detect, measure and embed a bible image (largest face)."""
    faces = engine.detect_thorough(rgb)
    if not faces:
        raise StudioError("no face found in the reference image", source or ref_id)
    best = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    lm = engine.landmarks(rgb, best.box)
    from studio.identity.hair import head_reference

    return ReferenceFace(id=ref_id, angle=str(angle), source=source, landmarks=lm,
                         embedding=engine.embed(rgb, lm), pose=M.pose(lm),
                         skin=M.skin_rgb(rgb, lm), canon=RefCanon(rgb, lm), faces=len(faces),
                         head=head_reference(rgb, lm))


def load_references(engine: FaceEngine, items: Iterable[tuple[str, Path, str]],
                    ) -> list[ReferenceFace]:
    """References from (id, image path, angle); images without a face are skipped. Raises when
    none is usable."""
    from studio.media.images import load_rgb

    refs, problems = [], []
    for ref_id, path, angle in items:
        try:
            refs.append(prepare_reference(engine, load_rgb(Path(path), max_side=2048), ref_id,
                                          angle, str(path)))
        except StudioError as exc:
            problems.append(str(exc))
    if not refs:
        raise StudioError("no usable reference face" + (": " + "; ".join(problems)
                                                        if problems else " (no references)"))
    return refs


_REF_CACHE: "OrderedDict[tuple[Any, ...], list[ReferenceFace]]" = OrderedDict()
_REF_CACHE_LOCK = threading.Lock()
_REF_CACHE_SIZE = 16


def cached_references(engine: FaceEngine, items: Sequence[tuple[str, Path, str]],
                      ) -> list[ReferenceFace]:
    """:func:`load_references`, kept per engine and file state (path, mtime, size): every take
    of a series, every segment of a chained take and every give-up judge of a character is
    scored against the same bible, and preparing it costs about a second."""
    key_items = []
    for ref_id, path, angle in items:
        try:
            st = Path(path).stat()
            key_items.append((ref_id, str(path), angle, st.st_mtime_ns, st.st_size))
        except OSError:
            key_items.append((ref_id, str(path), angle, None, None))
    key = (engine.key, tuple(key_items))
    with _REF_CACHE_LOCK:
        refs = _REF_CACHE.get(key)
        if refs is not None:
            _REF_CACHE.move_to_end(key)
            return refs
    refs = load_references(engine, items)
    with _REF_CACHE_LOCK:
        _REF_CACHE[key] = refs
        while len(_REF_CACHE) > _REF_CACHE_SIZE:
            _REF_CACHE.popitem(last=False)
    return refs


def frame_identity(engine: FaceEngine, rgb: np.ndarray, refs: Sequence[ReferenceFace]
                   ) -> float | None:
    """The character's identity in one picture: the best similarity of any face found to any
    of its references (None: no face). Every face, not the largest: in a two-shot the
    character may be the smaller one. A picture under 720 px on its short side that shows no
    face at first is searched again upsampled (dlib misses faces under ~80 px)."""
    if not refs:
        return None
    faces = engine.detect(rgb, 0)
    if not faces and min(rgb.shape[:2]) < 720:
        faces = engine.detect(rgb, 1)
    best: float | None = None
    for face in faces:
        emb = engine.embed(rgb, engine.landmarks(rgb, face.box))
        s = max(float(engine.similarity(emb, r.embedding)) for r in refs)
        best = s if best is None else max(best, s)
    return best


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """32x18 grey thumbnail, slightly blurred and normalised to zero mean and a fixed contrast:
    handheld shake (±8 px, ±8 % light) moves it by at most 13 (mean |difference|), a cut to
    another shot by at least 33 (the calibration's clips); unnormalised, shake alone crossed
    the cut bound on one frame in four."""
    import cv2

    g = cv2.resize(rgb, (32, 18), interpolation=cv2.INTER_AREA).astype(np.float32).mean(2)
    g = cv2.GaussianBlur(g, (0, 0), 0.8)
    return (g - g.mean()) / (float(g.std()) + 4.0) * 48.0


def _box_from_lm(lm: np.ndarray, rel: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = lm.min(0), lm.max(0)
    size = np.concatenate([hi - lo, hi - lo])
    b = np.concatenate([lo, hi]) + rel * size
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _appearance_sig(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Contrast-normalised 32x32 grey crop aligned on eyes and mouth (for change detection)."""
    import cv2

    from studio.identity.heatmap import normalised_grey

    src = np.array([lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2], np.float32)
    dst = np.array([[10, 12], [22, 12], [16, 24]], np.float32)
    m = M.similarity_transform(src, dst)
    crop = cv2.warpAffine(rgb, m, (32, 32), borderMode=cv2.BORDER_REPLICATE)
    return normalised_grey(crop)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two appearance signatures (1 = the same picture)."""
    return float(np.mean(a * b) / math.sqrt(float(np.mean(a * a) * np.mean(b * b)) + 1e-9))


@dataclass
class _Frame:
    index: int
    face: bool = False  # a face is there (found by the detector or held by the tracker)
    trusted: bool = False  # its landmark fit passed the checks; False with face = uncertain
    fit: Any = None  # the landmark model's fit (landmarks.Fit), to track the face from
    faces: int = 0
    lm: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    identity: float | None = None
    source: str | None = None
    ref: int | None = None  # reference matched for identity
    geo_ref: int | None = None  # pose-matched reference for geometry and colour
    geo_ok: bool = False  # pose close enough to geo_ref to compare 2-D geometry
    emb: np.ndarray | None = None
    pose: tuple[float, float] | None = None
    proportions: float | None = None
    eye: float | None = None
    blink: bool = False
    skin: float | None = None
    hair: float | None = None
    detail: float | None = None
    cut: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# Picks the face to follow among a detection frame's detections (index, or None: not there).
ChooseFace = Callable[[np.ndarray, list[Detection]], "int | None"]


def largest_face(dets: Sequence[Detection]) -> int | None:
    """Index of the largest detection (a one-character shot follows the biggest face)."""
    if not dets:
        return None
    return max(range(len(dets)), key=lambda i: (dets[i].box[2] - dets[i].box[0])
               * (dets[i].box[3] - dets[i].box[1]))


class _Analyzer:
    def __init__(self, engine: FaceEngine, refs: Sequence[ReferenceFace], detect_every: int,
                 embed_every: int, want_faces: int = 1) -> None:
        self.engine = engine
        self.refs = list(refs)
        self.detect_every = detect_every
        self.embed_every = embed_every
        # Faces the shot should show (its characters): the half-size pass only counts as done
        # when it found that many; a small second face needs the full-size pass.
        self.want_faces = max(1, want_faces)
        self.min_face: float | None = None  # smallest face side seen (pixels)
        self._rolled_wait = 0  # frames until the turned-frame search is tried again

    def pick_reference(self, pose: tuple[float, float]) -> int:
        """The reference whose measured pose is nearest to the frame's."""
        d = [math.hypot(r.pose[0] - pose[0], r.pose[1] - pose[1]) for r in self.refs]
        return int(np.argmin(d))

    def identity(self, emb: np.ndarray, pose_ref: int) -> tuple[float, int]:
        """Similarity to the angle-matched reference; if that is below the threshold, the best
        of all references (another angle may simply be a better view)."""
        sims = [self.engine.similarity(emb, r.embedding) for r in self.refs]
        if sims[pose_ref] >= self.engine.threshold:
            return sims[pose_ref], pose_ref
        best = int(np.argmax(sims))
        return sims[best], best

    def detect(self, rgb: np.ndarray) -> list[Any]:
        """Detections in ``rgb``'s coordinates, found on the frame scaled to the detection
        budget (:data:`DETECT_MAX_PIXELS`)."""
        import cv2

        h, w = rgb.shape[:2]
        f = detect_scale(w, h)
        if f >= 1.0:
            return self._detect(rgb)
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA)
        min_face = self.min_face
        if min_face is not None:
            self.min_face = min_face * f  # the scaled frame's face size drives the passes
        try:
            dets = self._detect(small)
        finally:
            if self.min_face is not None:
                self.min_face = self.min_face / f
        for d in dets:
            d.box = tuple(v / f for v in d.box)
        return dets

    def _detect(self, rgb: np.ndarray) -> list[Any]:
        import cv2

        h, w = rgb.shape[:2]
        # Faces ≥ ~160 px are still found at half size (4x cheaper); skip that pass once the
        # faces in this clip are known to be smaller.
        if min(h, w) >= 360 and (self.min_face is None or self.min_face >= 170):
            small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            dets = self.engine.detect(small, 0)
            for d in dets:
                d.box = tuple(v * 2 for v in d.box)
            for d in dets:
                self.min_face = min(self.min_face or 1e9, d.box[2] - d.box[0])
            if len(dets) >= self.want_faces:
                return dets
        dets = self.engine.detect(rgb, 0)
        # Upsampling (for faces under ~80 px) costs 3-4x; only try it while it can matter: until
        # a face has been seen, or when the faces seen so far were small.
        if not dets and (self.min_face is None or self.min_face < 110) and \
                h * w <= UPSAMPLE_MAX_PIXELS:
            dets = self.engine.detect(rgb, 1)
        for d in dets:
            side = d.box[2] - d.box[0]
            self.min_face = side if self.min_face is None else min(self.min_face, side)
        if not dets:
            dets = self.detect_rolled(rgb)
        return dets

    def detect_rolled(self, rgb: np.ndarray) -> list[Any]:
        """HOG only finds faces within ≈ ±10° of upright: when it finds none, the frame is
        searched again turned by ±15° and ±30° (a head tilt, a camera roll). A face found there
        comes back as an upright box of the same size around the same centre; the landmark
        fit takes the roll. Tried on every third frame of a faceless run at most (a clip with
        no face would otherwise pay four more detections a frame)."""
        import cv2

        if self._rolled_wait > 0:
            self._rolled_wait -= 1
            return []
        h, w = rgb.shape[:2]
        f = 0.5 if min(h, w) >= 360 and (self.min_face is None or self.min_face >= 170) else 1.0
        small = rgb if f == 1.0 else cv2.resize(rgb, (int(w * f), int(h * f)),
                                                interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        centre = (sw / 2, sh / 2)
        for angle in ROLL_TRIES:
            m = cv2.getRotationMatrix2D(centre, angle, 1.0)
            turned = cv2.warpAffine(small, m, (sw, sh), borderMode=cv2.BORDER_REPLICATE)
            dets = self.engine.detect(turned, 0)
            if not dets:
                continue
            back = cv2.invertAffineTransform(m)
            for d in dets:
                x0, y0, x1, y1 = d.box
                cx, cy = back @ np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
                half = (x1 - x0) / 2
                d.box = tuple(float(v) / f for v in (cx - half, cy - half, cx + half, cy + half))
            return dets
        self._rolled_wait = 2
        return []


ROLL_TRIES = (15.0, -15.0, 30.0, -30.0)  # degrees the frame is turned when HOG finds no face


def analyze_frames(frames: Iterable[np.ndarray], fps: float, refs: Sequence[ReferenceFace],
                   engine: FaceEngine, *, total: int | None = None,
                   on_progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
                   detect_every: int = 8, embed_every: int = 8, parallel: bool | None = None,
                   choose_face: ChooseFace | None = None, expected_faces: int = 1,
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Analyse decoded RGB frames. Returns (json-able result without "take", npz arrays).

    ``parallel`` (default: on with ≥ 2 cores, dlib engine) embeds in a worker process.
    ``choose_face`` picks the face to follow at each detection frame (default: the largest);
    a multi-character shot passes the cast assignment's pick for its main character
    (:mod:`studio.identity.cast`) and ``expected_faces`` = its number of characters, so that
    "more than one face" means more faces than characters."""
    from studio.identity import parallel as par
    from studio.identity.engines import DlibEngine
    from studio.identity.hair import head_scores

    an = _Analyzer(engine, refs, detect_every, embed_every, want_faces=expected_faces)
    use_pool = isinstance(engine, DlibEngine) and (par.enabled() if parallel is None
                                                   else parallel)
    pending: list[tuple[_Frame, Any, np.ndarray]] = []
    out: list[_Frame] = []
    heat: list[np.ndarray] = []
    prev_thumb: np.ndarray | None = None
    rel: np.ndarray | None = None
    last_det = -10**9
    n_faces = 0
    last_emb: dict[str, Any] | None = None  # frame index, landmarks, appearance
    prev_frame: tuple[np.ndarray, _Frame] | None = None
    shape_hw: tuple[int, int] | None = None

    def embed(rgb: np.ndarray, fr: _Frame) -> None:
        nonlocal last_emb
        assert fr.lm is not None and fr.pose is not None
        fut = None
        if use_pool:
            chip = engine.align(rgb, fr.lm)
            fut = par.submit(chip)
        if fut is not None:
            pending.append((fr, fut, chip))  # resolved after the loop
        else:
            fr.emb = engine.embed(rgb, fr.lm)
            fr.identity, fr.ref = an.identity(fr.emb, an.pick_reference(fr.pose))
        fr.source = "embedded"
        last_emb = {"index": fr.index, "shape": M._roll_free(fr.lm),
                    "app": _appearance_sig(rgb, fr.lm)}

    prev_sig: np.ndarray | None = None  # aligned appearance of the last trusted frame

    def refit(rgb: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, float]:
        """``lm`` fitted again in the box its own points imply (the detections' box relation):
        a fit that found the face barely moves (< FIT_SELF_MAX); one that latched on to the
        background or half a face jumps. Returns (second fit, movement in inter-ocular
        units)."""
        assert rel is not None
        lm2 = engine.landmarks(rgb, _box_from_lm(lm, rel))
        return lm2, float(np.mean(np.linalg.norm(lm2 - lm, axis=1)) / M.interocular(lm2))

    for t, rgb in enumerate(frames):
        if cancelled is not None and cancelled():
            raise Cancelled()
        if shape_hw is None:
            shape_hw = rgb.shape[:2]
        fr = _Frame(t)
        thumb = _thumb(rgb)
        fr.cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > CUT_BOUND
        prev_thumb = thumb
        prev = out[-1] if out else None
        box = None
        lm: np.ndarray | None = None
        fit_obj = None  # the landmark model's fit (its tracking state), when it has one
        trusted = False
        # Tracking: the previous trusted fit's box, checked (refit + appearance); a failed
        # check re-detects at once instead of following a lost fit for detect_every frames.
        carry: tuple[np.ndarray, bool, str] | None = None
        carry_fit = None
        if (prev is not None and prev.face and prev.trusted and prev.lm is not None
                and not fr.cut and prev_sig is not None):
            tracked = engine.track(rgb, prev.fit) if prev.fit is not None else None
            if tracked is not None:  # the model tracks by itself and says if it still sees a face
                lm_c, moved = tracked.lm, 0.0
                carry_fit = tracked
                lost = tracked.presence is not None and tracked.presence < PRESENCE_MIN
            elif rel is not None:
                lm_c, moved = refit(rgb, engine.landmarks(rgb, _box_from_lm(prev.lm, rel)))
                lost = moved > FIT_SELF_MAX
            else:
                lm_c = None
            if lm_c is not None:
                corr = _corr(_appearance_sig(rgb, lm_c), prev_sig)
                why = ("the landmark fit lost the face" if lost else
                       "the face's appearance jumped between frames" if corr < FIT_CORR_MIN
                       else "")
                carry = (lm_c, not why, why)
                fr.extra["fit"] = (moved, corr)
        if carry is None or not carry[1] or t - last_det >= detect_every:
            dets = an.detect(rgb)
            last_det = t
            n_faces = len(dets)
            pick = None
            if dets:
                pick = largest_face(dets) if choose_face is None else choose_face(rgb, dets)
            if pick is not None:
                box = dets[pick].box
                det_fit = engine.fit(rgb, box)
                lm, fit_obj = det_fit.lm, det_fit
                trusted = True
                if det_fit.presence is not None:
                    trusted = det_fit.presence >= PRESENCE_MIN
                elif (rel is not None and not fr.cut and prev is not None
                      and prev.trusted):
                    # checked with the box relation of the earlier detections of this face
                    # (not after a cut or a lost frame: another face, another relation)
                    trusted = refit(rgb, lm)[1] <= FIT_DET_MAX
                if trusted:  # remember where the detector's box sits around the landmarks
                    lo, hi = lm.min(0), lm.max(0)
                    size = np.concatenate([hi - lo, hi - lo])
                    rel = ((np.array(box, np.float32) - np.concatenate([lo, hi]))
                           / np.maximum(size, 1))
                elif carry is not None and carry[1]:
                    lm, trusted, fit_obj = carry[0], True, carry_fit
                else:
                    fr.extra["uncertain"] = "the landmark fit disagrees with the detector"
            elif carry is not None and not dets:
                # The detector missed a face the tracker holds (roll, blur, a hand): a fit that
                # passed its checks is kept; one that did not is not believed either way.
                lm, trusted, fit_obj = carry[0], carry[1], carry_fit
                if not trusted:
                    fr.extra["uncertain"] = carry[2] + "; the face detector finds no face"
        else:
            lm, trusted, fit_obj = carry[0], True, carry_fit
        if lm is not None and box is None and rel is not None:
            box = _box_from_lm(lm, rel)
        if lm is not None and trusted:
            fr.face, fr.trusted, fr.lm, fr.box, fr.faces = True, True, lm, box, max(n_faces, 1)
            fr.fit = fit_obj
            fr.pose = M.pose(lm)
            ri = an.pick_reference(fr.pose)
            ref = refs[ri]
            fr.ref = fr.geo_ref = ri
            prev_sig = _appearance_sig(rgb, lm)
            skin = M.skin_rgb(rgb, lm)
            if skin is not None and ref.skin is not None:
                fr.extra["delta_e"] = M.skin_delta_e(skin, ref.skin)
                fr.skin = M.skin_score(fr.extra["delta_e"])
            heat.append(ref.canon.frame_heatmap(rgb, lm))
            if ref.head is not None:
                head = head_scores(rgb, lm, ref.head)
                fr.hair, fr.detail = head.hair, head.detail
                if head.heat is not None:
                    heat[-1] = np.maximum(heat[-1], head.heat)
            # Adaptive embedding: periodic, at cuts, at the start of a face run, or when the face
            # changed more than a bound since the last embedded frame.
            need = (last_emb is None or prev is None or not prev.face or not prev.trusted
                    or fr.cut or t - last_emb["index"] >= embed_every)
            if not need and last_emb is not None:
                shape_change = float(np.mean(np.linalg.norm(M._roll_free(lm) - last_emb["shape"],
                                                            axis=1)))
                app_change = float(np.mean(np.abs(prev_sig - last_emb["app"])))
                fr.extra["change"] = (shape_change, app_change)
                need = shape_change > SHAPE_BOUND or app_change > APPEARANCE_BOUND
            if need:
                embed(rgb, fr)
        else:
            if lm is not None:  # a face is there, but its fit cannot be trusted
                fr.face, fr.trusted, fr.box, fr.faces = True, False, box, max(n_faces, 1)
                fr.extra.setdefault("uncertain", carry[2] if carry is not None else
                                    "the landmark fit cannot be trusted")
            else:
                fr.faces = 0
            prev_sig = None
            heat.append(np.zeros(heatmap_shape(*rgb.shape[:2]), np.uint8))
            # End of a face run: make sure its last frame is embedded (interpolation needs ends).
            if prev_frame is not None and prev_frame[1].trusted and prev_frame[1].source is None:
                embed(*prev_frame)
        out.append(fr)
        if prev is not None:
            prev.fit = None  # only the last frame is tracked from (a mesh is 11 KB a frame)
        prev_frame = (rgb, fr)
        if on_progress is not None:
            on_progress(Progress(t + 1, total or 0, "analysing"))
    if prev_frame is not None and prev_frame[1].trusted and prev_frame[1].source is None:
        embed(*prev_frame)
    if not out:
        raise StudioError("the video has no decodable frames")
    for fr, fut, chip in pending:
        try:
            fr.emb = fut.result(timeout=120)
        except Exception:  # worker could not start or died: embed the chip here instead
            par.disable()
            fr.emb = engine.embed_chip(chip)  # type: ignore[attr-defined]
        assert fr.pose is not None
        fr.identity, fr.ref = an.identity(fr.emb, an.pick_reference(fr.pose))
    return _finish(out, heat, fps, refs, engine, shape_hw or (0, 0), expected_faces)


def _interpolate(frames: list[_Frame]) -> None:
    emb_idx = [f.index for f in frames if f.source == "embedded"]
    if not emb_idx:
        return
    arr = np.array(emb_idx)
    for f in frames:
        if not f.trusted or f.source == "embedded":
            continue
        k = int(np.searchsorted(arr, f.index))
        lo = arr[k - 1] if k > 0 else None
        hi = arr[k] if k < len(arr) else None
        a = frames[lo] if lo is not None else None
        b = frames[hi] if hi is not None else None
        # Only interpolate within the same face run (no missing frame or cut in between).
        run_ok = lambda x, y: all(frames[i].trusted and not frames[i].cut  # noqa: E731
                                  for i in range(min(x, y) + 1, max(x, y) + 1))
        cands = [(x, abs(x.index - f.index)) for x in (a, b) if x is not None
                 and run_ok(x.index, f.index)]
        if not cands:
            continue
        if len(cands) == 2:
            w = (f.index - a.index) / max(b.index - a.index, 1)  # type: ignore[union-attr]
            f.identity = float((1 - w) * a.identity + w * b.identity)  # type: ignore[union-attr,operator]
            f.ref = a.ref if w < 0.5 else b.ref  # type: ignore[union-attr]
        else:
            f.identity, f.ref = cands[0][0].identity, cands[0][0].ref
        f.source = "interpolated"


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _eye_scores(frames: list[_Frame], refs: Sequence[ReferenceFace]) -> None:
    """Eye shape per frame from the median eye features of the frame and its neighbours in the
    same face run: dlib's eye corners are noisy (±5 % of the width) on small eyes; drift lasts,
    noise does not. A blink of ≥ 3 frames survives the median; a shorter one is smoothed away
    (neither is flagged)."""
    feats = {f.index: M.eye_features(f.lm) for f in frames if f.trusted and f.lm is not None}
    for f in frames:
        if f.index not in feats or f.geo_ref is None or not f.geo_ok:
            continue
        win = [feats[f.index]]
        for step in (-1, 1):  # up to EYE_WINDOW frames each side, stopping at cuts and gaps
            i = f.index
            for _ in range(EYE_WINDOW):
                j = i + step
                if j not in feats or frames[max(i, j)].cut:
                    break
                win.append(feats[j])
                i = j
        res = M.eye_shape_score(f.lm, refs[f.geo_ref].landmarks,  # type: ignore[arg-type]
                                np.median(np.stack(win), axis=0))
        f.eye, f.blink = res.score, res.blink


def _smooth(frames: list[_Frame], values: dict[int, float], window: int = SMOOTH) -> dict[int, float]:
    """Running median over ±window//2 measured frames of the same face run (no cut, no lost
    frame in between): for quantities that change smoothly in a real face (pose, proportions,
    skin, flicker), so one frame's fitting noise never decides anything."""
    out: dict[int, float] = {}
    half = window // 2
    for i, v in values.items():
        win = [v]
        for step in (-1, 1):
            j = i
            for _ in range(half):
                k = j + step
                if k < 0 or k >= len(frames) or frames[max(j, k)].cut or k not in values:
                    break
                win.append(values[k])
                j = k
        out[i] = float(np.median(win))
    return out


def persistent_runs(values: Sequence[float | None], threshold: float, min_len: int,
                    hysteresis: float, breaks: Sequence[bool] | None = None,
                    ) -> tuple[list[bool], list[bool]]:
    """(drift, brief) per frame for one metric. A run of measured values below ``threshold``
    (frames without a value neither extend nor end it; ``breaks`` — cuts — end it) is drift
    when it lasts ``min_len`` measured frames, and then also takes in the neighbouring values
    below ``threshold + hysteresis``; a shorter run is only ``brief`` (shown as "close")."""
    n = len(values)
    drift, brief = [False] * n, [False] * n
    measured = [i for i, v in enumerate(values) if v is not None]
    segments: list[list[int]] = []
    for i in measured:
        if not segments or (breaks is not None and any(breaks[segments[-1][-1] + 1:i + 1])):
            segments.append([i])
        else:
            segments[-1].append(i)
    for seg in segments:
        low = [values[i] < threshold for i in seg]  # type: ignore[operator]
        soft = [values[i] < threshold + hysteresis for i in seg]  # type: ignore[operator]
        k = 0
        while k < len(seg):
            if not low[k]:
                k += 1
                continue
            e = k
            while e + 1 < len(seg) and low[e + 1]:
                e += 1
            if e - k + 1 >= min_len or len(values) < min_len:
                a, b = k, e
                while a > 0 and soft[a - 1]:
                    a -= 1
                while b + 1 < len(seg) and soft[b + 1]:
                    b += 1
                for j in range(a, b + 1):
                    drift[seg[j]] = True
                k = b + 1
            else:
                for j in range(k, e + 1):
                    brief[seg[j]] = True
                k = e + 1
    return drift, brief


def _finish(frames: list[_Frame], heat: list[np.ndarray], fps: float,
            refs: Sequence[ReferenceFace], engine: FaceEngine, hw: tuple[int, int],
            expected_faces: int = 1) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from studio.identity import calibration as C
    from studio.identity.colours import band_edges

    n = len(frames)
    # Pose, smoothed; then which frames are close enough to their reference's pose to compare
    # 2-D geometry, and their proportions (smoothed too).
    yaw = _smooth(frames, {f.index: f.pose[0] for f in frames if f.trusted and f.pose})
    pitch = _smooth(frames, {f.index: f.pose[1] for f in frames if f.trusted and f.pose})
    for f in frames:
        if f.index in yaw:
            f.pose = (yaw[f.index], pitch[f.index])
            ri = int(f.geo_ref)  # type: ignore[arg-type]
            f.geo_ok = (abs(f.pose[0] - refs[ri].pose[0]) <= POSE_GATE
                        and abs(f.pose[1] - refs[ri].pose[1]) <= POSE_GATE)
    prop = _smooth(frames, {f.index: M.proportions_score(f.lm, refs[f.geo_ref].landmarks)
                            for f in frames if f.trusted and f.geo_ok and f.lm is not None
                            and f.geo_ref is not None})
    skin = _smooth(frames, {f.index: f.skin for f in frames if f.skin is not None})
    for f in frames:
        f.proportions = prop.get(f.index)
        f.skin = skin.get(f.index)
    _interpolate(frames)
    _eye_scores(frames, refs)
    lms = np.full((n, 68, 2), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan, np.float32)
    for f in frames:
        if f.trusted:
            lms[f.index] = f.lm
        if f.face and f.box is not None:
            boxes[f.index] = f.box
    jit: dict[int, float] = {}
    motion = []
    for f in frames:
        i = f.index
        if f.trusted and 0 < i < n - 1 and frames[i - 1].trusted and frames[i + 1].trusted \
                and not f.cut and not frames[i + 1].cut:
            jit[i] = M.jitter(lms[i - 1], lms[i], lms[i + 1])  # type: ignore[assignment]
        if f.trusted and i > 0 and frames[i - 1].trusted and not f.cut:
            motion.append(float(np.mean(np.linalg.norm(lms[i] - lms[i - 1], axis=1))
                                / M.interocular(lms[i])))
    stab = {i: M.stability_score(v) for i, v in _smooth(frames, jit).items()}
    cuts = [f.cut for f in frames]
    series: dict[str, list[float | None]] = {
        "identity": [f.identity if f.trusted else None for f in frames],
        "proportions": [f.proportions for f in frames], "eye_shape": [f.eye for f in frames],
        "skin_tone": [f.skin for f in frames], "stability": [stab.get(f.index) for f in frames],
        "hair": [f.hair if f.trusted else None for f in frames],
        "detail": [f.detail if f.trusted else None for f in frames],
    }
    close_edge, match_edge = band_edges(engine.threshold, engine.name)
    from studio.identity.hair import DETAIL_THRESHOLD, HAIR_THRESHOLD

    thresholds = {"identity": engine.threshold, **M.THRESHOLDS, "hair": HAIR_THRESHOLD,
                  "detail": DETAIL_THRESHOLD}
    flags: dict[str, tuple[list[bool], list[bool]]] = {
        key: persistent_runs(vals, thresholds[key], C.PERSIST.get(key, C.PERSIST_DEFAULT),
                             C.HYSTERESIS, cuts) for key, vals in series.items()}
    missing = [not f.face for f in frames]
    extra = [f.face and f.faces > expected_faces for f in frames]
    flags["face_missing"] = persistent_runs([0.0 if m else 1.0 for m in missing], 0.5,
                                            C.PERSIST_DEFAULT, 0.0)
    flags["extra_faces"] = persistent_runs([0.0 if x else 1.0 for x in extra], 0.5,
                                           C.PERSIST_DEFAULT, 0.0)
    rows = []
    for f in frames:
        i = f.index
        reasons = [REASONS[key] for key in REASON_ORDER if key in flags and flags[key][0][i]]
        cautions: list[str] = []
        if not f.face:
            state = "drift" if reasons else "uncertain"
            if not reasons:
                cautions.append("no face found on this frame (only for a moment)")
        elif not f.trusted:
            state = "uncertain"
            reasons = [r for r in reasons if r in (REASONS["extra_faces"],)]
            cautions.append(str(f.extra.get("uncertain", "the landmark fit cannot be trusted")))
            if reasons:
                state = "drift"
        else:
            cautions = [REASONS[key] + " (briefly)" for key in REASON_ORDER
                        if key in flags and flags[key][1][i]]
            if f.identity is not None and close_edge <= f.identity < match_edge:
                cautions.insert(0, "identity close to the threshold")
            state = "drift" if reasons else "close" if cautions else "match"
        rows.append({
            "index": i, "time": round(i / fps, 4), "face_found": f.face,
            "faces": f.faces, "identity": _r(f.identity), "identity_source": f.source,
            "proportions": _r(f.proportions), "eye_shape": _r(f.eye), "skin_tone": _r(f.skin),
            "stability": _r(stab.get(i)), "matched_reference": refs[f.ref].id
            if f.ref is not None and f.identity is not None else None,
            "flagged": state == "drift", "reasons": reasons, "blink": f.blink,
            "pose": None if f.pose is None or not f.trusted
            else [round(f.pose[0], 1), round(f.pose[1], 1)],
            "state": state, "cautions": cautions,
            "hair": _r(f.hair) if f.trusted else None,
            "detail": _r(f.detail) if f.trusted else None,
        })
    summary = summarize(rows, engine, motion,
                        [f.emb for f in frames if f.emb is not None],
                        iod=[M.interocular(f.lm) for f in frames if f.trusted
                             and f.lm is not None])
    if engine.name == "arcface":
        # FaceSim-Arc (OpenS2V): the mean ArcFace cosine of the embedded frames to their
        # reference, unclipped, so a take can be put beside published models' figures.
        cos = [float(engine.raw_score(f.emb, refs[f.ref].embedding)) for f in frames
               if f.emb is not None and f.ref is not None]
        summary["facesim_arc"] = round(float(np.mean(cos)), 4) if cos else None
    result = {"format": 1, "analysis_version": ANALYSIS_VERSION,
              "engine": engine.info(), "engine_key": engine.key,
              "references": [{"id": r.id, "angle": r.angle, "source": r.source,
                              "pose": [round(r.pose[0], 1), round(r.pose[1], 1)]}
                             for r in refs],
              "summary": summary, "frames": rows}
    h8, w8 = heatmap_shape(*hw)
    arrays = {"heatmaps": np.stack(heat) if heat else np.zeros((0, h8, w8), np.uint8),
              "landmarks": lms, "boxes": boxes}
    return result, arrays


def drift_ranges(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive flagged frames → ranges (inclusive) with their reasons, most frequent first."""
    out: list[dict[str, Any]] = []
    start = None
    counts: dict[str, int] = {}
    for i, row in enumerate(list(rows) + [{"flagged": False, "reasons": []}]):
        if row["flagged"]:
            if start is None:
                start, counts = i, {}
            for r in row["reasons"]:
                counts[r] = counts.get(r, 0) + 1
        elif start is not None:
            out.append({"start": start, "end": i - 1,
                        "reasons": sorted(counts, key=lambda k: -counts[k])})
            start = None
    return out


def summarize(rows: Sequence[dict[str, Any]], engine: FaceEngine, motion: Sequence[float],
              embeddings: Sequence[np.ndarray], iod: Sequence[float] = ()) -> dict[str, Any]:
    from studio.identity import calibration as C

    ids = [r["identity"] for r in rows if r["identity"] is not None]
    states = {k: sum(1 for r in rows if r.get("state") == k) for k in C.STATES}
    flagged = [r for r in rows if r["flagged"]]
    # Worst first: the lowest identity, then frames without a face; frames that could not be
    # judged (uncertain) last — they have no score or heatmap to show.
    order = sorted((r for r in rows), key=lambda r: (
        r.get("state") == "uncertain",
        r["identity"] if r["identity"] is not None else -1.0, -len(r["reasons"])))
    emb = None
    if embeddings:
        e = engine.mean_embedding(list(embeddings))
        emb = [round(float(v), 6) for v in e]
    return {
        "identity_mean": _r(float(np.mean(ids))) if ids else None,
        "identity_min": _r(float(np.min(ids))) if ids else None,
        "flagged_fraction": round(len(flagged) / max(len(rows), 1), 4),
        "worst_frames": [r["index"] for r in order[:5]],
        "drift_ranges": drift_ranges(rows),
        # Mean landmark movement per frame in inter-ocular distances: ~0 means a frozen face,
        # which would otherwise look like a perfect take.
        "motion": round(float(np.mean(motion)), 5) if motion else 0.0,
        "embedding": emb,
        "face_frames": sum(1 for r in rows if r["face_found"]),
        "embedded_frames": sum(1 for r in rows if r["identity_source"] == "embedded"),
        "states": states,
        "uncertain_fraction": round(states["uncertain"] / max(len(rows), 1), 4),
        # What the calibration expects an unchanged face of this size to be flagged on.
        "expected_false_alarm": C.expected_false_alarm(engine, float(np.median(iod))
                                                       if len(iod) else None),
        "facesim_arc": None,  # set by _finish with the ArcFace engine
    }


def prefetch(it: Iterable[Any], depth: int = 12) -> Iterable[Any]:
    """Run an iterator (video decoding: PyAV releases the GIL) in a thread, ``depth`` ahead,
    so decoding overlaps the analysis on the second core."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # re-raised in the consumer
            q.put(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:  # closes the video container now, not at garbage collection
                close()

    th = threading.Thread(target=work, name="analysis-decode", daemon=True)
    th.start()
    try:
        while True:
            kind, val = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise val
            yield val
    finally:
        stop.set()
        th.join(timeout=5)


def detect_scale(width: int, height: int) -> float:
    """The factor (≤ 1) that brings a frame within the detection budget."""
    pixels = max(1, width * height)
    return min(1.0, math.sqrt(DETECT_MAX_PIXELS / pixels), DETECT_MAX_SIDE / max(width, height, 1))


def check_budget(width: int, height: int, frames: int, path: Path | None = None) -> None:
    """Refuse, before decoding, a take no real project has: frames above 8K, or heatmaps that
    would not fit in an analysis file. One line naming the file (:class:`AssetError`)."""
    from studio.core.errors import AssetError
    from studio.identity.heatmap import heatmap_shape
    from studio.identity.record import MAX_ARRAY_BYTES

    if width > MAX_ANALYSIS_SIDE or height > MAX_ANALYSIS_SIDE or \
            width * height > MAX_ANALYSIS_PIXELS:
        raise AssetError(f"the take is {width}x{height}; the identity analysis reads frames of "
                         f"at most {MAX_ANALYSIS_PIXELS} pixels (8192x4320) and sides of at most "
                         f"{MAX_ANALYSIS_SIDE}", path)
    hh, hw = heatmap_shape(height, width)
    need = max(0, frames) * hh * hw
    if need > MAX_ARRAY_BYTES:
        raise AssetError(f"the take's heatmaps ({frames} frames of {width}x{height}) would take "
                         f"{need / 2**30:.1f} GiB; at most {MAX_ARRAY_BYTES / 2**30:.0f} GiB: "
                         "analyse a shorter or smaller take", path)


def analyze_video(video: Path, refs: Sequence[ReferenceFace], engine: FaceEngine,
                  on_progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
                  *, wrap: Callable[[Iterable[np.ndarray]], Iterable[np.ndarray]] | None = None,
                  **kw: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Analyse a video file; the result includes the "take" block (path, hash, size).

    ``wrap``: a filter the decoded frames pass through on the analysing thread before the
    analysis sees them (the cast analysis observes every frame this way, in the same pass)."""
    from studio.core.assets import sha256_file
    from studio.media.video import iter_frames, probe

    video = Path(video)
    info = probe(video)
    check_budget(info.width, info.height, info.frames, video)
    t0 = time.perf_counter()
    # Frames are streamed: the decoder runs at most PREFETCH_BYTES ahead (one 8K frame is 200 MB).
    depth = max(1, min(12, PREFETCH_BYTES // max(1, info.width * info.height * 3)))
    frames: Iterable[np.ndarray] = prefetch(iter_frames(video), depth)
    if wrap is not None:
        frames = wrap(frames)
    result, arrays = analyze_frames(frames, info.fps, refs, engine,
                                    total=info.frames, on_progress=on_progress,
                                    cancelled=cancelled, **kw)
    result["take"] = {"video": video.name, "sha256": sha256_file(video),
                      "frames": len(result["frames"]), "fps": info.fps,
                      "width": info.width, "height": info.height}
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result, arrays
