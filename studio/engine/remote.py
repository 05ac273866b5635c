"""The diffusers backend, run out of process in the managed GPU runtime.

Model lookup, capabilities, snapping and fingerprints are pure Python (safetensors headers, JSON)
and are answered here in the app, exactly as the in-process :class:`DiffusersBackend` answers them.
load / generate / unload go to a worker process (``studio.runtime.worker``) that runs the real
``DiffusersBackend`` inside the runtime. The worker is started on the first job, kept warm between
jobs (the pipeline stays cached there), and started afresh after it dies; a death mid-job fails
that job with a readable message and never takes the app down.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.engine.base import (
    Backend,
    Cancelled,
    CancelledFn,
    Capabilities,
    GenerationRequest,
    Progress,
    ProgressFn,
)

if TYPE_CHECKING:
    import numpy as np

    from studio.engine.diffusers_backend import DiffusersBackend
    from studio.engine.model_library import ModelRegistry
    from studio.runtime.client import WorkerClient
    from studio.runtime.manager import RuntimeManager

_LIVE: weakref.WeakSet[RemoteBackend] = weakref.WeakSet()


def shutdown_workers(root: Path | None = None) -> None:
    """Stop the workers of every remote backend (of the runtime at ``root``, when given)."""
    for b in list(_LIVE):
        if root is None or Path(b.manager.root) == Path(root):
            b.shutdown()


class RemoteBackend(Backend):
    name = "diffusers"
    label = "diffusers I2V (GPU runtime)"

    def __init__(self, manager: RuntimeManager | None = None, registry: ModelRegistry | None = None,
                 device: str | None = None) -> None:
        from studio.engine.diffusers_backend import DiffusersBackend
        from studio.runtime.manager import RuntimeManager

        self.manager = manager or RuntimeManager()
        self._meta: DiffusersBackend = DiffusersBackend(registry=registry)  # never loads a pipeline
        self._device = device
        self._client: WorkerClient | None = None
        self._lock = threading.RLock()
        self.last_notes: list[str] = []
        self.last_job_seconds: float | None = None
        _LIVE.add(self)

    # -- answered in the app --

    @property
    def registry(self) -> ModelRegistry:
        return self._meta.registry

    def capabilities(self, model: str | None) -> Capabilities:
        return self._meta.capabilities(model)

    def snap(self, req: GenerationRequest) -> tuple[GenerationRequest, list[str]]:
        return self._meta.snap(req)

    def model_fingerprint(self, model: str | None) -> str | None:
        return self._meta.model_fingerprint(model)

    # -- the worker --

    @property
    def client(self) -> WorkerClient:
        from studio.runtime.client import WorkerClient

        with self._lock:
            if self._client is None:
                self._client = WorkerClient(self.manager, registry=self.registry.path, device=self._device)
            return self._client

    @property
    def worker_pid(self) -> int | None:
        c = self._client
        return c.pid if c is not None and c.alive else None

    def _call(self, msg: dict[str, Any], on_progress: ProgressFn | None, cancelled: CancelledFn | None) -> dict[str, Any]:
        from studio.runtime import protocol
        from studio.runtime.client import WorkerError

        def relay(reply: dict[str, Any]) -> None:
            if on_progress is not None and reply.get("type") == "progress":
                on_progress(Progress(int(reply.get("step", 0)), int(reply.get("total", 1)),
                                     str(reply.get("stage", "generating")), str(reply.get("message", ""))))

        try:
            return self.client.call(msg, relay, cancelled)
        except WorkerError as exc:
            if exc.kind == protocol.KIND_CANCELLED:
                raise Cancelled() from None
            if exc.kind in (protocol.KIND_USER, protocol.KIND_OOM):
                raise StudioError(exc.problem) from None
            raise StudioError(f"the GPU runtime failed: {exc.problem} (details in {self.manager.worker_log})") from None

    def load(self, model: str | None, on_progress: ProgressFn | None = None) -> None:
        if not model:  # say so without starting the runtime for it
            from studio.engine.model_library import resolve_model

            resolve_model(model, self.registry)
        with self._lock:
            if on_progress is not None and not (self._client is not None and self._client.alive):
                on_progress(Progress(0, 1, "loading", "starting the GPU runtime"))
            self._call({"op": "load", "model": model}, on_progress, None)

    def generate(self, req: GenerationRequest, on_progress: ProgressFn, cancelled: CancelledFn) -> np.ndarray:
        import numpy as np

        from studio.core.userdirs import cache_dir
        from studio.runtime import protocol

        with self._lock:
            if cancelled():
                raise Cancelled()
            out_dir = cache_dir("runtime-frames")
            reply = self._call({"op": "generate", "request": protocol.request_to_json(req), "out_dir": str(out_dir)},
                               on_progress, cancelled)
            path = Path(str(reply.get("frames", "")))
            try:
                frames = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise StudioError(f"the GPU runtime's frames cannot be read: {exc}", path) from None
            finally:
                path.unlink(missing_ok=True)
            self.last_notes = [str(n) for n in reply.get("notes", [])]
            self.last_job_seconds = reply.get("seconds")
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise StudioError(f"the GPU runtime returned frames of shape {frames.shape} ({frames.dtype}), "
                                  "expected uint8 (T, H, W, 3)")
            return frames

    def unload(self) -> None:
        c = self._client
        if c is not None and c.alive:
            try:
                self._call({"op": "unload"}, None, None)
            except (StudioError, Cancelled):
                pass

    def shutdown(self) -> None:
        """Stop the worker (app exit, runtime removal). The next job starts a fresh one."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class MissingRuntimeBackend(RemoteBackend):
    """"diffusers" when neither a runtime is installed nor torch importable in the app: answers
    capabilities like the others and fails jobs with the way to get the runtime."""

    def _call(self, msg: dict[str, Any], on_progress: ProgressFn | None, cancelled: CancelledFn | None) -> dict[str, Any]:
        raise StudioError("the diffusers backend needs the GPU runtime: install it in Settings ▸ Install GPU "
                          "runtime… or run `continuity-studio runtime install` (the Preview backend works "
                          "without it)")
