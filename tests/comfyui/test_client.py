"""The ComfyUI client against the fake ComfyUI (``fake_server.py``): real HTTP, a real websocket,
real uploads, real MP4s decoded with PyAV; cancel, a server killed mid-run, hostile answers, the
token; and the fake itself checked against what a real ComfyUI 0.3.64 answered."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings, strategies as st
from PIL import Image

import comfy_records as records
from fake_server import FakeComfyUI

from studio.core.errors import Requeue, StudioError
from studio.core.tasks import Cancelled
from studio.engine.comfyui import client as client_mod
from studio.engine.comfyui.catalogue import Catalogue
from studio.engine.comfyui.client import (Cached, ComfyClient, ComfyError, ExecutionFailed, Finished,
                                          NodeStarted, OutputFile, PreviewImage, PromptRejected,
                                          ServerInfo, StepProgress, Unreachable, safe_output_name)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "comfyui"
WAN_MODELS = {
    "diffusion_models": ["wan2.1_i2v_480p_14B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
}


def client_for(server: FakeComfyUI, **kw: Any) -> ComfyClient:
    token = kw.pop("token", None)
    return ComfyClient(ServerInfo(server.url, token=token), **kw)


@pytest.fixture
def start_png(tmp_path: Path) -> Path:
    """A real photograph-like start image (a gradient with a bright disc)."""
    yy, xx = np.mgrid[0:120, 0:160]
    img = np.stack([xx * 255 // 159, yy * 255 // 119, np.full_like(xx, 90)], -1).astype(np.uint8)
    img[((yy - 60) ** 2 + (xx - 80) ** 2) < 900] = 240
    path = tmp_path / "start.png"
    Image.fromarray(img).save(path)
    return path


def connection_graph(image: str, *, width: int = 96, height: int = 64, frames: int = 17,
                     fps: float = 16.0, prefix: str = "continuity-studio/take") -> dict[str, Any]:
    """LoadImage → ImageScale → RepeatImageBatch → CreateVideo → SaveVideo."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                      "width": width, "height": height, "crop": "center"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": frames}},
        "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": fps}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": prefix,
                                                     "format": "mp4", "codec": "h264"}},
    }


def wan_graph(image: str, *, steps: int = 4, length: int = 9) -> dict[str, Any]:
    graph = copy.deepcopy(records.WAN21_GRAPH)
    graph["5"]["inputs"]["image"] = image
    graph["9"]["inputs"].update(width=64, height=48, length=length)
    graph["11"]["inputs"]["steps"] = steps
    return graph


def raw_post(server: FakeComfyUI, path: str, payload: Any) -> tuple[int, Any]:
    req = urllib.request.Request(server.url + path, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def decode(path: Path) -> tuple[int, int, int, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.width, stream.height, stream.codec_context.name


# -- facts of the server ------------------------------------------------------------------------

def test_system_stats_version_models_and_catalogue(comfy_server: FakeComfyUI) -> None:
    comfy_server.set_models("loras", ["b.safetensors", "a.safetensors"])
    client = client_for(comfy_server)
    stats = client.system_stats()
    assert stats["devices"][0]["type"] == "cpu"
    assert client.version() == "0.3.64"
    assert client.model_folders() == records.MODEL_FOLDERS
    assert client.models("loras") == ["a.safetensors", "b.safetensors"]
    assert client.models("vae") == []
    assert client.models("no_such_folder") == []  # ComfyUI answers 404: it has no such files
    with pytest.raises(StudioError):
        client.models("../etc")
    catalogue = Catalogue.from_object_info(client.object_info())
    assert len(catalogue) == 472 and "WanImageToVideo" in catalogue
    assert catalogue.get("LoraLoader").inputs["lora_name"].choices == ("a.safetensors", "b.safetensors")


def test_server_info_checks_the_address_and_hides_the_token() -> None:
    info = ServerInfo("http://127.0.0.1:8188/", label="box", token="tok-123456")
    assert info.url == "http://127.0.0.1:8188" and info.name == "box"
    assert "tok-123456" not in repr(info) and "tok-123456" not in repr(ComfyClient(info))
    for bad in ("ftp://host", "http://user:pw@host", "", "http://"):
        with pytest.raises(StudioError):
            ServerInfo(bad)
    with pytest.raises(StudioError) as exc:
        ServerInfo("http://h:1", token="abc\r\nX-Evil: 1")
    assert "abc" not in str(exc.value)


# -- uploads ------------------------------------------------------------------------------------

def test_upload_is_content_addressed_and_sends_nothing_the_second_time(
        comfy_server: FakeComfyUI, start_png: Path, tmp_path: Path) -> None:
    client = client_for(comfy_server)
    data = start_png.read_bytes()
    name = client.upload_image(start_png)
    assert name == f"continuity-studio/{hashlib.sha256(data).hexdigest()[:16]}.png"
    assert (comfy_server.input_dir / name).read_bytes() == data
    uploads = comfy_server.requests_to("POST", "/upload/image")
    assert len(uploads) == 1
    assert uploads[0].body["image"] == {"filename": name.split("/")[1], "size": len(data)}
    assert uploads[0].body["subfolder"] == "continuity-studio"

    # a re-roll, from this client or another one: asked, not sent
    assert client.upload_image(start_png) == name
    assert client_for(comfy_server).upload_image(start_png) == name
    assert len(comfy_server.requests_to("POST", "/upload/image")) == 1
    assert all(r.query["type"] == "input" for r in comfy_server.requests_to("HEAD", "/view"))

    # another image is sent; a file of the same name but another size is replaced
    other = tmp_path / "other.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(other)
    other_name = client.upload_image(other)
    assert other_name.endswith(".jpg") and other_name != name
    (comfy_server.input_dir / name).write_bytes(b"truncated")
    assert client.upload_image(start_png) == name
    assert (comfy_server.input_dir / name).read_bytes() == data
    assert len(comfy_server.requests_to("POST", "/upload/image")) == 3


def test_upload_of_a_missing_file_names_it(comfy_server: FakeComfyUI, tmp_path: Path) -> None:
    with pytest.raises(StudioError) as exc:
        client_for(comfy_server).upload_image(tmp_path / "gone.png")
    assert "gone.png" in str(exc.value)
    assert not comfy_server.requests_to("POST", "/upload/image")


def test_upload_of_a_fifo_is_refused_without_blocking(comfy_server: FakeComfyUI, tmp_path: Path) -> None:
    # Issue 15: a reference asset that is a named pipe used to block the render for ever.
    import os
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(StudioError, match="named pipe"):
        client_for(comfy_server).upload_image(tmp_path / "pipe.png")
    assert not comfy_server.requests_to("POST", "/upload/image")


# -- a full run ---------------------------------------------------------------------------------

def test_connection_graph_makes_a_real_mp4(comfy_server: FakeComfyUI, start_png: Path, tmp_path: Path) -> None:
    client = client_for(comfy_server)
    image = client.upload_image(start_png)
    events: list[Any] = []
    prompt_id, outputs = client.run(connection_graph(image, width=96, height=64, frames=17), on_event=events.append)

    assert outputs == [OutputFile(node="5", filename="take_00001_.mp4", subfolder="continuity-studio",
                                  type="output", kind="video")]
    dest = client.download(outputs[0], tmp_path / "takes" / "take.mp4")
    assert decode(dest) == (17, 96, 64, "h264")
    assert not [p for p in dest.parent.iterdir() if p.name != "take.mp4"]  # no temp file left

    assert [e.node for e in events if isinstance(e, NodeStarted)] == ["1", "2", "3", "4", "5"]
    assert isinstance(events[0], Cached) and isinstance(events[-1], Finished)
    # the socket was open before the prompt was queued, under our client id
    paths = [(r.method, r.path) for r in comfy_server.requests]
    assert paths.index(("GET", "/ws")) < paths.index(("POST", "/prompt"))
    assert comfy_server.requests_to("GET", "/ws")[0].query["clientId"] == client.client_id
    assert comfy_server.requests_to("POST", "/prompt")[0].body["client_id"] == client.client_id
    assert comfy_server.history[prompt_id]["status"]["status_str"] == "success"

    # the same graph again: ComfyUI serves nodes 1-4 from its cache, the take is a new file
    events.clear()
    _, again = client.run(connection_graph(image, width=96, height=64, frames=17), on_event=events.append)
    assert events[0] == Cached(("1", "2", "3", "4"))
    assert again[0].filename == "take_00002_.mp4"


def test_sampler_graph_reports_steps_and_previews(make_comfy_server: Any, start_png: Path, tmp_path: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS)
    client = client_for(server)
    events: list[Any] = []
    _, outputs = client.run(wan_graph(client.upload_image(start_png), steps=6, length=13), on_event=events.append)

    steps = [e for e in events if isinstance(e, StepProgress)]
    assert [(s.value, s.max, s.node) for s in steps] == [(i, 6, "11") for i in range(1, 7)]
    previews = [e for e in events if isinstance(e, PreviewImage)]
    assert len(previews) == 6
    with Image.open(io.BytesIO(previews[0].data)) as img:
        assert img.format == "JPEG" and previews[0].format == "jpeg"
    frames, width, height, _ = decode(client.download(outputs[0], tmp_path / "wan.mp4"))
    assert (frames, width, height) == (13, 64, 48)


def test_execution_error_names_the_node(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(fail_node="3")
    client = client_for(server)
    with pytest.raises(ExecutionFailed) as exc:
        client.run(connection_graph(client.upload_image(start_png)))
    err = exc.value
    assert (err.node_id, err.node_type) == ("3", "RepeatImageBatch")
    assert server.url in str(err) and "fake failure in node 3" in str(err)


def test_an_interrupt_from_elsewhere_is_an_error_not_a_cancel(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, step_delay_s=0.05)
    client = client_for(server)
    graph = wan_graph(client.upload_image(start_png), steps=100)

    def someone_presses_cancel_in_comfyui(event: Any) -> None:
        if isinstance(event, StepProgress) and event.value == 2:
            raw_post(server, "/interrupt", {})

    with pytest.raises(ComfyError) as exc:
        client.run(graph, on_event=someone_presses_cancel_in_comfyui)
    assert not isinstance(exc.value, Cancelled) and "interrupted" in str(exc.value)


def test_two_runs_at_once_on_one_client(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(node_delay_s=0.05)
    client = client_for(server)
    image = client.upload_image(start_png)
    results: list[Any] = [None, None]

    def go(i: int) -> None:
        results[i] = client.run(connection_graph(image, frames=3 + i, prefix=f"cs/run{i}"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r[1][0].filename for r in results] == ["run0_00001_.mp4", "run1_00001_.mp4"]
    assert len({r.query["clientId"] for r in server.requests_to("GET", "/ws")}) == 2


def test_a_lost_end_message_is_found_through_the_queue(
        make_comfy_server: Any, start_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another socket on our client id takes our messages (ComfyUI keeps one per id): the client
    notices the silence, asks the queue and fetches the result."""
    from websockets.sync.client import connect

    monkeypatch.setattr(client_mod, "IDLE_CHECK_S", 0.3)
    server = make_comfy_server(node_delay_s=0.2)
    client = client_for(server)
    with contextlib.ExitStack() as stack:
        def steal(event: Any) -> None:
            if isinstance(event, NodeStarted) and event.node == "1":
                # unbounded: the thief never reads, and must still close at once
                stack.enter_context(connect(f"ws://127.0.0.1:{server.port}/ws?clientId={client.client_id}",
                                            max_queue=None))

        _, outputs = client.run(connection_graph(client.upload_image(start_png)), on_event=steal)
    assert outputs[0].kind == "video" and server.requests_to("GET", "/queue")


# -- refusals, in words -------------------------------------------------------------------------

def test_missing_model_names_the_file_the_folder_and_what_the_server_has(
        make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models={"diffusion_models": ["wan2.2_ti2v_5B_fp16.safetensors"],
                                       "text_encoders": WAN_MODELS["text_encoders"],
                                       "clip_vision": WAN_MODELS["clip_vision"], "vae": WAN_MODELS["vae"]})
    client = client_for(server)
    with pytest.raises(PromptRejected) as exc:
        client.run(wan_graph(client.upload_image(start_png)))
    err = exc.value
    assert str(err) == (f"ComfyUI at {server.url} has no `wan2.1_i2v_480p_14B_fp16.safetensors` in "
                        f"`models/diffusion_models` (it has: `wan2.2_ti2v_5B_fp16.safetensors`)")
    assert err.missing_models == [("diffusion_models", "wan2.1_i2v_480p_14B_fp16.safetensors")]
    assert err.missing_nodes == [] and server.queue_state() == ([], [])


def test_every_missing_model_of_the_recorded_wan_graph(comfy_server: FakeComfyUI, start_png: Path) -> None:
    client = client_for(comfy_server)
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(wan_graph(client.upload_image(start_png)))
    err = exc.value
    assert sorted(err.missing_models) == sorted((folder, names[0]) for folder, names in WAN_MODELS.items())
    assert len(err.problems) == 4 and str(err).startswith(f"ComfyUI at {comfy_server.url} cannot run")
    assert "`models/vae` (it has none)" in str(err)  # the files, not VAELoader's built-in entries


def test_unknown_node_names_the_class_and_the_pack(comfy_server: FakeComfyUI, start_png: Path) -> None:
    client = client_for(comfy_server)
    graph = connection_graph(client.upload_image(start_png))
    graph["9"] = {"class_type": "NoSuchNode", "inputs": {}}
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(graph)
    assert exc.value.missing_nodes == ["NoSuchNode"]
    assert "needs the custom node pack that provides `NoSuchNode`" in str(exc.value)
    assert comfy_server.url in str(exc.value)
    graph["9"] = {"class_type": "VHS_VideoCombine", "inputs": {}}
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(graph)
    assert "ComfyUI-VideoHelperSuite" in str(exc.value)


def test_other_refusals_in_words(comfy_server: FakeComfyUI, start_png: Path) -> None:
    client = client_for(comfy_server)
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(connection_graph("nope.png"))
    assert str(exc.value).endswith("node 1 (LoadImage) refused `image`: Invalid image file: nope.png")
    graph = connection_graph(client.upload_image(start_png))
    del graph["5"]
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(graph)
    assert "no output node" in str(exc.value) and exc.value.error_type == "prompt_no_outputs"
    graph = connection_graph(client.upload_image(start_png), frames=0)
    del graph["2"]["inputs"]["crop"]
    with pytest.raises(PromptRejected) as exc:
        client.queue_prompt(graph)
    assert "node 2 (ImageScale) is missing its required input `crop`" in exc.value.problems
    assert any(p.startswith("node 3 (RepeatImageBatch): `amount`") for p in exc.value.problems)


# -- cancel -------------------------------------------------------------------------------------

def run_in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_cancel_of_a_running_prompt_interrupts_it_within_a_second(
        make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, step_delay_s=0.05)
    client = client_for(server)
    graph = wan_graph(client.upload_image(start_png), steps=400)
    stop = threading.Event()
    started = threading.Event()
    thread, outcome = run_in_thread(lambda: client.run(
        graph, cancelled=stop.is_set,
        on_event=lambda e: started.set() if isinstance(e, StepProgress) else None))
    assert started.wait(10)
    t0 = time.monotonic()
    stop.set()
    thread.join(5)
    assert time.monotonic() - t0 < 1.0
    assert isinstance(outcome[0], Cancelled)
    (prompt_id,) = {r.body["prompt_id"] for r in server.requests_to("POST", "/interrupt")}
    assert prompt_id in server.history or server.wait_idle(1.0)
    assert server.wait_idle(1.0) and server.queue_state() == ([], [])
    assert server.history[prompt_id]["status"]["messages"][-1][0] == "execution_interrupted"
    assert not server.requests_to("POST", "/queue")


def test_cancel_of_a_pending_prompt_deletes_it_within_a_second(
        make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, step_delay_s=0.05)
    client = client_for(server)
    image = client.upload_image(start_png)
    # another client's long job holds the server
    status, answer = raw_post(server, "/prompt", {"prompt": wan_graph(image, steps=400), "client_id": "other"})
    assert status == 200 and server.wait_running(answer["prompt_id"])
    stop = threading.Event()
    thread, outcome = run_in_thread(lambda: client.run(connection_graph(image), cancelled=stop.is_set))
    deadline = time.monotonic() + 10
    while len(server.queue_state()[1]) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    (ours,) = server.queue_state()[1]
    t0 = time.monotonic()
    stop.set()
    thread.join(5)
    assert time.monotonic() - t0 < 1.0 and isinstance(outcome[0], Cancelled)
    assert [r.body for r in server.requests_to("POST", "/queue")] == [{"delete": [ours]}]
    assert not server.requests_to("POST", "/interrupt")
    assert server.queue_state() == ([answer["prompt_id"]], [])  # ours gone, theirs untouched
    raw_post(server, "/interrupt", {"prompt_id": answer["prompt_id"]})
    assert server.wait_idle(2.0)


def test_a_failure_on_our_side_leaves_the_server_clean(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, step_delay_s=0.05)
    client = client_for(server)

    def broken_listener(event: Any) -> None:
        if isinstance(event, StepProgress):
            raise RuntimeError("the UI went away")

    with pytest.raises(RuntimeError):
        client.run(wan_graph(client.upload_image(start_png), steps=400), on_event=broken_listener)
    (interrupt,) = server.requests_to("POST", "/interrupt")
    assert server.wait_idle(2.0) and interrupt.body["prompt_id"] in server.history


def test_cancel_before_anything_was_sent(comfy_server: FakeComfyUI) -> None:
    with pytest.raises(Cancelled):
        client_for(comfy_server).run(connection_graph("x.png"), cancelled=lambda: True)
    assert not comfy_server.requests


# -- a server that goes away --------------------------------------------------------------------

def test_server_killed_mid_run_is_unreachable(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, die_after_steps=3)
    client = client_for(server, timeout_s=2.0)
    graph = wan_graph(client.upload_image(start_png), steps=50)
    events: list[Any] = []
    t0 = time.monotonic()
    with pytest.raises(Unreachable) as exc:
        client.run(graph, on_event=events.append)
    assert time.monotonic() - t0 < 5.0
    assert isinstance(exc.value, Requeue) and server.url in str(exc.value)
    # a killed process loses what it had not sent yet: some of the steps, in order
    steps = [e.value for e in events if isinstance(e, StepProgress)]
    assert steps and steps == list(range(1, len(steps) + 1)) and len(steps) <= 3
    with pytest.raises(Unreachable) as exc:
        client.system_stats()
    assert f"cannot reach ComfyUI at {server.url}" in str(exc.value)


def test_nothing_listening_is_unreachable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = ComfyClient(ServerInfo(f"http://127.0.0.1:{port}"), timeout_s=2.0)
    for call in (client.system_stats, lambda: client.run({"1": {}})):
        with pytest.raises(Unreachable) as exc:
            call()
        assert f"cannot reach ComfyUI at http://127.0.0.1:{port}" in str(exc.value)


def test_a_server_that_never_answers_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        client = ComfyClient(ServerInfo(f"http://127.0.0.1:{listener.getsockname()[1]}"), timeout_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(Unreachable) as exc:
            client.version()
        assert time.monotonic() - t0 < 3 and "did not answer within 0.3 s" in str(exc.value)
    finally:
        listener.close()


# -- hostile answers ----------------------------------------------------------------------------

def history_answer(server: FakeComfyUI, change: Any) -> Any:
    """An override of /history/<id> that alters the real answer with ``change(entry)``."""
    def answer(request: web.Request) -> web.Response:
        pid = request.match_info.get("prompt_id") or request.path.rsplit("/", 1)[-1]
        entry = copy.deepcopy(server.history.get(pid))
        if entry is None:
            return web.json_response({})
        change(entry)
        return web.json_response({pid: entry})
    return answer


@pytest.mark.parametrize("change, words", [
    (lambda e: e["outputs"]["5"]["images"][0].update(filename="../../evil.mp4"), "'..'"),
    (lambda e: e["outputs"]["5"]["images"][0].update(subfolder="/etc"), "absolute"),
    (lambda e: e["outputs"]["5"]["images"][0].update(subfolder="a\\..\\b"), "backslash"),
    (lambda e: e["outputs"]["5"]["images"][0].update(filename="x\x00.mp4"), "control"),
    (lambda e: e["outputs"]["5"]["images"][0].update(filename="sub/x.mp4"), "plain name"),
    (lambda e: e["outputs"]["5"]["images"][0].update(type="/root"), "unknown file type"),
    (lambda e: e.pop("outputs"), "no 'outputs'"),
    (lambda e: e["outputs"].update({"5": ["not", "an", "object"]}), "not an object"),
    (lambda e: e["outputs"].clear(), "wrote no files"),
])
def test_hostile_history_is_refused(comfy_server: FakeComfyUI, start_png: Path, change: Any, words: str) -> None:
    comfy_server.override("GET", "/history/", history_answer(comfy_server, change))
    client = client_for(comfy_server)
    with pytest.raises(ComfyError) as exc:
        client.run(connection_graph(client.upload_image(start_png)))
    assert words in str(exc.value) and comfy_server.url in str(exc.value)
    assert not isinstance(exc.value, Unreachable)


def test_download_refuses_unsafe_names_and_oversized_files(
        comfy_server: FakeComfyUI, start_png: Path, tmp_path: Path) -> None:
    client = client_for(comfy_server)
    _, (out,) = client.run(connection_graph(client.upload_image(start_png)))
    for bad in (OutputFile("5", "../x.mp4", "", "output", "video"), OutputFile("5", "x.mp4", "/abs", "output", "video")):
        with pytest.raises(ComfyError):
            client.download(bad, tmp_path / "bad.mp4")
    size = (comfy_server.output_dir / out.relpath).stat().st_size
    with pytest.raises(ComfyError) as exc:
        client.download(out, tmp_path / "big.mp4", max_bytes=size - 1)
    assert "larger than" in str(exc.value)

    # the same without a Content-Length: counted while streaming, the partial file removed
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"\0" * 4096)
        await response.write_eof()
        return response

    comfy_server.override("GET", "/view", chunked)
    with pytest.raises(ComfyError) as exc:
        client.download(out, tmp_path / "stream.mp4", max_bytes=10_000)
    assert "larger than" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["start.png"]


@pytest.mark.parametrize("path, body, call", [
    ("/system_stats", b"<html>proxy login</html>", "system_stats"),
    ("/system_stats", b'{"system": "no"}', "system_stats"),
    ("/object_info", b"[1, 2]", "object_info"),
    ("/models", b'{"a": 1}', "model_folders"),
    ("/queue", b'{"queue_running": [[1]]}', "queue_state"),
    ("/system_stats", b"[" * 100_000, "system_stats"),
    # Issue 15: answers are parsed strictly (the JSON parser of every file the app reads).
    ("/system_stats", b'{"system": {}, "system": {"os": "x"}}', "system_stats"),
    ("/queue", b'{"queue_running": [], "queue_pending": [[NaN]]}', "queue_state"),
    ("/object_info", b'{"A": ' + b"[" * 200 + b"]" * 200 + b"}", "object_info"),
])
def test_malformed_answers_are_errors_naming_the_server(
        comfy_server: FakeComfyUI, path: str, body: bytes, call: str) -> None:
    comfy_server.override("GET", path, lambda request: web.Response(body=body, content_type="application/json"))
    with pytest.raises(ComfyError) as exc:
        getattr(client_for(comfy_server), call)()
    assert comfy_server.url in str(exc.value) and not isinstance(exc.value, Unreachable)


def test_a_node_list_with_an_unbounded_maximum_is_read(comfy_server: FakeComfyUI) -> None:
    # Python's json (ComfyUI's) writes float("inf") as Infinity: a custom node with an unbounded
    # maximum must not make the whole server unusable; every other answer stays strict.
    body = b'{"Node": {"input": {"required": {"x": ["FLOAT", {"max": Infinity}]}}}}'
    comfy_server.override("GET", "/object_info",
                          lambda request: web.Response(body=body, content_type="application/json"))
    info = client_for(comfy_server).object_info()
    assert info["Node"]["input"]["required"]["x"][1]["max"] == float("inf")


def test_oversized_json_and_redirects_are_refused(comfy_server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "MAX_JSON_BYTES", 1000)
    client = client_for(comfy_server)
    comfy_server.override("GET", "/system_stats", lambda r: web.json_response({"system": {}, "x": "y" * 2000}))
    with pytest.raises(ComfyError, match="more than"):
        client.system_stats()
    comfy_server.override("GET", "/models", lambda r: web.Response(status=302, headers={"Location": "http://evil.example/"}))
    with pytest.raises(ComfyError, match="redirect"):
        client.model_folders()
    comfy_server.override("GET", "/queue", lambda r: web.Response(status=502))
    with pytest.raises(Unreachable):
        client.queue_state()


# -- TLS --------------------------------------------------------------------------------------------

def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_tls_is_verified_unless_the_user_turned_it_off(
        make_comfy_server: Any, start_png: Path, tmp_path: Path) -> None:
    server = make_comfy_server(ssl_context=self_signed_context(tmp_path))
    assert server.url.startswith("https://")
    with pytest.raises(Unreachable) as exc:
        ComfyClient(ServerInfo(server.url)).version()
    assert "TLS certificate is not trusted" in str(exc.value) and server.url in str(exc.value)
    client = ComfyClient(ServerInfo(server.url, verify_tls=False))
    assert client.version() == "0.3.64"
    _, outputs = client.run(connection_graph(client.upload_image(start_png), frames=5))  # wss too
    assert decode(client.download(outputs[0], tmp_path / "tls.mp4"))[0] == 5


# -- the token ----------------------------------------------------------------------------------

TOKEN = "tok-Zq81-secret-7731"


def test_token_is_sent_as_a_header_and_never_shown(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(token=TOKEN)
    client = client_for(server, token=TOKEN)
    image = client.upload_image(start_png)
    client.run(connection_graph(image))
    assert server.requests and all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in server.requests)
    assert {"/ws", "/prompt", "/upload/image", "/history/"} <= {
        r.path if not r.path.startswith("/history/") else "/history/" for r in server.requests}

    messages = []
    for wrong in (None, "wrong-token"):
        with pytest.raises(ComfyError) as exc:
            client_for(server, token=wrong).version()
        messages.append(str(exc.value))
        assert "token" in str(exc.value)
    with pytest.raises(ComfyError) as exc:
        client_for(server, token="wrong-token").run(connection_graph(image))
    messages.append(str(exc.value))

    # a server (or proxy) that echoes the token back in its refusal
    server.override("POST", "/prompt", lambda r: web.json_response(
        {"error": {"type": "x", "message": f"bad auth {r.headers['Authorization']}", "details": TOKEN},
         "node_errors": {"1": {"class_type": "A", "errors": [{"type": "y", "message": TOKEN}]}}}, status=400))
    with pytest.raises(PromptRejected) as rejected:
        client.queue_prompt(connection_graph(image))
    messages += [str(rejected.value), *rejected.value.problems]
    server.kill()
    with pytest.raises(Unreachable) as exc:
        client.run(connection_graph(image))
    messages.append(str(exc.value))
    assert all(TOKEN not in m for m in messages), messages
    assert "***" in str(rejected.value)


def test_api_key_in_extra_data_reaches_the_server_but_no_message(make_comfy_server: Any, start_png: Path) -> None:
    key = "comfyui-0123456789abcdef"
    # a node that fails and repeats the key in its error
    server = make_comfy_server(fail_node="SaveVideo", fail_message=f"the key {key} was refused")
    client = client_for(server)
    with pytest.raises(ExecutionFailed) as exc:
        client.run(connection_graph(client.upload_image(start_png)), extra_data={"api_key_comfy_org": key})
    assert server.requests_to("POST", "/prompt")[0].body["extra_data"] == {"api_key_comfy_org": key}
    assert "the key *** was refused" in str(exc.value)
    assert key not in str(exc.value) and key not in exc.value.exception_message
    (entry,) = server.history.values()  # ComfyUI keeps the key out of its history too
    assert "api_key_comfy_org" not in entry["prompt"][3]


# -- another client's prompt --------------------------------------------------------------------

def test_messages_of_another_clients_prompt_are_ignored(make_comfy_server: Any, start_png: Path) -> None:
    server = make_comfy_server(models=WAN_MODELS, step_delay_s=0.02)
    client = client_for(server)
    image = client.upload_image(start_png)
    # a script that queues without a client id: ComfyUI then sends its progress, previews and
    # "executing" messages to every socket, ours included
    status, theirs = raw_post(server, "/prompt", {"prompt": wan_graph(image, steps=7)})
    assert status == 200 and server.wait_running(theirs["prompt_id"])
    events: list[Any] = []
    _, outputs = client.run(wan_graph(image, steps=3), on_event=events.append)
    assert [(e.value, e.max) for e in events if isinstance(e, StepProgress)] == [(1, 3), (2, 3), (3, 3)]
    assert sum(isinstance(e, PreviewImage) for e in events) == 3
    assert theirs["prompt_id"] in server.history and outputs[0].filename == "wan_00002_.mp4"
    broadcast = [m for sid, m in server.ws_sent if sid is None and isinstance(m, dict) and m["type"] == "progress"]
    assert len(broadcast) == 7  # they were there to be ignored


# -- parsers --------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_safe_output_name_never_leaves_the_folder(filename: str, subfolder: str) -> None:
    base = Path("/srv/take-folder")
    try:
        rel = safe_output_name(filename, subfolder)
    except ValueError:
        return
    target = (base / rel).resolve()
    assert target.is_relative_to(base) and target != base
    assert "\\" not in rel and "\0" not in rel and ".." not in rel


@pytest.mark.parametrize("filename, subfolder, expected", [
    ("trace_00001_.mp4", "cs", "cs/trace_00001_.mp4"),
    ("a.png", "", "a.png"),
    ("a.png", "x/y", "x/y/a.png"),
])
def test_safe_output_name_accepts_comfyui_names(filename: str, subfolder: str, expected: str) -> None:
    assert safe_output_name(filename, subfolder) == expected


@pytest.mark.parametrize("filename, subfolder", [
    ("..", ""), ("../a", ""), ("a", "../b"), ("a", "/etc"), ("a", "b/../c"), ("a", "b//c"), ("a", "./b"),
    ("a\\b", ""), ("C:x", ""), ("", "b"), ("a", "b/"), (None, ""), ("a", 3),
])
def test_safe_output_name_refuses_escapes(filename: Any, subfolder: Any) -> None:
    with pytest.raises(ValueError):
        safe_output_name(filename, subfolder)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_preview_frames_parser_never_raises(frame: bytes, running: bool) -> None:
    client = ComfyClient(ServerInfo("http://127.0.0.1:1"))
    state = client_mod._RunState("p1", running=running)
    result = client._preview(frame, state)
    assert result is None or (isinstance(result, PreviewImage) and result.data)


def test_preview_frames_of_both_kinds() -> None:
    client = ComfyClient(ServerInfo("http://127.0.0.1:1"))
    state = client_mod._RunState("p1", running=True)
    assert client._preview(b"\0\0\0\1" + b"\0\0\0\2" + b"PNGDATA", state) == PreviewImage(b"PNGDATA", "png")
    meta = json.dumps({"prompt_id": "p1", "image_type": "image/jpeg"}).encode()
    frame = b"\0\0\0\4" + len(meta).to_bytes(4, "big") + meta + b"JPG"
    assert client._preview(frame, state) == PreviewImage(b"JPG", "jpeg")
    other = json.dumps({"prompt_id": "p2", "image_type": "image/png"}).encode()
    assert client._preview(b"\0\0\0\4" + len(other).to_bytes(4, "big") + other + b"X", state) is None
    assert client._preview(b"\0\0\0\1\0\0\0\1JPG", client_mod._RunState("p1")) is None  # not running yet


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["error", "node_errors", "x"]), json_values, max_size=3))
def test_any_refusal_becomes_a_message(answer: dict[str, Any]) -> None:
    client = ComfyClient(ServerInfo("http://127.0.0.1:1"), timeout_s=0.2)
    err = client._rejected(answer, {"1": {"class_type": "UNETLoader", "inputs": {}}})
    assert isinstance(err, PromptRejected) and "http://127.0.0.1:1" in str(err) and err.problems


# -- the fake against the recording ---------------------------------------------------------------

def ws_messages(ws: Any, until: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        message = ws.recv(timeout=end - time.monotonic())
        if isinstance(message, str):
            out.append(json.loads(message))
            if until(out[-1]):
                return out
    raise AssertionError(f"no end message in {out}")


def test_fake_replays_the_recorded_exchanges(comfy_server: FakeComfyUI, start_png: Path) -> None:
    """Driven like the recorder drove the real server (a raw socket, raw HTTP): the same message
    types in the same order, the same keys, the same history shape."""
    from websockets.sync.client import connect

    Image.open(start_png).convert("RGB").save(comfy_server.input_dir / "start.jpg")
    graph = copy.deepcopy(records.CONNECTION_GRAPH)
    graph["2"]["inputs"].update(width=64, height=48)

    def run(graph: dict[str, Any], sid: str, *, interrupt: bool = False) -> tuple[str, list[dict[str, Any]]]:
        with connect(f"ws://127.0.0.1:{comfy_server.port}/ws?clientId={sid}") as ws:
            messages = ws_messages(ws, lambda m: m["type"] == "status")
            status, answer = raw_post(comfy_server, "/prompt", {"prompt": graph, "client_id": sid})
            assert status == 200 and set(answer) == {"prompt_id", "number", "node_errors"}
            if interrupt:
                messages += ws_messages(ws, lambda m: m["type"] == "executing")
                raw_post(comfy_server, "/interrupt", {"prompt_id": answer["prompt_id"]})
                messages += ws_messages(ws, lambda m: m["type"] == "execution_interrupted")
            messages += ws_messages(ws, lambda m: m["type"] == "executing" and m["data"]["node"] is None)
            return answer["prompt_id"], messages

    run(graph, "warm-up")  # the recording's "ok" ran the graph a second time (nodes 1-4 cached)
    prompt_id, messages = run(graph, "recorder")
    assert [m["type"] for m in messages] == records.OK_WS_TYPES
    for m in messages:
        assert frozenset(m["data"]) in records.WS_DATA_KEYS[m["type"]], m
        if m["type"] == "progress_state":
            assert all(frozenset(n) == records.PROGRESS_STATE_NODE_KEYS for n in m["data"]["nodes"].values())
    assert messages[0]["data"]["sid"] == "recorder"
    assert [m["data"]["status"]["exec_info"]["queue_remaining"] for m in messages if m["type"] == "status"] == [0, 1, 1, 0]
    assert next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"] == ["1", "2", "3", "4"]

    with urllib.request.urlopen(f"{comfy_server.url}/history/{prompt_id}") as resp:
        entry = json.loads(resp.read())[prompt_id]
    assert frozenset(entry) == records.HISTORY_ENTRY_KEYS
    assert frozenset(entry["status"]) == records.HISTORY_STATUS_KEYS
    assert entry["outputs"] == {"5": {**records.SAVE_VIDEO_OUTPUT, "images": [
        {**records.SAVE_VIDEO_OUTPUT["images"][0], "filename": "trace_00002_.mp4"}]}}
    assert frozenset(entry["meta"]["5"]) == records.HISTORY_META_KEYS
    assert entry["prompt"][1:4] == [prompt_id, graph, {"client_id": "recorder"}] and entry["prompt"][4] == ["5"]
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]

    # "interrupt": amount 400, POST /interrupt while node 3 runs
    comfy_server.node_delay_s = 2.0
    graph["3"]["inputs"]["amount"] = 400
    prompt_id, messages = run(graph, "recorder-2", interrupt=True)
    types = [m["type"] for m in messages]
    assert types[:len(records.INTERRUPT_WS_TYPES)] == records.INTERRUPT_WS_TYPES
    assert types[len(records.INTERRUPT_WS_TYPES):] == ["status", "executing"]
    interrupted = messages[len(records.INTERRUPT_WS_TYPES) - 1]["data"]
    assert (interrupted["node_id"], interrupted["node_type"], interrupted["executed"]) == ("3", "RepeatImageBatch", [])
    assert comfy_server.history[prompt_id]["outputs"] == {}


def test_fake_refuses_exactly_as_the_recording(comfy_server: FakeComfyUI, start_png: Path) -> None:
    Image.open(start_png).convert("RGB").save(comfy_server.input_dir / "start.jpg")
    missing_image = copy.deepcopy(records.CONNECTION_GRAPH)
    missing_image["1"]["inputs"]["image"] = "nope.png"
    unknown = copy.deepcopy(records.CONNECTION_GRAPH)
    unknown["9"] = {"class_type": "NoSuchNode", "inputs": {}}
    no_outputs = {k: v for k, v in records.CONNECTION_GRAPH.items() if k != "5"}
    for graph, expected in ((missing_image, records.ANSWER_MISSING_IMAGE), (unknown, records.ANSWER_UNKNOWN_NODE),
                            (no_outputs, records.ANSWER_NO_OUTPUTS),
                            (records.WAN21_GRAPH, records.ANSWER_WAN21_MISSING_MODELS)):
        assert raw_post(comfy_server, "/prompt", {"prompt": graph}) == (400, expected)
    assert comfy_server.queue_state() == ([], [])


@pytest.mark.skipif(not SHARED.is_dir(), reason="the recording of a real ComfyUI is not here (a clone)")
def test_records_match_the_recording() -> None:
    exchange = json.loads((SHARED / "exchange-0.3.64.json").read_text())

    def ws_types(case: str) -> list[str]:
        return [r["ws"]["type"] for r in exchange if r["case"] == case and "ws" in r]

    def prompt_answer(case: str) -> Any:
        return next(r["body"] for r in exchange if r["case"] == case and r.get("http") == "POST /prompt")

    assert ws_types("ok") == records.OK_WS_TYPES
    assert ws_types("interrupt") == records.INTERRUPT_WS_TYPES
    for r in exchange:
        if "ws" in r:
            assert frozenset(r["ws"]["data"]) in records.WS_DATA_KEYS[r["ws"]["type"]]
            if r["ws"]["type"] == "progress_state":
                assert all(frozenset(n) == records.PROGRESS_STATE_NODE_KEYS for n in r["ws"]["data"]["nodes"].values())
    assert prompt_answer("validation_error_missing_image") == records.ANSWER_MISSING_IMAGE
    assert prompt_answer("unknown_node") == records.ANSWER_UNKNOWN_NODE
    assert prompt_answer("missing_model_file") == records.ANSWER_NO_OUTPUTS
    ok_history = next(r["body"] for r in exchange if r["case"] == "ok" and r.get("http", "").startswith("GET /history"))
    (entry,) = ok_history.values()
    assert frozenset(entry) == records.HISTORY_ENTRY_KEYS and frozenset(entry["status"]) == records.HISTORY_STATUS_KEYS
    assert entry["outputs"] == {"5": records.SAVE_VIDEO_OUTPUT}
    assert frozenset(entry["meta"]["5"]) == records.HISTORY_META_KEYS
    assert entry["prompt"][2] == records.CONNECTION_GRAPH
    wan = json.loads((SHARED / "wan21-i2v-missing-models-0.3.64.json").read_text())
    assert wan["graph"] == records.WAN21_GRAPH and wan["body"] == records.ANSWER_WAN21_MISSING_MODELS
    stats = json.loads((SHARED / "system_stats-0.3.64.json").read_text())
    assert stats.keys() == records.SYSTEM_STATS.keys()
    assert stats["system"].keys() == records.SYSTEM_STATS["system"].keys()
    assert stats["devices"][0].keys() == records.SYSTEM_STATS["devices"][0].keys()
    assert json.loads((SHARED / "models-0.3.64.json").read_text()) == records.MODEL_FOLDERS
