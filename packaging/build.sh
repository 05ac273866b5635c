#!/usr/bin/env bash
# Build the one-folder desktop bundle from this checkout: packaging/build.sh
#
#   -> dist/continuity-studio/continuity-studio   (the executable; data under _internal/)
#
# Needs: the Python that runs the app with its runtime dependencies installed (pip install .),
# plus PyInstaller (pip install "pyinstaller>=6.10"). It does not use an installed
# `continuity-studio` command: PyInstaller analyses this checkout's sources directly.
# Prints the bundle's size and its measured start-up time (process start -> first paint of the
# main window, offscreen) at the end. Environment: PYTHON (default python3), STARTUP_RUNS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
DIST=$ROOT/dist/continuity-studio
T0=$(date +%s)

if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "build: PyInstaller is not installed for $PY: $PY -m pip install 'pyinstaller>=6.10'" >&2
  exit 1
fi
# PyInstaller silently leaves out what it cannot import: check the runtime stack first.
if ! "$PY" - <<'EOF'
import importlib, sys
missing = []
for mod in ("PySide6.QtWidgets", "PySide6.QtSvg", "numpy", "PIL", "av", "cv2", "dlib", "scipy.spatial",
            "skimage.color", "opentimelineio", "otio_cmx3600_adapter", "onnxruntime", "pydantic",
            "platformdirs", "psutil"):
    try:
        importlib.import_module(mod)
    except Exception as exc:
        missing.append(f"{mod} ({exc})")
import importlib.util
spec = importlib.util.find_spec("face_recognition_models")
if spec is None:
    missing.append("face_recognition_models")
if missing:
    sys.exit("build: these must be installed first (pip install .): " + ", ".join(missing))
EOF
then exit 1; fi

echo "== build: PyInstaller ($("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)'))"
rm -rf "$DIST" "$ROOT/build/pyinstaller"
QT_QPA_PLATFORM=offscreen "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath "$ROOT/build/pyinstaller" --distpath "$ROOT/dist" packaging/continuity-studio.spec
T1=$(date +%s)

# The GPU stack must stay out (it belongs to the managed GPU runtime).
for mod in torch diffusers transformers accelerate peft onnx; do
  if [ -e "$DIST/_internal/$mod" ]; then
    echo "build: $mod ended up inside the bundle; it must be excluded" >&2
    exit 1
  fi
done

# Every library the app itself loads must resolve (inside the bundle or from the system);
# only optional Qt plugins may miss theirs (e.g. the Wayland plugins on an X11-only machine).
MISSING=$(find "$DIST" -type f \( -name '*.so*' -o -perm -u+x \) -not -path '*/Qt/plugins/*' \
  -exec sh -c 'LD_LIBRARY_PATH="$1/_internal" ldd "$2" 2>/dev/null | grep "not found" | sed "s|^|$2: |"' \
  _ "$DIST" {} \; | sort -u)
if [ -n "$MISSING" ]; then
  echo "build: libraries the bundle needs are missing:" >&2; echo "$MISSING" >&2; exit 1
fi

echo "== build: measuring"
QT_QPA_PLATFORM=offscreen "$PY" - "$DIST" "${STARTUP_RUNS:-5}" "$((T1 - T0))" <<'EOF'
import os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

dist, runs, build_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
exe = dist / "continuity-studio"
files = [p for p in dist.rglob("*") if p.is_file() and not p.is_symlink()]
size = sum(p.stat().st_size for p in files)
env = dict(os.environ, STUDIO_BENCH_STARTUP="1", QT_QPA_PLATFORM="offscreen",
           CONTINUITY_STUDIO_HOME=tempfile.mkdtemp(prefix="cs-build-startup-"))


def once(extra):
    t0 = time.time()
    out = subprocess.run([str(exe), *extra], env=env, capture_output=True, text=True, timeout=120)
    shown = [ln for ln in out.stdout.splitlines() if ln.startswith("STARTUP_SHOWN ")]
    if out.returncode != 0 or not shown:
        sys.exit(f"build: the bundle did not start (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return float(shown[-1].split()[1]) - t0


print(f"bundle:   {dist}")
print(f"size:     {size / 2**20:.0f} MiB in {len(files)} files")
for label, extra in (("empty window", []), ("demo project", ["--demo"])):
    once(extra)  # first run warms the OS file cache; not counted
    times = [once(extra) for _ in range(runs)]
    print(f"start-up ({label}): median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {runs} runs, offscreen)")
print(f"build:    {build_s} s")
EOF
