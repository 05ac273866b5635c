"""``continuity-studio render --backend comfyui`` and ``continuity-studio comfyui …`` as a
terminal user runs them, against the fake ComfyUI (a mock of the server only: ComfyUI cannot be
installed from the package registries)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.persistence import load_project, project_file
from studio.media.video import probe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_fixtures import make_project  # noqa: E402


def cli(*args: str, stdin: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True,
                          timeout=timeout, input=stdin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_render_through_a_farm_of_two_servers(tmp_path, photo_png, make_comfy_server) -> None:
    a, b = make_comfy_server(), make_comfy_server()
    doc = make_project(tmp_path / "p", photo_png, shots=2, duration_s=0.5)
    r = cli("render", str(doc.folder), "--server", a.url, "--server", b.url,
            "--workflow", "connection-test", "--takes", "2")
    assert r.returncode == 0, r.stderr
    assert "4 done, 0 failed" in r.stderr and "runs on http://127.0.0.1:" in r.stderr
    project = load_project(project_file(doc.folder))
    used = set()
    for shot in project.shots:
        assert len(shot.takes) == 2
        for take in shot.takes:
            assert take.backend == "comfyui" and take.model == "connection-test"
            assert probe(doc.folder / take.video).frames == shot.frame_count
            used.add(json.loads((doc.folder / take.sidecar).read_text())["generator"]["server"])
    assert used == {a.url, b.url}  # the farm used both


def test_render_with_an_unreachable_server_fails_in_words(tmp_path, photo_png) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    url = f"http://127.0.0.1:{free_port()}"
    r = cli("render", str(doc.folder), "--server", url, "--workflow", "connection-test")
    assert r.returncode == 1
    assert f"cannot reach ComfyUI at {url}" in r.stderr and "Traceback" not in r.stderr


def test_render_refuses_hosted_models_unless_allowed(tmp_path, photo_png, comfy_server) -> None:
    doc = make_project(tmp_path / "p", photo_png, shots=1)
    r = cli("render", str(doc.folder), "--server", comfy_server.url, "--workflow", "veo3")
    assert r.returncode != 0
    assert "billed to your Comfy account" in r.stderr and "--allow-paid" in r.stderr
    assert not comfy_server.requests_to("POST", "/prompt")


def test_check_lists_every_workflow_with_only_missing_models(comfy_server) -> None:
    r = cli("comfyui", "check", "--server", comfy_server.url, "--json")
    assert r.returncode == 0, r.stderr
    [report] = json.loads(r.stdout)
    assert report["ok"] and report["version"] == "0.3.64" and report["test_frames"] == 9
    from studio.engine.comfyui.workflow import bundled_workflows

    assert set(report["workflows"]) >= set(bundled_workflows())
    for name, st in report["workflows"].items():
        assert not st["missing_nodes"] and not st["other"], name
        assert st["runnable"] == (not st["missing_models"]), name
        for folder, file in st["missing_models"]:
            assert folder in {"diffusion_models", "text_encoders", "vae", "clip_vision",
                              "checkpoints"} and file.endswith(".safetensors")
    assert report["workflows"]["connection-test"]["runnable"]
    assert not report["workflows"]["wan21-i2v-480p"]["runnable"]
    text = cli("comfyui", "check", "--server", comfy_server.url, "--no-test")
    assert "missing model files: models/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors" in text.stdout


def test_check_exits_1_when_a_server_is_unreachable(comfy_server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    r = cli("comfyui", "check", "--server", comfy_server.url, "--server", dead, "--no-test")
    assert r.returncode == 1
    assert f"{dead}: UNREACHABLE" in r.stdout and f"{comfy_server.url}: ComfyUI 0.3.64" in r.stdout


def test_servers_and_import_commands(tmp_path, comfy_server) -> None:
    r = cli("comfyui", "servers", "add", comfy_server.url + "/", "--label", "desk")
    assert r.returncode == 0, r.stderr
    assert comfy_server.url in cli("comfyui", "servers", "list").stdout
    # check without --server uses the settings' servers
    assert cli("comfyui", "check", "--no-test").returncode == 0
    bad = cli("comfyui", "servers", "add", "file:///etc/passwd")
    assert bad.returncode != 0 and "http" in bad.stderr
    from studio.engine.comfyui.workflow import bundled_workflows

    graph = json.loads(json.dumps(bundled_workflows()["connection-test"].graph))
    graph["1"]["_meta"] = {"title": "cs:start_image"}
    graph["3"]["_meta"] = {"title": "cs:frames"}
    path = tmp_path / "my flow.json"
    path.write_text(json.dumps(graph))
    r = cli("comfyui", "import", str(path), "--name", "my-flow", "--server", comfy_server.url)
    assert r.returncode == 0, r.stderr
    assert "my-flow" in cli("comfyui", "workflows").stdout
    assert cli("comfyui", "servers", "remove", comfy_server.url).returncode == 0
    assert comfy_server.url not in cli("comfyui", "servers", "list").stdout


@pytest.mark.parametrize("payload", ["[]", '{"1": {"class_type": 5}}', "{" * 5000])
def test_import_refuses_hostile_workflow_files(tmp_path, payload) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(payload)
    r = cli("comfyui", "import", str(path))
    assert r.returncode != 0 and "hostile.json" in r.stderr and "Traceback" not in r.stderr
