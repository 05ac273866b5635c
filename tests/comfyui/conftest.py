"""Fixtures of the ComfyUI tests: a fake ComfyUI server (``fake_server.py``) per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fake_server import FakeComfyUI  # this folder is on sys.path (pytest's rootdir-less import)


@pytest.fixture(autouse=True)
def _collect_on_the_main_thread() -> Iterator[None]:
    """The fake servers' threads allocate a lot: a collection they trigger would destroy the
    Qt objects a UI test left in reference cycles off the GUI thread (a crash). Collect here,
    on the main thread, after each test (autouse: torn down after qtbot closed its widgets);
    the app does the same with studio.ui.gc_guard."""
    yield
    import gc

    gc.collect()


@pytest.fixture
def make_comfy_server() -> Iterator[Callable[..., FakeComfyUI]]:
    """A factory: ``make_comfy_server(**options)`` starts another fake server (for farms);
    every server it made is stopped after the test. Options: see ``FakeComfyUI``."""
    servers: list[FakeComfyUI] = []

    def make(**options: Any) -> FakeComfyUI:
        server = FakeComfyUI(**options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def comfy_server(make_comfy_server: Callable[..., FakeComfyUI]) -> FakeComfyUI:
    """One fake ComfyUI 0.3.64 with default options, on 127.0.0.1."""
    return make_comfy_server()


@pytest.fixture
def backend() -> Iterator[Any]:
    """The app's shared comfyui backend; tests point it at their servers with ``configure``,
    and it goes back to the settings' servers afterwards."""
    from studio.engine.registry import get_backend

    b = get_backend("comfyui")
    yield b
    b.configure(None)
