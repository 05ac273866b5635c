"""Jobs through the real worker process of a real runtime (see conftest.py): a tiny Wan 2.1 model
registered with the model manager, generated out of process; cancel; a SIGKILL mid-job; malformed
protocol lines; a broken runtime. The tests share one worker where they can (torch's import in a
fresh worker costs seconds) and run in file order: the destructive ones come last."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from studio.core.errors import StudioError
from studio.engine.base import Cancelled, GenerationRequest, Progress
from studio.engine.model_library import ModelRegistry
from studio.engine.remote import RemoteBackend
from studio.runtime import protocol
from studio.runtime.client import WorkerClient


@pytest.fixture(scope="module")
def start_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("rt-images") / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def backend(runtime_env) -> RemoteBackend:
    # device="cpu" only pins what this GPU-less machine would pick anyway.
    b = RemoteBackend(runtime_env.manager, ModelRegistry(runtime_env.registry_path), device="cpu")
    yield b
    b.shutdown()


def _req(runtime_env, start: Path, **kw) -> GenerationRequest:
    base = dict(start_image=start, prompt="a man turns his head", negative_prompt="blurry", width=32, height=32,
                num_frames=9, fps=16, seed=7, steps=2, guidance=5.0, model=runtime_env.model.name)
    base.update(kw)
    return GenerationRequest(**base)


def test_install_state_and_layout(runtime_env) -> None:
    m = runtime_env.manager
    state = json.loads(m.state_path.read_text())
    assert state["installed"] and state["verified"] and state["verify"]["ok"]
    assert state["packages"]["torch"] and state["packages"]["diffusers"] and state["device"] == "cpu"
    assert state["torch_build"]["tag"] == "cpu" and state["options"]["system_site_packages"]
    assert m.python.exists() and (m.venv / "pyvenv.cfg").is_file()
    log = Path(state["log"]).read_text()
    assert "torch build: cpu" in log and "installing torch" in log and "verified: 5 frames" in log
    # The worker imports a private copy of the app's pure-Python modules, never the app folder.
    apps = [p for p in (m.root / "app").iterdir() if not p.name.startswith(".")]
    assert len(apps) == 1 and (apps[0] / "studio" / "runtime" / "worker.py").is_file()
    assert not (apps[0] / "studio" / "ui").exists()
    assert m.problem() is None


def test_generate_out_of_process_matches_in_process(runtime_env, backend: RemoteBackend, start_image: Path) -> None:
    from studio.engine.diffusers_backend import DiffusersBackend

    seen: list[Progress] = []
    req = _req(runtime_env, start_image)
    backend.load(req.model, seen.append)
    frames = backend.generate(req, seen.append, lambda: False)
    assert frames.dtype == np.uint8 and frames.shape == (9, 32, 32, 3)
    assert [p.step for p in seen if p.stage == "generating"] == [1, 2]
    assert any(p.stage == "loading" for p in seen)
    assert backend.worker_pid is not None and backend.worker_pid != os.getpid()
    assert any(n.startswith("memory:") for n in backend.last_notes)
    # The same job in this process gives the same frames: the worker runs the real backend.
    local = DiffusersBackend(registry=ModelRegistry(runtime_env.registry_path), device="cpu")
    try:
        ref = local.generate(req, lambda p: None, lambda: False)
    finally:
        local.unload()
    assert int(np.abs(ref.astype(int) - frames.astype(int)).max()) <= 2
    # Frame files are handed over, then deleted.
    from studio.core.userdirs import cache_dir

    assert not list(cache_dir("runtime-frames").glob("*.npy"))
    # Capabilities and snapping are answered in the app, like the in-process backend does.
    caps = backend.capabilities(req.model)
    assert (caps.size_multiple, caps.frame_step) == (16, 4)
    snapped, notes = backend.snap(req.with_changes(num_frames=10))
    assert snapped.num_frames == 9 and notes


def test_cancel_within_a_step_keeps_the_worker(runtime_env, backend: RemoteBackend, start_image: Path) -> None:
    pid = backend.worker_pid
    steps: list[int] = []
    flag = threading.Event()

    def progress(p: Progress) -> None:
        if p.stage == "generating":
            steps.append(p.step)
            flag.set()

    with pytest.raises(Cancelled):
        backend.generate(_req(runtime_env, start_image, steps=400), progress, flag.is_set)
    # Stopped within a few steps of the request (this loaded 2-core machine adds scheduling delay
    # between the app's cancel and the worker's next step callback), not after 400.
    assert 1 <= max(steps) <= 20
    assert backend.worker_pid == pid  # the same warm worker takes the next job
    frames = backend.generate(_req(runtime_env, start_image, seed=8), lambda p: None, lambda: False)
    assert frames.shape == (9, 32, 32, 3)


def test_user_errors_come_back_readable(runtime_env, backend: RemoteBackend, start_image: Path,
                                        tmp_path: Path) -> None:
    with pytest.raises(StudioError, match=r"gone\.png: no such file") as info:
        backend.generate(_req(runtime_env, tmp_path / "gone.png"), lambda p: None, lambda: False)
    assert "GPU runtime failed" not in str(info.value)  # a user error, shown as it is
    with pytest.raises(StudioError, match="neither a known model"):
        backend.load("no-such-model")


def test_sigkill_mid_job_fails_cleanly_then_next_job_succeeds(runtime_env, backend: RemoteBackend,
                                                              start_image: Path) -> None:
    pid = backend.worker_pid
    assert pid is not None
    killed = threading.Event()

    def progress(p: Progress) -> None:
        if p.stage == "generating" and not killed.is_set():
            os.kill(pid, signal.SIGKILL)  # a real kill, as the OOM killer or a driver crash would
            killed.set()

    with pytest.raises(StudioError) as info:
        backend.generate(_req(runtime_env, start_image, steps=400), progress, lambda: False)
    msg = str(info.value)
    assert "the GPU runtime stopped unexpectedly (exit code -9, SIGKILL" in msg
    assert "the job can be retried" in msg
    frames = backend.generate(_req(runtime_env, start_image), lambda p: None, lambda: False)
    assert frames.shape == (9, 32, 32, 3)
    assert backend.worker_pid not in (None, pid)


def test_malformed_lines_get_error_replies_and_the_worker_lives_on(runtime_env) -> None:
    client = WorkerClient(runtime_env.manager, device="cpu")
    try:
        hello = client.start()
        assert hello["protocol"] == protocol.PROTOCOL_VERSION and hello["torch"] and hello["diffusers"]
        for raw, why in [(b"this is not json\n", "not JSON"), (b'{"op": 42, "id": "x"}\n', "missing string field"),
                         (b"[1]\n", "not a JSON object"), (b"\xff\xfe garbage\n", "not UTF-8")]:
            client.send_raw(raw)
            reply = client.next_message(timeout=30)
            assert reply["type"] == "error" and reply["kind"] == protocol.KIND_PROTOCOL and reply["id"] is None
            assert why in reply["message"]
        client.send({"op": "teleport", "id": "t1"})
        reply = client.next_message(timeout=30)
        assert (reply["id"], reply["kind"]) == ("t1", protocol.KIND_PROTOCOL) and "unknown op" in reply["message"]
        with pytest.raises(StudioError, match="invalid generation request"):
            client.call({"op": "generate", "request": {"prompt": "no image"}, "out_dir": "/"})
        pong = client.call({"op": "ping"})
        assert pong["type"] == "result" and pong["pong"] is True and pong["busy"] is False
        pid = client.pid
    finally:
        client.close()
    assert client.proc.returncode == 0  # shutdown is a clean exit
    assert pid is not None


def test_torch_that_cannot_be_imported_gives_the_repair_message(runtime_env) -> None:
    m = runtime_env.manager
    site = next((m.venv / "lib").glob("python3*/site-packages"))
    shadow = site / "torch"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    try:
        client = WorkerClient(m, device="cpu")
        with pytest.raises(StudioError) as info:
            client.start()
        msg = str(info.value)
        assert "torch cannot be imported" in msg and "libcudart.so.12" in msg and "runtime repair" in msg
        status = m.status(deep=True)
        assert status["installed"] and "torch cannot be imported in the GPU runtime" in status["problem"]
        assert "repair" in status["problem"]
    finally:
        import shutil

        shutil.rmtree(shadow)
    assert m.status(deep=True)["problem"] is None


def test_missing_python_gives_the_repair_message_and_repair_recreates_it(runtime_env, backend: RemoteBackend,
                                                                         start_image: Path) -> None:
    m = runtime_env.manager
    backend.shutdown()
    m.python.unlink()
    assert "Python is missing" in m.problem()
    with pytest.raises(StudioError, match=r"Python is missing .*runtime repair"):
        backend.generate(_req(runtime_env, start_image), lambda p: None, lambda: False)
    lines: list[str] = []
    m.repair(log=lines.append, verify=False)
    assert any("recreating the virtual environment" in line for line in lines)
    assert m.problem() is None and m.python.exists()
    frames = backend.generate(_req(runtime_env, start_image), lambda p: None, lambda: False)
    assert frames.shape == (9, 32, 32, 3)
