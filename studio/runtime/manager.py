"""Install, check, repair, verify and remove the managed GPU runtime.

The runtime is a standard ``venv`` under ``data_dir("runtime")``::

    runtime/
      runtime.json        state (versions, device, created, verified), written atomically
      venv/               the virtual environment (torch + diffusers + transformers + ...)
      app/<hash>/studio/  the pure-Python part of the app the worker imports (see sync_app_sources)
      logs/               install-*.log (pip output), worker.log (the worker's stderr)

Everything that touches the network or the disk for long runs in a subprocess whose output is
streamed line by line to a callback and to a log file, and can be cancelled. Nothing here imports
torch: the app may not have it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.core.atomic import atomic_write_text
from studio.core.errors import StudioError
from studio.core.tasks import Cancelled, CancelledFn

STATE_FORMAT = 1
REPAIR_HINT = ("repair it in Settings ▸ Install GPU runtime… or run `continuity-studio runtime repair`")

# Requirement specifiers: torch separately (its index depends on the GPU), then the rest. The
# diffusers side matches pyproject's "gpu" extra; pydantic/platformdirs/psutil/Pillow/numpy/av are
# what the shipped app modules import (studio.core.model, userdirs, engine.memory, media.images,
# and media.video: the worker encodes each take's H.264 MP4 itself).
TORCH_REQUIREMENT = "torch>=2.4"
PACKAGES = ("diffusers>=0.35,<0.43", "transformers>=4.46", "accelerate>=1.0", "safetensors>=0.4",
            "ftfy>=6", "peft>=0.17", "pydantic>=2.6,<3", "platformdirs>=4", "psutil>=5.9",
            "Pillow>=10", "numpy>=1.26", "av>=12")
# distribution name -> module to import when probing
IMPORT_NAMES = {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers",
                "accelerate": "accelerate", "safetensors": "safetensors", "ftfy": "ftfy", "peft": "peft",
                "pydantic": "pydantic", "platformdirs": "platformdirs", "psutil": "psutil", "Pillow": "PIL",
                "numpy": "numpy", "av": "av"}
# The parts of the studio package the worker needs (pure Python; no ui/identity/commands).
SHIPPED = ("__init__.py", "core", "engine", "media", "runtime")

TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
# Minimum NVIDIA driver (major.minor) for each CUDA build of recent torch releases, newest first.
# From NVIDIA's CUDA toolkit release notes (Linux drivers; Windows numbers are close enough to the
# same majors). Update this table when torch drops or adds a CUDA line.
CUDA_BUILDS: tuple[tuple[tuple[int, int], str], ...] = (
    ((580, 65), "cu130"), ((570, 26), "cu128"), ((560, 28), "cu126"))
ROCM_BUILD = "rocm6.4"

LogFn = Callable[[str], None]

PIP_TAIL_LINES = 12  # of pip's output, quoted in the error when pip fails
BASE_SITE_PTH = "_continuity_studio_base_venv.pth"
# Run by the base Python: its venv's own site-packages folders, or [] when it is not in a venv.
_VENV_SITE_DIRS = ("import json, site, sys, os\n"
                   "prefix = os.path.realpath(sys.prefix)\n"
                   "dirs = [d for d in site.getsitepackages()\n"
                   "        if os.path.isdir(d) and os.path.realpath(d).startswith(prefix + os.sep)]\n"
                   "print(json.dumps(dirs if sys.prefix != sys.base_prefix else []))")


# -- hardware --------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuInfo:
    vendor: str  # "nvidia", "amd", "apple", "none"
    name: str = ""
    driver: str = ""
    cuda: str = ""  # the highest CUDA version the driver supports (nvidia-smi's header)
    source: str = ""  # how it was found

    def describe(self) -> str:
        if self.vendor == "none":
            return "no supported GPU found (CPU only)"
        parts = [self.name or self.vendor.upper()]
        if self.driver:
            parts.append(f"driver {self.driver}")
        if self.cuda:
            parts.append(f"CUDA ≤ {self.cuda}")
        return ", ".join(parts)


def _run_quiet(cmd: list[str], timeout: float = 10.0) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def detect_gpu(run: Callable[[list[str]], str | None] = _run_quiet,
               proc_version: Path = Path("/proc/driver/nvidia/version")) -> GpuInfo:
    """The machine's GPU and driver: nvidia-smi, then /proc/driver/nvidia/version, then rocminfo;
    Apple silicon by platform. ``run`` returns a command's stdout or None (tests pass fakes)."""
    out = run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if out and out.strip():
        name, _, driver = out.strip().splitlines()[0].partition(",")
        header = run(["nvidia-smi"]) or ""
        m = re.search(r"CUDA Version:\s*([\d.]+)", header)
        return GpuInfo("nvidia", name.strip(), driver.strip(), m.group(1) if m else "", "nvidia-smi")
    try:
        text = proc_version.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
    if m:
        return GpuInfo("nvidia", "NVIDIA GPU", m.group(1), "", str(proc_version))
    out = run(["rocminfo"])
    if out:
        # One section per agent; GPUs are "Device Type: GPU" (their Name is the gfx target).
        gpus = []
        for sec in re.split(r"\*{5,}", out):
            if re.search(r"Device Type:\s*GPU", sec) or re.search(r"^\s*Name:\s*gfx", sec, re.MULTILINE):
                m = re.search(r"Marketing Name:\s*(.+)", sec)
                gpus.append(m.group(1).strip() if m else "AMD GPU")
        if gpus:
            return GpuInfo("amd", gpus[0] if gpus else "AMD GPU", "", "", "rocminfo")
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return GpuInfo("apple", "Apple silicon (Metal)", "", "", "platform")
    return GpuInfo("none", source="nvidia-smi, /proc/driver/nvidia, rocminfo")


@dataclass(frozen=True)
class TorchBuild:
    tag: str  # "cu128", "rocm6.4", "cpu", "default" (PyPI's own build: macOS)
    index_url: str | None
    reason: str


def _version_tuple(v: str) -> tuple[int, int]:
    nums = [int(x) for x in re.findall(r"\d+", v)[:2]]
    return (nums + [0, 0])[0], (nums + [0, 0])[1]


def choose_torch(gpu: GpuInfo, override: str | None = None) -> TorchBuild:
    """The torch build for ``gpu`` (or the ``override`` tag: cpu, cu126, cu128, rocm6.4...)."""
    if override:
        tag = override.strip().lower()
        if tag == "default":
            return TorchBuild("default", None, "chosen by hand: PyPI's default build")
        if not re.fullmatch(r"cpu|cu\d{3}|rocm\d+(\.\d+)*", tag):
            raise StudioError(f"unknown torch build {override!r}: use cpu, cu126, cu128, cu130, rocm6.4 or default")
        return TorchBuild(tag, TORCH_INDEX.format(tag=tag), "chosen by hand")
    if gpu.vendor == "nvidia":
        drv = _version_tuple(gpu.driver) if gpu.driver else (0, 0)
        for minimum, tag in CUDA_BUILDS:
            if drv >= minimum:
                return TorchBuild(tag, TORCH_INDEX.format(tag=tag),
                                  f"NVIDIA driver {gpu.driver} supports {tag} (needs ≥ {minimum[0]}.{minimum[1]:02d})")
        oldest = CUDA_BUILDS[-1][0]
        return TorchBuild("cpu", TORCH_INDEX.format(tag="cpu"),
                          f"NVIDIA driver {gpu.driver or 'unknown'} is older than {oldest[0]}.{oldest[1]:02d}, "
                          "the oldest current torch supports: update the driver for GPU generation; "
                          "installing the CPU build meanwhile")
    if gpu.vendor == "amd":
        if sys.platform != "linux":
            return TorchBuild("cpu", TORCH_INDEX.format(tag="cpu"), "ROCm torch builds exist for Linux only")
        return TorchBuild(ROCM_BUILD, TORCH_INDEX.format(tag=ROCM_BUILD), f"AMD GPU: ROCm build {ROCM_BUILD}")
    if gpu.vendor == "apple":
        return TorchBuild("default", None, "Apple silicon: PyPI's torch has the Metal (MPS) backend")
    return TorchBuild("cpu", TORCH_INDEX.format(tag="cpu"),
                      "no GPU found: CPU build (generation works but is very slow)")


# -- subprocess streaming --------------------------------------------------------------------

def stream_process(cmd: list[str], log: LogFn, cancelled: CancelledFn | None = None,
                   env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run ``cmd``, passing each output line (stdout and stderr merged) to ``log``. Cancel kills
    the whole process group and raises :class:`Cancelled`."""
    kw: dict[str, Any] = {}
    if os.name == "posix":
        kw["start_new_session"] = True  # so cancel can kill pip and whatever it spawned
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, **kw)
    except OSError as exc:
        raise StudioError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None
    assert proc.stdout is not None

    def pump() -> None:
        for raw in iter(proc.stdout.readline, b""):
            log(raw.decode("utf-8", errors="replace").rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while proc.poll() is None:
        if cancelled is not None and cancelled():
            _kill_tree(proc)
            reader.join(5)
            raise Cancelled()
        time.sleep(0.1)
    reader.join(10)
    return proc.returncode


def _kill_tree(proc: subprocess.Popen[Any]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        proc.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:
            pass
        proc.wait(5)


def _python_json(python: str, code: str, env: dict[str, str] | None = None) -> Any:
    """What ``python -c code`` prints as JSON on its last line."""
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StudioError(f"cannot run {python}: {exc}") from None
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise StudioError(f"{python} failed (exit code {p.returncode}: {last})")
    return json.loads(lines[-1])


def base_python() -> str:
    """The interpreter the runtime's venv is made from: ``CONTINUITY_STUDIO_PYTHON`` when set; this
    Python when the app runs from source or a pip install; in a frozen bundle (whose executable is
    the app, not Python) a ``python3`` ≥ 3.10 from PATH — the .deb depends on python3-venv."""
    forced = os.environ.get("CONTINUITY_STUDIO_PYTHON")
    if forced:
        if not Path(forced).is_file():
            raise StudioError("CONTINUITY_STUDIO_PYTHON does not name a file", forced)
        return forced
    if not getattr(sys, "frozen", False):
        return sys.executable
    for name in ("python3", "python"):
        exe = shutil.which(name)
        if not exe:
            continue
        out = _run_quiet([exe, "-c", "import sys; print(sys.version_info >= (3, 10))"])
        if out and out.strip() == "True":
            return exe
    raise StudioError("the GPU runtime needs Python 3.10 or newer to create its environment: install it "
                      "(Debian/Ubuntu: sudo apt install python3 python3-venv; Windows/macOS: python.org) "
                      "or point CONTINUITY_STUDIO_PYTHON at one")


# -- the manager -----------------------------------------------------------------------------

@dataclass
class InstallOptions:
    torch: str | None = None  # build tag override; None: detected
    wheelhouse: str | None = None  # offline folder of wheels (pip --no-index --find-links)
    system_site_packages: bool = False  # developers/CI: reuse this Python's packages

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_PROBE = r"""
import importlib, json, sys
names = json.loads(sys.argv[1])
out = {"python": sys.version.split()[0], "executable": sys.executable, "packages": {}, "errors": {}}
from importlib import metadata
for dist, mod in names.items():
    try:
        importlib.import_module(mod)
        try:
            out["packages"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out["packages"][dist] = "?"
    except BaseException as exc:
        out["errors"][dist] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]
if "torch" in out["packages"]:
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
    out["device_name"] = torch.cuda.get_device_name(0) if out["cuda"] else ""
    out["torch_cuda"] = getattr(torch.version, "cuda", None)
    out["torch_hip"] = getattr(torch.version, "hip", None)
print("PROBE " + json.dumps(out))
"""


class RuntimeManager:
    """The runtime under ``root`` (default ``data_dir("runtime")``)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from studio.core.userdirs import data_dir

            root = data_dir() / "runtime"  # created by install, not by merely looking
        self.root = Path(root)
        self.venv = self.root / "venv"
        self.state_path = self.root / "runtime.json"
        self.logs = self.root / "logs"
        self._log_path: Path | None = None  # the install log being written, named in pip errors

    # -- paths and state --

    @property
    def python(self) -> Path:
        if os.name == "nt":
            return self.venv / "Scripts" / "python.exe"
        return self.venv / "bin" / "python"

    @property
    def worker_log(self) -> Path:
        return self.logs / "worker.log"

    def read_state(self) -> dict[str, Any] | None:
        from studio.core.errors import StudioError
        from studio.core.safeio import read_json

        if not self.state_path.exists():
            return None
        try:
            data = read_json(self.state_path, 1 << 20, max_depth=16)
        except (OSError, StudioError):
            return {"format": STATE_FORMAT, "installed": False, "problem": "runtime.json is damaged"}
        return data if isinstance(data, dict) else None

    def write_state(self, state: dict[str, Any]) -> None:
        state = dict(state, format=STATE_FORMAT)
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def installed(self) -> bool:
        """Cheap (one small file read): an install finished here. Says nothing about health."""
        state = self.read_state()
        return bool(state and state.get("installed"))

    def problem(self) -> str | None:
        """Quick health check without starting Python: what is wrong, in words, or None."""
        state = self.read_state()
        if not state or not state.get("installed"):
            return state.get("problem") if state else "the GPU runtime is not installed"
        if not self.python.exists():
            return f"the GPU runtime's Python is missing ({self.python})"
        return None

    def probe(self, timeout: float = 120.0) -> dict[str, Any]:
        """Import every runtime package inside the runtime; versions, errors, CUDA availability."""
        if not self.python.exists():
            raise StudioError(f"the GPU runtime's Python is missing ({self.python}); {REPAIR_HINT}")
        try:
            p = subprocess.run([str(self.python), "-c", _PROBE, json.dumps(IMPORT_NAMES)], capture_output=True,
                               text=True, timeout=timeout, env=self.worker_env(), cwd=self.root)
        except (OSError, subprocess.SubprocessError) as exc:
            raise StudioError(f"the GPU runtime's Python does not run ({exc}); {REPAIR_HINT}") from None
        for line in p.stdout.splitlines():
            if line.startswith("PROBE "):
                return json.loads(line[6:])
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise StudioError(f"the GPU runtime's Python fails (exit code {p.returncode}: {last}); {REPAIR_HINT}")

    def status(self, deep: bool = False) -> dict[str, Any]:
        state = self.read_state() or {}
        out: dict[str, Any] = {"root": str(self.root), "installed": bool(state.get("installed")),
                               "state": state, "problem": self.problem()}
        if deep and out["installed"] and out["problem"] is None:
            try:
                probe = self.probe()
                out["probe"] = probe
                if probe["errors"]:
                    dist, err = next(iter(probe["errors"].items()))
                    out["problem"] = f"{dist} cannot be imported in the GPU runtime ({err}); {REPAIR_HINT}"
            except StudioError as exc:
                out["problem"] = str(exc)
        return out

    # -- the app's modules inside the runtime --

    @staticmethod
    def app_source_root() -> Path:
        """The folder of the ``studio`` package as .py sources. In a PyInstaller bundle the spec
        must ship the SHIPPED sub-packages' .py files as data at the same place (docs/RUNTIME.md)."""
        import studio

        root = Path(studio.__file__).resolve().parent
        if not (root / "runtime" / "worker.py").is_file():
            raise StudioError(f"the GPU runtime worker's sources are missing from {root} (a packaging error: "
                              "the bundle must ship studio/{core,engine,media,runtime}/*.py as data)")
        return root

    def _sources(self) -> list[Path]:
        src = self.app_source_root()
        files: list[Path] = []
        for name in SHIPPED:
            p = src / name
            files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
        return files

    def sync_app_sources(self) -> Path:
        """Copy the worker's part of the app into ``app/<hash>/studio`` (once per app version) and
        return the folder to put on the worker's PYTHONPATH. A private copy rather than the app's
        own folder: a pip-installed app's site-packages would leak its numpy/Qt into the runtime,
        and a frozen bundle has no importable .py files."""
        src = self.app_source_root()
        files = self._sources()
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(src).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        digest = h.hexdigest()[:16]
        base = self.root / "app"
        target = base / digest
        if (target / "studio" / "runtime" / "worker.py").is_file():
            return target
        tmp = base / f".{digest}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for f in files:
            dst = tmp / "studio" / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        try:
            os.replace(tmp, target)
        except OSError:  # another process synced the same version meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        for old in base.iterdir():  # older app versions: only the current one is used
            if old.name != digest and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
        return target

    def worker_env(self, app_path: Path | None = None) -> dict[str, str]:
        """The environment for the runtime's Python: the app's own Python settings removed."""
        env = dict(os.environ)
        for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "VIRTUAL_ENV",
                    "__PYVENV_LAUNCHER__"):
            env.pop(key, None)
        # A PyInstaller bundle points LD_LIBRARY_PATH at its own libraries and keeps the user's in
        # *_ORIG: the runtime must not load the bundle's libstdc++/Qt.
        for key in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
            if key + "_ORIG" in env:
                env[key] = env.pop(key + "_ORIG")
            elif getattr(sys, "frozen", False):
                env.pop(key, None)
        env["PYTHONNOUSERSITE"] = "1"  # ~/.local packages must not shadow the runtime's
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"
        if app_path is not None:
            env["PYTHONPATH"] = str(app_path)
        return env

    def worker_command(self, registry: Path | None = None, device: str | None = None) -> list[str]:
        cmd = [str(self.python), "-m", "studio.runtime.worker"]
        if registry is not None:
            cmd += ["--registry", str(registry)]
        if device:
            cmd += ["--device", device]
        return cmd

    # -- install / repair / remove --

    def _open_log(self, kind: str) -> tuple[Path, Any]:
        self.logs.mkdir(parents=True, exist_ok=True)
        path = self.logs / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        return path, open(path, "a", encoding="utf-8")

    def _python_works(self) -> bool:
        if not self.python.exists():
            return False
        try:
            return subprocess.run([str(self.python), "-c", "import sys"], capture_output=True, timeout=60,
                                  env=self.worker_env()).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _create_venv(self, opts: InstallOptions, log: LogFn) -> None:
        base = base_python()
        self.root.mkdir(parents=True, exist_ok=True)
        log(f"creating the virtual environment in {self.venv} with {base}")
        # --clear: a venv whose Python broke is rebuilt from scratch. ensurepip installs pip from
        # the base Python's bundled wheel: no network needed.
        cmd = [base, "-m", "venv", "--clear"]
        if opts.system_site_packages:
            cmd.append("--system-site-packages")
        lines: list[str] = []
        code = stream_process(cmd + [str(self.venv)], lambda line: (lines.append(line), log(line)),
                              env=self.worker_env(), cwd=self.root)
        if code != 0 or not self.python.exists():
            raise StudioError(f"cannot create the virtual environment in {self.venv} (exit code {code}"
                              + (f": {lines[-1]}" if lines else "") + ")" +
                              ("; on Debian/Ubuntu install the python3-venv package" if
                               any("ensurepip" in line for line in lines) else ""))
        if opts.system_site_packages:
            self._link_base_venv(base, log)
            # ensurepip's setuptools would shadow the base Python's newer one (torch needs >= 77).
            stream_process([str(self.python), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], log,
                           env=self.worker_env(), cwd=self.root)

    def _link_base_venv(self, base: str, log: LogFn) -> None:
        """Make a ``--system-site-packages`` runtime see everything ``base`` imports. venv builds
        the new environment on the base *interpreter*, so when ``base`` is itself a venv's Python
        (a developer's or CI's environment) its own site-packages (where torch is) would be
        invisible; a .pth file in the runtime adds them, .pth files inside them included."""
        dirs = _python_json(base, _VENV_SITE_DIRS, self.worker_env())
        if not dirs:
            return  # not a venv: --system-site-packages already shows everything
        own = _python_json(str(self.python), "import json, sysconfig; print(json.dumps(sysconfig.get_path('purelib')))",
                           self.worker_env())
        if not isinstance(own, str) or not isinstance(dirs, list):
            raise StudioError(f"cannot find the site-packages folders of {base} or of the new runtime")
        pth = Path(own) / BASE_SITE_PTH
        pth.parent.mkdir(parents=True, exist_ok=True)
        pth.write_text("import site; " + "; ".join(f"site.addsitedir({str(d)!r})" for d in dirs) + "\n",
                       encoding="utf-8")
        log(f"{base} is a virtual environment: its packages are visible through {pth}")

    def _pip(self, args: list[str], opts: InstallOptions, log: LogFn, cancelled: CancelledFn | None,
             index_url: str | None = None) -> None:
        cmd = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off"]
        if opts.wheelhouse:
            cmd += ["--no-index", "--find-links", str(opts.wheelhouse)]
        elif index_url:
            cmd += ["--index-url", index_url]
        cmd += args
        log("$ " + " ".join(cmd))
        tail: deque[str] = deque(maxlen=PIP_TAIL_LINES)

        def keep(line: str) -> None:
            tail.append(line)
            log(line)

        code = stream_process(cmd, keep, cancelled, env=self.worker_env(), cwd=self.root)
        if code != 0:
            # pip's reason is in its last lines ("ERROR: ..."): show them, not just "see the log".
            shown = "\n".join("    " + line for line in tail if line.strip())
            where = f"\nfull log: {self._log_path}" if self._log_path else ""
            hint = "" if opts.wheelhouse else "\n(no network? give a wheelhouse folder)"
            raise StudioError(f"pip failed (exit code {code}) installing "
                              f"{' '.join(a for a in args if not a.startswith('-'))}; pip said:\n{shown}{where}{hint}")

    def install(self, opts: InstallOptions | None = None, log: LogFn = print, cancelled: CancelledFn | None = None,
                verify: bool = True, gpu: GpuInfo | None = None) -> dict[str, Any]:
        """Create (or complete) the runtime and verify it. Returns the new state."""
        opts = opts or InstallOptions()
        if opts.wheelhouse and not Path(opts.wheelhouse).is_dir():
            raise StudioError("the wheelhouse folder does not exist", opts.wheelhouse)
        from studio.runtime.backend import shutdown_workers

        shutdown_workers(self.root)  # pip must not replace torch under a running worker
        log_path, fh = self._open_log("install")
        self._log_path = log_path
        lock = threading.Lock()

        def out(line: str) -> None:
            with lock:
                fh.write(line + "\n")
                fh.flush()
            log(line)

        try:
            gpu = gpu or detect_gpu()
            build = choose_torch(gpu, opts.torch)
            out(f"GPU: {gpu.describe()}")
            out(f"torch build: {build.tag} — {build.reason}")
            previous = self.read_state() or {}
            state: dict[str, Any] = {"installed": False, "created": previous.get("created") or time.time(),
                                     "options": opts.to_json(), "gpu": asdict(gpu), "torch_build": asdict(build),
                                     "log": str(log_path), "verified": None}
            self.write_state(state)
            if not self._python_works():
                self._create_venv(opts, out)
            if not opts.system_site_packages:
                try:  # ensurepip's pip and setuptools are old; torch needs setuptools >= 77
                    self._pip(["--upgrade", "pip", "setuptools"], opts, out, cancelled)
                except Cancelled:
                    raise
                except StudioError as exc:
                    out(f"warning: could not upgrade pip/setuptools ({exc}); continuing")
            out("installing torch (the largest download: about 0.2 GB for CPU, 2–3 GB for CUDA/ROCm)")
            self._pip([TORCH_REQUIREMENT], opts, out, cancelled, index_url=build.index_url)
            out("installing diffusers, transformers, accelerate, safetensors, ftfy, peft")
            self._pip(list(PACKAGES), opts, out, cancelled)
            self.sync_app_sources()
            probe = self.probe()
            if probe["errors"]:
                dist, err = next(iter(probe["errors"].items()))
                raise StudioError(f"{dist} was installed but cannot be imported: {err}")
            state.update(installed=True, updated=time.time(), python=str(self.python),
                         python_version=probe["python"], packages=probe["packages"],
                         device="cuda" if probe.get("cuda") else "cpu", device_name=probe.get("device_name", ""),
                         torch_cuda=probe.get("torch_cuda"), torch_hip=probe.get("torch_hip"))
            from studio import __version__

            state["app_version"] = __version__
            self.write_state(state)
            out(f"installed: {', '.join(f'{k} {v}' for k, v in probe['packages'].items())}")
            if verify:
                state = self.verify(log=out, cancelled=cancelled)
            return state
        except Cancelled:
            out("installation cancelled")
            raise
        except StudioError as exc:
            with lock:  # the caller shows the error itself; the log file keeps it too
                fh.write(f"error: {exc}\n")
            raise
        finally:
            self._log_path = None
            with lock:
                fh.close()

    def repair(self, log: LogFn = print, cancelled: CancelledFn | None = None, verify: bool = True) -> dict[str, Any]:
        """Recreate the venv when its Python is gone or broken, force-reinstall packages that are
        there but fail to import, install missing ones, and verify — with the options of the
        original install."""
        state = self.read_state() or {}
        opts = InstallOptions(**{k: v for k, v in dict(state.get("options") or {}).items()
                                 if k in InstallOptions.__dataclass_fields__})
        if self._python_works():
            try:
                broken = self.probe()["errors"]
            except StudioError:
                broken = {}
            if broken:
                log(f"broken in the runtime: {', '.join(broken)}; reinstalling them")
                reqs = [r for r in (TORCH_REQUIREMENT, *PACKAGES) if re.split(r"[<>=!~ ]", r)[0] in broken]
                build = choose_torch(GpuInfo(**state["gpu"]) if state.get("gpu") else detect_gpu(), opts.torch)
                for r in reqs:
                    self._pip(["--force-reinstall", "--no-deps", r], opts, log, cancelled,
                              index_url=build.index_url if r.startswith("torch") else None)
        else:
            log("the runtime's Python is missing or does not start: recreating the virtual environment")
            self._create_venv(opts, log)
        return self.install(opts, log=log, cancelled=cancelled, verify=verify,
                            gpu=GpuInfo(**state["gpu"]) if state.get("gpu") else None)

    def remove(self, log: LogFn = print) -> None:
        """Delete the whole runtime folder (models and projects live elsewhere and are untouched)."""
        from studio.runtime.backend import shutdown_workers

        shutdown_workers(self.root)
        if self.root.exists():
            log(f"removing {self.root}")
            shutil.rmtree(self.root)

    # -- verification --

    def verify(self, log: LogFn = print, cancelled: CancelledFn | None = None, device: str | None = None,
               timeout: float = 600.0) -> dict[str, Any]:
        """Build a tiny random-weight pipeline inside the runtime and run it (GPU when there is
        one, else CPU) through the real worker protocol. Records the result in runtime.json."""
        from studio.runtime.client import WorkerClient, WorkerMessage

        problem = self.problem()
        if problem:
            raise StudioError(f"{problem}; {REPAIR_HINT}")
        log("verifying: a tiny image-to-video pipeline built and run inside the runtime")
        client = WorkerClient(self, device=device)
        t0 = time.perf_counter()
        try:
            client.start()
            hello = client.hello or {}
            log(f"worker started: Python {hello.get('python')}, torch {hello.get('torch')}, "
                f"device {hello.get('device')}")

            def progress(msg: WorkerMessage) -> None:
                if msg.message:
                    log(msg.message)

            result = client.call({"op": "verify"}, progress, cancelled or (lambda: False), timeout=timeout)
        finally:
            client.close()
        seconds = time.perf_counter() - t0
        state = self.read_state() or {}
        state.update(verified=time.time(), verify={k: v for k, v in result.items() if k not in ("type", "id")})
        state["verify"]["seconds_total"] = round(seconds, 2)
        self.write_state(state)
        log(f"verified: {result.get('frames')} frames {result.get('width')}x{result.get('height')} on "
            f"{result.get('device')} in {result.get('seconds', 0):.1f} s (worker start included: {seconds:.1f} s)")
        return state
