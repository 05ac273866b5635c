"""Reading and writing project folders.

A project is a folder::

    project.json            the document (schema_version, characters, shots, takes ...)
    project.autosave.json   written by autosave; present on open only after a crash
    .studio.lock            the one writer's lock (studio.core.lock)
    queue.json queue.journal   the job queue: snapshot plus append-only journal
    assets/                 imported images under content-hash names
    takes/ analysis/ exports/   written by the engine, identity and export layers

Every write is atomic (:mod:`studio.core.atomic`). Loading never raises anything but
:class:`~studio.core.errors.ProjectError`, whatever the bytes on disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_text, remove_debris
from studio.core.errors import ProjectError
from studio.core.model import SCHEMA_VERSION, Project
from studio.core.safeio import is_regular, parse_json, read_bounded

PROJECT_FILE = "project.json"
AUTOSAVE_FILE = "project.autosave.json"
ASSETS_DIR = "assets"
TAKES_DIR = "takes"
ANALYSIS_DIR = "analysis"
EXPORTS_DIR = "exports"
SUBFOLDERS = (ASSETS_DIR, TAKES_DIR, ANALYSIS_DIR, EXPORTS_DIR)

MAX_PROJECT_BYTES = 64 * 1024 * 1024  # a real project.json is kilobytes; refuse absurd files
MAX_PROJECT_DEPTH = 16  # the model nests 7 levels (shot params 4 more); deeper is hostile

# Migrations from schema version N to N+1, applied in order on load. Each takes and returns the
# raw JSON dict. Version 1 is the first released schema, so the table starts empty; every future
# schema change adds one entry here plus a test that loads a saved file of the old version.
Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


def _format_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    lines = []
    for err in errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "document"
        lines.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(errors()) - 5
    if more > 0:
        lines.append(f"... and {more} more problems")
    return "invalid project: " + "; ".join(lines)


def migrate(doc: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProjectError("missing or non-integer 'schema_version'", path)
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"made by a newer Continuity Studio (schema {version}; this version reads up to "
            f"{SCHEMA_VERSION}). Update the app to open it.", path)
    if version < 1:
        raise ProjectError(f"unknown schema_version {version}", path)
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ProjectError(f"no migration from schema {version}", path)
        doc = step(doc)
        version += 1
        doc["schema_version"] = version
    return doc


def parse_project(text: str | bytes, path: Path | None = None) -> Project:
    """Parse and validate project JSON. Raises only :class:`ProjectError`."""
    doc = parse_json(text, path, max_depth=MAX_PROJECT_DEPTH, error=ProjectError)
    if not isinstance(doc, dict):
        raise ProjectError(f"expected a JSON object at the top level, found {type(doc).__name__}",
                           path)
    doc = migrate(doc, path)
    try:
        return Project.model_validate(doc)
    except RecursionError:
        raise ProjectError("JSON nested too deeply", path) from None
    except Exception as exc:  # pydantic.ValidationError and anything a validator raises
        raise ProjectError(_format_validation_error(exc), path) from None


def resolve_inside(folder: Path, rel: str) -> Path:
    """The absolute path of ``rel`` inside ``folder``; refuses anything that escapes it
    (including through symbolic links)."""
    root = Path(folder).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise ProjectError(f"path {rel!r} resolves outside the project folder", Path(folder) / rel)
    return target


def check_paths_on_disk(project: Project, folder: Path) -> None:
    for asset in project.assets.values():
        resolve_inside(folder, asset.path)
    for c in project.characters:
        if c.lora is not None:
            resolve_inside(folder, c.lora.path)
    for shot in project.shots:
        for take in shot.takes:
            resolve_inside(folder, take.video)
            if take.sidecar:
                resolve_inside(folder, take.sidecar)


def _read_limited(path: Path) -> bytes:
    # Only a regular file, opened without blocking and read up to the limit: a project.json
    # that is a FIFO or a link to /dev/zero used to hang validate and the app's open.
    return read_bounded(path, MAX_PROJECT_BYTES, ProjectError)


def project_file(folder_or_file: Path) -> Path:
    p = Path(folder_or_file)
    return p if p.name.endswith(".json") and not p.is_dir() else p / PROJECT_FILE


def load_project(folder: Path) -> Project:
    """Load ``folder/project.json`` (a path to the json file itself is accepted too)."""
    path = project_file(folder)
    project = parse_project(_read_limited(path), path)
    check_paths_on_disk(project, path.parent)
    return project


def dump_project(project: Project) -> str:
    return project.model_dump_json(indent=2) + "\n"


def ensure_layout(folder: Path) -> None:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for sub in SUBFOLDERS:
            (folder / sub).mkdir(exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"cannot create project folder: {exc.strerror or exc}", folder) from None


def save_project(project: Project, folder: Path) -> Path:
    """Atomically write ``folder/project.json`` and drop the autosave (it is now stale)."""
    folder = Path(folder)
    ensure_layout(folder)
    project.modified_at = time.time()
    if not project.created_at:
        project.created_at = project.modified_at
    path = folder / PROJECT_FILE
    _remove_stale_temps(folder)
    try:
        atomic_write_text(path, dump_project(project))
    except OSError as exc:
        raise ProjectError(f"cannot save: {exc.strerror or exc}", path) from None
    (folder / AUTOSAVE_FILE).unlink(missing_ok=True)
    return path


def _remove_stale_temps(folder: Path) -> None:
    """Temp files of a save that was killed half-way (never the live file). Saves of one
    project are serialised by its lock, so any such file is debris at once."""
    for name in (PROJECT_FILE, AUTOSAVE_FILE):
        remove_debris(folder, min_age_s=0.0, prefix=name + ".")


# -- autosave and crash recovery ---------------------------------------------------------------

def write_autosave(project: Project, folder: Path) -> Path:
    path = Path(folder) / AUTOSAVE_FILE
    try:
        atomic_write_text(path, dump_project(project))
    except OSError as exc:
        raise ProjectError(f"cannot autosave: {exc.strerror or exc}", path) from None
    return path


def recovery_available(folder: Path) -> bool:
    """True when an autosave is left over (the app did not close cleanly) and differs from the
    saved project."""
    folder = Path(folder)
    auto = folder / AUTOSAVE_FILE
    if not is_regular(auto):
        return False
    main = folder / PROJECT_FILE
    try:
        return not is_regular(main) or (read_bounded(auto, MAX_PROJECT_BYTES)
                                        != read_bounded(main, MAX_PROJECT_BYTES))
    except Exception:  # unreadable either way: offer nothing rather than fail the open
        return False


def load_recovery(folder: Path) -> Project:
    path = Path(folder) / AUTOSAVE_FILE
    project = parse_project(_read_limited(path), path)
    check_paths_on_disk(project, Path(folder))
    return project


def discard_recovery(folder: Path) -> None:
    try:
        os.unlink(Path(folder) / AUTOSAVE_FILE)
    except FileNotFoundError:
        pass
