"""The two README commands (``./studio.sh demo`` / ``./studio.sh test``), how .ci/run reads the
test command from README.md, and the X11 library lists of studio.sh and the .deb against what
Qt's xcb plugin really links. studio.sh runs for real here: a venv made from this Python, pip
installing a tiny stand-in project, the stamp that skips the second set-up; only the full
install and suite are left to .ci/run."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from studio.ui import qt_libs

ROOT = Path(__file__).resolve().parents[2]
STUDIO_SH = ROOT / "studio.sh"
CI_RUN = ROOT / ".ci" / "run"
BUILD_DEB = ROOT / "installer" / "linux" / "build-deb.sh"
posix_only = pytest.mark.skipif(os.name != "posix", reason="bash scripts")


def _base_python() -> str:
    """A plain interpreter (this one's base when the suite itself runs in a venv)."""
    return getattr(sys, "_base_executable", sys.executable)


def _env(**extra: str) -> dict[str, str]:
    """This environment without what would point studio.sh at the venv the suite itself runs in
    (./studio.sh test sets them; a test must never install into that one)."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "STUDIO_VENV", "PYTHON", "STUDIO_SKIP_APT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def test_studio_sh_is_executable_bash() -> None:
    text = STUDIO_SH.read_text(encoding="utf-8")
    assert STUDIO_SH.stat().st_mode & stat.S_IXUSR
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    out = subprocess.run(["bash", "-n", str(STUDIO_SH)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # The test install is the one the README always documented (CPU torch; insightface bare).
    assert 'install -q torch==2.13.0 -e ".[gpu,test]"' in text
    assert "install -q --no-deps insightface==2.1" in text


def _readme_block(marker: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"^<!-- {marker} -->\n(.*?)^<!-- /{marker} -->$", text, re.DOTALL | re.MULTILINE)
    assert m, f"README.md has no <!-- {marker} --> block"
    return [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.startswith("```")]


@posix_only
def test_ci_runs_the_readme_test_command_as_written() -> None:
    assert _readme_block("test-command") == ["./studio.sh test"]
    out = subprocess.run([str(CI_RUN), "--print-test-command"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["./studio.sh test"]
    ci = CI_RUN.read_text(encoding="utf-8")
    assert 'bash -c "$TEST_COMMAND"' in ci
    # No private copy of the test command to drift from the README: no line outside comments
    # runs pytest or studio.sh itself.
    code = [ln for ln in ci.splitlines() if not ln.lstrip().startswith("#")]
    assert not [ln for ln in code if "pytest" in ln or "studio.sh" in ln]
    assert "./studio.sh demo" in (ROOT / "README.md").read_text(encoding="utf-8")


@posix_only
@pytest.mark.parametrize("block", ["", "```bash\none\ntwo\n```\n"], ids=["empty", "two-lines"])
def test_ci_refuses_an_ambiguous_readme(tmp_path: Path, block: str) -> None:
    (tmp_path / ".ci").mkdir()
    shutil.copy2(CI_RUN, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(f"# x\n\n<!-- test-command -->\n{block}<!-- /test-command -->\n")
    out = subprocess.run([str(tmp_path / ".ci" / "run"), "--print-test-command"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "exactly one command line" in out.stderr


@posix_only
def test_usage_and_python_version(tmp_path: Path) -> None:
    out = subprocess.run([str(STUDIO_SH)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "usage: ./studio.sh demo | test" in out.stderr
    old = tmp_path / "python3.9"  # answers like a Python 3.9 would
    old.write_text("#!/bin/sh\ncase \"$2\" in *print*) echo 3.9 ;; *) exit 1 ;; esac\n")
    old.chmod(0o755)
    out = subprocess.run([str(STUDIO_SH), "demo"], capture_output=True, text=True, timeout=30,
                         env=_env(PYTHON=str(old), STUDIO_VENV=str(tmp_path / "venv")))
    assert out.returncode == 1
    assert "needs Python 3.10 or newer" in out.stderr and "is 3.9" in out.stderr
    assert not (tmp_path / "venv").exists()


# What `python3 -m venv` prints on Debian/Ubuntu without python3-venv (Debian 12's python3.11).
DEBIAN_NO_VENV = """The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.11-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment.
"""


@posix_only
def test_without_ensurepip_it_names_python3_venv(tmp_path: Path) -> None:
    """A Python that fails `-m venv` the way Debian's does without python3-venv (after making the
    folder, as it does): the script names the package and leaves no half-made venv behind."""
    (tmp_path / "message.txt").write_text(DEBIAN_NO_VENV)
    wrapper = tmp_path / "python3"
    wrapper.write_text("#!/bin/sh\n"
                       f'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cat {tmp_path / "message.txt"}; exit 1; fi\n'
                       f'exec {_base_python()} "$@"\n')
    wrapper.chmod(0o755)
    venv = tmp_path / "venv"
    out = subprocess.run([str(STUDIO_SH), "demo"], capture_output=True, text=True, timeout=60,
                         env=_env(PYTHON=str(wrapper), STUDIO_VENV=str(venv), STUDIO_SKIP_APT="1"))
    assert out.returncode == 1, out.stderr
    assert "ensurepip is not" in out.stderr  # venv's own words are shown
    assert out.stderr.rstrip().splitlines()[-1].endswith(
        f"sudo apt install python3-venv (python{sys.version_info[0]}.{sys.version_info[1]}-venv "
        f"for Python {sys.version_info[0]}.{sys.version_info[1]})")
    assert not venv.exists()


def _fake_debian_tools(bin_dir: Path, uid: int) -> Path:
    """dpkg-query / apt-cache / apt-get / id stand-ins (a test must not install packages): two
    packages missing, and libglib2.0-0 in neither its Debian nor its Ubuntu 24.04 (t64) name,
    which this "apt" only knows by the Debian one. apt-get records its arguments."""
    bin_dir.mkdir()
    calls = bin_dir / "apt-get.log"
    scripts = {
        "dpkg-query": 'for last; do :; done\n'
                      'case "$last" in libxcb-icccm4|libglib2.0-0|libglib2.0-0t64) exit 1 ;; esac\n'
                      "printf 'ii '\n",
        "apt-cache": 'for last; do :; done\n[ "$last" = libglib2.0-0t64 ] && exit 100\nexit 0\n',
        "apt-get": f'echo "$*" >> {calls}\n',
        "id": f"echo {uid}\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    return calls


def _failing_venv_python(tmp_path: Path) -> Path:
    """A Python that stops the script right after the system-library step."""
    wrapper = tmp_path / "python3-novenv"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1 $2" = "-m venv" ]; then echo "stop here"; exit 1; fi\n'
                       f'exec {_base_python()} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


debian_only = pytest.mark.skipif(not Path("/etc/debian_version").is_file(), reason="Debian-like systems only")


@posix_only
@debian_only
@pytest.mark.parametrize("mode, expected", [("demo", "libglib2.0-0 libxcb-icccm4"), ("test", "libglib2.0-0")])
def test_missing_system_packages_as_a_user(tmp_path: Path, mode: str, expected: str) -> None:
    calls = _fake_debian_tools(tmp_path / "bin", uid=1000)
    env = _env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", PYTHON=_base_python(),
               STUDIO_VENV=str(tmp_path / "venv"))
    out = subprocess.run([str(STUDIO_SH), mode], capture_output=True, text=True, timeout=60, env=env,
                         stdin=subprocess.DEVNULL)  # not a terminal: no offer to run sudo
    assert out.returncode == 1
    assert f"    sudo apt install {expected}\n" in out.stderr
    assert not calls.exists() and not (tmp_path / "venv").exists()


@posix_only
@debian_only
def test_missing_system_packages_as_root_are_installed(tmp_path: Path) -> None:
    calls = _fake_debian_tools(tmp_path / "bin", uid=0)
    env = _env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", PYTHON=str(_failing_venv_python(tmp_path)),
               STUDIO_VENV=str(tmp_path / "venv"))
    out = subprocess.run([str(STUDIO_SH), "demo"], capture_output=True, text=True, timeout=60, env=env)
    assert "stop here" in out.stderr  # went on to the venv after installing
    assert calls.read_text().splitlines() == ["update -qq",
                                              "install -y -qq --no-install-recommends libglib2.0-0 libxcb-icccm4"]


def _standin_checkout(root: Path) -> Path:
    """studio.sh next to a tiny project whose `continuity-studio` prints what it was run with."""
    root.mkdir()
    shutil.copy2(STUDIO_SH, root / "studio.sh")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "cs-standin"\nversion = "1.0"\n\n'
        '[project.scripts]\ncontinuity-studio = "cs_standin:main"\n\n'
        '[tool.setuptools]\npy-modules = ["cs_standin"]\n')
    (root / "cs_standin.py").write_text(
        "import os, sys\n\n\ndef main():\n"
        "    print('STANDIN', sys.prefix, os.environ.get('VIRTUAL_ENV'), ' '.join(sys.argv[1:]))\n")
    return root


@posix_only
@pytest.mark.slow
def test_demo_makes_the_venv_once_and_runs_from_it(tmp_path: Path) -> None:
    checkout = _standin_checkout(tmp_path / "clone")
    venv = checkout / ".venv"
    env = _env(PYTHON=_base_python(), STUDIO_SKIP_APT="1")

    def demo() -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(checkout / "studio.sh"), "demo"], capture_output=True, text=True,
                             timeout=600, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    first = demo()
    assert "creating the virtual environment" in first.stderr and "installing the demo" in first.stderr
    line = [ln for ln in first.stdout.splitlines() if ln.startswith("STANDIN ")][-1].split()
    assert Path(line[1]).resolve() == venv.resolve() == Path(line[2]).resolve()  # ran from .venv, activated
    assert line[3:] == ["--demo"]
    second = demo()  # up to date: no venv creation, no pip
    assert "creating" not in second.stderr and "installing" not in second.stderr
    assert "STANDIN" in second.stdout
    with (checkout / "pyproject.toml").open("a") as fh:  # a changed pyproject: pip runs again
        fh.write("\n# changed\n")
    assert "installing the demo" in demo().stderr


def _sh_list(path: Path, name: str) -> set[str]:
    m = re.search(rf'^{name}="([^"]*)"', path.read_text(encoding="utf-8"), re.MULTILINE)
    assert m, f"{name} not found in {path}"
    return set(m.group(1).split())


def test_xcb_lists_cover_what_the_plugin_links() -> None:
    deb = _sh_list(BUILD_DEB, "XCB_DEPENDS")
    assert _sh_list(STUDIO_SH, "XCB_DEBS") == deb
    plugin = qt_libs.find_plugin("xcb", {})
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("needs Qt's xcb plugin and ldd")
    linked = [s for s in qt_libs.parse_ldd(subprocess.run(["ldd", str(plugin)], capture_output=True,
                                                          text=True).stdout)
              if re.match(r"lib(xcb|xkbcommon|X11)", s)]
    assert len(linked) >= 15
    assert sorted(qt_libs.SYSTEM_LIBS[s][0] for s in linked if qt_libs.SYSTEM_LIBS[s][0] not in deb) == []


@pytest.mark.skipif(not (shutil.which("dpkg-deb") and shutil.which("dpkg-query")
                         and sys.platform.startswith("linux")), reason="needs Debian's dpkg tools")
def test_the_deb_depends_on_the_xcb_libraries(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "continuity-studio"
    (dist / "_internal").mkdir(parents=True)
    exe = dist / "continuity-studio"
    exe.write_text("#!/bin/sh\necho 'continuity-studio 9.8.7'\n")
    exe.chmod(0o755)
    shutil.copy(Path(shutil.which("true") or "/bin/true").resolve(), dist / "_internal" / "helper")
    out = subprocess.run([str(BUILD_DEB), str(dist), str(tmp_path / "out")], capture_output=True, text=True,
                         env=dict(os.environ, DEB_COMPRESS="gzip", TMPDIR=str(tmp_path)), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    deb = next((tmp_path / "out").glob("*.deb"))

    def field(name: str) -> set[str]:
        text = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                              check=True).stdout
        return {d.strip() for d in text.split(",") if d.strip()}

    depends = field("Depends")
    assert "libc6" in depends  # still computed from the bundle
    assert _sh_list(BUILD_DEB, "XCB_DEPENDS") <= depends
    assert not (field("Recommends") & depends)
    assert "python3-venv" in field("Recommends")
