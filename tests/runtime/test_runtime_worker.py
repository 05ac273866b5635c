"""Jobs through the real worker process of a real runtime (see conftest.py): a tiny Wan 2.1 model
registered with the model manager, generated out of process; the take encoded by the worker itself
into the project; cancel; a SIGKILL mid-job; malformed protocol lines; a broken runtime. The tests share one worker where they can (torch's import in a
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
from studio.runtime import protocol
from studio.runtime.backend import RemoteBackend
from studio.runtime.client import WorkerClient, WorkerError, WorkerEvent, WorkerMessage


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
    # Only what the worker needs (manager.SHIPPED): the layers above the runtime are not there, so
    # the jobs below would fail if the worker's code reached into them.
    shipped = sorted(p.name for p in (apps[0] / "studio").iterdir() if p.name != "__pycache__")
    assert shipped == ["__init__.py", "core", "engine", "media", "runtime"]
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


def test_the_worker_encodes_the_take_itself_and_no_frames_cross(runtime_env, backend: RemoteBackend,
                                                                 start_image: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.core.userdirs import cache_dir
    from studio.engine.takes import take_paths
    from studio.media import video
    from studio.media.video import iter_frames, probe

    project = tmp_path / "project"
    project.mkdir()
    rel, _ = take_paths("shot1", "take1")
    target = project / rel
    req = _req(runtime_env, start_image)
    reference = backend.generate(req, lambda p: None, lambda: False)  # raw frames, for comparison only
    npy_before = set(cache_dir("runtime-frames").glob("*.npy"))

    client = backend.client
    sent: list[dict] = []
    heard: list[WorkerMessage] = []
    real_send, real_listen = client.send, client.listen

    def send(msg: dict) -> None:
        sent.append(msg)
        real_send(msg)

    def listen(*a, **kw):  # type: ignore[no-untyped-def]
        for m in real_listen(*a, **kw):
            heard.append(m)
            yield m

    class NoEncodingHere:  # the app process must not encode: the worker does, where the frames are
        def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
            raise AssertionError("the app encoded the take itself")

    monkeypatch.setattr(client, "send", send)
    monkeypatch.setattr(client, "listen", listen)
    monkeypatch.setattr(video, "VideoWriter", NoEncodingHere)
    stages: list[str] = []
    made = backend.generate_take(req, target, 16.0, lambda p: stages.append(p.stage), lambda: False, root=project)
    monkeypatch.undo()

    assert [m["op"] for m in sent] == ["take"]
    assert sent[0]["project"] == str(project) and sent[0]["video"] == rel and "out_dir" not in sent[0]
    (result,) = [m for m in heard if m.event is WorkerEvent.result]
    assert result.data["video"] == rel and "frames" in result.data and isinstance(result.data["frames"], int)
    assert not any(str(v).endswith(".npy") for m in heard for v in m.data.values())
    assert set(cache_dir("runtime-frames").glob("*.npy")) == npy_before
    assert "generating" in stages and "encoding" in stages  # the worker's encoding progress is relayed
    # The file the worker wrote is the take: H.264, the right size, and it decodes to the frames.
    assert made.path == target and made.bytes == target.stat().st_size
    assert (made.width, made.height, made.frames, made.fps) == (32, 32, 9, 16.0)
    assert made.generate_s and made.encode_s is not None
    info = probe(target)
    assert (info.width, info.height, info.frames, info.codec) == (32, 32, 9, "h264")
    decoded = np.stack(list(iter_frames(target)))
    assert decoded.shape == reference.shape == (9, 32, 32, 3)
    assert float(np.abs(decoded.astype(float) - reference.astype(float)).mean()) < 6.0
    assert [p.name for p in target.parent.iterdir()] == ["take1.mp4"]  # no temp file left


def test_the_worker_writes_only_inside_the_project(runtime_env, backend: RemoteBackend, start_image: Path,
                                                   tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (project / "takes").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    request = protocol.request_to_json(_req(runtime_env, start_image))
    for video in ("../escape.mp4", str(tmp_path / "abs.mp4"), "takes/s/t.mp4", "notes.txt", ""):
        with pytest.raises(WorkerError) as info:
            backend.client.call({"op": "take", "request": request, "project": str(project), "video": video})
        assert info.value.kind == protocol.KIND_PROTOCOL, video
    with pytest.raises(WorkerError, match="not an absolute path of a folder"):
        backend.client.call({"op": "take", "request": request, "project": "relative", "video": "a.mp4"})
    assert not list((tmp_path / "elsewhere").iterdir()) and not (tmp_path / "escape.mp4").exists()
    # The app checks the same before asking.
    with pytest.raises(StudioError, match="outside the project folder"):
        backend.generate_take(_req(runtime_env, start_image), tmp_path / "x.mp4", 16.0, lambda p: None,
                              lambda: False, root=project)


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
    backend.client.start()  # the worker to kill (not left running by an earlier test)
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


def test_sigkill_mid_take_fails_that_job_only_and_leaves_no_file(runtime_env, backend: RemoteBackend,
                                                                  start_image: Path, tmp_path: Path) -> None:
    backend.client.start()  # the worker to kill (not left running by an earlier test)
    pid = backend.worker_pid
    assert pid is not None
    target = tmp_path / "project" / "takes" / "s" / "t.mp4"
    target.parent.mkdir(parents=True)
    from studio.media.video import TEMP_SUFFIX

    (target.parent / f".t.stale123{TEMP_SUFFIX}").write_bytes(b"half")  # what a worker killed mid-encode leaves

    def progress(p: Progress) -> None:
        if p.stage == "generating":
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(StudioError, match=r"the GPU runtime stopped unexpectedly \(exit code -9"):
        backend.generate_take(_req(runtime_env, start_image, steps=400), target, 16.0, progress, lambda: False,
                              root=tmp_path / "project")
    assert not list(target.parent.iterdir())
    made = backend.generate_take(_req(runtime_env, start_image), target, 16.0, lambda p: None, lambda: False,
                                 root=tmp_path / "project")
    assert made.frames == 9 and target.is_file() and backend.worker_pid not in (None, pid)


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
