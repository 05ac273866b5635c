"""The one way the UI runs work off its thread (after napari's ``thread_worker`` and Anki's
``CollectionOp``).

``run_task(fn, parent=…, on_done=…)`` runs ``fn(progress, cancelled)`` in a thread pool and
returns a :class:`TaskHandle` at once. The function reports with ``progress(Progress(...))``
(a log line is ``Progress(0, 0, message=line)``) and polls ``cancelled()``; what it returns, what
it reports and how it ends arrive as queued signals on the UI thread, in the order they happened:
``progress(Progress)``…, then exactly one of ``done(result)``, ``failed(message)`` or
``cancelled()``.

Error policy, here and nowhere else: a :class:`~studio.core.errors.StudioError` becomes its own
message; :class:`~studio.core.tasks.Cancelled` becomes ``cancelled()``; anything else prints its
traceback to stderr and becomes ``"unexpected error: …"``. A task never dies silently.

Lifetime: the handle is a child of ``parent``. When the parent is destroyed the task is asked to
cancel and nothing more is delivered (no callback runs on a deleted widget). Workers never touch
the handle: they post to one long-lived dispatcher, so emitting after the parent is gone is
harmless. On application quit every running task is cancelled and waited for (bounded); the
functions never wait for the UI thread, so that wait cannot deadlock.

Pools: the global pool by default; :func:`task_pool` makes a dedicated one (one thread: tasks run
one at a time, in the order they were started). Results must be plain Python or value types
(``QImage`` is fine, a ``QObject`` is not).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, Qt, QThread, QThreadPool, Signal

from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn, Progress, ProgressFn

T = TypeVar("T")

__all__ = ["ChildWorker", "TaskHandle", "eta_text", "run_task", "shutdown_tasks",
           "task_pool"]


class TaskHandle(QObject):
    """One running task, as the UI sees it. Signals arrive on the UI thread."""

    progress = Signal(object)  # studio.core.tasks.Progress
    done = Signal(object)  # what the function returned
    failed = Signal(str)  # a readable message
    cancelled = Signal()

    def __init__(self, job: _Job, parent: QObject, name: str) -> None:
        super().__init__(parent)
        self.setObjectName(name or "task")
        self._job = job

    @property
    def name(self) -> str:
        return self._job.name

    @property
    def running(self) -> bool:
        """True until its outcome (done, failed or cancelled) has been delivered."""
        return not self._job.delivered

    @property
    def cancel_requested(self) -> bool:
        return self._job.cancel.is_set()

    def cancel(self) -> None:
        """Ask the function to stop (it sees ``cancelled()`` turn true); ``cancelled()`` follows
        when it raises :class:`Cancelled` (or at once, for a task not started yet)."""
        self._job.cancel.set()

    def wait(self, msecs: int = 30_000) -> bool:
        """Block until the function has returned (True) or ``msecs`` passed (False). Its outcome
        is then queued: it is delivered when the event loop runs next."""
        return self._job.finished.wait(max(0, msecs) / 1000)


class _Job:
    """What a worker may touch: plain Python, never a Qt object of the UI."""

    def __init__(self, key: int, name: str, fn: Callable[[ProgressFn, CancelledFn], Any]) -> None:
        self.key, self.name, self.fn = key, name, fn
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self.delivered = False  # UI thread only


class _Dispatcher(QObject):
    """Lives on the UI thread for the whole run of the application; every worker posts here."""

    # (job key, "progress" | "done" | "failed" | "cancelled", payload)
    post = Signal(int, str, object)

    def __init__(self) -> None:
        super().__init__()
        # key -> (handle, function, connection to the parent's destroyed): the function is kept
        # here so that its last reference (closures over widgets) is dropped on the UI thread.
        self.live: dict[int, tuple[TaskHandle, Any, Any]] = {}
        self.jobs: dict[int, _Job] = {}
        self.post.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def _deliver(self, key: int, kind: str, payload: Any) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        handle = entry[0]
        if kind == "progress":
            if shiboken6.isValid(handle):
                handle.progress.emit(payload)
            return
        self.live.pop(key, None)
        job = self.jobs.pop(key, None)
        if job is not None:
            job.delivered = True
        if not shiboken6.isValid(handle):  # the parent went away: nobody is waiting
            return
        parent = handle.parent()
        if entry[2] is not None and parent is not None and shiboken6.isValid(parent):
            QObject.disconnect(entry[2])
        if kind == "done":
            handle.done.emit(payload)
        elif kind == "failed":
            handle.failed.emit(payload)
        else:
            handle.cancelled.emit()
        # Done with: no longer a child of the parent (a service starting thousands of tasks must
        # not collect their handles); whoever still holds it may keep asking ``running``.
        if shiboken6.isValid(handle) and handle.parent() is not None:
            handle.setParent(None)


_DISPATCHER: _Dispatcher | None = None
_KEYS = itertools.count(1)


def _dispatcher() -> _Dispatcher:
    global _DISPATCHER
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("run_task needs a running QApplication")
    if QThread.currentThread() != app.thread():
        raise RuntimeError("run_task must be called on the UI thread")
    if _DISPATCHER is None or not shiboken6.isValid(_DISPATCHER):
        _DISPATCHER = _Dispatcher()
        app.aboutToQuit.connect(shutdown_tasks)
    return _DISPATCHER


class _Runner(QRunnable):
    def __init__(self, job: _Job, post: Callable[[int, str, Any], None]) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._job, self._post = job, post

    def run(self) -> None:
        job, post = self._job, self._post
        fn, job.fn = job.fn, None

        def progress(p: Progress) -> None:
            post(job.key, "progress", p)

        kind, payload = "cancelled", None
        try:
            if not job.cancel.is_set():  # cancelled while queued: do not start
                payload = fn(progress, job.cancel.is_set)
                kind = "done"
        except Cancelled:
            kind, payload = "cancelled", None
        except StudioError as exc:
            kind, payload = "failed", str(exc)
        except BaseException as exc:  # a bug must reach the user, not kill the thread silently
            print(f"studio: background task {job.name or job.key!r} failed:", file=sys.stderr)
            traceback.print_exc()
            text = str(exc)
            kind = "failed"
            payload = f"unexpected error: {type(exc).__name__}" + (f": {text}" if text else "")
        del fn  # the UI thread holds the other reference and drops it after delivery
        try:
            post(job.key, kind, payload)
        except RuntimeError:  # the application is gone
            pass
        finally:
            job.finished.set()


def run_task(fn: Callable[[ProgressFn, CancelledFn], T], *, parent: QObject,
             on_done: Callable[[T], None] | None = None,
             on_error: Callable[[str], None] | None = None,
             on_progress: Callable[[Progress], None] | None = None,
             on_cancelled: Callable[[], None] | None = None,
             pool: QThreadPool | None = None, name: str = "") -> TaskHandle:
    """Run ``fn(progress, cancelled)`` off the UI thread; call from the UI thread.

    The callbacks run on the UI thread (they are connected to the handle's signals, so they stop
    with the parent). ``pool``: the global pool unless given (see :func:`task_pool`)."""
    dispatcher = _dispatcher()
    job = _Job(next(_KEYS), name, fn)
    handle = TaskHandle(job, parent, name)
    for signal, slot in ((handle.done, on_done), (handle.failed, on_error),
                         (handle.progress, on_progress), (handle.cancelled, on_cancelled)):
        if slot is not None:
            signal.connect(slot)
    # The parent's destroyed() comes before its children (a dedicated pool waiting for its
    # threads among them) are deleted: cancel first, so that wait is short.
    conn = parent.destroyed.connect(lambda *_a, flag=job.cancel: flag.set())
    dispatcher.live[job.key] = (handle, fn, conn)
    dispatcher.jobs[job.key] = job
    (pool if pool is not None else QThreadPool.globalInstance()).start(
        _Runner(job, dispatcher.post.emit))
    return handle


def task_pool(parent: QObject, threads: int = 1) -> QThreadPool:
    """A dedicated pool owned by ``parent``; with one thread its tasks run one at a time, in
    order."""
    pool = QThreadPool(parent)
    pool.setMaxThreadCount(max(1, threads))
    return pool


def shutdown_tasks(msecs: int = 10_000) -> bool:
    """Cancel every task not yet finished and wait for their functions to return (at most
    ``msecs`` in all). Runs on application quit; True when all returned."""
    if _DISPATCHER is None or not shiboken6.isValid(_DISPATCHER):
        return True
    jobs = list(_DISPATCHER.jobs.values())
    for job in jobs:
        job.cancel.set()
    deadline = time.monotonic() + max(0, msecs) / 1000
    return all(job.finished.wait(max(0.0, deadline - time.monotonic())) for job in jobs)


def eta_text(seconds: float | None) -> str:
    """"1:05 left" for a progress ETA; "" while there is none yet."""
    if seconds is None:
        return ""
    s = int(round(seconds))  # noqa: RUF046 (a numpy float rounds to a float)
    return f"{s // 60}:{s % 60:02d} left"


# -- work that must not hold this process's GIL ------------------------------------------------

# The child: one JSON request a line on stdin ({"fn": "module:function", "kwargs": {...}}), one
# JSON answer a line on stdout ({"result": ...} or {"error": "..."}). It ends when stdin closes,
# so it never outlives the app (the pipe closes when the app dies, however it dies).
_CHILD = r"""
import importlib, json, sys
from studio.core.errors import StudioError
out_fd = sys.stdout
sys.stdout = sys.stderr  # a library that prints must not corrupt the answers
for line in sys.stdin:
    req = json.loads(line)
    try:
        mod, _, name = req["fn"].partition(":")
        answer = {"result": getattr(importlib.import_module(mod), name)(**req["kwargs"])}
    except StudioError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:
        answer = {"error": "the check failed: " + (str(exc) or type(exc).__name__)[:300]}
    out_fd.write(json.dumps(answer) + "\n")
    out_fd.flush()
"""


class ChildWorker:
    """A long-lived child Python process for task functions that hold the GIL for long (dlib's
    face detector: 0.1–2 s a call, during which a worker *thread* would freeze the UI). The task
    thread only waits on a pipe. Use it from inside :func:`run_task` functions, from one thread
    at a time (a one-thread :func:`task_pool`); functions are named ``"module:function"``, take
    and return JSON values, and live in Qt-free modules (:mod:`studio.ui.child_work`)."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._lock = threading.Lock()

    def _ensure(self) -> Any:
        import os
        import subprocess
        from pathlib import Path

        if self._proc is None or self._proc.poll() is not None:
            root = str(Path(__file__).resolve().parents[2])  # the folder holding ``studio``
            env = dict(os.environ)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
            self._proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          env=env, text=True, bufsize=1)
        return self._proc

    def call(self, fn: str, kwargs: dict[str, Any], cancelled: CancelledFn) -> Any:
        """``fn(**kwargs)`` in the child; a StudioError there is raised here with its message,
        a cancel kills the child (the next call starts another)."""
        import json
        import select

        if getattr(sys, "frozen", False):
            # A frozen bundle's executable is the app, not a Python that runs "-c": call here
            # (on the task's thread, as before there was a child).
            import importlib

            module, _, name = fn.partition(":")
            return json.loads(json.dumps(getattr(importlib.import_module(module), name)(**kwargs)))
        with self._lock:
            proc = self._ensure()
            try:
                proc.stdin.write(json.dumps({"fn": fn, "kwargs": kwargs}) + "\n")
                proc.stdin.flush()
            except OSError:
                self._close()
                raise StudioError("the check process stopped unexpectedly") from None
            while not select.select([proc.stdout], [], [], 0.1)[0]:
                if cancelled():
                    self._close()
                    raise Cancelled()
            line = proc.stdout.readline()
            if not line:
                code = proc.poll()
                self._close()
                raise StudioError(f"the check process stopped unexpectedly (exit code {code})")
        answer = json.loads(line)
        if "error" in answer:
            raise StudioError(str(answer["error"]))
        return answer["result"]

    def close(self) -> None:
        """End the child now (any thread; a call waiting on it then fails)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
