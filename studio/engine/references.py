"""Which bible references a take is generated against (reference-conditioned models).

A shot either lists its references by hand (``Shot.reference_ids``, in order) or leaves the choice
to :func:`choose_references` ("Auto"):

* for the shot's main character: the reference whose angle tag is nearest the start image's (the
  start image is itself a bible reference; another photograph at that angle is preferred, since
  it adds what the start image cannot show), then the front reference, then the others by how
  near their angle is;
* for each further character of the shot (a two-shot): its front reference first, then the
  others by angle;
* the lists are interleaved, main character first, so a backend that takes two subjects gets one
  of each, and cut to what the backend accepts (``Capabilities.max_references``; a backend that
  is not ``multi_subject`` gets the main character's references only).

Pure Python: the queue builds the candidates on the UI thread; the job runner cuts them to the
backend's capacity on the worker thread, where the backend is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from studio.core.model import Angle, Character, Project, Reference, Shot

# Nominal head pose of each angle tag: (yaw, pitch) in degrees, the subject's left negative.
_POSE = {Angle.FRONT: (0.0, 0.0), Angle.THREE_QUARTER_LEFT: (-40.0, 0.0),
         Angle.THREE_QUARTER_RIGHT: (40.0, 0.0), Angle.PROFILE_LEFT: (-85.0, 0.0),
         Angle.PROFILE_RIGHT: (85.0, 0.0), Angle.UP: (0.0, 30.0), Angle.DOWN: (0.0, -30.0),
         Angle.OTHER: (0.0, 0.0)}
MAX_CANDIDATES = 8  # more than any model takes today (Phantom: 4)


@dataclass(frozen=True)
class ReferencePick:
    """One reference chosen for a take: enough to name it by hash in the sidecar."""

    character_id: str
    reference_id: str
    asset: str  # project-relative path of the image
    sha256: str | None
    angle: str
    why: str  # "start angle", "front", "angle", "picked"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def angle_distance(a: Angle, b: Angle) -> float:
    (ya, pa), (yb, pb) = _POSE[Angle(a)], _POSE[Angle(b)]
    d = math.hypot(ya - yb, pa - pb)
    return d + (5.0 if Angle.OTHER in (a, b) and a != b else 0.0)  # "other" says little


def start_angle(project: Project, shot: Shot) -> Angle:
    """The angle of the shot's start image: its reference's tag (front when unknown)."""
    if shot.start_reference_id:
        found = project.find_reference(shot.start_reference_id)
        if found is not None:
            return found[1].angle
    for char in project.characters:
        for ref in char.references:
            if shot.start_asset and ref.asset == shot.start_asset:
                return ref.angle
    return Angle.FRONT


def _pick(project: Project, char: Character, ref: Reference, why: str) -> ReferencePick:
    asset = project.asset_by_path(ref.asset)
    return ReferencePick(character_id=char.id, reference_id=ref.id, asset=ref.asset,
                         sha256=asset.sha256 if asset is not None else None,
                         angle=Angle(ref.angle).value, why=why)


def _ranked(project: Project, char: Character, want: Angle, start_asset: str | None,
            main: bool) -> list[ReferencePick]:
    refs = list(char.references)
    if not refs:
        return []
    out: list[ReferencePick] = []
    if main:
        # Nearest angle; at equal distance another photograph beats the start image itself.
        best = min(refs, key=lambda r: (angle_distance(r.angle, want), r.asset == start_asset,
                                        refs.index(r)))
        out.append(_pick(project, char, best, "start angle"))
    front = next((r for r in refs if Angle(r.angle) is Angle.FRONT), None)
    if front is not None and all(p.reference_id != front.id for p in out):
        out.append(_pick(project, char, front, "front"))
    rest = sorted((r for r in refs if all(p.reference_id != r.id for p in out)),
                  key=lambda r: (angle_distance(r.angle, want), r.asset == start_asset,
                                 refs.index(r)))
    out += [_pick(project, char, r, "angle") for r in rest]
    return out


def choose_references(project: Project, shot: Shot) -> tuple[list[ReferencePick], list[str]]:
    """The shot's references in order of preference (at most :data:`MAX_CANDIDATES`) and notes
    for the user (a picked reference that no longer exists)."""
    notes: list[str] = []
    chars = [c for cid in shot.character_ids if (c := project.character(cid)) is not None]
    if shot.reference_ids is not None:
        out: list[ReferencePick] = []
        for rid in shot.reference_ids:
            found = next(((c, r) for c in chars if (r := c.reference(rid)) is not None), None)
            if found is None:
                notes.append(f"reference {rid} picked for {shot.title!r} is no longer in the "
                             "bible of its characters; skipped")
                continue
            out.append(_pick(project, found[0], found[1], "picked"))
        return out[:MAX_CANDIDATES], notes
    want = start_angle(project, shot)
    lists = [_ranked(project, c, want if i == 0 else Angle.FRONT, shot.start_asset, i == 0)
             for i, c in enumerate(chars)]
    out = []
    while any(lists) and len(out) < MAX_CANDIDATES:
        for lst in lists:
            if lst and len(out) < MAX_CANDIDATES:
                out.append(lst.pop(0))
    return out, notes


def for_backend(picks: list[ReferencePick] | tuple[ReferencePick, ...], main_character: str | None,
                limit: int, multi_subject: bool) -> list[ReferencePick]:
    """The picks a backend taking ``limit`` references gets: only the main character's unless
    it conditions on several subjects."""
    if limit <= 0:
        return []
    chosen = [p for p in picks if multi_subject or main_character is None
              or p.character_id == main_character]
    return chosen[:limit]
