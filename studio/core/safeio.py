"""Reading files the app did not write itself, safely.

Every file the app reads from a project, a model folder or a settings folder goes through here:

* :func:`check_regular` refuses anything but a regular file (a FIFO would block the reader for
  ever, a device such as ``/dev/zero`` never ends, a socket cannot be read) — symlinks are
  followed, and the caller decides whether the target must stay inside a folder;
* :func:`read_bounded` reads at most ``limit`` bytes, opened with ``O_NONBLOCK`` so that even a
  FIFO swapped in after the check cannot hang the open, and checks the opened descriptor again;
* :func:`parse_json` parses with a depth limit (no ``RecursionError``), refuses duplicate keys
  (no silent "last wins"), ``NaN``/``Infinity`` and non-UTF-8 text.

Each refusal is a :class:`~studio.core.errors.StudioError` (or the subclass the caller names)
whose message names the file and the problem in one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISDIR(mode):
        return "is a folder, expected a file"
    return "is not a regular file"


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, expected a file"
    return f"cannot read: {exc.strerror or exc}"


def check_regular(path: Path, error: type[StudioError] = StudioError) -> os.stat_result:
    """The stat of ``path`` (symlinks followed) if it is a regular file; otherwise ``error``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(_os_problem(exc), path) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(_kind(st.st_mode), path)
    return st


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def open_regular(path: Path, error: type[StudioError] = StudioError) -> int:
    """An ``O_RDONLY`` descriptor on ``path``, proved (on the descriptor) to be a regular file.
    ``O_NONBLOCK`` keeps the open itself from waiting on a FIFO writer; it is cleared again so
    reads of the regular file behave normally."""
    check_regular(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(_os_problem(exc), path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(_kind(st.st_mode), path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: Path, limit: int = DEFAULT_MAX_BYTES,
                 error: type[StudioError] = StudioError) -> bytes:
    """The bytes of regular file ``path``, refusing one larger than ``limit``."""
    fd = open_regular(path, error)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise error(f"is {size} bytes; at most {limit} bytes are read", path)
        chunks: list[bytes] = []
        total = 0
        while True:
            block = os.read(fd, min(1 << 20, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > limit:  # grew while we read it
                raise error(f"is more than {limit} bytes; at most {limit} bytes are read", path)
    except OSError as exc:
        raise error(_os_problem(exc), path) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST = re.compile(r"\[\]|\{\}")


def _depth_exceeds(text: str, max_depth: int) -> bool:
    """True when brackets nest deeper than ``max_depth`` (strings skipped): checked before
    ``json.loads`` so a hostile file can never reach the recursion limit. Each round (C-speed
    regular expressions) peels one level of empty pairs; real files are a few levels deep."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = peeled = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not peeled:
            return False
        peeled = _INNERMOST.sub("", peeled)
    if not peeled:
        return False
    # Left over: deeper than allowed, or unbalanced (json.loads names that; count exactly).
    depth = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        if depth > max_depth:
            return True
    return False


def parse_json(data: bytes | str, path: Path | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
               error: type[StudioError] = StudioError, non_finite: bool = False) -> Any:
    """Parse JSON strictly: UTF-8, nesting at most ``max_depth``, no duplicate keys, only
    finite numbers. Raises only ``error``.

    ``non_finite=True`` lets ``NaN``/``Infinity`` through as floats: only for answers of a
    server we merely read metadata from (ComfyUI's node list, where Python's json writes a node's
    unbounded maximum as ``Infinity``); nothing read so is stored or computed with unchecked."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    if _depth_exceeds(data, max_depth):
        raise error(f"holds JSON nested too deeply (more than {max_depth} levels)", path)
    try:
        if non_finite:
            return json.loads(data, object_pairs_hook=_no_duplicates)
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    path) from None
    except RecursionError:
        raise error("holds JSON nested too deeply", path) from None
    except ValueError as exc:  # duplicate keys, NaN, huge integers
        raise error(f"not valid JSON: {exc}", path) from None


def read_json(path: Path, limit: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH,
              error: type[StudioError] = StudioError) -> Any:
    """:func:`read_bounded` then :func:`parse_json`."""
    return parse_json(read_bounded(path, limit, error), path, max_depth, error)


def read_json_object(path: Path, limit: int = DEFAULT_MAX_BYTES,
                     max_depth: int = DEFAULT_MAX_DEPTH,
                     error: type[StudioError] = StudioError) -> dict[str, Any]:
    """:func:`read_json`, refusing anything but an object at the top level."""
    doc = read_json(path, limit, max_depth, error)
    if not isinstance(doc, dict):
        raise error(f"expected a JSON object at the top level, found {type(doc).__name__}", path)
    return doc
