"""``continuity-studio export``: files written, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import opentimelineio as otio
import pytest
from export_testkit import OUT_H, OUT_W, make_project

from studio.cli import main
from studio.media.video import probe

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_film_otio_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path, [(8, OUT_W, OUT_H, 16), None, (6, OUT_W, OUT_H, 16)])
    out = tmp_path / "out" / "film.mp4"
    code = main(["export", str(tmp_path), "--out", str(out), "--otio", str(tmp_path / "f.otio"),
                 "--report", str(tmp_path / "r.html"), "--crossfade", "2", "--preset",
                 "ultrafast"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert probe(out).frames == 8 + 6 - 2
    assert "SKIPPED" in cap.err and "Shot 2" in cap.err  # reported before the export runs
    assert "re-encoded" in cap.out
    assert len(otio.adapters.read_from_file(str(tmp_path / "f.otio")).find_clips()) == 2
    assert "<html" in (tmp_path / "r.html").read_text()


def test_cli_default_output_and_copy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path, [(5, OUT_W, OUT_H, 16), (5, OUT_W, OUT_H, 16)])
    assert main(["export", str(tmp_path / "project.json"), "-q"]) == 0
    assert "copied" in capsys.readouterr().out
    assert probe(tmp_path / "exports" / "Test film.mp4").frames == 10


@pytest.mark.parametrize("args, message", [
    (["--crossfade", "-1"], "crossfade"),
    (["--edl", "x.edl"], "16 fps"),
    (["--preset", "warp"], "preset"),
])
def test_cli_rejects_bad_options_before_exporting(tmp_path: Path, args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    make_project(tmp_path, [(4, 160, 96, 16)])
    out = tmp_path / "film.mp4"
    assert main(["export", str(tmp_path), "--out", str(out), *args]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_fails_clearly_on_missing_take_and_missing_project(tmp_path: Path) -> None:
    project = make_project(tmp_path, [(4, 160, 96, 16)])
    (tmp_path / project.shots[0].active_take.video).unlink()
    # A real process: the exit status and the stderr line are what scripts see.
    proc = subprocess.run([sys.executable, "-m", "studio", "export", str(tmp_path), "--out",
                           str(tmp_path / "f.mp4")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "take video is missing" in proc.stderr
    assert project.shots[0].active_take.id in proc.stderr
    assert not (tmp_path / "f.mp4").exists()
    proc = subprocess.run([sys.executable, "-m", "studio", "export", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "no such file" in proc.stderr
