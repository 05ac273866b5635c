"""Crash-safe file writes: temp file in the same folder, fsync, rename, fsync the folder.

A kill at any instant leaves either the old file or the new one at ``path``, never a mix.
``STUDIO_CRASH_AT`` (tests only) makes the process exit hard at a named step so the kill test can
hit every point of a save deterministically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_CRASH_AT = os.environ.get("STUDIO_CRASH_AT", "")


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once at import, before any worker threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; project files get the usual permissions.
_FILE_MODE = 0o666 & ~_read_umask()


def _maybe_crash(step: str) -> None:
    if _CRASH_AT and _CRASH_AT == step:
        os._exit(70)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            _maybe_crash("half-written")
            fh.write(data[half:])
            fh.flush()
            _maybe_crash("before-fsync")
            os.fsync(fh.fileno())
        _maybe_crash("before-rename")
        os.replace(tmp, path)
        _maybe_crash("after-rename")
        fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_output(path: Path, write: Callable[[Path], None], suffix: str = ".tmp") -> Path:
    """Let ``write(tmp)`` produce a file (any writer: an encoder, a copy…) under a temp name
    beside ``path``, then fsync it and rename it into place. On any exception — including a
    cancel — the partial file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, _FILE_MODE)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_copy(src: Path, dst: Path, chunk: int = 1 << 20) -> None:
    """Copy ``src`` to ``dst`` atomically (used for imported assets and take files)."""

    def copy(tmp: Path) -> None:
        with open(tmp, "wb") as out, open(src, "rb") as inp:
            while block := inp.read(chunk):
                out.write(block)

    atomic_output(Path(dst), copy)


# -- debris of killed writes --------------------------------------------------------------------

# mkstemp's random part: 8 characters of this alphabet. Only names of this exact shape, made by
# the writers above, are ever removed: ``.<name>.<8 random>.tmp`` / ``.part``.
_TEMP_SUFFIXES = (".tmp", ".part")
_RANDOM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
DEBRIS_MIN_AGE_S = 600.0  # a live write (another process's encoder) is never this old unfinished


def is_temp_name(name: str) -> bool:
    """True for a name our atomic writers give their temp files."""
    if not name.startswith(".") or not name.endswith(_TEMP_SUFFIXES):
        return False
    stem = name[1:name.rindex(".")]
    head, dot, random_part = stem.rpartition(".")
    return bool(dot and head and len(random_part) == 8 and set(random_part) <= _RANDOM_CHARS)


def remove_debris(folder: Path, min_age_s: float = DEBRIS_MIN_AGE_S, recursive: bool = False,
                  prefix: str = "") -> list[Path]:
    """Remove the temp files a killed write left in ``folder`` (only our own, recognised by
    name, regular files, not modified for ``min_age_s`` seconds — a write in progress in
    another process is younger). Returns what was removed; never raises."""
    import time

    folder = Path(folder)
    removed: list[Path] = []
    now = time.time()
    try:
        candidates = folder.rglob(".*") if recursive else folder.glob(".*")
        for path in candidates:
            name = path.name
            if not is_temp_name(name) or (prefix and not name.startswith("." + prefix)):
                continue
            try:
                st = path.lstat()
                import stat as _stat
                if not _stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age_s:
                    continue
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    except OSError:
        pass
    return removed
