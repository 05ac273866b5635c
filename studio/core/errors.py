"""Error types shared by every layer.

Every error a user can trigger with bad input is a :class:`StudioError`: it names the file (when
there is one) and the problem in plain words, so the UI and the CLI can show it as it is.
"""

from __future__ import annotations

from pathlib import Path


class StudioError(Exception):
    """An error caused by the user's input or environment, with a readable message."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class ProjectError(StudioError):
    """A project folder or project.json that cannot be loaded or saved."""


class AssetError(StudioError):
    """An asset (image, video) that cannot be imported or read."""
