"""One writer per project, from the shell: two real ``render`` processes on one project.

The first render is frozen (SIGSTOP) while it holds the project's lock, so the second meets a
held lock every time, however fast the machine; a real SIGKILL leaves a stale lock file behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402

from studio.cli._remedies import EXIT_LOCKED  # noqa: E402
from studio.core.lock import LOCK_FILE, read_holder  # noqa: E402
from studio.core.persistence import load_project  # noqa: E402
from studio.engine.queue import JobQueue, JobState  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DRAFT = ["--size", "320x192", "--frames", "8"]


def _render(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "studio", "render", str(folder), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_holder(folder: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``proc`` holds the project's lock (its lock file names it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = read_holder(folder)
        if holder is not None and holder.pid == proc.pid:
            return
        if proc.poll() is not None:
            pytest.fail(f"the first render ended before it held the lock:\n{proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("the first render never took the project's lock")


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _takes_on_disk(folder: Path) -> set[str]:
    return {p.stem for p in (folder / "takes").glob("*/*.mp4")}


def _listed(folder: Path) -> list[str]:
    return [t.id for s in load_project(folder).shots for t in s.takes]


@pytest.fixture
def project(tmp_path: Path, photo_png: Path) -> Path:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=2, duration_s=1.0)
    return folder


def test_a_second_render_is_refused_naming_the_holder_and_drops_nothing(project: Path) -> None:
    first = _render(project, "--takes", "2", *DRAFT)
    _wait_for_holder(project, first)
    first.send_signal(signal.SIGSTOP)  # holds the lock, frozen: the second meets it for sure
    try:
        second = _render(project, "--no-resume", "--takes", "3", *DRAFT)
        rc2, err2 = _finish(second)
    finally:
        first.send_signal(signal.SIGCONT)
    rc1, err1 = _finish(first)
    assert rc1 == 0, err1
    assert rc2 == EXIT_LOCKED
    [line] = err2.strip().splitlines()  # one line, no traceback
    assert f"in use by continuity-studio render (process {first.pid} on " \
           f"{socket.gethostname()}, since " in line and line.startswith("error: ")
    assert "--wait" in line
    # The refused render ran nothing; the first one's four takes are all listed.
    listed = _listed(project)
    assert len(listed) == 4 == len(set(listed))
    assert set(listed) == _takes_on_disk(project)
    jobs = JobQueue.for_project(project).jobs()
    assert sorted(j.take_id for j in jobs) == sorted(listed)
    assert all(j.state is JobState.DONE and j.requeued == 0 for j in jobs)
    assert not (project / LOCK_FILE).read_text()  # released: no stale words left


def test_render_wait_runs_after_the_holder_and_every_job_runs_once(project: Path) -> None:
    first = _render(project, "--takes", "2", *DRAFT)
    _wait_for_holder(project, first)
    first.send_signal(signal.SIGSTOP)
    try:
        second = _render(project, "--no-resume", "--takes", "2", "--wait", *DRAFT)
        time.sleep(1.5)
        assert second.poll() is None  # waiting for the frozen holder, not rendering beside it
        assert read_holder(project).pid == first.pid
    finally:
        first.send_signal(signal.SIGCONT)
    rc1, err1 = _finish(first)
    rc2, err2 = _finish(second)
    assert rc1 == 0, err1
    assert rc2 == 0, err2
    assert f"waiting: continuity-studio render (process {first.pid} on " in err2
    # 2 shots x 2 takes each, twice: eight takes, every one listed, none run twice.
    listed = _listed(project)
    assert len(listed) == 8 == len(set(listed))
    assert set(listed) == _takes_on_disk(project)
    jobs = JobQueue.for_project(project).jobs()
    assert len(jobs) == 8 and sorted(j.take_id for j in jobs) == sorted(listed)
    assert all(j.state is JobState.DONE and j.requeued == 0 for j in jobs)


def test_render_wait_with_seconds_gives_up_in_one_line(project: Path) -> None:
    first = _render(project, "--takes", "1", *DRAFT)
    _wait_for_holder(project, first)
    first.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        rc2, err2 = _finish(_render(project, "--wait", "1", *DRAFT))
        waited = time.monotonic() - t0
    finally:
        first.send_signal(signal.SIGCONT)
    assert _finish(first)[0] == 0
    assert rc2 == EXIT_LOCKED and waited >= 1.0
    lines = err2.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("waiting: ")
    assert lines[1].startswith("error: ") and f"(process {first.pid} on " in lines[1]
    assert "did not finish in time" in lines[1]


def test_a_killed_render_leaves_a_stale_lock_that_the_next_render_ignores(project: Path) -> None:
    first = _render(project, "--takes", "3", "--size", "320x192")
    _wait_for_holder(project, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    stale = read_holder(project)
    assert stale is not None and stale.pid == first.pid  # the words stay; the flock is gone
    t0 = time.monotonic()
    rc, err = _finish(_render(project, *DRAFT))
    assert rc == 0, err
    assert "in use" not in err and "waiting" not in err
    assert time.monotonic() - t0 < 60
    listed = _listed(project)
    assert len(listed) == len(set(listed)) and set(listed) == _takes_on_disk(project)
    assert all(s.takes for s in load_project(project).shots)
    assert not JobQueue.for_project(project).pending()
