"""The analysis record: round trip, format-1 migration (a real file of the old writer), hostile
files, staleness, and the one colour scale."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.core.errors import AssetError
from studio.core.model import Angle, Character, Reference
from studio.core.persistence import parse_project
from studio.identity import colours
from studio.identity import record as R
from studio.identity.record import (AnalysisRecord, analysis_paths, parse_record, read_record,
                                    references_fingerprint, write_record)

DATA = Path(__file__).parent / "data"
FORMAT1 = DATA / "format1"  # written by analyze_take before the record existed (format 1)
TAKE = "take_v1"


# -- building records --------------------------------------------------------------------------

def _result(n: int = 6, width: int = 40, height: int = 24, *, refs: tuple[str, ...] = ("r0",),
            flagged: tuple[int, ...] = (2, 3)) -> dict[str, Any]:
    """A consistent analysis result (what analyze_video returns) of ``n`` frames."""
    frames = []
    for i in range(n):
        bad = i in flagged
        frames.append({"index": i, "time": round(i / 16, 4), "face_found": True, "faces": 1,
                       "identity": 0.4 if bad else 0.9, "identity_source": "embedded",
                       "proportions": 0.8, "eye_shape": None, "skin_tone": 0.9,
                       "stability": None if i in (0, n - 1) else 0.7,
                       "matched_reference": refs[i % len(refs)] if refs else None,
                       "flagged": bad, "reasons": ["different person"] if bad else [],
                       "blink": False, "pose": [1.5, -2.0]})
    ranges = []
    if flagged:
        ranges = [{"start": min(flagged), "end": max(flagged), "reasons": ["different person"]}]
    return {"format": 1, "analysis_version": 1,
            "engine": {"name": "dlib", "model": "m", "version": "1", "license": "CC0",
                       "threshold": 0.5},
            "engine_key": "dlib/m/1",
            "references": [{"id": r, "angle": "front", "source": f"{r}.png", "pose": [0.5, 4.0]}
                           for r in refs],
            "summary": {"identity_mean": 0.7, "identity_min": 0.4,
                        "flagged_fraction": round(len(flagged) / max(n, 1), 4),
                        "worst_frames": list(flagged)[:5], "drift_ranges": ranges,
                        "motion": 0.01, "embedding": [0.1, -0.2, 0.3], "face_frames": n,
                        "embedded_frames": n},
            "frames": frames,
            "take": {"video": "takes/s/t.mp4", "sha256": "a" * 64, "frames": n, "fps": 16.0,
                     "width": width, "height": height},
            "seconds": 0.5}


def _arrays(n: int = 6, width: int = 40, height: int = 24) -> dict[str, np.ndarray]:
    h8, w8 = -(-height // 8), -(-width // 8)
    rng = np.random.default_rng(n)
    lm = rng.random((n, 68, 2), dtype=np.float32) * width
    lm[:1] = np.nan
    return {"heatmaps": rng.integers(0, 256, (n, h8, w8), dtype=np.uint8), "landmarks": lm,
            "boxes": rng.random((n, 4), dtype=np.float32)}


def _record(take_id: str = "t1", **kw: Any) -> AnalysisRecord:
    return AnalysisRecord.from_result(_result(**kw), take_id=take_id, shot_id="s1",
                                      character_id="c1", references_fingerprint="f" * 16)


def _same_arrays(a: R.AnalysisArrays, b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(getattr(a, k), b[k], equal_nan=True) and
               getattr(a, k).dtype == b[k].dtype for k in R.ARRAY_NAMES)


# -- round trip --------------------------------------------------------------------------------

def test_write_then_read_gives_the_same_record_and_arrays(tmp_path: Path) -> None:
    rec, arrays = _record(), _arrays()
    jpath, npath = write_record(tmp_path, rec, arrays)
    assert (jpath, npath) == analysis_paths(tmp_path, "t1")
    assert jpath.parent == tmp_path / "analysis"
    back = read_record(tmp_path, "t1", arrays=True)
    assert back == rec and back.format == R.FORMAT == 4
    assert back.json_path == jpath and back.mtime_ns == jpath.stat().st_mtime_ns
    assert _same_arrays(back.arrays, arrays)
    assert read_record(tmp_path, "t1").arrays is None  # arrays only when asked for
    assert read_record(tmp_path, "nope") is None


def test_conveniences() -> None:
    rec = _record(n=6, flagged=(2, 3))
    ident = rec.metric("identity")
    assert ident.dtype == np.float32 and ident.shape == (6,)
    assert np.isnan(rec.metric("eye_shape")).all()
    assert np.isnan(rec.metric("stability")[[0, 5]]).all()
    assert set(rec.metrics()) == set(R.METRICS)
    assert rec.flagged().tolist() == [False, False, True, True, False, False]
    assert rec.reasons()[2] == ["different person"]
    assert rec.matched_references() == ["r0"] * 6
    assert [(r.start, r.end, r.frames) for r in rec.drift_ranges] == [(2, 3, 2)]
    assert rec.identity_mean == 0.7 and rec.threshold == 0.5 and rec.frame_count == 6
    assert rec.embedding().dtype == np.float32
    assert rec.band() == "close"  # a passing mean, but a third of the frames flagged
    with pytest.raises(KeyError):
        rec.metric("nose")


_score = st.one_of(st.none(), st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def _records(draw: Any) -> tuple[AnalysisRecord, dict[str, np.ndarray]]:
    n = draw(st.integers(0, 12))
    width, height = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    refs = draw(st.lists(st.text("abcXYZ_-é", min_size=1, max_size=8), max_size=3, unique=True))
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    frames = []
    for i in range(n):
        face = draw(st.booleans())
        reasons = draw(st.lists(st.sampled_from(["different person", "face missing", "eye ✓"]),
                                max_size=3)) if flags[i] else []
        frames.append({
            "index": i, "time": i / 24, "face_found": face, "faces": draw(st.integers(0, 3)),
            **{k: draw(_score) for k in R.METRICS},
            "identity_source": draw(st.sampled_from([None, "embedded", "interpolated"])),
            "matched_reference": draw(st.sampled_from([None, *refs])),
            "flagged": flags[i], "reasons": reasons, "blink": draw(st.booleans()),
            "pose": draw(st.one_of(st.none(), st.lists(st.floats(-90, 90), min_size=2,
                                                        max_size=2)))})
    ranges, start = [], None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            ranges.append({"start": start, "end": i - 1, "reasons": ["different person"]})
            start = None
    result = _result(0, width, height, refs=tuple(refs), flagged=())
    result["frames"] = frames
    result["take"]["frames"] = n
    result["summary"].update(
        identity_mean=draw(_score), identity_min=draw(_score),
        flagged_fraction=sum(flags) / max(n, 1), drift_ranges=ranges,
        worst_frames=draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=5)) if n else [],
        embedding=draw(st.one_of(st.none(), st.lists(st.floats(-1e6, 1e6), min_size=1,
                                                     max_size=16))),
        face_frames=sum(1 for f in frames if f["face_found"]), embedded_frames=0,
        motion=draw(st.floats(0, 10)))
    rec = AnalysisRecord.from_result(result, take_id=draw(st.sampled_from(["a", "T-1_x"])),
                                     created_at=draw(st.one_of(st.none(), st.floats(0, 2e9))))
    return rec, _arrays(n, width, height)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records())
def test_round_trip_property(case: tuple[AnalysisRecord, dict[str, np.ndarray]]) -> None:
    rec, arrays = case
    assert parse_record(rec.to_json()) == rec
    with tempfile.TemporaryDirectory() as tmp:
        write_record(Path(tmp), rec, arrays)
        back = read_record(Path(tmp), rec.take_id, arrays=True)
        assert back == rec and _same_arrays(back.arrays, arrays)
        assert np.array_equal(back.metric("identity"), rec.metric("identity"), equal_nan=True)


def test_arrays_that_do_not_fit_the_record_are_refused_before_writing(tmp_path: Path) -> None:
    rec = _record()
    write_record(tmp_path, rec, _arrays())
    bad = _arrays()
    bad["heatmaps"] = bad["heatmaps"][:, :1]
    with pytest.raises(AssetError, match="heatmaps"):
        write_record(tmp_path, rec, bad)
    assert read_record(tmp_path, "t1", arrays=True) == rec  # the stored analysis is untouched
    with pytest.raises(AssetError, match="take_id"):
        write_record(tmp_path, AnalysisRecord.from_result(_result()), _arrays())


def test_the_writer_refuses_what_the_model_does_not_describe() -> None:
    res = _result()
    res["summary"]["new_metric"] = 1.0  # the analysis drifted from the record
    with pytest.raises(ValueError, match="new_metric"):
        AnalysisRecord.from_result(res, take_id="t1")


def test_a_missing_npz_means_no_arrays(tmp_path: Path) -> None:
    _, npath = write_record(tmp_path, _record(), _arrays())
    npath.unlink()
    rec = read_record(tmp_path, "t1", arrays=True)
    assert rec is not None and rec.arrays is None


# -- format 1 ----------------------------------------------------------------------------------

def _format1(tmp_path: Path) -> Path:
    shutil.copytree(FORMAT1, tmp_path / "p")
    return tmp_path / "p"


def test_a_real_format1_file_is_migrated_on_read(tmp_path: Path) -> None:
    folder = _format1(tmp_path)
    old = json.loads((folder / "analysis" / f"{TAKE}.json").read_text())
    assert old["format"] == 1
    rec = read_record(folder, TAKE, arrays=True)
    assert rec is not None and rec.format == 4 and rec.created_at is None
    assert rec.engine_key == old["engine_key"] and rec.take.sha256 == old["take"]["sha256"]
    # Format 3 → 4 adds the states (a flagged frame is drift, else match/close by identity).
    states = [f.state for f in rec.frames]
    assert states == ["drift" if f["flagged"] else "close" for f in old["frames"]]
    assert rec.summary.model_dump() == {
        **old["summary"], "states": {k: states.count(k) for k in R.STATES},
        "uncertain_fraction": 0.0, "expected_false_alarm": None, "facesim_arc": None}
    assert [f.model_dump() for f in rec.frames] == [
        {**f, "state": st, "cautions": [], "hair": None, "detail": None}
        for f, st in zip(old["frames"], states)]
    assert rec.frame_count == 6 and rec.flagged().sum() == 5
    assert [(r.start, r.end) for r in rec.drift_ranges] == [(0, 1), (3, 5)]
    assert rec.arrays.heatmaps.shape == (6, 32, 32) and rec.arrays.landmarks.dtype == np.float32
    assert np.isnan(rec.arrays.boxes[0]).all()  # frame 0 has no face
    assert rec.band() == "drift"  # 83 % of the frames flagged
    # Written back: the current format, the same record.
    write_record(folder, rec, rec.arrays)
    assert json.loads((folder / "analysis" / f"{TAKE}.json").read_text())["format"] == 4
    assert read_record(folder, TAKE) == rec


def test_a_sparse_format1_file_gets_defaults(tmp_path: Path) -> None:
    """Format-1 files from test kits and early builds left out keys format 2 requires."""
    doc = _result(4, flagged=())
    del doc["engine_key"], doc["analysis_version"], doc["references"]
    del doc["summary"]["face_frames"], doc["summary"]["embedded_frames"]
    doc["summary"]["embedding"] = []
    for f in doc["frames"]:
        del f["blink"], f["pose"], f["faces"], f["time"]
        f["matched_reference"] = None
    path = tmp_path / "analysis" / "t1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    rec = read_record(tmp_path, "t1")
    assert rec.engine_key == "dlib/m/1" and rec.analysis_version == 1 and rec.references == []
    assert rec.summary.embedding is None and rec.summary.face_frames == 4
    assert rec.frames[3].time == 0.1875 and rec.frames[3].faces == 1 and not rec.frames[3].blink


# -- hostile files -----------------------------------------------------------------------------

def _json_doc() -> dict[str, Any]:
    return json.loads(_record().to_json())


def _hostile_json(doc: Any) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc)


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = _json_doc()
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return doc


HOSTILE_JSON = {
    "deeply nested": '{"format": 2, "frames": ' + "[" * 200_000 + "]" * 200_000 + "}",
    "deeply nested value": '{"format": 2, "engine": ' + '{"a":' * 100_000 + "1" + "}" * 100_001,
    "engine a string": _set("engine", "dlib"),
    "embedding of strings": _set("summary.embedding", ["0.1", "0.2"]),
    "reasons an int": _set("frames.2.reasons", 3),
    "a bool for an int": _set("frames.0.faces", True),
    "a score over 1": _set("frames.0.identity", 1.5),
    "NaN": json.dumps(_json_doc()).replace('"motion": 0.01', '"motion": NaN'),
    "Infinity": json.dumps(_json_doc()).replace('"motion": 0.01', '"motion": Infinity'),
    "a huge integer": '{"format": 2, "take": {"frames": ' + "9" * 5000 + "}}",
    "unknown key": _set("summary.secret", 1),
    "not an object": "[1, 2, 3]",
    "no format": {"engine": {}},
    "a newer format": {"format": 5},
    "format a string": {"format": "2"},
    "not JSON": "{format: 2",
    "frames and take disagree": _set("take.frames", 7),
    "engine key not the engine's": _set("engine_key", "arcface/x/y"),
    "drift past the end": _set("summary.drift_ranges", [{"start": 4, "end": 9, "reasons": []}]),
    "unknown matched reference": _set("frames.1.matched_reference", "nobody"),
    "another take's analysis": _set("take_id", "t2"),
    "frame indices out of order": _set("frames.1.index", 4),
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_hostile_json_gives_a_clear_error_naming_the_file(tmp_path: Path, case: str) -> None:
    jpath, _ = analysis_paths(tmp_path, "t1")
    jpath.parent.mkdir()
    jpath.write_text(_hostile_json(HOSTILE_JSON[case]))
    with pytest.raises(AssetError) as info:
        read_record(tmp_path, "t1")
    assert info.value.path == jpath and str(jpath) in str(info.value)
    assert len(str(info.value)) < 1500


def test_not_utf8_and_oversized_files(tmp_path: Path) -> None:
    jpath, _ = analysis_paths(tmp_path, "t1")
    jpath.parent.mkdir()
    jpath.write_bytes(b'{"format": 2, "x": "\xff\xfe"}')
    with pytest.raises(AssetError, match="UTF-8") as info:
        read_record(tmp_path, "t1")
    assert info.value.path == jpath
    with open(jpath, "wb") as fh:  # sparse: no disk used, never read
        fh.truncate(R.MAX_JSON_BYTES + 1)
    with pytest.raises(AssetError, match="at most") as info:
        read_record(tmp_path, "t1")
    assert info.value.path == jpath
    jpath.unlink()
    jpath.mkdir()
    with pytest.raises(AssetError, match="not a regular file"):
        read_record(tmp_path, "t1")


def test_a_bad_take_id_is_refused(tmp_path: Path) -> None:
    for bad in ("../../etc/passwd", "", "a/b", "x" * 65):
        with pytest.raises(AssetError, match="take id"):
            read_record(tmp_path, bad)


def _npz_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header_only(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()  # magic + header, no data


def _good_members() -> dict[str, bytes]:
    return {f"{k}.npy": _npy(v) for k, v in _arrays().items()}


def _members_with(**replace: bytes | None) -> dict[str, bytes]:
    members = _good_members()
    for k, v in replace.items():
        if v is None:
            members.pop(f"{k}.npy")
        else:
            members[f"{k}.npy"] = v
    return members


HOSTILE_NPZ = {
    "a header declaring a huge array": _npz_with(_members_with(
        heatmaps=_npy_header_only((10**9, 10**6, 10**6)))),
    "a header declaring a huge array of the right rank": _npz_with(_members_with(
        boxes=_npy_header_only((2**40, 4), "<f4"))),
    "float heatmaps": _npz_with(_members_with(
        heatmaps=_npy(_arrays()["heatmaps"].astype(np.float32)))),
    "big-endian landmarks": _npz_with(_members_with(
        landmarks=_npy(_arrays()["landmarks"].astype(">f4")))),
    "a pickle": _npz_with(_members_with(
        boxes=_npy(np.array([{"evil": 1}] * 6, dtype=object)))),
    "landmarks of the wrong shape": _npz_with(_members_with(
        landmarks=_npy(np.zeros((6, 5, 2), np.float32)))),
    "heatmaps for fewer frames": _npz_with(_members_with(
        heatmaps=_npy(_arrays()["heatmaps"][:3]))),
    "a missing member": _npz_with(_members_with(boxes=None)),
    "an unexpected member": _npz_with({**_good_members(), "payload.npy": b"x"}),
    "a truncated member": _npz_with(_members_with(heatmaps=_npy(_arrays()["heatmaps"])[:-40])),
    "not a zip": b"PK\x03\x04 this is not a zip file",
    "a .npy version 3 header": _npz_with(_members_with(
        boxes=b"\x93NUMPY\x03\x00" + b"\x00" * 20)),
    "garbage header": _npz_with(_members_with(boxes=b"\x93NUMPY\x01\x00\x10\x00" + b"{" * 16)),
}


@pytest.mark.parametrize("case", list(HOSTILE_NPZ))
def test_hostile_npz_gives_a_clear_error_naming_the_file(tmp_path: Path, case: str) -> None:
    rec = _record()
    _, npath = write_record(tmp_path, rec, _arrays())
    npath.write_bytes(HOSTILE_NPZ[case])
    assert read_record(tmp_path, "t1") == rec  # the JSON alone is fine
    with pytest.raises(AssetError) as info:
        read_record(tmp_path, "t1", arrays=True)
    assert info.value.path == npath and str(npath) in str(info.value)


def test_an_oversized_npz_is_not_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, npath = write_record(tmp_path, _record(), _arrays())
    monkeypatch.setattr(R, "MAX_NPZ_BYTES", 100)
    with pytest.raises(AssetError, match="at most 100") as info:
        read_record(tmp_path, "t1", arrays=True)
    assert info.value.path == npath


# -- staleness ---------------------------------------------------------------------------------

def _fixture_project():  # noqa: ANN202
    return parse_project((FORMAT1 / "project.json").read_text())


def test_staleness_reasons_of_a_real_analysis(tmp_path: Path) -> None:
    rec = read_record(_format1(tmp_path), TAKE)
    project = _fixture_project()
    shot = project.shot("shot_a")
    key = rec.engine_key
    # Made by analysis version 1: stale for this version (checked tracking, states)...
    assert rec.stale_reasons(project, shot, key) == [
        "made by analysis version 1, older than this version's 2"]
    # ...and otherwise fresh; the other reasons are checked against version 1.
    assert rec.stale_reasons(project, shot, key, analysis_version=1) == []
    assert R.stale_reasons(rec, project, shot, None, video_sha256=rec.take.sha256,
                           analysis_version=1) == []

    # The shot's character changed.
    other = Character(id="char_other", name="Other", references=[])
    p2 = project.model_copy(deep=True)
    p2.characters.append(other)
    p2.shot("shot_a").character_id = "char_other"
    (reason,) = rec.stale_reasons(p2, p2.shot("shot_a"), key, analysis_version=1)
    assert "character changed" in reason and "'Eileen'" in reason and "'Other'" in reason
    p2.shot("shot_a").character_id = None
    assert "no character" in rec.stale_reasons(p2, p2.shot("shot_a"), key, analysis_version=1)[0]

    # The character's bible references changed: re-tagged, added, removed.
    p3 = project.model_copy(deep=True)
    p3.characters[0].references[0].angle = Angle.THREE_QUARTER_LEFT
    (reason,) = rec.stale_reasons(p3, p3.shot("shot_a"), key, analysis_version=1)
    assert "'Eileen'" in reason and "bible references changed" in reason
    p4 = project.model_copy(deep=True)
    ref = p4.characters[0].references[0]
    p4.characters[0].references.append(Reference(id="ref_side", asset=ref.asset,
                                                 angle=Angle.PROFILE_LEFT))
    assert references_fingerprint(p4, p4.characters[0]) != rec.references_fingerprint
    assert "bible references changed" in rec.stale_reasons(p4, p4.shot("shot_a"), key, analysis_version=1)[0]

    # The engine changed; the analysis version is older; the video changed.
    (reason,) = rec.stale_reasons(project, shot, "arcface/w600k_r50/abc", analysis_version=1)
    assert "arcface/w600k_r50/abc" in reason and key in reason
    (reason,) = rec.stale_reasons(project, shot, key, analysis_version=2)
    assert "version 1" in reason and "older" in reason
    (reason,) = rec.stale_reasons(project, shot, key, video_sha256="b" * 64, analysis_version=1)
    assert "video changed" in reason
    # All at once: one reason each.
    assert len(rec.stale_reasons(p3, p3.shot("shot_a"), "x/y/z", analysis_version=2)) == 3


def test_staleness_of_a_take_that_left_its_shot() -> None:
    rec = _record(take_id="t1")
    project = _fixture_project()
    shot = project.shot("shot_a")
    reasons = rec.stale_reasons(project, shot, rec.engine_key)
    assert any("another shot" in r for r in reasons)


# -- one colour scale --------------------------------------------------------------------------

def test_score_bands() -> None:
    assert colours.band_edges(0.5) == (0.5, 0.6)
    assert colours.band(0.9, 0.5) == "match"
    assert colours.band(0.6, 0.5) == "match"
    assert colours.band(0.55, 0.5) == "close"
    assert colours.band(0.5, 0.5) == "close"
    assert colours.band(0.43, 0.5) == "drift"  # below the threshold: never amber
    assert colours.take_band(0.43, 0.5, 1.0) == "drift"
    assert colours.take_band(0.95, 0.5, 0.6) == "drift"  # most frames flagged
    assert colours.take_band(0.95, 0.5, 0.2) == "close"
    assert colours.take_band(0.95, 0.5, 0.05) == "match"
    assert colours.take_band(None, 0.5) is None and colours.take_band(float("nan"), 0.5) is None
    # Nothing scored because most frames could not be judged: uncertain (violet), not grey
    assert colours.take_band(None, 0.5, 0.0, 0.9) == "uncertain"
    assert colours.take_band(0.9, 0.5, 0.0, 0.9) == "uncertain"
    assert colours.take_band(0.3, 0.5, 0.0, 0.9) == "drift"  # another person stays red
    assert colours.band_colour(None) == colours.NONE_COLOUR
    assert len(set(colours.BAND_COLOURS.values())) == 4  # match, close, drift, uncertain
    with pytest.raises(ValueError):
        colours.band(float("nan"), 0.5)


def test_one_heatmap_colour_map_everywhere() -> None:
    from studio.export.report import overlay_heatmap
    from studio.identity.heatmap import overlay

    lut = colours.heat_lut()
    assert lut.shape == (256, 4) and lut.dtype == np.uint8 and not lut.flags.writeable
    assert lut[0, 3] == 0 and lut[255, 3] > 200 and lut[255, 0] > 200  # transparent → red
    assert (np.diff(lut[:, 3].astype(int)) >= 0).all()  # opacity grows with the deviation
    rgb = np.full((16, 16, 3), 100, np.uint8)
    heat = np.full((2, 2), 255, np.uint8)
    a = overlay(rgb, heat)  # CLI PNGs
    b = overlay_heatmap(rgb, heat)  # the HTML report
    expected = colours.blend_heatmap(rgb, np.full((16, 16), 255, np.uint8), 0.8)
    assert np.array_equal(a, expected) and np.array_equal(b, expected)
    assert np.array_equal(overlay(rgb, np.zeros((2, 2), np.uint8)), rgb)  # 0: untouched


def test_the_viewer_packs_the_same_colour_map(qtbot) -> None:  # noqa: ANN001
    from studio.ui.viewer.frame_view import heat_color, heat_lut

    lut = colours.heat_lut()
    packed = heat_lut()
    for v in (0, 24, 96, 170, 255):
        c = heat_color(v)
        assert (c.red(), c.green(), c.blue(), c.alpha()) == tuple(int(x) for x in lut[v])
        assert int(packed[v]) >> 24 == lut[v, 3]
