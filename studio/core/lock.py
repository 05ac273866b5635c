"""One writer per project: ``<project>/.studio.lock``.

The app and the CLI take this lock before they write a project (project.json, the queue, takes,
analyses). The lock is an ``flock`` on the file, so the kernel drops it the instant its holder
dies (crash, kill -9, power loss): a lock left behind by a dead process is never an obstacle,
only its words are stale. The file's text says who holds it (program, PID, host, start time), so
a second writer can tell the user exactly who to wait for.

Reading a project (validate, open read-only, export) takes no lock: it only reads, and export
writes outside the project-owned files (see :mod:`studio.export.names`).

flock conflicts between two open descriptions even in one process, so two sessions of one
process on one project conflict too; :func:`held_here` lets the session layer hand a lock over
between its own sessions instead of refusing itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import ProjectError

LOCK_FILE = ".studio.lock"
MAX_LOCK_BYTES = 4096


@dataclass(frozen=True)
class Holder:
    """Who holds a project's lock, as its lock file says."""

    pid: int
    host: str
    started: float
    program: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started)) \
            if self.started else "an unknown time"
        return f"{self.program or 'another program'} (process {self.pid} on {self.host or '?'}, " \
               f"since {when})"


class ProjectLocked(ProjectError):
    """Another writer holds the project."""

    def __init__(self, folder: Path, holder: Holder | None) -> None:
        self.holder = holder
        who = holder.describe() if holder else "another program"
        super().__init__(f"this project is in use by {who}; open it read-only or wait for it "
                         "to finish", Path(folder))


def read_holder(folder: Path) -> Holder | None:
    """The holder named in the lock file (None when absent or unreadable: the file is ours and
    written by us, but a hostile one must still not break anything)."""
    from studio.core.safeio import parse_json, read_bounded

    try:
        doc = parse_json(read_bounded(Path(folder) / LOCK_FILE, MAX_LOCK_BYTES), max_depth=2)
    except Exception:
        return None
    if not isinstance(doc, dict):
        return None
    pid, host, started, program = (doc.get(k) for k in ("pid", "host", "started", "program"))
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    return Holder(pid=pid, host=host if isinstance(host, str) else "",
                  started=float(started) if isinstance(started, (int, float))
                  and not isinstance(started, bool) else 0.0,
                  program=(program if isinstance(program, str) else "")[:200])


_HELD: dict[Path, "ProjectLock"] = {}
_HELD_GUARD = threading.Lock()


def held_here(folder: Path) -> "ProjectLock | None":
    """The lock this process holds on ``folder``, if any."""
    with _HELD_GUARD:
        return _HELD.get(Path(folder).resolve())


class ProjectLock:
    """The writer's lock on one project folder."""

    def __init__(self, folder: Path, program: str = "Continuity Studio") -> None:
        self.folder = Path(folder)
        self.program = program
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _try(self) -> bool:
        path = self.folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            if exc.errno in (30, 13):  # EROFS, EACCES: nobody can write here, us included
                raise ProjectError("the project folder is read-only: open it read-only, or copy "
                                   "it to a folder you can write", self.folder) from None
            raise ProjectError(f"cannot create the lock file: {exc.strerror or exc}",
                               path) from None
        try:
            import stat as _stat
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ProjectError("the lock file is not a regular file; remove it", path)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise ProjectError(f"cannot lock: {exc.strerror or exc}", path) from None
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.time(), "program": self.program}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds even when its words cannot be written
        self._fd = fd
        with _HELD_GUARD:
            _HELD[self.folder.resolve()] = self
        return True

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.2,
                cancelled: "threading.Event | None" = None) -> "ProjectLock":
        """Take the lock, waiting up to ``wait_s`` seconds (``float('inf')``: until it is free).
        Raises :class:`ProjectLocked` naming the holder when it stays taken."""
        if self._fd is not None:
            return self
        deadline = time.monotonic() + wait_s
        while not self._try():
            if time.monotonic() >= deadline or (cancelled is not None and cancelled.is_set()):
                raise ProjectLocked(self.folder, read_holder(self.folder))
            time.sleep(poll_s)
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _HELD_GUARD:
            key = self.folder.resolve()
            if _HELD.get(key) is self:
                del _HELD[key]
        try:
            os.ftruncate(fd, 0)  # no stale words for the next reader
        except OSError:
            pass
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> "ProjectLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
