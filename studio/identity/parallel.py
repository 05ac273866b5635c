"""A second core for dlib embeddings: one persistent worker process (spawn start method).

dlib holds the GIL in ``compute_face_descriptor`` (threads give nothing, measured), and the
embedding is the most expensive step (≈ 75-90 ms per face). The analysis loop aligns the face
chip (≈ 1 ms) and hands it to this worker, then carries on with landmarks, metrics and heatmaps
for the next frames; the results are collected at the end. The worker is started lazily, kept
for the session (starting one costs ≈ 1 s: Python, numpy, dlib and the 22 MB model) and
stopped at exit. Spawn, not fork: forking after OpenCV's thread pool started can deadlock.

If the worker cannot start or dies, callers fall back to embedding in-process.
"""

from __future__ import annotations

import atexit
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_disabled = False


def _warm() -> None:
    from studio.identity.landmarks import face_encoder

    face_encoder()


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

                _pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"),
                                            initializer=_warm)
                atexit.register(shutdown)
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
