"""`continuity-studio bench scale` (issue 15, finding 10): at a tiny size, through the CLI, it
prints the JSON figures the issue asks for (the keys, not the numbers: those are the benchmark's
business on a quiet machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_scale_prints_its_keys(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CONTINUITY_STUDIO_HOME=str(tmp_path),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "studio", "bench", "scale", "--tiny"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    for key in ("queue_growth_per_doubling", "open_growth_per_doubling", "queue_s_2000",
                "first_paint_s_2000", "queue_s", "queue_vs_bare_write", "open",
                "bare_qt_first_paint_s", "machine", "repeat", "goals"):
        assert key in out, key
    assert set(out["queue_s"]) == {"5", "10"} and set(out["open"]) == {"5", "10"}
    for fig in out["open"].values():
        assert set(fig) >= {"first_paint_s", "busy_s", "longest_stall_s", "first_paint_vs_bare_qt"}
    assert isinstance(out["queue_growth_per_doubling"], float)
    assert isinstance(out["open_growth_per_doubling"], float)
