"""Start-up time: process start → main window shown (offscreen), and the process's peak memory.

Runs ``python -m studio`` (empty project) and ``python -m studio --demo`` several times with
``STUDIO_BENCH_STARTUP=1``, which makes the app print ``STARTUP_SHOWN <time.time()>`` after the
window's first paint and exit. Goal: median under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks._common import machine_info, median


def _one(extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "studio", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    shown = [ln for ln in out.splitlines() if ln.startswith("STARTUP_SHOWN ")]
    if proc.returncode != 0 or not shown:
        raise RuntimeError(f"app did not report start-up (exit {proc.returncode}): {err[-2000:]}")
    t_shown = float(shown[-1].split()[1])
    peak_mib = usage.ru_maxrss / 1024.0  # Linux reports KiB
    return t_shown - t0, peak_mib


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="continuity-studio bench startup")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["STUDIO_BENCH_STARTUP"] = "1"
    env["CONTINUITY_STUDIO_HOME"] = tempfile.mkdtemp(prefix="cs-bench-startup-")
    result: dict[str, Any] = {"benchmark": "startup", "repeat": args.repeat, "goal_s": 0.5}
    for label, extra in (("", []), ("_demo", ["--demo"])):
        _one(extra, env)  # warm the OS file cache; not counted
        times, mems = [], []
        for _ in range(args.repeat):
            t, m = _one(extra, env)
            times.append(t)
            mems.append(m)
        result[f"startup_s_median{label}"] = round(median(times), 4)
        result[f"startup_s_min{label}"] = round(min(times), 4)
        result[f"startup_s_max{label}"] = round(max(times), 4)
        result[f"peak_rss_mib{label}"] = round(max(mems), 1)
    result["machine"] = machine_info()
    return result
