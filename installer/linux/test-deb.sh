#!/usr/bin/env bash
# Install test of the .deb (run as root, e.g. in CI): installer/linux/test-deb.sh PACKAGE.deb
#
#   1. dpkg -i the package (apt-get -f fills in missing Depends when apt is available)
#   2. check the installed files: /usr/bin launcher, .desktop entry (desktop-file-validate when
#      installed), hicolor icons, MIME type
#   3. run the installed `continuity-studio --version` from PATH, then the whole smoke test
#      (validate, headless preview render, analyze, export, GUI first paint) with the installed
#      executable on a copy of the installed demo
#   4. make a user project with the installed app, dpkg -r, and check the package's files are
#      gone while the user project and the user's data folder are byte-for-byte untouched
# Refuses to run when continuity-studio is already installed (it would remove it), unless
# FORCE=1. Any failure exits non-zero.
set -euo pipefail

DEB=${1:?usage: installer/linux/test-deb.sh PACKAGE.deb}
DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PKG=continuity-studio
[ "$(id -u)" = 0 ] || { echo "test-deb: run as root (dpkg -i / -r)" >&2; exit 1; }
if dpkg-query -W -f '${Status}' $PKG 2>/dev/null | grep -q "install ok installed" && [ "${FORCE:-0}" != 1 ]; then
  echo "test-deb: $PKG is already installed here; FORCE=1 to test anyway (it is removed at the end)" >&2
  exit 1
fi
fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cs-debtest.XXXXXX")
cleanup() {
  rm -rf "$WORK"
  if [ "${REMOVED:-0}" != 1 ] && dpkg-query -W $PKG >/dev/null 2>&1; then dpkg -r $PKG >/dev/null || true; fi
}
trap cleanup EXIT
export QT_QPA_PLATFORM=offscreen
export CONTINUITY_STUDIO_HOME=$WORK/userdata  # the "user's" data folder for this test
T0=$(date +%s)

echo "== test-deb: dpkg -i $(basename "$DEB")"
if ! dpkg -i "$DEB"; then
  command -v apt-get >/dev/null || fail "dpkg -i failed"
  echo "test-deb: installing missing dependencies with apt-get -f"
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -q || fail "dependencies"
fi
dpkg-query -W -f '${Status}\n' $PKG | grep -q "install ok installed" || fail "not installed"

echo "== test-deb: installed files"
[ -L /usr/bin/$PKG ] || fail "/usr/bin/$PKG is missing"
[ -x /opt/$PKG/$PKG ] || fail "/opt/$PKG/$PKG is missing"
[ -f /usr/share/applications/$PKG.desktop ] || fail "no .desktop file"
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate /usr/share/applications/$PKG.desktop || fail "invalid .desktop file"
fi
for n in 16 32 48 128 256; do
  [ -s /usr/share/icons/hicolor/${n}x${n}/apps/$PKG.png ] || fail "no ${n}px hicolor icon"
done
[ -s /usr/share/icons/hicolor/scalable/apps/$PKG.svg ] || fail "no scalable icon"
[ -f /usr/share/mime/packages/$PKG.xml ] || fail "no MIME type definition"
if command -v update-mime-database >/dev/null; then  # shared-mime-info's trigger ran
  [ -f /usr/share/mime/application/x-continuity-studio-project.xml ] || fail "MIME database not updated"
fi

echo "== test-deb: the installed continuity-studio"
# A desktop user's PATH (a developer's pip-installed continuity-studio must not answer instead).
SYS_PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ "$(PATH=$SYS_PATH command -v $PKG)" = /usr/bin/$PKG ] || fail "continuity-studio is not on PATH"
(cd / && PATH=$SYS_PATH $PKG --version) | tee "$WORK/version.txt"
grep -q "^$PKG $(dpkg-query -W -f '${Version}' $PKG)\$" "$WORK/version.txt" || fail "--version does not match the package"
"$ROOT/packaging/smoke.sh" /opt/$PKG /usr/bin/$PKG

echo "== test-deb: a user project survives dpkg -r"
mkdir -p "$WORK/home/Films"
cp -r /opt/$PKG/_internal/resources/demo "$WORK/home/Films/MyFilm"
/usr/bin/$PKG render "$WORK/home/Films/MyFilm" --backend preview --shots 1
/usr/bin/$PKG validate "$WORK/home/Films/MyFilm"
# --demo copies the demo into the user's data folder: something there for dpkg -r to leave alone.
STUDIO_BENCH_STARTUP=1 /usr/bin/$PKG --demo >/dev/null 2>&1 || fail "the GUI did not start"
snapshot() { (cd "$WORK" && find home userdata -type f -print0 | sort -z | xargs -0 sha256sum); }
snapshot > "$WORK/before.txt"
[ "$(wc -l < "$WORK/before.txt")" -gt 3 ] || fail "the user project is empty"
dpkg -r $PKG
REMOVED=1
dpkg-query -W -f '${Status}' $PKG 2>/dev/null | grep -q "install ok installed" && fail "still installed"
[ ! -e /opt/$PKG ] || fail "/opt/$PKG was left behind: $(find /opt/$PKG | head -5)"
[ ! -e /usr/bin/$PKG ] || fail "/usr/bin/$PKG was left behind"
[ ! -e /usr/share/applications/$PKG.desktop ] || fail "the .desktop file was left behind"
snapshot > "$WORK/after.txt"
diff "$WORK/before.txt" "$WORK/after.txt" || fail "dpkg -r changed the user's files"
echo "user project and data folder unchanged ($(wc -l < "$WORK/after.txt") files)"

echo
echo "test-deb: OK ($(( $(date +%s) - T0 )) s)"
