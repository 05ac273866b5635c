"""What a ComfyUI server can run: "Test connection" in Settings ▸ Generators and
``continuity-studio comfyui check``.

For one server: its version, device and free VRAM; for each bundled (and imported) workflow,
whether it can run there, and if not, the model files it lacks (with their folder) and the nodes
it lacks. ``run_test`` also runs the model-free ``connection-test`` workflow end to end (upload,
queue, websocket, download, decode), which works on any ComfyUI, CPU included, in seconds.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError

if TYPE_CHECKING:
    from studio.engine.comfyui.client import ServerInfo
    from studio.engine.comfyui.workflow import Workflow

TEST_WORKFLOW = "connection-test"


@dataclass(frozen=True)
class WorkflowStatus:
    name: str
    label: str
    runnable: bool
    missing_models: list[tuple[str, str]] = field(default_factory=list)  # (folder, file)
    missing_nodes: list[str] = field(default_factory=list)
    needs_api_key: bool = False
    other: list[str] = field(default_factory=list)  # problems that are neither (a bad value)


@dataclass
class ServerReport:
    url: str
    ok: bool
    error: str | None = None
    version: str | None = None
    device: str | None = None
    vram_free: int | None = None
    test_s: float | None = None  # seconds the connection-test workflow took (None: not run)
    test_frames: int | None = None
    workflows: dict[str, WorkflowStatus] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "error": self.error, "version": self.version,
                "device": self.device, "vram_free": self.vram_free, "test_s": self.test_s,
                "test_frames": self.test_frames,
                "workflows": {n: {"label": w.label, "runnable": w.runnable,
                                  "missing_models": [list(m) for m in w.missing_models],
                                  "missing_nodes": w.missing_nodes,
                                  "needs_api_key": w.needs_api_key, "other": w.other}
                              for n, w in self.workflows.items()}}


def known_workflows() -> dict[str, "Workflow"]:
    """The bundled workflows, then the ones the user imported."""
    from studio.engine.comfyui.workflow import bundled_workflows, user_workflows

    out = dict(bundled_workflows())
    for name, w in user_workflows().items():
        out.setdefault(name, w)
    return out


def workflow_status(workflow: "Workflow", catalogue: Any, models: dict[str, list[str]]) -> WorkflowStatus:
    from studio.engine.comfyui.workflow import validate

    problems = validate(workflow, catalogue, models)
    missing_models = []
    for p in problems:
        if p.kind == "missing_model":
            folder = next((m.folder for m in workflow.manifest.models
                           if m.node == p.node and m.input == p.input), "?")
            name = workflow.graph.get(p.node or "", {}).get("inputs", {}).get(p.input or "", "?")
            missing_models.append((folder, str(name)))
    nodes = sorted({str(workflow.graph.get(p.node or "", {}).get("class_type", p.node))
                    for p in problems if p.kind == "unknown_node"})
    other = [p.message for p in problems if p.kind not in ("missing_model", "unknown_node")]
    return WorkflowStatus(workflow.name, workflow.manifest.label, not problems, missing_models,
                          nodes, workflow.manifest.needs_api_key, other)


def check_server(info: "ServerInfo", *, run_test: bool = False,
                 workflows: dict[str, "Workflow"] | None = None) -> ServerReport:
    """Ask ``info`` what it is and what it can run. Never raises for a server problem: an
    unreachable or broken server gives ``ok=False`` with the reason in ``error``."""
    from studio.engine.comfyui.catalogue import Catalogue
    from studio.engine.comfyui.client import ComfyClient

    report = ServerReport(url=info.url, ok=False)
    client = ComfyClient(info)
    try:
        stats = client.system_stats()
        report.version = (stats.get("system") or {}).get("comfyui_version")
        devices = stats.get("devices") or []
        if devices and isinstance(devices[0], dict):
            report.device = str(devices[0].get("name") or devices[0].get("type") or "")
            vf = devices[0].get("vram_free")
            report.vram_free = int(vf) if isinstance(vf, (int, float)) else None
        catalogue = Catalogue.from_object_info(client.object_info(), report.version)
        wanted = workflows if workflows is not None else known_workflows()
        folders = sorted({m.folder for w in wanted.values() for m in w.manifest.models})
        available = set(client.model_folders())
        models = {f: (client.models(f) if f in available else []) for f in folders}
        for name, w in wanted.items():
            report.workflows[name] = workflow_status(w, catalogue, models)
        if run_test:
            report.test_s, report.test_frames = run_connection_test(client)
        report.ok = True
    except StudioError as exc:
        report.error = str(exc)
    return report


def run_connection_test(client: Any, *, width: int = 256, height: int = 144,
                        frames: int = 9) -> tuple[float, int]:
    """Run the model-free workflow on ``client``'s server with a generated picture; returns
    (seconds, frames decoded from the result). Raises StudioError with the server's reason."""
    from PIL import Image

    from studio.engine.comfyui.backend import UPLOAD_FOLDER
    from studio.engine.comfyui.workflow import bundled_workflows
    from studio.media.video import probe

    workflow = bundled_workflows()[TEST_WORKFLOW]
    img = Image.linear_gradient("L").convert("RGB").resize((320, 240))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    t0 = time.perf_counter()
    name = client.upload_bytes(buf.getvalue(), "connection-test.png", subfolder=UPLOAD_FOLDER)
    graph = workflow.bind({"start_image": name, "width": width, "height": height,
                           "frames": frames, "fps": 16,
                           "filename_prefix": f"{UPLOAD_FOLDER}/connection-test"})
    _pid, outputs = client.run(graph, on_event=lambda _e: None, cancelled=lambda: False)
    from studio.engine.comfyui.backend import pick_outputs

    picked = pick_outputs(outputs)[0]
    with tempfile.TemporaryDirectory(prefix="cs-comfyui-") as tmp:
        path = client.download(picked, Path(tmp) / ("result" + Path(picked.filename).suffix))
        n = probe(path, what="the connection test's video").frames
    return round(time.perf_counter() - t0, 3), int(n)
