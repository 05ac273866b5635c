"""A client for one ComfyUI server: its HTTP API (stdlib) and its websocket (``websockets``).

What it talks to, as ComfyUI 0.3.64 serves it: ``GET /system_stats``, ``/object_info``,
``/models[/<folder>]``, ``/queue``, ``/history/<id>``, ``/view``; ``POST /upload/image``,
``/prompt``, ``/interrupt`` (with a prompt id), ``/queue`` (``{"delete": [...]}``); and
``/ws?clientId=``, whose JSON messages (``execution_start``, ``execution_cached``,
``executing``, ``progress``, ``progress_state``, ``executed``, ``execution_success``,
``execution_error``, ``execution_interrupted``) and binary preview frames follow a job.

Everything a server answers is untrusted: reads are bounded, JSON shapes are checked, file names
are checked before they touch the disk (:func:`safe_output_name`), redirects and proxies are not
followed (only the servers the user added are contacted, and the token goes nowhere else). Every
failure is a :class:`ComfyError` naming the server: :class:`Unreachable` when the network or the
server went away (the job waits or moves to another server), :class:`PromptRejected` when
ComfyUI refused the workflow (in sentences the user can act on), :class:`ExecutionFailed` when a
node raised. The token never appears in a message or a repr.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import socket
import ssl
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union

from studio.core.atomic import atomic_output
from studio.core.errors import Requeue, StudioError
from studio.core.tasks import Cancelled, CancelledFn, never_cancelled
from studio.engine.comfyui.catalogue import MODEL_INPUTS, node_pack

MAX_JSON_BYTES = 64 * 2**20  # /object_info of a server with many custom node packs is ~10 MB
MAX_UPLOAD_BYTES = 100 * 2**20  # ComfyUI's default --max-upload-size
MAX_WS_MESSAGE = 32 * 2**20  # a preview frame; ComfyUI shrinks previews to 512 px
MAX_DOWNLOAD_BYTES = 8 * 2**30
_MAX_ANSWER_DEPTH = 128  # ComfyUI's answers nest under 10 levels; deeper is hostile
DEFAULT_SUBFOLDER = "continuity-studio"
IDLE_CHECK_S = 5.0  # silence on the websocket longer than this: ask the queue whether we missed the end
CANCEL_WAIT_S = 0.4  # a cancel waits this long for the server to confirm, then returns anyway
VIDEO_EXTS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi"})
# extra_data keys that carry secrets (ComfyUI strips the same two from its history)
SECRET_EXTRA_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")

_USER_AGENT = "continuity-studio"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\\:]")
_FOLDER = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_PROMPT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


# -- errors ---------------------------------------------------------------------------------------

class ComfyError(StudioError):
    """Something went wrong talking to a ComfyUI server; the message names the server."""

    def __init__(self, message: str, url: str = "") -> None:
        if url and url not in message:
            message = f"ComfyUI at {url}: {message}"
        super().__init__(message)
        self.url = url


class Unreachable(ComfyError, Requeue):
    """The server cannot be reached or went away (refused, reset, timed out, DNS, TLS, a proxy's
    502/503/504): not the job's fault, so it waits or moves to another server."""


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: the workflow cannot run on this server as it is."""

    def __init__(self, message: str, url: str = "", *, problems: Iterable[str] = (),
                 missing_models: Iterable[tuple[str, str]] = (),
                 missing_nodes: Iterable[str] = (), error_type: str = "") -> None:
        super().__init__(message, url)
        self.problems = list(problems)
        self.missing_models = list(missing_models)  # (folder, file name); folder "" when unknown
        self.missing_nodes = list(missing_nodes)  # class_type names the server does not have
        self.error_type = error_type


class ExecutionFailed(ComfyError):
    """A node raised while the server ran the job (``execution_error``)."""

    def __init__(self, message: str, url: str = "", *, node_id: str | None = None,
                 node_type: str | None = None, exception_message: str = "",
                 exception_type: str = "") -> None:
        super().__init__(message, url)
        self.node_id, self.node_type = node_id, node_type
        self.exception_message, self.exception_type = exception_message, exception_type


# -- values ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerInfo:
    """One server as the client needs it. The token is sent as ``Authorization: Bearer`` (for a
    reverse proxy in front of ComfyUI); it is left out of the repr and of every message."""

    url: str
    label: str = ""
    token: str | None = field(default=None, repr=False)
    verify_tls: bool = True

    def __post_init__(self) -> None:
        from studio.engine.comfyui.servers import normalise_url

        try:
            object.__setattr__(self, "url", normalise_url(self.url))
        except ValueError as exc:
            raise StudioError(f"not a usable ComfyUI address: {exc}") from None
        if self.token is not None:
            if not isinstance(self.token, str) or not self.token.strip():
                raise StudioError(f"the token for ComfyUI at {self.url} is empty")
            if _CONTROL.search(self.token) or len(self.token) > 4096:
                # a line break would let the token inject headers; never echo it
                raise StudioError(f"the token for ComfyUI at {self.url} contains line breaks or "
                                  f"control characters (or is longer than 4096 characters)")

    @property
    def name(self) -> str:
        return self.label or self.url


@dataclass(frozen=True)
class OutputFile:
    """A file a job wrote, as ``/history`` lists it (names already checked)."""

    node: str
    filename: str
    subfolder: str
    type: str  # "output" | "temp" | "input"
    kind: str  # "video" | "image" | "animated"

    @property
    def relpath(self) -> str:
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename


@dataclass(frozen=True)
class StepProgress:
    value: int
    max: int
    node: str | None


@dataclass(frozen=True)
class NodeStarted:
    node: str | None


@dataclass(frozen=True)
class Cached:
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class PreviewImage:
    data: bytes = field(repr=False)
    format: str  # "jpeg" | "png"


@dataclass(frozen=True)
class Finished:
    pass


Event = Union[StepProgress, NodeStarted, Cached, PreviewImage, Finished]
EventFn = Callable[[Event], None]


def safe_output_name(filename: Any, subfolder: Any = "") -> str:
    """The relative POSIX path ``subfolder/filename`` of a file a server named, after checking
    that it cannot leave the folder it is put in: plain text, no ``..``, not absolute, no
    backslash, colon, NUL or control character, no empty or ``.`` parts. ``ValueError`` (in
    words) otherwise."""
    if not isinstance(filename, str) or not isinstance(subfolder, str):
        raise ValueError("the file name and subfolder must be text")
    if not filename or len(filename) > 255:
        raise ValueError("the file name is empty or longer than 255 characters")
    if len(subfolder) > 1024:
        raise ValueError("the subfolder is longer than 1024 characters")
    for what, text in (("file name", filename), ("subfolder", subfolder)):
        if _UNSAFE_NAME.search(text):
            raise ValueError(f"the {what} {text!r} contains a backslash, colon or control character")
        if ".." in text:
            raise ValueError(f"the {what} {text!r} contains '..'")
    if "/" in filename or filename == ".":
        raise ValueError(f"the file name {filename!r} is not a plain name")
    if subfolder.startswith("/"):
        raise ValueError(f"the subfolder {subfolder!r} is an absolute path")
    parts = subfolder.split("/") if subfolder else []
    if any(part in ("", ".") for part in parts):
        raise ValueError(f"the subfolder {subfolder!r} has an empty or '.' part")
    return "/".join([*parts, filename])


def _clip(text: Any, limit: int = 300) -> str:
    """Server-supplied text made fit for a message: one line, bounded."""
    text = _CONTROL.sub(" ", str(text)).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"`{_clip(i, 120)}`" for i in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a redirect could carry the token to another host: answer it as an error instead
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class _RunState:
    prompt_id: str
    running: bool = False  # the server started our prompt
    success: bool = False  # execution_success seen
    cancel_requested: bool = False
    over: bool = False  # the server is done with it (or the cancel cleaned up): nothing to abandon


class _Done(Exception):
    """The websocket said our prompt ended (``executing`` with ``node: null``)."""


# -- the client -----------------------------------------------------------------------------------

class ComfyClient:
    """One server's API. Thread-safe for HTTP calls; ``run`` may be called from several threads
    (each run gets its own websocket session)."""

    def __init__(self, server: ServerInfo, *, client_id: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.server = server
        self.url = server.url
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout_s = float(timeout_s)
        self._ssl: ssl.SSLContext | None = None
        handlers: list[Any] = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if self.url.startswith("https:"):  # loading the CA store costs; plain http needs none
            self._ssl = ssl.create_default_context()
            if not server.verify_tls:  # the user's choice for a self-signed certificate
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=self._ssl))
        self._opener = urllib.request.build_opener(*handlers)
        self._run_lock = threading.Lock()
        self._secrets: set[str] = {server.token} if server.token else set()

    def __repr__(self) -> str:
        return f"ComfyClient({self.url!r})"

    # -- errors, scrubbed ---------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _text(self, value: Any, limit: int = 300) -> str:
        """Server-supplied text for a message: secrets out first (so clipping cannot leave half
        of one), then one bounded line."""
        return _clip(self._scrub(str(value)), limit)

    def _error(self, cls: type[ComfyError], message: str, **kw: Any) -> ComfyError:
        return cls(self._scrub(message), self.url, **kw)

    def _unreachable(self, reason: Any, what: str) -> ComfyError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            hint = ("its TLS certificate is not trusted (for a self-signed certificate, turn off "
                    "'verify TLS' for this server)")
        elif isinstance(reason, ssl.SSLError):
            hint = f"the TLS connection failed ({_clip(reason, 120)})"
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            hint = f"it did not answer within {self.timeout_s:g} s"
        elif isinstance(reason, socket.gaierror):
            hint = "the host name does not resolve"
        elif isinstance(reason, ConnectionRefusedError):
            hint = "the connection was refused (is ComfyUI running and listening there?)"
        elif isinstance(reason, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                                 http.client.IncompleteRead)):
            hint = "the connection broke off"
        else:
            hint = _clip(reason, 160) or type(reason).__name__
        return self._error(Unreachable, f"cannot reach ComfyUI at {self.url} ({what}): {hint}")

    # -- HTTP ---------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT}
        if self.server.token:
            headers["Authorization"] = f"Bearer {self.server.token}"
        return headers

    def _open(self, method: str, path: str, *, query: dict[str, str] | None = None,
              data: bytes | None = None, content_type: str | None = None,
              timeout: float | None = None) -> Any:
        """An HTTP response of any status (read it, then close it); network failures raise
        Unreachable."""
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = self._headers()
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        what = f"{method} {path}"
        try:
            return self._opener.open(req, timeout=timeout or self.timeout_s)
        except urllib.error.HTTPError as exc:  # a status answer: the caller decides
            return exc
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason, what) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._unreachable(exc, what) from None

    def _read(self, resp: Any, what: str, limit: int) -> bytes:
        try:
            body = resp.read(limit + 1)
        except (AttributeError, ValueError):  # an error answer without a body
            body = b""
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, what) from None
        finally:
            resp.close()
        if len(body) > limit:
            raise self._error(ComfyError, f"answered {what} with more than {_size(limit)}")
        return body

    def _status_error(self, status: int, what: str, resp: Any) -> ComfyError:
        if 300 <= status < 400:
            where = self._text(resp.headers.get("Location", "?"), 200)
            return self._error(ComfyError, f"answered {what} with a redirect to {where}; enter the "
                                           f"address it redirects to instead")
        if status in (401, 403):
            return self._error(ComfyError, f"refused {what} (HTTP {status}): check the token for "
                                           f"this server in Settings ▸ Generators")
        if status in (502, 503, 504):  # a reverse proxy whose ComfyUI is down
            return self._error(Unreachable, f"cannot reach ComfyUI at {self.url} ({what}): the "
                                            f"proxy in front of it answered HTTP {status}")
        if status == 404:
            return self._error(ComfyError, f"has no {what.split(' ', 1)[-1]} (HTTP 404): is this "
                                           f"address a ComfyUI server?")
        return self._error(ComfyError, f"answered {what} with HTTP {status}")

    def _parse(self, body: bytes, what: str) -> Any:
        from studio.core.safeio import parse_json

        # Strict: bounded depth, no duplicate keys (an answer is data, not trusted); NaN and
        # Infinity only in the node list, where a custom node's unbounded maximum is Infinity.
        try:
            return parse_json(body, max_depth=_MAX_ANSWER_DEPTH,
                              non_finite=what.endswith("/object_info"))
        except StudioError:
            raise self._error(ComfyError, f"answered {what} with something that is not JSON") from None

    def _call(self, method: str, path: str, *, query: dict[str, str] | None = None,
              payload: Any = None, data: bytes | None = None, content_type: str | None = None,
              timeout: float | None = None, limit: int | None = None,
              ok: tuple[int, ...] = (200,)) -> tuple[int, bytes]:
        """(status, body) for a status in ``ok``; any other status raises."""
        if payload is not None:
            data, content_type = json.dumps(payload).encode("utf-8"), "application/json"
        what = f"{method} {path}"
        resp = self._open(method, path, query=query, data=data, content_type=content_type,
                          timeout=timeout)
        status = resp.status if hasattr(resp, "status") else resp.code
        if status not in ok:
            error = self._status_error(status, what, resp)
            resp.close()
            raise error
        return status, self._read(resp, what, MAX_JSON_BYTES if limit is None else limit)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        _, body = self._call(method, path, **kw)
        return self._parse(body, f"{method} {path}")

    def _shape(self, what: str, problem: str) -> ComfyError:
        return self._error(ComfyError, f"answered {what} in an unexpected form ({problem})")

    # -- server facts -------------------------------------------------------------------------
    def system_stats(self) -> dict[str, Any]:
        data = self._json("GET", "/system_stats")
        if not isinstance(data, dict) or not isinstance(data.get("system"), dict):
            raise self._shape("GET /system_stats", "no 'system' object")
        if "devices" in data and not isinstance(data["devices"], list):
            raise self._shape("GET /system_stats", "'devices' is not a list")
        return data

    def version(self) -> str | None:
        value = self.system_stats()["system"].get("comfyui_version")
        return _clip(value, 64) if isinstance(value, str) and value else None

    def object_info(self) -> dict[str, Any]:
        # the first /object_info of a big install can take a while (it scans model folders)
        data = self._json("GET", "/object_info", timeout=max(self.timeout_s, 120.0))
        if not isinstance(data, dict):
            raise self._shape("GET /object_info", "not an object")
        return data

    def model_folders(self) -> list[str]:
        data = self._json("GET", "/models")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise self._shape("GET /models", "not a list of folder names")
        return data

    def models(self, folder: str) -> list[str]:
        """The files the server has in ``models/<folder>`` ([] for a folder it does not know)."""
        if not isinstance(folder, str) or not _FOLDER.fullmatch(folder):
            raise StudioError(f"{folder!r} is not a ComfyUI model folder name")
        status, body = self._call("GET", f"/models/{folder}", ok=(200, 404))
        if status == 404:
            return []
        data = self._parse(body, f"GET /models/{folder}")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise self._shape(f"GET /models/{folder}", "not a list of file names")
        return data

    # -- uploads ------------------------------------------------------------------------------
    def upload_image(self, path: Path, *, subfolder: str = DEFAULT_SUBFOLDER) -> str:
        """Send one image (only this file) under a content-hash name; returns the value a
        ``LoadImage`` ``image`` input takes, e.g. ``continuity-studio/<sha256[:16]>.png``."""
        from studio.core.safeio import check_regular, read_bounded

        path = Path(path)
        size = check_regular(path).st_size  # a FIFO would block the render for ever
        if size > MAX_UPLOAD_BYTES:
            raise StudioError(f"too large to send to ComfyUI ({size / 2**20:.0f} MB; the limit "
                              f"is {MAX_UPLOAD_BYTES // 2**20} MB)", path)
        data = read_bounded(path, MAX_UPLOAD_BYTES)
        return self.upload_bytes(data, path.name, subfolder=subfolder)

    def upload_bytes(self, data: bytes, name: str, subfolder: str = DEFAULT_SUBFOLDER) -> str:
        """Like :meth:`upload_image` for bytes in memory; ``name`` only gives the extension.
        Nothing is sent when the server already has the file (a re-roll uploads nothing)."""
        if len(data) > MAX_UPLOAD_BYTES:
            raise StudioError(f"{name}: too large to send to ComfyUI ({len(data) / 2**20:.0f} MB)")
        ext = PurePosixPath(str(name)).suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{1,8}", ext):
            ext = ".png"
        # 64 bits of SHA-256: collisions among one user's images are not a concern
        filename = hashlib.sha256(data).hexdigest()[:16] + ext
        try:
            safe_output_name(filename, subfolder)
        except ValueError as exc:
            raise StudioError(f"cannot upload into that subfolder: {exc}") from None
        if self._has_input(filename, subfolder, len(data)):
            return f"{subfolder}/{filename}" if subfolder else filename
        boundary = uuid.uuid4().hex
        fields = {"subfolder": subfolder, "type": "input", "overwrite": "true"}
        body = bytearray()
        for key, value in fields.items():
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                     f"{value}\r\n").encode()
        mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".webp": "image/webp"}.get(ext, "application/octet-stream")
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                 f"filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n").encode()
        body += data + f"\r\n--{boundary}--\r\n".encode()
        answer = self._json("POST", "/upload/image", data=bytes(body),
                            content_type=f"multipart/form-data; boundary={boundary}",
                            timeout=max(self.timeout_s, 60.0))
        what = "POST /upload/image"
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise self._shape(what, "no file name")
        got_sub = answer.get("subfolder", "")
        try:
            return safe_output_name(answer["name"], got_sub if isinstance(got_sub, str) else None)
        except ValueError as exc:
            raise self._error(ComfyError, f"answered {what} with an unsafe name: {exc}") from None

    def _has_input(self, filename: str, subfolder: str, size: int) -> bool:
        # HEAD: the answer says whether the file is there (and its size) without sending it back
        resp = self._open("HEAD", "/view", query={"filename": filename, "subfolder": subfolder,
                                                   "type": "input"})
        try:
            status = resp.status if hasattr(resp, "status") else resp.code
            length = resp.headers.get("Content-Length")
        finally:
            resp.close()
        return status == 200 and (length is None or length == str(size))

    # -- the queue ----------------------------------------------------------------------------
    def queue_prompt(self, graph: dict[str, Any], *, extra_data: dict[str, Any] | None = None,
                     client_id: str | None = None) -> str:
        """``POST /prompt``; the prompt id, or :class:`PromptRejected` in words."""
        if not isinstance(graph, dict) or not graph:
            raise StudioError("the workflow is empty or not an API-format graph")
        extra = dict(extra_data or {})
        self._secrets.update(str(extra[k]) for k in SECRET_EXTRA_KEYS if extra.get(k))
        payload = {"prompt": graph, "client_id": client_id or self.client_id, "extra_data": extra}
        try:
            data = json.dumps(payload).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise StudioError(f"the workflow cannot be sent as JSON: {exc}") from None
        status, body = self._call("POST", "/prompt", data=data, content_type="application/json",
                                  ok=(200, 400), timeout=max(self.timeout_s, 60.0))
        answer = self._parse(body, "POST /prompt")
        if status == 400:
            raise self._rejected(answer, graph)
        if not isinstance(answer, dict):
            raise self._shape("POST /prompt", "not an object")
        prompt_id = answer.get("prompt_id")
        if not isinstance(prompt_id, str) or not _PROMPT_ID.fullmatch(prompt_id):
            raise self._shape("POST /prompt", "no usable prompt_id")
        return prompt_id

    def queue_state(self, *, timeout: float | None = None) -> tuple[list[str], list[str]]:
        """(running prompt ids, pending prompt ids)."""
        data = self._json("GET", "/queue", timeout=timeout)
        if not isinstance(data, dict):
            raise self._shape("GET /queue", "not an object")
        out: list[list[str]] = []
        for key in ("queue_running", "queue_pending"):
            items = data.get(key, [])
            if not isinstance(items, list):
                raise self._shape("GET /queue", f"'{key}' is not a list")
            ids = []
            for item in items:
                if not isinstance(item, list) or len(item) < 2 or not isinstance(item[1], str):
                    raise self._shape("GET /queue", f"an entry of '{key}' has no prompt id")
                ids.append(item[1])
            out.append(ids)
        return out[0], out[1]

    def interrupt(self, prompt_id: str | None = None, *, timeout: float | None = None) -> None:
        """``POST /interrupt``: only that prompt when it is the one running (no id: whatever runs)."""
        self._call("POST", "/interrupt", payload={"prompt_id": prompt_id} if prompt_id else {},
                   timeout=timeout)

    def delete_pending(self, ids: list[str], *, timeout: float | None = None) -> None:
        """``POST /queue {"delete": ids}``: drop prompts that have not started."""
        self._call("POST", "/queue", payload={"delete": list(ids)}, timeout=timeout)

    # -- results ------------------------------------------------------------------------------
    def _history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        what = f"GET /history/{prompt_id}"
        data = self._json("GET", f"/history/{urllib.parse.quote(prompt_id, safe='')}")
        if not isinstance(data, dict):
            raise self._shape(what, "not an object")
        entry = data.get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise self._shape(what, "the job's entry is not an object")
        return entry

    def history(self, prompt_id: str) -> list[OutputFile]:
        """The files the job wrote (every node's ``images``/``gifs``/``videos``)."""
        entry = self._history_entry(prompt_id)
        if entry is None:
            raise self._error(ComfyError, f"has no record of the job {prompt_id} (was the server "
                                          f"restarted or its history cleared?)")
        return self._outputs_of(prompt_id, entry)

    def _outputs_of(self, prompt_id: str, entry: dict[str, Any]) -> list[OutputFile]:
        what = f"GET /history/{prompt_id}"
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            messages = status.get("messages")
            for item in messages if isinstance(messages, list) else []:
                if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
                    if item[0] == "execution_error":
                        raise self._execution_failed(item[1])
                    if item[0] == "execution_interrupted":
                        raise self._error(ComfyError, "the job was interrupted on the server")
            raise self._error(ComfyError, f"the job {prompt_id} failed on the server")
        outputs = entry.get("outputs")
        if not isinstance(outputs, dict):
            raise self._shape(what, "the job has no 'outputs'")
        files: list[OutputFile] = []
        for node, result in outputs.items():
            if not isinstance(result, dict):
                raise self._shape(what, f"the outputs of node {self._text(node, 40)} are not an object")
            animated = result.get("animated")
            animated = animated if isinstance(animated, list) else []
            for key in ("images", "gifs", "videos"):
                items = result.get(key)
                if items is None:
                    continue
                if not isinstance(items, list) or len(items) > 100_000:
                    raise self._shape(what, f"'{key}' of node {self._text(node, 40)} is not a list")
                for i, item in enumerate(items):
                    files.append(self._output_file(str(node), key, item,
                                                   bool(animated[i]) if i < len(animated) else False))
        return files

    def _output_file(self, node: str, key: str, item: Any, animated: bool) -> OutputFile:
        what = "GET /history"
        if not isinstance(item, dict):
            raise self._shape(what, f"an entry of '{key}' is not an object")
        filename, subfolder = item.get("filename"), item.get("subfolder", "")
        kind_of = item.get("type", "output")
        if kind_of not in ("output", "temp", "input"):
            raise self._shape(what, f"unknown file type {self._text(kind_of, 40)!r}")
        try:
            safe_output_name(filename, subfolder)
        except ValueError as exc:
            raise self._error(ComfyError, f"named an output file that is not safe to save: {exc}") from None
        ext = PurePosixPath(filename).suffix.lower()
        if ext in VIDEO_EXTS:
            kind = "video"
        elif animated or key == "gifs" or ext == ".gif":
            kind = "animated"
        else:
            kind = "image"
        return OutputFile(node=node, filename=filename, subfolder=subfolder, type=kind_of, kind=kind)

    def download(self, out: OutputFile, dest: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
                 cancelled: CancelledFn | None = None) -> Path:
        """``GET /view`` streamed to a temp file beside ``dest``, renamed into place when complete
        (nothing is left behind on failure); at most ``max_bytes``. Returns ``dest``."""
        try:
            safe_output_name(out.filename, out.subfolder)
        except ValueError as exc:
            raise self._error(ComfyError, f"named an output file that is not safe to save: {exc}") from None
        what = f"GET /view ({out.relpath})"
        resp = self._open("GET", "/view", query={"filename": out.filename, "subfolder": out.subfolder,
                                                  "type": out.type}, timeout=max(self.timeout_s, 30.0))
        status = resp.status if hasattr(resp, "status") else resp.code
        if status != 200:
            resp.close()
            if status == 404:
                raise self._error(ComfyError, f"has no file {out.relpath} ({out.type})")
            raise self._status_error(status, what, resp)
        length = resp.headers.get("Content-Length")
        too_big = self._error(ComfyError, f"served {out.relpath} larger than the "
                                          f"{_size(max_bytes)} allowed")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            resp.close()
            raise too_big
        check = cancelled or never_cancelled

        def write(tmp: Path) -> None:
            total = 0
            with open(tmp, "wb") as fh:
                while True:
                    try:
                        chunk = resp.read(1 << 20)
                    except (OSError, http.client.HTTPException) as exc:
                        raise self._unreachable(exc, what) from None
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > max_bytes:
                        raise too_big
                    fh.write(chunk)
                    if check():
                        raise Cancelled()
            if total == 0:
                raise self._error(ComfyError, f"served {out.relpath} empty")

        try:
            atomic_output(Path(dest), write, suffix=".part")
        except OSError as exc:
            raise StudioError(f"cannot write the download: {exc.strerror or exc}", dest) from None
        finally:
            resp.close()
        return Path(dest)

    # -- following a job ----------------------------------------------------------------------
    def run(self, graph: dict[str, Any], *, on_event: EventFn | None = None,
            cancelled: CancelledFn | None = None, extra_data: dict[str, Any] | None = None,
            poll_s: float = 0.1) -> tuple[str, list[OutputFile]]:
        """Queue ``graph`` and follow it to the end: ``(prompt_id, output files)``.

        The websocket is opened first, so no message of the job can be missed. Events go to
        ``on_event``. ``cancelled()`` turning true interrupts the running prompt (or deletes the
        pending one) and raises :class:`Cancelled` within a second."""
        emit = on_event or (lambda event: None)
        check = cancelled or never_cancelled
        if check():
            raise Cancelled()
        # ComfyUI keeps one socket per client id: a second concurrent run needs its own
        own = self._run_lock.acquire(blocking=False)
        sid = self.client_id if own else uuid.uuid4().hex
        try:
            return self._follow(sid, graph, emit, check, extra_data, poll_s)
        finally:
            if own:
                self._run_lock.release()

    def _ws_url(self, sid: str) -> str:
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={urllib.parse.quote(sid)}"

    def _connect_ws(self, sid: str) -> Any:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        uri = self._ws_url(sid)
        try:
            # entered as a context (what websockets ≥ 17.1 asks for); closed by _close_ws
            ws = contextlib.ExitStack().enter_context(connect(uri, ssl=self._ssl,
                         additional_headers=self._headers(), user_agent_header=None, proxy=None,
                         open_timeout=self.timeout_s, close_timeout=1.0, max_size=MAX_WS_MESSAGE,
                         max_queue=1024))
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise self._status_error(status, "GET /ws", exc.response) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise self._unreachable(exc, "websocket /ws") from None
        try:
            # previews with metadata (type 4 frames) carry the prompt id they belong to
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        except (OSError, WebSocketException) as exc:
            self._close_ws(ws)
            raise self._unreachable(exc, "websocket /ws") from None
        return ws

    @staticmethod
    def _close_ws(ws: Any) -> None:
        try:
            ws.close()
        except Exception:  # closing a dead socket: nothing left to do
            pass

    def _follow(self, sid: str, graph: dict[str, Any], emit: EventFn, check: CancelledFn,
                extra_data: dict[str, Any] | None, poll_s: float) -> tuple[str, list[OutputFile]]:
        holder = [self._connect_ws(sid)]  # before queueing: no message of the job is missed
        try:
            state = _RunState(self.queue_prompt(graph, extra_data=extra_data, client_id=sid))
            try:
                return self._follow_loop(holder, sid, state, emit, check, poll_s)
            except BaseException:
                if not state.over:  # on_event raised, the socket gave up…: leave the server clean
                    self._abandon(state)
                raise
        finally:
            self._close_ws(holder[0])

    def _follow_loop(self, holder: list[Any], sid: str, state: _RunState, emit: EventFn,
                     check: CancelledFn, poll_s: float) -> tuple[str, list[OutputFile]]:
        from websockets.exceptions import ConnectionClosed

        ws, prompt_id = holder[0], state.prompt_id
        last_heard = time.monotonic()
        reconnects = 0
        while True:
            if check():
                self._cancel(ws, state)
            try:
                message = ws.recv(timeout=max(0.01, poll_s))
            except TimeoutError:
                if time.monotonic() - last_heard > IDLE_CHECK_S:
                    # silence: maybe the end was lost (a proxy, another socket on our id)
                    last_heard = time.monotonic()
                    running, pending = self.queue_state()
                    if prompt_id not in running and prompt_id not in pending:
                        state.over = True
                        return self._finish(prompt_id, emit, after_silence=True)
                continue
            except ConnectionClosed:
                # the socket dropped: a server that still answers keeps the job; else requeue
                reconnects += 1
                self._close_ws(ws)
                try:
                    if reconnects > 3:
                        raise self._error(Unreachable, "the websocket keeps closing")
                    ws = holder[0] = self._connect_ws(sid)
                except Unreachable:
                    raise self._error(Unreachable, f"lost the connection to ComfyUI at {self.url} "
                                                   f"while it ran the job") from None
                last_heard = 0.0  # check the queue at once: the end may have been missed
                continue
            last_heard = time.monotonic()
            try:
                self._handle(message, state, emit)
            except _Done:
                state.over = True
                return self._finish(prompt_id, emit)

    def _finish(self, prompt_id: str, emit: EventFn, *, after_silence: bool = False
                ) -> tuple[str, list[OutputFile]]:
        entry = self._history_entry(prompt_id)
        if entry is None:
            cls = Unreachable if after_silence else ComfyError  # a restarted server lost it
            raise self._error(cls, f"ComfyUI at {self.url} no longer knows the job {prompt_id} "
                                   f"(was it restarted?)")
        files = self._outputs_of(prompt_id, entry)
        if not files:
            raise self._error(ComfyError, "finished the job but it wrote no files (does the "
                                          "workflow end in a Save node?)")
        emit(Finished())
        return prompt_id, files

    def _handle(self, message: Any, state: _RunState, emit: EventFn) -> None:
        if isinstance(message, bytes):
            preview = self._preview(message, state)
            if preview is not None:
                emit(preview)
            return
        from studio.core.safeio import parse_json

        try:
            parsed = parse_json(message, max_depth=_MAX_ANSWER_DEPTH)
        except StudioError:
            return  # custom nodes may send anything; only ComfyUI's own messages matter
        if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), dict):
            return
        kind, data = parsed.get("type"), parsed["data"]
        if data.get("prompt_id") != state.prompt_id:
            return  # another client's prompt, or a message about no prompt (status, flags)
        if kind == "execution_start":
            state.running = True
        elif kind == "execution_cached":
            nodes = data.get("nodes")
            if isinstance(nodes, list):
                emit(Cached(tuple(str(n) for n in nodes[:100_000] if isinstance(n, (str, int)))))
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                raise _Done()
            state.running = True
            emit(NodeStarted(_clip(node, 64)))
        elif kind == "progress":
            value, top = data.get("value"), data.get("max")
            if isinstance(value, (int, float)) and isinstance(top, (int, float)) and top > 0:
                node = data.get("node")
                emit(StepProgress(int(value), int(top), _clip(node, 64) if node is not None else None))
        elif kind == "execution_success":
            state.success = True
        elif kind == "execution_error":
            state.over = True
            raise self._execution_failed(data)
        elif kind == "execution_interrupted":
            state.over = True
            if state.cancel_requested:
                raise Cancelled()
            raise self._error(ComfyError, "the job was interrupted on the server (was Cancel pressed "
                                          "in ComfyUI?)")

    def _preview(self, frame: bytes, state: _RunState) -> PreviewImage | None:
        if len(frame) < 8:
            return None
        (event,) = struct.unpack(">I", frame[:4])
        if event == 1:  # PREVIEW_IMAGE: format (1 JPEG, 2 PNG), image
            if not state.running:  # type-1 frames carry no prompt id: only ours while ours runs
                return None
            (fmt,) = struct.unpack(">I", frame[4:8])
            data = bytes(frame[8:])
            return PreviewImage(data, "png" if fmt == 2 else "jpeg") if data else None
        if event == 4:  # PREVIEW_IMAGE_WITH_METADATA: length, JSON metadata, image
            (length,) = struct.unpack(">I", frame[4:8])
            if 8 + length > len(frame):
                return None
            try:
                meta = json.loads(frame[8:8 + length])
            except (ValueError, RecursionError):
                return None
            if not isinstance(meta, dict) or meta.get("prompt_id", state.prompt_id) != state.prompt_id:
                return None
            data = bytes(frame[8 + length:])
            fmt = "png" if meta.get("image_type") == "image/png" else "jpeg"
            return PreviewImage(data, fmt) if data else None
        return None  # 3: progress text; others: not ours to show

    def _cancel(self, ws: Any, state: _RunState) -> None:
        """Stop our prompt on the server, wait (briefly) for it to say so, raise Cancelled."""
        from websockets.exceptions import ConnectionClosed

        state.cancel_requested = state.over = True  # cleaned up here, whatever happens
        deadline = time.monotonic() + CANCEL_WAIT_S
        quick = 1.0
        try:
            if not state.running:
                running, pending = self.queue_state(timeout=quick)
                if state.prompt_id in pending:
                    self.delete_pending([state.prompt_id], timeout=quick)
                    # it may have started between the two calls
                    running, pending = self.queue_state(timeout=quick)
                state.running = state.prompt_id in running
            if state.running:
                self.interrupt(state.prompt_id, timeout=quick)
        except ComfyError:
            raise Cancelled() from None  # the server is gone: nothing left to clean
        while state.running and (left := deadline - time.monotonic()) > 0:
            try:
                message = ws.recv(timeout=left)
                self._handle(message, state, lambda event: None)
            except (TimeoutError, ConnectionClosed, _Done, ComfyError):
                break
        raise Cancelled()

    def _abandon(self, state: _RunState) -> None:
        """Best effort, quickly: take our prompt off the server when we stop following it."""
        try:
            running, pending = self.queue_state(timeout=1.0)
            if state.prompt_id in pending:
                self.delete_pending([state.prompt_id], timeout=1.0)
            elif state.prompt_id in running:
                self.interrupt(state.prompt_id, timeout=1.0)
        except StudioError:  # gone or refusing: nothing more we can do from here
            pass

    def _execution_failed(self, data: dict[str, Any]) -> ComfyError:
        node_id = self._text(data.get("node_id", "?"), 64)
        node_type = self._text(data.get("node_type", "?"), 100)
        exc_message = self._text(data.get("exception_message", ""), 600)
        exc_type = self._text(data.get("exception_type", ""), 100)
        text = f"failed in node {node_id} ({node_type}): {exc_message or exc_type or 'an error'}"
        if "OutOfMemory" in exc_type or re.search(r"out of memory|allocation on device", exc_message, re.I):
            text += " — the server ran out of memory: try a smaller size or fewer frames"
        return self._error(ExecutionFailed, text, node_id=node_id, node_type=node_type,
                           exception_message=exc_message, exception_type=exc_type)

    # -- a refused prompt, in words -----------------------------------------------------------
    def _rejected(self, answer: Any, graph: dict[str, Any]) -> ComfyError:
        if not isinstance(answer, dict):
            return self._shape("POST /prompt", "a refusal that is not an object")
        error = answer.get("error")
        error = error if isinstance(error, dict) else {"message": error} if isinstance(error, str) else {}
        etype = str(error.get("type", ""))
        message = self._text(error.get("message", ""), 300)
        details = self._text(error.get("details", ""), 300)
        problems: list[str] = []
        missing_models: list[tuple[str, str]] = []
        missing_nodes: list[str] = []
        if etype == "invalid_prompt" and (m := re.search(r"node (.+?) does not exist", message)):
            cls = self._text(m.group(1), 100)
            missing_nodes.append(cls)
            pack = node_pack(cls)
            problems.append(f"this workflow needs the custom node pack that provides `{cls}`"
                            + (f" ({pack})" if pack else "")
                            + f" — ComfyUI at {self.url} does not have that node (install the "
                            f"pack, e.g. with ComfyUI-Manager, and restart ComfyUI)")
        elif etype == "prompt_no_outputs":
            problems.append("the workflow has no output node (such as SaveVideo or SaveImage), "
                            "so ComfyUI has nothing to run")
        node_errors = answer.get("node_errors")
        folders: dict[str, list[str] | None] = {}  # /models/<folder>, asked once per folder
        if isinstance(node_errors, dict):
            for node_id, entry in list(node_errors.items())[:50]:
                if not isinstance(entry, dict) or not isinstance(entry.get("errors"), list):
                    continue
                class_type = self._text(entry.get("class_type", "?"), 100)
                for err in entry["errors"][:20]:
                    if isinstance(err, dict):
                        problems.append(self._node_problem(str(node_id), class_type, err, graph,
                                                           missing_models, folders))
        if not problems:
            text = f"{message}: {details}" if message and details else message or details or etype
            problems.append(f"ComfyUI refused the workflow: {text or 'no reason given'}")
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"ComfyUI at {self.url} cannot run this workflow:\n" + "\n".join(
                f"  • {p}" for p in problems)
        return self._error(PromptRejected, text, problems=[self._scrub(p) for p in problems],
                           missing_models=missing_models, missing_nodes=missing_nodes,
                           error_type=etype)

    def _folder_files(self, folder: str, seen: dict[str, list[str] | None]) -> list[str] | None:
        if folder not in seen:
            try:
                seen[folder] = self.models(folder)
            except StudioError:  # ComfyError included: the list is a courtesy, not needed
                seen[folder] = None
        return seen[folder]

    def _node_problem(self, node_id: str, class_type: str, err: dict[str, Any],
                      graph: dict[str, Any], missing_models: list[tuple[str, str]],
                      folders: dict[str, list[str] | None]) -> str:
        etype = err.get("type")
        info = err.get("extra_info") if isinstance(err.get("extra_info"), dict) else {}
        input_name = self._text(info.get("input_name", ""), 100)
        details = self._text(err.get("details", ""), 300)
        where = f"node {self._text(node_id, 40)} ({class_type})"
        if etype == "value_not_in_list":
            received = info.get("received_value")
            if received is None:
                node = graph.get(node_id)
                received = node.get("inputs", {}).get(input_name) if isinstance(node, dict) else None
            received = self._text(received, 200)
            choices: list[str] | None = None
            folder = MODEL_INPUTS.get((class_type, input_name))
            if folder is not None:
                # the files themselves: the enum may hold built-ins (VAELoader's "pixel_space"),
                # and ComfyUI leaves lists of more than 20 out of its answer
                choices = self._folder_files(folder, folders)
            config = info.get("input_config")
            if choices is None and isinstance(config, list) and config and isinstance(config[0], list):
                choices = [str(c) for c in config[0]]
            choices = [self._scrub(c) for c in choices] if choices is not None else None
            has = ("it has none" if choices == [] else f"it has: {_names(choices)}"
                   if choices is not None else "its list of files is not known")
            if folder is not None:
                missing_models.append((folder, received))
                return f"ComfyUI at {self.url} has no `{received}` in `models/{folder}` ({has})"
            if re.search(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", received, re.I):
                missing_models.append(("", received))
                return (f"ComfyUI at {self.url} has no model file `{received}` for `{input_name}` "
                        f"of {where} ({has})")
            return f"{where}: `{received}` is not a valid `{input_name}` ({has.replace('it has', 'choices')})"
        if etype == "required_input_missing":
            return f"{where} is missing its required input `{input_name or details}`"
        if etype == "custom_validation_failed":
            reason = details[len(input_name) + 3:] if details.startswith(f"{input_name} - ") else details
            return f"{where} refused `{input_name}`: {reason or 'invalid value'}"
        if etype in ("value_smaller_than_min", "value_bigger_than_max"):
            return f"{where}: `{input_name}`: {self._text(err.get('message', ''), 200)}"
        if etype == "return_type_mismatch":
            return f"{where}: `{input_name}` is linked to an output of the wrong type ({details})"
        text = self._text(err.get("message", "") or etype or "invalid", 200)
        return f"{where}: {text}" + (f" ({details})" if details else "")
