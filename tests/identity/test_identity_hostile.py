"""Issue 15 in the identity layer, on a real small project analysed for real: hostile analysis
files (finding 2), absurd takes (4), a read-only folder for ``analyze --json`` (6) and a full
disk while the analysis is written (7b). Every refusal is one line naming the file; nothing
raises but the StudioError family."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from identity_helpers import astronaut, moving_frames
from studio.core.document import ProjectDocument
from studio.core.errors import AssetError, StudioError
from studio.core.model import Character, Reference, Shot, Take
from studio.core.persistence import ensure_layout, save_project
from studio.identity import analysis as A
from studio.identity import api
from studio.identity import record as R
from studio.identity.engines import get_engine
from studio.identity.record import analysis_paths, read_record
from studio.media.images import import_image
from studio.media.video import write_video
from studio.session.session import Session

ENGINE = get_engine("dlib")
W, H, N = 416, 240, 10


def _build(folder: Path) -> tuple[str, str]:
    """A one-shot project whose take is analysed for real; (shot id, take id)."""
    ensure_layout(folder)
    doc = ProjectDocument(folder=folder)
    img = folder / "astro.png"
    Image.fromarray(astronaut()).save(img)
    asset = import_image(folder, img)
    doc.add_asset(asset)
    char = Character(name="Eileen", references=[Reference(asset=asset.path, angle="front")])
    doc.insert_character(char)
    shot = Shot(title="A", character_id=char.id)
    doc.insert_shot(shot)
    rel = f"takes/{shot.id}/t0.mp4"
    (folder / "takes" / shot.id).mkdir(parents=True, exist_ok=True)
    write_video(folder / rel, moving_frames(astronaut(), N, size=(W, H), amplitude=0.4), 16)
    doc.insert_take(shot.id, Take(id="take0", video=rel, seed=0, backend="preview",
                                  width=W, height=H, frames=N, fps=16.0))
    save_project(doc.project, folder)
    return shot.id, "take0"


@pytest.fixture(scope="module")
def analysed() -> Any:
    base = Path(tempfile.mkdtemp(prefix="hostile-analysis-"))
    shot_id, take_id = _build(base / "p")
    project = Session.open(base / "p").document.project
    api.analyze_take(base / "p", project, project.shot(shot_id), project.shot(shot_id).takes[0],
                     engine=ENGINE)
    yield base / "p", shot_id, take_id
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def proj(analysed: Any, tmp_path: Path) -> tuple[Path, str, str]:
    src, shot_id, take_id = analysed
    dst = tmp_path / "p"
    shutil.copytree(src, dst)
    return dst, shot_id, take_id


def _status(folder: Path, shot_id: str, take_id: str) -> Any:
    session = Session.open(folder, analyze_new_takes=False, engine=ENGINE)
    try:
        return session.analyses.status(shot_id, take_id)
    finally:
        session.close()


# -- finding 2: hostile analysis JSON and NPZ ------------------------------------------------

def test_the_real_record_reads_fresh(proj: tuple[Path, str, str]) -> None:
    folder, shot_id, take_id = proj
    assert _status(folder, shot_id, take_id).state == "fresh"
    rec = read_record(folder, take_id, arrays=True)
    assert rec is not None and rec.arrays is not None


def test_duplicate_keys_make_the_record_unreadable_not_last_wins(
        proj: tuple[Path, str, str]) -> None:
    folder, shot_id, take_id = proj
    jpath, _ = analysis_paths(folder, take_id)
    text = jpath.read_text()
    assert text.startswith("{\n")
    jpath.write_text('{\n "seconds": 1.0,' + text[1:])  # the record's own "seconds" wins today
    status = _status(folder, shot_id, take_id)
    assert status.state == "unreadable"
    (reason,) = status.reasons
    assert str(jpath) in reason and "duplicate key 'seconds'" in reason and "\n" not in reason
    # analyse again: the damaged record is replaced by a good one
    project = Session.open(folder).document.project
    shot = project.shot(shot_id)
    assert api.analyze_take(folder, project, shot, shot.takes[0], engine=ENGINE)["cached"] is False
    assert _status(folder, shot_id, take_id).state == "fresh"


def _in_thread(fn: Any, fifo: Path, timeout: float = 5.0) -> BaseException | None:
    box: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (handed back to the test)
            box[0] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():  # blocked on the FIFO: release it, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        th.join(5)
        pytest.fail(f"reading {fifo.name} blocked on a named pipe")
    return box[0]


def test_a_fifo_as_the_arrays_is_refused_without_blocking(proj: tuple[Path, str, str]) -> None:
    folder, _, take_id = proj
    _, npath = analysis_paths(folder, take_id)
    npath.unlink()
    os.mkfifo(npath)
    exc = _in_thread(lambda: read_record(folder, take_id, arrays=True), npath)
    assert isinstance(exc, AssetError) and exc.path == npath
    assert "named pipe" in str(exc)


def test_a_fifo_as_the_record_is_refused_without_blocking(proj: tuple[Path, str, str]) -> None:
    folder, shot_id, take_id = proj
    jpath, _ = analysis_paths(folder, take_id)
    jpath.unlink()
    os.mkfifo(jpath)
    box: list[Any] = []
    exc = _in_thread(lambda: box.append(_status(folder, shot_id, take_id)), jpath)
    assert exc is None and box[0].state == "unreadable" and str(jpath) in box[0].reasons[0]


def test_deep_nesting_is_refused_before_parsing(proj: tuple[Path, str, str]) -> None:
    folder, shot_id, take_id = proj
    jpath, _ = analysis_paths(folder, take_id)
    doc = json.loads(jpath.read_text())
    doc["summary"]["embedding"] = json.loads("[" * 40 + "]" * 40)
    jpath.write_text(json.dumps(doc))
    status = _status(folder, shot_id, take_id)
    assert status.state == "unreadable" and "nested too deeply" in status.reasons[0]


# A JSON value of any shape (what a hostile or broken writer could put anywhere in the file).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, prefix + (i,))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_records_give_only_studio_errors(analysed: Any, data: Any) -> None:
    folder, shot_id, take_id = analysed
    jpath, _ = analysis_paths(folder, take_id)
    good = jpath.read_bytes()
    doc = json.loads(good)
    where = data.draw(st.sampled_from(_paths(doc)[1:]))
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = data.draw(JSON_VALUES)
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        shutil.copytree(folder, tmp / "p")
        jp, _ = analysis_paths(tmp / "p", take_id)
        jp.write_text(json.dumps(doc))
        try:
            read_record(tmp / "p", take_id, arrays=True)
        except StudioError as exc:
            assert str(jp) in str(exc) and "\n" not in str(exc)
        assert _status(tmp / "p", shot_id, take_id).state in ("fresh", "stale", "unreadable")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic and header, as numpy writes them


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(member=st.sampled_from(R.ARRAY_NAMES),
       shape=st.lists(st.integers(0, 2**33), min_size=0, max_size=4).map(tuple),
       descr=st.sampled_from(["|u1", "<f4", "<f8", "<i8", "|O", "<U4", "|b1"]),
       tail=st.binary(max_size=64))
def test_fuzzed_npz_members_give_only_studio_errors(analysed: Any, member: str,
                                                    shape: tuple[int, ...], descr: str,
                                                    tail: bytes) -> None:
    folder, _, take_id = analysed
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-npz-"))
    try:
        shutil.copytree(folder, tmp / "p")
        _, npath = analysis_paths(tmp / "p", take_id)
        with zipfile.ZipFile(npath) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        members[f"{member}.npy"] = _npy_header(shape, descr) + tail  # e.g. 8 GiB declared
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        npath.write_bytes(buf.getvalue())
        try:
            rec = read_record(tmp / "p", take_id, arrays=True)
        except StudioError as exc:
            assert exc.path == npath and "\n" not in str(exc)
        else:  # only a header that is exactly the take's own passes, with all its bytes
            assert rec is not None and rec.arrays is not None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_fifo_as_the_take_is_named_not_read(proj: tuple[Path, str, str]) -> None:
    folder, shot_id, _ = proj
    project = Session.open(folder).document.project
    shot = project.shot(shot_id)
    video = folder / shot.takes[0].video
    video.unlink()
    os.mkfifo(video)
    box: list[Any] = []
    exc = _in_thread(lambda: box.append(api.analyze_take(folder, project, shot, shot.takes[0],
                                                         engine=ENGINE, force=True)), video)
    assert isinstance(exc, AssetError) and exc.path == video and "named pipe" in str(exc)


# -- finding 4: absurd takes and budgets -------------------------------------------------------

def test_faces_are_detected_on_a_frame_within_the_budget(
        proj: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, shot_id, take_id = proj
    # Pretend the take is far above the detection budget: the detector sees a scaled frame.
    budget = (W * 3 // 4) * (H * 3 // 4)
    monkeypatch.setattr(A, "DETECT_MAX_PIXELS", budget)
    monkeypatch.setattr(A, "DETECT_MAX_SIDE", W * 3 // 4)
    seen: list[tuple[int, int, int]] = []
    real = ENGINE.detect

    def spy(rgb: np.ndarray, upsample: int = 0) -> Any:
        seen.append((rgb.shape[0], rgb.shape[1], upsample))
        return real(rgb, upsample)

    monkeypatch.setattr(ENGINE, "detect", spy)
    project = Session.open(folder).document.project
    shot = project.shot(shot_id)
    api.analyze_take(folder, project, shot, shot.takes[0], engine=ENGINE, force=True)
    assert seen and all(h * w <= budget for h, w, _ in seen)
    rec = read_record(folder, take_id, arrays=True)
    assert rec is not None and rec.summary.face_frames == N  # the face is still found
    assert rec.arrays is not None and rec.arrays.heatmaps.shape[1:] == ((H + 7) // 8,
                                                                       (W + 7) // 8)


def test_an_absurd_take_is_refused_before_decoding(
        proj: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, shot_id, take_id = proj
    project = Session.open(folder).document.project
    shot = project.shot(shot_id)
    video = folder / shot.takes[0].video
    decoded: list[int] = []
    import studio.media.video as V

    real_iter = V.iter_frames
    monkeypatch.setattr(V, "iter_frames", lambda *a, **k: (decoded.append(1), real_iter(*a, **k))[1])
    monkeypatch.setattr(A, "MAX_ANALYSIS_PIXELS", W * H - 1)  # this take is "above 8K"
    with pytest.raises(AssetError) as info:
        api.analyze_take(folder, project, shot, shot.takes[0], engine=ENGINE, force=True)
    assert info.value.path == video and f"{W}x{H}" in str(info.value) and not decoded
    monkeypatch.setattr(A, "MAX_ANALYSIS_PIXELS", W * H)
    monkeypatch.setattr(R, "MAX_ARRAY_BYTES", 100)  # heatmaps that would not fit a record
    with pytest.raises(AssetError, match="heatmaps") as info:
        api.analyze_take(folder, project, shot, shot.takes[0], engine=ENGINE, force=True)
    assert info.value.path == video and not decoded


# -- finding 6: analyze --json in a read-only folder --------------------------------------------

def _refuse_writes_in(folder: Path, code: int, monkeypatch: pytest.MonkeyPatch,
                      name_part: str = "") -> None:
    """Temp files in ``folder`` (every atomic write starts with one) fail with ``code``: EROFS
    and ENOSPC cannot be made for real when the tests run as root."""
    import studio.core.atomic as atomic

    real = atomic.tempfile.mkstemp

    def mkstemp(*args: Any, **kw: Any) -> Any:
        where = Path(kw.get("dir") or ".").resolve()
        if where == folder.resolve() and name_part in str(kw.get("prefix", "")):
            raise OSError(code, os.strerror(code), str(where / "x.tmp"))
        return real(*args, **kw)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


def test_analyze_json_in_a_read_only_folder_prints_results_and_one_line(
        proj: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from studio.cli import main

    folder, _, _ = proj
    clip = next((folder / "takes").rglob("*.mp4"))
    out = folder / "analysis.json"
    _refuse_writes_in(folder, errno.EROFS, monkeypatch)
    rc = main(["analyze", str(clip), "--project", str(folder), "--character", "Eileen",
               "--json", str(out), "--engine", "dlib"])
    got = capsys.readouterr()
    assert rc == 1 and not out.exists()
    assert f"{clip.name}: {N} frames" in got.out  # the results it has
    (line,) = got.err.strip().splitlines()
    assert str(out) in line and "read-only" in line and "Traceback" not in got.err


# -- finding 7b: a full disk while the analysis is written --------------------------------------

def test_a_full_disk_writing_the_record_names_it_and_keeps_no_half_record(
        proj: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, shot_id, take_id = proj
    jpath, npath = analysis_paths(folder, take_id)
    _refuse_writes_in(jpath.parent, errno.ENOSPC, monkeypatch, name_part=".json")
    session = Session.open(folder, analyze_new_takes=False, engine=ENGINE)
    failed: list[str] = []
    real_failed = session.analysis_failed
    monkeypatch.setattr(session, "analysis_failed",
                        lambda job, message: (failed.append(message), real_failed(job, message)))
    assert session.request_analysis(shot_id, take_id, force=True)
    session.run_analyses()  # what `render --analyze` runs after each take
    (message,) = failed
    assert message == f"{jpath}: disk full (no space left on device) while writing this file"
    assert not jpath.exists() and not npath.exists()  # no arrays without their record
    take = session.document.project.shot(shot_id).takes[0]
    assert take.id == take_id and (folder / take.video).is_file()  # the take itself is kept
    assert not [p for p in jpath.parent.iterdir() if p.name.endswith(".tmp")]
    session.close()
