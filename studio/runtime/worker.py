"""The worker: ``RUNTIME_PYTHON -m studio.runtime.worker [--registry PATH] [--device cpu|cuda]``.

Runs inside the GPU runtime. Reads requests (one JSON object per line) on stdin, answers on
stdout, logs to stderr (the app points it at logs/worker.log). The protocol is in
docs/RUNTIME.md and studio/runtime/protocol.py.

The main thread only reads stdin, so a ``cancel`` is seen while a job runs on the job thread; the
job's step callback checks the flag, so cancel takes effect within one denoising step.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from studio.runtime import protocol

JOB_OPS = ("load", "take", "generate", "unload", "verify")


class Worker:
    def __init__(self, out: BinaryIO, registry: Path | None, device: str | None) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self._registry_path = registry
        self._device = device
        self._backend: Any = None
        self._job: threading.Thread | None = None
        self._job_id: str | None = None
        self._cancel = threading.Event()
        self._busy = False

    def send(self, msg: dict[str, Any]) -> None:
        data = protocol.encode(msg)
        with self._out_lock:
            self._out.write(data)
            self._out.flush()

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from studio.engine.diffusers_backend import DiffusersBackend
            from studio.engine.model_library import ModelRegistry

            registry = ModelRegistry(self._registry_path) if self._registry_path else None
            self._backend = DiffusersBackend(registry=registry, device=self._device)
        return self._backend

    # -- requests --

    def handle(self, line: bytes) -> bool:
        """Handle one request line; False when the worker should exit."""
        try:
            msg = protocol.decode(line, "op")
        except protocol.ProtocolError as exc:
            self.send({"type": "error", "id": None, "kind": protocol.KIND_PROTOCOL,
                       "message": f"malformed request ignored: {exc}"})
            return True
        op, rid = msg["op"], msg.get("id")
        if op == "ping":
            self.send({"type": "result", "id": rid, "pong": True, "busy": self.busy})
        elif op == "cancel":
            target = msg.get("target")
            if self.busy and (target is None or target == self._job_id):
                self._cancel.set()
            self.send({"type": "result", "id": rid, "cancelling": self.busy})
        elif op == "shutdown":
            self._cancel.set()
            if self._job is not None:
                self._job.join(30)
            self.send({"type": "result", "id": rid, "bye": True})
            return False
        elif op in JOB_OPS:
            if self.busy:
                self.send({"type": "error", "id": rid, "kind": protocol.KIND_PROTOCOL,
                           "message": f"busy with request {self._job_id}: one job at a time"})
            else:
                self._cancel.clear()
                self._busy = True
                self._job_id = rid
                self._job = threading.Thread(target=self._run_job, args=(op, rid, msg), name=f"job-{rid}",
                                             daemon=True)
                self._job.start()
        else:
            self.send({"type": "error", "id": rid, "kind": protocol.KIND_PROTOCOL,
                       "message": f"unknown op {op!r}"})
        return True

    @property
    def busy(self) -> bool:
        return self._busy

    # -- jobs (job thread) --

    def _run_job(self, op: str, rid: str, msg: dict[str, Any]) -> None:
        from studio.core.errors import StudioError
        from studio.engine.base import Cancelled

        def progress(p: Any) -> None:
            self.send({"type": "progress", "id": rid, "step": p.step, "total": p.total, "stage": p.stage,
                       "message": p.message})

        try:
            reply = dict(getattr(self, f"_op_{op}")(msg, progress, self._cancel.is_set), type="result", id=rid)
        except Cancelled:
            reply = {"type": "error", "id": rid, "kind": protocol.KIND_CANCELLED, "message": "cancelled"}
        except protocol.ProtocolError as exc:
            reply = {"type": "error", "id": rid, "kind": protocol.KIND_PROTOCOL, "message": str(exc)}
        except StudioError as exc:
            # The backend turns an OOM it could not work around into a StudioError "out of ... memory".
            kind = protocol.KIND_OOM if str(exc.problem).startswith("out of") else protocol.KIND_USER
            reply = {"type": "error", "id": rid, "kind": kind, "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a reply; the worker lives on
            traceback.print_exc(file=sys.stderr)
            from studio.engine.memory import is_oom

            kind = protocol.KIND_OOM if isinstance(exc, Exception) and is_oom(exc) else protocol.KIND_INTERNAL
            text = str(exc).splitlines()[0][:500] if str(exc) else ""
            reply = {"type": "error", "id": rid, "kind": kind,
                     "message": f"{type(exc).__name__}: {text}" if text else type(exc).__name__}
        sys.stderr.flush()
        # Free before replying: the app may send the next job the moment it reads the reply.
        self._busy = False
        self.send(reply)

    def _op_load(self, msg: dict[str, Any], progress: Any, cancelled: Any) -> dict[str, Any]:
        b = self.backend
        memory = msg.get("memory")
        b.load(msg.get("model"), progress, memory=str(memory) if memory else None)
        info = b.loaded
        return {"model": info.name if info else None, "seconds": b.load_seconds,
                "plan": b.plan.mode if b.plan else None}

    def _op_take(self, msg: dict[str, Any], progress: Any, cancelled: Any) -> dict[str, Any]:
        """Generate and encode the take's MP4 here, where the frames are, into the project folder
        the app names (the path is checked to stay inside it); only the file's description goes
        back. The same code as the app's in-process path: Backend.generate_take → encode_take."""
        from studio.core.errors import StudioError
        from studio.engine.takes import take_target

        req = protocol.request_from_json(dict(msg.get("request") or {}))
        project, video = msg.get("project"), msg.get("video")
        if not isinstance(project, str) or not Path(project).is_absolute() or not Path(project).is_dir():
            raise protocol.ProtocolError(f"project {project!r} is not an absolute path of a folder")
        if not isinstance(video, str) or not video or Path(video).is_absolute():
            raise protocol.ProtocolError(f"video {video!r} is not a project-relative path")
        try:
            target = take_target(Path(project), video)
            fps = float(msg.get("fps") or req.fps)
        except (StudioError, TypeError, ValueError) as exc:
            raise protocol.ProtocolError(f"invalid take target: {exc}") from None
        if not fps > 0:
            raise protocol.ProtocolError(f"invalid fps {fps}")
        req = req.with_changes(references=_inside(Path(project), req.references, "reference"))
        t0 = time.perf_counter()
        made = self.backend.generate_take(req, target, fps, progress, cancelled, root=Path(project))
        info = made.to_json()
        del info["path"]  # the app knows where it asked for it; the relative path is echoed instead
        return dict(info, video=video, seconds=round(time.perf_counter() - t0, 3),
                    notes=[str(n) for n in self.backend.last_notes],
                    plan=self.backend.plan.mode if self.backend.plan else None)

    def _op_generate(self, msg: dict[str, Any], progress: Any, cancelled: Any) -> dict[str, Any]:
        """Raw frames as a .npy file (Backend.generate callers: tests, benchmarks); jobs use take."""
        import numpy as np

        req = protocol.request_from_json(dict(msg.get("request") or {}))
        out_dir = Path(str(msg.get("out_dir") or ""))
        if not out_dir.is_dir():
            raise protocol.ProtocolError(f"out_dir {out_dir} is not a folder")
        t0 = time.perf_counter()
        frames = self.backend.generate(req, progress, cancelled)
        seconds = time.perf_counter() - t0
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        # Written then renamed: the app never sees a half-written file.
        path = out_dir / f"frames-{os.getpid()}-{msg.get('id')}.npy"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, frames, allow_pickle=False)
        os.replace(tmp, path)
        return {"frames": str(path), "shape": list(frames.shape), "seconds": round(seconds, 3),
                "notes": [str(n) for n in self.backend.last_notes],
                "plan": self.backend.plan.mode if self.backend.plan else None}

    def _op_unload(self, msg: dict[str, Any], progress: Any, cancelled: Any) -> dict[str, Any]:
        if self._backend is not None:
            self._backend.unload()
        return {"unloaded": True}

    def _op_verify(self, msg: dict[str, Any], progress: Any, cancelled: Any) -> dict[str, Any]:
        from studio.runtime.verify import run_verify

        return run_verify(progress, cancelled, device=self._device)


def _inside(project: Path, paths: tuple[Path, ...], what: str) -> tuple[Path, ...]:
    """``paths`` (absolute, or relative to ``project``) resolved, each checked to lie inside the
    project folder: a take's bible references are the project's own assets, and the worker reads
    only what the project holds."""
    root = project.resolve()
    out = []
    for p in paths:
        full = (p if p.is_absolute() else root / p).resolve()
        if not full.is_relative_to(root):
            raise protocol.ProtocolError(f"{what} image {str(p)!r} is outside the project folder {root}")
        out.append(full)
    return tuple(out)


def _versions() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "cuda": bool(torch.cuda.is_available()), "torch_cuda": torch.version.cuda,
                            "torch_hip": getattr(torch.version, "hip", None)}
    info["device"] = "cuda" if info["cuda"] else "cpu"
    info["device_name"] = torch.cuda.get_device_name(0) if info["cuda"] else ""
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="studio.runtime.worker")
    parser.add_argument("--registry", type=Path, help="models.json of the app (default: the user's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when available")
    args = parser.parse_args(argv)

    # The protocol owns the real stdout; anything a library prints goes to stderr (the log).
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer

    try:
        versions = _versions()
    except BaseException as exc:  # noqa: BLE001 - a broken runtime must say so, not just exit
        traceback.print_exc(file=sys.stderr)
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        out.write(protocol.encode({"type": "error", "id": None, "kind": protocol.KIND_INTERNAL, "fatal": True,
                                   "message": f"torch cannot be imported ({type(exc).__name__}: {text})"}))
        return 3
    try:
        import diffusers

        versions["diffusers"] = diffusers.__version__
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        out.write(protocol.encode({"type": "error", "id": None, "kind": protocol.KIND_INTERNAL, "fatal": True,
                                   "message": f"diffusers cannot be imported ({type(exc).__name__}: {exc})"}))
        return 3
    try:  # the worker encodes takes itself; a runtime installed before that needs a repair
        import av

        versions["av"] = av.__version__
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        out.write(protocol.encode({"type": "error", "id": None, "kind": protocol.KIND_INTERNAL, "fatal": True,
                                   "message": f"PyAV (av) cannot be imported ({type(exc).__name__}: {exc})"}))
        return 3
    if args.device:
        versions["device"] = args.device
    worker = Worker(out, args.registry, args.device)
    worker.send(dict(versions, type="hello", id=None, protocol=protocol.PROTOCOL_VERSION, pid=os.getpid()))
    print(f"worker {os.getpid()} ready: {versions}", file=sys.stderr, flush=True)
    while True:
        line = stdin.readline(protocol.MAX_LINE + 1)
        if not line:  # the app closed the pipe (or died): stop
            worker._cancel.set()
            break
        if len(line) > protocol.MAX_LINE and not line.endswith(b"\n"):
            stdin.readline()  # drop the rest of the oversized line
            worker.send({"type": "error", "id": None, "kind": protocol.KIND_PROTOCOL,
                         "message": f"request longer than {protocol.MAX_LINE} bytes ignored"})
            continue
        if not worker.handle(line):
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
