"""Memory policy for diffusers pipelines: how a model is placed on the GPU, and what to do when it
does not fit.

Modes, from fastest/most memory to slowest/least (the *ladder*):

- ``none``               every component on the GPU.
- ``model_offload``      ``enable_model_cpu_offload``: one whole component on the GPU at a time.
- ``fp8_model_offload``  the same, with the transformer(s) stored in float8 (layerwise casting,
                         computed in bf16): halves the largest component.
- ``group_offload``      block-level group offload with CUDA streams: only a block or two of each
                         big model on the GPU, the rest in pinned CPU memory.
- ``group_offload_fp8``  leaf-level group offload of float8-stored weights: the least GPU and CPU
                         memory, the slowest.

Every mode but ``none`` also tiles the VAE decode. On a machine without an accelerator diffusers'
CPU offload cannot run ("requires accelerator"), so the CPU ladder is ``none`` → ``fp8`` (weights
stored in float8 in RAM, VAE tiled).

``choose_plan`` is pure arithmetic on byte counts (testable without a GPU); ``apply_plan`` and
``free_memory`` touch torch.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError

if TYPE_CHECKING:
    from studio.engine.model_library import ModelInfo

GPU_LADDER = ("none", "model_offload", "fp8_model_offload", "group_offload", "group_offload_fp8")
CPU_LADDER = ("none", "fp8")
GiB = 1024 ** 3

MODE_LABELS = {
    "auto": "Automatic (from free GPU memory)",
    "none": "Everything on the GPU (fastest)",
    "model_offload": "Model CPU offload",
    "fp8_model_offload": "Model CPU offload + fp8 weights",
    "group_offload": "Group offload (streamed blocks)",
    "group_offload_fp8": "Group offload + fp8 weights (least memory)",
    "fp8": "fp8 weights (CPU)",
}

# Components whose weights dominate and which layerwise fp8 casting applies to.
_BIG = ("transformer", "transformer_2", "unet")


@dataclass(frozen=True)
class MemoryPlan:
    mode: str
    device: str  # "cuda" or "cpu"
    vae_tiling: bool
    reason: str = ""

    @property
    def fp8(self) -> bool:
        return "fp8" in self.mode

    @property
    def label(self) -> str:
        return MODE_LABELS.get(self.mode, self.mode)


def ladder(device: str) -> tuple[str, ...]:
    return GPU_LADDER if device == "cuda" else CPU_LADDER


def component_bytes(info: "ModelInfo", compute_bytes: int = 2) -> dict[str, int]:
    """Bytes each weighted component occupies once loaded in the compute dtype (VAE and image
    encoder are kept in float32 for Wan, so count them at 4 bytes)."""
    out = {}
    for name, c in info.components.items():
        if not c.params:
            continue
        per = 4 if name in ("vae", "image_encoder") and info.family.startswith("wan") else compute_bytes
        out[name] = c.params * per
    return out


def choose_plan(info: "ModelInfo", requested: str = "auto", *, device: str = "cpu",
                free_bytes: int | None = None, cpu_free_bytes: int | None = None) -> MemoryPlan:
    """Pick a plan. ``requested`` is a mode name or "auto". ``free_bytes`` is free accelerator
    memory (``torch.cuda.mem_get_info()[0]``), ``cpu_free_bytes`` available RAM."""
    steps = ladder(device)
    if requested != "auto":
        if requested not in steps:
            if device != "cuda":  # a GPU mode asked for on a CPU-only machine: run without offload
                return MemoryPlan("none", device, False, f"{requested} needs a GPU; running on CPU without offload")
            raise StudioError(f"unknown memory mode {requested!r}; choose one of auto, {', '.join(steps)}")
        return MemoryPlan(requested, device, requested != "none", "chosen in settings")
    sizes = component_bytes(info, 2 if device == "cuda" else 4)
    total = sum(sizes.values())
    biggest = max(sizes.values(), default=0)
    if device != "cuda":
        if cpu_free_bytes is not None and total > 0.9 * cpu_free_bytes:
            return MemoryPlan("fp8", device, True,
                              f"model needs {total / GiB:.1f} GiB, {cpu_free_bytes / GiB:.1f} GiB RAM free")
        return MemoryPlan("none", device, False, "CPU: no offload (diffusers' offload needs an accelerator)")
    free = int(free_bytes or 0)
    # Activations, the VAE decode and CUDA's own context need headroom beyond the weights.
    reserve = 2 * GiB + total // 10
    big_fp8 = sum(v // 2 if k in _BIG else 0 for k, v in sizes.items())
    biggest_fp8 = max((v // 2 if k in _BIG else v) for k, v in sizes.items()) if sizes else 0
    why = f"weights {total / GiB:.1f} GiB, largest part {biggest / GiB:.1f} GiB, GPU free {free / GiB:.1f} GiB"
    if total + reserve <= free:
        return MemoryPlan("none", device, total + reserve > 0.8 * free, why)
    if biggest + reserve <= free:
        return MemoryPlan("model_offload", device, True, why)
    if biggest_fp8 + reserve <= free:
        return MemoryPlan("fp8_model_offload", device, True, why)
    # Group offload keeps the weights in pinned RAM; fp8 halves that when RAM is short too.
    if cpu_free_bytes is not None and total - big_fp8 > 0.8 * cpu_free_bytes:
        return MemoryPlan("group_offload_fp8", device, True, why + ", RAM short")
    return MemoryPlan("group_offload", device, True, why)


def thriftier(plan: MemoryPlan) -> MemoryPlan | None:
    """The next mode down the ladder, or None at the bottom."""
    steps = ladder(plan.device)
    i = steps.index(plan.mode) if plan.mode in steps else -1
    if i + 1 >= len(steps):
        return None
    return replace(plan, mode=steps[i + 1], vae_tiling=True, reason=f"retry after out-of-memory in {plan.mode}")


def detect_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def free_bytes(device: str) -> tuple[int | None, int | None]:
    """(free accelerator bytes, available RAM bytes)."""
    import psutil

    ram = int(psutil.virtual_memory().available)
    if device != "cuda":
        return None, ram
    import torch

    free, _total = torch.cuda.mem_get_info()
    return int(free), ram


def compute_dtype(device: str, family: str) -> Any:
    import torch

    if device != "cuda":
        return torch.float32  # CPU: float32 is the reliable, reproducible choice
    if family == "svd":
        return torch.float16  # SVD was trained and is published in fp16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_dtypes(device: str, family: str) -> Any:
    """``torch_dtype`` for ``from_pretrained``: Wan's VAE and CLIP image encoder stay float32 on
    the GPU, as the Wan authors recommend (bf16 VAE decoding visibly bands)."""
    import torch

    dtype = compute_dtype(device, family)
    if device == "cuda" and family.startswith("wan"):
        return {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
    return dtype


def apply_plan(pipe: Any, plan: MemoryPlan, dtype: Any) -> None:
    """Place a freshly loaded (CPU) pipeline according to ``plan``."""
    import torch

    if plan.fp8:
        for name in _BIG:
            module = getattr(pipe, name, None)
            if module is not None and hasattr(module, "enable_layerwise_casting"):
                module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    if plan.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    device = torch.device(plan.device)
    if plan.mode in ("none", "fp8"):
        pipe.to(device)
    elif plan.mode in ("model_offload", "fp8_model_offload"):
        pipe.enable_model_cpu_offload(device=device)
    elif plan.mode in ("group_offload", "group_offload_fp8"):
        leaf = plan.mode == "group_offload_fp8"
        stream = plan.device == "cuda"
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"),
            offload_type="leaf_level" if leaf else "block_level",
            num_blocks_per_group=None if leaf else 1, use_stream=stream, low_cpu_mem_usage=leaf and stream,
            exclude_modules=[n for n in ("vae", "image_encoder") if getattr(pipe, n, None) is not None])
    else:
        raise StudioError(f"unknown memory mode {plan.mode!r}")


def is_oom(exc: BaseException) -> bool:
    """True for accelerator out-of-memory errors (and CPU allocation failures)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is present whenever a pipeline ran
        pass
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower()
                                              or "DefaultCPUAllocator: can't allocate" in text)


def free_memory() -> None:
    """Return cached blocks to the driver after a pipeline or a failed attempt is dropped."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
    except ImportError:  # pragma: no cover
        pass
