"""Public identity API for the app: analyse takes (cached), read analyses, character matrix.

The files of an analysis and their one reader/writer are :mod:`studio.identity.record`
(docs/IDENTITY.md). A stored record is reused while :func:`~studio.identity.record.stale_reasons`
finds nothing (same video SHA-256, engine key, analysis version, character and bible
references) and its arrays exist: reopening a project with an unchanged take and bible never
recomputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import AssetError, StudioError
from studio.core.model import Character, Project, Shot, Take
from studio.core.tasks import CancelledFn, ProgressFn
from studio.identity.analysis import ANALYSIS_VERSION, ReferenceFace, analyze_video, load_references
from studio.identity.engines import FaceEngine, get_engine
from studio.identity.record import (AnalysisRecord, read_record, references_fingerprint,
                                    write_record)

_ref_cache: dict[tuple[str, str, str, str], ReferenceFace] = {}


def _character_for(project: Project, shot: Shot) -> Character:
    char = project.character(shot.character_id)
    if char is None:
        raise StudioError(f"shot {shot.title!r} has no character to compare with")
    if not char.references:
        raise StudioError(f"character {char.name!r} has no bible references")
    return char


def character_references(project_folder: Path, project: Project, character: Character,
                         engine: FaceEngine) -> list[ReferenceFace]:
    """Prepared references of a character (memoised per engine and image hash)."""
    from studio.core.persistence import resolve_inside

    out, missing = [], []
    for ref in character.references:
        asset = project.asset_by_path(ref.asset)
        sha = asset.sha256 if asset else ref.asset
        key = (engine.key, sha, ref.id, ref.angle.value)
        if key not in _ref_cache:
            path = resolve_inside(Path(project_folder), ref.asset)
            try:
                _ref_cache[key] = load_references(engine, [(ref.id, path, ref.angle.value)])[0]
            except StudioError as exc:
                missing.append(str(exc))
                continue
        out.append(_ref_cache[key])
    if not out:
        raise StudioError(f"character {character.name!r}: no bible image has a usable face"
                          + (f" ({'; '.join(missing)})" if missing else ""))
    return out


def _summary(rec: AnalysisRecord, cached: bool, project: Project | None = None,
             ) -> dict[str, Any]:
    out = {**rec.summary.model_dump(mode="json"), "engine": rec.engine.model_dump(mode="json"),
           "cached": cached}
    if rec.cast:  # shots with several characters only; a one-character shot has no "cast" key
        out["cast"] = cast_summary(rec, project)
    return out


def cast_summary(rec: AnalysisRecord, project: Project | None = None) -> list[dict[str, Any]]:
    """Per character of a multi-character analysis: ``character_id``, ``name`` (from the
    project; the id when unknown), ``identity_mean``, ``identity_min``, ``flagged_fraction``,
    ``face_frames``, ``sampled_frames`` and ``problem`` (None, or why it was not scored)."""
    out = []
    for c in rec.cast:
        char = project.character(c.character_id) if project is not None else None
        out.append({"character_id": c.character_id,
                    "name": char.name if char is not None else c.character_id,
                    "identity_mean": c.identity_mean, "identity_min": c.identity_min,
                    "flagged_fraction": c.flagged_fraction, "face_frames": c.face_frames,
                    "sampled_frames": c.sampled_frames, "problem": c.problem})
    return out


def cast_characters(project_folder: Path, project: Project, character_ids: Sequence[str],
                    engine: FaceEngine) -> list[Any]:
    """:class:`~studio.identity.cast.CastCharacter` per id (main first) with its prepared
    references. The main character must have a usable reference (StudioError otherwise); a
    further character without one gets its ``problem`` instead."""
    from studio.identity.cast import CastCharacter

    out = []
    for i, cid in enumerate(character_ids):
        char = project.character(cid)
        if char is None:
            if i == 0:
                raise StudioError(f"no character with id {cid!r}")
            out.append(CastCharacter(cid, cid, problem="not in the project"))
            continue
        try:
            if not char.references:
                raise StudioError(f"character {char.name!r} has no bible references")
            out.append(CastCharacter(char.id, char.name,
                                     character_references(project_folder, project, char, engine)))
        except StudioError as exc:
            if i == 0:
                raise
            out.append(CastCharacter(char.id, char.name, problem=str(exc)))
    return out


def analyze_take(project_folder: Path, project: Project, shot: Shot, take: Take,
                 on_progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
                 *, engine: FaceEngine | None = None, force: bool = False) -> dict[str, Any]:
    """Analyse a take against its shot's character and write ``analysis/<take_id>.{json,npz}``
    (through :func:`~studio.identity.record.write_record`).

    Returns the summary as a dict (the record's ``summary`` plus ``engine`` and ``cached``).
    A shot with several characters (``shot.character_ids``) is analysed with
    :mod:`studio.identity.cast`: the per-frame analysis follows the main character's face (the
    best assignment of faces to characters, not the biggest face) and the record and the
    summary get a ``cast`` block (see :func:`cast_summary`; absent for one character). A cast
    character without a usable reference is reported with its ``problem``, not an error.
    Sets nothing in the project: the caller stores ``identity_mean`` / ``analysis_engine`` via
    ``ProjectDocument.update_take``. An unreadable stored analysis is simply recomputed.
    """
    import time

    from studio.core.assets import sha256_file
    from studio.core.persistence import resolve_inside

    folder = Path(project_folder)
    engine = engine or get_engine()
    char = _character_for(project, shot)
    video = resolve_inside(folder, take.video)
    if not video.exists():
        raise StudioError("take video is missing", video)
    from studio.core.safeio import check_regular

    check_regular(video, AssetError)  # a FIFO would block the hash and the decoder
    sha = sha256_file(video)
    if not force:
        try:
            old = read_record(folder, take.id)
        except AssetError:  # damaged or from a newer version: analyse afresh
            old = None
        if (old is not None and old.take_id == take.id and old.arrays_path is not None
                and old.arrays_path.is_file()
                and not old.stale_reasons(project, shot, engine.key, video_sha256=sha,
                                          analysis_version=ANALYSIS_VERSION)):
            return _summary(old, True, project)
    ids = shot.character_ids
    if len(ids) > 1:
        from studio.identity.cast import analyze_video_with_cast

        members = cast_characters(folder, project, ids, engine)
        result, arrays = analyze_video_with_cast(video, members, engine, on_progress, cancelled)
        for entry in result["cast"]:
            member = project.character(entry["character_id"])
            entry["references_fingerprint"] = (references_fingerprint(project, member)
                                               if member is not None else None)
    else:
        refs = character_references(folder, project, char, engine)
        result, arrays = analyze_video(video, refs, engine, on_progress, cancelled)
    # The record names each reference image by its project-relative path, never by where the
    # project happens to lie on this machine (a moved or shared project stays self-contained).
    result["references"] = [{**r, "source": _project_relative(folder, r.get("source"))}
                            for r in result.get("references", [])]
    rec = AnalysisRecord.from_result(
        result, take={"video": take.video, "sha256": sha}, take_id=take.id, shot_id=shot.id,
        character_id=char.id, references_fingerprint=references_fingerprint(project, char),
        created_at=round(time.time(), 3))
    write_record(folder, rec, arrays)
    return _summary(rec, False, project)


def _project_relative(folder: Path, source: object) -> object:
    if not isinstance(source, str):
        return source
    try:
        return Path(source).resolve().relative_to(Path(folder).resolve()).as_posix()
    except (ValueError, OSError):
        return Path(source).name  # outside the project: the file name only


def character_matrix(project_folder: Path, project: Project, character_id: str,
                     engine: FaceEngine | None = None, *,
                     takes: Sequence[tuple[Shot, Take]] | None = None) -> dict[str, Any]:
    """Identity similarity between takes of a character, from the mean embeddings of their
    stored analyses. ``takes``: the (shot, take) pairs to compare (default: the active take of
    every shot of the character).

    Scores of different engines never mix: with ``engine`` given only its analyses are
    compared, with its calibrated similarity; without, the engine that analysed most of the
    takes is used — its calibrated similarity when this machine has that engine (same key),
    otherwise the cosine similarity of the stored embeddings. Cells are None where a take is
    not used; each take's ``status`` says why ("ok", "not analysed", "unreadable",
    "no embedding", "other engine")."""
    char = project.character(character_id)
    if char is None:
        raise StudioError(f"no character with id {character_id!r}")
    if takes is None:
        takes = [(s, s.active_take) for s in project.shots
                 if s.character_id == character_id and s.active_take is not None]
    cols: list[dict[str, Any]] = []
    embs: list[np.ndarray | None] = []
    keys: list[str | None] = []
    for shot, take in takes:
        status, key, emb = "ok", None, None
        try:
            rec = read_record(project_folder, take.id)
        except AssetError:
            rec, status = None, "unreadable"
        if rec is None:
            status = status if status != "ok" else "not analysed"
        else:
            key, emb = rec.engine_key, rec.embedding()
            if emb is None:
                status = "no embedding"
        cols.append({"shot_id": shot.id, "shot": shot.title, "take_id": take.id,
                     "engine_key": key, "status": status})
        embs.append(emb)
        keys.append(key if emb is not None else None)
    main_key, similarity, measure, info, threshold = _matrix_engine(engine, keys)
    for c, k in zip(cols, keys):
        if c["status"] == "ok" and k != main_key:
            c["status"] = "other engine"
        c["analysed"] = c["status"] == "ok"
    n = len(cols)
    matrix: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            a, b = embs[i], embs[j]
            if cols[i]["analysed"] and cols[j]["analysed"] and a is not None and b is not None:
                matrix[i][j] = similarity(a, b)
    return {"character_id": character_id, "character": char.name, "engine": info,
            "engine_key": main_key, "measure": measure, "takes": cols, "matrix": matrix,
            "threshold": threshold}


def _matrix_engine(engine: FaceEngine | None, keys: Sequence[str | None]) -> tuple[Any, ...]:
    """(engine key, similarity function, its label, engine info, threshold) for a matrix."""
    if engine is None:
        counts: dict[str, int] = {}
        for k in keys:
            if k is not None:
                counts[k] = counts.get(k, 0) + 1
        main = max(counts, key=lambda k: counts[k]) if counts else None  # first of the most
        try:
            engine = get_engine(main.split("/", 1)[0]) if main else None
        except Exception:  # the engine is not available here (no model pack): cosine
            engine = None
        if engine is not None and engine.key != main:
            engine = None
        if engine is None:
            return main, _cosine, "cosine similarity", None, None
    eng = engine

    def calibrated(a: np.ndarray, b: np.ndarray) -> float | None:
        if a.shape != b.shape:
            return None
        return round(float(eng.similarity(a, b)), 4)

    return (eng.key, calibrated, f"{eng.name} similarity (≥ {eng.threshold:g} = same person)",
            eng.info(), eng.threshold)


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    va, vb = a.astype(np.float64), b.astype(np.float64)
    if va.shape != vb.shape or not va.size:
        return None
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na == 0 or nb == 0:
        return None
    return round(float(va @ vb / (na * nb)), 4)
