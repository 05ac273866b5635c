"""One writer per project at the session: the lock, read-only sessions, in-process take-over.

Another writer is a real second process holding the lock (``studio.core.lock``); real projects,
real takes from the preview backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_fixtures import make_project  # noqa: E402

from studio.core.lock import LOCK_FILE, ProjectLocked, held_here  # noqa: E402
from studio.core.persistence import load_project  # noqa: E402
from studio.engine.queue import DraftOverrides, JobQueue, JobState  # noqa: E402
from studio.session import events as ev  # noqa: E402
from studio.session.session import ReadOnlySession, Session  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DRAFT = DraftOverrides(width=160, height=96, frames=4)
# Holds the project's lock until its stdin closes; with "try", exits 0 if it got it, 3 if not.
CHILD = """
import sys
from studio.core.lock import ProjectLock, ProjectLocked
lock = ProjectLock(sys.argv[1], "lock-test holder")
try:
    lock.acquire(wait_s=0)
except ProjectLocked:
    sys.exit(3)
if sys.argv[2] == "try":
    sys.exit(0)
print("held", flush=True)
if sys.argv[2] == "rename":  # change the project while holding it, then let go
    import time
    from studio.core.persistence import load_project, save_project
    time.sleep(1.0)
    p = load_project(sys.argv[1])
    p.name = "renamed by the holder"
    save_project(p, sys.argv[1])
    lock.release()
    sys.exit(0)
sys.stdin.read()
"""


def _child(folder: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), mode], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def holder(tmp_path: Path, photo_png: Path):  # noqa: ANN201
    """(folder, process): a saved project whose lock another process holds."""
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    proc = _child(folder, "hold")
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    proc.stdin.close()
    proc.wait(timeout=30)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def test_a_writer_is_refused_while_another_process_holds_the_project(holder) -> None:  # noqa: ANN001
    folder, proc = holder
    with pytest.raises(ProjectLocked) as info:
        Session.open(folder, read_only=False)
    assert info.value.holder is not None and info.value.holder.pid == proc.pid
    text = str(info.value)
    assert f"in use by lock-test holder (process {proc.pid} on " in text
    assert str(folder) in text and "\n" not in text
    assert held_here(folder) is None  # nothing half-taken was left behind


def test_a_read_only_session_never_writes_the_project(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    writer = Session(doc, read_only=False, analyze_new_takes=False)
    writer.queue_takes([doc.project.shots[0].id], draft=DRAFT)
    running = writer.queue.start_next()  # the writer is "mid-render" when it lets go
    assert running is not None
    writer.close()
    proc = _child(folder, "hold")
    try:
        assert proc.stdout.readline().strip() == "held"
        before = _snapshot(folder)
        session = Session.open(folder, read_only=True)  # while another process writes it
        assert session.read_only and session.lock is None
        assert "Opened read-only." in session.restore_notes
        # The writer's running job is shown as it is (not re-queued as "interrupted").
        assert session.queue.get(running.id).state is JobState.RUNNING
        with pytest.raises(ReadOnlySession) as info:
            session.queue_takes([doc.project.shots[0].id], draft=DRAFT)
        assert "cannot queue takes" in str(info.value) and "project.json" in str(info.value)
        assert session.recover_takes() == [] and session.next_job() is None
        session.queue.pause()  # the queue panel's own buttons: in memory only
        session.close()
        assert _snapshot(folder) == before
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_newer_session_in_this_process_takes_over_and_the_older_is_refused(
        tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    sid = doc.project.shots[0].id
    older = Session(doc, read_only=False, analyze_new_takes=False)
    lock = older.lock
    assert lock is not None and held_here(folder) is lock
    newer = Session.open(folder, read_only=False, analyze_new_takes=False,
                         save_after_take=True)
    assert newer.lock is lock and not newer.read_only  # handed over, not refused
    assert older.read_only and older.lock is None  # demoted: its writes are refused
    with pytest.raises(ReadOnlySession) as info:
        older.queue_takes([sid], draft=DRAFT)
    assert f"(process {os.getpid()} " not in str(info.value)
    assert "took the project over" in str(info.value)
    newer.queue_takes([sid], draft=DRAFT)
    summary = newer.run_jobs()
    assert len(summary.done) == 1 and not summary.failed
    assert len(load_project(folder).shot(sid).takes) == 1
    older.close()  # closing the demoted session leaves the newer one's lock alone
    assert held_here(folder) is newer.lock and newer.lock.held
    newer.close()
    assert held_here(folder) is None


def test_take_over_false_is_refused_by_this_process_too(tmp_path: Path,
                                                        photo_png: Path) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    first = Session(doc, read_only=False)
    with pytest.raises(ProjectLocked) as info:
        Session.open(folder, read_only=False, take_over=False)
    assert f"(process {os.getpid()} on " in str(info.value)
    assert not first.read_only  # the first window keeps the project
    first.close()


def test_close_releases_the_lock_for_other_processes(tmp_path: Path, photo_png: Path) -> None:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    session = Session.open(folder, read_only=False, program="lock-test session")
    assert _child(folder, "try").wait(timeout=60) == 3  # held: the other process is refused
    session.close()
    assert session.read_only
    assert _child(folder, "try").wait(timeout=60) == 0


def test_lock_wait_reads_the_project_the_holder_saved_last(tmp_path: Path,
                                                           photo_png: Path) -> None:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    proc = _child(folder, "rename")
    assert proc.stdout.readline().strip() == "held"
    session = Session.open(folder, read_only=False, lock_wait=60)
    try:
        # The lock comes before project.json is read: the waiter sees the holder's last save.
        assert session.document.project.name == "renamed by the holder"
    finally:
        session.close()
        proc.wait(timeout=30)


def test_a_take_made_but_never_recorded_is_recovered_not_run_again(
        tmp_path: Path, photo_png: Path) -> None:
    """A render stopped between writing a take and recording it; the project was saved after
    the take was written (another of its jobs finished), so the take is older than the save."""
    from studio.engine.runner import execute_job

    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    sid = doc.project.shots[0].id
    first = Session(doc, read_only=False, analyze_new_takes=False)
    [job] = first.queue_takes([sid], draft=DRAFT)
    spec = first.next_job()
    result = execute_job(spec, lambda p: None, lambda: False)  # the take's files are written
    doc.save()  # ... a later save that does not list it; then the process dies
    first.queue.interrupt(job.id)
    first.queue.start_next()  # as queue.json says after the kill: the job "running"
    first.close()
    assert (folder / result.take.video).is_file()
    assert load_project(folder).modified_at > result.take.created_at

    session = Session.open(folder, read_only=False, analyze_new_takes=False)
    seen: list[ev.SessionEvent] = []
    session.events.subscribe(seen.append)
    assert session.recover_takes() == [(sid, result.take.id)]
    summary = session.run_jobs()
    session.document.save()
    session.close()
    assert summary.done == [job.id]
    [ready] = [e for e in seen if isinstance(e, ev.TakeReady)]
    assert not ready.added  # finished at once: its take was recovered, the job not run again
    assert not any(isinstance(e, ev.JobStarted) for e in seen)
    assert [t.id for t in load_project(folder).shot(sid).takes] == [result.take.id]
    final = JobQueue.for_project(folder).get(job.id)
    assert final.state is JobState.DONE


def test_a_writer_removes_the_debris_of_killed_writes_and_a_reader_does_not(
        tmp_path: Path, photo_png: Path) -> None:
    # Issue 15, finding 7: killed renders left hidden temp videos in takes/<shot>/ for ever.
    import time as _time

    from studio.core.persistence import save_project

    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    save_project(doc.project, folder)
    (folder / "takes" / "s1").mkdir(parents=True, exist_ok=True)
    debris = [folder / "takes" / "s1" / ".t1.ab12cd34.part", folder / ".queue.json.zz99yy88.tmp",
              folder / "analysis" / ".t1.qq11ww22.tmp"]
    young = folder / "takes" / "s1" / ".t2.ee33rr44.part"  # a write of this process going on
    theirs = folder / "takes" / "s1" / "notes.part"
    old = _time.time() - 3600
    for path in (*debris, young, theirs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        if path is not young:
            os.utime(path, (old, old))
    reader = Session.open(folder, read_only=True)
    reader.close()
    assert all(p.exists() for p in debris)
    writer = Session.open(folder, read_only=False)
    try:
        assert not any(p.exists() for p in debris)
        assert young.exists() and theirs.exists()
    finally:
        writer.close()
