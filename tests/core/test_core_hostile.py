"""Hostile project files and the one-writer lock (issue 15, findings 1, 3, 5 and 9 at the core).

Everything here runs on real files: FIFOs made with os.mkfifo, a symlink to /dev/zero, real
subprocesses holding the lock and killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.core import safeio
from studio.core.atomic import DEBRIS_MIN_AGE_S, is_temp_name, remove_debris
from studio.core.document import ProjectDocument
from studio.core.errors import ProjectError, StudioError
from studio.core.lock import LOCK_FILE, ProjectLock, ProjectLocked, held_here, read_holder
from studio.core.model import Project, Shot
from studio.core.persistence import PROJECT_FILE, load_project, parse_project, save_project

REPO = Path(__file__).resolve().parents[2]


def _valid_doc() -> dict[str, Any]:
    take = {"id": "t1", "video": "takes/s1/t1.mp4", "seed": 1, "backend": "preview",
            "width": 64, "height": 64, "frames": 8, "fps": 16.0}
    return {"schema_version": 1, "id": "p1", "name": "Hostile", "created_at": 1.0,
            "shots": [{"id": "s1", "title": "One", "seed": 3, "takes": [take],
                       "active_take_id": "t1"},
                      {"id": "s2", "title": "Two"}]}


def _write(folder: Path, doc: dict[str, Any] | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (folder / PROJECT_FILE).write_text(text, encoding="utf-8")
    return folder


def _in_thread(fn, timeout: float = 5.0) -> BaseException | Any:
    """Run ``fn`` in a thread and fail the test (instead of hanging it) if it never returns."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} did not return within {timeout} s (it hangs)"
    return box[0]


# -- findings 3: files that are not regular files never hang a read ----------------------------

def test_project_json_fifo_is_refused_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    os.mkfifo(folder / PROJECT_FILE)
    result = _in_thread(lambda: load_project(folder))
    assert isinstance(result, ProjectError)
    assert "named pipe" in str(result) and PROJECT_FILE in str(result)


def test_project_json_linked_to_dev_zero_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    os.symlink("/dev/zero", folder / PROJECT_FILE)
    result = _in_thread(lambda: load_project(folder))
    assert isinstance(result, ProjectError) and "device" in str(result)


def test_a_file_growing_past_the_limit_while_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2000)
    with pytest.raises(StudioError, match="at most 1000 bytes"):
        safeio.read_bounded(path, 1000)


def test_a_folder_and_a_missing_file_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no such file"):
        load_project(tmp_path / "nowhere")
    (tmp_path / "p" / PROJECT_FILE).mkdir(parents=True)
    with pytest.raises(ProjectError, match="folder"):
        load_project(tmp_path / "p")


# -- findings 1 and 5: numbers, booleans, duplicate keys, duplicate take ids -------------------

@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_created_at_is_refused_not_saved_as_null(tmp_path: Path, raw: str) -> None:
    text = json.dumps(_valid_doc()).replace('"created_at": 1.0', f'"created_at": {raw}')
    folder = _write(tmp_path / "p", text)
    with pytest.raises(ProjectError) as info:
        load_project(folder)
    assert PROJECT_FILE in str(info.value)


def test_a_valid_project_saves_and_reopens(tmp_path: Path) -> None:
    folder = _write(tmp_path / "p", _valid_doc())
    project = load_project(folder)
    save_project(project, folder)
    assert load_project(folder) == project
    assert "null" not in (folder / PROJECT_FILE).read_text().split('"created_at"')[1][:10]


@pytest.mark.parametrize("field,value", [("seed", True), ("duration_s", False), ("fps", True)])
def test_booleans_are_not_numbers(tmp_path: Path, field: str, value: bool) -> None:
    doc = _valid_doc()
    doc["shots"][1][field] = value
    with pytest.raises(ProjectError, match=f"{field} must be a valid number"):
        load_project(_write(tmp_path / "p", doc))


def test_a_boolean_take_seed_is_refused(tmp_path: Path) -> None:
    doc = _valid_doc()
    doc["shots"][0]["takes"][0]["seed"] = True
    with pytest.raises(ProjectError, match="seed must be a valid number"):
        load_project(_write(tmp_path / "p", doc))


def test_duplicate_keys_are_refused_not_last_wins(tmp_path: Path) -> None:
    text = json.dumps(_valid_doc()).replace('"name": "Hostile"',
                                            '"name": "Hostile", "name": "Other"')
    with pytest.raises(ProjectError, match="duplicate key 'name'"):
        load_project(_write(tmp_path / "p", text))


def test_duplicate_take_ids_across_shots_are_refused(tmp_path: Path) -> None:
    doc = _valid_doc()
    doc["shots"][1]["takes"] = [dict(doc["shots"][0]["takes"][0], video="takes/s2/t1.mp4")]
    with pytest.raises(ProjectError, match="duplicate take id 't1'"):
        load_project(_write(tmp_path / "p", doc))


def test_a_document_refuses_a_take_id_another_shot_has() -> None:
    doc = ProjectDocument(Project.model_validate(_valid_doc()))
    take = doc.project.shot("s1").takes[0]
    with pytest.raises(ValueError, match="exists"):
        doc.insert_take("s2", take.model_copy())


@pytest.mark.parametrize("params", [
    {"camera_strength": float("nan")}, {"camera_strength": float("inf")},
    {"a": [[[[[[1]]]]]]}, {"many": list(range(5000))}, {"text": "x" * 30_000},
])
def test_hostile_shot_params_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Shot.model_validate({"params": params})


def test_nan_params_in_a_file_are_refused(tmp_path: Path) -> None:
    text = json.dumps(_valid_doc()).replace('"title": "Two"',
                                            '"title": "Two", "params": {"camera": NaN}')
    with pytest.raises(ProjectError):
        load_project(_write(tmp_path / "p", text))


def test_ordinary_params_still_load() -> None:
    shot = Shot.model_validate({"params": {"segment_frames": 33, "camera": {"strength": 0.4},
                                           "lora": ["a", "b"], "flag": True}})
    assert shot.params["camera"]["strength"] == 0.4


def test_deep_nesting_is_a_project_error_not_a_recursion_error() -> None:
    for depth in (20, 5000, 200_000):
        with pytest.raises(ProjectError, match="nested too deeply"):
            parse_project("[" * depth + "]" * depth)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    doc = _valid_doc()
    doc["name"] = "[[[[{{{{" * 10
    assert parse_project(json.dumps(doc)).name == doc["name"]


# A corpus of hostile JSON for every reader built on safeio.parse_json: whatever the bytes, the
# only exception is StudioError (never RecursionError, ValueError, MemoryError...).
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_values = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=30)
hostile_fragments = st.sampled_from([
    "NaN", "Infinity", "-Infinity", "1e999", '{"a":1,"a":2}', "[" * 300, "{" * 10,
    '"\\ud800"', "\x00", "9" * 5000, '"\\', "]", "true", "\u2028",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, hostile_fragments, st.integers(min_value=0, max_value=60))
def test_parse_json_raises_only_studio_errors(value: Any, fragment: str, cut: int) -> None:
    text = json.dumps(value)
    pos = min(cut, len(text))
    for candidate in (text, text[:pos] + fragment + text[pos:], fragment * 3):
        try:
            safeio.parse_json(candidate, max_depth=16)
        except StudioError:
            pass


@settings(max_examples=150, deadline=None)
@given(hostile_fragments, st.sampled_from(["name", "created_at", "seed", "params", "shots"]))
def test_hostile_values_in_a_project_raise_only_project_errors(fragment: str, key: str) -> None:
    text = json.dumps(_valid_doc())
    text = text.replace(f'"{key}": ', f'"{key}": {fragment}, "x{key}": ', 1)
    try:
        parse_project(text)
    except ProjectError:
        pass


# -- read-only documents ----------------------------------------------------------------------

def test_a_read_only_document_refuses_to_save_in_place(tmp_path: Path) -> None:
    folder = _write(tmp_path / "p", _valid_doc())
    before = (folder / PROJECT_FILE).read_bytes()
    doc = ProjectDocument(load_project(folder), folder)
    doc.read_only = True
    doc.update_shot("s2", title="Edited")
    assert doc.autosave() is None
    with pytest.raises(ProjectError, match="read-only"):
        doc.save()
    assert (folder / PROJECT_FILE).read_bytes() == before
    doc.save(tmp_path / "copy")  # Save As is allowed and makes the copy writable
    assert not doc.read_only and load_project(tmp_path / "copy").shot("s2").title == "Edited"


# -- finding 9: one writer per project --------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from studio.core.lock import ProjectLock
    lock = ProjectLock(sys.argv[1], program="render (test holder)").acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
""")


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_told_who_holds_the_project(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30)
    try:
        with pytest.raises(ProjectLocked) as info:
            ProjectLock(tmp_path).acquire()
        holder = info.value.holder
        assert holder is not None and holder.pid == proc.pid
        assert holder.program == "render (test holder)"
        assert f"process {proc.pid}" in str(info.value) and "read-only" in str(info.value)
        assert read_holder(tmp_path) == holder
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_obstacle(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_FILE).exists()  # its words stay, stale; the lock itself is free
    lock = ProjectLock(tmp_path, program="next").acquire()
    try:
        assert read_holder(tmp_path).pid == os.getpid()
        assert held_here(tmp_path) is lock
    finally:
        lock.release()
    assert held_here(tmp_path) is None


def test_waiting_takes_the_lock_when_the_holder_finishes(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 1.0)
    start = time.monotonic()
    lock = ProjectLock(tmp_path).acquire(wait_s=20, poll_s=0.05)
    try:
        assert 0.3 < time.monotonic() - start < 15
    finally:
        lock.release()
        proc.wait()


def test_waiting_can_be_cancelled(tmp_path: Path) -> None:
    proc = _holder(tmp_path, 30)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    try:
        with pytest.raises(ProjectLocked):
            ProjectLock(tmp_path).acquire(wait_s=float("inf"), poll_s=0.05, cancelled=cancel)
    finally:
        proc.kill()
        proc.wait()


def test_two_locks_in_one_process_conflict(tmp_path: Path) -> None:
    first = ProjectLock(tmp_path).acquire()
    try:
        with pytest.raises(ProjectLocked):
            ProjectLock(tmp_path).acquire()
    finally:
        first.release()
    ProjectLock(tmp_path).acquire().release()


def test_hostile_lock_files(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text('{"pid": "x", "pid": [' + "[" * 100)
    assert read_holder(tmp_path) is None
    ProjectLock(tmp_path).acquire().release()  # garbage words never block a writer
    (tmp_path / LOCK_FILE).unlink()
    os.mkfifo(tmp_path / LOCK_FILE)
    result = _in_thread(lambda: ProjectLock(tmp_path).acquire())
    assert isinstance(result, ProjectError) and "lock file" in str(result)
    (tmp_path / LOCK_FILE).unlink()
    target = tmp_path / "elsewhere"
    os.symlink(target, tmp_path / LOCK_FILE)
    with pytest.raises(ProjectError):
        ProjectLock(tmp_path).acquire()
    assert not target.exists()  # a symlinked lock file is never followed to create a file


def test_a_read_only_folder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root here, so chmod cannot make a folder read-only for us: the open is made to
    # fail with EROFS, as on a read-only mount.
    import errno

    real_open = os.open

    def erofs(path, flags, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", erofs)
    with pytest.raises(ProjectError, match="read-only"):
        ProjectLock(tmp_path).acquire()


# -- finding 7: debris of killed writes -------------------------------------------------------

def test_only_our_old_temp_files_are_removed(tmp_path: Path) -> None:
    ours_old = tmp_path / ".project.json.a1b2c3d4.tmp"
    ours_new = tmp_path / ".film.zz99yy88.part"
    theirs = [tmp_path / ".hidden.tmp", tmp_path / "film.part", tmp_path / ".notes.txt",
              tmp_path / ".x.toolong123.tmp"]
    for p in (ours_old, ours_new, *theirs):
        p.write_text("x")
    old = time.time() - DEBRIS_MIN_AGE_S - 5
    for p in (ours_old, *theirs):
        os.utime(p, (old, old))
    (tmp_path / ".dir.a1b2c3d4.tmp").mkdir()  # not a regular file: kept
    assert remove_debris(tmp_path) == [ours_old]
    assert ours_new.exists() and all(p.exists() for p in theirs)
    assert is_temp_name(ours_new.name) and not is_temp_name("film.part")


def test_a_save_killed_half_way_leaves_the_old_file_and_its_debris_goes(tmp_path: Path) -> None:
    folder = _write(tmp_path / "p", _valid_doc())
    before = (folder / PROJECT_FILE).read_bytes()
    code = ("import sys; from studio.core.persistence import load_project, save_project; "
            "p = load_project(sys.argv[1]); p.name = 'Killed'; save_project(p, sys.argv[1])")
    env = dict(os.environ, STUDIO_CRASH_AT="half-written")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, cwd=REPO)
    assert done.returncode == 70
    assert (folder / PROJECT_FILE).read_bytes() == before
    assert list(folder.glob(f".{PROJECT_FILE}.*.tmp"))  # the killed save's temp file
    save_project(load_project(folder), folder)
    assert not list(folder.glob(f".{PROJECT_FILE}.*.tmp"))
