"""The check for the system libraries Qt's xcb plugin needs (studio/ui/qt_libs.py): which platform
Qt picks, ``ldd`` parsing on the real plugin, the soname -> package table against dpkg, the one
line for the user, and the app itself exiting 1 with that line instead of Qt's abort (134)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.ui import qt_libs

ROOT = Path(__file__).resolve().parents[2]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux's")
needs_ldd = pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")


def _real_plugin() -> Path:
    plugin = qt_libs.find_plugin("xcb", {})
    if plugin is None:
        pytest.skip("this PySide6 has no xcb platform plugin")
    return plugin


def _ldd(path: Path) -> str:
    return subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout


def test_platform_order() -> None:
    assert qt_libs.platform_order({}) == ["xcb"]
    assert qt_libs.platform_order({"DISPLAY": ":0"}) == ["xcb"]
    assert qt_libs.platform_order({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert qt_libs.platform_order({"XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    assert qt_libs.platform_order({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}) == ["offscreen"]
    assert qt_libs.platform_order({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    assert qt_libs.platform_order({"QT_QPA_PLATFORM": "xcb:nograb"}) == ["xcb"]


def test_no_check_when_qt_will_not_use_xcb(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    monkeypatch.setattr(qt_libs, "_check_xcb", lambda env: called.append("xcb") or "missing")
    assert qt_libs.xcb_problem({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}) is None
    assert qt_libs.xcb_problem({"QT_QPA_PLATFORM": "minimal"}) is None
    assert called == []
    if sys.platform.startswith("linux"):
        assert qt_libs.xcb_problem({"QT_QPA_PLATFORM": "xcb"}) == "missing"


@linux_only
@needs_ldd
def test_parse_ldd_of_the_real_plugin() -> None:
    plugin = _real_plugin()
    text = _ldd(plugin)
    parsed = qt_libs.parse_ldd(text)
    # Every "name => path" line, nothing else (linux-vdso and the loader have no "=>").
    assert len(parsed) == sum(1 for line in text.splitlines() if " => " in line)
    assert not any(name.startswith(("linux-vdso", "/")) for name in parsed)
    assert "libxcb.so.1" in parsed and "libQt6XcbQpa.so.6" in parsed
    for name, path in parsed.items():  # a working install: everything resolves to a real file
        assert path is not None and Path(path).is_file(), name
    assert qt_libs.ldd_missing([plugin]) == []
    assert qt_libs.xcb_problem({"DISPLAY": ":0"}) is None  # and the check says so
    # All there but nowhere to show the window: said in words, not as Qt's xcb-cursor guess.
    assert "DISPLAY is not set" in qt_libs.xcb_problem({})


@linux_only
@needs_ldd
def test_every_x11_library_the_plugin_links_is_in_the_table() -> None:
    parsed = qt_libs.parse_ldd(_ldd(_real_plugin()))
    x11 = [s for s in parsed if re.match(r"lib(xcb|xkbcommon|X11|GL|EGL)", s)]
    assert "libxcb-cursor.so.0" in qt_libs.SYSTEM_LIBS
    assert [s for s in x11 if s not in qt_libs.SYSTEM_LIBS] == []


@linux_only
@needs_ldd
@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs Debian's dpkg")
def test_table_names_the_debian_packages_that_really_own_the_libraries() -> None:
    parsed = qt_libs.parse_ldd(_ldd(_real_plugin()))
    checked = 0
    for soname, path in parsed.items():
        if soname not in qt_libs.SYSTEM_LIBS or path is None:
            continue
        out = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
        if out.returncode != 0:
            continue  # not from a package here (a hand-built library)
        owner = out.stdout.split(":")[0].strip()
        expected = qt_libs.SYSTEM_LIBS[soname][0]
        assert owner in (expected, expected + "t64"), (soname, owner, expected)  # Ubuntu 24.04's t64
        checked += 1
    assert checked >= 10


def test_the_line_names_the_libraries_and_the_command() -> None:
    missing = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    line = qt_libs.describe_missing(missing, "apt")
    assert "\n" not in line
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in line
    assert line.endswith("install them with: sudo apt install libxcb-icccm4 libxcb-keysyms1")
    assert "sudo dnf install xcb-util-keysyms xcb-util-wm" in qt_libs.describe_missing(missing, "dnf")
    both = qt_libs.describe_missing(missing, None)
    assert "apt install libxcb-icccm4 libxcb-keysyms1" in both and "dnf install" in both
    assert "install them with: apt install" in qt_libs.describe_missing(missing, "apt", root=True)
    odd = qt_libs.describe_missing(["libxcb-cursor.so.0", "libweird.so.3"], "apt")
    assert "sudo apt install libxcb-cursor0" in odd and "libweird.so.3" in odd
    damaged = qt_libs.describe_missing(["libQt6XcbQpa.so.6"], "apt")
    assert "apt install" not in damaged and "reinstall PySide6" in damaged
    assert "reinstall Continuity Studio" in qt_libs.describe_missing(["libQt6Gui.so.6"], "apt", frozen=True)


def test_ldd_not_found_lines_become_packages() -> None:
    # ldd's own format for a missing library (as on a bare Debian 12 with libxcb-cursor0 only).
    text = ("\tlinux-vdso.so.1 (0x00007ffd5b9e4000)\n"
            "\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f6b0e5c0000)\n"
            "\tlibxcb-icccm.so.4 => not found\n"
            "\tlibxcb-keysyms.so.1 => not found\n"
            "\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f6b0e0f5000)\n"
            "\t/lib64/ld-linux-x86-64.so.2 (0x00007f6b0e7f1000)\n")
    parsed = qt_libs.parse_ldd(text)
    missing = [s for s, p in parsed.items() if p is None]
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qt_libs.install_command(missing, "apt") == "sudo apt install libxcb-icccm4 libxcb-keysyms1"


def _broken_plugin_dir(tmp_path: Path) -> Path:
    """A copy of the real xcb plugin away from Qt's lib folder: its RUNPATH ($ORIGIN/../../lib)
    finds nothing, so libQt6XcbQpa.so.6 really is "not found" for ldd and for the loader."""
    platforms = tmp_path / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    shutil.copy2(_real_plugin(), platforms / "libqxcb.so")
    return platforms


def _check_in_a_fresh_process(env: dict[str, str], path: str | None = None) -> str | None:
    """xcb_problem(env) in a new Python: in this one the real plugin's libraries may already be
    loaded, and the loader would then resolve the copy's dependencies by soname."""
    code = ("import json, sys; from studio.ui import qt_libs; "
            "print(json.dumps(qt_libs.xcb_problem(json.loads(sys.argv[1]))))")
    run_env = dict(os.environ, PYTHONPATH=str(ROOT))
    if path is not None:
        run_env["PATH"] = path
    out = subprocess.run([sys.executable, "-c", code, json.dumps(env)], capture_output=True, text=True,
                         env=run_env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_only
@needs_ldd
def test_a_broken_plugin_is_named(tmp_path: Path) -> None:
    platforms = _broken_plugin_dir(tmp_path)
    assert "libQt6XcbQpa.so.6" in qt_libs.ldd_missing([platforms / "libqxcb.so"])
    line = _check_in_a_fresh_process({"DISPLAY": ":0", "QT_QPA_PLATFORM_PLUGIN_PATH": str(platforms)})
    assert line is not None and "libQt6XcbQpa.so.6" in line and "reinstall PySide6" in line
    # The same plugin where Qt will not load it: nothing to say.
    assert _check_in_a_fresh_process({"QT_QPA_PLATFORM": "offscreen",
                                      "QT_QPA_PLATFORM_PLUGIN_PATH": str(platforms)}) is None


@linux_only
def test_without_ldd_the_loaders_error_names_the_library(tmp_path: Path) -> None:
    platforms = _broken_plugin_dir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _check_in_a_fresh_process({"DISPLAY": ":0", "QT_QPA_PLATFORM_PLUGIN_PATH": str(platforms)},
                                     path=str(empty))  # no ldd on PATH
    assert line is not None and "libQt6XcbQpa.so.6" in line


def _app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "QT_QPA_PLATFORM_PLUGIN_PATH")}
    env.update(CONTINUITY_STUDIO_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), STUDIO_BENCH_STARTUP="1")
    env.update(extra)
    return env


@linux_only
@needs_ldd
def test_the_app_exits_1_with_one_line_instead_of_qts_abort(tmp_path: Path) -> None:
    platforms = _broken_plugin_dir(tmp_path)
    env = _app_env(tmp_path, DISPLAY=":97", QT_QPA_PLATFORM_PLUGIN_PATH=str(platforms))
    proc = subprocess.run([sys.executable, "-m", "studio"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # Qt itself: 134 (abort)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("continuity-studio: ") and "libQt6XcbQpa.so.6" in lines[0]
    assert "Could not load the Qt platform plugin" not in proc.stderr


@linux_only
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Xvfb)")
def test_the_check_lets_a_working_x11_start(tmp_path: Path) -> None:
    """Under a real X server (Xvfb) with all libraries present: no message, the window paints."""
    proc = subprocess.run(["xvfb-run", "-a", sys.executable, "-m", "studio"], env=_app_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STARTUP_SHOWN" in proc.stdout and "continuity-studio:" not in proc.stderr
