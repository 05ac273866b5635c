"""Wan 2.1 VACE in the diffusers backend: reference-conditioned image-to-video on a tiny
random-weight WanVACEPipeline (tests/engine/tiny_pipelines.py), loaded through the model manager
and run on CPU with the real generation code. The start image is the astronaut photograph; the
bible references are portraits of three different people from insightface's t1.jpg, saved as
files in a project's assets/ folder as the app keeps them.

Nothing is mocked: the GPU runtime's worker is driven in process (its ``take`` op encodes a real
MP4 with PyAV), as tests/runtime/test_runtime_take.py does.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

import tiny_pipelines as tp  # noqa: E402
from identity_helpers import astronaut, t1_faces  # noqa: E402

from studio.core.errors import StudioError  # noqa: E402
from studio.core.tasks import Cancelled  # noqa: E402
from studio.engine.base import GenerationRequest, Progress  # noqa: E402
from studio.engine.diffusers_backend import DiffusersBackend, snap_for  # noqa: E402
from studio.engine.model_library import FAMILIES, ModelRegistry, inspect_model  # noqa: E402
from studio.runtime import protocol  # noqa: E402
from studio.runtime.worker import Worker  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    with tp.one_torch_thread():
        yield


@pytest.fixture(scope="module")
def vace_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tp.save_tiny_pipeline("wan_vace", tmp_path_factory.mktemp("vace-model") / "Wan2.1-VACE-tiny")


@pytest.fixture(scope="module")
def backend(vace_model: Path, tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    reg = ModelRegistry(tmp_path_factory.mktemp("vace-registry") / "models.json")
    reg.add_folder(vace_model)
    b = DiffusersBackend(registry=reg, device="cpu")
    yield b
    b.unload()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder whose assets/ holds the start image and three people's portraits."""
    from PIL import Image

    root = tmp_path_factory.mktemp("vace-project")
    assets = root / "assets"
    assets.mkdir()
    Image.fromarray(astronaut()).save(assets / "start.png")
    for i, face in enumerate(t1_faces()[:3]):
        # Portraits of other aspects than the frame: the backend fits each one whole.
        crop = face[:, 64:448] if i == 1 else face
        Image.fromarray(np.ascontiguousarray(crop)).save(assets / f"person{i}.jpg", quality=92)
    return root


def _req(model: Path, project: Path, **kw: object) -> GenerationRequest:
    base = dict(start_image=project / "assets" / "start.png", prompt="a woman turns her head",
                negative_prompt="blurry", width=48, height=32, num_frames=9, fps=16, seed=7, steps=2,
                guidance=5.0, model=str(model),
                face_landmarks=())  # "no face": frame the centre without running dlib
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _refs(project: Path, *which: int) -> tuple[Path, ...]:
    return tuple(project / "assets" / f"person{i}.jpg" for i in which)


def _run(b: DiffusersBackend, req: GenerationRequest) -> np.ndarray:
    return b.generate(req, lambda p: None, lambda: False)


def test_folder_is_the_vace_family_and_takes_references(vace_model: Path, backend: DiffusersBackend,
                                                       tmp_path: Path) -> None:
    info = inspect_model(vace_model)
    assert info.family == "wan_vace" and info.pipeline_class == "WanVACEPipeline"
    assert info.components["transformer"].cls == "WanVACETransformer3DModel"
    assert all(f.endswith(".safetensors") for c in info.components.values() for f in c.files)
    assert info.rules["size_multiple"] == 16 and info.rules["frame_step"] == 4
    fam = FAMILIES["wan_vace"]
    assert fam.max_references == 3 and fam.pipeline == "WanVACEPipeline" and fam.lora
    assert (fam.max_frames, fam.default_fps, fam.default_size) == (81, 16, (832, 480))
    caps = backend.capabilities(str(vace_model))
    assert caps.max_references == 3 and caps.last_frame and not caps.multi_subject
    # Plain image-to-video families take none (the runner then hands no references).
    assert all(f.max_references == 0 for f in FAMILIES.values() if f.id != "wan_vace")

    # The transformer class alone tells it, whatever the pipeline class in model_index says.
    renamed = shutil.copytree(vace_model, tmp_path / "renamed")
    index = json.loads((renamed / "model_index.json").read_text())
    index["_class_name"] = "WanPipeline"
    (renamed / "model_index.json").write_text(json.dumps(index))
    assert inspect_model(renamed).family == "wan_vace"
    # A "VACE" transformer without VACE blocks is refused by name.
    cfg_path = renamed / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["vace_layers"] = []
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(StudioError, match="no vace_layers") as info_:
        inspect_model(renamed)
    assert str(renamed) in str(info_.value)


def test_two_references_give_frames_of_the_snapped_size(backend: DiffusersBackend, vace_model: Path,
                                                        project: Path) -> None:
    req = _req(vace_model, project, width=44, height=30, num_frames=10, references=_refs(project, 0, 1))
    progress: list[Progress] = []
    frames = backend.generate(req, progress.append, lambda: False)
    assert frames.dtype == np.uint8 and frames.shape == (9, 32, 48, 3)  # 48x32, 4k+1 frames
    assert frames.std() > 0
    assert [p.step for p in progress if p.stage == "generating"] == [1, 2]
    assert "references: 2 images used" in backend.last_notes
    assert backend.loaded is not None and backend.loaded.family == "wan_vace"


def test_the_references_condition_the_take(backend: DiffusersBackend, vace_model: Path,
                                           project: Path) -> None:
    ab = _run(backend, _req(vace_model, project, references=_refs(project, 0, 1)))
    # Same seed, same references: the same take (same process and threads: bit for bit).
    assert np.array_equal(_run(backend, _req(vace_model, project, references=_refs(project, 0, 1))), ab)
    # Other people, or the same people in another order: another take.
    other = _run(backend, _req(vace_model, project, references=_refs(project, 2, 1)))
    swapped = _run(backend, _req(vace_model, project, references=_refs(project, 1, 0)))
    for frames in (other, swapped):
        assert frames.shape == ab.shape
        assert np.abs(frames.astype(int) - ab.astype(int)).max() > 8
    # No references: VACE still runs from the start frame alone.
    alone = _run(backend, _req(vace_model, project))
    assert alone.shape == ab.shape and not np.array_equal(alone, ab)
    assert "references: none, from the start image alone" in backend.last_notes


def test_the_start_frame_is_kept_and_references_are_fitted(backend: DiffusersBackend, vace_model: Path,
                                                           project: Path) -> None:
    """What the pipeline is given: the framed start image as the kept first frame of a grey,
    generate-everywhere control video, and each portrait whole inside the frame on white."""
    from PIL import Image

    from studio.engine.base import prepare_start_image

    req = _req(vace_model, project, width=64, height=32, num_frames=5, references=_refs(project, 0, 1))
    start = prepare_start_image(req).image
    got = backend._vace_inputs(req, start)
    video, mask, refs = got["video"], got["mask"], got["reference_images"]
    assert len(video) == len(mask) == 5 and video[0] is start
    assert all(np.all(np.asarray(f) == 128) for f in video[1:])
    assert np.all(np.asarray(mask[0]) == 0) and all(np.all(np.asarray(m) == 255) for m in mask[1:])
    assert [r.size for r in refs] == [(64, 32), (64, 32)]
    for ref, src in zip(refs, _refs(project, 0, 1)):
        arr = np.asarray(ref).astype(int)
        sw, sh = Image.open(src).size
        w = round(sw * 32 / sh)  # fitted by height (portraits are narrower than 2:1)
        left = (64 - w) // 2
        assert np.all(arr[:, : left - 1] == 255) and np.all(arr[:, left + w + 1:] == 255)  # white bars
        face = arr[:, left + 1: left + w - 1]
        assert face.std() > 10  # the portrait itself, not padding
        want = np.asarray(Image.open(src).convert("RGB").resize((w, 32), Image.Resampling.LANCZOS))
        assert np.abs(face.mean() - want.mean()) < 6
    # An end image becomes a kept last frame (VACE's first+last frame mode).
    with_end = backend._vace_inputs(req.with_changes(last_image=project / "assets" / "person2.jpg"),
                                    start)
    assert np.all(np.asarray(with_end["mask"][-1]) == 0) and np.asarray(with_end["video"][-1]).std() > 10
    assert with_end["reference_images"] is not None
    assert backend._vace_inputs(req.with_changes(references=()), start)["reference_images"] is None


def test_end_image_conditions_the_take(backend: DiffusersBackend, vace_model: Path, project: Path) -> None:
    req = _req(vace_model, project, references=_refs(project, 0))
    req_end, notes = backend.snap(req.with_changes(last_image=project / "assets" / "person2.jpg"))
    assert req_end.last_image is not None and not any("last frame" in n for n in notes)
    assert not np.array_equal(_run(backend, req_end), _run(backend, req))


def test_snap_keeps_at_most_max_references(backend: DiffusersBackend, vace_model: Path, project: Path) -> None:
    five = _refs(project, 0, 1, 2) + _refs(project, 0, 1)
    req, notes = backend.snap(_req(vace_model, project, references=five))
    assert req.references == five[:3]
    assert any("at most 3 reference images: the first 3 of 5 are used" in n for n in notes)
    req, notes = backend.snap(_req(vace_model, project, references=_refs(project, 0, 1)))
    assert len(req.references) == 2 and not any("reference" in n for n in notes)
    # A family without references drops them, and says so.
    info = inspect_model(vace_model)
    info.family = "wan21_i2v"
    req, notes = snap_for(info, _req(vace_model, project, references=_refs(project, 0)))
    assert req.references == () and any("takes no reference images" in n for n in notes)


def test_cancel_during_the_steps_then_the_next_job_runs(backend: DiffusersBackend, vace_model: Path,
                                                        project: Path) -> None:
    req = _req(vace_model, project, steps=4, references=_refs(project, 0, 1))
    expected = _run(backend, req)
    pipe = backend._pipe
    seen: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.stage == "generating":
            seen.append(p.step)

    with pytest.raises(Cancelled):
        backend.generate(req, on_progress, lambda: len(seen) >= 1)
    assert seen == [1]  # stopped right after the step during which cancel was asked
    assert backend._pipe is pipe  # still loaded, and it makes the same take as before
    assert np.array_equal(_run(backend, req), expected)


def test_unreadable_reference_names_the_file(backend: DiffusersBackend, vace_model: Path,
                                             project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone.png"
    with pytest.raises(StudioError) as info:
        _run(backend, _req(vace_model, project, references=(missing,)))
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(StudioError) as info:
        _run(backend, _req(vace_model, project, references=(broken,)))
    assert str(broken) in str(info.value)
    assert _run(backend, _req(vace_model, project)).shape == (9, 32, 48, 3)  # still usable


def test_pickle_only_transformer_is_refused(vace_model: Path, project: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(vace_model, tmp_path / "pickled")
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(StudioError, match="pickle") as info:
        inspect_model(folder)
    assert "transformer/" in str(info.value) and str(folder) in str(info.value)
    b = DiffusersBackend(registry=ModelRegistry(tmp_path / "models.json"), device="cpu")
    with pytest.raises(StudioError, match="safetensors only"):
        b.generate(_req(folder, project), lambda p: None, lambda: False)
    assert b.loaded is None


def test_references_cross_the_worker_protocol(project: Path) -> None:
    req = _req(Path("/m"), project, references=_refs(project, 0, 1))
    data = json.loads(protocol.encode({"op": "take", "request": protocol.request_to_json(req)}))
    assert data["request"]["references"] == [str(p) for p in _refs(project, 0, 1)]
    back = protocol.request_from_json(data["request"])
    # (Empty landmarks, "no face", cross as None: the app frames a request before sending it.)
    assert back.references == _refs(project, 0, 1) and back == req.with_changes(face_landmarks=None)
    # Requests from before references (and plain I2V requests) carry none.
    old = dict(data["request"])
    del old["references"]
    assert protocol.request_from_json(old).references == ()
    for bad in ("assets/person0.jpg", [1, 2], [""]):
        with pytest.raises(protocol.ProtocolError, match="references"):
            protocol.request_from_json(dict(data["request"], references=bad))


def _reply(worker: Worker, out: io.BytesIO, msg: dict) -> dict:
    out.seek(0)
    out.truncate()
    worker.handle(protocol.encode(msg))
    if worker._job is not None:
        worker._job.join(60)
    return json.loads(out.getvalue().decode().strip().splitlines()[-1])


def test_the_worker_takes_references_from_inside_the_project_only(backend: DiffusersBackend, vace_model: Path,
                                                                   project: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    worker = Worker(out, None, "cpu")
    worker._backend = backend  # the worker's DiffusersBackend, already holding the tiny model
    req = _req(vace_model, project, references=_refs(project, 0, 1))
    msg = {"op": "take", "id": "t1", "request": protocol.request_to_json(req), "project": str(project),
           "video": "takes/s1/t1.mp4"}
    reply = _reply(worker, out, msg)
    assert reply["type"] == "result", reply
    assert reply["frames"] == 9 and (reply["frame_width"], reply["frame_height"]) == (48, 32)
    assert "references: 2 images used" in reply["notes"]
    assert (project / "takes" / "s1" / "t1.mp4").is_file()
    # A reference outside the project folder is refused before anything is generated.
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(_refs(project, 0)[0], outside)
    for bad in (outside, project / "assets" / ".." / ".." / outside.name):
        msg = {"op": "take", "id": "t2", "project": str(project), "video": "takes/s1/t2.mp4",
               "request": protocol.request_to_json(req.with_changes(references=(bad,)))}
        reply = _reply(worker, out, msg)
        assert (reply["type"], reply["kind"]) == ("error", "protocol")
        assert "outside the project folder" in reply["message"] and bad.name in reply["message"]
    assert not (project / "takes" / "s1" / "t2.mp4").exists()
