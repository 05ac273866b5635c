"""One real GPU runtime for the whole session, made from this Python's own packages.

``install --system-site-packages`` with an empty wheelhouse: the venv sees the torch/diffusers
installed here, so pip's install step finds everything satisfied without any network, while the
venv, the probe, the app-source sync, the worker and the verification are the real ones. This
Python may itself be a venv's (``./studio.sh test``): the manager then links that venv's packages
into the runtime (tests/runtime/test_runtime_venv.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tiny_pipelines

INSTALL_LOG_TAIL = 40


class RuntimeEnv:
    def __init__(self, home: Path, manager, install_log: list[str], registry_path: Path, model: Path) -> None:
        self.home = home
        self.manager = manager
        self.install_log = install_log
        self.registry_path = registry_path
        self.model = model


@pytest.fixture(scope="session")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> RuntimeEnv:
    import tiny_pipelines as tp

    from studio.core.errors import StudioError
    from studio.engine.model_library import ModelRegistry
    from studio.runtime.manager import InstallOptions, RuntimeManager

    home = tmp_path_factory.mktemp("runtime-home")
    wheelhouse = tmp_path_factory.mktemp("empty-wheelhouse")
    manager = RuntimeManager(home / "data" / "runtime")  # where data_dir("runtime") points for home
    lines: list[str] = []
    problem: StudioError | None = None
    try:
        manager.install(InstallOptions(wheelhouse=str(wheelhouse), system_site_packages=True), log=lines.append)
    except StudioError as exc:
        problem = exc
    if problem is not None:  # the install log's tail is the reason (pip's or venv's), not "see the log"
        tail = "\n".join(lines[-INSTALL_LOG_TAIL:])
        pytest.fail(f"the GPU runtime did not install from {sys.executable}: {problem}\n"
                    f"--- last {INSTALL_LOG_TAIL} lines of the install log ---\n{tail}", pytrace=False)
    model = tp.save_tiny_pipeline("wan21", tmp_path_factory.mktemp("rt-models") / "wan21")
    registry_path = home / "config" / "models.json"  # config_dir() for home: the app's default registry
    ModelRegistry(registry_path).add_folder(model)
    env = RuntimeEnv(home, manager, lines, registry_path, model)
    yield env
    from studio.runtime.backend import shutdown_workers

    shutdown_workers()
