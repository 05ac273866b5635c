"""Qt's X11 platform plugin and the system libraries it needs, checked before Qt aborts.

When a library that Qt's xcb plugin links is missing, Qt prints "Could not load the Qt platform
plugin "xcb"", guesses at xcb-cursor, and aborts (exit 134) without naming what is really
missing. :func:`xcb_problem` runs before the QApplication is made: when Qt will pick xcb it loads
the plugin the way Qt would (``dlopen``; Qt reuses the loaded libraries, so this costs nothing
when all is well), and only when that fails asks ``ldd`` which libraries are not found and turns
them into one line with the ``apt``/``dnf`` command that installs them. With every library there
but no DISPLAY, it says so (Qt's abort would blame xcb-cursor). Any surprise fails open: Qt then
says what it says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package): what libqxcb.so and libQt6XcbQpa.so.6 link
# (plus what those link in turn on a minimal image), and libxcb-cursor, which older Qt dlopens.
# Names valid on Debian 12 and Ubuntu 22.04/24.04 (installer/linux/control.in depends on the
# xcb ones).
SYSTEM_LIBS: dict[str, tuple[str, str]] = {
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libXau.so.6": ("libxau6", "libXau"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
}
# Qt's own libraries travel with PySide6 (or the bundle): missing means a damaged install.
BUNDLED = re.compile(r"^lib(Qt6|icu|pyside6|shiboken6)")
XCB_CURSOR = "libxcb-cursor.so.0"
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")
_DLOPEN_ERROR = re.compile(r"([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file")


def platform_order(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt 6 tries, in order (QGuiApplicationPrivate's choice on Linux):
    QT_QPA_PLATFORM when set (";"-separated fallbacks, ":options" ignored); otherwise wayland
    first in a Wayland session, then xcb (Qt's default, also when DISPLAY is unset)."""
    forced = env.get("QT_QPA_PLATFORM", "").strip()
    if forced:
        return [p.split(":")[0].strip() for p in forced.split(";") if p.strip()]
    order = []
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        order.append("wayland")
    order.append("xcb")
    return order


def plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins: QT_QPA_PLATFORM_PLUGIN_PATH, QT_PLUGIN_PATH (a frozen
    bundle's run-time hook sets it), then the Qt installation's own plugin folder."""
    dirs = [Path(p) for p in env.get("QT_QPA_PLATFORM_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs += [Path(p) / "platforms" for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    from PySide6.QtCore import QLibraryInfo

    dirs.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms")
    return dirs


def find_plugin(name: str, env: Mapping[str, str]) -> Path | None:
    for d in plugin_dirs(env):
        path = d / f"libq{name}.so"
        if path.is_file():
            return path
    return None


def parse_ldd(text: str) -> dict[str, str | None]:
    """``ldd`` output -> {soname: resolved path, or None when "not found"}."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        m = _LDD_LINE.match(line)
        if m:
            found[m.group(1)] = None if m.group(2) == "not found" else m.group(2)
    return found


def ldd_missing(files: Iterable[Path], env: Mapping[str, str] | None = None) -> list[str] | None:
    """Sonames that ``ldd`` reports "not found" for any of ``files``; None when ldd is unavailable
    or fails (the caller then falls back to what dlopen said)."""
    exe = shutil.which("ldd")
    if exe is None:
        return None
    missing: list[str] = []
    ran = False
    for f in files:
        try:
            p = subprocess.run([exe, str(f)], capture_output=True, text=True, timeout=20,
                               env=dict(env) if env is not None else None)
        except (OSError, subprocess.SubprocessError):
            continue
        ran = True
        for soname, path in parse_ldd(p.stdout).items():
            if path is None and soname not in missing:
                missing.append(soname)
    return missing if ran else None


def _dlopen(target: str) -> str | None:
    """Load a library like Qt does; the loader's error, or None when it loaded."""
    import ctypes

    try:
        ctypes.CDLL(target)  # never closed: Qt loads the same one right after
    except OSError as exc:
        return str(exc)
    return None


def package_manager() -> str | None:
    """"apt" on Debian/Ubuntu (and derivatives), "dnf" on Fedora/RHEL, else None."""
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    ids = set()
    for key in ("ID", "ID_LIKE"):
        m = re.search(rf"^{key}=\"?([^\"\n]*)\"?$", text, re.MULTILINE)
        if m:
            ids.update(m.group(1).split())
    if ids & {"debian", "ubuntu"}:
        return "apt"
    if ids & {"fedora", "rhel", "centos"}:
        return "dnf"
    if shutil.which("apt-get"):
        return "apt"
    if shutil.which("dnf"):
        return "dnf"
    return None


def install_command(sonames: Iterable[str], manager: str | None, root: bool = False) -> str:
    """The command that installs the packages providing ``sonames`` (known ones only)."""
    sudo = "" if root else "sudo "
    debs = sorted({SYSTEM_LIBS[s][0] for s in sonames if s in SYSTEM_LIBS})
    rpms = sorted({SYSTEM_LIBS[s][1] for s in sonames if s in SYSTEM_LIBS})
    if not debs:
        return ""
    apt = f"{sudo}apt install {' '.join(debs)}"
    dnf = f"{sudo}dnf install {' '.join(rpms)}"
    if manager == "apt":
        return apt
    if manager == "dnf":
        return dnf
    return f"{apt} (Debian/Ubuntu) or {dnf} (Fedora)"


def describe_missing(missing: list[str], manager: str | None, root: bool = False,
                     frozen: bool = False) -> str:
    """The one line for the user: what is missing and how to get it."""
    bundled = [s for s in missing if BUNDLED.match(s)]
    system = [s for s in missing if s not in bundled]
    parts: list[str] = []
    if system:
        cmd = install_command(system, manager, root)
        unknown = [s for s in system if s not in SYSTEM_LIBS]
        text = (f"Qt's X11 platform plugin (xcb) needs system libraries that are missing: "
                f"{', '.join(system)}")
        if cmd:
            text += f"; install them with: {cmd}"
        if unknown:
            text += f" (and the package{'s' if len(unknown) > 1 else ''} providing {', '.join(unknown)})"
        parts.append(text)
    if bundled:
        fix = ("reinstall Continuity Studio" if frozen else
               f"reinstall PySide6: {Path(sys.executable).name} -m pip install --force-reinstall PySide6-Essentials")
        parts.append(f"Qt's own libraries are missing from this installation ({', '.join(bundled)}): {fix}")
    return "; ".join(parts)


def xcb_problem(env: Mapping[str, str] | None = None) -> str | None:
    """The message to print instead of Qt's abort when the xcb platform Qt is about to load
    cannot load; None when it can, when Qt will use another platform, or when unsure."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    try:
        for name in platform_order(env):
            if name.startswith("wayland"):
                plugin = find_plugin("wayland", env)
                if plugin is not None and _dlopen(str(plugin)) is None:
                    return None  # Qt takes Wayland; xcb is only its fallback
            elif name == "xcb":
                return _check_xcb(env)
            else:
                return None  # offscreen, minimal, eglfs, vnc...: not ours to judge
    except Exception:  # never stand between the user and Qt's own message
        return None
    return None


def _check_xcb(env: Mapping[str, str]) -> str | None:
    plugin = find_plugin("xcb", env)
    if plugin is None:
        return None  # Qt will say the plugin is missing (a packaging problem, not a library)
    errors = [e for e in (_dlopen(str(plugin)), _dlopen(XCB_CURSOR)) if e]
    if not errors:
        if not env.get("DISPLAY"):  # Qt would abort with a misleading hint about xcb-cursor
            return ("no display to open the window on: DISPLAY is not set and this is not a Wayland "
                    "session (run it from a desktop session, or with QT_QPA_PLATFORM=offscreen for a "
                    "window nobody sees)")
        return None
    from PySide6.QtCore import QLibraryInfo

    files = [plugin]
    qpa = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.LibrariesPath)) / "libQt6XcbQpa.so.6"
    if qpa.is_file():
        files.append(qpa)
    missing = ldd_missing(files, env)
    if missing is None:  # no ldd: the loader names the first missing library
        missing = []
    for err in errors:
        m = _DLOPEN_ERROR.search(err)
        if m and m.group(1) not in missing:
            missing.append(m.group(1))
    if not missing:
        return None  # it failed for another reason: let Qt report it
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return describe_missing(missing, package_manager(), root=root, frozen=bool(getattr(sys, "frozen", False)))
