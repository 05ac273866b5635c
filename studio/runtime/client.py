"""The app side of the worker protocol: start ``RUNTIME_PYTHON -m studio.runtime.worker``, wait for
its handshake, send requests, stream replies, cancel, and notice a dead worker.

Shaped like Krita AI Diffusion's ``Client``: :meth:`WorkerClient.enqueue` sends a job and returns
its id, :meth:`WorkerClient.listen` yields that job's typed :class:`WorkerMessage` s (progress, then
one result or error); :meth:`WorkerClient.call` does both and returns the result. A reader thread
turns the worker's stdout into messages on a queue, so a listener can wait for replies and poll the
job's cancel flag at the same time, and a worker that dies (crash, SIGKILL, the OOM killer) shows
up as end-of-file at once instead of a hang.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.runtime import protocol

if TYPE_CHECKING:
    from studio.runtime.manager import RuntimeManager

LOG_ROTATE_BYTES = 5 * 1024 * 1024
HELLO_TIMEOUT_S = 180.0  # first start after install: torch's import can take a minute on a cold disk


class WorkerError(StudioError):
    """A structured error reply: ``kind`` is one of protocol.ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class WorkerDied(StudioError):
    """The worker process ended while the app waited for it."""

    def __init__(self, code: int | None, detail: str = "") -> None:
        self.code = code
        what = f"exit code {code}"
        if code is not None and code < 0:
            try:
                what += f", {signal.Signals(-code).name}"
            except ValueError:
                pass
            if code == -9:
                what += ": killed, possibly by the system for lack of memory"
        super().__init__(f"the GPU runtime stopped unexpectedly ({what}); the job can be retried"
                         + (f" — {detail}" if detail else ""))


class WorkerEvent(str, Enum):
    progress = "progress"
    result = "result"
    error = "error"


@dataclass(frozen=True)
class WorkerMessage:
    """One reply about a job, typed (the raw JSON object stays in ``data``)."""

    event: WorkerEvent
    job_id: str
    step: int = 0  # progress
    total: int = 0
    stage: str = ""
    message: str = ""  # progress text or error message
    kind: str = ""  # error kind: one of protocol.ERROR_KINDS
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> WorkerMessage | None:
        """None for a reply that is not about a job (hello, or an unknown type)."""
        try:
            event = WorkerEvent(reply.get("type"))
        except ValueError:
            return None
        try:
            step, total = int(reply.get("step", 0)), int(reply.get("total", 0))
        except (TypeError, ValueError):
            step, total = 0, 0
        return cls(event, str(reply.get("id")), step, total, str(reply.get("stage", "")),
                   str(reply.get("message", "")),
                   str(reply.get("kind", protocol.KIND_INTERNAL)) if event is WorkerEvent.error else "", reply)


class WorkerClient:
    """One worker process. Calls are serialised (one job at a time, like the backend's)."""

    def __init__(self, manager: RuntimeManager, registry: Path | None = None, device: str | None = None) -> None:
        self.manager = manager
        self.registry = registry
        self.device = device
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] | None = None
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._write_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._log_fh: Any = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # -- process --

    def start(self, timeout: float = HELLO_TIMEOUT_S) -> dict[str, Any]:
        """Start the worker and wait for its hello. Raises StudioError with a repair hint when the
        runtime is broken (Python missing, torch unimportable)."""
        from studio.runtime.manager import REPAIR_HINT

        if self.alive:
            assert self.hello is not None
            return self.hello
        problem = self.manager.problem()
        if problem:
            raise StudioError(f"{problem}; " + (REPAIR_HINT if "not installed" not in problem else
                                                "install it in Settings ▸ Install GPU runtime… or run "
                                                "`continuity-studio runtime install`"))
        self._discard()
        app_path = self.manager.sync_app_sources()
        self.manager.logs.mkdir(parents=True, exist_ok=True)
        log = self.manager.worker_log
        try:
            if log.stat().st_size > LOG_ROTATE_BYTES:  # keep one previous log, not an ever-growing file
                os.replace(log, log.with_name(log.name + ".1"))
        except OSError:
            pass
        self._log_fh = open(log, "ab")
        self._log_fh.write(f"--- worker start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._log_fh.flush()
        kw: dict[str, Any] = {}
        if os.name == "posix":
            kw["start_new_session"] = True  # Ctrl-C in the app's terminal must not kill it mid-write
        self._messages = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                self.manager.worker_command(self.registry, self.device), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._log_fh, env=self.manager.worker_env(app_path), cwd=app_path, **kw)
        except OSError as exc:
            self._close_log()
            raise StudioError(f"cannot start the GPU runtime ({exc.strerror or exc}); {REPAIR_HINT}") from None
        threading.Thread(target=self._read, args=(self.proc,), name="runtime-reader", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._messages.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise StudioError(f"the GPU runtime did not start within {timeout:.0f} s; see "
                                  f"{self.manager.worker_log}") from None
            if msg is None:
                code = self._wait_exit()
                raise StudioError(f"the GPU runtime failed to start (exit code {code}); {REPAIR_HINT}; "
                                  f"details in {self.manager.worker_log}")
            if msg.get("type") == "error":  # fatal start-up error (torch cannot be imported...)
                self._wait_exit()
                raise StudioError(f"the GPU runtime is broken: {msg.get('message')}; {REPAIR_HINT}")
            if msg.get("type") == "hello":
                if msg.get("protocol") != protocol.PROTOCOL_VERSION:
                    self.kill()
                    raise StudioError(f"the GPU runtime speaks protocol {msg.get('protocol')}, this app "
                                      f"{protocol.PROTOCOL_VERSION}; {REPAIR_HINT}")
                self.hello = msg
                return msg

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        q = self._messages
        try:
            for line in iter(proc.stdout.readline, b""):
                try:
                    q.put(protocol.decode(line, "type"))
                except protocol.ProtocolError as exc:
                    # Something printed to the protocol channel: log it, keep reading.
                    self._log(f"app: ignored a malformed line from the worker ({exc}): {line[:200]!r}")
        except (OSError, ValueError):  # the pipe was closed under us (_discard)
            pass
        q.put(None)

    def _log(self, text: str) -> None:
        fh = self._log_fh
        if fh is not None and not fh.closed:
            try:
                fh.write(text.encode("utf-8", "replace") + b"\n")
                fh.flush()
            except (OSError, ValueError):
                pass

    def _wait_exit(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def send(self, msg: dict[str, Any]) -> None:
        if not self.alive:
            raise WorkerDied(self.proc.returncode if self.proc else None)
        assert self.proc is not None and self.proc.stdin is not None
        with self._write_lock:
            try:
                self.proc.stdin.write(protocol.encode(msg))
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise WorkerDied(self._wait_exit(2)) from None

    def send_raw(self, data: bytes) -> None:
        """Tests: write bytes that are not necessarily a valid message."""
        assert self.proc is not None and self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def next_message(self, timeout: float) -> dict[str, Any] | None:
        return self._messages.get(timeout=timeout)

    # -- calls --

    def enqueue(self, msg: dict[str, Any]) -> str:
        """Start the worker when needed, send job ``msg`` with a fresh id and return the id. The worker
        runs one job at a time: listen to a job before enqueueing the next (:meth:`call` does both
        under a lock)."""
        self.start()
        rid = f"r{next(self._ids)}"
        self.send(dict(msg, id=rid))
        return rid

    def listen(self, job_id: str, cancelled: Callable[[], bool] | None = None,
               timeout: float | None = None, op: str = "") -> Iterator[WorkerMessage]:
        """The messages about ``job_id`` until its result or error (included; the iterator then
        ends). When ``cancelled()`` turns true a cancel request is sent once; the worker then answers
        with a "cancelled" error. A dead worker raises WorkerDied; a job silent past ``timeout``
        seconds kills the worker and raises StudioError."""
        cancel_sent = False
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            if cancelled is not None and not cancel_sent and cancelled():
                self.send({"op": "cancel", "id": f"r{next(self._ids)}", "target": job_id})
                cancel_sent = True
            try:
                reply = self._messages.get(timeout=0.1)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    raise StudioError(f"the GPU runtime did not answer {op or job_id} within "
                                      f"{timeout:.0f} s; it was stopped") from None
                continue
            if reply is None:
                raise WorkerDied(self._wait_exit())
            if reply.get("id") != job_id:
                continue  # a late reply to an earlier, abandoned request
            msg = WorkerMessage.from_reply(reply)
            if msg is None:
                continue
            yield msg
            if msg.event is not WorkerEvent.progress:
                return

    def call(self, msg: dict[str, Any], on_message: Callable[[WorkerMessage], None] | None = None,
             cancelled: Callable[[], bool] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Enqueue request ``msg``, relay its progress to ``on_message`` and return its result reply.
        An error reply is raised as WorkerError (kind "cancelled" after a cancel), a dead worker as
        WorkerDied."""
        with self._call_lock:
            job_id = self.enqueue(msg)
            for m in self.listen(job_id, cancelled, timeout, op=str(msg.get("op", ""))):
                if m.event is WorkerEvent.result:
                    return m.data
                if m.event is WorkerEvent.error:
                    raise WorkerError(m.kind, m.message or "unknown error")
                if on_message is not None:
                    on_message(m)
        raise WorkerDied(self._wait_exit())  # not reached: listen ends with a result or an error

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit; kill it when it does not."""
        if self.alive:
            try:
                self.send({"op": "shutdown", "id": "bye"})
                self.proc.wait(timeout)  # type: ignore[union-attr]
            except (StudioError, subprocess.TimeoutExpired):
                self.kill()
        self._close_log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._close_log()

    def _discard(self) -> None:
        """Forget a dead worker: close its pipes (the reader thread ends on their EOF)."""
        proc, self.proc, self.hello = self.proc, None, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
        self._close_log()

    def _close_log(self) -> None:
        if self._log_fh is not None:
            try:
                self._log_fh.close()
            except OSError:
                pass
            self._log_fh = None
