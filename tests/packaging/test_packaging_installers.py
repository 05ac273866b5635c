"""Installer recipes without a built bundle: the .desktop entry, MIME type, control template,
icons, the shell scripts, and build-deb.sh run on a tiny fake bundle (a real .deb, inspected
with dpkg-deb). The real bundle is built and installed by packaging/build.sh, smoke.sh and
installer/linux/test-deb.sh."""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "installer" / "linux"
ICONS = ROOT / "resources" / "icons"
SCRIPTS = [ROOT / "packaging" / "build.sh", ROOT / "packaging" / "smoke.sh",
           LINUX / "build-deb.sh", LINUX / "test-deb.sh"]
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def _make_icon_module():  # packaging/ is not a package (and `packaging` is PyPA's name)
    spec = importlib.util.spec_from_file_location("cs_make_icon", ROOT / "packaging" / "make_icon.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _desktop() -> configparser.SectionProxy:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # keys are case-sensitive
    cp.read(LINUX / "continuity-studio.desktop", encoding="utf-8")
    return cp["Desktop Entry"]


def _mime_type() -> ET.Element:
    root = ET.parse(LINUX / "continuity-studio-mime.xml").getroot()
    types = root.findall(f"{MIME_NS}mime-type")
    assert len(types) == 1
    return types[0]


def test_desktop_entry() -> None:
    d = _desktop()
    assert d["Type"] == "Application" and d["Name"] == "Continuity Studio"
    assert d["Exec"].split()[0] == "continuity-studio" and d["Exec"].split()[1] in ("%f", "%F")
    assert d["Terminal"] == "false"
    assert (ICONS / f"{d['Icon']}.svg").is_file()
    assert d["MimeType"].rstrip(";").split(";") == [_mime_type().get("type")]
    if shutil.which("desktop-file-validate"):  # desktop-file-utils; the checks above run anyway
        out = subprocess.run(["desktop-file-validate", str(LINUX / "continuity-studio.desktop")],
                             capture_output=True, text=True)
        assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_mime_type() -> None:
    t = _mime_type()
    assert t.get("type") == "application/x-continuity-studio-project"
    assert [g.get("pattern") for g in t.findall(f"{MIME_NS}glob")] == ["project.json"]
    # a sub-class of JSON with a low weight: other tools' project.json still open in editors
    assert t.find(f"{MIME_NS}sub-class-of").get("type") == "application/json"
    assert int(t.find(f"{MIME_NS}glob").get("weight")) < 50


def test_control_template() -> None:
    text = (LINUX / "control.in").read_text(encoding="utf-8")
    for ph in ("@VERSION@", "@ARCH@", "@INSTALLED_SIZE@", "@DEPENDS@", "@RECOMMENDS@"):
        assert text.count(ph) == 1, ph
    fields: dict[str, str] = {}
    for line in text.splitlines():
        assert line, "an empty line would end the stanza"
        if line.startswith(" "):
            continue  # continuation of the previous field (Description)
        key, sep, value = line.partition(": ")
        assert sep and key and value, line
        fields[key] = value
    for key in ("Package", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends",
                "Section", "Priority", "Description"):
        assert key in fields, key
    assert fields["Package"] == "continuity-studio"
    assert len(fields["Description"]) <= 80


def test_icons_are_present_small_and_match_their_source(tmp_path: Path) -> None:
    mod = _make_icon_module()
    for size in mod.PNG_SIZES:
        path = ICONS / f"continuity-studio-{size}.png"
        with Image.open(path) as im:
            assert im.size == (size, size) and im.mode == "RGBA"
        assert path.stat().st_size < 64 * 1024
    total = sum(p.stat().st_size for p in ICONS.iterdir())
    assert total < 1024 * 1024
    svg = ET.parse(ICONS / "continuity-studio.svg").getroot()
    assert svg.get("viewBox") == "0 0 256 256"
    with Image.open(ICONS / "continuity-studio.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    # The committed PNGs are what make_icon.py draws now (a few levels of rasteriser difference
    # between Qt versions are allowed).
    written = mod.write_icons(tmp_path)
    assert {p.name for p in written} <= {p.name for p in ICONS.iterdir()}
    for size in (16, 64, 256):
        new = np.asarray(Image.open(tmp_path / f"continuity-studio-{size}.png"), dtype=np.float32)
        old = np.asarray(Image.open(ICONS / f"continuity-studio-{size}.png"), dtype=np.float32)
        assert np.abs(new - old).mean() < 2.0, size


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable_bash(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "set -euo pipefail" in script.read_text(encoding="utf-8")


def _fake_bundle(dist: Path) -> None:
    """An executable that answers --version, and one real ELF program (it links the C library)
    where the bundle keeps its libraries."""
    internal = dist / "_internal"
    internal.mkdir(parents=True)
    exe = dist / "continuity-studio"
    exe.write_text("#!/bin/sh\necho 'continuity-studio 9.8.7'\n")
    exe.chmod(0o755)
    elf = Path(shutil.which("true") or "/bin/true").resolve()  # coreutils: links libc
    shutil.copy(elf, internal / "helper")
    (internal / "resources").mkdir()
    (internal / "resources" / "CREDITS.md").write_text("credits\n")


@pytest.mark.skipif(not (shutil.which("dpkg-deb") and shutil.which("dpkg-query")
                         and sys.platform.startswith("linux")), reason="needs Debian's dpkg tools")
def test_build_deb_on_a_fake_bundle(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "continuity-studio"
    _fake_bundle(dist)
    env = dict(os.environ, DEB_COMPRESS="gzip", TMPDIR=str(tmp_path))
    out = subprocess.run([str(LINUX / "build-deb.sh"), str(dist), str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    deb = tmp_path / "out" / f"continuity-studio_9.8.7_{arch}.deb"
    assert deb.is_file()

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert field("Package") == "continuity-studio" and field("Version") == "9.8.7"
    assert field("Architecture") == arch
    assert "libc6" in [d.strip() for d in field("Depends").split(",")]  # computed with ldd + dpkg -S
    assert "libxcb-cursor0" in field("Depends")  # Qt aborts on X11 without it
    assert int(field("Installed-Size")) > 0
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    entries = {ln.split()[5]: ln for ln in listing}
    exe = entries["./opt/continuity-studio/continuity-studio"]
    assert exe.startswith("-rwxr-xr-x root/root")
    assert "./usr/bin/continuity-studio -> /opt/continuity-studio/continuity-studio" in "\n".join(listing)
    for path in ("./usr/share/applications/continuity-studio.desktop",
                 "./usr/share/mime/packages/continuity-studio.xml",
                 "./usr/share/doc/continuity-studio/copyright",
                 "./usr/share/icons/hicolor/scalable/apps/continuity-studio.svg",
                 "./usr/share/icons/hicolor/48x48/apps/continuity-studio.png",
                 "./opt/continuity-studio/_internal/resources/CREDITS.md"):
        assert path in entries, path
    assert all(" root/root " in ln for ln in listing)
    # Only the package's own paths: nothing under /home, /etc, /var or a user data folder.
    assert all(p == "./" or p.startswith(("./opt/", "./usr/")) for p in entries), sorted(entries)
