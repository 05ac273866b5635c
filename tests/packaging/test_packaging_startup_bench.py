"""``continuity-studio bench startup`` reports start-up as a ratio to a bare PySide6 window timed
in the same run (issue 14, finding 12: absolute seconds move with the machine's load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_startup_reports_the_ratio_to_bare_qt(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               CONTINUITY_STUDIO_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "studio", "bench", "startup", "--repeat", "1"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    bare = r["startup_s_median_bare_qt"]
    assert 0 < bare < r["startup_s_median"]  # a bare window is what any Qt program pays at least
    # (the figures are rounded to 4 places, the ratio to 2)
    assert r["startup_vs_bare_qt"] == pytest.approx(r["startup_s_median"] / bare, abs=0.02)
    assert r["startup_vs_bare_qt_demo"] == pytest.approx(r["startup_s_median_demo"] / bare, abs=0.02)
    assert r["goal_ratio"] == 2.0
    assert r["meets_goal"] == (max(r["startup_vs_bare_qt"], r["startup_vs_bare_qt_demo"]) <= 2.0)
    assert r["peak_rss_mib_bare_qt"] > 0
