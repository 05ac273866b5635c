"""Backends by name, imported lazily (the diffusers backend pulls in torch only when used).

Higher layers can put a *provider* in front of a built-in backend without the engine knowing them:
``register_backend_provider("diffusers", factory)``. Each :func:`get_backend` call asks the
providers of that name, in registration order, and uses the first backend one returns; a factory
returns ``None`` when it does not apply (e.g. no GPU runtime installed), and the built-in is used.
That is how the GPU runtime (``studio.runtime.backend.register()``, called by the CLI, the UI and
the session) runs "diffusers" jobs in its worker process while the engine never imports it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from studio.core.errors import StudioError
from studio.engine.base import Backend

BACKENDS: dict[str, tuple[str, str]] = {
    # name: (module, class); labels are shown in the shot inspector's backend menu
    "preview": ("studio.engine.preview", "PreviewBackend"),
    "diffusers": ("studio.engine.diffusers_backend", "DiffusersBackend"),
    "comfyui": ("studio.engine.comfyui.backend", "ComfyUIBackend"),
}

# Backends that may run several jobs at once (Backend.slots() > 1: a farm of ComfyUI servers).
# The others run one job at a time, and the session does not resolve them just to ask.
PARALLEL = frozenset({"comfyui"})

LABELS = {"preview": "Preview (CPU animatic)", "diffusers": "diffusers I2V (local GPU)",
          "comfyui": "ComfyUI (local or network server)"}

# A provider is asked on every get_backend call, so it must be cheap (a small file read at most)
# and return a shared instance: pipelines and worker processes stay warm between jobs.
BackendFactory = Callable[[], "Backend | None"]

_providers: dict[str, dict[str, BackendFactory]] = {}  # name -> {key: factory}, in order
_instances: dict[str, Backend] = {}  # the built-ins, by name
_active: dict[str, Backend] = {}  # what get_backend(name) returned last
_lock = threading.RLock()  # the UI thread and the generation thread both resolve backends


def backend_names() -> list[str]:
    return list(BACKENDS)


def register_backend_provider(name: str, factory: BackendFactory, key: str | None = None) -> None:
    """Try ``factory()`` before the built-in backend ``name``. Registering the same ``key`` again
    (default: the factory's qualified name) replaces it, so registration is idempotent."""
    if name not in BACKENDS:
        raise StudioError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    k = key or f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', repr(factory))}"
    with _lock:
        _providers.setdefault(name, {})[k] = factory


def unregister_backend_provider(name: str, key: str) -> None:
    with _lock:
        _providers.get(name, {}).pop(key, None)


def backend_providers(name: str) -> list[str]:
    """The keys of the providers registered for ``name``, in the order they are tried."""
    with _lock:
        return list(_providers.get(name, {}))


def _release(backend: Backend) -> None:
    # A worker process is stopped, an in-process pipeline freed.
    release = getattr(backend, "shutdown", None)
    (release if callable(release) else backend.unload)()


def get_backend(name: str) -> Backend:
    """The shared instance of backend ``name`` (pipelines stay cached between jobs)."""
    if name not in BACKENDS:
        raise StudioError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    with _lock:
        backend: Backend | None = None
        for factory in list(_providers.get(name, {}).values()):
            backend = factory()
            if backend is not None:
                break
        if backend is None:
            if name not in _instances:
                module, cls = BACKENDS[name]
                _instances[name] = getattr(importlib.import_module(module), cls)()
            backend = _instances[name]
        previous = _active.get(name)
        if previous is not None and previous is not backend:
            # What serves this name changed (the GPU runtime was installed or removed meanwhile):
            # free the old one's memory or worker process.
            if _instances.get(name) is previous:
                del _instances[name]
            _release(previous)
        _active[name] = backend
        return backend
