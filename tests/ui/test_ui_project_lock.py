"""Issue 15, finding 9 in the GUI: a project held by another process (a real one, holding
studio.core.lock's ProjectLock) is named in a dialog offering Open Read-Only / Wait / Cancel;
read-only refuses to save in place, Wait opens for writing once the other process lets go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from studio.core.lock import read_holder
from studio.core.persistence import PROJECT_FILE

from tests.ui.uitest_support import (answers, make_settings, open_window,  # noqa: F401
                                     sample_project, wait_until)

HOLDER = ("import sys, time\n"
          "from studio.core.lock import ProjectLock\n"
          "ProjectLock(sys.argv[1], 'Other Studio').acquire()\n"
          "print('held', flush=True)\n"
          "time.sleep(120)\n")


@pytest.fixture
def held(tmp_path: Path):
    folder = tmp_path / "proj"
    sample_project(folder)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_locked_project_opens_read_only_naming_the_holder(qtbot, tmp_path, held, answers) -> None:  # noqa: F811
    folder, proc = held
    before = (folder / PROJECT_FILE).read_bytes()
    win = open_window(qtbot, None, make_settings(tmp_path))
    answers.queue = [QMessageBox.Open]
    assert win.open_project(folder)
    assert answers.asked == ["Project in use"]
    q = answers.questions[0]
    assert f"Other Studio (process {proc.pid} on" in q["text"]
    assert set(q["labels"].values()) == {"Open Read-Only", "Wait", "Cancel"}
    assert win.read_only and "(read-only)" in win.windowTitle()
    assert not win.read_only_bar.isHidden() and "read-only" in win.read_only_bar.label.text().lower()
    # Really on screen, on a row of its own: beside the Generate bar it was squeezed to 8 px.
    win.resize(1366, 768)
    qtbot.waitUntil(lambda: win.read_only_bar.isVisible() and win.read_only_bar.width() > 600)
    assert not win.save_action.isEnabled() and win.save_as_action.isEnabled()
    assert not win.inspector.isEnabled()
    assert not win.save()
    assert "read-only" in (win.last_error or "") and "Save As" in (win.last_error or "")
    assert (folder / PROJECT_FILE).read_bytes() == before
    assert win.autosave() is None
    copy = tmp_path / "copy"
    assert win.save_as(copy)  # Save As to another folder is allowed, and writable there
    assert not win.read_only and "(read-only)" not in win.windowTitle()
    assert (copy / PROJECT_FILE).is_file() and read_holder(copy).pid == os.getpid()


def test_cancel_leaves_the_window_as_it_was(qtbot, tmp_path, held, answers) -> None:  # noqa: F811
    folder, _proc = held
    win = open_window(qtbot, None, make_settings(tmp_path))
    answers.queue = [QMessageBox.Cancel]
    assert not win.open_project(folder)
    assert win.is_untitled and not win.read_only


def test_wait_opens_for_writing_when_the_holder_exits(qtbot, tmp_path, held, answers) -> None:  # noqa: F811
    folder, proc = held
    win = open_window(qtbot, None, make_settings(tmp_path))
    answers.queue = [QMessageBox.Retry]
    assert win.open_project(folder)
    assert win.read_only and "Waiting" in win.read_only_bar.label.text()
    qtbot.wait(300)  # the wait polls off the UI thread: the window stays read-only meanwhile
    assert win.read_only
    proc.kill()
    proc.wait()
    wait_until(qtbot, lambda: not win.read_only, timeout=10_000)
    assert "(read-only)" not in win.windowTitle() and win.save_action.isEnabled()
    assert win.project_lock is not None and win.project_lock.held
    assert read_holder(folder).pid == os.getpid()
    assert win.save()
