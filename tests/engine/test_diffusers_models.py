"""Model manager: validation of real (tiny) diffusers folders, wrong folders, fingerprints, the
persisted registry, the Hugging Face cache and the offline download error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tiny_pipelines as tp
from studio.core.errors import StudioError
from studio.engine.model_library import (FAMILIES, ModelRegistry, download_model, fingerprint, inspect_model,
                                  resolve_hf_cache, resolve_model)

EXPECTED = {"wan21": "wan21_i2v", "wan21_flf": "wan21_flf2v", "wan22": "wan22_a14b",
            "wan22_5b": "wan22_ti2v_5b", "wan_vace": "wan_vace", "ltx": "ltx_i2v", "svd": "svd"}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tp.tiny_models_once(tmp_path_factory.getbasetemp() / "tiny-models")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("layout", tp.LAYOUTS)
def test_inspect_recognises_every_layout(tiny_models: dict[str, Path], layout: str) -> None:
    info = inspect_model(tiny_models[layout])
    assert info.family == EXPECTED[layout]
    assert info.valid and info.problem is None
    assert info.size_bytes > 50_000  # real weights on disk
    assert info.params > 10_000
    weighted = {n for n, c in info.components.items() if c.params}
    assert "vae" in weighted and ({"transformer", "unet"} & weighted)
    if layout == "wan22":
        assert "transformer_2" in weighted
    assert all(f.endswith(".safetensors") for c in info.components.values() for f in c.files)
    # Rules come from the model's own configs: the tiny Wan 2.2 5B VAE compresses 16x, patch 2.
    expected_multiple = {"wan22_5b": 32, "ltx": 32, "svd": 8}.get(layout, 16)
    assert info.rules["size_multiple"] == expected_multiple
    assert info.fingerprint == inspect_model(tiny_models[layout]).fingerprint
    assert len(info.fingerprint) == 16


def test_fingerprint_changes_with_weights(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(tiny_models["ltx"], tmp_path / "ltx")
    before = inspect_model(folder).fingerprint
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last tensor's data
    weights.write_bytes(bytes(data))
    assert inspect_model(folder).fingerprint != before
    files = [f for c in inspect_model(folder).components.values() for f in c.files]
    assert fingerprint(folder, files) == inspect_model(folder).fingerprint


def _err(folder: Path) -> str:
    with pytest.raises(StudioError) as info:
        inspect_model(folder)
    return str(info.value)


def test_wrong_folders_give_clear_errors(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert "does not exist" in _err(missing) and str(missing) in _err(missing)

    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"x")
    assert "not a folder" in _err(a_file)

    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _err(empty)
    assert "model_index.json is missing" in msg and str(empty) in msg

    parent = tmp_path / "parent"
    _copy(tiny_models["ltx"], parent / "LTX-Video")
    assert "did you mean" in _err(parent) and "LTX-Video" in _err(parent)

    bad_json = _copy(tiny_models["ltx"], tmp_path / "badjson")
    (bad_json / "model_index.json").write_text("{not json", encoding="utf-8")
    assert "model_index.json is not readable JSON" in _err(bad_json)

    no_weights = _copy(tiny_models["wan21"], tmp_path / "noweights")
    (no_weights / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    msg = _err(no_weights)
    assert "transformer/ has no .safetensors weights" in msg and str(no_weights) in msg

    pickled = _copy(tiny_models["wan21"], tmp_path / "pickled")
    w = pickled / "vae" / "diffusion_pytorch_model.safetensors"
    w.rename(w.with_suffix(".bin"))
    assert "pickle" in _err(pickled) and "vae/" in _err(pickled)

    no_comp = _copy(tiny_models["ltx"], tmp_path / "nocomp")
    shutil.rmtree(no_comp / "vae")
    assert "vae/" in _err(no_comp) and "missing" in _err(no_comp)

    truncated = _copy(tiny_models["ltx"], tmp_path / "truncated")
    (truncated / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x05")
    assert "not a valid safetensors file" in _err(truncated)

    unknown = _copy(tiny_models["ltx"], tmp_path / "unknown")
    index = json.loads((unknown / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPipeline"
    index["transformer"] = ["diffusers", "UNet2DConditionModel"]
    (unknown / "model_index.json").write_text(json.dumps(index))
    msg = _err(unknown)
    assert "unknown model family" in msg and "StableDiffusionPipeline" in msg and "Wan 2.1 I2V" in msg

    t2v = _copy(tiny_models["wan22"], tmp_path / "t2v")
    cfg = json.loads((t2v / "transformer" / "config.json").read_text())
    cfg["in_channels"] = 16
    (t2v / "transformer" / "config.json").write_text(json.dumps(cfg))
    assert "text-to-video" in _err(t2v)


def test_wan21_720p_is_told_apart_by_name(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    assert inspect_model(tiny_models["wan21"]).rules["native_size"] == [832, 480]
    folder = _copy(tiny_models["wan21"], tmp_path / "Wan2.1-I2V-14B-720P-Diffusers")
    assert inspect_model(folder).rules["native_size"] == [1280, 720]


def test_sharded_weights_must_all_be_present(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(tiny_models["ltx"], tmp_path / "sharded")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "diffusion_pytorch_model.safetensors", "b": "diffusion_pytorch_model-2.safetensors"}}))
    assert "missing weight shards: diffusion_pytorch_model-2.safetensors" in _err(folder)


def test_variant_only_weights_are_detected(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(tiny_models["svd"], tmp_path / "svd-fp16")
    for p in folder.rglob("*.safetensors"):
        p.rename(p.with_name(p.name.replace(".safetensors", ".fp16.safetensors")))
    info = inspect_model(folder)
    assert info.variant == "fp16"
    assert all(".fp16." in f for c in info.components.values() for f in c.files)
    # Sharded variant files name the variant before the shard number.
    unet = folder / "unet" / "diffusion_pytorch_model.fp16.safetensors"
    unet.rename(unet.with_name("diffusion_pytorch_model.fp16-00001-of-00001.safetensors"))
    again = inspect_model(folder)
    assert again.variant == "fp16" and again.components["unet"].params == info.components["unet"].params


def test_registry_persists_atomically(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "models.json"
    reg = ModelRegistry(path)
    info = reg.add_folder(tiny_models["wan22"])
    reg.set_memory(info.id, "group_offload")
    with pytest.raises(StudioError, match="unknown memory mode"):
        reg.set_memory(info.id, "turbo")
    again = ModelRegistry(path)
    got = again.get(info.id)
    assert got is not None and got.family == "wan22_a14b" and got.memory == "group_offload"
    assert got.components["transformer_2"].params == info.components["transformer_2"].params
    assert again.find(str(tiny_models["wan22"])) is not None and again.find("wan22") is not None
    data = json.loads(path.read_text())
    assert data["format"] == 1 and len(data["models"]) == 1
    assert not list(path.parent.glob("*.tmp"))
    # Re-adding keeps the user's memory choice; resolve_model re-validates the folder.
    assert reg.add_folder(tiny_models["wan22"]).memory == "group_offload"
    assert resolve_model(info.id, again).memory == "group_offload"
    again.remove(info.id)
    assert ModelRegistry(path).models() == []


def test_registry_marks_a_broken_folder_invalid(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(tiny_models["ltx"], tmp_path / "ltx")
    reg = ModelRegistry(tmp_path / "models.json")
    info = reg.add_folder(folder)
    (folder / "model_index.json").unlink()
    checked = reg.revalidate(info.id)
    assert not checked.valid and "model_index.json is missing" in (checked.problem or "")
    with pytest.raises(StudioError, match="model_index.json is missing"):
        resolve_model(info.id, reg)


def test_damaged_registry_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text("[[[", encoding="utf-8")
    with pytest.raises(StudioError, match="model list is damaged") as info:
        ModelRegistry(path)
    assert str(path) in str(info.value)


def test_default_registry_lives_in_config_dir() -> None:
    from studio.core.userdirs import config_dir

    assert ModelRegistry().path == config_dir() / "models.json"


def _fake_hf_cache(root: Path, repo_id: str, model: Path) -> Path:
    """The Hugging Face cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(model, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_add_from_hf_cache_offline(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    snap = _fake_hf_cache(cache, "tiny-org/tiny-ltx", tiny_models["ltx"])
    assert resolve_hf_cache("tiny-org/tiny-ltx", cache_dir=cache) == snap
    reg = ModelRegistry(tmp_path / "models.json")
    info = reg.add_hf_cache("tiny-org/tiny-ltx", cache_dir=cache)
    assert info.source == "hf-cache" and info.repo_id == "tiny-org/tiny-ltx" and info.family == "ltx_i2v"
    assert reg.find("tiny-org/tiny-ltx") is info
    with pytest.raises(StudioError, match="not in the local Hugging Face cache"):
        reg.add_hf_cache("tiny-org/absent", cache_dir=cache)
    with pytest.raises(StudioError, match="not a Hugging Face model id"):
        resolve_hf_cache("just-a-name", cache_dir=cache)


def test_download_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no internet; force huggingface_hub's offline mode so the test is the same
    # (and instant) on a machine that has a connection.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(StudioError) as info:
        download_model("tiny-org/never-downloaded", cache_dir=tmp_path / "hf")
    assert "cannot download tiny-org/never-downloaded: offline" in str(info.value)


def test_resolve_model_errors(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "models.json")
    with pytest.raises(StudioError, match="no model chosen"):
        resolve_model(None, reg)
    with pytest.raises(StudioError, match="neither a known model"):
        resolve_model("no-such-model", reg)
    with pytest.raises(StudioError, match="does not exist"):
        resolve_model(str(tmp_path / "gone" / "model"), reg)


def test_every_family_has_consistent_defaults() -> None:
    for fam in FAMILIES.values():
        assert fam.default_fps > 0 and fam.max_frames > 1 and fam.default_steps > 0
        w, h = fam.default_size
        assert w % 16 == 0 and h % 16 == 0
