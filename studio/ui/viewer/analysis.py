"""Reading a take's identity analysis (``analysis/<take_id>.json`` + ``.npz``) for display.

The identity helper owns the format (docs/IDENTITY.md); this reader is tolerant: unknown keys are
ignored, a missing ``.npz`` just means no heatmap/face overlay, and a corrupt file raises
:class:`AssetError` with the file name so the viewer can say what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import AssetError

if TYPE_CHECKING:
    import numpy as np

# Per-frame metric columns, in the order the plot offers them (label, key).
METRICS: list[tuple[str, str]] = [
    ("Identity", "identity"),
    ("Proportions", "proportions"),
    ("Eye shape", "eye_shape"),
    ("Skin tone", "skin_tone"),
    ("Stability", "stability"),
]
DEFAULT_THRESHOLD = 0.6


@dataclass
class DriftRange:
    start: int
    end: int  # inclusive
    reasons: list[str] = field(default_factory=list)


@dataclass
class TakeAnalysis:
    json_path: Path
    frames: int
    threshold: float
    engine: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, "np.ndarray"]  # float32 (T,), NaN where not measurable
    flagged: "np.ndarray"  # bool (T,)
    reasons: list[list[str]]
    matched_reference: list[str | None]
    drift_ranges: list[DriftRange]
    heatmaps: "np.ndarray | None" = None  # uint8 (T, h, w)
    landmarks: "np.ndarray | None" = None  # float32 (T, 68, 2)
    boxes: "np.ndarray | None" = None  # float32 (T, 4)
    mtime_ns: int = 0

    @property
    def identity_mean(self) -> float | None:
        v = self.summary.get("identity_mean")
        return float(v) if isinstance(v, (int, float)) else None

    def metric(self, key: str) -> "np.ndarray":
        import numpy as np

        return self.metrics.get(key, np.full(self.frames, np.nan, np.float32))


def analysis_paths(project_folder: Path, take_id: str) -> tuple[Path, Path]:
    base = Path(project_folder) / "analysis"
    return base / f"{take_id}.json", base / f"{take_id}.npz"


def _float_or_nan(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def load_analysis(project_folder: Path, take_id: str) -> TakeAnalysis | None:
    """The analysis of a take, or None when it has not been analysed (yet)."""
    import numpy as np

    jpath, npath = analysis_paths(project_folder, take_id)
    if not jpath.is_file():
        return None
    try:
        mtime = jpath.stat().st_mtime_ns
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
            raise ValueError("no 'frames' list")
        recs = [r for r in doc["frames"] if isinstance(r, dict)]
        recs.sort(key=lambda r: int(r.get("index", 0)))
        take = doc.get("take") or {}
        n = max(int(take.get("frames") or 0), len(recs))
        engine = doc.get("engine") or {}
        threshold = engine.get("threshold")
        threshold = float(threshold) if isinstance(threshold, (int, float)) else DEFAULT_THRESHOLD
        metrics = {key: np.full(n, np.nan, np.float32) for _, key in METRICS}
        flagged = np.zeros(n, bool)
        reasons: list[list[str]] = [[] for _ in range(n)]
        matched: list[str | None] = [None] * n
        for r in recs:
            i = int(r.get("index", -1))
            if not 0 <= i < n:
                continue
            for _, key in METRICS:
                metrics[key][i] = _float_or_nan(r.get(key))
            flagged[i] = bool(r.get("flagged"))
            reasons[i] = [str(x) for x in (r.get("reasons") or [])]
            ref = r.get("matched_reference")
            matched[i] = str(ref) if ref else None
        summary = doc.get("summary") or {}
        ranges = []
        for d in summary.get("drift_ranges") or []:
            try:
                ranges.append(DriftRange(int(d["start"]), int(d["end"]),
                                         [str(x) for x in d.get("reasons") or []]))
            except (KeyError, TypeError, ValueError):
                continue
        if not ranges and flagged.any():
            ranges = ranges_from_flags(flagged)
    except (OSError, ValueError, TypeError) as exc:
        raise AssetError(f"analysis file is unreadable: {exc}", jpath) from None
    result = TakeAnalysis(jpath, n, threshold, engine, summary, metrics, flagged, reasons,
                          matched, ranges, mtime_ns=mtime)
    if npath.is_file():
        try:
            with np.load(npath, allow_pickle=False) as z:
                if "heatmaps" in z.files:
                    result.heatmaps = np.ascontiguousarray(z["heatmaps"], dtype=np.uint8)
                if "landmarks" in z.files:
                    result.landmarks = np.asarray(z["landmarks"], np.float32)
                if "boxes" in z.files:
                    result.boxes = np.asarray(z["boxes"], np.float32)
        except (OSError, ValueError) as exc:
            raise AssetError(f"analysis arrays are unreadable: {exc}", npath) from None
    return result


def ranges_from_flags(flagged: "np.ndarray") -> list[DriftRange]:
    out: list[DriftRange] = []
    start = None
    for i, f in enumerate(flagged.tolist() + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append(DriftRange(start, i - 1, []))
            start = None
    return out
