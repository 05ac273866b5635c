#!/usr/bin/env bash
# Smoke test of a built bundle: packaging/smoke.sh DIST_DIR [EXECUTABLE]
#
# Runs the frozen executable (offscreen, with a throw-away user folder) through the whole
# headless pipeline on a copy of the bundled demo: --version, validate, render --backend preview,
# analyze one take against the demo character, export (copy path: MP4 + OTIO + HTML report; then
# at 24 fps: conform/re-encode path + CMX 3600 EDL), the GUI's first paint (offscreen, and on
# X11 under Xvfb when xvfb-run is installed), the diffusers
# backend failing with a pointer to the GPU runtime, and a readable error
# (no traceback) for a bad project. A missing hidden import, data file, Qt plugin or OTIO adapter
# fails here, not on a user's machine. Any failure exits non-zero.
#
# EXECUTABLE defaults to DIST_DIR/continuity-studio; installer/linux/test-deb.sh passes the
# installed /usr/bin/continuity-studio instead; SMOKE_DEMO overrides where the bundled demo is.
# SMOKE_RUNTIME_PYTHON=/path/to/python (one with CPU torch + diffusers, and this checkout's tests/)
# adds the GPU runtime round trip: install the runtime from the frozen app, generate a take in it.
# Needs python3 only to read and edit JSON files.
set -euo pipefail

DIST=${1:?usage: packaging/smoke.sh DIST_DIR [EXECUTABLE]}
DIST=$(cd "$DIST" && pwd)
EXE=${2:-$DIST/continuity-studio}
DEMO=${SMOKE_DEMO:-$DIST/_internal/resources/demo}  # macOS .app: Contents/Resources/resources/demo
[ -x "$EXE" ] || { echo "smoke: no executable at $EXE" >&2; exit 1; }
[ -f "$DEMO/project.json" ] || { echo "smoke: the demo project is missing from $DIST" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cs-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export QT_QPA_PLATFORM=offscreen
export CONTINUITY_STUDIO_HOME=$WORK/home  # never touch the real user folders
# The bundle must work without the build machine's Python packages: hide them.
unset PYTHONPATH PYTHONHOME
T0=$(date +%s.%N)

step() { printf '\n== smoke: %s\n' "$*"; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }
# Run a command; on failure show its output and stop. Output is kept in $WORK/last.log.
run() {
  if ! "$@" >"$WORK/last.log" 2>&1; then
    cat "$WORK/last.log" >&2
    fail "$*"
  fi
  cat "$WORK/last.log"
}
no_traceback() { ! grep -q "Traceback (most recent call last)" "$WORK/last.log" || {
  cat "$WORK/last.log" >&2; fail "a traceback reached the user: $1"; }; }
nonempty() { for f in "$@"; do [ -s "$f" ] || fail "missing or empty output: $f"; done; }
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); exec("print("+sys.argv[2]+")")' "$1" "$2"; }

step "--version"
run "$EXE" --version
grep -Eq '^continuity-studio [0-9]' "$WORK/last.log" || fail "unexpected --version output"

step "landmarks: the licence choice (dlib68), made once"
run "$EXE" landmarks dlib68
run "$EXE" landmarks
grep -q '^landmarks: dlib68' "$WORK/last.log" || fail "the landmark choice was not kept"

step "copy the demo"
cp -r "$DEMO" "$WORK/demo"
PROJ=$WORK/demo

step "validate"
run "$EXE" validate "$PROJ"

step "render --backend preview"
run "$EXE" render "$PROJ" --backend preview
no_traceback render
mapfile -t TAKES < <(find "$PROJ/takes" -name '*.mp4' | sort)
[ "${#TAKES[@]}" -ge 1 ] || fail "render produced no take"
nonempty "${TAKES[@]}"
run "$EXE" validate "$PROJ"  # every take decodes and is recorded in the project

step "analyze one take"
CHAR=$(jget "$PROJ/project.json" 'd["characters"][0]["name"]')
run "$EXE" analyze "${TAKES[0]}" --project "$PROJ" --character "$CHAR" --json "$WORK/analysis.json"
nonempty "$WORK/analysis.json"
FOUND=$(jget "$WORK/analysis.json" 'sum(1 for f in d["frames"] if f["face_found"])')
MEAN=$(jget "$WORK/analysis.json" 'd["summary"]["identity_mean"]')
echo "faces found in $FOUND frames, identity mean $MEAN"
[ "$FOUND" -gt 0 ] || fail "dlib found no face in the demo take (face models or dlib missing?)"

step "export: MP4 (copy) + OTIO + HTML report"
run "$EXE" export "$PROJ" --out "$WORK/film.mp4" --otio "$WORK/film.otio" \
  --report "$WORK/report.html" -q
nonempty "$WORK/film.mp4" "$WORK/film.otio" "$WORK/report.html"
jget "$WORK/film.otio" 'd["OTIO_SCHEMA"]' | grep -q '^Timeline' || fail "film.otio is not a timeline"

step "export at 24 fps: conform + re-encode + CMX 3600 EDL"
python3 - "$PROJ/project.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["output"]["fps"] = 24  # EDL timecode needs 24/25/30 fps; the 16 fps takes get conformed
json.dump(p, open(sys.argv[1], "w"), indent=1)
EOF
run "$EXE" export "$PROJ" --out "$WORK/film24.mp4" --edl "$WORK/film24.edl" -q
nonempty "$WORK/film24.mp4" "$WORK/film24.edl"
grep -q '^TITLE:' "$WORK/film24.edl" || fail "film24.edl is not a CMX 3600 EDL"

step "GUI: first paint offscreen (demo project)"
run env STUDIO_BENCH_STARTUP=1 "$EXE" --demo
grep -q '^STARTUP_SHOWN ' "$WORK/last.log" || fail "the window never painted"
if command -v xvfb-run >/dev/null; then
  # What a desktop user gets: Qt's X11 (xcb) platform plugin and its libraries.
  step "GUI: first paint on X11 (Xvfb)"
  run env STUDIO_BENCH_STARTUP=1 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" "$EXE" --demo
  grep -q '^STARTUP_SHOWN ' "$WORK/last.log" || fail "the window never painted on X11"
fi

step "diffusers backend without the GPU runtime: a clear failure"
# torch/diffusers are not in the bundle; the job must fail with a message that points the user
# to the GPU runtime (the throw-away CONTINUITY_STUDIO_HOME has none installed).
# The job needs a model that passes the model check first: a diffusers folder layout (SVD) whose
# safetensors files hold one number each; it is never loaded.
python3 - "$WORK/fake-svd" <<'EOF'
import json, struct, sys
from pathlib import Path
root = Path(sys.argv[1])
index = {"_class_name": "StableVideoDiffusionPipeline",
         "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
         "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
         "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
for comp in ("unet", "vae"):
    (root / comp).mkdir(parents=True)
    (root / comp / "config.json").write_text("{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (root / comp / "diffusion_pytorch_model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + bytes(4))
(root / "model_index.json").write_text(json.dumps(index))
EOF
cp -r "$DEMO" "$WORK/demo-gpu"
if "$EXE" render "$WORK/demo-gpu" --backend diffusers --model "$WORK/fake-svd" --shots 1 \
    >"$WORK/last.log" 2>&1; then
  cat "$WORK/last.log"; fail "a diffusers job succeeded without torch"
fi
cat "$WORK/last.log"
grep -q 'FAILED: .*[Rr]untime' "$WORK/last.log" || fail "the failure does not point to the GPU runtime"
no_traceback "diffusers without the GPU runtime"

if [ -n "${SMOKE_RUNTIME_PYTHON:-}" ]; then
  # Optional (CI sets it to a Python with CPU torch + diffusers): the frozen app creates the GPU
  # runtime from that Python (offline: an empty wheelhouse; its packages seen through
  # --system-site-packages), verifies it, and generates a real take with a tiny SVD pipeline in
  # the runtime's worker process.
  step "GPU runtime from the frozen app, and a diffusers take through its worker"
  SRC=$(cd "$(dirname "$0")/.." && pwd)
  mkdir -p "$WORK/wheelhouse"
  run env CONTINUITY_STUDIO_PYTHON="$SMOKE_RUNTIME_PYTHON" "$EXE" runtime install \
    --system-site-packages --wheelhouse "$WORK/wheelhouse" --torch cpu
  run "$SMOKE_RUNTIME_PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1] + "/tests/engine")
import tiny_pipelines as tp, pathlib; tp.save_tiny_pipeline("svd", pathlib.Path(sys.argv[2]))' \
    "$SRC" "$WORK/tiny-svd"
  cp -r "$DEMO" "$WORK/demo-runtime"
  run "$EXE" render "$WORK/demo-runtime" --backend diffusers --model "$WORK/tiny-svd" --shots 1 \
    --size 64x64 --frames 5 --steps 2
  grep -q '1 done, 0 failed' "$WORK/last.log" || fail "the diffusers take did not finish"
  run "$EXE" validate "$WORK/demo-runtime"
  run "$EXE" runtime remove
fi

step "a user error is a message, not a traceback"
mkdir -p "$WORK/broken" && echo '{"schema_version": 1, "shots": [' >"$WORK/broken/project.json"
if "$EXE" validate "$WORK/broken" >"$WORK/last.log" 2>&1; then fail "a broken project validated"; fi
cat "$WORK/last.log"
grep -q '^error: ' "$WORK/last.log" || fail "no 'error:' line for a broken project"
no_traceback "validate of a broken project"

printf '\nsmoke: OK (%.1f s)\n' "$(echo "$(date +%s.%N) - $T0" | bc 2>/dev/null || echo 0)"
