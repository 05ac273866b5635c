"""The identity analysis record of a take: one model, one reader, one writer.

A take's analysis is ``analysis/<take_id>.json`` (this model, :class:`AnalysisRecord`) plus
``analysis/<take_id>.npz`` (:class:`AnalysisArrays`: heatmaps uint8 (T, ceil(H/8), ceil(W/8)),
landmarks float32 (T, 68, 2), boxes float32 (T, 4); NaN where no face; for a shot with several
characters also cast_boxes float32 (C, T, 4), one row per entry of the record's ``cast``). Nothing else in studio
opens these files: the identity API, the viewer, the badges, the export report and interchange,
and the CLI all go through :func:`read_record` / :func:`write_record` (docs/IDENTITY.md).

Policy:

* **Strict**: every model forbids unknown keys and coerces nothing (``"0.5"`` is not a number,
  ``true`` is not 1); scores lie in [0, 1]; the frame list, drift ranges, worst frames and
  matched references must agree with each other and with the take block. The writer validates
  the same way, so an analysis that drifts from this model fails where it is written.
* **Versioned**: ``"format"`` is the schema version (:data:`FORMAT`). Older files are migrated on
  read (:data:`MIGRATIONS`); a newer file is refused with a clear message.
* **Hostile input** gives :class:`~studio.core.errors.AssetError` naming the file, never a
  traceback or a large allocation: size limits on both files, JSON depth, types, NaN/Infinity,
  and each ``.npz`` member's shape and dtype are checked from its ``.npy`` header before a byte
  of the array is read; pickles are refused.
* **Atomic**: the npz is written first and the JSON last (its presence marks a complete analysis);
  an existing JSON is removed before the arrays are replaced, so a crash never pairs an old JSON
  with new arrays.

Pure Python at import (pydantic, no numpy): the storyboard badges read records at start-up.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from studio.core.atomic import atomic_write_bytes, atomic_write_text
from studio.core.errors import AssetError
from studio.core.safeio import open_regular, parse_json, read_bounded
from studio.core.persistence import ANALYSIS_DIR
from studio.identity.calibration import STATES  # the four frame states (pure Python)

if TYPE_CHECKING:
    import numpy as np

    from studio.core.model import Character, Project, Shot
    from studio.identity.colours import Band

FORMAT = 4  # schema version of the files this module writes
# A 10-minute 24 fps take's JSON is ≈ 6 MB; 32 MiB bounds what a hostile file costs to parse
# (≈ 10x its size in Python objects).
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_NPZ_BYTES = 4 * 1024 * 1024 * 1024
MAX_ARRAY_BYTES = 2 * 1024 * 1024 * 1024  # per array, uncompressed, from its .npy header
MAX_FRAMES = 1_000_000
MAX_SIDE = 100_000  # video width/height (as for assets)
MAX_EMBEDDING = 4096
MAX_NPY_HEADER = 10_000  # numpy's own default limit for .npy headers
MAX_CAST = 64  # characters in a shot's cast block (the project allows 17)
# A record nests 5 levels (record > cast > drift_ranges > range > reasons); anything much
# deeper is hostile and refused before json.loads can recurse.
MAX_JSON_DEPTH = 16

METRICS: tuple[str, ...] = ("identity", "proportions", "eye_shape", "skin_tone", "stability",
                            "hair", "detail")
ARRAY_NAMES: tuple[str, ...] = ("heatmaps", "landmarks", "boxes")
CAST_ARRAY = "cast_boxes"  # in the npz only when the record has a cast block
JSON_SUFFIX, ARRAYS_SUFFIX = ".json", ".npz"
_TAKE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# -- the model ---------------------------------------------------------------------------------

class _Model(BaseModel):
    # strict: no coercion; frozen: a record read is a record kept; defer_build: cheap import.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              defer_build=True)


Score = Annotated[float, Field(ge=0.0, le=1.0)]
Pose = Annotated[list[float], Field(min_length=2, max_length=2)]  # (yaw, pitch) degrees
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Label = Annotated[str, Field(max_length=4096)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
FrameIndex = Annotated[int, Field(ge=0, le=MAX_FRAMES)]


class EngineInfo(_Model):
    """The face engine that produced the scores (scores of different engines never mix)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    model: Label
    version: Label
    license: Label
    threshold: Score  # similarity at or above which two faces are the same person

    @property
    def key(self) -> str:
        return f"{self.name}/{self.model}/{self.version}"


class TakeInfo(_Model):
    video: Label  # project-relative path (analyze_take) or the file name (CLI)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    frames: FrameIndex
    fps: Annotated[float, Field(gt=0.0, le=1000.0)]
    width: Annotated[int, Field(ge=1, le=MAX_SIDE)]
    height: Annotated[int, Field(ge=1, le=MAX_SIDE)]


class ReferenceUsed(_Model):
    """A bible reference the take was compared with, and its measured pose."""

    id: Label
    angle: Annotated[str, Field(max_length=64)]
    source: Label  # image path at analysis time (informative only)
    pose: Pose


class DriftRange(_Model):
    """Consecutive flagged frames, inclusive, with their reasons (most frequent first)."""

    start: FrameIndex
    end: FrameIndex
    reasons: Annotated[list[Reason], Field(max_length=64, fail_fast=True)] = Field(
        default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> "DriftRange":
        if self.end < self.start:
            raise ValueError(f"drift range ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def frames(self) -> int:
        return self.end - self.start + 1


class Summary(_Model):
    identity_mean: Score | None
    identity_min: Score | None
    flagged_fraction: Score
    worst_frames: Annotated[list[FrameIndex], Field(max_length=64, fail_fast=True)]
    drift_ranges: Annotated[list[DriftRange], Field(max_length=MAX_FRAMES, fail_fast=True)]
    motion: Annotated[float, Field(ge=0.0)]  # mean landmark motion per frame, inter-ocular units
    embedding: Annotated[list[float], Field(min_length=1, max_length=MAX_EMBEDDING,
                                            fail_fast=True)] | None
    face_frames: FrameIndex
    embedded_frames: FrameIndex
    # Format 4: frames per state, the share that could not be judged, the share of flagged
    # frames the calibration expects of an unchanged face this size (None: not calibrated),
    # and FaceSim-Arc (mean ArcFace cosine to the reference, when an ArcFace pack is present).
    states: "StateCounts"
    uncertain_fraction: Score = 0.0
    expected_false_alarm: Score | None = None
    facesim_arc: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None


class StateCounts(_Model):
    match: FrameIndex = 0
    close: FrameIndex = 0
    drift: FrameIndex = 0
    uncertain: FrameIndex = 0


class FrameRecord(_Model):
    index: FrameIndex
    time: Annotated[float, Field(ge=0.0)]
    face_found: bool
    faces: Annotated[int, Field(ge=0, le=10_000)]
    identity: Score | None
    identity_source: Literal["embedded", "interpolated"] | None
    proportions: Score | None
    eye_shape: Score | None
    skin_tone: Score | None
    stability: Score | None
    matched_reference: Label | None
    flagged: bool
    reasons: Annotated[list[Reason], Field(max_length=64, fail_fast=True)]
    blink: bool = False
    pose: Pose | None = None
    # Format 4. match / close / drift / uncertain (docs/IDENTITY.md "States"); flagged is
    # exactly drift. cautions: why a frame is close or uncertain.
    state: Literal["match", "close", "drift", "uncertain"]
    cautions: Annotated[list[Reason], Field(max_length=64, fail_fast=True)] = Field(
        default_factory=list)
    hair: Score | None = None  # hair region against the reference (studio.identity.hair)
    detail: Score | None = None  # ears and neck, where earrings and necklaces are

    @model_validator(mode="after")
    def _state(self) -> "FrameRecord":
        if self.flagged != (self.state == "drift"):
            raise ValueError(f"frame {self.index}: flagged is {self.flagged} but its state "
                             f"is {self.state!r}")
        return self


class CastEntry(_Model):
    """One character of a multi-character shot (:mod:`studio.identity.cast`): the faces the
    best assignment gave it on the sampled frames. ``identity`` has one value per frame (None
    where not sampled or not found); ``missing`` lists the sampled frames where it was not
    found. ``problem`` (with every score None) when the character had no usable reference."""

    character_id: Ident
    references_fingerprint: Annotated[str, Field(max_length=64)] | None = None
    problem: Label | None = None
    identity_mean: Score | None
    identity_min: Score | None
    face_frames: FrameIndex  # sampled frames where its face was found
    sampled_frames: FrameIndex
    flagged_fraction: Score | None  # of the sampled frames; None when not measured
    drift_ranges: Annotated[list[DriftRange], Field(max_length=MAX_FRAMES, fail_fast=True)]
    identity: Annotated[list[Score | None], Field(max_length=MAX_FRAMES, fail_fast=True)]
    missing: Annotated[list[FrameIndex], Field(max_length=MAX_FRAMES, fail_fast=True)]
    embedding: Annotated[list[float], Field(min_length=1, max_length=MAX_EMBEDDING,
                                            fail_fast=True)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "CastEntry":
        found = sum(1 for v in self.identity if v is not None)
        if found != self.face_frames:
            raise ValueError(f"cast {self.character_id}: face_frames is {self.face_frames} but "
                             f"{found} frames have an identity")
        if self.face_frames + len(self.missing) != self.sampled_frames:
            raise ValueError(f"cast {self.character_id}: found + missing frames are not the "
                             "sampled frames")
        if any(b <= a for a, b in zip(self.missing, self.missing[1:])):
            raise ValueError(f"cast {self.character_id}: missing frames are not increasing")
        if (self.flagged_fraction is None) != (self.sampled_frames == 0):
            raise ValueError(f"cast {self.character_id}: a flagged fraction needs sampled "
                             "frames and sampled frames need one")
        if self.sampled_frames == 0 and self.problem is None:
            raise ValueError(f"cast {self.character_id}: not measured, and no problem says why")
        return self


class AnalysisRecord(_Model):
    """``analysis/<take_id>.json``. Build one with :meth:`from_result`, read one with
    :func:`read_record`; the npz arrays, when read, are on :attr:`arrays`."""

    format: Literal[4] = FORMAT
    analysis_version: Annotated[int, Field(ge=1)]
    engine: EngineInfo
    engine_key: Label
    references: Annotated[list[ReferenceUsed], Field(max_length=1000, fail_fast=True)]
    references_fingerprint: Annotated[str, Field(max_length=64)] | None = None
    take_id: Ident | None = None  # None only for a CLI analysis of a loose video
    shot_id: Ident | None = None
    character_id: Ident | None = None
    take: TakeInfo
    summary: Summary
    # fail_fast: a hostile file of a million bad frames gives one error, not a million
    frames: Annotated[list[FrameRecord], Field(max_length=MAX_FRAMES, fail_fast=True)]
    seconds: Annotated[float, Field(ge=0.0)] | None = None  # time the analysis took
    created_at: Annotated[float, Field(ge=0.0)] | None = None  # Unix time (None: migrated)
    # Shots with several characters: one entry each, the main character first (format 3).
    cast: Annotated[list[CastEntry], Field(max_length=MAX_CAST, fail_fast=True)] = Field(
        default_factory=list)

    _arrays: "AnalysisArrays | None" = PrivateAttr(default=None)
    _source: "tuple[Path, int, Path] | None" = PrivateAttr(default=None)  # json, mtime, npz

    @model_validator(mode="after")
    def _consistent(self) -> "AnalysisRecord":
        n = len(self.frames)
        if self.engine_key != self.engine.key:
            raise ValueError(f"engine_key {self.engine_key!r} is not the engine's "
                             f"name/model/version {self.engine.key!r}")
        if n != self.take.frames:
            raise ValueError(f"{n} frame records for a take of {self.take.frames} frames")
        for i, fr in enumerate(self.frames):
            if fr.index != i:
                raise ValueError(f"frames[{i}] has index {fr.index}")
        s = self.summary
        for r in s.drift_ranges:
            if r.end >= n:
                raise ValueError(f"drift range {r.start}-{r.end} is past the last frame ({n - 1})")
        if any(i >= n for i in s.worst_frames):
            raise ValueError("a worst frame is past the last frame")
        if s.face_frames > n or s.embedded_frames > n:
            raise ValueError("more face or embedded frames than frames")
        st = s.states
        if (st.match, st.close, st.drift, st.uncertain) != tuple(
                sum(1 for f in self.frames if f.state == k) for k in STATES):
            raise ValueError("the summary's state counts are not the frames' states")
        ids = {r.id for r in self.references}
        bad = {f.matched_reference for f in self.frames} - ids - {None}
        if bad:
            raise ValueError(f"frames match references not in 'references': {sorted(bad)[:3]}")
        seen: set[str] = set()
        for c in self.cast:
            if c.character_id in seen:
                raise ValueError(f"cast names character {c.character_id} twice")
            seen.add(c.character_id)
            if len(c.identity) != n:
                raise ValueError(f"cast {c.character_id}: {len(c.identity)} identities for "
                                 f"{n} frames")
            if c.sampled_frames > n or any(i >= n for i in c.missing):
                raise ValueError(f"cast {c.character_id}: frames past the last frame")
            if any(c.identity[i] is not None for i in c.missing):
                raise ValueError(f"cast {c.character_id}: a missing frame has an identity")
            for r in c.drift_ranges:
                if r.end >= n:
                    raise ValueError(f"cast {c.character_id}: drift range {r.start}-{r.end} "
                                     f"is past the last frame ({n - 1})")
        if self.cast and self.character_id is not None and \
                self.cast[0].character_id != self.character_id:
            raise ValueError("the cast's first entry is not the record's character")
        return self

    def __eq__(self, other: object) -> bool:  # the JSON content; not where it was read from
        if not isinstance(other, AnalysisRecord):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # -- building and serialising ----------------------------------------------------------
    @classmethod
    def from_result(cls, result: Mapping[str, Any], **fields: Any) -> "AnalysisRecord":
        """A record from what :func:`studio.identity.analysis.analyze_video` returns, plus
        ``fields`` (take_id, shot_id, character_id, references_fingerprint, take overrides…).
        Raises ``ValueError`` (pydantic's ValidationError) when the analysis produced something
        this model does not describe."""
        doc = {**dict(result), **fields, "format": FORMAT}
        if isinstance(fields.get("take"), Mapping):
            doc["take"] = {**dict(result.get("take") or {}), **fields["take"]}
        # A result without states (the test kits' hand-made ones) gets them as a format-3
        # file would; the analysis itself always gives them.
        return cls.model_validate(_migrate_3_to_4(doc))

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    # -- conveniences for consumers ----------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return self.take.frames

    @property
    def threshold(self) -> float:
        return self.engine.threshold

    @property
    def identity_mean(self) -> float | None:
        return self.summary.identity_mean

    @property
    def flagged_fraction(self) -> float:
        return self.summary.flagged_fraction

    @property
    def drift_ranges(self) -> list[DriftRange]:
        return self.summary.drift_ranges

    def cast_entry(self, character_id: str) -> CastEntry | None:
        return next((c for c in self.cast if c.character_id == character_id), None)

    def cast_identity(self, character_id: str) -> "np.ndarray":
        """Float32 (T,) identity of one cast character, NaN where not sampled or not found."""
        import numpy as np

        entry = self.cast_entry(character_id)
        if entry is None:
            raise KeyError(f"character {character_id!r} is not in the analysis' cast")
        return np.array([np.nan if v is None else v for v in entry.identity],
                        np.float32).reshape(len(entry.identity))

    @property
    def arrays(self) -> "AnalysisArrays | None":
        """The npz arrays (None unless read with ``arrays=True`` and the npz exists)."""
        return self._arrays

    @property
    def json_path(self) -> Path | None:
        """The file this record was read from (None when built in memory)."""
        return self._source[0] if self._source else None

    @property
    def arrays_path(self) -> Path | None:
        """The npz beside the JSON this record was read from (it may not exist)."""
        return self._source[2] if self._source else None

    @property
    def mtime_ns(self) -> int:
        """Modification time of the JSON file read (0 when built in memory)."""
        return self._source[1] if self._source else 0

    def metric(self, key: str) -> "np.ndarray":
        """Float32 (T,) of one per-frame metric (:data:`METRICS`), NaN where not measurable."""
        import numpy as np

        if key not in METRICS:
            raise KeyError(f"unknown metric {key!r}; one of {', '.join(METRICS)}")
        return np.array([np.nan if (v := getattr(f, key)) is None else v for f in self.frames],
                        np.float32).reshape(len(self.frames))

    def metrics(self) -> "dict[str, np.ndarray]":
        return {key: self.metric(key) for key in METRICS}

    def flagged(self) -> "np.ndarray":
        """Bool (T,): frames flagged by the analysis."""
        import numpy as np

        return np.array([f.flagged for f in self.frames], bool).reshape(len(self.frames))

    def reasons(self) -> list[list[str]]:
        return [list(f.reasons) for f in self.frames]

    def matched_references(self) -> list[str | None]:
        """Per frame, the id of the reference its identity was measured against."""
        return [f.matched_reference for f in self.frames]

    def embedding(self) -> "np.ndarray | None":
        """The mean identity embedding (float32), or None when no frame was embedded."""
        import numpy as np

        e = self.summary.embedding
        return None if e is None else np.asarray(e, np.float32)

    def band(self) -> "Band | None":
        """The take's colour band (:func:`studio.identity.colours.take_band`)."""
        from studio.identity.colours import take_band

        return take_band(self.identity_mean, self.threshold, self.flagged_fraction,
                         self.summary.uncertain_fraction, self.engine.name)

    def states(self) -> list[str]:
        """Per frame: "match", "close", "drift" or "uncertain"."""
        return [f.state for f in self.frames]

    def cautions(self) -> list[list[str]]:
        return [list(f.cautions) for f in self.frames]

    def stale_reasons(self, project: "Project", shot: "Shot", engine_key: str | None, *,
                      video_sha256: str | None = None,
                      analysis_version: int | None = None) -> list[str]:
        """See :func:`stale_reasons`."""
        return stale_reasons(self, project, shot, engine_key, video_sha256=video_sha256,
                             analysis_version=analysis_version)


@dataclass(frozen=True)
class AnalysisArrays:
    heatmaps: "np.ndarray"  # uint8 (T, ceil(H/8), ceil(W/8)); 0 = no deviation
    landmarks: "np.ndarray"  # float32 (T, 68, 2) frame pixels; NaN where no face
    boxes: "np.ndarray"  # float32 (T, 4) x0, y0, x1, y1; NaN where no face
    # float32 (C, T, 4): each cast entry's face box; NaN where not sampled / not found
    cast_boxes: "np.ndarray | None" = None

    def as_dict(self) -> "dict[str, np.ndarray]":
        out = {"heatmaps": self.heatmaps, "landmarks": self.landmarks, "boxes": self.boxes}
        if self.cast_boxes is not None:
            out[CAST_ARRAY] = self.cast_boxes
        return out


def array_names(record: "AnalysisRecord") -> tuple[str, ...]:
    """The npz members ``record`` has: :data:`ARRAY_NAMES`, plus cast_boxes with a cast."""
    return ARRAY_NAMES + ((CAST_ARRAY,) if record.cast else ())


def array_specs(take: TakeInfo, cast: int = 0) -> "dict[str, tuple[tuple[int, ...], np.dtype]]":
    """The shape and dtype every npz member must have for ``take`` (and ``cast`` entries)."""
    import numpy as np

    from studio.identity.heatmap import heatmap_shape

    t = take.frames
    specs = {"heatmaps": ((t, *heatmap_shape(take.height, take.width)), np.dtype("u1")),
             "landmarks": ((t, 68, 2), np.dtype("<f4")),
             "boxes": ((t, 4), np.dtype("<f4"))}
    if cast:
        specs[CAST_ARRAY] = ((cast, t, 4), np.dtype("<f4"))
    return specs


# -- references fingerprint and staleness ------------------------------------------------------

def references_fingerprint(project: "Project", character: "Character") -> str:
    """A short hash of a character's bible as analysis sees it: reference ids, angle tags and
    image content hashes, in order. Changes whenever a reference is added, removed, re-tagged
    or its image replaced."""
    parts = []
    for ref in character.references:
        asset = project.asset_by_path(ref.asset)
        parts.append(f"{ref.id}:{ref.angle.value}:{asset.sha256 if asset else ref.asset}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def stale_reasons(record: AnalysisRecord, project: "Project", shot: "Shot",
                  engine_key: str | None, *, video_sha256: str | None = None,
                  analysis_version: int | None = None) -> list[str]:
    """Why ``record`` no longer describes ``shot``'s take as it should be judged now, in words
    (empty = fresh): another shot or a take no longer in the shot, the shot's character changed,
    that character's bible references changed, another engine (``engine_key``, the one that
    would analyse now; None = not checked), an older analysis version (default: the current
    :data:`studio.identity.analysis.ANALYSIS_VERSION`), or — when ``video_sha256`` is given —
    another video."""
    reasons: list[str] = []
    if record.shot_id is not None and record.shot_id != shot.id:
        reasons.append(f"the analysis was made for another shot ({record.shot_id})")
    elif record.take_id is not None and shot.take(record.take_id) is None:
        reasons.append(f"take {record.take_id} is no longer in shot {shot.title!r}")
    if video_sha256 is not None and video_sha256 != record.take.sha256:
        reasons.append("the take's video changed since it was analysed")

    def char_name(char_id: str | None) -> str:
        char = project.character(char_id) if char_id else None
        return repr(char.name) if char is not None else repr(char_id) if char_id else "none"

    char = project.character(shot.character_id) if shot.character_id else None
    if char is None:
        reasons.append("the shot has no character to compare with any more")
    elif record.character_id != char.id:
        reasons.append(f"the shot's character changed from {char_name(record.character_id)} "
                       f"to {char.name!r} since the analysis")
    elif record.references_fingerprint != references_fingerprint(project, char):
        reasons.append(f"{char.name!r}'s bible references changed since the analysis")
    if char is not None:
        reasons.extend(_cast_reasons(record, project, shot, char_name))
    if engine_key is not None and record.engine_key != engine_key:
        reasons.append(f"analysed with {record.engine_key}; the current engine is {engine_key}")
    if analysis_version is None:
        from studio.identity.analysis import ANALYSIS_VERSION as analysis_version
    if record.analysis_version != analysis_version:
        age = "older" if record.analysis_version < analysis_version else "newer"
        reasons.append(f"made by analysis version {record.analysis_version}, {age} than this "
                       f"version's {analysis_version}")
    return reasons


def _cast_reasons(record: AnalysisRecord, project: "Project", shot: "Shot",
                  char_name: Callable[[str | None], str]) -> list[str]:
    """The shot's cast (its characters beyond the main one) against the record's cast block:
    a character added or removed, or a cast character's bible references changed."""
    want = list(shot.character_ids)
    had = [c.character_id for c in record.cast]
    if len(want) <= 1 and not had:
        return []
    if len(want) <= 1:
        return [f"the shot's cast changed: {', '.join(char_name(c) for c in had[1:])} left it "
                "since the analysis"]
    added = [c for c in want[1:] if c not in had]
    removed = [c for c in had[1:] if c not in want]
    if added or removed:
        parts = []
        if added:
            parts.append(f"{', '.join(char_name(c) for c in added)} joined")
        if removed:
            parts.append(f"{', '.join(char_name(c) for c in removed)} left")
        return [f"the shot's cast changed since the analysis ({'; '.join(parts)})"]
    out = []
    for entry in record.cast[1:]:
        char = project.character(entry.character_id)
        if char is not None and entry.references_fingerprint != references_fingerprint(project,
                                                                                       char):
            out.append(f"{char.name!r}'s bible references changed since the analysis")
    return out


# -- migrations --------------------------------------------------------------------------------

def _migrate_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (the JSON written until the record existed) → 2.

    Format 2 validates everything format 1 left implicit; the migration fills what format-1
    writers could leave out: ``engine_key`` (from the engine block), ``analysis_version`` (1),
    ``references`` (none), per-frame ``blink``/``pose``/``faces``/``time``/``identity_source``,
    the summary's ``face_frames``/``embedded_frames`` (counted from the frames), an empty
    embedding (``[]`` → null), ``created_at`` (unknown: null). Types are left alone: whatever is
    wrong is reported by validation."""
    doc = dict(doc)
    eng = doc.get("engine")
    if "engine_key" not in doc and isinstance(eng, dict) and all(
            isinstance(eng.get(k), str) for k in ("name", "model", "version")):
        doc["engine_key"] = f"{eng['name']}/{eng['model']}/{eng['version']}"
    doc.setdefault("analysis_version", 1)
    doc.setdefault("references", [])
    take = doc.get("take") if isinstance(doc.get("take"), dict) else {}
    fps = take.get("fps")
    frames = doc.get("frames")
    if isinstance(frames, list):
        out = []
        for f in frames:
            if isinstance(f, dict):
                f = dict(f)
                f.setdefault("blink", False)
                f.setdefault("pose", None)
                f.setdefault("identity_source", None)
                if "faces" not in f and isinstance(f.get("face_found"), bool):
                    f["faces"] = int(f["face_found"])
                if ("time" not in f and type(f.get("index")) is int
                        and isinstance(fps, (int, float)) and fps > 0):
                    f["time"] = round(f["index"] / fps, 4)
            out.append(f)
        doc["frames"] = frames = out
    summary = doc.get("summary")
    if isinstance(summary, dict):
        summary = dict(summary)
        if summary.get("embedding") == []:
            summary["embedding"] = None
        if isinstance(frames, list) and all(isinstance(f, dict) for f in frames):
            summary.setdefault("face_frames", sum(1 for f in frames if f.get("face_found") is True))
            summary.setdefault("embedded_frames", sum(
                1 for f in frames if f.get("identity_source") == "embedded"))
        doc["summary"] = summary
    doc.setdefault("created_at", None)
    return doc


# Migrations from format N to N+1, applied in order on read (each takes and returns the raw
# JSON dict). Every format change adds one entry plus a test reading a real file of the old one.
def _migrate_2_to_3(doc: dict[str, Any]) -> dict[str, Any]:
    """Format 2 → 3: format 3 adds the optional ``cast`` block (shots with several
    characters); a format-2 record has none, so nothing is added."""
    return dict(doc)


def _migrate_3_to_4(doc: dict[str, Any]) -> dict[str, Any]:
    """Format 3 → 4: every frame gets its ``state`` and the summary the state counts. A
    format-3 analysis knew no uncertain frames: a flagged frame is drift, any other frame
    match or close by its identity's band (close without a score); the other new fields keep
    their defaults (no cautions, hair, detail, expected false alarms or FaceSim-Arc)."""
    from studio.identity.colours import band

    doc = dict(doc)
    eng = doc.get("engine") if isinstance(doc.get("engine"), dict) else {}
    thr = eng.get("threshold")
    frames = doc.get("frames")
    if isinstance(frames, list):
        out = []
        for f in frames:
            if isinstance(f, dict) and "state" not in f:
                f = dict(f)
                ident = f.get("identity")
                if f.get("flagged") is True:
                    f["state"] = "drift"
                elif (isinstance(ident, (int, float)) and isinstance(thr, (int, float))
                      and math.isfinite(ident) and band(ident, thr, str(eng.get("name")))
                      == "match"):
                    f["state"] = "match"
                else:
                    f["state"] = "close"
            out.append(f)
        doc["frames"] = frames = out
    summary = doc.get("summary")
    if isinstance(summary, dict) and isinstance(frames, list):
        summary = dict(summary)
        summary.setdefault("states", {k: sum(1 for f in frames if isinstance(f, dict)
                                             and f.get("state") == k) for k in STATES})
        doc["summary"] = summary
    return doc


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2,
                                                                     2: _migrate_2_to_3,
                                                                     3: _migrate_3_to_4}


def migrate(doc: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    version = doc.get("format")
    if type(version) is not int:
        raise AssetError("not an identity analysis (no integer 'format')", path)
    if version > FORMAT:
        raise AssetError(f"written by a newer Continuity Studio (analysis format {version}; this "
                         f"version reads up to {FORMAT}); re-analyse the take or update", path)
    if version < 1:
        raise AssetError(f"unknown analysis format {version}", path)
    while version < FORMAT:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["format"] = version
    return doc


# -- reading -----------------------------------------------------------------------------------

def analysis_paths(project_folder: Path, take_id: str) -> tuple[Path, Path]:
    """(``analysis/<take_id>.json``, ``analysis/<take_id>.npz``) in a project folder."""
    if not isinstance(take_id, str) or not _TAKE_ID.match(take_id):
        raise AssetError(f"not a take id: {take_id!r}")
    base = Path(project_folder) / ANALYSIS_DIR
    return base / f"{take_id}{JSON_SUFFIX}", base / f"{take_id}{ARRAYS_SUFFIX}"


def record_mtime_ns(project_folder: Path, take_id: str) -> int | None:
    """Modification time (ns) of a take's analysis JSON, None when there is none: a cheap
    change check for caches of records (the record read has the same :attr:`mtime_ns`)."""
    try:
        return analysis_paths(project_folder, take_id)[0].stat().st_mtime_ns
    except OSError:
        return None


def _validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)[:500]
    lines = []
    errs = errors()
    for err in errs[:5]:
        loc = ".".join(str(p)[:60] for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")[:200]
        lines.append(f"{loc}: {msg}" if loc else msg)
    if len(errs) > 5:
        lines.append(f"... and {len(errs) - 5} more problems")
    return "invalid analysis: " + "; ".join(lines)


def parse_record(data: bytes | str, path: Path | None = None) -> AnalysisRecord:
    """Parse, migrate and validate analysis JSON. Raises only :class:`AssetError`."""
    if len(data) > MAX_JSON_BYTES:
        raise AssetError(f"analysis file is {len(data)} bytes; at most {MAX_JSON_BYTES}", path)
    try:
        # depth checked before parsing, duplicate keys, NaN/Infinity and 1e400 refused
        doc = parse_json(data, path, max_depth=MAX_JSON_DEPTH, error=AssetError)
    except AssetError as exc:
        problem = exc.problem
        if "digits" in problem:  # Python's int-string limit: say it in words, not its advice
            problem = "not valid JSON: a number has too many digits"
        raise AssetError(f"analysis {problem[:300]}", path) from None
    if not isinstance(doc, dict):
        raise AssetError(f"analysis: expected a JSON object, found {type(doc).__name__}", path)
    try:
        doc = migrate(doc, path)
        return AnalysisRecord.model_validate(doc)
    except AssetError:
        raise
    except RecursionError:
        raise AssetError("analysis JSON is nested too deeply", path) from None
    except Exception as exc:  # pydantic's ValidationError, or a migration meeting odd types
        raise AssetError(_validation_message(exc), path) from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                 spec: "tuple[tuple[int, ...], np.dtype]") -> "np.ndarray":
    import numpy as np
    from numpy.lib import format as npy

    shape, dtype = spec
    name = info.filename[:-4]
    with zf.open(info) as fh:
        try:
            version = npy.read_magic(fh)
            if version == (1, 0):
                got_shape, fortran, got_dtype = npy.read_array_header_1_0(
                    fh, max_header_size=MAX_NPY_HEADER)
            elif version == (2, 0):
                got_shape, fortran, got_dtype = npy.read_array_header_2_0(
                    fh, max_header_size=MAX_NPY_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # numpy parses the header with tokenize/literal_eval: any error
            raise ValueError(f"{name}: bad .npy header ({str(exc)[:200]})") from None
        if got_dtype.hasobject:
            raise ValueError(f"{name} holds Python objects (a pickle); refused")
        if got_dtype != dtype:
            raise ValueError(f"{name} is {got_dtype.str}, expected {dtype.str}")
        if tuple(got_shape) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(got_shape)}, expected {tuple(shape)} for "
                             "this take")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise ValueError(f"{name} would take {nbytes} bytes; at most {MAX_ARRAY_BYTES}")
        flat = np.empty(count, dtype)
        buf = memoryview(flat.view(np.uint8))
        done = 0
        while done < nbytes:
            n = fh.readinto(buf[done:])
            if not n:
                raise ValueError(f"{name} is truncated ({done} of {nbytes} bytes)")
            done += n
    arr = flat.reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(arr)


def read_arrays(npz_path: Path, record: AnalysisRecord) -> AnalysisArrays:
    """The npz arrays of ``record``, each checked against the take (shape from its frame count
    and size, dtype) from its header before anything is allocated. Raises :class:`AssetError`."""
    import zlib

    specs = array_specs(record.take, len(record.cast))
    names = array_names(record)
    npz_path = Path(npz_path)
    try:
        size = npz_path.stat().st_size
        if size > MAX_NPZ_BYTES:
            raise AssetError(f"analysis arrays are {size} bytes; at most {MAX_NPZ_BYTES}",
                             npz_path)
        fd = open_regular(npz_path, AssetError)  # never a FIFO or a device
        out: dict[str, Any] = {}
        with os.fdopen(fd, "rb") as fobj, zipfile.ZipFile(fobj) as zf:
            infos = zf.infolist()
            if len(infos) > len(names):
                raise ValueError(f"{len(infos)} members; expected {', '.join(names)}")
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else None
                if name not in specs:
                    raise ValueError(f"unexpected member {info.filename[:80]!r}")
                if name in out:
                    raise ValueError(f"member {name} appears twice")
                out[name] = _read_member(zf, info, specs[name])
        missing = [n for n in names if n not in out]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except AssetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
            NotImplementedError, RuntimeError, KeyError, MemoryError) as exc:
        raise AssetError(f"analysis arrays are unreadable: {str(exc)[:300]}", npz_path) from None
    return AnalysisArrays(**out)


def read_record(project_folder: Path, take_id: str, *, arrays: bool = False,
                ) -> AnalysisRecord | None:
    """The analysis of a take: None when there is none (no JSON); :class:`AssetError` naming
    the file when it is malformed, hostile, of a newer format or of another take. With
    ``arrays=True`` the npz arrays are on :attr:`AnalysisRecord.arrays` (None only when the
    npz file is absent; a damaged one raises)."""
    jpath, npath = analysis_paths(project_folder, take_id)
    try:
        st = jpath.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AssetError(f"cannot read the analysis: {exc.strerror or exc}", jpath) from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader, a device never end
        raise AssetError("analysis is not a regular file", jpath)
    if st.st_size > MAX_JSON_BYTES:
        raise AssetError(f"analysis file is {st.st_size} bytes; at most {MAX_JSON_BYTES}", jpath)
    try:
        # opened non-blocking and checked on the descriptor: swapped for a FIFO meanwhile
        # is refused too; bounded however much the file grows
        data = read_bounded(jpath, MAX_JSON_BYTES, AssetError)
    except AssetError as exc:
        if not jpath.exists():  # removed between stat and open (being rewritten)
            return None
        raise AssetError(f"analysis {exc.problem}", jpath) from None
    record = parse_record(data, jpath)
    if record.take_id is not None and record.take_id != take_id:
        raise AssetError(f"analysis belongs to take {record.take_id}, not {take_id}", jpath)
    record._source = (jpath, st.st_mtime_ns, npath)
    if arrays and npath.exists():
        record._arrays = read_arrays(npath, record)
    return record


# -- writing -----------------------------------------------------------------------------------

def _check_arrays(record: AnalysisRecord, arrays: Mapping[str, Any], path: Path
                  ) -> "dict[str, np.ndarray]":
    import numpy as np

    specs = array_specs(record.take, len(record.cast))
    names = array_names(record)
    if set(arrays) != set(names):
        raise AssetError(f"analysis arrays must be exactly {', '.join(names)}, got "
                         f"{', '.join(sorted(arrays))}", path)
    out = {}
    for name, (shape, dtype) in specs.items():
        a = np.asarray(arrays[name])
        if a.shape != shape or a.dtype != dtype:
            raise AssetError(f"{name} is {a.dtype.str} {a.shape}, expected {dtype.str} {shape}",
                             path)
        out[name] = a
    return out


def write_arrays(path: Path, record: AnalysisRecord,
                 arrays: "AnalysisArrays | Mapping[str, np.ndarray]") -> Path:
    """Check ``arrays`` against ``record`` and write them atomically as an npz at ``path`` (the
    project's ``analysis/<take_id>.npz``, or the CLI's ``--heatmaps`` file)."""
    import numpy as np

    path = Path(path)
    arrs = arrays.as_dict() if isinstance(arrays, AnalysisArrays) else arrays
    checked = _check_arrays(record, arrs, path)
    buf = io.BytesIO()
    np.savez_compressed(buf, **checked)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise _write_failure(exc, path) from None
    return path


def _write_failure(exc: OSError, path: Path) -> AssetError:
    """The app's one wording for a failed write (a full disk is a full disk, on this file)."""
    from studio.media.video import write_error

    return AssetError(write_error(exc, path).problem, path)


def write_record(project_folder: Path, record: AnalysisRecord,
                 arrays: "AnalysisArrays | Mapping[str, np.ndarray]") -> tuple[Path, Path]:
    """Write ``record`` and its arrays atomically as ``analysis/<take_id>.{npz,json}``: the old
    JSON is removed first, then the npz written, then the JSON (completion). Arrays are checked
    against the record before anything is touched. Returns the two paths."""
    if record.take_id is None:
        raise AssetError("an analysis stored in a project needs its take_id")
    jpath, npath = analysis_paths(project_folder, record.take_id)
    _check_arrays(record, arrays.as_dict() if isinstance(arrays, AnalysisArrays) else arrays,
                  npath)
    text = record.to_json()
    try:
        jpath.parent.mkdir(parents=True, exist_ok=True)
        jpath.unlink(missing_ok=True)  # from here until the JSON lands: "not analysed"
    except OSError as exc:
        raise _write_failure(exc, jpath) from None
    write_arrays(npath, record, arrays)
    try:
        atomic_write_text(jpath, text)
    except OSError as exc:
        # No half record: arrays without their JSON are only debris (and would pair with a
        # later JSON of another analysis if one were written by hand).
        try:
            npath.unlink(missing_ok=True)
        except OSError:
            pass
        raise _write_failure(exc, jpath) from None
    return jpath, npath


__all__ = ["ARRAYS_SUFFIX", "ARRAY_NAMES", "CAST_ARRAY", "FORMAT", "JSON_SUFFIX", "METRICS",
           "MIGRATIONS", "AnalysisArrays", "AnalysisRecord", "CastEntry", "DriftRange",
           "EngineInfo", "FrameRecord", "ReferenceUsed", "Summary", "TakeInfo", "analysis_paths",
           "array_names", "array_specs", "migrate",
           "parse_record", "read_arrays", "read_record", "record_mtime_ns",
           "references_fingerprint", "stale_reasons", "write_arrays", "write_record"]
