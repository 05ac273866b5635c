"""The PyInstaller spec, checked without building: it is executed with PyInstaller's build
classes replaced by recorders (PyInstaller is a build dependency, not a test one), so the lists it
hands to PyInstaller are the ones a real build uses."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "continuity-studio.spec"
ENTRY = ROOT / "packaging" / "entry.py"


class _Recorder:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        _Recorder.calls.append((type(self).__name__, args, kwargs))
        self.pure: list[Any] = []
        self.scripts: list[Any] = []
        self.binaries: list[tuple[str, str, str]] = [
            ("PySide6/Qt/lib/libQt6Widgets.so.6", "/x", "BINARY"),
            ("PySide6/Qt/lib/libQt6Qml.so.6", "/x", "BINARY"),
            ("PySide6/Qt/plugins/platforms/libqoffscreen.so", "/x", "BINARY")]
        self.datas: list[tuple[str, str, str]] = [
            ("resources/demo/project.json", "/x", "DATA"),
            ("PySide6/Qt/qml/QtQuick/qmldir", "/x", "DATA")]


def _collect_submodules(name: str, filter: Any = None) -> list[str]:  # noqa: A002 - PyInstaller's name
    """Like PyInstaller's: the package and every submodule, found by walking its path."""
    pkg = importlib.import_module(name)
    names = [name]
    if hasattr(pkg, "__path__"):
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, name + ".")]
    return [n for n in names if filter is None or filter(n)]


@pytest.fixture(scope="module")
def spec(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = _collect_submodules  # type: ignore[attr-defined]
    hooks.collect_data_files = lambda name, **kw: [(f"/site/{name}/x", name)]  # type: ignore[attr-defined]
    hooks.copy_metadata = lambda dist: [(f"/site/{dist}.dist-info", f"{dist}.dist-info")]  # type: ignore[attr-defined]
    for mod in ("PyInstaller", "PyInstaller.utils"):
        monkeypatch_module.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch_module.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    _Recorder.calls = []
    names = {n: type(n, (_Recorder,), {}) for n in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")}
    glb: dict[str, Any] = {"SPECPATH": str(SPEC.parent), "__file__": str(SPEC), **names}
    exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), glb)
    glb["_calls"] = list(_Recorder.calls)
    return glb


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _call(spec: dict[str, Any], kind: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    found = [(a, k) for n, a, k in spec["_calls"] if n == kind]
    assert found, f"the spec never calls {kind}"
    return found[0]


def test_gpu_stack_is_excluded(spec: dict[str, Any]) -> None:
    _, kw = _call(spec, "Analysis")
    excludes = set(kw["excludes"])
    for heavy in ("torch", "torchvision", "diffusers", "transformers", "accelerate", "peft", "onnx",
                  "safetensors", "huggingface_hub", "insightface"):
        assert heavy in excludes, heavy
    assert "onnxruntime" not in excludes  # the ArcFace engine runs in the bundle (docs/PACKAGING.md)


def test_no_qt_module_the_app_uses_is_excluded(spec: dict[str, Any]) -> None:
    used = set()
    for py in (ROOT / "studio").rglob("*.py"):
        used |= set(re.findall(r"PySide6\.(Qt\w+)", py.read_text(encoding="utf-8")))
    assert {"QtCore", "QtGui", "QtWidgets"} <= used
    _, kw = _call(spec, "Analysis")
    excluded = {e.split(".", 1)[1] for e in kw["excludes"] if e.startswith("PySide6.")}
    assert excluded, "no Qt module is excluded: the bundle would carry all of PySide6"
    assert not used & excluded, f"the app imports excluded Qt modules: {used & excluded}"


def test_every_sub_command_and_backend_is_collected(spec: dict[str, Any]) -> None:
    # The CLI finds its sub-commands with pkgutil at run time: PyInstaller cannot see them.
    _, kw = _call(spec, "Analysis")
    hidden = set(kw["hiddenimports"])
    commands = {f"studio.cli.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "studio" / "cli")])}
    assert commands and commands <= hidden
    assert {"studio.engine.preview", "studio.engine.diffusers_backend", "scipy.spatial",
            "skimage.color", "otio_cmx3600_adapter"} <= hidden


def test_data_files(spec: dict[str, Any]) -> None:
    _, kw = _call(spec, "Analysis")
    datas = kw["datas"]
    assert (str(ROOT / "resources"), "resources") in datas
    assert (str(ROOT / "docs" / "GUIDE.md"), "docs") in datas  # Help ▸ User Guide
    assert any(dest == "face_recognition_models" for _, dest in datas)
    assert any("cmx3600" in dest and dest.endswith(".dist-info") for _, dest in datas)  # entry points
    # OTIO imports adapters from .py files; the GPU runtime copies studio's .py sources.
    modes = kw["module_collection_mode"]
    assert modes["studio"] == modes["opentimelineio"] == modes["otio_cmx3600_adapter"] == "pyz+py"


def test_unused_qt_payload_is_filtered(spec: dict[str, Any]) -> None:
    a = next(obj for obj in spec.values() if type(obj).__name__ == "Analysis")
    binaries = [b[0] for b in a.binaries]
    assert "PySide6/Qt/lib/libQt6Widgets.so.6" in binaries
    assert "PySide6/Qt/plugins/platforms/libqoffscreen.so" in binaries
    assert not any("Qml" in b for b in binaries)
    assert [d[0] for d in a.datas] == ["resources/demo/project.json"]


def test_executable(spec: dict[str, Any]) -> None:
    args, kw = _call(spec, "Analysis")
    assert args[0] == [str(ENTRY)]
    exe_kw = _call(spec, "EXE")[1]
    assert exe_kw["name"] == "continuity-studio"
    assert exe_kw["console"] is True and exe_kw["exclude_binaries"] is True
    assert _call(spec, "COLLECT")[1]["name"] == "continuity-studio"


def test_entry_calls_freeze_support_before_the_app() -> None:
    # Identity analysis spawns its embedding worker by re-running the executable.
    tree = ast.parse(ENTRY.read_text(encoding="utf-8"))
    main_if = next(n for n in tree.body if isinstance(n, ast.If))
    calls = [ast.unparse(n) for n in main_if.body]
    assert calls[0] == "multiprocessing.freeze_support()"
    assert any("from studio.cli import main" in c for c in calls[1:])
