"""The diffusers backend on tiny random-weight pipelines, loaded through the model manager and run
on CPU with the real generation code: shapes, seeds, snapping, caching, cancel, OOM retry, LoRA.

There is no GPU here: the out-of-memory path is exercised by raising ``torch.OutOfMemoryError``
from inside a denoising step (the exception CUDA raises), and the GPU memory ladder is tested as
arithmetic on byte counts.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest

import tiny_pipelines as tp
from studio.core.errors import StudioError
from studio.engine.base import Cancelled, GenerationRequest, Progress
from studio.engine.diffusers_backend import DiffusersBackend
from studio.engine.model_library import ModelRegistry


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> None:
    with tp.one_torch_thread():
        yield


@pytest.fixture(scope="module")
def backend(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    reg = ModelRegistry(tmp_path_factory.mktemp("registry") / "models.json")
    for folder in tiny_models.values():
        reg.add_folder(folder)
    b = DiffusersBackend(registry=reg, device="cpu")
    yield b
    b.unload()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    start, end = folder / "start.png", folder / "end.png"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(start)
    Image.fromarray(np.full((48, 64, 3), (250, 20, 20), dtype=np.uint8)).save(end)
    return start, end


def _req(model: Path, start: Path, **kw: object) -> GenerationRequest:
    base = dict(start_image=start, prompt="a man turns his head", width=32, height=32, num_frames=9,
                fps=16, seed=7, steps=2, guidance=5.0, model=str(model), negative_prompt="blurry")
    if "fps" not in kw:  # each family's native rate, so no frame-count remapping
        base["fps"] = {"svd": 7, "wan22_5b": 24}.get(Path(str(model)).name, 16)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _run(b: DiffusersBackend, req: GenerationRequest) -> np.ndarray:
    return b.generate(req, lambda p: None, lambda: False)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    # Thread counts change the last bits of float results; a couple of uint8 levels is "the same".
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 2


@pytest.mark.parametrize("layout", tp.LAYOUTS)
def test_generate_every_family(backend: DiffusersBackend, tiny_models: dict[str, Path],
                               images: tuple[Path, Path], layout: str) -> None:
    # The first+last frame model is built for two images: give it an end image.
    req = _req(tiny_models[layout], images[0], last_image=images[1] if layout == "wan21_flf" else None)
    progress: list[Progress] = []
    frames = backend.generate(req, progress.append, lambda: False)
    assert frames.dtype == np.uint8 and frames.shape == (9, 32, 32, 3)
    assert frames.std() > 0  # a real decoded video, not a constant
    steps = [p for p in progress if p.stage == "generating"]
    assert [p.step for p in steps] == [1, 2] and all(p.total == 2 for p in steps)
    assert backend.loaded is not None and backend.loaded.path == str(tiny_models[layout].resolve())
    # Same seed → same frames; another seed → different frames.
    assert _close(_run(backend, req), frames)
    assert not _close(_run(backend, req.with_changes(seed=8)), frames)


def test_pipeline_is_cached_and_released(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                         images: tuple[Path, Path]) -> None:
    _run(backend, _req(tiny_models["ltx"], images[0]))
    pipe = backend._pipe
    _run(backend, _req(tiny_models["ltx"], images[0], seed=3))
    assert backend._pipe is pipe  # same model: no reload
    ref = weakref.ref(pipe)
    del pipe
    _run(backend, _req(tiny_models["wan22_5b"], images[0]))
    gc.collect()
    assert ref() is None  # another model: the first pipeline was freed
    backend.unload()
    assert backend.loaded is None


def test_snap_notes_per_family(backend: DiffusersBackend, tiny_models: dict[str, Path],
                               images: tuple[Path, Path]) -> None:
    start, end = images
    req, notes = backend.snap(_req(tiny_models["wan21"], start, width=30, height=30, num_frames=10,
                                   last_image=end))
    assert (req.width, req.height, req.num_frames, req.last_image) == (32, 32, 9, None)
    assert any("30x30 → 32x32" in n for n in notes) and any("4k+1" in n for n in notes)
    assert any("last frame" in n for n in notes)
    # Wan has no fps input: keep the duration at its native 16 fps.
    req, notes = backend.snap(_req(tiny_models["wan22"], start, fps=24, num_frames=48))
    assert req.fps == 16 and req.num_frames == 33 and any("16 fps" in n for n in notes)
    # LTX is conditioned on fps: keep it; 32-pixel multiples.
    req, notes = backend.snap(_req(tiny_models["ltx"], start, fps=24, width=40, height=40))
    assert req.fps == 24 and (req.width, req.height) == (32, 32)
    # SVD: no prompt, no LoRA, frames capped at the UNet's num_frames.
    lora = (Path("/tmp/x.safetensors"), 1.0)
    req, notes = backend.snap(_req(tiny_models["svd"], start, num_frames=30, loras=(lora,)))
    assert req.prompt == "" and req.loras == () and req.num_frames == 14
    assert any("no text prompt" in n for n in notes) and any("LoRA" in n for n in notes)
    # First+last frame models keep the end image.
    req, notes = backend.snap(_req(tiny_models["wan21_flf"], start, last_image=end))
    assert req.last_image == end and not any("last frame" in n for n in notes)
    # Guidance left at the app default follows the family; a shot's own value is kept.
    req, notes = backend.snap(_req(tiny_models["ltx"], start))
    assert req.guidance == 3.0 and any("guidance 5 → 3" in n for n in notes)
    req, notes = backend.snap(_req(tiny_models["ltx"], start, extra={"guidance": 5.0}))
    assert req.guidance == 5.0 and not any("guidance" in n for n in notes)
    assert backend.snap(_req(tiny_models["wan21"], start))[0].guidance == 5.0
    # Above the model's native resolution: a warning, not a refusal.
    req, notes = backend.snap(_req(tiny_models["wan21"], start, width=1920, height=1088))
    assert (req.width, req.height) == (1920, 1088) and any("native 832x480" in n for n in notes)
    caps = backend.capabilities(str(tiny_models["ltx"]))
    assert (caps.size_multiple, caps.default_fps, caps.text_prompt, caps.needs_gpu) == (32, 25, True, True)
    caps = backend.capabilities(str(tiny_models["svd"]))
    assert (caps.text_prompt, caps.frame_step, caps.max_frames) == (False, 1, 14)
    assert backend.capabilities(None).size_multiple == 16


def test_last_frame_conditions_the_video(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                         images: tuple[Path, Path]) -> None:
    start, end = images
    to_end = _run(backend, _req(tiny_models["wan21_flf"], start, last_image=end))
    to_start = _run(backend, _req(tiny_models["wan21_flf"], start, last_image=start))
    assert to_end.shape == to_start.shape == (9, 32, 32, 3) and not _close(to_end, to_start)
    # Wan 2.2 A14B takes an optional end frame through the same pipeline. Its tiny random
    # transformer barely reacts to conditioning, so compare exactly: same-seed runs are identical
    # (same process, same threads), so any difference comes from the end frame.
    plain = _run(backend, _req(tiny_models["wan22"], start))
    assert np.array_equal(_run(backend, _req(tiny_models["wan22"], start)), plain)
    assert not np.array_equal(_run(backend, _req(tiny_models["wan22"], start, last_image=end)), plain)
    # Without an end image the FLF2V model cannot run: say so instead of crashing inside torch.
    req, notes = backend.snap(_req(tiny_models["wan21_flf"], start))
    assert any("needs an end image" in n for n in notes)
    with pytest.raises(StudioError, match="needs an end image"):
        _run(backend, req)


@pytest.mark.parametrize("layout", ["wan22", "ltx", "svd"])
def test_cancel_within_one_step_then_reuse(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                           images: tuple[Path, Path], layout: str) -> None:
    req = _req(tiny_models[layout], images[0], steps=4)
    expected = _run(backend, req)
    pipe = backend._pipe
    seen: list[int] = []

    def on_progress(p: Progress) -> None:
        if p.stage == "generating":
            seen.append(p.step)

    with pytest.raises(Cancelled):
        backend.generate(req, on_progress, lambda: len(seen) >= 1)
    assert seen == [1]  # stopped right after the step during which cancel was asked
    assert backend._pipe is pipe  # the pipeline stays loaded and usable
    assert _close(_run(backend, req), expected)


def test_cancel_before_start(backend: DiffusersBackend, tiny_models: dict[str, Path],
                             images: tuple[Path, Path]) -> None:
    steps: list[Progress] = []
    with pytest.raises(Cancelled):
        backend.generate(_req(tiny_models["ltx"], images[0]), steps.append, lambda: True)
    assert not [p for p in steps if p.stage == "generating"]


def test_oom_retries_once_with_a_thriftier_mode(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                                images: tuple[Path, Path]) -> None:
    import torch

    req = _req(tiny_models["wan21"], images[0])
    backend.unload()
    calls = {"n": 0}

    def oom_once(p: Progress) -> None:
        # Injected: a CUDA OOM raised mid-denoise on the first attempt only (no GPU here).
        if p.stage == "generating" and calls["n"] == 0:
            calls["n"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    frames = backend.generate(req, oom_once, lambda: False)
    assert frames.shape == (9, 32, 32, 3)
    assert backend.plan is not None and backend.plan.mode == "fp8"  # CPU ladder: none → fp8
    assert any("retried with" in n for n in backend.last_notes)

    def always_oom(p: Progress) -> None:
        if p.stage == "generating":
            raise torch.OutOfMemoryError("CUDA out of memory")

    backend.unload()
    with pytest.raises(StudioError) as info:
        backend.generate(req, always_oom, lambda: False)
    msg = str(info.value)
    assert "out of memory generating 32x32, 9 frames" in msg and "lower the resolution" in msg
    assert backend.loaded is None  # freed after the failed job
    # The next job starts over and works.
    assert _run(backend, req).shape == (9, 32, 32, 3)


def test_oom_while_loading_steps_down(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                     images: tuple[Path, Path]) -> None:
    import torch

    backend.unload()
    seen: list[str] = []

    def oom_on_first_load(p: Progress) -> None:
        seen.append(p.stage)
        # Injected: CUDA OOM while placing the weights (no GPU here).
        if p.stage == "loading" and seen.count("loading") == 1:
            raise torch.OutOfMemoryError("CUDA out of memory while moving weights")

    frames = backend.generate(_req(tiny_models["ltx"], images[0]), oom_on_first_load, lambda: False)
    assert frames.shape == (9, 32, 32, 3) and backend.plan.mode == "fp8"


def test_explicit_memory_mode_from_request(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                           images: tuple[Path, Path]) -> None:
    frames = _run(backend, _req(tiny_models["ltx"], images[0], extra={"memory": "fp8"}))
    assert backend.plan is not None and backend.plan.mode == "fp8" and backend.plan.vae_tiling
    assert frames.shape == (9, 32, 32, 3)
    # A GPU-only mode on a CPU machine runs without offload instead of failing.
    _run(backend, _req(tiny_models["ltx"], images[0], extra={"memory": "group_offload"}))
    assert backend.plan is not None and backend.plan.mode == "none"


@pytest.mark.parametrize("layout", ["wan21", "wan22", "ltx"])
def test_lora_changes_output_and_unloads(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                         images: tuple[Path, Path], tmp_path: Path, layout: str) -> None:
    lora = tp.write_tiny_lora(tmp_path / f"{layout}.safetensors", layout="ltx" if layout == "ltx" else "wan21",
                              scale=1.0)
    req = _req(tiny_models[layout], images[0])
    base = _run(backend, req)
    with_lora = _run(backend, req.with_changes(loras=((lora, 1.0),)))
    assert not _close(with_lora, base)
    if layout == "wan22":  # one character LoRA drives both experts
        adapters = backend._pipe.get_list_adapters()
        assert adapters.get("transformer") and adapters.get("transformer_2")
    # Weight 0 is the base model; dropping the LoRA restores the base output.
    assert _close(_run(backend, req.with_changes(loras=((lora, 0.0),))), base)
    assert _close(_run(backend, req), base)
    assert not any(backend._pipe.get_list_adapters().values())


def test_lora_errors_name_the_file(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                   images: tuple[Path, Path], tmp_path: Path) -> None:
    req = _req(tiny_models["wan21"], images[0])
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(StudioError, match="LoRA file not found") as info:
        _run(backend, req.with_changes(loras=((missing, 1.0),)))
    assert str(missing) in str(info.value)
    pickled = tmp_path / "char.ckpt"
    pickled.write_bytes(b"\x80\x04junk")
    with pytest.raises(StudioError, match="must be .safetensors"):
        _run(backend, req.with_changes(loras=((pickled, 1.0),)))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 16)
    with pytest.raises(StudioError, match="not a valid safetensors"):
        _run(backend, req.with_changes(loras=((garbage, 1.0),)))
    wrong = tp.write_tiny_lora(tmp_path / "ltx-lora.safetensors", layout="ltx")
    with pytest.raises(StudioError) as info:
        _run(backend, req.with_changes(loras=((wrong, 1.0),)))
    assert str(wrong) in str(info.value) and "Wan 2.1 I2V" in str(info.value)
    # The pipeline is clean afterwards.
    assert _run(backend, req).shape == (9, 32, 32, 3)


def test_model_errors_are_readable(backend: DiffusersBackend, tmp_path: Path,
                                   images: tuple[Path, Path]) -> None:
    with pytest.raises(StudioError, match="no model chosen"):
        _run(backend, _req(Path(""), images[0]).with_changes(model=None))
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(StudioError, match="model_index.json is missing") as info:
        _run(backend, _req(empty, images[0]))
    assert str(empty) in str(info.value)


def test_fingerprint_via_backend(backend: DiffusersBackend, tiny_models: dict[str, Path]) -> None:
    fp = backend.model_fingerprint(str(tiny_models["svd"]))
    assert fp is not None and len(fp) == 16
    assert fp == backend.registry.find(str(tiny_models["svd"])).fingerprint
    assert backend.model_fingerprint(None) is None


def test_registry_maps_diffusers_to_this_backend() -> None:
    from studio.engine.registry import BACKENDS

    module, cls = BACKENDS["diffusers"]
    import importlib

    assert getattr(importlib.import_module(module), cls) is DiffusersBackend


@pytest.mark.parametrize("mode", ["group_offload", "group_offload_fp8"])
def test_group_offload_code_runs_with_cpu_onload(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                                 images: tuple[Path, Path], mode: str) -> None:
    """No GPU here: drive the GPU-ladder group-offload modes with the CPU as onload device, so the
    diffusers calls (hooks, layerwise fp8 casting, VAE tiling) are at least exercised for real.
    (Model CPU offload refuses to run without an accelerator, so it cannot be run here.)"""
    from studio.engine.memory import MemoryPlan

    req = _req(tiny_models["wan22"], images[0])
    expected = _run(backend, req)
    info = backend.loaded
    backend.unload()
    backend._load_with(info, MemoryPlan(mode, "cpu", True, "test"), None)
    frames = _run(backend, req)  # "auto" keeps the loaded plan
    assert backend.plan.mode == mode and frames.shape == expected.shape
    if mode == "group_offload":  # lossless placement: same frames as without offload
        assert _close(frames, expected)
    backend.unload()


def test_lora_with_fp8_weights(backend: DiffusersBackend, tiny_models: dict[str, Path],
                               images: tuple[Path, Path], tmp_path: Path) -> None:
    """LoRAs must be attached before layerwise fp8 casting (after it peft builds fp8 layers that
    cannot run): the backend reloads the pipeline when the LoRA set changes in such a mode."""
    lora = tp.write_tiny_lora(tmp_path / "char.safetensors", layout="wan21", scale=1.0)
    req = _req(tiny_models["wan21"], images[0], extra={"memory": "fp8"})
    backend.unload()
    # The queue loads before it knows the job's LoRAs: the fp8 casting waits for the job, so the
    # first job with a LoRA needs no second load.
    backend.load(req.model, memory="fp8")
    pipe = backend._pipe
    with_lora = _run(backend, req.with_changes(loras=((lora, 1.0),)))
    assert backend._pipe is pipe and backend.plan.mode == "fp8"
    assert _close(_run(backend, req.with_changes(loras=((lora, 1.0),))), with_lora)
    assert backend._pipe is pipe  # same LoRA again: no reload
    base = _run(backend, req)  # LoRA dropped: reloaded without it
    assert backend._pipe is not pipe and not _close(with_lora, base)
    assert _close(_run(backend, req.with_changes(loras=((lora, 1.0),))), with_lora)


def test_backend_sees_models_added_later_in_the_dialog(tiny_models: dict[str, Path], tmp_path: Path,
                                                       images: tuple[Path, Path]) -> None:
    """The Models dialog and the backend hold separate registries: a model registered (or given a
    memory mode) after the backend read the list must still resolve by its id."""
    path = tmp_path / "models.json"
    b = DiffusersBackend(registry=ModelRegistry(path), device="cpu")
    assert b.registry.models() == []
    other = ModelRegistry(path)
    info = other.add_folder(tiny_models["ltx"])
    assert b.capabilities(info.id).size_multiple == 32
    other.set_memory(info.id, "fp8_model_offload")  # a GPU mode: runs as "none" on this CPU
    frames = b.generate(_req(tiny_models["ltx"], images[0]).with_changes(model=info.id),
                        lambda p: None, lambda: False)
    assert frames.shape == (9, 32, 32, 3)
    assert b.plan is not None and "needs a GPU" in b.plan.reason
    b.unload()


def test_variant_only_model_loads(backend: DiffusersBackend, tiny_models: dict[str, Path],
                                  images: tuple[Path, Path], tmp_path: Path) -> None:
    """A folder holding only *.fp16.safetensors (as some repos ship) loads with variant="fp16"."""
    import shutil

    folder = shutil.copytree(tiny_models["ltx"], tmp_path / "ltx-fp16")
    for p in folder.rglob("*.safetensors"):
        p.rename(p.with_name(p.name.replace(".safetensors", ".fp16.safetensors")))
    expected = _run(backend, _req(tiny_models["ltx"], images[0]))
    frames = _run(backend, _req(folder, images[0]))
    assert backend.loaded.variant == "fp16" and _close(frames, expected)
