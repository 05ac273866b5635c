"""The GPU runtime made with ``--system-site-packages`` from a Python that is itself a venv's
(``./studio.sh test`` runs the suite in one): the runtime must see that venv's packages, or pip
finds nothing satisfied and fails (issue 14, finding 2). And when pip fails, its own reason is in
the error, not "see the log"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.errors import StudioError
from studio.runtime.manager import (
    _VENV_SITE_DIRS,
    BASE_SITE_PTH,
    InstallOptions,
    RuntimeManager,
    _python_json,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="posix venv layout")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (no pip: fast) holding a marker distribution, and a .pth file pointing at one more
    folder, like an editable install."""
    root = tmp_path_factory.mktemp("base-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = _site_packages(_venv_python(venv))
    (site / "cs_marker_pkg").mkdir(parents=True)
    (site / "cs_marker_pkg" / "__init__.py").write_text("VALUE = 42\n")
    dist = site / "cs_marker_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cs-marker-pkg\nVersion: 1.0\n")
    (dist / "INSTALLER").write_text("test\n")
    (dist / "RECORD").write_text("")
    extra = root / "extra"
    extra.mkdir()
    (extra / "cs_marker_extra.py").write_text("VALUE = 7\n")
    (site / "cs_marker_extra.pth").write_text(str(extra) + "\n")
    return venv


@pytest.fixture(scope="module")
def runtime_from_venv(base_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> RuntimeManager:
    manager = RuntimeManager(tmp_path_factory.mktemp("rt") / "runtime")
    lines: list[str] = []
    old = os.environ.get("CONTINUITY_STUDIO_PYTHON")
    os.environ["CONTINUITY_STUDIO_PYTHON"] = str(_venv_python(base_venv))
    try:
        manager._create_venv(InstallOptions(system_site_packages=True), lines.append)
    finally:
        if old is None:
            os.environ.pop("CONTINUITY_STUDIO_PYTHON", None)
        else:
            os.environ["CONTINUITY_STUDIO_PYTHON"] = old
    assert manager.python.exists(), "\n".join(lines[-30:])
    return manager


def test_site_dirs_of_a_venv_and_of_a_plain_interpreter(base_venv: Path) -> None:
    dirs = _python_json(str(_venv_python(base_venv)), _VENV_SITE_DIRS)
    assert [Path(d).resolve() for d in dirs] == [_site_packages(_venv_python(base_venv)).resolve()]
    # The interpreter under any venv (this one's, when the suite runs in a venv): nothing to add.
    base = getattr(sys, "_base_executable", sys.executable)
    assert _python_json(base, _VENV_SITE_DIRS) == []


def test_runtime_from_a_venv_sees_its_packages(runtime_from_venv: RuntimeManager, base_venv: Path,
                                               tmp_path: Path) -> None:
    manager = runtime_from_venv
    own = _site_packages(manager.python)
    code = ("import json, sys, cs_marker_pkg, cs_marker_extra; "
            "print(json.dumps([cs_marker_pkg.VALUE, cs_marker_extra.VALUE, sys.path]))")
    out = subprocess.run([str(manager.python), "-c", code], capture_output=True, text=True,
                         env=manager.worker_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    value, extra, path = json.loads(out.stdout)
    assert (value, extra) == (42, 7)
    # The runtime's own packages come first: what pip installs there wins over the base's.
    resolved = [str(Path(p).resolve()) for p in path]
    base_site = str(_site_packages(_venv_python(base_venv)).resolve())
    assert resolved.index(str(own.resolve())) < resolved.index(base_site)
    # What failed in finding 2: pip, offline, must find the base venv's package already there.
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    lines: list[str] = []
    manager._pip(["cs-marker-pkg>=1.0"], InstallOptions(wheelhouse=str(empty), system_site_packages=True),
                 lines.append, None)
    assert any("already satisfied" in line for line in lines), lines
    assert (own / BASE_SITE_PTH).is_file()


def test_pip_failure_quotes_pips_reason(runtime_from_venv: RuntimeManager, tmp_path: Path) -> None:
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    with pytest.raises(StudioError) as info:
        runtime_from_venv._pip(["cs-no-such-package==9"], InstallOptions(wheelhouse=str(empty)),
                               lambda line: None, None)
    text = str(info.value)
    assert "pip failed (exit code 1) installing cs-no-such-package==9" in text
    assert "No matching distribution found for cs-no-such-package" in text  # pip's own words
    assert "see the log" not in text
