"""The layer rules (docs/ARCHITECTURE.md) are enforced here, not just written down."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIO = ROOT / "studio"
# Libraries that cost seconds or hundreds of MB to import: only inside the functions using them.
HEAVY = {"torch", "diffusers", "transformers", "accelerate", "dlib", "onnxruntime", "insightface",
         "onnx", "skimage", "peft"}
# Never on the path from process start to the main window shown.
NOT_AT_STARTUP = HEAVY | {"numpy", "cv2", "av", "PIL", "opentimelineio", "psutil"}


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in tree.body:  # top-level statements only; TYPE_CHECKING blocks are skipped
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Try):
            for sub in node.body:
                if isinstance(sub, ast.Import):
                    found.update(a.name.split(".")[0] for a in sub.names)
                elif isinstance(sub, ast.ImportFrom) and sub.module and sub.level == 0:
                    found.add(sub.module.split(".")[0])
    return found


def test_no_heavy_library_imported_at_module_level() -> None:
    offenders = {}
    for path in STUDIO.rglob("*.py"):
        heavy = _module_level_imports(path) & HEAVY
        if heavy:
            offenders[str(path.relative_to(ROOT))] = sorted(heavy)
    assert not offenders, f"import these inside the functions that need them: {offenders}"


def test_only_ui_imports_qt() -> None:
    offenders = []
    for path in STUDIO.rglob("*.py"):
        if path.is_relative_to(STUDIO / "ui"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # anywhere, not only at module level
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("PySide6", "shiboken6") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_import_linter_contracts() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is a test dependency: pip install -e '.[test]'")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("demo", [False, True])
def test_startup_path_stays_light(tmp_path: Path, demo: bool) -> None:
    """Start the real app (offscreen) to its first paint and list what it imported."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_BENCH_STARTUP="1",
               CONTINUITY_STUDIO_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    probe = ("import sys, atexit, os\n"
             "_dumped = []\n"
             "def _dump():\n"
             "    if _dumped: return\n"
             "    _dumped.append(1)\n"
             "    open(os.environ['MODS_OUT'], 'w').write('\\n'.join(sorted(sys.modules)))\n"
             "atexit.register(_dump)\n"
             "import studio.ui.app as a\n"
             # The modules at the first paint (a preload task starts right after it).
             "_report = a._FirstPaint._report\n"
             "def _report_and_dump(self):\n"
             "    _dump(); _report(self)\n"
             "a._FirstPaint._report = _report_and_dump\n"
             "_orig = os._exit\n"
             "def _exit(code):\n"
             "    _dump(); _orig(code)\n"
             "os._exit = _exit\n"
             "from studio.cli import main\n"
             f"sys.exit(main({['--demo'] if demo else []!r}))\n")
    mods_out = tmp_path / "modules.txt"
    env["MODS_OUT"] = str(mods_out)
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STARTUP_SHOWN" in proc.stdout
    loaded = {m.split(".")[0] for m in mods_out.read_text().split()}
    # With the demo open, thumbnail workers may already have started decoding with PIL/numpy;
    # the ML stack must still be absent.
    forbidden = HEAVY if demo else NOT_AT_STARTUP
    assert not (loaded & forbidden), sorted(loaded & forbidden)
