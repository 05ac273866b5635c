"""Public identity API for the app: analyse takes (cached), load analyses, character matrix.

Files (see docs/IDENTITY.md): ``analysis/<take_id>.json`` (engine, take, summary, frames) and
``analysis/<take_id>.npz`` (heatmaps uint8 (T, ceil(H/8), ceil(W/8)), landmarks float32
(T, 68, 2), boxes float32 (T, 4); NaN where no face). The JSON carries a cache key made of the
video's SHA-256, the engine key (name/model/version), the analysis version and the references
used; reopening a project with an unchanged take and bible never recomputes.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.atomic import atomic_write_bytes, atomic_write_text
from studio.core.errors import StudioError
from studio.core.model import Character, Project, Shot, Take
from studio.core.tasks import CancelledFn, ProgressFn
from studio.identity.analysis import ANALYSIS_VERSION, ReferenceFace, analyze_video, load_references
from studio.identity.engines import FaceEngine, get_engine

_ref_cache: dict[tuple[str, str, str, str], ReferenceFace] = {}


def analysis_paths(project_folder: Path, take_id: str) -> tuple[Path, Path]:
    base = Path(project_folder) / "analysis"
    return base / f"{take_id}.json", base / f"{take_id}.npz"


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


def _refs_fingerprint(project: Project, character: Character) -> str:
    parts = []
    for ref in character.references:
        asset = project.asset_by_path(ref.asset)
        parts.append(f"{ref.id}:{ref.angle.value}:{asset.sha256 if asset else ref.asset}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def write_analysis(json_path: Path, npz_path: Path, result: dict[str, Any],
                   arrays: dict[str, np.ndarray]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(npz_path, buf.getvalue())  # npz first: the JSON marks completion
    atomic_write_text(json_path, json.dumps(result, indent=1, allow_nan=False))


def load_analysis(project_folder: Path, take_id: str, *, arrays: bool = False,
                  ) -> dict[str, Any] | None:
    """The stored analysis of a take (None when there is none or it is unreadable). With
    ``arrays=True`` the npz arrays are added under ``"arrays"``."""
    jp, npz = analysis_paths(project_folder, take_id)
    try:
        data = json.loads(jp.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != 1:
        return None
    if arrays:
        try:
            with np.load(npz) as z:
                data["arrays"] = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None
    return data


def analyze_take(project_folder: Path, project: Project, shot: Shot, take: Take,
                 on_progress: ProgressFn | None = None, cancelled: CancelledFn | None = None,
                 *, engine: FaceEngine | None = None, force: bool = False) -> dict[str, Any]:
    """Analyse a take against its shot's character and write ``analysis/<take_id>.{json,npz}``.

    Returns the summary (plus ``engine`` and ``cached``). Sets nothing in the project: the caller
    stores ``identity_mean`` / ``analysis_engine`` via ``ProjectDocument.update_take``.
    """
    from studio.core.assets import sha256_file
    from studio.core.persistence import resolve_inside

    folder = Path(project_folder)
    engine = engine or get_engine()
    char = _character_for(project, shot)
    video = resolve_inside(folder, take.video)
    if not video.is_file():
        raise StudioError("take video is missing", video)
    sha = sha256_file(video)
    fp = _refs_fingerprint(project, char)
    jp, npz = analysis_paths(folder, take.id)
    old = None if force else load_analysis(folder, take.id)
    if (old and old.get("take", {}).get("sha256") == sha and old.get("engine_key") == engine.key
            and old.get("analysis_version") == ANALYSIS_VERSION
            and old.get("references_fingerprint") == fp and npz.is_file()):
        return {**old["summary"], "engine": old["engine"], "cached": True}
    refs = character_references(folder, project, char, engine)
    result, arrays = analyze_video(video, refs, engine, on_progress, cancelled)
    result["take"]["video"] = take.video
    result["take"]["sha256"] = sha
    result["take_id"] = take.id
    result["shot_id"] = shot.id
    result["character_id"] = char.id
    result["references_fingerprint"] = fp
    write_analysis(jp, npz, result, arrays)
    return {**result["summary"], "engine": result["engine"], "cached": False}


def character_matrix(project_folder: Path, project: Project, character_id: str,
                     engine: FaceEngine | None = None) -> dict[str, Any]:
    """Identity similarity between the active takes of all shots of a character, from the mean
    embeddings of their stored analyses. Cells are None where a take has no analysis or was
    analysed by another engine (scores of different engines never mix)."""
    engine = engine or get_engine()
    char = project.character(character_id)
    if char is None:
        raise StudioError(f"no character with id {character_id!r}")
    cols: list[dict[str, Any]] = []
    embs: list[np.ndarray | None] = []
    for shot in project.shots:
        if shot.character_id != character_id or shot.active_take is None:
            continue
        take = shot.active_take
        data = load_analysis(project_folder, take.id)
        emb = None
        if data and data.get("engine_key") == engine.key and data["summary"].get("embedding"):
            emb = np.asarray(data["summary"]["embedding"], np.float32)
        cols.append({"shot_id": shot.id, "shot": shot.title, "take_id": take.id,
                     "analysed": emb is not None})
        embs.append(emb)
    n = len(cols)
    matrix: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            a, b = embs[i], embs[j]
            if a is not None and b is not None:
                matrix[i][j] = round(engine.similarity(a, b), 4)
    return {"character_id": character_id, "engine": engine.info(), "engine_key": engine.key,
            "takes": cols, "matrix": matrix, "threshold": engine.threshold}

