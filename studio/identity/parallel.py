"""A second core for dlib embeddings: one persistent worker process (spawn start method).

dlib holds the GIL in ``compute_face_descriptor`` (threads give nothing, measured), and the
embedding is the most expensive step (≈ 75-90 ms per face). The analysis loop aligns the face
chip (≈ 1 ms) and hands it to this worker, then carries on with landmarks, metrics and heatmaps
for the next frames; the results are collected at the end. The worker is started lazily, kept
for the session (starting one costs ≈ 1 s: Python, numpy, dlib and the 22 MB model) and
stopped at exit. Spawn, not fork: forking after OpenCV's thread pool started can deadlock.

If the worker cannot start or dies, callers fall back to embedding in-process.

The worker never outlives its parent (a killed ``render`` or app must not leave it running,
reparented to init and holding the parent's output pipes): its initializer asks Linux for
``PR_SET_PDEATHSIG`` (SIGKILL when the parent dies) and, on every system, starts a thread that
exits the worker as soon as its parent process id changes. Linux sends the death signal when
the *thread* that spawned the worker ends, so the worker is always spawned from one launcher
thread that lives as long as the process. multiprocessing's resource tracker exits by itself
once no worker holds its pipe.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_disabled = False
_launcher_done = threading.Event()  # never set: keeps the launcher thread (and PDEATHSIG) alive
PARENT_POLL_S = 0.25  # how often a worker checks that its parent is still there
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """In the worker: be killed when the parent dies (Linux), and exit when reparented (all)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watch thread below still ends the worker
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # no cleanup: the parent that wanted the results is gone

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    _warm()


def _warm() -> None:
    from studio.identity.landmarks import face_encoder

    face_encoder()


def _noop() -> None:
    return None


def _launch(executor: ProcessPoolExecutor) -> None:
    """Spawn the worker from this long-lived thread (the first submit spawns it), then stay."""
    try:
        executor.submit(_noop)
    except Exception:  # broken or shut down: submit() falls back later; pool() stops waiting
        return
    _launcher_done.wait()


def worker_pids() -> list[int]:
    """Process ids of the running embedding workers (for tests and diagnostics)."""
    p = _pool
    procs = getattr(p, "_processes", None) or {}
    return [int(pid) for pid in list(procs)]


def _embed_chip(chip: np.ndarray) -> np.ndarray:
    from studio.identity.landmarks import encode_chip

    return encode_chip(chip)


def enabled() -> bool:
    """Parallel embedding is used on machines with ≥ 2 cores unless
    ``CONTINUITY_ANALYSIS_WORKERS=0``."""
    if _disabled or os.environ.get("CONTINUITY_ANALYSIS_WORKERS", "1") == "0":
        return False
    return (os.cpu_count() or 1) >= 2


def pool() -> ProcessPoolExecutor | None:
    global _pool, _disabled
    with _lock:
        if _pool is None and not _disabled:
            try:
                import multiprocessing as mp

                # spawn: a fresh interpreter (no forked OpenCV threads, no inherited fds
                # beyond multiprocessing's own pipes).
                _pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                            initializer=_init_worker, initargs=(os.getpid(),))
                atexit.register(shutdown)
                launcher = threading.Thread(target=_launch, args=(_pool,),
                                            name="analysis-worker-launcher", daemon=True)
                launcher.start()
                # The first worker must be spawned by the launcher, not by this thread.
                deadline = time.monotonic() + 5.0
                while not worker_pids() and launcher.is_alive() and \
                        time.monotonic() < deadline:
                    time.sleep(0.005)
            except (OSError, RuntimeError, ImportError):
                _disabled = True
        return _pool


def submit(chip: np.ndarray) -> Future[Any] | None:
    """Queue an aligned 150x150 chip; None when no worker is available."""
    global _pool, _disabled
    p = pool() if enabled() else None
    if p is None:
        return None
    try:
        return p.submit(_embed_chip, np.ascontiguousarray(chip))
    except Exception:  # broken pool (worker killed): stop using it for this session
        with _lock:
            _disabled = True
            _pool = None
        return None


def disable() -> None:
    """Stop using the worker for this session (it failed)."""
    global _disabled
    _disabled = True
    shutdown()


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
