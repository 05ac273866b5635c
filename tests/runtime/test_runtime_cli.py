"""``continuity-studio runtime ...`` exit codes and messages, which backend "diffusers" resolves to,
and a headless render whose diffusers jobs run in the runtime's worker process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.cli import main
from studio.core.errors import StudioError
from studio.engine import registry
from studio.engine.diffusers_backend import DiffusersBackend
from studio.runtime import backend as runtime_backend
from studio.runtime.backend import MissingRuntimeBackend, RemoteBackend
from studio.runtime.manager import RuntimeManager


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """Empty backend caches (the engine's built-ins and the runtime provider's), the runtime's
    provider registered as the CLI/UI/session register it; yields the provider's instances."""
    provided: dict = {}
    builtins: dict = {}
    monkeypatch.setattr(registry, "_instances", builtins)
    monkeypatch.setattr(registry, "_active", {})
    monkeypatch.setattr(registry, "_providers", {})
    monkeypatch.setattr(runtime_backend, "_backends", provided)
    runtime_backend.register()
    yield provided
    for b in [*provided.values(), *builtins.values()]:
        getattr(b, "shutdown", b.unload)()


def _fake_runtime(home: Path, python: bool) -> RuntimeManager:
    """A runtime folder whose state says installed; its Python exists or not (no real venv)."""
    m = RuntimeManager(home / "data" / "runtime")
    m.write_state({"installed": True, "options": {}, "packages": {"torch": "2.13.0"}})
    if python:
        m.python.parent.mkdir(parents=True)
        m.python.write_text("")
    return m


def test_status_of_the_installed_runtime(runtime_env, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(runtime_env.home))
    assert main(["runtime", "status"]) == 0
    out = capsys.readouterr().out
    assert "installed" in out and "torch build cpu" in out and "torch 2." in out and "verified: 2" in out
    assert main(["runtime", "status", "--json", "--quick"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["installed"] and data["problem"] is None and data["state"]["verify"]["frames"] == 5


def test_status_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path))
    assert main(["runtime", "status"]) == 2
    assert "not installed" in capsys.readouterr().out
    _fake_runtime(tmp_path, python=False)
    assert main(["runtime", "status", "--quick"]) == 3
    assert "Python is missing" in capsys.readouterr().out
    assert main(["runtime", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "runtime repair" in err


def test_install_errors_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path))
    assert main(["runtime", "install", "--wheelhouse", str(tmp_path / "nowhere")]) == 1
    assert "wheelhouse folder does not exist" in capsys.readouterr().err
    assert main(["runtime", "install", "--torch", "cuda99"]) == 1
    assert "unknown torch build" in capsys.readouterr().err
    m = _fake_runtime(tmp_path, python=True)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "keep.txt").write_text("user settings")
    assert main(["runtime", "remove"]) == 0
    assert not m.root.exists() and (tmp_path / "config" / "keep.txt").exists()
    assert main(["runtime", "detect"]) == 0
    assert "torch build: cpu" in capsys.readouterr().out


def test_diffusers_resolves_by_what_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 fresh_registry: dict) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path))
    monkeypatch.delenv("STUDIO_DIFFUSERS", raising=False)
    # No runtime, torch importable here (developer installs, the other tests): in process.
    assert type(registry.get_backend("diffusers")) is DiffusersBackend
    assert not (tmp_path / "data" / "runtime").exists()  # looking does not create the runtime folder
    _fake_runtime(tmp_path, python=True)
    b = registry.get_backend("diffusers")
    assert type(b) is RemoteBackend and list(fresh_registry) == ["runtime"]
    assert "diffusers" not in registry._instances  # the in-process one was let go (pipeline freed)
    assert registry.get_backend("diffusers") is b  # shared while nothing changes
    monkeypatch.setenv("STUDIO_DIFFUSERS", "missing")  # as in a bundle without torch and no runtime
    missing = registry.get_backend("diffusers")
    assert isinstance(missing, MissingRuntimeBackend) and list(fresh_registry) == ["runtime", "missing"]
    assert missing.capabilities(None).frame_step == 4  # the inspector still works
    with pytest.raises(StudioError, match="needs the GPU runtime: install it"):
        missing.load("any")
    assert registry.get_backend("preview").name == "preview"


def test_the_runtime_reaches_the_engine_only_through_its_registered_provider(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: dict) -> None:
    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(tmp_path))
    monkeypatch.delenv("STUDIO_DIFFUSERS", raising=False)
    _fake_runtime(tmp_path, python=True)
    runtime_backend.register()  # idempotent: the CLI, the UI and the session may all call it
    assert registry.backend_providers("diffusers") == [runtime_backend.PROVIDER_KEY]
    assert type(registry.get_backend("diffusers")) is RemoteBackend
    # Without the provider the engine knows only its own backend, even with a runtime installed.
    registry.unregister_backend_provider("diffusers", runtime_backend.PROVIDER_KEY)
    assert type(registry.get_backend("diffusers")) is DiffusersBackend
    with pytest.raises(StudioError, match="unknown backend"):
        registry.register_backend_provider("nope", lambda: None)


def test_registering_is_cheap_and_the_cli_does_it(tmp_path: Path) -> None:
    """register() imports neither torch nor numpy and starts nothing; `continuity-studio <command>`
    registers before running the command."""
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from studio.runtime.backend import register, PROVIDER_KEY\n"
            "register(); register()\n"
            "from studio.engine import registry\n"
            "assert registry.backend_providers('diffusers') == [PROVIDER_KEY]\n"
            "heavy = {'torch', 'numpy', 'diffusers', 'av'} & {m.split('.')[0] for m in sys.modules}\n"
            "assert not heavy, heavy\n"
            "from studio.cli import main\n"
            "from studio.engine import registry as r\n"
            "r._providers.clear()\n"
            "main(['validate', sys.argv[1]])\n"
            "assert r.backend_providers('diffusers') == [PROVIDER_KEY]\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nowhere")], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "CONTINUITY_STUDIO_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_render_runs_diffusers_jobs_in_the_runtime(runtime_env, tmp_path: Path, photo_png: Path,
                                                   monkeypatch: pytest.MonkeyPatch, fresh_registry: dict,
                                                   capsys: pytest.CaptureFixture) -> None:
    import tiny_pipelines as tp
    from engine_fixtures import make_project

    from studio.core.model import CharacterLora
    from studio.core.persistence import load_project
    from studio.engine.takes import read_sidecar
    from studio.media.video import probe

    monkeypatch.setenv("CONTINUITY_STUDIO_HOME", str(runtime_env.home))
    monkeypatch.delenv("STUDIO_DIFFUSERS", raising=False)
    folder = tmp_path / "p"
    doc = make_project(folder, photo_png, shots=1)
    tp.write_tiny_lora(folder / "assets" / "face.safetensors", "wan21")
    char = doc.project.characters[0]
    doc.update_character(char.id, lora=CharacterLora(path="assets/face.safetensors", weight=0.7))
    shot = doc.project.shots[0]
    doc.update_shot(shot.id, backend="diffusers", model=runtime_env.model.name)  # by its registered name
    doc.save()
    rc = main(["render", str(folder), "--size", "30x30", "--frames", "6", "--steps", "2"])
    assert rc == 0, capsys.readouterr().err
    assert isinstance(fresh_registry["runtime"], RemoteBackend)
    assert fresh_registry["runtime"].worker_pid is not None
    (take,) = load_project(folder).shot(shot.id).takes
    info = probe(folder / take.video)
    assert (info.width, info.height, info.frames) == (32, 32, 5)
    side = read_sidecar(folder / take.sidecar)
    assert side["backend"]["label"] == "diffusers I2V (GPU runtime)" and side["backend"]["model_fingerprint"]
    assert any(n.startswith("memory:") for n in side["backend_notes"])
    assert side["request"]["loras"] == [{"path": "assets/face.safetensors", "weight": 0.7}]
    assert side["timings"]["encode_s"] > 0 and side["timings"]["generate_s"] > 0
    # The worker encoded the MP4 in the project; no frames were handed over as .npy.
    from studio.core.userdirs import cache_dir

    assert not list(cache_dir("runtime-frames").glob("*.npy"))
    assert sorted(p.name for p in (folder / take.video).parent.iterdir()) == sorted(
        [Path(take.video).name, Path(take.sidecar).name])
