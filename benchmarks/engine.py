"""``continuity-studio bench engine``: the diffusers backend's own costs, on a tiny random-weight
pipeline (so the figures measure our loading/generation code, not a model's FLOPs).

Figures (median of ``--runs``):
- ``tiny_build_and_save_s``: importing torch/diffusers and writing the tiny model folder.
- ``first_load_s``: the backend's first load in the process (pipeline class imports included).
- ``load_s``: load of the tiny model through the model manager once the libraries are imported
  (validation, fingerprint, ``from_pretrained``, memory plan).
- ``step_ms``: marginal time of one denoising step through the backend (generate with 2 vs 6 steps).
- ``backend_overhead_ms``: ``DiffusersBackend.generate`` minus calling the pipeline directly with the
  same arguments (image loading, snapping, callbacks, conversion to uint8).
- ``cancel_to_idle_ms``: from the moment another thread asks to cancel (mid-step) until
  ``generate`` has raised ``Cancelled`` and the pipeline is ready again.

Options: ``--layout wan21|wan22|wan22_5b|ltx|svd`` (default wan21), ``--runs N`` (default 5),
``--size WxH`` (default 64x64), ``--frames N`` (default 9), ``--threads N`` (torch CPU threads,
default 1: on a busy machine more threads make every figure noisy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median


def _tiny(layout: str, root: Path) -> Path:
    tests = Path(__file__).resolve().parents[1] / "tests" / "engine"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import diffusers
    import tiny_pipelines  # noqa: PLC0415 - lives with the tests, needs the path above
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    return tiny_pipelines.save_tiny_pipeline(layout, root / layout)


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="bench engine")
    ap.add_argument("--layout", default="wan21", choices=["wan21", "wan22", "wan22_5b", "ltx", "svd"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="64x64")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 keeps timings stable on a busy machine)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    import numpy as np
    from PIL import Image

    from studio.engine.base import Cancelled, GenerationRequest, Progress
    from studio.engine.diffusers_backend import DiffusersBackend
    from studio.engine.model_library import ModelRegistry

    import torch

    torch.set_num_threads(max(1, args.threads))
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        folder = _tiny(args.layout, root)  # imports torch + diffusers
        build_s = time.perf_counter() - t0
        start = root / "start.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(start)
        reg = ModelRegistry(root / "models.json")
        reg.add_folder(folder)
        fps = {"svd": 7, "wan22_5b": 24}.get(args.layout, 16)
        req = GenerationRequest(start_image=start, prompt="a man turns his head", width=w, height=h,
                                num_frames=args.frames, fps=fps, seed=1, steps=2, model=str(folder))

        backend = DiffusersBackend(registry=reg)
        t0 = time.perf_counter()
        backend.load(str(folder))
        first_load_s = time.perf_counter() - t0
        loads = []
        for _ in range(args.runs):
            backend.unload()
            t0 = time.perf_counter()
            backend.load(str(folder))
            loads.append(time.perf_counter() - t0)

        def timed(r: GenerationRequest) -> float:
            t0 = time.perf_counter()
            backend.generate(r, lambda p: None, lambda: False)
            return time.perf_counter() - t0

        from studio.engine.diffusers_backend import _fit

        pipe = backend._pipe
        img = _fit(Image.open(start).convert("RGB"), w, h)

        def raw() -> float:
            kw: dict[str, Any] = dict(image=img, height=h, width=w, num_frames=args.frames, num_inference_steps=2,
                                      generator=torch.Generator().manual_seed(1), output_type="np")
            if args.layout != "svd":
                kw["prompt"] = req.prompt
            t0 = time.perf_counter()
            pipe(**kw)
            return time.perf_counter() - t0

        # Interleaved, so a busy machine's drift hits both sides of each difference alike.
        timed(req)
        raw()
        few, many, raws = [], [], []
        for _ in range(args.runs):
            few.append(timed(req.with_changes(steps=2)))
            raws.append(raw())
            many.append(timed(req.with_changes(steps=6)))
        step_ms = (median(many) - median(few)) / 4 * 1000
        overhead_ms = median([a - b for a, b in zip(few, raws)]) * 1000

        # Cancel from another thread half-way through a step.
        cancels = []
        for _ in range(args.runs):
            flag = threading.Event()
            asked: list[float] = []
            first_step = threading.Event()

            def on_progress(p: Progress) -> None:
                if p.stage == "generating":
                    first_step.set()

            def canceller() -> None:
                first_step.wait(30)
                time.sleep(step_ms / 2000 if step_ms > 0 else 0.001)
                asked.append(time.perf_counter())
                flag.set()

            th = threading.Thread(target=canceller)
            th.start()
            try:
                backend.generate(req.with_changes(steps=50), on_progress, flag.is_set)
            except Cancelled:
                cancels.append(time.perf_counter() - asked[0])
            th.join()
        backend.unload()

    return {
        "benchmark": "engine",
        "layout": args.layout,
        "size": f"{w}x{h}",
        "frames": args.frames,
        "runs": args.runs,
        "torch_threads": torch.get_num_threads(),
        "tiny_build_and_save_s": round(build_s, 3),
        "first_load_s": round(first_load_s, 3),
        "load_s": round(median(loads), 4),
        "step_ms": round(step_ms, 2),
        "generate_2_steps_s": round(median(few), 4),
        "backend_overhead_ms": round(overhead_ms, 2),
        "cancel_to_idle_ms": round(median(cancels) * 1000, 2) if cancels else None,
        "cancel_samples": len(cancels),
        "device": backend.device(),
        "machine": machine_info(),
    }
