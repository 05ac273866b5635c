"""Default names of exported files (the CLI's ``export`` and the Export dialog use the same)."""

from __future__ import annotations

from pathlib import Path


def safe_file_name(name: str, default: str = "film") -> str:
    """``name`` reduced to letters, digits, spaces and ``._-`` (runs of spaces collapsed, no
    leading/trailing dots or spaces): safe as a file name everywhere; ``default`` if nothing is
    left."""
    keep = " ".join("".join(c for c in name if c.isalnum() or c in " ._-").split()).strip(" .")
    return keep or default


def default_film_path(folder: str | Path, project_name: str) -> Path:
    """``<project>/exports/<project name>.mp4``."""
    return Path(folder) / "exports" / f"{safe_file_name(project_name)}.mp4"
