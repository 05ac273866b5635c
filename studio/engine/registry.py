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


def get_backend(name: str) -> Backend:
    """The shared instance of backend ``name`` (pipelines stay cached between jobs)."""
    if name not in BACKENDS:
        raise StudioError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    if name not in _instances:
        module, cls = BACKENDS[name]
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]
