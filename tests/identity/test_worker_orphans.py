"""Finding 7 of issue 15: the analysis worker (and multiprocessing's resource tracker) must die
with the process that started it. A real subprocess runs real analyses with the embedding
worker, is SIGKILLed mid-analysis, and within a few seconds none of its children is alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
from studio.identity import parallel as par
from studio.identity.analysis import analyze_frames, prepare_reference
from studio.identity.engines import get_engine
from studio.identity.samples import astronaut, moving_frames

engine = get_engine("dlib")
photo = astronaut()
ref = prepare_reference(engine, photo, "r0")
frames = moving_frames(photo, n=12, size=(416, 240))
analyze_frames(frames, 24.0, [ref], engine, parallel=True)
print("WORKERS", *par.worker_pids(), flush=True)
while True:  # keep analysing until killed: the kill lands mid-analysis
    analyze_frames(frames, 24.0, [ref], engine, parallel=True)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_die_with_a_killed_parent() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONTINUITY_ANALYSIS_WORKERS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("WORKERS"), f"the analysis did not start: {line!r}"
        workers = [int(p) for p in line.split()[1:]]
        if not workers:
            pytest.skip("this machine runs the analysis without a worker process")
        time.sleep(0.5)
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert set(workers) <= set(children)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.1)
        survivors = [p for p in children if _alive(p)]
        assert not survivors, f"children of the killed process still alive: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in locals().get("children", []):  # never leave this test's own orphans
            if _alive(c):
                os.kill(c, signal.SIGKILL)
