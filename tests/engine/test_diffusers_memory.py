"""The memory policy's choices, as arithmetic on byte counts (no GPU here, so the CUDA ladder is
tested through ``choose_plan`` with given free-memory figures)."""

from __future__ import annotations

import pytest

from studio.core.errors import StudioError
from studio.engine.memory import CPU_LADDER, GPU_LADDER, GiB, MemoryPlan, choose_plan, is_oom, thriftier
from studio.engine.model_library import ComponentInfo, ModelInfo


def _model(transformer_b: float, te_b: float = 5.7, vae_m: float = 127.0, two: bool = False) -> ModelInfo:
    comps = {
        "transformer": ComponentInfo("transformer", "diffusers", "WanTransformer3DModel",
                                     params=int(transformer_b * 1e9)),
        "text_encoder": ComponentInfo("text_encoder", "transformers", "UMT5EncoderModel",
                                      params=int(te_b * 1e9)),
        "vae": ComponentInfo("vae", "diffusers", "AutoencoderKLWan", params=int(vae_m * 1e6)),
        "tokenizer": ComponentInfo("tokenizer", "transformers", "T5TokenizerFast"),
    }
    if two:
        comps["transformer_2"] = ComponentInfo("transformer_2", "diffusers", "WanTransformer3DModel",
                                               params=int(transformer_b * 1e9))
    return ModelInfo(id="x", name="wan", path="/m", family="wan22_a14b" if two else "wan21_i2v",
                     pipeline_class="WanImageToVideoPipeline", size_bytes=0, fingerprint="f",
                     components=comps, rules={})


@pytest.mark.parametrize("free_gib, expected", [
    (80, "none"),               # 14B + 5.7B in bf16 ≈ 39 GB fits an 80 GB card
    (40, "model_offload"),      # one 28 GB transformer at a time
    (22, "fp8_model_offload"),  # the transformer only fits stored as fp8 (14 GB)
    (12, "group_offload"),      # blocks streamed from pinned RAM
])
def test_auto_plan_for_wan_14b(free_gib: float, expected: str) -> None:
    plan = choose_plan(_model(14.0), device="cuda", free_bytes=int(free_gib * GiB), cpu_free_bytes=200 * GiB)
    assert plan.mode == expected and plan.device == "cuda"
    assert plan.vae_tiling == (expected != "none") or plan.mode == "none"
    assert "GPU free" in plan.reason


def test_auto_plan_short_of_ram_uses_fp8_group_offload() -> None:
    plan = choose_plan(_model(14.0, two=True), device="cuda", free_bytes=8 * GiB, cpu_free_bytes=40 * GiB)
    assert plan.mode == "group_offload_fp8"


def test_two_experts_count_twice_for_whole_gpu_but_once_for_offload() -> None:
    # Wan 2.2 A14B: 2 x 28 GB transformers + text encoder do not fit 64 GB at once, one at a time does.
    plan = choose_plan(_model(14.0, two=True), device="cuda", free_bytes=64 * GiB, cpu_free_bytes=200 * GiB)
    assert plan.mode == "model_offload"


def test_cpu_plans() -> None:
    small = choose_plan(_model(1.3), device="cpu", cpu_free_bytes=64 * GiB)
    assert small == MemoryPlan("none", "cpu", False, small.reason) and "accelerator" in small.reason
    big = choose_plan(_model(14.0), device="cpu", cpu_free_bytes=32 * GiB)
    assert big.mode == "fp8" and big.vae_tiling


def test_explicit_modes() -> None:
    plan = choose_plan(_model(1.3), "group_offload", device="cuda", free_bytes=80 * GiB)
    assert plan.mode == "group_offload" and plan.vae_tiling
    assert choose_plan(_model(1.3), "none", device="cuda", free_bytes=1).mode == "none"
    cpu = choose_plan(_model(1.3), "model_offload", device="cpu")
    assert cpu.mode == "none" and "needs a GPU" in cpu.reason
    with pytest.raises(StudioError, match="unknown memory mode"):
        choose_plan(_model(1.3), "turbo", device="cuda", free_bytes=1)


def test_ladder_goes_down_one_step_at_a_time() -> None:
    plan = MemoryPlan("none", "cuda", False)
    seen = []
    while plan is not None:
        seen.append(plan.mode)
        plan = thriftier(plan)
    assert tuple(seen) == GPU_LADDER
    assert thriftier(MemoryPlan("none", "cpu", False)) == MemoryPlan("fp8", "cpu", True,
                                                                    "retry after out-of-memory in none")
    assert thriftier(MemoryPlan(CPU_LADDER[-1], "cpu", True)) is None


def test_is_oom() -> None:
    import torch

    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))
