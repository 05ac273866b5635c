"""ComfyUI client cost and farm scaling.

``continuity-studio bench comfyui [--server URL]... [--repeat N] [--jobs N]``

1. **Per-job overhead of our client** on the model-free ``connection-test`` workflow, against the
   bare HTTP exchange a minimal script does on the same server in the same run: multipart upload,
   ``POST /prompt``, poll ``/history/<id>`` until it lists the output, ``GET /view``. Ours is
   :class:`~studio.engine.comfyui.client.ComfyClient`: content-addressed upload, queue, follow
   the websocket, ``/history``, streamed and checked download. ``client_vs_bare`` =
   ``client_s / bare_s`` (1.0: no overhead). ``take_s`` adds what turns the result into a take
   (framing the start image on the face, re-encoding the take's H.264 MP4), as
   ``take_vs_bare``.
2. **Farm scaling**: the same ``--jobs`` jobs through the session (as ``render`` runs them) on
   one server, then on two; ``farm_scaling`` = ``(t_one / t_two) / 2`` (goal ≥ 0.9: two servers
   give at least 0.9 × twice the throughput of one).

Without ``--server`` both parts run on fake ComfyUI servers (``tests/comfyui/fake_server.py``)
whose jobs are a simulated sampler (``--step-delay`` seconds per step, no CPU), so the scaling
figure measures our client and scheduler, not this machine's CPU. With two or more ``--server``
URLs the farm part uses the first two real servers and the connection-test workflow.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, median

ROOT = Path(__file__).resolve().parents[1]


def _image_bytes(seed: int, size: tuple[int, int] = (960, 1280)) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.resize(size, Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _bare_job(url: str, image: bytes, graph: dict[str, Any]) -> float:
    """What a minimal script does: upload, queue, poll history, download. Seconds."""
    t0 = time.perf_counter()
    boundary = uuid.uuid4().hex
    name = f"bare-{uuid.uuid4().hex[:8]}.jpg"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + \
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url + "/upload/image", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    uploaded = json.loads(urllib.request.urlopen(req, timeout=30).read())
    g = json.loads(json.dumps(graph))
    g["1"]["inputs"]["image"] = uploaded["name"] if not uploaded.get("subfolder") else \
        f"{uploaded['subfolder']}/{uploaded['name']}"
    req = urllib.request.Request(url + "/prompt", data=json.dumps({"prompt": g}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    pid = json.loads(urllib.request.urlopen(req, timeout=30).read())["prompt_id"]
    while True:
        hist = json.loads(urllib.request.urlopen(f"{url}/history/{pid}", timeout=30).read())
        outs = (hist.get(pid) or {}).get("outputs") or {}
        files = [f for o in outs.values() for key in ("images", "gifs", "videos")
                 for f in o.get(key, [])]
        if files:
            break
        time.sleep(0.05)
    f = files[0]
    q = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f["subfolder"],
                                "type": f["type"]})
    urllib.request.urlopen(f"{url}/view?{q}", timeout=60).read()
    return time.perf_counter() - t0


def _client_job(url: str, image: bytes, graph_values: dict[str, Any], tmp: Path) -> float:
    from studio.engine.comfyui.backend import pick_outputs
    from studio.engine.comfyui.client import ComfyClient, ServerInfo
    from studio.engine.comfyui.workflow import bundled_workflows

    t0 = time.perf_counter()
    client = ComfyClient(ServerInfo(url))
    name = client.upload_bytes(image, f"{uuid.uuid4().hex}.jpg", subfolder="continuity-studio")
    graph = bundled_workflows()["connection-test"].bind(dict(graph_values, start_image=name))
    _pid, outputs = client.run(graph, on_event=lambda e: None, cancelled=lambda: False)
    out = pick_outputs(outputs)[0]
    client.download(out, tmp / f"{uuid.uuid4().hex}{Path(out.filename).suffix}")
    return time.perf_counter() - t0


def _take_job(url: str, photo: Path, tmp: Path, frames: int) -> float:
    from studio.engine.base import GenerationRequest
    from studio.engine.comfyui.client import ServerInfo
    from studio.engine.registry import get_backend

    backend = get_backend("comfyui")
    backend.configure([ServerInfo(url)])  # type: ignore[attr-defined]
    req = GenerationRequest(start_image=photo, prompt="", width=832, height=480,
                            num_frames=frames, fps=16, seed=1, model="connection-test",
                            face_landmarks=())
    t0 = time.perf_counter()
    backend.generate_take(req, tmp / "takes" / f"{uuid.uuid4().hex}.mp4", 16, lambda p: None,
                          lambda: False, root=tmp)
    return time.perf_counter() - t0


def _farm_run(urls: list[str], photo: Path, tmp: Path, jobs: int, workflow: str,
              steps: int) -> float:
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from engine_fixtures import make_project

    from studio.engine.comfyui.client import ServerInfo
    from studio.engine.registry import get_backend
    from studio.session.session import Session

    folder = tmp / f"farm-{len(urls)}-{uuid.uuid4().hex[:6]}"
    doc = make_project(folder, photo, shots=jobs, duration_s=0.5)
    for s in doc.project.shots:
        doc.update_shot(s.id, backend="comfyui", model=workflow,
                        params={"face_motion": False, "steps": steps})
    doc.save()
    get_backend("comfyui").configure([ServerInfo(u) for u in urls])  # type: ignore[attr-defined]
    session = Session(doc, analyze_new_takes=False)
    session.queue_takes([s.id for s in doc.project.shots])
    t0 = time.perf_counter()
    summary = session.run_jobs()
    elapsed = time.perf_counter() - t0
    if summary.failed:
        raise RuntimeError(f"farm jobs failed: {summary.failed[:2]}")
    return elapsed


def run(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="continuity-studio bench comfyui")
    ap.add_argument("--server", action="append", default=None, metavar="URL")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--jobs", type=int, default=8, help="jobs in each farm run")
    ap.add_argument("--steps", type=int, default=20, help="sampler steps of a fake farm job")
    ap.add_argument("--step-delay", type=float, default=0.05,
                    help="seconds per simulated sampler step on the fake servers")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"machine": machine_info()}
    fakes: list[Any] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-comfyui-") as tmp_s:
            tmp = Path(tmp_s)
            import os

            os.environ.setdefault("CONTINUITY_STUDIO_HOME", str(tmp / "home"))
            if args.server:
                urls = list(args.server)
                out["servers"] = "real: " + ", ".join(urls)
            else:
                sys.path.insert(0, str(ROOT / "tests" / "comfyui"))
                from fake_server import FakeComfyUI

                from studio.engine.comfyui.workflow import bundled_workflows

                models: dict[str, list[str]] = {}
                for m in bundled_workflows()["wan21-i2v-480p"].manifest.models:
                    models.setdefault(m.folder, []).append(m.name)
                fakes = [FakeComfyUI(models=models, step_delay_s=args.step_delay).start()
                         for _ in range(2)]
                urls = [f.url for f in fakes]
                out["servers"] = "fake (tests/comfyui/fake_server.py), simulated sampler"
            from skimage import data
            from PIL import Image

            photo = tmp / "astronaut.png"
            Image.fromarray(data.astronaut()).save(photo)
            values = {"width": 832, "height": 480, "frames": args.frames, "fps": 16,
                      "filename_prefix": "continuity-studio/bench"}
            from studio.engine.comfyui.workflow import bundled_workflows

            bare_graph = bundled_workflows()["connection-test"].bind(dict(values, start_image="x.jpg"))
            bare, client, take = [], [], []
            _client_job(urls[0], _image_bytes(0), values, tmp)  # warm both paths once
            _bare_job(urls[0], _image_bytes(0), bare_graph)
            for i in range(args.repeat):  # alternate, so drift hits both alike
                img = _image_bytes(i + 1)
                bare.append(_bare_job(urls[0], img, bare_graph))
                client.append(_client_job(urls[0], img, values, tmp))
                take.append(_take_job(urls[0], photo, tmp, args.frames))
            out["overhead"] = {
                "workflow": "connection-test", "frames": args.frames, "size": "832x480",
                "bare_s": round(median(bare), 4), "client_s": round(median(client), 4),
                "take_s": round(median(take), 4),
                "client_vs_bare": round(median(client) / median(bare), 3),
                "take_vs_bare": round(median(take) / median(bare), 3),
                "runs": args.repeat}
            if len(urls) >= 2:
                workflow = "connection-test" if args.server else "wan21-i2v-480p"
                one = [_farm_run(urls[:1], photo, tmp, args.jobs, workflow, args.steps)]
                two = [_farm_run(urls[:2], photo, tmp, args.jobs, workflow, args.steps)]
                one.append(_farm_run(urls[:1], photo, tmp, args.jobs, workflow, args.steps))
                two.append(_farm_run(urls[:2], photo, tmp, args.jobs, workflow, args.steps))
                t1, t2 = median(one), median(two)
                out["farm"] = {"workflow": workflow, "jobs": args.jobs, "one_server_s": round(t1, 3),
                               "two_servers_s": round(t2, 3),
                               "farm_scaling": round((t1 / t2) / 2, 3), "goal": 0.9,
                               "steps": args.steps if not args.server else None,
                               "step_delay_s": args.step_delay if not args.server else None}
    finally:
        for f in fakes:
            f.stop()
    return out

