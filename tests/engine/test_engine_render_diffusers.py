"""The queue and the render CLI driving the diffusers backend on a tiny random-weight Wan 2.1 I2V
pipeline (real loading and generation code on CPU; only the weights are tiny and random)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_pipelines as tp
from engine_fixtures import make_project
from studio.cli import main
from studio.core.model import CharacterLora
from studio.core.persistence import load_project
from studio.engine.takes import read_sidecar
from studio.media.video import probe


@pytest.fixture(scope="module")
def wan21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; one thread is faster for tiny models here
    yield tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")["wan21"]
    torch.set_num_threads(before)


def test_render_with_the_diffusers_backend_snaps_and_passes_the_character_lora(
        tmp_path: Path, photo_png: Path, wan21: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    tp.write_tiny_lora(folder / "assets" / "face.safetensors", "wan21")
    char = doc.project.characters[0]
    doc.update_character(char.id, lora=CharacterLora(path="assets/face.safetensors", weight=0.7))
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, backend="diffusers", model=str(wan21))
    doc.save()
    # 30x30 and 6 frames are not valid for Wan: the backend snaps to 32x32 and 5 frames.
    rc = main(["render", str(folder), "--takes", "2", "--size", "30x30", "--frames", "6",
               "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 0, err
    takes = load_project(folder).shot(shot.id).takes
    assert len(takes) == 2 and len({t.seed for t in takes}) == 2
    for take in takes:
        assert take.backend == "diffusers" and take.model == str(wan21) and take.draft
        info = probe(folder / take.video)
        assert (info.width, info.height, info.frames) == (32, 32, 5)
        side = read_sidecar(folder / take.sidecar)
        assert side["backend"]["model_fingerprint"]
        assert side["requested"] == {"width": 30, "height": 30, "num_frames": 6}
        assert side["snap_notes"] and side["request"]["steps"] == 2
        assert side["character_loras"] == [{"path": "assets/face.safetensors", "weight": 0.7}]
        assert side["request"]["loras"] == [{"path": "assets/face.safetensors", "weight": 0.7}]
        assert side["preview_plan"] is None
        assert isinstance(side["backend_notes"], list)
