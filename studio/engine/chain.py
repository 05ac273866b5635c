"""Shots longer than the model's window, generated as chained segments that keep the face.

A model makes at most ``Capabilities.max_frames`` frames in one call (Wan 2.1/2.2: 81). A longer
shot is generated here as segments, each one a normal backend call:

* segment 1 starts from the shot's start image (framed as usual);
* every later segment starts from a frame near the end of the video made so far, chosen **by
  identity**: the last few frames are scored against the main character's bible with the face
  engine and the best one (ties: the later) becomes the next start image; the frames after it
  are discarded, and the new segment's first frame (which reproduces it) is dropped;
* the bible references stay on every segment's request (reference-conditioned models see them
  again each time);
* each later segment's colour is matched to the chain at the join (Lab mean/std, see
  :func:`colour_transfer`);
* the take is streamed into one H.264 MP4 (:class:`studio.media.video.VideoWriter`, atomic),
  holding in memory only what the next join needs: never more than one window of frames.

:func:`generate_chained` also re-makes one segment of an existing chained take with a new seed,
keeping the others (``resegment``). The sidecar's ``segments`` list (see :func:`generate_chained`)
says where each segment lies and what it started from.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.engine.base import (Backend, Cancelled, CancelledFn, Capabilities, GenerationRequest,
                                Progress, ProgressFn)
from studio.engine.takes import TAKE_CRF, TAKE_PRESET, TakeFile, take_target

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CANDIDATES", "CROSSFADE", "ChainResult", "apply_colour", "colour_transfer",
           "generate_chained", "plan_counts", "snap_total"]

CANDIDATES = 8  # frames at the end of a segment scored for the next segment's start
CROSSFADE = 4  # frames blended into the kept next segment when a re-made one cannot aim at it
_UNITS = 1000  # progress units per segment on the chain's one bar
_GAIN_RANGE = (0.5, 2.0)  # a flat frame (a fade to black) must not blow a segment's colours up


@dataclass(frozen=True)
class ChainResult:
    made: TakeFile
    request: GenerationRequest  # the whole take as made: the snapped total, the first seed
    notes: tuple[str, ...]
    segments: list[dict[str, Any]]


# -- frame counts ----------------------------------------------------------------------------

def _rule(caps: Capabilities) -> tuple[int, int]:
    return max(1, caps.frame_step), caps.frame_offset


def _valid_at_most(n: int, caps: Capabilities) -> int:
    """The largest valid frame count ≤ n (0 when none)."""
    step, off = _rule(caps)
    if n < off:
        return 0
    return step * ((n - off) // step) + off


def _valid_at_least(n: int, caps: Capabilities) -> int:
    step, off = _rule(caps)
    k = max(0, -(-(n - off) // step))
    return step * k + off


def snap_total(n: int, caps: Capabilities) -> int:
    """``n`` snapped to the backend's frame rule without its ``max_frames`` (the chain makes any
    length): Wan's 4k+1 takes 192 to 193; the preview takes any count."""
    step, off = _rule(caps)
    k = max(0, round((n - off) / step))
    return max(step * k + off, off if off > 0 else step, 1)


def _candidates(contributed: int) -> int:
    """How many end frames to score: fewer for short segments, so each segment still advances."""
    return max(1, min(CANDIDATES, contributed // 2))


def plan_counts(total: int, window: int, caps: Capabilities, *, discard: int = 0) -> list[int]:
    """Generated frame counts of the segments for ``total`` frames, each ≤ ``window`` and valid
    for the backend's rule, assuming ``discard`` frames are dropped after each join's chosen
    frame (0: it is always the last). Later segments give all but their first frame."""
    biggest = _valid_at_most(window, caps)
    if biggest < 2:
        raise StudioError(f"segments of at most {window} frames are too short to chain (the model "
                          f"needs {caps.frame_step}k+{caps.frame_offset} frames); raise the shot's "
                          "segment_frames")
    counts = [min(total, biggest)]
    have = counts[0]
    while have < total:
        have -= min(discard, _candidates(counts[-1] - (len(counts) > 1)) - 1)
        n = _next_count(total - have, biggest, caps)
        counts.append(n)
        have += n - 1
    return counts


def _next_count(remaining: int, biggest: int, caps: Capabilities) -> int:
    """A later segment's count: the whole remainder when it fits, else the biggest."""
    if remaining + 1 <= biggest:
        return max(2, _valid_at_least(remaining + 1, caps))
    return biggest


# -- colour --------------------------------------------------------------------------------------

def _lab(frames: np.ndarray) -> np.ndarray:
    import cv2
    import numpy as np

    flat = np.ascontiguousarray(frames, dtype=np.float32).reshape(-1, frames.shape[-2], 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(frames.shape)


def colour_transfer(source: np.ndarray, target: np.ndarray
                    ) -> tuple[list[float], list[float]]:
    """Per-channel (L, a, b) gain and offset that give ``source``'s Lab mean and spread those of
    ``target`` (both uint8 RGB frames)."""
    import numpy as np

    s = _lab(source[None]).reshape(-1, 3)
    t = _lab(target[None]).reshape(-1, 3)
    s_mean, s_std = s.mean(0), s.std(0)
    t_mean, t_std = t.mean(0), t.std(0)
    gain = np.clip(t_std / np.maximum(s_std, 1e-3), *_GAIN_RANGE)
    offset = t_mean - gain * s_mean
    return [round(float(g), 5) for g in gain], [round(float(o), 5) for o in offset]


def apply_colour(frames: np.ndarray, gain: Sequence[float], offset: Sequence[float]
                 ) -> np.ndarray:
    """``frames`` (uint8 RGB, T×H×W×3) with the Lab gain/offset applied, clipped."""
    import cv2
    import numpy as np

    g = np.asarray(gain, dtype=np.float32)
    o = np.asarray(offset, dtype=np.float32)
    out = np.empty_like(frames)
    for i in range(len(frames)):  # frame by frame: a window of float frames would be large
        lab = _lab(frames[i][None])[0] * g + o
        rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
        out[i] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _match(frames: np.ndarray, join: np.ndarray) -> tuple[np.ndarray, dict[str, list[float]]]:
    # At the join, not against segment 1 as a whole: the model re-encodes the start frame with
    # its VAE, and the colour shift of that round trip is what accumulates from segment to
    # segment. Matching the new first frame to the frame it reproduces cancels each shift where
    # it arises, so the chain keeps segment 1's colours and the join shows no jump.
    gain, offset = colour_transfer(frames[0], join)
    return apply_colour(frames, gain, offset), {"gain": gain, "offset": offset}


# -- identity at the joins ---------------------------------------------------------------------

class _Scorer:
    """The character's identity in a frame (best similarity over the bible): loaded once a chain."""

    def __init__(self, identity_refs: Sequence[tuple[str, Path, str]]) -> None:
        self._items = tuple(identity_refs)
        self._loaded = False
        self.engine: Any = None
        self.refs: list[Any] = []
        self.problem = "" if self._items else "the shot has no character bible"

    def _load(self) -> None:
        self._loaded = True
        if not self._items:
            return
        try:
            from studio.identity.analysis import cached_references
            from studio.identity.engines import get_engine

            self.engine = get_engine()
            self.refs = cached_references(self.engine, self._items)
        except (StudioError, ImportError, RuntimeError) as exc:
            self.engine, self.refs = None, []
            self.problem = f"the bible cannot be scored ({exc})"

    @property
    def usable(self) -> bool:
        if not self._loaded:
            self._load()
        return bool(self.refs)

    def score(self, rgb: np.ndarray) -> float | None:
        if not self.usable:
            return None
        from studio.identity.analysis import frame_identity

        return frame_identity(self.engine, rgb, self.refs)


def _choose(scorer: _Scorer, frames: Sequence[np.ndarray], first_index: int,
            cancelled: CancelledFn) -> tuple[int, float | None, list[list[Any]]]:
    """(position in ``frames`` of the chosen frame, its score, [[take frame, score], ...])."""
    scores: list[float | None] = []
    for f in frames:
        if cancelled():
            raise Cancelled()
        scores.append(scorer.score(f) if scorer.usable else None)
    best = len(frames) - 1
    for i, s in enumerate(scores):  # the best score; ties (and no face at all): the later
        b = scores[best]
        if s is not None and (b is None or s >= b):
            best = i
    cands = [[first_index + i, None if s is None else round(s, 4)] for i, s in enumerate(scores)]
    return best, scores[best], cands


# -- one segment -------------------------------------------------------------------------------

def _uses_frames(backend: Backend) -> bool:
    """True when ``generate`` makes the frames in this process: the default ``generate_take``,
    or one that only streams them to the encoder (the preview: ``frames_in_process``)."""
    # The class that defines the generate_take in use must say so itself: a subclass of the
    # preview that writes its own take elsewhere is not one.
    owner = next(c for c in type(backend).__mro__ if "generate_take" in vars(c))
    return owner is Backend or bool(vars(owner).get("frames_in_process", False))


def _generate(backend: Backend, req: GenerationRequest, tmp: Path, name: str, fps: float,
              root: Path | None, on_progress: ProgressFn, cancelled: CancelledFn
              ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """One segment's frames (uint8 T×H×W×3): from ``generate`` when the frames are made here, else
    through the backend's own ``generate_take`` (ComfyUI, the GPU runtime's worker) into the
    chain's temp folder, decoded back."""
    import numpy as np

    if _uses_frames(backend):
        frames = backend.generate(req, on_progress, cancelled)
        record = None
    else:
        from studio.media.video import iter_frames

        made = backend.generate_take(req, tmp / f"{name}.mp4", fps, on_progress, cancelled,
                                     root=root)
        frames = np.stack(list(iter_frames(made.path)))
        Path(made.path).unlink(missing_ok=True)
        record = made.generator
    if cancelled():
        raise Cancelled()
    if (getattr(frames, "ndim", 0) != 4 or frames.shape[0] < 1 or frames.shape[3] != 3
            or frames.dtype != np.uint8):
        raise StudioError(f"the backend returned frames of shape {getattr(frames, 'shape', None)} "
                          f"for {name}; expected uint8 (T, H, W, 3)")
    return frames, record


def _fit(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames at (height, width) ``size`` (a server that returned another size)."""
    import cv2
    import numpy as np

    if frames.shape[1:3] == size:
        return frames
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _save_png(frame: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(frame).save(path)
    return path


class _Bar:
    """The chain's one progress bar: each segment's own reports mapped into the whole."""

    def __init__(self, on_progress: ProgressFn, count: int) -> None:
        self.on_progress, self.count, self.index = on_progress, max(1, count), 0

    def label(self) -> str:
        return f"segment {self.index + 1} of {self.count}"

    def relay(self, p: Progress) -> None:
        from studio.core.tasks import PLACED

        if p.stage in (PLACED, "waiting", "uploading") and p.preview is None:
            self.on_progress(p)  # where the work runs, a farm's queue: as the backend said it
            return
        stage = "loading" if p.stage == "loading" else "generating"
        step = self.index * _UNITS + int(round(_UNITS * p.fraction))
        message = self.label() + (f": {p.message}" if p.message else "")
        # A live preview (a sampler's image) travels on untouched; only the bar is remapped.
        self.on_progress(replace(p, step=step, total=self.count * _UNITS, stage=stage,
                                 message=message, elapsed_s=None, eta_s=None))

    def start(self, index: int, count: int) -> None:
        self.index, self.count = index, max(count, index + 1)
        self.on_progress(Progress(index * _UNITS, self.count * _UNITS, "generating", self.label()))


class _Sink:
    """The take's one encoder, fed frame by frame (even-cropped as encode_take does)."""

    def __init__(self, target: Path, fps: float, height: int, width: int) -> None:
        from studio.media.video import VideoWriter

        self.h, self.w = height - height % 2, width - width % 2
        self.writer = VideoWriter(target, fps, self.w, self.h, crf=TAKE_CRF, preset=TAKE_PRESET)
        self.frames = 0
        self.encode_s = 0.0

    def write(self, frame: np.ndarray) -> None:
        import numpy as np

        t0 = time.perf_counter()
        self.writer.write(np.ascontiguousarray(frame[: self.h, : self.w]))
        self.frames += 1
        self.encode_s += time.perf_counter() - t0

    def close(self) -> None:
        t0 = time.perf_counter()
        self.writer.close()
        self.encode_s += time.perf_counter() - t0


# -- the chain -----------------------------------------------------------------------------------

def generate_chained(backend: Backend, request: GenerationRequest, out_path: Path, *, fps: float,
                     root: Path | None = None, window: int,
                     on_progress: ProgressFn | None = None,
                     cancelled: CancelledFn | None = None,
                     identity_refs: Sequence[tuple[str, Path, str]] = (),
                     resegment: tuple[Path, Sequence[dict[str, Any]], int] | None = None,
                     match_colour: bool = True) -> ChainResult:
    """Generate ``request`` (unsnapped; its references are kept on every segment) as segments of at
    most ``window`` frames into the MP4 ``out_path`` (atomically; inside ``root`` when given).

    ``identity_refs``: the character's bible as (reference id, image, angle); empty: each segment
    starts from the previous one's last frame. ``resegment``: (an existing chained take's video,
    its sidecar's ``segments``, k): re-make segment k with ``request.seed`` and keep the others.
    ``match_colour=False`` leaves each segment's colours as the backend made them.

    The result's ``segments`` (the take sidecar's ``segments``) are dicts: ``index``,
    ``start_frame`` (in the take), ``frames`` (how many it gives the take), ``generated_frames``,
    ``seed``, ``from_frame`` (the take frame it started from; None for the first),
    ``from_identity`` (that frame's score, or None), ``from_candidates`` ([[take frame, score or
    None], ...] of the frames scored), ``colour`` ({"gain": [L, a, b], "offset": [L, a, b]} or
    None), and on a re-made one ``remade: true`` and ``join`` ("last frame" or "cross-fade")."""
    on_progress = on_progress or (lambda p: None)
    cancelled = cancelled or (lambda: False)
    target = take_target(root, out_path) if root is not None else Path(out_path)
    folder = target.parent
    made_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    # Beside the take (takes/<shot>/.chain-<take>-…): the join frames are start images of the
    # next requests, and a backend that writes its own video must write inside the project.
    tmp = Path(tempfile.mkdtemp(prefix=f".chain-{target.stem}-", dir=folder))
    try:
        if resegment is not None:
            return _remake(backend, request, target, tmp, fps=fps, root=root, window=window,
                           on_progress=on_progress, cancelled=cancelled, resegment=resegment,
                           match_colour=match_colour)
        return _chain(backend, request, target, tmp, fps=fps, root=root, window=window,
                      on_progress=on_progress, cancelled=cancelled, scorer=_Scorer(identity_refs),
                      match_colour=match_colour)
    except BaseException:
        if made_folder:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                folder.rmdir()  # only when empty: the shot's first take, cancelled
            except OSError:
                pass
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _base(backend: Backend, request: GenerationRequest, caps: Capabilities
          ) -> tuple[GenerationRequest, int, list[str]]:
    """The snapped request every segment derives from, the snapped total and the snap notes."""
    snapped, notes = backend.snap(request)
    n = request.num_frames
    if snapped.fps != request.fps and request.fps:
        # The backend plays at its native rate (its note says so): the same duration in frames.
        n = max(1, round(n * snapped.fps / request.fps))
    total = snap_total(n, caps)
    # The backend's own frame note speaks of its window; the chain makes the whole length.
    notes = [x for x in notes if not x.startswith("frames ")]
    if total != n:
        step, off = _rule(caps)
        notes.append(f"frames {n} → {total} ({f'{step}k+{off}' if step > 1 else 'any'})")
    return snapped.with_changes(num_frames=total), total, notes


def _segment_request(backend: Backend, base: GenerationRequest, n: int, window: int,
                     **changes: Any) -> GenerationRequest:
    req, _ = backend.snap(base.with_changes(num_frames=n, **changes))
    if req.num_frames > window or req.num_frames < 1:
        raise StudioError(f"the backend snapped a segment of {n} frames to {req.num_frames}, outside "
                          f"its window of {window}")
    return req


def _chain(backend: Backend, request: GenerationRequest, target: Path, tmp: Path, *, fps: float,
           root: Path | None, window: int, on_progress: ProgressFn, cancelled: CancelledFn,
           scorer: _Scorer, match_colour: bool) -> ChainResult:
    caps = backend.capabilities(request.model)
    base, total, notes = _base(backend, request, caps)
    if base.fps and base.fps != request.fps:
        fps = float(base.fps)  # the model plays at its own rate (the snap note says so)
    biggest = _valid_at_most(window, caps)
    counts = plan_counts(total, window, caps)
    bar = _Bar(on_progress, len(counts))
    segments: list[dict[str, Any]] = []
    pending: deque[np.ndarray] = deque()  # the chain's end, not yet written: the next join's candidates
    written = 0
    sink: _Sink | None = None
    size: tuple[int, int] | None = None
    generate_s = 0.0
    records: list[dict[str, Any]] = []
    join_png: Path | None = None
    join_frame: np.ndarray | None = None
    join_info: tuple[int | None, float | None, list[list[Any]]] = (None, None, [])
    k = 0
    try:
        while True:
            have = written + len(pending)
            n = counts[0] if k == 0 else _next_count(total - have, biggest, caps)
            seed = (request.seed + k) % (2 ** 32)
            if k == 0:
                # The shot's end image belongs to the shot's end: only a one-segment chain uses it.
                seg_req = _segment_request(backend, base, n, window,
                                           last_image=base.last_image if n >= total else None)
            else:
                seg_req = _segment_request(backend, base, n, window, start_image=join_png,
                                           crop=(0.0, 0.0, 1.0, 1.0), face_landmarks=None,
                                           last_image=None, seed=seed)
            n = seg_req.num_frames
            remaining_after = total - have - (n - (k > 0))
            estimate = k + 1 + (len(plan_counts(max(1, remaining_after + 1), window, caps))
                                if remaining_after > 0 else 0)
            bar.start(k, estimate)
            t0 = time.perf_counter()
            frames, record = _generate(backend, seg_req, tmp, f"segment-{k + 1}", fps, root,
                                       bar.relay, cancelled)
            generate_s += time.perf_counter() - t0
            if record:
                records.append(record)
            if size is None:
                size = (int(frames.shape[1]), int(frames.shape[2]))
                sink = _Sink(target, fps, *size)
            elif frames.shape[1:3] != size:
                notes.append(f"segment {k + 1} came back {frames.shape[2]}x{frames.shape[1]}: "
                             f"resized to {size[1]}x{size[0]}")
                frames = _fit(frames, size)
            colour = None
            if k > 0:
                assert join_frame is not None
                if match_colour:
                    frames, colour = _match(frames, join_frame)
                frames = frames[1:]  # its first frame reproduces the join frame, already in place
            start = written + len(pending)
            segments.append({"index": k, "start_frame": start, "frames": len(frames),
                             "generated_frames": int(n), "seed": int(seg_req.seed),
                             "from_frame": join_info[0], "from_identity": join_info[1],
                             "from_candidates": join_info[2], "colour": colour})
            pending.extend(frames)
            del frames
            if written + len(pending) >= total:
                break
            # Everything before the next join's candidates is final: write it out.
            m = _candidates(segments[-1]["frames"])
            assert sink is not None
            while len(pending) > m:
                sink.write(pending.popleft())
                written += 1
            # Copies: views would keep the whole segment's array alive until the next join.
            pending = deque(f.copy() for f in pending)
            if cancelled():
                raise Cancelled()
            bar.on_progress(Progress((k + 1) * _UNITS, bar.count * _UNITS, "generating",
                                     f"segment {k + 1} of {bar.count}: choosing the next start "
                                     "frame by identity"))
            cands = list(pending)
            pos, score, scored = _choose(scorer, cands, written, cancelled)
            dropped = len(pending) - 1 - pos
            for _ in range(dropped):  # frames after the chosen one are not part of the take
                pending.pop()
            segments[-1]["frames"] -= dropped
            join_frame = pending[-1]
            join_png = _save_png(join_frame, tmp / f"join-{k + 2}.png")
            join_info = (written + pos, None if score is None else round(score, 4), scored)
            k += 1
        # Trim to the total: the last segment's count is the next valid one above what was left.
        extra = written + len(pending) - total
        for _ in range(max(0, extra)):
            pending.pop()
        segments[-1]["frames"] -= max(0, extra)
        on_progress(Progress(bar.count * _UNITS, bar.count * _UNITS, "encoding",
                             f"writing the take ({total} frames from {len(segments)} segments)"))
        assert sink is not None
        while pending:
            if cancelled():
                raise Cancelled()
            sink.write(pending.popleft())
            written += 1
        sink.close()
    except BaseException:
        if sink is not None:
            sink.writer.abort()
        raise
    notes[:0] = _describe(segments, total, window, scorer)
    made = TakeFile(path=target, width=sink.w, height=sink.h, frames=sink.frames, fps=float(fps),
                    frame_width=size[1], frame_height=size[0], bytes=target.stat().st_size,
                    generate_s=round(generate_s, 4), encode_s=round(sink.encode_s, 4),
                    generator={"segments": records} if records else None)
    whole = base.with_changes(num_frames=total, seed=segments[0]["seed"])
    return ChainResult(made=made, request=whole, notes=tuple(notes), segments=segments)


def _describe(segments: list[dict[str, Any]], total: int, window: int, scorer: _Scorer) -> list[str]:
    """The chain in words for the user."""
    out = [f"chained: {total} frames in {len(segments)} segments of at most {window} frames"]
    if len(segments) > 1 and not scorer.usable:
        out.append(f"{scorer.problem}: each segment starts from the previous one's last frame")
    for seg in segments[1:]:
        i = seg["index"] + 1
        where = f"segment {i} (frames {seg['start_frame']}–{seg['start_frame'] + seg['frames'] - 1}) "
        where += f"starts from frame {seg['from_frame']}"
        cands = seg["from_candidates"]
        last = cands[-1] if cands else None
        if seg["from_identity"] is not None:
            where += f" (identity {seg['from_identity']:.3f}"
            if last is not None and last[0] != seg["from_frame"]:
                where += (f"; the last frame, {last[0]}, scored "
                          f"{'no face' if last[1] is None else format(last[1], '.3f')}")
            where += ")"
        elif scorer.usable:
            where += f" (no face in the last {len(cands)} frames: the last one)"
        out.append(where)
    return out


# -- re-making one segment -------------------------------------------------------------------------

def _check_segments(segments: Sequence[dict[str, Any]], k: int, video: Path) -> list[dict[str, Any]]:
    segs = [dict(s) for s in segments]
    start = 0
    try:
        for s in segs:
            if int(s["start_frame"]) != start or int(s["frames"]) < 1:
                raise ValueError
            start += int(s["frames"])
        for s in segs[1:]:
            if s.get("from_frame") is None or not 0 <= int(s["from_frame"]) < int(s["start_frame"]):
                raise ValueError
    except (KeyError, TypeError, ValueError):
        raise StudioError("the take's segments are not a contiguous chain (its sidecar was "
                          "edited?): re-make the whole take", video) from None
    if not 0 <= k < len(segs):
        raise StudioError(f"the take has no segment {k + 1}", video)
    return segs


def _remake(backend: Backend, request: GenerationRequest, target: Path, tmp: Path, *, fps: float,
            root: Path | None, window: int, on_progress: ProgressFn, cancelled: CancelledFn,
            resegment: tuple[Path, Sequence[dict[str, Any]], int], match_colour: bool
            ) -> ChainResult:
    import numpy as np

    from studio.media.video import iter_frames, probe

    video, old, k = Path(resegment[0]), resegment[1], int(resegment[2])
    segs = _check_segments(old, k, video)
    total = sum(int(s["frames"]) for s in segs)
    info = probe(video, what="the take whose segment is re-made")
    if info.frames != total:
        raise StudioError(f"the take has {info.frames} frames but its segments add up to {total}",
                          video)
    fps = info.fps  # the kept segments' rate, whatever the shot says now
    caps = backend.capabilities(request.model)
    base, _total, notes = _base(backend, request, caps)
    notes = [x for x in notes if not x.startswith("frames ")]
    seg = segs[k]
    first, count = int(seg["start_frame"]), int(seg["frames"])
    end = first + count  # the first frame after the re-made range
    nxt = segs[k + 1] if k + 1 < len(segs) else None
    aim = nxt is not None and caps.last_frame
    from_frame = None if k == 0 else int(seg["from_frame"])
    fade = min(CROSSFADE, count - 1) if nxt is not None and not aim else 0

    # First pass over the old take: the frames the new segment starts from, aims at or fades into.
    wanted = {i for i in (from_frame, end - 1) if i is not None} | set(range(end - fade, end))
    kept: dict[int, np.ndarray] = {}
    for i, frame in enumerate(iter_frames(video)):
        if i in wanted:
            kept[i] = frame
        if cancelled():
            raise Cancelled()
    if (info.height, info.width) != (base.height - base.height % 2, base.width - base.width % 2):
        raise StudioError(f"the shot is now {base.width}x{base.height} but the take is "
                          f"{info.width}x{info.height}: re-make the whole take", video)
    # The new segment gives the same frames as the old one (plus the join frame it starts from);
    # aimed at the kept next segment's join frame, it must end exactly there.
    need = count + (k > 0)
    n = int(seg.get("generated_frames") or need)
    if aim or n < need:  # aimed: as few frames as the rule allows, so it ends on the aim
        n = _valid_at_least(need, caps)
    n = min(n, _valid_at_most(window, caps))
    if n < need:
        raise StudioError(f"segment {k + 1} gives {count} frames, more than this model's window "
                          f"of {window}: re-make the whole take", video)
    changes: dict[str, Any] = {"seed": int(request.seed) % (2 ** 32)}
    if k > 0:
        changes.update(start_image=_save_png(kept[from_frame], tmp / "from.png"),
                       crop=(0.0, 0.0, 1.0, 1.0), face_landmarks=None)
    changes["last_image"] = (_save_png(kept[end - 1], tmp / "to.png") if aim
                             else (base.last_image if nxt is None else None))
    seg_req = _segment_request(backend, base, n, window, **changes)
    bar = _Bar(on_progress, 1)
    bar.start(0, 1)
    t0 = time.perf_counter()
    frames, record = _generate(backend, seg_req, tmp, f"segment-{k + 1}", fps, root, bar.relay,
                               cancelled)
    generate_s = time.perf_counter() - t0
    size = (info.height, info.width)
    frames = _fit(frames[:, : size[0], : size[1]], size)  # the take's frames are even-cropped
    colour = None
    if k > 0:
        if match_colour:
            frames, colour = _match(frames, kept[from_frame])
        frames = frames[1:]
    if aim and len(frames) > count:
        # A count the rule allows only above what the range holds: drop the surplus evenly from
        # the middle, keeping both ends (the start and the frame it was aimed at).
        frames = frames[np.round(np.linspace(0, len(frames) - 1, count)).astype(int)]
    frames = frames[:count]
    if fade:
        # No last-frame conditioning: blend the new segment's end into the old frames leading
        # into the kept next segment, reaching them on the range's last frame.
        for j in range(fade):
            a = (j + 1) / fade
            i = count - fade + j
            old_f = kept[end - fade + j].astype(np.float32)
            frames[i] = np.clip(frames[i] * (1 - a) + old_f * a + 0.5, 0, 255).astype(np.uint8)
    new = dict(seg, seed=int(seg_req.seed), generated_frames=int(n), colour=colour, remade=True,
               join=None if nxt is None else ("last frame" if aim else "cross-fade"))
    segs[k] = new
    # Second pass: the old frames around the new range, re-encoded into the new take.
    on_progress(Progress(_UNITS, _UNITS, "encoding", f"writing the take with segment {k + 1} re-made"))
    sink = _Sink(target, fps, *size)
    try:
        for i, frame in enumerate(iter_frames(video)):
            if cancelled():
                raise Cancelled()
            sink.write(frames[i - first] if first <= i < end else frame)
        sink.close()
    except BaseException:
        sink.writer.abort()
        raise
    where = "the shot's start image" if k == 0 else f"frame {from_frame}"
    notes.insert(0, f"segment {k + 1} of {len(segs)} re-made (frames {first}–{end - 1}, seed "
                    f"{seg_req.seed}) from {where}; the other segments are kept")
    if nxt is not None:
        notes.insert(1, f"segment {k + 1} was aimed at frame {end - 1}, where segment {k + 2} "
                        "continues" if aim else
                        f"this model cannot aim at a last frame: segment {k + 1} cross-fades into "
                        f"segment {k + 2} over its last {fade} frames; the join may show")
    if sink.frames != total:
        raise StudioError(f"the re-made take has {sink.frames} frames instead of {total}", video)
    made = TakeFile(path=target, width=sink.w, height=sink.h, frames=sink.frames, fps=float(fps),
                    frame_width=size[1], frame_height=size[0], bytes=target.stat().st_size,
                    generate_s=round(generate_s, 4), encode_s=round(sink.encode_s, 4),
                    generator={"segments": [record]} if record else None)
    whole = base.with_changes(num_frames=total, seed=int(segs[0]["seed"]))
    return ChainResult(made=made, request=whole, notes=tuple(notes), segments=segs)

