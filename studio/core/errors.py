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


class Requeue(StudioError):
    """A job could not finish for a reason that is not its own (the server running it stopped
    answering): the session puts it back in the queue with this message instead of failing it."""


class GaveUp(StudioError):
    """A take given up on before its end because it was going wrong (its live previews showed
    another person): not a failure of the backend. A "generate until" series counts it as a try
    and moves on to the next seed."""


def error_text(exc_or_text: BaseException | str) -> str:
    """The one readable line (or paragraph) for an error shown to the user: a StudioError's own
    message, words for a missing library, memory or key, the message of a ValueError (validation
    names the field), otherwise the exception's type and message."""
    if isinstance(exc_or_text, str):
        return exc_or_text
    exc = exc_or_text
    if isinstance(exc, StudioError):
        return str(exc)
    if isinstance(exc, KeyError):
        return f"not found: {exc.args[0] if exc.args else ''}"
    if isinstance(exc, ImportError):
        return f"a library it needs is not installed or broken: {exc}"
    if isinstance(exc, MemoryError):
        return "out of memory: try a draft (smaller size, fewer frames)"
    text = str(exc)
    if isinstance(exc, ValueError) and text:
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
