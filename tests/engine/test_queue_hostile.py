"""Hostile queue.json files and ids (issue 15, findings 0, 2 and 7b): a damaged queue or job is
set aside with one line naming the file, never a traceback; an id from a file never becomes a
path outside the project; a full disk is reported on the file being written."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_fixtures import make_project
from studio.cli import main
from studio.core.errors import StudioError
from studio.core.persistence import load_project
from studio.engine.queue import JOURNAL_FILE, MAX_QUEUE_BYTES, QUEUE_FILE, Job, JobQueue, JobState
from studio.engine.takes import read_sidecar, write_take

ESCAPE = "../../elsewhere/name"


def _job(**changes: object) -> dict:
    d = Job(shot_id="shot1", seed=7, label="Shot 1").to_dict()
    d.update(changes)
    return d


def _queue_text(*jobs: dict) -> str:
    return json.dumps({"format": 1, "paused": False, "jobs": list(jobs), "history": []})


def _load_soon(path: Path) -> JobQueue:
    """JobQueue.load in a thread with a deadline: a FIFO must never hang it."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(_try_load(path)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), f"loading {path} hangs"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]  # type: ignore[return-value]


def _try_load(path: Path) -> object:
    try:
        return JobQueue.load(path)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc


# -- finding 0: ids never become paths outside the project -----------------------------------

def test_escaping_take_id_in_queue_writes_nothing_outside_and_keeps_good_jobs(
        tmp_path: Path, photo_png: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    doc = make_project(folder, photo_png, shots=2)
    shot = doc.project.shots[0]
    good = Job(shot_id=shot.id, seed=5, label=shot.title, width=128, height=80, frames=4,
               draft=True)
    bad = dict(good.to_dict(), id="badjob", take_id=ESCAPE)
    (folder / QUEUE_FILE).write_text(_queue_text(good.to_dict(), bad))
    assert main(["render", str(folder), "--size", "128x80", "--frames", "4"]) == 0
    assert list(outside.iterdir()) == []  # nothing written outside the project
    assert not list(tmp_path.glob("**/name.mp4"))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "'take_id'" in ln or "left out" in ln]
    assert len(lines) == 1 and "queue.json" in lines[0] and "left out" in lines[0], err
    assert "Traceback" not in err
    # The good job of the same file was kept and ran under its own take id.
    assert load_project(folder).shot(shot.id).take(good.take_id) is not None


def test_take_files_are_proved_inside_before_anything_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "takes").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    for shot_id, take_id in (("shot1", ESCAPE), ("../../elsewhere", "name"), ("..", "x")):
        with pytest.raises(StudioError, match="not a valid id"):
            write_take(folder, shot_id=shot_id, take_id=take_id, frames=frames, fps=8.0,
                       seed=1, backend="preview", model=None, draft=True, sidecar={})
    # A shot folder that is a symlink out of the project is refused too.
    (folder / "takes" / "shot2").symlink_to(outside)
    with pytest.raises(StudioError, match="outside the project"):
        write_take(folder, shot_id="shot2", take_id="t1", frames=frames, fps=8.0, seed=1,
                   backend="preview", model=None, draft=True, sidecar={})
    assert list(outside.iterdir()) == []


def test_a_hostile_take_sidecar_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    side = tmp_path / "t1.json"
    for data, words in (("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                        ('{"format": 1, "format": 1, "take": {}}', "duplicate key"),
                        ('{"format": 1, "take": {}, "seed": NaN}', "not valid JSON")):
        side.write_text(data)
        with pytest.raises(StudioError, match=words):
            read_sidecar(side)
    side.unlink()
    os.mkfifo(side)
    with pytest.raises(StudioError, match="named pipe"):
        read_sidecar(side)


# -- finding 2: hostile queue files ----------------------------------------------------------

def _nested(depth: int) -> str:
    return '{"format": 1, "jobs": [' + "[" * depth + "]" * depth + "]}"


JOB_VARIANTS = {
    "label an int": _job(label=3),
    "notes a string": _job(notes="hello"),
    "timings a list": _job(timings=[1, 2]),
    "requeued a string": _job(requeued="2"),
    "shot id escaping": _job(shot_id="../x"),
    "state unknown": _job(state="exploded"),
    "created_at a string": _job(created_at="yesterday"),
}

FILE_VARIANTS = {
    "deep nesting": _nested(5000),
    "NaN": '{"format": 1, "jobs": [{"shot_id": "a", "seed": 1, "created_at": NaN}]}',
    "duplicate keys": '{"format": 1, "format": 1, "jobs": []}',
    "not UTF-8": b'{"format": 1, "jobs": ["\xff"]}',
    "top level a list": "[1, 2]",
    "paused a string": '{"format": 1, "paused": "yes", "jobs": []}',
    "huge timing": _queue_text(_job()).replace('"timings": {}', '"timings": {"x": 1e400}'),
}


@pytest.mark.parametrize("name", sorted(JOB_VARIANTS))
def test_a_bad_job_is_left_out_with_one_line_and_the_rest_kept(tmp_path: Path, name: str) -> None:
    path = tmp_path / QUEUE_FILE
    keep = _job(id="keepme", take_id="keeptake")
    path.write_text(_queue_text(JOB_VARIANTS[name], keep))
    q = _load_soon(path)
    assert [j.id for j in q.pending()] == ["keepme"]
    lines = [n for n in q.restore_notes if "could not be read" in n]
    assert len(lines) == 1 and str(path) in lines[0] and "\n" not in lines[0]
    # The original file was set aside; the clean queue loads without a note.
    assert list(tmp_path.glob("queue.json.damaged-*"))
    again = JobQueue.load(path)
    assert [j.id for j in again.pending()] == ["keepme"]
    assert not [n for n in again.restore_notes if "could not be read" in n]


def test_damaged_queue_files_are_set_aside_with_one_line(tmp_path: Path) -> None:
    for i, (name, data) in enumerate(sorted(FILE_VARIANTS.items())):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        path = folder / QUEUE_FILE
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        q = _load_soon(path)
        assert not q.pending(), name
        assert len(q.restore_notes) == 1 and str(path) in q.restore_notes[0], name
        assert "\n" not in q.restore_notes[0], name
        assert not path.exists() and list(folder.glob("queue.json.damaged-*")), name


def test_fifo_device_and_huge_files_never_hang_or_exhaust(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    os.mkfifo(path)
    q = _load_soon(path)
    assert "named pipe" in q.restore_notes[0] and not path.exists()
    path.symlink_to("/dev/zero")
    q = _load_soon(path)
    assert "device" in q.restore_notes[0] and not os.path.lexists(path)
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(MAX_QUEUE_BYTES + 1)
    q = _load_soon(path)
    assert "at most" in q.restore_notes[0]
    # A journal that is a FIFO is set aside too; the snapshot still loads.
    path.write_text(_queue_text(_job(id="j1")))
    os.mkfifo(tmp_path / JOURNAL_FILE)
    q = _load_soon(path)
    assert [j.id for j in q.pending()] == ["j1"]
    assert any("named pipe" in n for n in q.restore_notes)


def test_render_of_a_project_with_a_hostile_queue_says_one_line(
        tmp_path: Path, photo_png: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=1)
    (folder / QUEUE_FILE).write_text(_nested(100_000))
    assert main(["render", str(folder), "--size", "128x80", "--frames", "4"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nested too deeply" in err
    assert sum(len(s.takes) for s in load_project(folder).shots) == 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)
_fields = st.sampled_from(sorted(Job(shot_id="s", seed=1).to_dict()))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(field=_fields, value=_json, junk=st.binary(max_size=200), mode=st.integers(0, 4))
def test_fuzzed_queue_files_load_or_are_set_aside(tmp_path: Path, field: str, value: object,
                                                   junk: bytes, mode: int) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / QUEUE_FILE
    doc = json.loads(_queue_text(_job(**{field: value})))
    text = json.dumps(doc).encode()
    if mode == 1:
        text = text[: len(junk) % (len(text) + 1)] + junk  # truncated and garbage
    elif mode == 2:
        text = junk
    elif mode == 4:  # nested deeper than any parser's recursion limit
        text = b'{"format": 1, "jobs": ' + b"[" * (5000 + len(junk)) + b"]" * (5000 + len(junk)) + b"}"
    path.write_bytes(text)
    if mode == 3:  # a journal line of junk after a valid snapshot
        (folder / JOURNAL_FILE).write_bytes(junk + b"\n")
    try:
        q = JobQueue.load(path)
    except StudioError:  # pragma: no cover - load sets files aside instead of raising
        return
    for job in q.jobs():  # whatever survived is well-formed
        assert isinstance(job.label, str) and isinstance(job.notes, list)
        assert isinstance(job.state, JobState)


# -- finding 7b: a full disk is reported on the file being written ----------------------------

def test_full_disk_during_the_take_is_the_error_shown(tmp_path: Path, photo_png: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """A full disk cannot be made here (no root, no loop device): the encoder's write and every
    later queue save raise OSError(ENOSPC), as they would on a full disk."""
    import studio.engine.queue as queue_mod
    from studio.media import video

    folder = tmp_path / "p"
    make_project(folder, photo_png, shots=2)
    full = {"on": False}
    real_encode = video._Encoder.encode
    real_save = queue_mod.atomic_write_bytes

    def encode(self: object, frame: object) -> None:
        if self.frames >= 1:  # type: ignore[attr-defined]
            full["on"] = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_encode(self, frame)

    def save(path: Path, data: bytes, *a: object, **k: object) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(path, data, *a, **k)

    monkeypatch.setattr(video._Encoder, "encode", encode)
    monkeypatch.setattr(queue_mod, "atomic_write_bytes", save)
    main(["render", str(folder), "--size", "128x80", "--frames", "4"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failures = [ln for ln in err.splitlines() if "disk full" in ln or "space" in ln]
    assert failures, err
    # The first failure shown is the take's own, on the take file, not the queue's.
    assert ".mp4" in failures[0] and "disk full (no space left on device)" in failures[0], err
    assert "cannot save the job queue" not in err.split(failures[0])[0]
    # No partial temp video left behind.
    leftovers = [p for p in (folder / "takes").rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
