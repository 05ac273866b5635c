"""Where an export may write: never over the project, never onto one of its own inputs.

Every file an export writes (the film, the conformed take copies, the OTIO/EDL/FCP XML files and
the report) is checked here before a frame is encoded:

* a project-owned file (``project.json``, its autosave, the queue and its journal, the lock) or
  anything inside ``takes/``, ``assets/`` or ``analysis/`` is refused — paths resolved, symlinks
  followed, hard links caught by comparing inodes;
* the same file as any input of the export (a take, a start image) is refused;
* two outputs of one export that are the same file are refused (the second would replace the
  first);
* the folder the output goes to must take a new file: a read-only folder is refused up front
  with a suggestion, not minutes later with a traceback from the temp-file creation.

The debris of killed exports (our own temp names, older than :data:`DEBRIS_MIN_AGE_S`) is removed
from each output folder when an export starts there.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from studio.core.atomic import DEBRIS_MIN_AGE_S, remove_debris
from studio.core.errors import StudioError
from studio.core.lock import LOCK_FILE
from studio.core.persistence import (ANALYSIS_DIR, ASSETS_DIR, AUTOSAVE_FILE, PROJECT_FILE,
                                     TAKES_DIR)

# Files a project folder owns. The queue's names are studio.engine.queue's QUEUE_FILE and
# JOURNAL_FILE, written out here so that checking a target never imports the engine.
PROJECT_FILES = (PROJECT_FILE, AUTOSAVE_FILE, "queue.json", "queue.journal", LOCK_FILE)
# Folders whose content only the app writes.
PROJECT_DIRS = (TAKES_DIR, ASSETS_DIR, ANALYSIS_DIR)


class ExportTargetError(StudioError):
    """An export output that must not be written where it was asked to go."""


class ReadOnlyFolder(ExportTargetError):
    """The folder an export writes to does not take new files."""

    def __init__(self, folder: Path, why: str = "is read-only") -> None:
        self.problem = f"{why}; choose another folder with --out"
        self.path = Path(folder)
        # The folder first, then what to do: one line that reads as a sentence.
        Exception.__init__(self, f"{self.path} {self.problem}")


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare it as it is written
        return Path(os.path.abspath(path))


def _same_file(a: Path, b: Path) -> bool:
    """Same path once resolved, or (both existing) the same inode: a hard link is caught too."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        _resolved(path).relative_to(_resolved(folder))
        return True
    except ValueError:
        return False


def check_output(folder: Path, out: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse ``out`` if writing it could destroy a file of the project in ``folder`` or one of
    the export's ``inputs``."""
    folder, out = Path(folder), Path(out)
    for src in inputs:
        if _same_file(out, src):
            raise ExportTargetError(f"the output would overwrite an input of this export "
                                    f"({src}): choose another file", out)
    for name in PROJECT_FILES:
        if _same_file(out, folder / name):
            raise ExportTargetError(f"the output would overwrite the project's own {name}: "
                                    "choose another file", out)
    for name in PROJECT_DIRS:
        if _inside(out, folder / name):
            raise ExportTargetError(f"the output would be written inside the project's {name}/ "
                                    "folder, which only the app writes: choose another folder",
                                    out)


def check_outputs(folder: Path, outputs: Iterable[Path], inputs: Iterable[Path] = ()) -> None:
    """:func:`check_output` for each of ``outputs``, and no two of them the same file."""
    inputs = [Path(p) for p in inputs]
    seen: list[Path] = []
    for out in outputs:
        out = Path(out)
        check_output(folder, out, inputs)
        for other in seen:
            if _same_file(out, other):
                raise ExportTargetError(f"is asked for twice in one export (also as {other}): "
                                        "give each output its own file", out)
        seen.append(out)


def check_writable(folder: Path) -> None:
    """Create and remove one temp file in ``folder`` (created if missing), exactly as the atomic
    writers will: a read-only or unwritable folder is refused now, with the folder named."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".export-probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise folder_error(exc, folder) from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass


def folder_error(exc: OSError, folder: Path) -> StudioError:
    """The one line for an output folder that cannot take a file."""
    code = exc.errno
    if code == errno.EROFS:
        return ReadOnlyFolder(folder)
    if code in (errno.EACCES, errno.EPERM):
        return ReadOnlyFolder(folder, "is not writable (permission denied)")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return StudioError("disk full (no space left on device) while writing this file",
                           folder)
    return StudioError(f"cannot write in this folder: {exc.strerror or exc}", folder)


def prepare_folders(outputs: Iterable[Path], min_age_s: float = DEBRIS_MIN_AGE_S) -> list[Path]:
    """Before writing: each output's folder takes files (see :func:`check_writable`) and loses
    the temp files killed exports left there. Returns the debris removed."""
    removed: list[Path] = []
    done: set[Path] = set()
    for out in outputs:
        parent = Path(out).absolute().parent
        if parent in done:
            continue
        done.add(parent)
        check_writable(parent)
        removed.extend(remove_debris(parent, min_age_s=min_age_s))
    return removed
