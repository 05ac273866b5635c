"""``continuity-studio --demo``: the copy lands in a visible folder the user is told about (or one
they chose), never in a hidden data folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.core.errors import StudioError
from studio.core.persistence import load_project, project_file
from studio.ui.app import copy_demo, projects_root

ROOT = Path(__file__).resolve().parents[2]


def test_demo_goes_to_a_visible_folder_under_the_isolated_home(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path / "home"))
    first, second = copy_demo(), copy_demo()
    assert first.parent == second.parent == tmp_path / "home" / "Continuity Studio"
    assert first.name == f"Demo {time.strftime('%Y-%m-%d')}" and second.name == f"{first.name} (2)"
    for copy in (first, second):
        assert load_project(project_file(copy)).name.startswith("Demo")
        assert not any(part.startswith(".") for part in copy.relative_to(tmp_path).parts)


def test_without_the_override_it_is_the_documents_or_home_folder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.delenv("CONTINUITY_STUDIO_HOME", raising=False)
    monkeypatch.delenv("XDG_DOCUMENTS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))  # no user-dirs.dirs there
    assert projects_root() == home / "Continuity Studio"  # a server without ~/Documents
    (home / "Documents").mkdir()
    assert projects_root() == home / "Documents" / "Continuity Studio"
    (home / ".config").mkdir()
    (home / ".config" / "user-dirs.dirs").write_text('XDG_DOCUMENTS_DIR="$HOME/Dokumente"\n')
    (home / "Dokumente").mkdir()
    assert projects_root() == home / "Dokumente" / "Continuity Studio"


def test_a_chosen_folder(tmp_path: Path) -> None:
    new = copy_demo(tmp_path / "films" / "my demo")
    assert new == tmp_path / "films" / "my demo" and (new / "project.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert copy_demo(empty) == empty and (empty / "project.json").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    inside = copy_demo(busy)
    assert inside.parent == busy and inside.name.startswith("Demo ")
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(StudioError, match="is a project already"):
        copy_demo(new)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudioError, match="is a file"):
        copy_demo(tmp_path / "file")


def _start(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDIO_BENCH_STARTUP": "1", "QT_QPA_PLATFORM": "offscreen",
           "CONTINUITY_STUDIO_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)


def test_the_command_prints_where_the_demo_is(tmp_path: Path) -> None:
    proc = _start(["--demo"], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("demo project: "))
    where = Path(line.removeprefix("demo project: "))
    assert where.parent == tmp_path / "home" / "Continuity Studio"
    assert (where / "project.json").is_file()
    chosen = tmp_path / "here"
    proc = _start(["--demo-dir", str(chosen)], tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert f"demo project: {chosen}" in proc.stdout.splitlines()
    assert (chosen / "project.json").is_file()


def test_the_window_says_where_the_demo_was_created(qapp, qtbot, tmp_path: Path, request,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_app(demo=True)`` opens the copy and the status bar names its folder (an artist who
    started the app from a menu sees no terminal). The event loop is not run to its end here:
    quitting it would shut the shared task pools (aboutToQuit) for the tests that follow."""
    from tests.ui.uitest_support import start_app

    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path / "home"))
    win = start_app(qapp, qtbot, request, monkeypatch, demo=True)
    expected = tmp_path / "home" / "Continuity Studio" / f"Demo {time.strftime('%Y-%m-%d')}"
    qtbot.waitUntil(lambda: win.document.folder == expected, timeout=30_000)
    assert win.statusBar().currentMessage() == f"Demo project created in {expected}"
