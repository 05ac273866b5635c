"""A take's identity analysis as the viewer shows it, built from the one analysis record
(:mod:`studio.identity.record`, which owns the files and their format).

A missing arrays file just means no heatmap/face overlay; a damaged or hostile file raises
:class:`~studio.core.errors.AssetError` naming it, so the viewer can say what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.identity.record import METRICS as _KEYS
from studio.identity.record import AnalysisRecord, DriftRange, read_record

if TYPE_CHECKING:
    import numpy as np

__all__ = ["METRICS", "DriftRange", "TakeAnalysis", "frame_note", "load_analysis",
           "state_runs"]

_LABELS = {"identity": "Identity", "proportions": "Proportions", "eye_shape": "Eye shape",
           "skin_tone": "Skin tone", "stability": "Stability", "hair": "Hair",
           "detail": "Ears and neck"}
# Per-frame metric columns, in the order the plot offers them (label, key). A metric the record
# gains before the viewer knows its label still shows, under its key.
METRICS: list[tuple[str, str]] = [(_LABELS.get(k, k.replace("_", " ").capitalize()), k)
                                  for k in _KEYS]


def state_runs(states: list[str], only: str | None = None) -> list[tuple[int, int, str]]:
    """Consecutive frames of one state as (first, last, state), inclusive; with ``only``, just
    the runs of that state. The ruler and the plot paint runs, not single frames."""
    out: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, len(states) + 1):
        if i == len(states) or states[i] != states[start]:
            if only is None or states[start] == only:
                out.append((start, i - 1, states[start]))
            start = i
    return out


def frame_note(state: str, reasons: list[str], cautions: list[str]) -> str:
    """One frame's verdict in words: "drift: different person", "close: identity close to the
    threshold", "uncertain: the landmark fit is unstable", "match"."""
    why = reasons if state == "drift" else cautions
    return f"{state}: {'; '.join(why)}" if why else state


@dataclass
class TakeAnalysis:
    """What the viewer draws from a record: columns as arrays, the arrays of the npz."""

    record: AnalysisRecord
    json_path: Path
    frames: int
    threshold: float
    engine: dict[str, Any]  # name, model, version, license, threshold
    metrics: dict[str, "np.ndarray"]  # float32 (T,), NaN where not measurable
    flagged: "np.ndarray"  # bool (T,): exactly the frames whose state is "drift"
    reasons: list[list[str]]
    matched_reference: list[str | None]
    drift_ranges: list[DriftRange]
    heatmaps: "np.ndarray | None" = None  # uint8 (T, h, w)
    landmarks: "np.ndarray | None" = None  # float32 (T, 68, 2)
    boxes: "np.ndarray | None" = None  # float32 (T, 4)
    mtime_ns: int = 0
    # Per frame: "match" | "close" | "drift" | "uncertain", and why a frame is close/uncertain.
    states: list[str] | None = None
    cautions: list[list[str]] | None = None

    def __post_init__(self) -> None:
        if self.states is None:
            self.states = self.record.states()
        if self.cautions is None:
            self.cautions = self.record.cautions()

    @classmethod
    def from_record(cls, rec: AnalysisRecord) -> "TakeAnalysis":
        arrays = rec.arrays
        return cls(rec, rec.json_path or Path(), rec.frame_count, rec.threshold,
                   rec.engine.model_dump(), rec.metrics(), rec.flagged(), rec.reasons(),
                   rec.matched_references(), list(rec.drift_ranges),
                   arrays.heatmaps if arrays else None, arrays.landmarks if arrays else None,
                   arrays.boxes if arrays else None, rec.mtime_ns,
                   rec.states(), rec.cautions())

    @property
    def identity_mean(self) -> float | None:
        return self.record.identity_mean

    @property
    def engine_name(self) -> str:
        return self.record.engine.name

    @property
    def summary(self) -> dict[str, Any]:
        return self.record.summary.model_dump()

    def metric(self, key: str) -> "np.ndarray":
        return self.metrics[key]

    def state(self, i: int) -> str | None:
        """Frame ``i``'s state (None past the analysed frames)."""
        assert self.states is not None
        return self.states[i] if 0 <= i < len(self.states) else None

    def note(self, i: int) -> str:
        """Frame ``i``'s verdict in words (:func:`frame_note`); "" past the analysed frames."""
        st = self.state(i)
        if st is None:
            return ""
        assert self.cautions is not None
        return frame_note(st, self.reasons[i], self.cautions[i])

    def uncertain_runs(self) -> list[tuple[int, int]]:
        assert self.states is not None
        return [(s, e) for s, e, _ in state_runs(self.states, "uncertain")]


def load_analysis(project_folder: Path, take_id: str) -> TakeAnalysis | None:
    """The analysis of a take with its arrays, or None when it has not been analysed (yet)."""
    rec = read_record(project_folder, take_id, arrays=True)
    return None if rec is None else TakeAnalysis.from_record(rec)
