"""Identity analysis of shots with several characters: which face is whom.

A shot names its characters in ``Shot.character_ids`` (main first). On sampled frames every face
found is measured (landmarks, embedding) and scored against the bible of each character (the
best of its references, :meth:`FaceEngine.similarity`); the faces are then given to the
characters by the **best assignment** (:func:`assign_faces`: the one-to-one pairing with the
highest total similarity, ``scipy.optimize.linear_sum_assignment``), not by size. Each character
gets its own per-frame identity, face box, mean/min identity, flagged fraction, drift ranges and
mean embedding.

Assignment rule (:func:`assign_faces`): a pair counts when its similarity is at least the floor
``FLOOR_FRACTION x threshold`` (0.3 for dlib, 0.21 for ArcFace). Below the floor the face is
nobody in the bible — an extra, a poster, a false detection — and the character counts as
missing on that frame. The floor sits far below the threshold on purpose: a drifted face of the
character (dlib: 0.35-0.5) must stay that character's face and be reported as drift, and only a
face that resembles the character less than strangers usually do (dlib distance > 0.84;
different people in the calibration set score 0.25-0.48) is dismissed. When a frame has **one
face only**, that face always counts for the character it was assigned to (the one it resembles
most), however low the score: a wrong person in a shot is then reported as drift of that
character ("different person"), not as "face missing".

Sampling: the frame every ``sample_every`` frames (3), every cut (the analysis' thumbnail test),
the last frame, and every detection frame of the main character's per-frame analysis (which
follows **its** face through :meth:`CastTracker.choose_face`, the same assignment). Frames in
between have identity ``None``; for flags and drift ranges each takes the state of its nearest
sampled frame (never across a cut). 81 frames of 832x480 with two people: ≈ 35 sampled frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn
from studio.identity import metrics as M
from studio.identity.analysis import (APPEARANCE_BOUND, CUT_BOUND, REASONS, SHAPE_BOUND,
                                      ReferenceFace, _Analyzer, _appearance_sig, _r, _thumb,
                                      drift_ranges)
from studio.identity.engines import Detection, FaceEngine

SAMPLE_EVERY = 3
EMBED_EVERY = 8  # a face seen at consecutive samples is embedded afresh at least this often
FLOOR_FRACTION = 0.6  # assignment floor = FLOOR_FRACTION x the engine's threshold
SAME_FACE_IOU = 0.5  # box overlap with the previous sample's face: the same face, tracked
Box = tuple[float, float, float, float]


@dataclass
class CastCharacter:
    """One character of the shot and its prepared bible references (empty: none usable, with
    ``problem`` saying why — the character is reported, not scored)."""

    character_id: str
    name: str
    refs: list[ReferenceFace] = field(default_factory=list)
    problem: str | None = None


@dataclass
class _Face:
    box: Box
    index: int = -1  # the frame
    emb: np.ndarray | None = None
    fut: Any = None  # embedding future (worker process) until resolved
    chip: np.ndarray | None = None
    shape: np.ndarray | None = None  # roll-free landmarks (change detection)
    app: np.ndarray | None = None  # aligned appearance signature (change detection)
    src: "_Face | None" = None  # the embedded face this one reuses (the same face, unchanged)

    def embedding(self, engine: FaceEngine) -> np.ndarray:
        """This face's embedding (waiting for the worker when it is still out there)."""
        from studio.identity import parallel as par

        f = self.src or self
        if f.emb is None:
            try:
                f.emb = f.fut.result(timeout=120)
            except Exception:  # worker died: embed the chip here instead
                par.disable()
                f.emb = engine.embed_chip(f.chip)  # type: ignore[attr-defined]
            f.fut = f.chip = None
        return f.emb


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Sample:
    index: int
    faces: list[_Face]
    cut: bool = False
    assigned: list[int | None] | None = None  # per character: face index (None = missing)
    sims: np.ndarray | None = None  # faces x characters


def floor(engine: FaceEngine) -> float:
    """Similarity under which an assigned face is nobody of the cast (see the module doc)."""
    return FLOOR_FRACTION * engine.threshold


def assign_faces(sim: np.ndarray, usable: Sequence[bool], floor_: float) -> list[int | None]:
    """Per character (column of ``sim``, faces x characters), the index of its face or None.

    The assignment maximises the total similarity over the usable characters (those with a
    reference); a pair under ``floor_`` is dropped unless the frame has one face only."""
    from scipy.optimize import linear_sum_assignment

    n_faces, n_chars = sim.shape
    out: list[int | None] = [None] * n_chars
    cols = [c for c in range(n_chars) if usable[c]]
    if not n_faces or not cols:
        return out
    rows, picked = linear_sum_assignment(sim[:, cols], maximize=True)
    for r, k in zip(rows, picked):
        c = cols[int(k)]
        if sim[r, c] >= floor_ or n_faces == 1:
            out[c] = int(r)
    return out


class CastTracker:
    """Samples frames, measures every face and assigns faces to characters.

    Use :meth:`observe` around the frames the main analysis reads (or alone, in
    :func:`analyze_cast_frames`) and :meth:`choose_face` as its ``choose_face``; then
    :meth:`finish`. Sampling of a frame is deferred until the next one arrives, so that a frame
    the main analysis detects on is measured once, with the main analysis' detections."""

    def __init__(self, engine: FaceEngine, characters: Sequence[CastCharacter], *,
                 sample_every: int = SAMPLE_EVERY, parallel: bool | None = None) -> None:
        from studio.identity import parallel as par
        from studio.identity.engines import DlibEngine

        if not characters:
            raise StudioError("a cast analysis needs at least one character")
        self.engine = engine
        self.chars = list(characters)
        self.usable = [bool(c.refs) for c in self.chars]
        self.sample_every = max(1, int(sample_every))
        self.detector = _Analyzer(engine, [], 8, 8, want_faces=len(self.chars))
        self.samples: dict[int, _Sample] = {}
        self.last: _Sample | None = None  # the latest sample (faces to track from)
        self.cuts: set[int] = set()
        self.frames = 0
        self._current: tuple[int, np.ndarray] | None = None
        self._use_pool = isinstance(engine, DlibEngine) and (par.enabled() if parallel is None
                                                             else parallel)

    # -- measuring -------------------------------------------------------------------------
    def _sims(self, faces: Sequence[_Face]) -> np.ndarray:
        sim = np.zeros((len(faces), len(self.chars)), np.float64)
        for i, f in enumerate(faces):
            emb = f.embedding(self.engine)
            for c, ch in enumerate(self.chars):
                if ch.refs:
                    sim[i, c] = max(self.engine.similarity(emb, r.embedding) for r in ch.refs)
        return sim

    def _assign(self, s: _Sample) -> None:
        s.sims = self._sims(s.faces)
        s.assigned = assign_faces(s.sims, self.usable, floor(self.engine))

    def _same_face(self, face: _Face, cut: bool, now: bool) -> _Face | None:
        """The embedded face of the previous sample this face is, unchanged (its box overlaps,
        its shape and aligned appearance moved less than the analysis' embedding bounds, and
        that embedding is recent): then its embedding is reused. Never across a cut. Where the
        embedding is needed ``now`` (in-process), the periodic refresh waits for the next
        sample, whose chips go to the worker."""
        if cut or self.last is None:
            return None
        best = max(self.last.faces, key=lambda f: _iou(f.box, face.box), default=None)
        if best is None or _iou(best.box, face.box) < SAME_FACE_IOU:
            return None
        src = best.src or best
        if face.index - src.index >= EMBED_EVERY * (2 if now else 1):
            return None
        assert face.shape is not None and face.app is not None
        shape = float(np.mean(np.linalg.norm(face.shape - src.shape, axis=1)))
        app = float(np.mean(np.abs(face.app - src.app)))
        return src if shape <= SHAPE_BOUND and app <= APPEARANCE_BOUND else None

    def _measure(self, t: int, rgb: np.ndarray, dets: Sequence[Detection], *, now: bool,
                 ) -> _Sample:
        """Landmarks and embedding of every detection (reused for a tracked, unchanged face);
        ``now``: the assignment is needed at once (else chips go to the embedding worker)."""
        from studio.identity import parallel as par

        faces = []
        cut = t in self.cuts
        for d in dets:
            lm = self.engine.landmarks(rgb, d.box)
            face = _Face(tuple(float(v) for v in d.box), t,  # type: ignore[arg-type]
                         shape=M._roll_free(lm), app=_appearance_sig(rgb, lm))
            face.src = self._same_face(face, cut, now)
            if face.src is None:
                if not now and self._use_pool:
                    face.chip = self.engine.align(rgb, lm)
                    face.fut = par.submit(face.chip)
                if face.fut is None:
                    face.emb = self.engine.embed(rgb, lm)
            faces.append(face)
        s = _Sample(t, faces, cut=cut)
        self.samples[t] = s
        self.last = s
        if now:
            self._assign(s)
        return s

    def choose_face(self, rgb: np.ndarray, dets: list[Detection]) -> int | None:
        """For :func:`studio.identity.analysis.analyze_frames`: the detection assigned to the
        main character (the first), None when it is not among them. The frame becomes a
        sample."""
        cur = self._current
        if cur is not None and cur[1] is rgb:
            s = self._measure(cur[0], rgb, dets, now=True)
        else:  # not a frame this tracker observed: assign, record nothing
            s = _Sample(-1, [])
            for d in dets:
                lm = self.engine.landmarks(rgb, d.box)
                s.faces.append(_Face(d.box, emb=self.engine.embed(rgb, lm)))
            self._assign(s)
        assert s.assigned is not None
        return s.assigned[0]

    def _sample(self, t: int, rgb: np.ndarray) -> None:
        self._measure(t, rgb, self.detector.detect(rgb), now=False)

    def observe(self, frames: Iterable[np.ndarray], cancelled: CancelledFn | None = None,
                ) -> Iterator[np.ndarray]:
        """Yield ``frames`` unchanged, sampling them on the way."""
        pending: tuple[int, np.ndarray, bool] | None = None  # index, frame, due for a sample
        prev_thumb: np.ndarray | None = None
        t = -1
        it = iter(frames)
        try:
            for t, rgb in enumerate(it):
                if cancelled is not None and cancelled():
                    raise Cancelled()
                if pending is not None and pending[2] and pending[0] not in self.samples:
                    self._sample(pending[0], pending[1])
                thumb = _thumb(rgb)
                cut = prev_thumb is not None and float(np.abs(thumb - prev_thumb).mean()) > CUT_BOUND
                prev_thumb = thumb
                if cut:
                    self.cuts.add(t)
                pending = (t, rgb, cut or t % self.sample_every == 0)
                self._current = (t, rgb)
                yield rgb
            # The last frame is always sampled (the ends of the take count).
            if pending is not None and pending[0] not in self.samples:
                self._sample(pending[0], pending[1])
        finally:
            self._current = None
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self.frames = t + 1

    # -- results ---------------------------------------------------------------------------
    def _resolve(self) -> None:
        for s in self.samples.values():
            if s.assigned is None:
                self._assign(s)

    def _nearest(self, order: np.ndarray) -> list[int]:
        """For every frame, the sampled frame whose state it takes: the nearest (ties: the
        earlier), never one after a cut that lies between them."""
        out = []
        for i in range(self.frames):
            k = int(np.searchsorted(order, i, side="right"))
            p = int(order[k - 1]) if k > 0 else None
            q = int(order[k]) if k < len(order) else None
            if p == i or q is None or (q in self.cuts and p is not None):
                out.append(p if p is not None else q)  # type: ignore[arg-type]
            elif p is None or q - i < i - p:
                out.append(q)
            else:
                out.append(p)
        return out

    def finish(self) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Per character (in order) its entry of the record's ``cast`` block (without
        ``references_fingerprint``), and float32 boxes (characters, frames, 4), NaN where not
        sampled or not present."""
        self._resolve()
        n, thr = self.frames, self.engine.threshold
        boxes = np.full((len(self.chars), n, 4), np.nan, np.float32)
        order = np.array(sorted(self.samples), dtype=np.int64)
        nearest = self._nearest(order) if len(order) else []
        entries = []
        for c, ch in enumerate(self.chars):
            ident: list[float | None] = [None] * n
            missing: list[int] = []
            embs: list[np.ndarray] = []
            state: dict[int, list[str]] = {}  # sampled frame -> reasons
            for t in order.tolist():
                s = self.samples[t]
                assert s.assigned is not None and s.sims is not None
                if not ch.refs:
                    continue
                k = s.assigned[c]
                if k is None:
                    missing.append(t)
                    state[t] = [REASONS["face_missing"]]
                    continue
                v = float(s.sims[k, c])
                ident[t] = _r(v)
                boxes[c, t] = s.faces[k].box
                if s.faces[k].src is None:  # each embedding once in the mean
                    embs.append(s.faces[k].embedding(self.engine))
                state[t] = [REASONS["identity"]] if v < thr else []
            vals = [v for v in ident if v is not None]
            sampled = len(order) if ch.refs else 0
            flagged = sum(1 for t in state if state[t])
            rows = [{"flagged": bool(state.get(nearest[i])), "reasons": state.get(nearest[i], [])}
                    for i in range(n)] if ch.refs else []
            emb = None
            if embs:
                emb = [round(float(x), 6) for x in self.engine.mean_embedding(embs)]
            entries.append({
                "character_id": ch.character_id, "problem": ch.problem,
                "identity_mean": _r(float(np.mean(vals))) if vals else None,
                "identity_min": _r(float(np.min(vals))) if vals else None,
                "face_frames": len(vals), "sampled_frames": sampled,
                "flagged_fraction": round(flagged / sampled, 4) if sampled else None,
                "drift_ranges": drift_ranges(rows), "identity": ident, "missing": missing,
                "embedding": emb})
        return entries, boxes


def _main_refs(characters: Sequence[CastCharacter]) -> list[ReferenceFace]:
    if not characters or not characters[0].refs:
        name = characters[0].name if characters else "?"
        raise StudioError(f"character {name!r}: no usable bible reference"
                          + (f" ({characters[0].problem})" if characters and
                             characters[0].problem else ""))
    return characters[0].refs


def analyze_frames_with_cast(frames: Iterable[np.ndarray], fps: float,
                             characters: Sequence[CastCharacter], engine: FaceEngine, *,
                             sample_every: int = SAMPLE_EVERY, **kw: Any,
                             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The per-frame analysis of the main character (``characters[0]``), following the face
    assigned to it, plus the ``cast`` block (every character) in ``result["cast"]`` and
    ``arrays["cast_boxes"]``. ``kw`` go to :func:`~studio.identity.analysis.analyze_frames`."""
    from studio.identity.analysis import analyze_frames

    refs = _main_refs(characters)
    tracker = CastTracker(engine, characters, sample_every=sample_every,
                          parallel=kw.get("parallel"))
    result, arrays = analyze_frames(tracker.observe(frames), fps, refs, engine,
                                    choose_face=tracker.choose_face,
                                    expected_faces=len(characters), **kw)
    return _with_cast(tracker, result, arrays)


def analyze_video_with_cast(video: Path, characters: Sequence[CastCharacter],
                            engine: FaceEngine, on_progress: ProgressFn | None = None,
                            cancelled: CancelledFn | None = None, *,
                            sample_every: int = SAMPLE_EVERY, **kw: Any,
                            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`analyze_frames_with_cast` on a video file, in one decoding pass (the result has
    the "take" block, like :func:`~studio.identity.analysis.analyze_video`)."""
    from studio.identity.analysis import analyze_video

    refs = _main_refs(characters)
    tracker = CastTracker(engine, characters, sample_every=sample_every,
                          parallel=kw.get("parallel"))
    result, arrays = analyze_video(video, refs, engine, on_progress, cancelled,
                                   wrap=tracker.observe, choose_face=tracker.choose_face,
                                   expected_faces=len(characters), **kw)
    return _with_cast(tracker, result, arrays)


def _with_cast(tracker: CastTracker, result: dict[str, Any], arrays: dict[str, np.ndarray],
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    entries, boxes = tracker.finish()
    if tracker.frames != len(result["frames"]):  # cannot happen: one pass over the same frames
        raise StudioError("cast analysis saw another number of frames than the analysis")
    result["cast"] = entries
    arrays["cast_boxes"] = boxes
    return result, arrays


def analyze_cast_frames(frames: Iterable[np.ndarray], characters: Sequence[CastCharacter],
                        engine: FaceEngine, *, sample_every: int = SAMPLE_EVERY,
                        total: int | None = None, on_progress: ProgressFn | None = None,
                        cancelled: CancelledFn | None = None, parallel: bool | None = None,
                        ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The cast analysis alone (no per-frame metrics): per character its entry and the boxes
    (see :meth:`CastTracker.finish`)."""
    tracker = CastTracker(engine, characters, sample_every=sample_every, parallel=parallel)
    for t, _rgb in enumerate(tracker.observe(frames, cancelled)):
        if on_progress is not None:
            on_progress(Progress(t + 1, total or 0, "analysing the cast"))
    if tracker.frames == 0:
        raise StudioError("the video has no decodable frames")
    return tracker.finish()


def analyze_cast_video(video: Path, characters: Sequence[CastCharacter], engine: FaceEngine,
                       on_progress: ProgressFn | None = None,
                       cancelled: CancelledFn | None = None, **kw: Any,
                       ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """:func:`analyze_cast_frames` on a video file."""
    from studio.identity.analysis import prefetch
    from studio.media.video import iter_frames, probe

    info = probe(Path(video))
    return analyze_cast_frames(prefetch(iter_frames(Path(video))), characters, engine,
                               total=info.frames, on_progress=on_progress, cancelled=cancelled,
                               **kw)


def finite_box(box: np.ndarray) -> Box | None:
    """A (4,) box from ``cast_boxes`` as a tuple, None where NaN."""
    if not all(math.isfinite(float(v)) for v in box):
        return None
    return tuple(float(v) for v in box)  # type: ignore[return-value]


__all__ = ["FLOOR_FRACTION", "SAMPLE_EVERY", "CastCharacter", "CastTracker",
           "analyze_cast_frames", "analyze_cast_video", "analyze_frames_with_cast",
           "analyze_video_with_cast", "assign_faces", "finite_box", "floor"]
