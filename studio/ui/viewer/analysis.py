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

__all__ = ["METRICS", "DriftRange", "TakeAnalysis", "load_analysis"]

_LABELS = {"identity": "Identity", "proportions": "Proportions", "eye_shape": "Eye shape",
           "skin_tone": "Skin tone", "stability": "Stability"}
# Per-frame metric columns, in the order the plot offers them (label, key).
METRICS: list[tuple[str, str]] = [(_LABELS[k], k) for k in _KEYS]


@dataclass
class TakeAnalysis:
    """What the viewer draws from a record: columns as arrays, the arrays of the npz."""

    record: AnalysisRecord
    json_path: Path
    frames: int
    threshold: float
    engine: dict[str, Any]  # name, model, version, license, threshold
    metrics: dict[str, "np.ndarray"]  # float32 (T,), NaN where not measurable
    flagged: "np.ndarray"  # bool (T,)
    reasons: list[list[str]]
    matched_reference: list[str | None]
    drift_ranges: list[DriftRange]
    heatmaps: "np.ndarray | None" = None  # uint8 (T, h, w)
    landmarks: "np.ndarray | None" = None  # float32 (T, 68, 2)
    boxes: "np.ndarray | None" = None  # float32 (T, 4)
    mtime_ns: int = 0

    @classmethod
    def from_record(cls, rec: AnalysisRecord) -> "TakeAnalysis":
        arrays = rec.arrays
        return cls(rec, rec.json_path or Path(), rec.frame_count, rec.threshold,
                   rec.engine.model_dump(), rec.metrics(), rec.flagged(), rec.reasons(),
                   rec.matched_references(), list(rec.drift_ranges),
                   arrays.heatmaps if arrays else None, arrays.landmarks if arrays else None,
                   arrays.boxes if arrays else None, rec.mtime_ns)

    @property
    def identity_mean(self) -> float | None:
        return self.record.identity_mean

    @property
    def summary(self) -> dict[str, Any]:
        return self.record.summary.model_dump()

    def metric(self, key: str) -> "np.ndarray":
        return self.metrics[key]


def load_analysis(project_folder: Path, take_id: str) -> TakeAnalysis | None:
    """The analysis of a take with its arrays, or None when it has not been analysed (yet)."""
    rec = read_record(project_folder, take_id, arrays=True)
    return None if rec is None else TakeAnalysis.from_record(rec)
