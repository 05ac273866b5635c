"""The worker's error replies, in process: each failure a job can meet becomes one structured
message of the right kind and the worker goes on. The GPU out-of-memory case cannot happen on this
machine, so a stand-in backend raises torch's real ``OutOfMemoryError`` type (what CUDA raises)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from studio.core.errors import StudioError
from studio.engine.base import Cancelled
from studio.runtime import protocol
from studio.runtime.worker import Worker


class _RaisingBackend:
    """Stands in for DiffusersBackend: raises whatever the test sets (only a GPU could really)."""

    def __init__(self) -> None:
        self.exc: BaseException | None = None
        self.last_notes: list[str] = []
        self.plan = None

    def generate(self, req, progress, cancelled):  # type: ignore[no-untyped-def]
        assert self.exc is not None
        raise self.exc

    def generate_take(self, req, out_path, fps, progress, cancelled, *, root=None):  # type: ignore[no-untyped-def]
        return self.generate(req, progress, cancelled)


def _reply(worker: Worker, out: io.BytesIO, line: bytes) -> dict:
    out.seek(0)
    out.truncate()
    worker.handle(line)
    if worker._job is not None:
        worker._job.join(30)
    return json.loads(out.getvalue().decode().strip().splitlines()[-1])


@pytest.mark.parametrize("make_exc,kind,text", [
    (lambda torch: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom",
     "OutOfMemoryError: CUDA out of memory"),
    (lambda torch: StudioError("out of GPU memory generating 832x480, 81 frames even in mode 'x'"), "oom",
     "out of GPU memory"),
    (lambda torch: StudioError("model.safetensors is not a valid safetensors file", "/m"), "user",
     "/m: model.safetensors is not a valid"),
    (lambda torch: Cancelled(), "cancelled", "cancelled"),
    (lambda torch: RuntimeError("CUDA error: an illegal memory access was encountered\nmore"), "internal",
     "RuntimeError: CUDA error: an illegal memory access was encountered"),
    (lambda torch: KeyError("transformer"), "internal", "KeyError: 'transformer'"),
])
def test_job_failures_become_structured_errors(make_exc, kind: str, text: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    import torch

    out = io.BytesIO()
    worker = Worker(out, None, "cpu")
    worker._backend = _RaisingBackend()
    worker._backend.exc = make_exc(torch)
    req = {"start_image": str(tmp_path / "a.png"), "prompt": "", "width": 32, "height": 32, "num_frames": 5,
           "fps": 16, "seed": 1}
    # Both job paths: raw frames (generate) and the take the worker encodes itself (take).
    for msg in ({"op": "generate", "id": "g1", "request": req, "out_dir": str(tmp_path)},
                {"op": "take", "id": "g1", "request": req, "project": str(tmp_path), "video": "takes/s/t.mp4"}):
        reply = _reply(worker, out, protocol.encode(msg))
        assert reply["type"] == "error" and reply["id"] == "g1" and reply["kind"] == kind, msg["op"]
        assert reply["message"].startswith(text)
        assert "\n" not in reply["message"]
        assert not worker.busy  # free for the next job
    pong = _reply(worker, out, b'{"op": "ping", "id": "p"}\n')
    assert pong == {"type": "result", "id": "p", "pong": True, "busy": False}
    if kind == "internal":
        assert "Traceback" in capsys.readouterr().err  # the details go to the worker log


def test_one_job_at_a_time_and_shutdown(tmp_path: Path) -> None:
    import threading

    out = io.BytesIO()
    worker = Worker(out, None, "cpu")
    release = threading.Event()

    class Slow(_RaisingBackend):
        def generate(self, req, progress, cancelled):  # type: ignore[no-untyped-def]
            while not cancelled():
                release.wait(0.01)
            raise Cancelled()

    worker._backend = Slow()
    req = {"start_image": "a.png", "width": 32, "height": 32, "num_frames": 5, "fps": 16, "seed": 1}
    worker.handle(protocol.encode({"op": "generate", "id": "g1", "request": req, "out_dir": str(tmp_path)}))
    worker.handle(protocol.encode({"op": "load", "id": "l2", "model": "x"}))
    busy = json.loads(out.getvalue().decode().splitlines()[-1])
    assert (busy["id"], busy["kind"]) == ("l2", "protocol") and "busy with request g1" in busy["message"]
    assert worker.handle(protocol.encode({"op": "shutdown", "id": "s"})) is False  # cancels g1, waits
    lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert {"type": "error", "id": "g1", "kind": "cancelled", "message": "cancelled"} in lines
    assert lines[-1] == {"type": "result", "id": "s", "bye": True}
