"""The diffusers backend, run out of process in the managed GPU runtime.

The runtime is a client of the engine: :class:`RemoteBackend` is an ordinary
:class:`studio.engine.base.Backend` built on the worker process (``studio.runtime.worker``, driven
through :class:`studio.runtime.client.WorkerClient`), and :func:`register` puts it in front of the
engine's in-process ``DiffusersBackend`` through the registry's provider hook — the engine never
imports the runtime.

Model lookup, capabilities, snapping and fingerprints are pure Python (safetensors headers, JSON)
and are answered here in the app, exactly as the in-process backend answers them. load / take /
unload go to the worker, which runs the real ``DiffusersBackend`` inside the runtime and encodes
each take's MP4 itself, next to the frames. The worker is started on the first job, kept warm
between jobs (the pipeline stays cached there), and started afresh after it dies; a death mid-job
fails that job with a readable message and never takes the app down.
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
    with_framing,
)

if TYPE_CHECKING:
    import numpy as np

    from studio.engine.diffusers_backend import DiffusersBackend
    from studio.engine.model_library import ModelRegistry
    from studio.engine.takes import TakeFile
    from studio.runtime.client import WorkerClient
    from studio.runtime.manager import RuntimeManager

PROVIDER_KEY = "studio.runtime"  # the registry key of this layer's "diffusers" provider
MODES = ("runtime", "in-process", "missing")

_LIVE: weakref.WeakSet[RemoteBackend] = weakref.WeakSet()
_backends: dict[str, Backend] = {}  # diffusers mode -> the shared instance the provider returns
_lock = threading.Lock()


def shutdown_workers(root: Path | None = None) -> None:
    """Stop the workers of every remote backend (of the runtime at ``root``, when given): app exit,
    and before pip or removal touch the runtime under a running worker."""
    for b in list(_LIVE):
        if root is None or Path(b.manager.root) == Path(root):
            b.shutdown()


def diffusers_mode() -> str:
    """Where "diffusers" jobs run: "runtime" (the managed GPU runtime's worker process) when one is
    installed, "in-process" when torch is importable in the app itself (developer installs, tests),
    else "missing" (jobs fail with how to install the runtime). ``STUDIO_DIFFUSERS`` forces a mode.
    Decided per job from one small file read, so an install or removal takes effect on the next job."""
    import importlib.util
    import os

    forced = os.environ.get("STUDIO_DIFFUSERS", "")
    if forced in MODES:
        return forced
    from studio.runtime.manager import RuntimeManager

    if RuntimeManager().installed():  # one small file read
        return "runtime"
    return "in-process" if importlib.util.find_spec("torch") is not None else "missing"


def provide_diffusers() -> Backend | None:
    """The registry's "diffusers" provider: the runtime's backend, or None for the engine's own
    in-process ``DiffusersBackend``."""
    mode = diffusers_mode()
    if mode == "in-process":
        return None
    with _lock:
        if mode not in _backends:
            _backends[mode] = RemoteBackend() if mode == "runtime" else MissingRuntimeBackend()
        return _backends[mode]


def register() -> None:
    """Make ``get_backend("diffusers")`` use the GPU runtime whenever one is installed. Idempotent and
    cheap (no torch, no process, no file read): the CLI, the UI and the session call it at start."""
    from studio.engine.registry import register_backend_provider

    register_backend_provider("diffusers", provide_diffusers, key=PROVIDER_KEY)


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
        from studio.runtime.client import WorkerError, WorkerMessage

        def relay(m: WorkerMessage) -> None:
            if on_progress is not None:
                on_progress(Progress(m.step, m.total or 1, m.stage or "generating", m.message))

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

    def _finish(self, reply: dict[str, Any]) -> None:
        self.last_notes = [str(n) for n in reply.get("notes", [])]
        self.last_job_seconds = reply.get("seconds")

    def generate_take(self, req: GenerationRequest, out_path: Path, fps: float, on_progress: ProgressFn,
                      cancelled: CancelledFn, *, root: Path | None = None) -> TakeFile:
        """The job path: the worker generates and encodes the MP4 itself into the project (no frames
        are handed over); the reply describes the file, which is checked here."""
        from studio.engine.takes import TakeFile, take_target
        from studio.runtime import protocol

        root = Path(root) if root is not None else Path(out_path).parent
        target = take_target(root, out_path)
        try:
            rel = target.relative_to(root)
        except ValueError:  # the same place reached through a symlink
            rel = target.resolve().relative_to(root.resolve())
        existed = target.exists()
        # The automatic framing is worked out here: the worker has no face detector.
        automatic = req.crop is None
        req = with_framing(req)
        with self._lock:
            if cancelled():
                raise Cancelled()
            try:
                reply = self._call({"op": "take", "request": protocol.request_to_json(req), "project": str(root),
                                    "video": rel.as_posix(), "fps": float(fps)}, on_progress, cancelled)
            except BaseException:
                _discard_partial(target, existed)  # a killed worker leaves its temp file behind
                raise
            self._finish(reply)
            if automatic:
                self.last_notes.append("framing: automatic, worked out in the app (the worker cut it)")
            if reply.get("video") != rel.as_posix():
                raise StudioError(f"the GPU runtime wrote the take to {reply.get('video')!r}, expected "
                                  f"{rel.as_posix()!r}", root)
            made = TakeFile.from_json(dict(reply, path=str(target)))
            try:
                size = target.stat().st_size
            except OSError:
                size = -1
            if size != made.bytes or made.frames <= 0:
                raise StudioError(f"the GPU runtime's take video is missing or incomplete ({size} bytes on disk, "
                                  f"{made.bytes} reported)", target)
            return made

    def generate(self, req: GenerationRequest, on_progress: ProgressFn, cancelled: CancelledFn) -> np.ndarray:
        """Raw frames, for callers of :meth:`Backend.generate` (tests, benchmarks, tools). Jobs go
        through :meth:`generate_take`, which never hands frames over."""
        import numpy as np

        from studio.core.userdirs import cache_dir
        from studio.runtime import protocol

        req = with_framing(req)  # as in generate_take
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
            self._finish(reply)
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


def _discard_partial(target: Path, existed: bool) -> None:
    """After a failed take: the writer's temp file (``.<stem>.<random>.part`` beside the target, left
    only when the worker was killed mid-encode) and a video that this job itself renamed into place."""
    from studio.media.video import TEMP_SUFFIX

    for tmp in target.parent.glob(f".{target.stem}.*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
    if not existed:
        target.unlink(missing_ok=True)


class MissingRuntimeBackend(RemoteBackend):
    """"diffusers" when neither a runtime is installed nor torch importable in the app: answers
    capabilities like the others and fails jobs with the way to get the runtime."""

    def _call(self, msg: dict[str, Any], on_progress: ProgressFn | None, cancelled: CancelledFn | None) -> dict[str, Any]:
        raise StudioError("the diffusers backend needs the GPU runtime: install it in Settings ▸ Install GPU "
                          "runtime… or run `continuity-studio runtime install` (the Preview backend works "
                          "without it)")
