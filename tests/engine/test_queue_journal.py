"""The queue's snapshot + journal (issue 15, findings 9 and 10): O(change) bytes per state
change, a torn or stale journal never corrupts the queue, a kill at any moment leaves a loadable
queue, and two queues on one project never claim the same job."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import studio.engine.queue as queue_mod
from studio.engine.queue import (JOURNAL_FILE, QUEUE_FILE, Job, JobQueue, JobState,
                                 bookkeeping_run, read_queue_files)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def journal_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every change goes to the journal (no whole rewrite for small queues), without fsync so
    the byte counts are quick to take."""
    monkeypatch.setattr(queue_mod, "SNAPSHOT_ALWAYS_BELOW", 0)
    monkeypatch.setattr(queue_mod, "FSYNC", False)


def _state(q: JobQueue) -> tuple:
    return ([(j.id, j.state.value, j.seed, tuple(j.notes)) for j in q.jobs()], q.paused)


def _disk(path: Path) -> tuple:
    st = read_queue_files(path)
    assert not st.problems, st.problems
    jobs = st.active + list(reversed(st.history))
    return ([(j.id, j.state.value, j.seed, tuple(j.notes)) for j in jobs], st.paused)


def _written_bytes() -> int:
    """Bytes this process handed to write(2) so far (the kernel's count, not ours)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def _bookkeeping_bytes(folder: Path, n: int) -> int:
    folder.mkdir()
    q = JobQueue.load(folder / QUEUE_FILE)
    before = _written_bytes()
    for i in range(n):
        q.add(Job(shot_id=f"s{i % 97}", seed=i, label=f"Shot {i}"))
    while (job := q.start_next()) is not None:
        q.finish(job.id, {"total_s": 0.5})
    return _written_bytes() - before


def test_bytes_per_state_change_do_not_grow_with_the_queue(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_mod, "FSYNC", False)  # bytes are what is measured, not time
    sizes = (250, 500, 1000, 2000)
    total = {n: _bookkeeping_bytes(tmp_path / f"q{n}", n) for n in sizes}
    growth = [total[b] / total[a] for a, b in zip(sizes, sizes[1:])]
    assert max(growth) <= 2.2, (total, growth)
    per_change = {n: total[n] / (3 * n) for n in sizes}  # add, start, finish
    assert per_change[2000] <= 1.2 * per_change[250], per_change
    again = JobQueue.load(tmp_path / "q2000" / QUEUE_FILE)
    assert len(again.jobs()) == queue_mod.HISTORY_LIMIT and not again.pending()


def test_bookkeeping_run_for_the_scale_bench(tmp_path: Path) -> None:
    seconds = bookkeeping_run(tmp_path / "b", 250)
    assert seconds > 0
    q = JobQueue.load(tmp_path / "b" / QUEUE_FILE)
    assert not q.pending() and all(j.state is JobState.DONE for j in q.jobs())


def test_the_journal_replays_to_the_same_queue(tmp_path: Path, journal_mode: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_mod, "COMPACT_RATIO", 0.5)  # compactions happen often too
    path = tmp_path / QUEUE_FILE
    q = JobQueue.load(path)
    rng = random.Random(15)
    seed = 0
    for step in range(400):
        op = rng.randrange(9)
        pend = q.pending()
        if op <= 2 or not pend:
            seed += 1
            q.add(Job(shot_id="s1", seed=seed), front=rng.random() < 0.2)
        elif op == 3:
            q.move(rng.choice(pend).id, rng.randrange(len(pend) + 1))
        elif op == 4:
            q.edit(rng.choice(pend).id, seed=rng.randrange(1000))
        elif op == 5:
            q.cancel(rng.choice(pend).id)
        elif op == 6:
            job = q.start_next(limit=2)
            if job is not None and rng.random() < 0.3:
                q.requeue(job.id, "server went away")
        elif op == 7:
            for job in q.running_jobs():
                if rng.random() < 0.7:
                    q.finish(job.id)
                else:
                    q.fail(job.id, "boom")
        else:
            q.pause() if rng.random() < 0.5 else q.resume()
        assert _disk(path) == _state(q), step
    assert (tmp_path / JOURNAL_FILE).stat().st_size > 0  # the journal was in use


def test_a_torn_last_line_is_ignored_and_appending_continues(tmp_path: Path,
                                                             journal_mode: None) -> None:
    path = tmp_path / QUEUE_FILE
    q = JobQueue.load(path)
    a, b = q.add([Job(shot_id="s1", seed=1), Job(shot_id="s1", seed=2)])
    q.start_next()
    expected = _state(q)
    assert (tmp_path / JOURNAL_FILE).stat().st_size > 0  # the changes went to the journal
    with open(tmp_path / JOURNAL_FILE, "ab") as f:  # killed in the middle of an append
        f.write(b'{"g":"x","op":"end","job":{"shot_')
    again = JobQueue.load(path)
    assert [j.id for j in again.pending()] == [a.id, b.id]  # a was running: re-queued first
    assert again.get(a.id).requeued == 1
    assert expected[0][0][0] == a.id
    again.finish(again.start_next().id)
    assert _disk(path) == _state(again)  # the torn line did not swallow later records


def test_a_stale_journal_is_never_replayed_onto_a_newer_snapshot(tmp_path: Path,
                                                                 journal_mode: None) -> None:
    path = tmp_path / QUEUE_FILE
    q = JobQueue.load(path)
    q.save()
    [a] = q.add(Job(shot_id="s1", seed=1))
    q.finish(q.start_next().id)
    old_journal = (tmp_path / JOURNAL_FILE).read_bytes()
    assert b'"op":"end"' in old_journal
    q.clear_history()
    q.save()  # a new snapshot; a kill before the journal was emptied leaves the old one:
    (tmp_path / JOURNAL_FILE).write_bytes(old_journal)
    again = JobQueue.load(path)
    assert again.get(a.id) is None and again.jobs() == []


def test_two_queues_on_one_project_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    setup = JobQueue.load(path)
    jobs = setup.add([Job(shot_id="s1", seed=i) for i in range(4)])
    first, second = JobQueue.load(path), JobQueue.load(path)  # two render processes
    claimed: dict[int, list[str]] = {id(first): [], id(second): []}
    for _ in range(4):
        for q in (first, second):
            job = q.start_next(limit=4)
            if job is not None:
                claimed[id(q)].append(job.id)
    every = claimed[id(first)] + claimed[id(second)]
    assert sorted(every) == sorted(j.id for j in jobs)  # each exactly once
    assert claimed[id(first)] and claimed[id(second)]
    for q in (first, second):
        for job_id in claimed[id(q)]:
            q.finish(job_id)
    # Every outcome is on disk, none lost to the other queue's writes.
    final = JobQueue.load(path)
    assert {j.id for j in final.jobs()} == {j.id for j in jobs}
    assert all(j.state is JobState.DONE for j in final.jobs())


_KILL_CHILD = r"""
import sys, random
import studio.engine.queue as Q
Q.SNAPSHOT_ALWAYS_BELOW = 0
Q.COMPACT_RATIO = 0.5
q = Q.JobQueue.load(sys.argv[1])
print("ready", flush=True)
rng = random.Random()
while True:
    q.add(Q.Job(shot_id="s1", seed=rng.randrange(10**6)))
    job = q.start_next()
    if job is not None and rng.random() < 0.8:
        q.finish(job.id)
"""


def test_a_kill_at_any_moment_leaves_a_loadable_queue(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rng = random.Random(7)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(path)], env=env,
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        q = JobQueue.load(path)
        assert not [n for n in q.restore_notes if "could not be read" in n], q.restore_notes
        ids = [j.id for j in q.jobs()]
        assert len(ids) == len(set(ids)) and not q.running_jobs()
    json.loads(path.read_text())  # the snapshot itself is always whole
    assert (tmp_path / JOURNAL_FILE).exists()  # and the changes went through the journal
