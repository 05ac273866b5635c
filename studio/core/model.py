"""The project model: characters with angle-tagged references, shots, takes.

Pydantic models validate every field on load (``extra="forbid"`` so a typo or a hostile key is
an error, not silently dropped). Asset paths are stored relative to the project folder and are
checked here to be plain relative POSIX paths; :mod:`studio.core.persistence` additionally checks
that they resolve inside the folder on disk.
"""

from __future__ import annotations

import math
import re
import uuid
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

MAX_TEXT = 20_000  # characters in any prompt or note
MAX_NAME = 200


def new_id() -> str:
    return uuid.uuid4().hex[:12]


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_path(value: str) -> str:
    """A path inside the project: relative, POSIX separators, no '..', no drive, no NUL."""
    if not value or not value.strip():
        raise ValueError("path is empty")
    if "\x00" in value:
        raise ValueError("path contains a NUL character")
    if "\\" in value:
        raise ValueError(f"path {value!r} uses backslashes; project paths use '/'")
    if value.startswith("/") or _WINDOWS_DRIVE.match(value) or value.startswith("~"):
        raise ValueError(f"path {value!r} is absolute; project paths must be relative")
    parts = value.split("/")
    if any(p in ("..",) for p in parts):
        raise ValueError(f"path {value!r} escapes the project folder")
    if any(p in ("", ".") for p in parts):
        raise ValueError(f"path {value!r} is not normalised")
    return value


RelPath = Annotated[str, AfterValidator(check_relative_path)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


MAX_PARAM_DEPTH = 4
MAX_PARAM_ITEMS = 1000


def check_param_value(value: Any, where: str = "params", depth: int = 0) -> Any:
    """A shot parameter: JSON-like, finite numbers only (a NaN camera strength passes every
    min/max clamp and used to spin the preview for ever), shallow and small."""
    if depth > MAX_PARAM_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_PARAM_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, not {value}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"{where} is longer than {MAX_TEXT} characters")
        return value
    if isinstance(value, list):
        if len(value) > MAX_PARAM_ITEMS:
            raise ValueError(f"{where} holds more than {MAX_PARAM_ITEMS} items")
        return [check_param_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) > MAX_PARAM_ITEMS:
            raise ValueError(f"{where} holds more than {MAX_PARAM_ITEMS} items")
        for k in value:
            if not isinstance(k, str) or len(k) > 64:
                raise ValueError(f"{where} has a key that is not a short text")
        return {k: check_param_value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise ValueError(f"{where} holds a {type(value).__name__}, not a JSON value")


def _numeric_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of ``cls`` typed int or float (optionally None)."""
    names = set()
    for name, field in cls.model_fields.items():
        ann = field.annotation
        args = getattr(ann, "__args__", ()) or ()
        if ann in (int, float) or (args and set(args) - {type(None)} <= {int, float}
                                   and set(args) & {int, float}):
            names.add(name)
    return frozenset(names)


class Strict(BaseModel):
    # defer_build: validators are built on first use, not at import (≈50 ms off start-up).
    # allow_inf_nan=False: NaN/inf is refused at the model (a NaN "created_at" used to pass
    # validate and then be saved as null, making the project unreadable).
    model_config = ConfigDict(extra="forbid", validate_assignment=False, defer_build=True,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # JSON true is not a number: pydantic's lax mode would read "seed": true as seed 1.
        if isinstance(data, dict):
            numeric = cls.__dict__.get("_numeric_cache")
            if numeric is None:
                numeric = _numeric_fields(cls)
                setattr(cls, "_numeric_cache", numeric)
            for name in numeric:
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be a valid number, not {str(data[name]).lower()}")
        return data


class Angle(str, Enum):
    FRONT = "front"
    THREE_QUARTER_LEFT = "three_quarter_left"
    THREE_QUARTER_RIGHT = "three_quarter_right"
    PROFILE_LEFT = "profile_left"
    PROFILE_RIGHT = "profile_right"
    UP = "up"
    DOWN = "down"
    OTHER = "other"

    @property
    def label(self) -> str:
        return ANGLE_LABELS[self]


ANGLE_LABELS = {
    Angle.FRONT: "Front",
    Angle.THREE_QUARTER_LEFT: "Three-quarter left",
    Angle.THREE_QUARTER_RIGHT: "Three-quarter right",
    Angle.PROFILE_LEFT: "Profile left",
    Angle.PROFILE_RIGHT: "Profile right",
    Angle.UP: "Looking up",
    Angle.DOWN: "Looking down",
    Angle.OTHER: "Other",
}


class Asset(Strict):
    """An imported file stored once under a content-hash name in ``assets/``."""

    path: RelPath  # e.g. "assets/3f2a...c1.png"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    original_name: Name = ""
    width: int = Field(ge=1, le=100_000)
    height: int = Field(ge=1, le=100_000)
    format: Annotated[str, Field(max_length=16)] = ""
    imported_at: float = 0.0


class Reference(Strict):
    id: Ident = Field(default_factory=new_id)
    asset: RelPath
    angle: Angle = Angle.FRONT
    note: Text = ""


class CharacterLora(Strict):
    path: RelPath
    weight: float = Field(default=1.0, ge=-4.0, le=4.0)


class Character(Strict):
    id: Ident = Field(default_factory=new_id)
    name: Name = "Character"
    notes: Text = ""
    color: Color = "#e0a040"
    references: list[Reference] = Field(default_factory=list, max_length=10_000)
    lora: CharacterLora | None = None

    def reference(self, ref_id: str) -> Reference | None:
        return next((r for r in self.references if r.id == ref_id), None)


class ResolutionPreset(str, Enum):
    P480 = "480p"
    P720 = "720p"
    P1080 = "1080p"


class Aspect(str, Enum):
    WIDE = "16:9"
    TALL = "9:16"
    SQUARE = "1:1"


# (width, height) for 16:9; 9:16 swaps them; 1:1 uses the short side. 480p is Wan's 832x480.
_WIDE_SIZES = {ResolutionPreset.P480: (832, 480), ResolutionPreset.P720: (1280, 720),
               ResolutionPreset.P1080: (1920, 1080)}


def preset_size(preset: ResolutionPreset, aspect: Aspect) -> tuple[int, int]:
    w, h = _WIDE_SIZES[ResolutionPreset(preset)]
    aspect = Aspect(aspect)
    if aspect is Aspect.TALL:
        return h, w
    if aspect is Aspect.SQUARE:
        return h, h
    return w, h


class SeedMode(str, Enum):
    FIXED = "fixed"
    RANDOM = "random"


class Take(Strict):
    """One generated result of a shot: a video under ``takes/`` plus its JSON sidecar."""

    id: Ident = Field(default_factory=new_id)
    video: RelPath
    sidecar: RelPath | None = None
    seed: int = Field(ge=0, le=2**63 - 1)
    backend: Annotated[str, Field(max_length=64)]
    model: Annotated[str, Field(max_length=4096)] | None = None
    width: int = Field(ge=1, le=16384)
    height: int = Field(ge=1, le=16384)
    frames: int = Field(ge=1, le=100_000)
    fps: float = Field(gt=0, le=240)
    draft: bool = False
    created_at: float = 0.0
    # Filled in by identity analysis: mean identity in [0, 1] and the engine that produced it.
    identity_mean: float | None = Field(default=None, ge=0.0, le=1.0)
    analysis_engine: Annotated[str, Field(max_length=128)] | None = None


# A framing edge: a finite fraction of the image (strict: no strings, no booleans, no NaN).
_Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
MIN_FRAMING = 0.02  # the smallest framing side, as a fraction of the image: a 50x zoom


class Framing(Strict):
    """The part of the start image that fills the shot's frame: a rectangle in fractions of the
    upright image's width (``x``, ``w``) and height (``y``, ``h``), normally of the shot's aspect.
    When the shot's aspect changes later, the engine keeps its centre and area
    (``studio.media.images.frame_box``), so a stored framing never has to be redone. ``asset`` is
    the start image it was made for: after the shot's start image changes (by any edit) it no
    longer applies and the shot is framed automatically again."""

    asset: RelPath
    x: _Fraction
    y: _Fraction
    w: Annotated[float, Field(ge=MIN_FRAMING, le=1.0, allow_inf_nan=False, strict=True)]
    h: Annotated[float, Field(ge=MIN_FRAMING, le=1.0, allow_inf_nan=False, strict=True)]

    @model_validator(mode="after")
    def _inside(self) -> "Framing":
        # A little slack for rounding: 0.3 + 0.7 is 1.0000000000000002 in floating point.
        if self.x + self.w > 1.0 + 1e-6 or self.y + self.h > 1.0 + 1e-6:
            raise ValueError(f"framing ({self.x:g}, {self.y:g}, {self.w:g}, {self.h:g}) reaches "
                             "outside the image (x + w and y + h must be at most 1)")
        return self

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


class Shot(Strict):
    id: Ident = Field(default_factory=new_id)
    title: Name = "Shot"
    prompt: Text = ""
    negative_prompt: Text = ""
    character_id: Ident | None = None
    # Further characters in the shot (dialogue, two-shots): each is scored on its own and their
    # references go to backends that take several subjects. The main one is ``character_id``.
    cast: list[Ident] = Field(default_factory=list, max_length=16)
    # The bible references generation holds the take to, in order (ids of references of the
    # shot's characters); None: chosen automatically (studio.engine.references). Ids whose
    # reference was deleted since are skipped.
    reference_ids: list[Ident] | None = Field(default=None, max_length=64)
    start_asset: RelPath | None = None  # the start image (always also a bible reference)
    start_reference_id: Ident | None = None
    framing: Framing | None = None  # the part of the start image in frame; None = automatic
    duration_s: float = Field(default=3.0, ge=0.1, le=600.0)
    fps: int = Field(default=16, ge=1, le=120)
    resolution: ResolutionPreset = ResolutionPreset.P480
    aspect: Aspect = Aspect.WIDE
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    seed_mode: SeedMode = SeedMode.FIXED
    backend: Annotated[str, Field(max_length=64)] = "preview"
    model: Annotated[str, Field(max_length=4096)] | None = None
    params: Annotated[dict[Annotated[str, Field(max_length=64)], Any],
                      AfterValidator(check_param_value)] = Field(default_factory=dict,
                                                                 max_length=256)
    takes: list[Take] = Field(default_factory=list, max_length=100_000)
    active_take_id: Ident | None = None

    @property
    def size(self) -> tuple[int, int]:
        return preset_size(self.resolution, self.aspect)

    @property
    def character_ids(self) -> list[str]:
        """Every character in the shot, the main one first."""
        main = [self.character_id] if self.character_id else []
        return main + [c for c in self.cast if c != self.character_id]

    @property
    def start_framing(self) -> Framing | None:
        """The framing, when it was made for the current start image (None: automatic)."""
        f = self.framing
        return f if f is not None and f.asset == self.start_asset else None

    @property
    def frame_count(self) -> int:
        return max(1, round(self.duration_s * self.fps))

    def take(self, take_id: str | None) -> Take | None:
        return next((t for t in self.takes if t.id == take_id), None) if take_id else None

    @property
    def active_take(self) -> Take | None:
        return self.take(self.active_take_id)


class OutputSettings(Strict):
    resolution: ResolutionPreset = ResolutionPreset.P480
    aspect: Aspect = Aspect.WIDE
    fps: int = Field(default=16, ge=1, le=120)


class Project(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    id: Ident = Field(default_factory=new_id)
    name: Name = "Untitled"
    created_at: float = 0.0
    modified_at: float = 0.0
    characters: list[Character] = Field(default_factory=list, max_length=10_000)
    shots: list[Shot] = Field(default_factory=list, max_length=100_000)
    assets: dict[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")], Asset] = Field(default_factory=dict)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _check_references(self) -> "Project":
        """Cross-references must point at things that exist; ids must be unique."""
        for kind, items in (("character", self.characters), ("shot", self.shots)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"duplicate {kind} id {item.id!r}")
                seen.add(item.id)
        # Take ids name analysis files and journal records: two shots sharing one would share
        # one analysis.
        take_seen: set[str] = set()
        for s in self.shots:
            for t in s.takes:
                if t.id in take_seen:
                    raise ValueError(f"duplicate take id {t.id!r} (take ids are unique across "
                                     "shots)")
                take_seen.add(t.id)
        char_ids = {c.id for c in self.characters}
        asset_paths = {a.path for a in self.assets.values()}
        for digest, asset in self.assets.items():
            if asset.sha256 != digest:
                raise ValueError(f"asset {asset.path!r} is listed under the wrong hash")
        for c in self.characters:
            ref_ids: set[str] = set()
            for r in c.references:
                if r.id in ref_ids:
                    raise ValueError(f"duplicate reference id {r.id!r} in character {c.name!r}")
                ref_ids.add(r.id)
                if r.asset not in asset_paths:
                    raise ValueError(f"reference {r.id!r} of {c.name!r} uses unknown asset {r.asset!r}")
        for s in self.shots:
            if s.character_id is not None and s.character_id not in char_ids:
                raise ValueError(f"shot {s.title!r} names unknown character {s.character_id!r}")
            for cid in s.cast:
                if cid not in char_ids:
                    raise ValueError(f"shot {s.title!r} names unknown character {cid!r}")
            if len(set(s.cast)) != len(s.cast) or (s.character_id in s.cast):
                raise ValueError(f"shot {s.title!r} names a character twice")
            if s.start_asset is not None and s.start_asset not in asset_paths:
                raise ValueError(f"shot {s.title!r} uses unknown start image {s.start_asset!r}")
            take_ids = {t.id for t in s.takes}
            if len(take_ids) != len(s.takes):
                raise ValueError(f"shot {s.title!r} has duplicate take ids")
            if s.active_take_id is not None and s.active_take_id not in take_ids:
                raise ValueError(f"shot {s.title!r} has an active take that does not exist")
        return self

    # -- lookups ---------------------------------------------------------------------------
    def character(self, char_id: str | None) -> Character | None:
        return next((c for c in self.characters if c.id == char_id), None) if char_id else None

    def shot(self, shot_id: str | None) -> Shot | None:
        return next((s for s in self.shots if s.id == shot_id), None) if shot_id else None

    def shot_index(self, shot_id: str) -> int:
        for i, s in enumerate(self.shots):
            if s.id == shot_id:
                return i
        raise KeyError(shot_id)

    def character_index(self, char_id: str) -> int:
        for i, c in enumerate(self.characters):
            if c.id == char_id:
                return i
        raise KeyError(char_id)

    def asset_by_path(self, path: str) -> Asset | None:
        return next((a for a in self.assets.values() if a.path == path), None)

    def find_reference(self, ref_id: str) -> tuple[Character, Reference] | None:
        for c in self.characters:
            r = c.reference(ref_id)
            if r is not None:
                return c, r
        return None

    @property
    def total_duration_s(self) -> float:
        return sum(s.duration_s for s in self.shots)
