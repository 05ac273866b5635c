"""Give a take up early when its live previews clearly show another person.

Backends that show their work as it goes (ComfyUI's sampler previews, the preview backend's
frames, a diffusers step callback's decoded latents) send ``Progress(..., preview=(fmt, bytes))``.
The runner (``studio.engine.runner._with_judge``) feeds each one to a :class:`PreviewJudge`,
which scores the faces in it against the character's bible (the best match counts) and turns
``gave_up`` on once ``needed`` scored previews in a row are under ``below``; the backend then
stops as on a cancel and the job raises ``core.errors.GaveUp``. Previews without a face never count against a take
(early denoising steps are blur). Scoring is throttled so it costs a bounded share of the
generation (see :class:`PreviewJudge`).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from studio.identity.analysis import ReferenceFace
    from studio.identity.engines import FaceEngine

# How far under the face engine's threshold a preview must score to count as "another person".
# Measured with the dlib engine (threshold 0.50) on the preview backend's own previews (832x480
# takes, previews 320 px wide, JPEG q80) of seven real people (the astronaut and the six of
# insightface's t1.jpg), five camera/face moves each, brightness x0.65 / x1 / x1.35 with a ±10%
# flicker: the same person scored 0.65-0.96 (5th percentile 0.72; 522 previews); another
# person 0.22-0.54 (95th percentile 0.45; 3132 previews; the highest were two look-alike t1
# faces). The line at 0.45 leaves 0.20 under the lowest same-person preview and is above 95% of
# other-person ones; needing three in a row covers the rest. ArcFace (threshold 0.35) was not
# measured (no model pack on this machine).
GIVE_UP_MARGIN = 0.05

DEFAULT_NEEDED = 3
# At most one scoring per this many seconds, and scoring busy at most MAX_SHARE of the time (a
# slow engine waits longer between scorings): half a CPU core at most, beside a generation that
# runs on the GPU (or, for the CPU preview backend, on the other cores).
DEFAULT_MIN_INTERVAL_S = 0.25
MAX_SHARE = 0.5

def decode_preview(fmt: str, data: bytes) -> "np.ndarray":
    """A live preview (JPEG, PNG, WebP: whatever PIL reads) as an RGB uint8 array."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class PreviewJudge:
    """Watches a take's live previews; ``gave_up`` turns True once ``needed`` scored previews in
    a row have an identity under ``below`` (default: the engine's threshold − GIVE_UP_MARGIN).

    ``feed`` is called on the backend's progress thread for every preview and returns at once:
    the scoring runs on a thread of its own (the generation goes on meanwhile; on a GPU backend
    it costs nothing), one at a time, and a preview arriving while one runs is dropped. It scores
    at most one preview per ``min_interval_s`` and waits at least (1 − max_share) / max_share
    times the last scoring's cost before the next, so scoring uses at most ``max_share`` of one
    CPU core (a 320 px preview costs 0.1-0.2 s with dlib on a small CPU, nearly all of it the
    embedding). The verdict lands between two frames; the runner's cancel check then stops the
    backend. The bible is prepared lazily on the first preview (cached across judges); when it
    has no usable face the judge stays silent and says so in its record.
    """

    def __init__(self, identity_refs: Sequence[tuple[str, Path, str]],
                 below: float | None = None, *, engine: "FaceEngine | None" = None,
                 min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
                 needed: int = DEFAULT_NEEDED, max_share: float = MAX_SHARE,
                 background: bool = True) -> None:
        self.identity_refs = tuple(identity_refs)
        self._below = below
        self._engine = engine
        self.min_interval_s = float(min_interval_s)
        self.needed = max(1, int(needed))
        self.max_share = min(max(float(max_share), 0.01), 1.0)
        self.gave_up = False
        self.reason = ""
        self.scores: list[tuple[float, float | None]] = []
        self.fed = 0
        self.skipped = 0
        self.scoring_s = 0.0
        self.problem = ""  # why the judge could not judge (no usable reference face)
        self._refs: list[ReferenceFace] | None = None
        self._t0 = time.perf_counter()
        self._next_at = float("-inf")
        self._run: list[float] = []  # the current run of scores under the line
        self._lock = threading.Lock()  # one scoring at a time; previews meanwhile are dropped
        self._idle = threading.Event()
        self._idle.set()
        self.background = bool(background)

    # -- the rule -------------------------------------------------------------------------------
    @property
    def engine(self) -> "FaceEngine":
        if self._engine is None:
            from studio.identity.engines import get_engine

            self._engine = get_engine()
        return self._engine

    @property
    def below(self) -> float:
        if self._below is None:
            self._below = round(float(self.engine.threshold) - GIVE_UP_MARGIN, 4)
        return self._below

    # -- feeding --------------------------------------------------------------------------------
    def feed(self, fmt: str, data: bytes) -> bool:
        """Take this preview for scoring if it is time to (True), else drop it (False: throttled,
        a scoring still running, or the verdict already in). Cheap on the caller's thread: the
        scoring runs on a thread of its own unless the judge was made with
        ``background=False``. Never raises: a preview that cannot be read goes unscored."""
        self.fed += 1
        if self.gave_up or self.problem or time.perf_counter() < self._next_at:
            self.skipped += 1
            return False
        if not self._lock.acquire(blocking=False):
            self.skipped += 1
            return False
        if not self.background:
            try:
                self._score(fmt, data)
            finally:
                self._lock.release()
            return True
        self._idle.clear()

        def work() -> None:
            try:
                self._score(fmt, data)
            finally:
                self._lock.release()
                self._idle.set()

        threading.Thread(target=work, name="preview-judge", daemon=True).start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the scoring in flight (False: still running after ``timeout``)."""
        return self._idle.wait(timeout)

    def _score(self, fmt: str, data: bytes) -> float | None:
        if self._refs is None:
            from studio.core.errors import StudioError

            try:
                from studio.identity.analysis import cached_references

                self._refs = cached_references(self.engine, self.identity_refs)
            except StudioError as exc:
                self.problem = f"cannot judge previews: {exc}"
                return None
        t0 = time.perf_counter()
        try:
            score = self.identity(decode_preview(fmt, data))
        except Exception:  # a truncated or odd preview: no verdict from it
            score = None
        t1 = time.perf_counter()
        cost = t1 - t0
        self.scoring_s += cost
        self._next_at = t1 + max(self.min_interval_s,
                                 cost * (1.0 - self.max_share) / self.max_share)
        self.scores.append((round(t0 - self._t0, 3), None if score is None else round(score, 4)))
        if score is None:
            return None  # no face (blurry early steps, a face turned away): not counted at all
        if score < self.below:
            self._run.append(score)
            if len(self._run) >= self.needed:
                self.reason = (f"its live preview shows another person: identity "
                               f"{max(self._run):.2f} on {len(self._run)} previews in a row, "
                               f"under {self.below:.2f}")
                self.gave_up = True
        else:
            self._run.clear()
        return score

    def identity(self, rgb: "np.ndarray") -> float | None:
        """The character's identity in a preview: the best similarity of any face in it to the
        bible (None: no face; every face counts, so a two-shot is judged by its character's
        face, not by the biggest one)."""
        from studio.identity.analysis import cached_references, frame_identity

        refs = self._refs if self._refs is not None else cached_references(self.engine,
                                                                           self.identity_refs)
        return frame_identity(self.engine, rgb, refs)

    def record(self) -> dict[str, Any]:
        """What the sidecar keeps: the line, every scoring (seconds since the judge was made,
        identity or None for no face), the verdict."""
        rec: dict[str, Any] = {
            "threshold": self.below,
            "needed": self.needed,
            "scores": [[t, s] for t, s in self.scores],
            "gave_up": self.gave_up,
            "reason": self.reason,
            "previews": self.fed,
            "skipped": self.skipped,
            "scoring_s": round(self.scoring_s, 4),
        }
        if self._engine is not None:
            rec["engine"] = self._engine.key
        if self.problem:
            rec["problem"] = self.problem
        return rec
