"""Decoded live previews from the diffusers backend's step callback (what a give-up-early judge
watches): a tiny random-weight Wan 2.1 pipeline built by tests/engine/tiny_pipelines.py, run on
CPU through the real backend. Previews come only when a job asks (each costs a VAE decode)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "identity"))

import tiny_pipelines as tp  # noqa: E402
from identity_helpers import astronaut  # noqa: E402

from studio.engine.base import GenerationRequest, Progress  # noqa: E402
from studio.engine.diffusers_backend import DiffusersBackend  # noqa: E402
from studio.engine.model_library import ModelRegistry  # noqa: E402


@pytest.fixture(scope="module")
def backend_and_model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tp.save_tiny_pipeline("wan21", tmp_path_factory.mktemp("m") / "Wan2.1-I2V-tiny")
    reg = ModelRegistry(tmp_path_factory.mktemp("r") / "models.json")
    reg.add_folder(model)
    backend = DiffusersBackend(registry=reg, device="cpu")
    start = tmp_path_factory.mktemp("s") / "start.png"
    Image.fromarray(astronaut()).save(start)
    yield backend, model, start
    backend.unload()
    torch.set_num_threads(before)


def _run(backend: DiffusersBackend, model: Path, start: Path, **extra: object) -> list[Progress]:
    seen: list[Progress] = []
    req = GenerationRequest(start_image=start, prompt="she turns", width=48, height=32,
                            num_frames=9, fps=16, seed=3, steps=12, model=str(model),
                            face_landmarks=(), extra=dict(extra))
    frames = backend.generate(req, seen.append, lambda: False)
    assert frames.shape == (9, 32, 48, 3)
    return seen


def test_previews_only_when_asked_and_they_decode(backend_and_model) -> None:  # noqa: ANN001
    backend, model, start = backend_and_model
    plain = _run(backend, model, start)
    assert not [p for p in plain if p.preview is not None]
    seen = _run(backend, model, start, live_previews=True)
    previews = [p for p in seen if p.preview is not None]
    # Every second of the 12 steps (12 // 6), not after the last: a few per take.
    assert [p.step for p in previews] == [2, 4, 6, 8, 10]
    for p in previews:
        fmt, data = p.preview
        img = np.asarray(Image.open(io.BytesIO(data)))
        assert fmt == "jpeg" and img.shape == (32, 48, 3)
    # The step reports are the same as without previews (the bar does not jump).
    assert [p.step for p in seen if p.preview is None and p.stage == "generating"] == \
        [p.step for p in plain if p.stage == "generating"]


def test_late_previews_approach_the_last_frame(backend_and_model) -> None:  # noqa: ANN001
    backend, model, start = backend_and_model
    seen: list[Progress] = []
    req = GenerationRequest(start_image=start, prompt="she turns", width=48, height=32,
                            num_frames=9, fps=16, seed=3, steps=12, model=str(model),
                            face_landmarks=(), extra={"live_previews": True})
    frames = backend.generate(req, seen.append, lambda: False)
    previews = [np.asarray(Image.open(io.BytesIO(p.preview[1]))).astype(float)
                for p in seen if p.preview is not None]
    last = frames[-1].astype(float)
    errors = [float(np.abs(p - last).mean()) for p in previews]
    # The clean-latent estimate converges on the take's real last frame as steps go by.
    assert errors[-1] < errors[0] and errors[-1] < 40
