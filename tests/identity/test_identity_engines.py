"""Face engines: dlib similarity calibration on real photos; ArcFace/SCRFD loading code with
tiny random-weight ONNX models generated here (the real InsightFace packs are non-commercial and
not installable offline, so only the loading/decoding code can be exercised)."""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from identity_helpers import astronaut, t1_faces
from studio.core.errors import StudioError
from studio.identity.engines import (ArcFaceEngine, DlibEngine, classify_onnx, find_model_pack,
                                     get_engine)
from studio.identity.landmarks import detect_landmarks_68


@pytest.fixture(scope="module")
def dlib_engine() -> DlibEngine:
    return get_engine("dlib")  # type: ignore[return-value]


def _embed(engine: DlibEngine, img: np.ndarray) -> np.ndarray:
    lm = detect_landmarks_68(img)
    assert lm is not None
    return engine.embed(img, lm)


def _variants(img: np.ndarray) -> dict[str, np.ndarray]:
    h, w = img.shape[:2]
    out = {}
    out["rotate 8° + scale 1.1"] = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 8,
                                                                               1.1), (w, h))
    out["scale 0.7"] = cv2.resize(img, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    out["darker 0.6"] = (img * 0.6).astype(np.uint8)
    out["warm light"] = np.clip(img * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    out["JPEG q30"] = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


def test_same_person_small_changes_stay_above_threshold(dlib_engine: DlibEngine) -> None:
    for img in (astronaut(), t1_faces()[0]):
        ref = _embed(dlib_engine, img)
        for name, var in _variants(img).items():
            s = dlib_engine.similarity(ref, _embed(dlib_engine, var))
            assert s >= dlib_engine.threshold + 0.15, (name, s)


def test_different_people_fall_below_threshold(dlib_engine: DlibEngine) -> None:
    people = [astronaut()] + t1_faces()
    assert len(people) == 7
    embs = [_embed(dlib_engine, p) for p in people]
    for i in range(len(embs)):
        for j in range(i + 1, len(embs)):
            assert dlib_engine.similarity(embs[i], embs[j]) < dlib_engine.threshold, (i, j)


def test_similarity_mapping_documented_values(dlib_engine: DlibEngine) -> None:
    assert dlib_engine.to_similarity(0.0) == 1.0
    assert dlib_engine.to_similarity(0.6) == pytest.approx(0.5)
    assert dlib_engine.to_similarity(2.0) == 0.0
    info = dlib_engine.info()
    assert set(info) == {"name", "model", "version", "license", "threshold"}
    assert "non-commercial" in info["license"]


# --- ArcFace / SCRFD from a model-pack folder ----------------------------------------------

def _arcface_onnx(path: Path, seed: int = 0) -> None:
    """ArcFace's signature: 1x3x112x112 -> 1x512, random weights (≈ 200 KB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv_w = numpy_helper.from_array(rng.normal(size=(2, 3, 16, 16)).astype(np.float32), "cw")
    fc = numpy_helper.from_array(rng.normal(size=(98, 512)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["data", "cw"], ["c"], strides=[16, 16]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["fc1"])]
    g = helper.make_graph(nodes, "arcface_tiny",
                          [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                         [1, 3, 112, 112])],
                          [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 512])],
                          [conv_w, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _scrfd_onnx(path: Path) -> None:
    """SCRFD's 9-output signature (scores, boxes, keypoints for strides 8/16/32, two anchors per
    cell). Outputs are constants (+ 0 x input so they depend on it) with one face: stride-32
    cell (5, 4), anchor 0, score 0.9, distances 2 cells on each side."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, outs = [], [], []
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["m"], keepdims=0))
    nodes.append(helper.make_node("Mul", ["m", "zero"], ["z"]))
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    names = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride in (8, 16, 32):
            n = (640 // stride) ** 2 * 2
            val = np.zeros((n, width), np.float32)
            if stride == 32:
                idx = (4 * 20 + 5) * 2
                if kind == "score":
                    val[idx] = 0.9
                elif kind == "bbox":
                    val[idx] = 2.0
                else:
                    val[idx] = [-1, -1, 1, -1, 0, 0, -0.8, 1, 0.8, 1]
            cname = f"{kind}{stride}_c"
            inits.append(numpy_helper.from_array(val, cname))
            oname = f"{kind}_{stride}"
            nodes.append(helper.make_node("Add", [cname, "z"], [oname]))
            outs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, [n, width]))
            names.append(oname)
    g = helper.make_graph(nodes, "scrfd_tiny",
                          [helper.make_tensor_value_info("input.1", TensorProto.FLOAT,
                                                         [1, 3, 640, 640])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the engine tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_arcface_pack_loads_offline(tmp_path: Path, no_network: None) -> None:
    pack = tmp_path / "buffalo_l"
    pack.mkdir()
    _arcface_onnx(pack / "w600k_r50.onnx")
    _scrfd_onnx(pack / "det_10g.onnx")
    assert classify_onnx(pack / "w600k_r50.onnx")[0] == "recognition"
    assert classify_onnx(pack / "det_10g.onnx")[0] == "detection"
    eng = ArcFaceEngine(pack)
    assert eng.detector is not None and eng.detector.use_kps
    assert eng.model == "buffalo_l/w600k_r50" and "non-commercial" in eng.license
    # 1280x640 image -> resized by 0.5 into the 640 input; the planted face is at input
    # (160, 128) ± 64, i.e. (256..384, 128..384) in the image.
    img = np.zeros((640, 1280, 3), np.uint8)
    dets = eng.detect(img)
    assert len(dets) == 1
    assert dets[0].box == pytest.approx((192.0, 128.0, 448.0, 384.0))
    assert dets[0].kps is not None and dets[0].kps.shape == (5, 2)
    assert dets[0].kps[0] == pytest.approx([256.0, 192.0])  # centre + (-1, -1) cells
    a = astronaut()
    lm = detect_landmarks_68(a)
    assert lm is not None
    chip = eng.align(a, lm)
    assert chip.shape == (112, 112, 3)
    e1 = eng.embed(a, lm)
    assert e1.shape == (512,) and np.linalg.norm(e1) == pytest.approx(1.0, abs=1e-5)
    assert eng.similarity(e1, e1) == pytest.approx(1.0, abs=1e-5)
    assert eng.similarity(e1, -e1) == 0.0  # negative cosine clamps to 0
    assert eng.key != get_engine("dlib").key  # scores of the two never share a key


def test_missing_pack_is_an_error_not_a_download(tmp_path: Path, no_network: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "home"))
    assert find_model_pack() is None
    with pytest.raises(StudioError, match="no InsightFace model pack"):
        ArcFaceEngine()
    with pytest.raises(StudioError, match="does not exist"):
        ArcFaceEngine(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StudioError, match="no .onnx"):
        ArcFaceEngine(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(StudioError, match="cannot load ONNX"):
        ArcFaceEngine(bad)
    # The home folder layout is discovered when present.
    pack = tmp_path / "home" / "models" / "antelopev2"
    pack.mkdir(parents=True)
    _arcface_onnx(pack / "glintr100.onnx")
    assert find_model_pack() == pack
    eng = ArcFaceEngine()
    assert eng.detector is None  # no detector in the pack: dlib's HOG is used
    assert eng.detect(astronaut())


def test_arcface_engine_runs_the_analysis(tmp_path: Path, no_network: None) -> None:
    """The whole per-frame pipeline with the ONNX engine (random weights: only the plumbing and
    the engine bookkeeping are checked, not the scores' meaning)."""
    from studio.identity.analysis import analyze_frames, prepare_reference
    from studio.identity.samples import moving_frames

    pack = tmp_path / "pack"
    pack.mkdir()
    _arcface_onnx(pack / "rec.onnx", seed=3)
    eng = ArcFaceEngine(pack)
    ref = prepare_reference(eng, astronaut(), "a", "front")
    assert ref.embedding.shape == (512,)
    result, _ = analyze_frames(moving_frames(astronaut(), 6, amplitude=0.3), 16.0, [ref], eng)
    assert result["engine"]["name"] == "arcface" and result["engine_key"] == eng.key
    assert all(0.0 <= r["identity"] <= 1.0 for r in result["frames"])
    assert len(result["summary"]["embedding"]) == 512
    # Same weights copied elsewhere -> same key; different weights -> different key.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "rec.onnx").write_bytes((pack / "rec.onnx").read_bytes())
    assert ArcFaceEngine(copy).version == eng.version
    other = tmp_path / "other"
    other.mkdir()
    _arcface_onnx(other / "rec.onnx", seed=4)
    assert ArcFaceEngine(other).version != eng.version
