"""What a take's sidecar says about how it was made, as the viewer shows it: the segments of a
chained long take (``studio.engine.chain``) and the bible references the backend was
conditioned on. Both are read only through :func:`studio.engine.takes.sidecar_segments` and
:func:`studio.engine.takes.sidecar_references`, which own the format.

The sidecar is a small JSON file read on the UI thread when a take is opened, beside the
analysis record the viewer already reads there (:func:`studio.ui.viewer.analysis.load_analysis`);
it is cached per file by mtime, so scrubbing and repaints never touch the disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.engine.takes import Segment, read_sidecar, sidecar_references, sidecar_segments

if TYPE_CHECKING:
    import numpy as np

    from studio.core.document import ProjectDocument
    from studio.core.model import Take

__all__ = ["Segment", "TakeMaking", "load_making", "segment_identity", "segment_tooltip",
           "reference_tooltip"]

# Why the reference chooser (studio.engine.references) picked a reference, in words.
WHY_WORDS = {"start angle": "nearest the start image's angle", "front": "the front reference",
             "angle": "by angle", "picked": "picked for this shot"}


@dataclass
class TakeMaking:
    """How a take was made: its segments ([] when made in one piece) and the references it was
    generated against; ``error`` says why the segments (or the whole sidecar) could not be read —
    then ``segments`` is empty."""

    segments: list[Segment] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


_CACHE: dict[str, tuple[int, int, TakeMaking]] = {}  # sidecar path -> (mtime, frames, result)


def load_making(document: "ProjectDocument", take: "Take") -> TakeMaking:
    """The take's segments and references from its sidecar (cached by the file's mtime). A take
    without a sidecar (older projects, imported takes) has neither, and no error."""
    if take.sidecar is None or document.folder is None:
        return TakeMaking()
    try:
        path = document.path_of(take.sidecar)
    except StudioError as exc:
        return TakeMaking(error=f"the take's sidecar is unreadable: {exc}")
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return TakeMaking(error=f"the take's sidecar is missing: {path}")
    key = str(path)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == mtime and hit[1] == take.frames:
        return hit[2]
    try:
        side = read_sidecar(path)
    except StudioError as exc:
        made = TakeMaking(error=str(exc))
    else:
        refs = sidecar_references(side)
        try:
            made = TakeMaking(sidecar_segments(side, take.frames), refs)
        except StudioError as exc:
            made = TakeMaking([], refs, f"{exc} ({path.name})")
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[key] = (mtime, take.frames, made)
    return made


def segment_identity(identity: "np.ndarray | None", seg: Segment) -> float | None:
    """Mean identity over the segment's frames, frames without a value skipped (None: none)."""
    if identity is None:
        return None
    values = [float(v) for v in identity[seg.start_frame:seg.end_frame + 1] if v == v]
    return math.fsum(values) / len(values) if values else None


def _ident(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def segment_tooltip(seg: Segment, identity: float | None, analysed: bool = True) -> str:
    """"Segment 2: frames 81–160, seed 1234, started from frame 78 (identity 0.83); identity
    0.81"."""
    if seg.from_frame is None:
        start = "started from the shot's start image"
    else:
        start = f"started from frame {seg.from_frame}"
        if seg.from_identity is not None:
            start += f" (identity {seg.from_identity:.2f})"
    text = (f"Segment {seg.index + 1}: frames {seg.start_frame}–{seg.end_frame}, seed {seg.seed},"
            f" {start}; ")
    text += f"identity {_ident(identity)}" if analysed else "not analysed yet"
    if seg.remade:
        text += "\nRe-made with a new seed (the other segments kept)"
    return text


def reference_tooltip(document: "ProjectDocument", entry: dict[str, Any]) -> str:
    """What a reference the take was generated against was: character, angle, why it was
    chosen — and whether the bible still has it."""
    from studio.core.model import Angle

    project = document.project
    char = project.character(entry.get("character_id") or "") if entry.get("character_id") \
        else None
    name = char.name if char is not None else (entry.get("character_id") or "unknown character")
    angle = entry.get("angle") or ""
    try:
        angle = Angle(angle).label
    except ValueError:
        pass
    why = entry.get("why") or ""
    lines = [f"{name} · {angle or 'no angle'}" + (f" — {WHY_WORDS.get(why, why)}" if why else ""),
             str(entry.get("asset") or "")]
    found = project.find_reference(entry.get("reference_id") or "") \
        if entry.get("reference_id") else None
    if found is None:
        lines.append("Not in the bible any more")
    elif found[1].asset != entry.get("asset"):
        lines.append("The bible's image for this reference has changed since")
    return "\n".join(lines)
