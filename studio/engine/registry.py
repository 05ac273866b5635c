"""Backends by name, imported lazily (the diffusers backend pulls in torch only when used)."""

from __future__ import annotations

import importlib

from studio.core.errors import StudioError
from studio.engine.base import Backend

BACKENDS: dict[str, tuple[str, str]] = {
    # name: (module, class); labels are shown in the shot inspector's backend menu
    "preview": ("studio.engine.preview", "PreviewBackend"),
    "diffusers": ("studio.engine.diffusers_backend", "DiffusersBackend"),
}

LABELS = {"preview": "Preview (CPU animatic)", "diffusers": "diffusers I2V (local GPU)"}

_instances: dict[str, Backend] = {}


def backend_names() -> list[str]:
    return list(BACKENDS)


def diffusers_mode() -> str:
    """Where "diffusers" jobs run: "runtime" (the managed GPU runtime's worker process) when one is
    installed, "in-process" when torch is importable in the app itself (developer installs, tests),
    else "missing" (jobs fail with how to install the runtime). ``STUDIO_DIFFUSERS`` forces a mode."""
    import importlib.util
    import os

    forced = os.environ.get("STUDIO_DIFFUSERS", "")
    if forced in ("runtime", "in-process", "missing"):
        return forced
    from studio.runtime.manager import RuntimeManager

    if RuntimeManager().installed():  # one small file read
        return "runtime"
    return "in-process" if importlib.util.find_spec("torch") is not None else "missing"


def get_backend(name: str) -> Backend:
    """The shared instance of backend ``name`` (pipelines stay cached between jobs)."""
    if name not in BACKENDS:
        raise StudioError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    key = name
    if name == "diffusers":
        mode = diffusers_mode()
        key = f"{name}:{mode}"
        if mode != "in-process":
            module = "studio.engine.remote"
            cls = "RemoteBackend" if mode == "runtime" else "MissingRuntimeBackend"
        for old in [k for k in _instances if k.startswith(name + ":") and k != key]:
            stale = _instances.pop(old)  # the runtime was installed or removed meanwhile
            getattr(stale, "shutdown", stale.unload)()
    if key not in _instances:
        _instances[key] = getattr(importlib.import_module(module), cls)()
    return _instances[key]
