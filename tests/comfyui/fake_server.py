"""A fake ComfyUI 0.3.64 server for the tests.

ComfyUI itself cannot be installed from the package registries (it is a git checkout that needs
its own torch/torchvision stack), so the tests mock it — and only it: everything on our side of
the HTTP and websocket connection is the real code. The fake answers the way a real ComfyUI
0.3.64 answered in a recording (``comfy_records.py``): the same routes, status codes, JSON shapes
and message order (status, execution_start, execution_cached, progress_state, executing,
progress, executed, execution_success, executing null), the same validation refusals, and the
same binary preview frames (type 1: format + JPEG; type 4: metadata + JPEG for clients that
announce ``supports_preview_metadata``).

It really runs the model-free nodes (LoadImage, ImageScale, ImageBatch, RepeatImageBatch,
CreateVideo, SaveVideo, SaveWEBM, SaveAnimatedWEBP, SaveAnimatedPNG, SaveImage, PreviewImage)
with PIL and PyAV, so downloads are real files. Any other node of the catalogue is simulated: a
KSampler/KSamplerAdvanced counts its steps (``progress`` messages and preview frames, one every
``step_delay_s``), a node that outputs IMAGE or VIDEO makes frames of the graph's size and
``length`` from the start image. Validation uses the project's own catalogue
(``Catalogue.bundled().to_object_info()``) with model lists from the ``models`` option.

An aiohttp app in a background thread on 127.0.0.1 (a free port), one execution worker thread
(prompts run one at a time), an input folder (uploads), an output folder, a history, a queue.
Every request is recorded (``requests``) for assertions.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import heapq
import inspect
import io
import json
import mimetypes
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image, ImageOps

import comfy_records as records
from studio.engine.comfyui.catalogue import MODEL_INPUTS, Catalogue, InputSpec, types_match

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
# nodes whose input file is checked by the node itself (ComfyUI's VALIDATE_INPUTS), not as a combo
FILE_INPUTS = {("LoadImage", "image"), ("LoadImageMask", "image"), ("LoadVideo", "file")}
MAX_SIM_FRAMES = 2000
MAX_SIM_PIXELS = 80e6  # frames × width × height of one simulated output


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # parsed JSON, or a summary of a multipart form
    status: int | None = None


@dataclass
class Video:
    frames: np.ndarray  # (N, H, W, 3) uint8
    fps: float


@dataclass
class Sim:
    """A simulated value (a model, conditioning, a latent): the facts later nodes need."""

    meta: dict[str, Any] = field(default_factory=dict)


REC = web.RequestKey("rec", RecordedRequest)


class _Interrupted(Exception):
    pass


class _Dead(Exception):
    pass


def _ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


class FakeComfyUI:
    """A ComfyUI on 127.0.0.1. Options:

    - ``step_delay_s``: seconds per simulated sampler step (default 0.01)
    - ``node_delay_s``: seconds each model-free node takes on top of its work (to cancel it)
    - ``models``: ``{folder: [file names]}`` the server "has" (``/models/<folder>``, loader enums)
    - ``fail_node``: a node id or class_type that raises when executed (``execution_error``),
      with ``fail_message`` as the exception's message
    - ``die_after_steps``: after that many sampler steps the server dies: every socket closes
      and nothing answers any more (a server killed mid-job)
    - ``token``: every request must carry ``Authorization: Bearer <token>`` (a reverse proxy)
    - ``version``: what ``/system_stats`` reports
    - ``ssl_context``: serve https/wss with it (a server behind TLS)
    """

    def __init__(self, *, step_delay_s: float = 0.01, node_delay_s: float = 0.0,
                 models: dict[str, list[str]] | None = None, fail_node: str | None = None,
                 fail_message: str | None = None, die_after_steps: int | None = None, token: str | None = None,
                 version: str = records.VERSION, ssl_context: Any = None) -> None:
        self.step_delay_s, self.node_delay_s = step_delay_s, node_delay_s
        self.models = {k: list(v) for k, v in (models or {}).items()}
        self.fail_node, self.fail_message = fail_node, fail_message
        self.die_after_steps, self.token = die_after_steps, token
        self.version = version
        self.ssl_context = ssl_context
        self.catalogue = Catalogue.bundled()
        self.requests: list[RecordedRequest] = []
        self.ws_sent: list[tuple[str | None, Any]] = []  # (sid or None for all, message) as sent
        self.history: dict[str, dict[str, Any]] = {}
        self._root = Path(tempfile.mkdtemp(prefix="fake-comfyui-"))
        self.input_dir, self.output_dir, self.temp_dir = (self._root / n for n in ("input", "output", "temp"))
        for d in (self.input_dir, self.output_dir, self.temp_dir):
            d.mkdir()
        self._overrides: list[tuple[str, str, Callable[[web.Request], Any]]] = []
        self._lock = threading.RLock()
        self._not_empty = threading.Condition(self._lock)
        self._queue: list[tuple[Any, ...]] = []
        self._running: dict[int, tuple[Any, ...]] = {}
        self._task_counter = 0
        self._number = 0
        self._interrupt = threading.Event()
        self._dead = threading.Event()
        self._stopping = False
        self._steps_done = 0
        self._cache: dict[str, tuple[Any, ...]] = {}
        self.client_id: str | None = None  # the client whose prompt runs (ComfyUI's server.client_id)
        self.last_node_id: str | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._transports: dict[str, Any] = {}
        self._socket_flags: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self.port = 0

    # -- life -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> "FakeComfyUI":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-comfyui-http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(10)
        self._worker = threading.Thread(target=self._work, name="fake-comfyui-worker", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._interrupt.set()
            self._not_empty.notify_all()
        if self._loop is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._astop(), self._loop).result(10)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        for t in (self._worker, self._thread):
            if t is not None and t is not threading.current_thread():
                t.join(10)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> "FakeComfyUI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def kill(self) -> None:
        """Die like a killed process: sockets cut (no close frame), the port closed, the running
        prompt abandoned. Safe to call from any thread."""
        if self._dead.is_set():
            return
        self._dead.set()
        with self._lock:
            self._not_empty.notify_all()
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._akill(), self._loop)
        if threading.current_thread() is not self._thread:
            fut.result(10)

    @property
    def dead(self) -> bool:
        return self._dead.is_set()

    async def _astart(self) -> None:
        self._messages: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        app = web.Application(client_max_size=records.SERVER_FEATURES["max_upload_size"],
                              middlewares=[self._middleware])
        routes = [
            ("GET", "/ws", self._ws), ("GET", "/system_stats", self._system_stats),
            ("GET", "/features", self._features), ("GET", "/prompt", self._get_prompt),
            ("GET", "/embeddings", self._empty_list), ("GET", "/extensions", self._empty_list),
            ("GET", "/models", self._model_folders), ("GET", "/models/{folder}", self._models),
            ("GET", "/object_info", self._object_info), ("GET", "/object_info/{node_class}", self._object_info_node),
            ("GET", "/history", self._get_history), ("GET", "/history/{prompt_id}", self._get_history_id),
            ("GET", "/queue", self._get_queue), ("GET", "/view", self._view),
            ("POST", "/prompt", self._post_prompt), ("POST", "/queue", self._post_queue),
            ("POST", "/interrupt", self._post_interrupt), ("POST", "/free", self._post_free),
            ("POST", "/history", self._post_history), ("POST", "/upload/image", self._upload_image),
        ]
        for method, path, handler in routes:
            for prefix in ("", "/api"):  # ComfyUI serves every route under /api too
                if method == "GET":  # GET routes answer HEAD too, as aiohttp's routes.get does
                    app.router.add_get(prefix + path, handler)
                else:
                    app.router.add_post(prefix + path, handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock, ssl_context=self.ssl_context)
        await self._site.start()
        self._publisher = asyncio.ensure_future(self._publish_loop())

    async def _astop(self) -> None:
        self._publisher.cancel()
        for ws in list(self._sockets.values()):
            try:
                await asyncio.wait_for(ws.close(), 1)
            except Exception:
                pass
        await self._runner.cleanup()

    async def _akill(self) -> None:
        for transport in list(self._transports.values()):
            if transport is not None:
                transport.abort()
        self._sockets.clear()
        self._transports.clear()
        try:
            await self._site.stop()
        except Exception:
            pass

    # -- what tests look at ---------------------------------------------------------------------
    def queue_state(self) -> tuple[list[str], list[str]]:
        with self._lock:
            return [i[1] for i in self._running.values()], [i[1] for i in sorted(self._queue)]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            running, pending = self.queue_state()
            if not running and not pending:
                return True
            time.sleep(0.01)
        return False

    def wait_running(self, prompt_id: str | None = None, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            running, _ = self.queue_state()
            if running and (prompt_id is None or prompt_id in running):
                return True
            time.sleep(0.005)
        return False

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def override(self, method: str, path_prefix: str, handler: Callable[[web.Request], Any]) -> None:
        """Answer requests whose path starts with ``path_prefix`` with ``handler(request)`` (a
        web.Response, or an awaitable of one; None falls through to the real route)."""
        self._overrides.append((method, path_prefix, handler))

    def add_input(self, name: str, data: bytes, subfolder: str = "") -> None:
        folder = self.input_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)

    def set_models(self, folder: str, names: list[str]) -> None:
        self.models[folder] = list(names)

    # -- HTTP -----------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        rec = RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers))
        self.requests.append(rec)
        request[REC] = rec
        if self._dead.is_set():
            raise ConnectionResetError("dead")
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            rec.status = 401
            return web.Response(status=401, text="401: Unauthorized")
        for method, prefix, fn in self._overrides:
            if request.method == method and request.path.startswith(prefix):
                answer = fn(request)
                if asyncio.iscoroutine(answer):
                    answer = await answer
                if answer is not None:
                    rec.status = answer.status
                    return answer
        response = await handler(request)
        rec.status = response.status
        return response

    async def _json_body(self, request: web.Request) -> Any:
        data = await request.json()
        request[REC].body = data
        return data

    async def _system_stats(self, request: web.Request) -> web.Response:
        stats = copy.deepcopy(records.SYSTEM_STATS)
        stats["system"]["comfyui_version"] = self.version
        stats["system"]["argv"] = ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port)]
        return web.json_response(stats)

    async def _features(self, request: web.Request) -> web.Response:
        return web.json_response(records.SERVER_FEATURES)

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_info())

    async def _empty_list(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def _model_folders(self, request: web.Request) -> web.Response:
        return web.json_response(records.MODEL_FOLDERS)

    async def _models(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in records.MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(sorted(self.models.get(folder, [])))

    def object_info(self) -> dict[str, Any]:
        """``Catalogue.bundled().to_object_info()`` with this server's model and input files."""
        info = self.catalogue.to_object_info()
        for (cls, name), folder in MODEL_INPUTS.items():
            if cls in info:
                self._set_choices(info[cls], name, self._choices(cls, name))
        inputs = sorted(str(p.relative_to(self.input_dir)) for p in self.input_dir.rglob("*") if p.is_file())
        for cls, name in FILE_INPUTS:
            if cls in info:
                self._set_choices(info[cls], name, inputs)
        return info

    @staticmethod
    def _set_choices(node: dict[str, Any], name: str, choices: list[str]) -> None:
        for section in node["input"].values():
            spec = section.get(name)
            if spec is not None:
                if isinstance(spec[0], list):
                    spec[0] = choices
                elif spec[0] == "COMBO":
                    spec[1]["options"] = choices

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def _object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    async def _get_history(self, request: web.Request) -> web.Response:
        with self._lock:
            items = list(self.history.items())
        max_items = request.query.get("max_items")
        if max_items is not None:
            items = items[-int(max_items):]
        return web.json_response(copy.deepcopy(dict(items)))

    async def _get_history_id(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        with self._lock:
            entry = copy.deepcopy(self.history.get(pid))
        return web.json_response({pid: entry} if entry is not None else {})

    async def _get_queue(self, request: web.Request) -> web.Response:
        with self._lock:
            running = [list(i) for i in self._running.values()]
            pending = [list(i) for i in self._queue]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if data.get("clear"):
            with self._lock:
                self._queue = []
            self._queue_updated()
        for pid in data.get("delete", []):
            with self._lock:
                for i, item in enumerate(self._queue):
                    if item[1] == pid:
                        self._queue.pop(i)
                        heapq.heapify(self._queue)
                        break
                else:
                    continue
            self._queue_updated()
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
        except json.JSONDecodeError:
            data = {}
        pid = data.get("prompt_id") if isinstance(data, dict) else None
        if pid:
            running, _ = self.queue_state()
            if pid in running:
                self._interrupt.set()
        else:
            self._interrupt.set()
        return web.Response(status=200)

    async def _post_free(self, request: web.Request) -> web.Response:
        await self._json_body(request)
        return web.Response(status=200)

    async def _post_history(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        with self._lock:
            if data.get("clear"):
                self.history.clear()
            for pid in data.get("delete", []):
                self.history.pop(pid, None)
        return web.Response(status=200)

    def _type_dir(self, kind: str | None) -> Path | None:
        return {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}.get(kind or "input")

    async def _upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        overwrite = post.get("overwrite")
        upload_dir = self._type_dir(post.get("type"))  # type: ignore[arg-type]
        kind = post.get("type") or "input"
        request[REC].body = {k: (v if isinstance(v, str) else {"filename": v.filename, "size": len(v.file.read())})
                               for k, v in post.items()}
        if upload_dir is None or image is None or isinstance(image, str) or not image.filename:
            return web.Response(status=400)
        image.file.seek(0)
        data = image.file.read()
        subfolder = str(post.get("subfolder", ""))
        folder = upload_dir / os.path.normpath(subfolder)
        filename = image.filename
        target = Path(os.path.abspath(folder / filename))
        if os.path.commonpath((str(upload_dir), str(target))) != str(upload_dir):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        duplicate = False
        if overwrite not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            i = 1
            while target.exists():
                if hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
                    duplicate = True
                    break
                filename = f"{stem} ({i}){ext}"
                target = folder / filename
                i += 1
        if not duplicate:
            target.write_bytes(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        filename = query["filename"]
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        folder = self._type_dir(query.get("type", "output"))
        if folder is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = folder / query["subfolder"]
            if os.path.commonpath((os.path.abspath(full), str(folder))) != str(folder):
                return web.Response(status=403)
            folder = full
        path = folder / os.path.basename(filename)
        if path.is_file():
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"',
                                                   "Content-Type": ctype})
        return web.Response(status=404)

    # -- the websocket --------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        if sid:
            self._sockets.pop(sid, None)  # ComfyUI: a reconnect replaces the old socket
        else:
            sid = uuid.uuid4().hex
        self._sockets[sid] = ws
        self._transports[sid] = request.transport
        self._socket_flags[sid] = {}
        try:
            await self._send_now("status", {"status": self._queue_info(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                await self._send_now("executing", {"node": self.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        self._socket_flags[sid] = dict(data.get("data") or {})
                        await self._send_now("feature_flags", records.SERVER_FEATURES, sid)
                    first = False
        finally:
            if self._sockets.get(sid) is ws:
                self._sockets.pop(sid, None)
                self._transports.pop(sid, None)
                self._socket_flags.pop(sid, None)
        return ws

    async def _send_now(self, event: Any, data: Any, sid: str | None) -> None:
        if isinstance(event, int):
            message: Any = struct.pack(">I", event) + bytes(data)
        else:
            message = {"type": event, "data": data}
        targets = list(self._sockets.items()) if sid is None else (
            [(sid, self._sockets[sid])] if sid in self._sockets else [])
        self.ws_sent.append((sid, message))
        for _, ws in targets:
            try:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_json(message)
            except Exception:
                pass

    async def _publish_loop(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            if not self._dead.is_set():
                await self._send_now(event, data, sid)

    def send_sync(self, event: Any, data: Any, sid: str | None) -> None:
        """Queue a message from the worker thread (in order, like ComfyUI's send_sync)."""
        if self._dead.is_set() or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._messages.put_nowait, (event, copy.deepcopy(data), sid))
        except RuntimeError:  # the loop is closed: the server is stopping
            pass

    def _queue_info(self) -> dict[str, Any]:
        with self._lock:
            return {"exec_info": {"queue_remaining": len(self._queue) + len(self._running)}}

    def _queue_updated(self) -> None:
        self.send_sync("status", {"status": self._queue_info()}, None)

    def _supports_metadata(self, sid: str | None) -> bool:
        return bool(sid is not None and self._socket_flags.get(sid, {}).get("supports_preview_metadata"))

    # -- POST /prompt and validation ------------------------------------------------------------
    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
        except json.JSONDecodeError:
            return web.Response(status=500, text="500 Internal Server Error")
        if "number" in data:
            number = float(data["number"])
        else:
            number = self._number
            if data.get("front"):
                number = -number
            self._number += 1
        if "prompt" not in data:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = data["prompt"]
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        ok, error, outputs, node_errors = self.validate(prompt)
        extra = dict(data.get("extra_data", {}))
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        if not ok:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        with self._lock:
            heapq.heappush(self._queue, (number, prompt_id, prompt, extra, outputs))
            self._not_empty.notify()
        self._queue_updated()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _choices(self, cls: str, name: str) -> list[Any]:
        spec = self.catalogue.get(cls)
        inp = spec.inputs.get(name) if spec else None
        base = list(inp.choices or ()) if inp else []
        folder = MODEL_INPUTS.get((cls, name))
        if folder is not None:
            # the recorded server had no model files: its lists hold only built-in entries
            base = base + sorted(self.models.get(folder, []))
        return base

    def _input_exists(self, name: Any) -> bool:
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in name:
            return False
        name = re.sub(r" \[(input|output|temp)\]$", "", name)
        return (self.input_dir / name).is_file()

    def validate(self, prompt: Any) -> tuple[bool, Any, list[str], dict[str, Any]]:
        """ComfyUI's validate_prompt, against our catalogue: (ok, error, outputs, node_errors)."""
        if not isinstance(prompt, dict):
            prompt = {}
        outputs: list[str] = []
        for x, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return False, {"type": "invalid_prompt",
                               "message": "Cannot execute because a node is missing the class_type property.",
                               "details": f"Node ID '#{x}'", "extra_info": {}}, [], {}
            spec = self.catalogue.get(node["class_type"]) if isinstance(node["class_type"], str) else None
            if spec is None:
                return False, {"type": "invalid_prompt",
                               "message": f"Cannot execute because node {node['class_type']} does not exist.",
                               "details": f"Node ID '#{x}'", "extra_info": {}}, [], {}
            if spec.output_node:
                outputs.append(x)
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                           "extra_info": {}}, [], {}
        good: list[str] = []
        errors: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}
        for o in sorted(outputs, key=lambda s: (len(s), s)):
            try:
                valid, reasons, _ = self._validate_inputs(prompt, o, validated)
            except Exception as ex:  # like ComfyUI: a broken link is an exception during validation
                valid = False
                reasons = [{"type": "exception_during_validation", "message": "Exception when validating node",
                            "details": str(ex), "extra_info": {"exception_type": type(ex).__name__,
                                                               "traceback": traceback.format_tb(ex.__traceback__)}}]
                validated[o] = (False, reasons, o)
            if valid:
                good.append(o)
                continue
            errors.append((o, reasons))
            for node_id, (ok, why, _) in validated.items():
                if not ok and why:
                    entry = node_errors.setdefault(node_id, {"errors": why, "dependent_outputs": [],
                                                             "class_type": prompt[node_id]["class_type"]})
                    entry["dependent_outputs"].append(o)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in errors for e in errs)
            return False, {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                           "details": details, "extra_info": {}}, [], node_errors
        return True, None, good, node_errors

    def _validate_inputs(self, prompt: dict[str, Any], nid: str,
                         validated: dict[str, tuple[bool, list[dict[str, Any]], str]]
                         ) -> tuple[bool, list[dict[str, Any]], str]:
        if nid in validated:
            return validated[nid]
        node = prompt[nid]
        cls = node["class_type"]
        spec = self.catalogue.get(cls)
        assert spec is not None
        inputs = node.get("inputs", {})
        errors: list[dict[str, Any]] = []
        valid = True
        for name, inp in spec.inputs.items():
            if name not in inputs:
                if inp.required:
                    errors.append({"type": "required_input_missing", "message": "Required input is missing",
                                   "details": name, "extra_info": {"input_name": name}})
                continue
            value = inputs[name]
            info = self._input_config(cls, inp)
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append({"type": "bad_linked_input",
                                   "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                   "details": name, "extra_info": {"input_name": name, "input_config": info,
                                                                   "received_value": value}})
                    continue
                o_id, slot = value
                linked = self.catalogue.get(prompt[o_id]["class_type"])  # KeyError: a link to nowhere
                assert linked is not None
                received = linked.outputs[slot]
                if not types_match(received, inp.type):
                    errors.append({"type": "return_type_mismatch",
                                   "message": "Return type mismatch between linked nodes",
                                   "details": f"{name}, received_type({received}) mismatch input_type({inp.type})",
                                   "extra_info": {"input_name": name, "input_config": info,
                                                  "received_type": received, "linked_node": value}})
                    continue
                ok, _, _ = self._validate_inputs(prompt, o_id, validated)
                if not ok:
                    valid = False
                continue
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            try:
                if inp.type == "INT":
                    value = int(value)
                elif inp.type == "FLOAT":
                    value = float(value)
                elif inp.type == "STRING":
                    value = str(value)
                elif inp.type == "BOOLEAN":
                    value = bool(value)
            except (TypeError, ValueError) as ex:
                errors.append({"type": "invalid_input_type",
                               "message": f"Failed to convert an input value to a {inp.type} value",
                               "details": f"{name}, {value}, {ex}",
                               "extra_info": {"input_name": name, "input_config": info, "received_value": value,
                                              "exception_message": str(ex)}})
                continue
            if (cls, name) in FILE_INPUTS:
                if not self._input_exists(value):
                    kind = "image" if cls != "LoadVideo" else "video"
                    errors.append({"type": "custom_validation_failed", "message": "Custom validation failed for node",
                                   "details": f"{name} - Invalid {kind} file: {value}",
                                   "extra_info": {"input_name": name}})
                continue
            if inp.min is not None and value < inp.min:
                errors.append({"type": "value_smaller_than_min", "message": f"Value {value} smaller than min of {inp.min}",
                               "details": name, "extra_info": {"input_name": name, "input_config": info,
                                                               "received_value": value}})
                continue
            if inp.max is not None and value > inp.max:
                errors.append({"type": "value_bigger_than_max", "message": f"Value {value} bigger than max of {inp.max}",
                               "details": name, "extra_info": {"input_name": name, "input_config": info,
                                                               "received_value": value}})
                continue
            if inp.type == "COMBO" and inp.choices is not None:
                choices = self._choices(cls, name)
                if value not in choices:
                    config: Any = [choices, info[1]]
                    listed = str(choices)
                    if len(choices) > 20:  # ComfyUI leaves long (model file) lists out
                        listed, config = f"(list of length {len(choices)})", None
                    errors.append({"type": "value_not_in_list", "message": "Value not in list",
                                   "details": f"{name}: '{value}' not in {listed}",
                                   "extra_info": {"input_name": name, "input_config": config,
                                                  "received_value": value}})
                    continue
        result = (False, errors, nid) if errors or not valid else (True, [], nid)
        validated[nid] = result
        return result

    @staticmethod
    def _input_config(cls: str, inp: InputSpec) -> list[Any]:
        opts = {k: getattr(inp, k) for k in ("default", "min", "max", "step") if getattr(inp, k) is not None}
        if cls and inp.type == "COMBO":
            return [list(inp.choices or ()), opts]
        return [inp.type, opts]

    # -- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._not_empty:
                while not self._queue and not self._stopping and not self._dead.is_set():
                    self._not_empty.wait(0.5)
                if self._stopping or self._dead.is_set():
                    return
                item = heapq.heappop(self._queue)
                index = self._task_counter
                self._task_counter += 1
                self._running[index] = item
            self._queue_updated()
            try:
                entry = self._execute(item)
            except _Dead:
                return
            with self._lock:
                self._running.pop(index, None)
                self.history[item[1]] = entry
            self._queue_updated()
            if self.client_id is not None:
                self.send_sync("executing", {"node": None, "prompt_id": item[1]}, self.client_id)

    def _check(self) -> None:
        if self._dead.is_set():
            raise _Dead()
        if self._interrupt.is_set():
            raise _Interrupted()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._check()
            time.sleep(min(left, 0.005))
        self._check()

    def _execute(self, item: tuple[Any, ...]) -> dict[str, Any]:
        number, pid, prompt, extra, outputs = item
        self._interrupt.clear()  # ComfyUI resets the flag when a prompt starts
        sid = extra.get("client_id")
        self.client_id = sid
        messages: list[list[Any]] = []

        def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
            data = {**data, "timestamp": _ms()}
            messages.append([event, data])
            if sid is not None or broadcast:
                self.send_sync(event, data, sid)

        add_message("execution_start", {"prompt_id": pid}, False)
        sigs: dict[str, str] = {}
        for nid in prompt:
            self._signature(prompt, nid, sigs)
        cached = [nid for nid in prompt if not self._is_output(prompt, nid) and sigs[nid] in self._cache]
        add_message("execution_cached", {"nodes": cached, "prompt_id": pid}, False)
        values: dict[str, tuple[Any, ...]] = {nid: self._cache[sigs[nid]] for nid in cached}
        order = self._order(prompt, outputs, set(cached))
        registry: dict[str, dict[str, Any]] = {}
        executed: list[str] = []
        ui_outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        success = False
        current: str | None = None
        try:
            for nid in order:
                self._check()
                current = nid
                registry[nid] = {"value": 0.0, "max": 1.0, "state": "running"}
                self._progress_state(pid, registry, sid)
                self.last_node_id = nid
                if sid is not None:
                    self.send_sync("executing", {"node": nid, "display_node": nid, "prompt_id": pid}, sid)
                out, ui = self._run_node(pid, nid, prompt, values, registry, sid)
                values[nid] = out
                if ui:
                    ui_outputs[nid] = ui
                    meta[nid] = {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                    if sid is not None:
                        self.send_sync("executed", {"node": nid, "display_node": nid, "output": ui,
                                                    "prompt_id": pid}, sid)
                registry[nid].update(state="finished", value=registry[nid]["max"])
                self._progress_state(pid, registry, sid)
                executed.append(nid)
            current = None
            add_message("execution_success", {"prompt_id": pid}, False)
            success = True
        except _Interrupted:
            add_message("execution_interrupted", {"prompt_id": pid, "node_id": current,
                                                  "node_type": prompt[current]["class_type"] if current else None,
                                                  "executed": list(executed)}, True)
        except _Dead:
            raise
        except Exception as ex:
            add_message("execution_error", {
                "prompt_id": pid, "node_id": current,
                "node_type": prompt[current]["class_type"] if current else None, "executed": list(executed),
                "exception_message": str(ex), "exception_type": type(ex).__name__,
                "traceback": traceback.format_tb(ex.__traceback__), "current_inputs": {},
                "current_outputs": list(values)}, False)
        # like ComfyUI's classic cache: keep the outputs of this prompt's nodes only
        self._cache = {sigs[n]: v for n, v in values.items() if not self._is_output(prompt, n)}
        self.last_node_id = None
        stored_extra = {k: v for k, v in extra.items() if k not in records.SENSITIVE_EXTRA_DATA_KEYS}
        return {
            "prompt": [number, pid, prompt, stored_extra, outputs],
            "outputs": ui_outputs,
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": meta,
        }

    def _progress_state(self, pid: str, registry: dict[str, dict[str, Any]], sid: str | None) -> None:
        nodes = {nid: {"value": float(s["value"]), "max": float(s["max"]), "state": s["state"], "node_id": nid,
                       "prompt_id": pid, "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}
                 for nid, s in registry.items()}
        self.send_sync("progress_state", {"prompt_id": pid, "nodes": nodes}, sid)

    def _is_output(self, prompt: dict[str, Any], nid: str) -> bool:
        spec = self.catalogue.get(prompt[nid]["class_type"])
        return bool(spec and spec.output_node)

    def _signature(self, prompt: dict[str, Any], nid: str, sigs: dict[str, str]) -> str:
        if nid in sigs:
            return sigs[nid]
        sigs[nid] = "…"  # a cycle: validation would have refused it; stay finite
        node = prompt[nid]
        parts: list[Any] = [node["class_type"]]
        for key in sorted(node.get("inputs", {})):
            value = node["inputs"][key]
            if _is_link(value) and value[0] in prompt:
                parts.append([key, self._signature(prompt, value[0], sigs), value[1]])
            else:
                parts.append([key, value])
        if (node["class_type"], "image") in FILE_INPUTS:
            path = self.input_dir / str(node.get("inputs", {}).get("image", ""))
            parts.append(hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None)
        sigs[nid] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return sigs[nid]

    def _order(self, prompt: dict[str, Any], outputs: list[str], cached: set[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen or nid in cached:
                return
            seen.add(nid)
            for key in sorted(prompt[nid].get("inputs", {})):
                value = prompt[nid]["inputs"][key]
                if _is_link(value):
                    visit(value[0])
            order.append(nid)

        for o in sorted(outputs, key=lambda s: (len(s), s)):
            visit(o)
        return order

    # -- nodes ----------------------------------------------------------------------------------
    def _run_node(self, pid: str, nid: str, prompt: dict[str, Any], values: dict[str, tuple[Any, ...]],
                  registry: dict[str, dict[str, Any]], sid: str | None) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        node = prompt[nid]
        cls = node["class_type"]
        args: dict[str, Any] = {}
        for key, value in node.get("inputs", {}).items():
            args[key] = values[value[0]][value[1]] if _is_link(value) else value
        if self.fail_node is not None and self.fail_node in (nid, cls):
            raise RuntimeError(self.fail_message or f"fake failure in node {nid} ({cls})")
        real = getattr(self, f"_node_{cls}", None)
        if real is not None:
            if self.node_delay_s:
                self._sleep(self.node_delay_s)
            # like ComfyUI, inputs the node does not declare are ignored
            params = inspect.signature(real).parameters
            return real(**{k: v for k, v in args.items() if k in params})
        if cls in SAMPLERS:
            return self._sample(pid, nid, cls, args, registry, sid)
        return self._simulate(cls, args), None

    def _simulate(self, cls: str, args: dict[str, Any]) -> tuple[Any, ...]:
        meta: dict[str, Any] = {}
        for key in ("start_image", "start_frame", "first_frame", "image", "images", "reference_image"):
            if isinstance(args.get(key), np.ndarray) and args[key].ndim == 4:
                meta["image"] = args[key][0]
                break
        for value in args.values():
            if isinstance(value, Sim):
                for k, v in value.meta.items():
                    meta.setdefault(k, v)
            elif isinstance(value, np.ndarray) and value.ndim == 4:
                meta.setdefault("image", value[0])
        for key in ("width", "height", "length", "fps", "frame_rate", "duration"):
            value = args.get(key)
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                meta[key] = value
        spec = self.catalogue.get(cls)
        outs: list[Any] = []
        for kind in spec.outputs if spec else ():
            if kind == "IMAGE":
                outs.append(self._frames(meta, int(meta.get("length", 1))))
            elif kind == "MASK":
                frames = self._frames(meta, 1)
                outs.append(np.zeros(frames.shape[:3], np.float32))
            elif kind == "VIDEO":
                fps = float(meta.get("fps", meta.get("frame_rate", 24)))
                n = int(meta["length"]) if "length" in meta else int(round(float(meta.get("duration", 2)) * fps))
                outs.append(Video(self._frames(meta, n), fps))
            elif kind == "STRING":
                outs.append("")
            else:
                outs.append(Sim(dict(meta)))
        return tuple(outs)

    def _frames(self, meta: dict[str, Any], n: int) -> np.ndarray:
        base = meta.get("image")
        w, h = int(meta.get("width") or 0), int(meta.get("height") or 0)
        if not (w and h):  # no size in the graph: the start image's, kept small
            bh, bw = base.shape[:2] if base is not None else (64, 64)
            scale = min(1.0, 320 / max(bw, bh))
            w, h = max(2, round(bw * scale)), max(2, round(bh * scale))
        # bounded like a real server's memory would be
        n = max(1, min(MAX_SIM_FRAMES, n, int(MAX_SIM_PIXELS // (w * h))))
        if base is None:
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1),
                             np.full_like(xx, 128)], -1).astype(np.uint8)
        else:
            base = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))
        # a slow pan: each frame differs, like a generated shot
        return np.stack([np.roll(base, i * max(1, w // 200), axis=1) for i in range(n)])

    def _sample(self, pid: str, nid: str, cls: str, args: dict[str, Any], registry: dict[str, dict[str, Any]],
                sid: str | None) -> tuple[tuple[Any, ...], None]:
        steps = int(args.get("steps", 20))
        if cls == "KSamplerAdvanced":
            start = int(args.get("start_at_step", 0))
            end = min(int(args.get("end_at_step", 10000)), steps)
            steps = max(1, end - start)
        meta: dict[str, Any] = {}
        for value in args.values():
            if isinstance(value, Sim):
                for k, v in value.meta.items():
                    meta.setdefault(k, v)
        preview = io.BytesIO()
        Image.fromarray(self._frames(meta, 1)[0]).resize((64, 64)).convert("RGB").save(preview, "JPEG", quality=80)
        jpeg = preview.getvalue()
        for i in range(1, steps + 1):
            self._sleep(self.step_delay_s)
            registry[nid].update(value=i, max=steps)
            self._progress_state(pid, registry, sid)
            self.send_sync("progress", {"value": i, "max": steps, "prompt_id": pid, "node": nid}, sid)
            if self._supports_metadata(sid):
                info = json.dumps({"node_id": nid, "prompt_id": pid, "display_node_id": nid,
                                   "parent_node_id": None, "real_node_id": nid,
                                   "image_type": "image/jpeg"}).encode()
                self.send_sync(4, struct.pack(">I", len(info)) + info + jpeg, sid)
            else:
                self.send_sync(1, struct.pack(">I", 1) + jpeg, sid)
            self._steps_done += 1
            if self.die_after_steps is not None and self._steps_done >= self.die_after_steps:
                self.kill()
                raise _Dead()
        return (Sim(meta),), None

    # real, model-free nodes (ComfyUI's IMAGE is a float tensor; uint8 arrays suffice here)
    def _node_LoadImage(self, image: str) -> tuple[tuple[Any, ...], None]:
        path = self.input_dir / re.sub(r" \[input\]$", "", image)
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            rgb = np.asarray(img.convert("RGB"))[None]
            if "A" in img.getbands():
                mask = 1.0 - np.asarray(img.getchannel("A"), np.float32)[None] / 255.0
            else:
                mask = np.zeros((1, 64, 64), np.float32)
        return (rgb, mask), None

    def _node_ImageScale(self, image: np.ndarray, upscale_method: str, width: int, height: int,
                         crop: str) -> tuple[tuple[Any, ...], None]:
        h0, w0 = image.shape[1:3]
        width = width or max(1, round(w0 * height / h0))
        height = height or max(1, round(h0 * width / w0))
        method = {"nearest-exact": Image.NEAREST, "bilinear": Image.BILINEAR, "area": Image.BOX,
                  "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[upscale_method]
        frames = []
        for frame in image:
            img = Image.fromarray(frame)
            if crop == "center":  # cut the source to the target's aspect, then scale
                aspect = width / height
                if w0 / h0 > aspect:
                    cw = round(h0 * aspect)
                    img = img.crop(((w0 - cw) // 2, 0, (w0 - cw) // 2 + cw, h0))
                else:
                    ch = round(w0 / aspect)
                    img = img.crop((0, (h0 - ch) // 2, w0, (h0 - ch) // 2 + ch))
            frames.append(np.asarray(img.resize((width, height), method)))
        return (np.stack(frames),), None

    def _node_ImageBatch(self, image1: np.ndarray, image2: np.ndarray) -> tuple[tuple[Any, ...], None]:
        if image2.shape[1:3] != image1.shape[1:3]:
            h, w = image1.shape[1:3]
            image2 = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in image2])
        return (np.concatenate([image1, image2]),), None

    def _node_RepeatImageBatch(self, image: np.ndarray, amount: int) -> tuple[tuple[Any, ...], None]:
        return (np.tile(image, (amount, 1, 1, 1)),), None

    def _node_CreateVideo(self, images: np.ndarray, fps: float, audio: Any = None) -> tuple[tuple[Any, ...], None]:
        return (Video(images, float(fps)),), None

    def _save_path(self, prefix: str, ext: str, folder: Path | None = None) -> tuple[Path, str, str]:
        """ComfyUI's naming: ``<subfolder>/<name>_<counter:05>_.<ext>``, kept inside the folder."""
        folder = folder or self.output_dir
        sub, name = os.path.split(os.path.normpath(prefix))
        full = folder / sub
        if os.path.commonpath((str(folder), os.path.abspath(full))) != str(folder):
            raise ValueError("Saving image outside the output folder is not allowed.")
        full.mkdir(parents=True, exist_ok=True)
        counters = [int(m.group(1)) for p in full.iterdir()
                    if (m := re.fullmatch(re.escape(name) + r"_(\d+)_\..*", p.name))]
        counter = max(counters, default=0) + 1
        filename = f"{name}_{counter:05}_.{ext}"
        return full / filename, filename, sub

    def _encode(self, frames: np.ndarray, fps: float, path: Path, codec: str, container: str,
                options: dict[str, str]) -> None:
        import av

        h, w = (frames.shape[1] // 2) * 2, (frames.shape[2] // 2) * 2
        tmp = path.with_name("." + path.name + ".tmp")
        with av.open(str(tmp), "w", format=container) as out:
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = options
            for frame in frames:
                self._check()
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)  # /view never serves a half-written file

    def _node_SaveVideo(self, video: Video, filename_prefix: str, format: str, codec: str
                        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        path, name, sub = self._save_path(filename_prefix, "mp4")
        self._encode(video.frames, video.fps, path, "libx264", "mp4", {"preset": "ultrafast", "crf": "20"})
        return (), {"images": [{"filename": name, "subfolder": sub, "type": "output"}], "animated": [True]}

    def _node_SaveWEBM(self, images: np.ndarray, filename_prefix: str, codec: str, fps: float, crf: float
                       ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        path, name, sub = self._save_path(filename_prefix, "webm")
        encoder = "libsvtav1" if codec == "av1" else "libvpx-vp9"
        self._encode(images, fps, path, encoder, "webm", {"crf": str(int(crf)), "b": "0", "deadline": "realtime",
                                                          "cpu-used": "8"})
        return (), {"images": [{"filename": name, "subfolder": sub, "type": "output"}], "animated": [True]}

    def _save_animated(self, images: np.ndarray, filename_prefix: str, fps: float, ext: str,
                       **options: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        path, name, sub = self._save_path(filename_prefix, ext)
        frames = [Image.fromarray(f) for f in images]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), **options)
        return (), {"images": [{"filename": name, "subfolder": sub, "type": "output"}],
                    "animated": [len(frames) != 1]}

    def _node_SaveAnimatedWEBP(self, images: np.ndarray, filename_prefix: str, fps: float, lossless: bool,
                               quality: int, method: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self._save_animated(images, filename_prefix, fps, "webp", lossless=lossless, quality=quality)

    def _node_SaveAnimatedPNG(self, images: np.ndarray, filename_prefix: str, fps: float, compress_level: int
                              ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        out, ui = self._save_animated(images, filename_prefix, fps, "png", compress_level=compress_level)
        ui["animated"] = [True]
        return out, ui

    def _save_images(self, images: np.ndarray, prefix: str, folder: Path, kind: str
                     ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        results = []
        for frame in images:
            self._check()
            path, name, sub = self._save_path(prefix, "png", folder)
            Image.fromarray(frame).save(path, compress_level=1)
            results.append({"filename": name, "subfolder": sub, "type": kind})
        return (), {"images": results}

    def _node_SaveImage(self, images: np.ndarray, filename_prefix: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self._save_images(images, filename_prefix, self.output_dir, "output")

    def _node_PreviewImage(self, images: np.ndarray) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self._save_images(images, "ComfyUI_temp_" + uuid.uuid4().hex[:5], self.temp_dir, "temp")
