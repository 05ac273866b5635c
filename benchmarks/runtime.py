"""The GPU runtime's costs, measured on a runtime made from this Python's packages
(``--system-site-packages``, empty wheelhouse: pip has nothing to download, so ``install_s`` is the
runtime's own overhead — venv, probe, app-source sync — not a download).

- ``install_s``: install without verification (venv creation with ensurepip dominates).
- ``verify_s``: ``runtime verify`` (worker start + tiny Wan 2.1 pipeline built and run, 2 steps).
- ``worker_start_s``: process start to the hello message (torch + diffusers imported), median.
- ``ping_ms``: one request/reply round trip over the pipes, median of many.
- ``job_remote_s`` / ``job_in_process_s``: the same tiny Wan 2.1 take (32x32, 9 frames, 2 steps,
  model already loaded, H.264 MP4 encoded into a project folder — what a queued job does) through
  the worker, which encodes the take itself, and in this process; ``job_overhead_ms`` is their
  difference (request encoding, progress messages, the file check; no frames are handed over).
- ``cancel_latency_s``: cancel requested after the first step → Cancelled raised in the app.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median


def run(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench runtime")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    tests = Path(__file__).resolve().parents[1] / "tests" / "engine"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import numpy as np
    import tiny_pipelines
    from PIL import Image

    from studio.engine.base import Cancelled, GenerationRequest
    from studio.engine.diffusers_backend import DiffusersBackend
    from studio.engine.model_library import ModelRegistry
    from studio.runtime.backend import RemoteBackend
    from studio.runtime.client import WorkerClient
    from studio.runtime.manager import InstallOptions, RuntimeManager

    out: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["CONTINUITY_STUDIO_HOME"] = str(root / "home")
        (root / "wheels").mkdir()
        m = RuntimeManager(root / "home" / "data" / "runtime")
        t0 = time.perf_counter()
        m.install(InstallOptions(wheelhouse=str(root / "wheels"), system_site_packages=True),
                  log=lambda line: None, verify=False)
        out["install_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        m.verify(log=lambda line: None)
        out["verify_s"] = round(time.perf_counter() - t0, 2)

        starts, pings = [], []
        for _ in range(max(1, args.repeats // 2)):
            c = WorkerClient(m, device="cpu")
            t0 = time.perf_counter()
            c.start()
            starts.append(time.perf_counter() - t0)
            for _ in range(50):
                t0 = time.perf_counter()
                c.call({"op": "ping"})
                pings.append(time.perf_counter() - t0)
            c.close()
        out["worker_start_s"] = round(median(starts), 2)
        out["ping_ms"] = round(median(pings) * 1000, 3)

        model = tiny_pipelines.save_tiny_pipeline("wan21", root / "wan21")
        reg_path = root / "models.json"
        ModelRegistry(reg_path).add_folder(model)
        img = root / "start.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
        req = GenerationRequest(start_image=img, prompt="a man turns his head", width=32, height=32, num_frames=9,
                                fps=16, seed=7, steps=2, model=str(model))
        remote = RemoteBackend(m, ModelRegistry(reg_path), device="cpu")
        local = DiffusersBackend(ModelRegistry(reg_path), device="cpu")
        project = root / "project"
        project.mkdir()

        def take(backend: Any, i: int) -> None:  # a job's path: generate + encode the take's MP4
            backend.generate_take(req, project / "takes" / "bench" / f"t{i}.mp4", 16.0, lambda p: None,
                                  lambda: False, root=project)

        try:
            remote.load(req.model)
            local.load(req.model)
            take(remote, 0)  # warm both
            take(local, 0)
            r_times, l_times = [], []
            for i in range(args.repeats):
                t0 = time.perf_counter()
                take(remote, i)
                r_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                take(local, i)
                l_times.append(time.perf_counter() - t0)
            out["job_remote_s"] = round(median(r_times), 4)
            out["job_in_process_s"] = round(median(l_times), 4)
            out["job_overhead_ms"] = round((median(r_times) - median(l_times)) * 1000, 1)
            lat = []
            for _ in range(max(1, args.repeats // 2)):
                flag = threading.Event()
                stamp: list[float] = []

                def progress(pr: Any, flag: threading.Event = flag, stamp: list[float] = stamp) -> None:
                    if pr.stage == "generating" and not flag.is_set():
                        stamp.append(time.perf_counter())
                        flag.set()

                try:
                    remote.generate(req.with_changes(steps=200), progress, flag.is_set)
                except Cancelled:
                    lat.append(time.perf_counter() - stamp[0])
            out["cancel_latency_s"] = round(median(lat), 3)
        finally:
            remote.shutdown()
            local.unload()
    out["repeats"] = args.repeats
    return out
