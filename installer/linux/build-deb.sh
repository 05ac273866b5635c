#!/usr/bin/env bash
# Build the Debian package from a built bundle: installer/linux/build-deb.sh DIST_DIR OUT_DIR
#
# DIST_DIR is packaging/build.sh's dist/continuity-studio. The package installs
#   /opt/continuity-studio/                      the bundle, unchanged
#   /usr/bin/continuity-studio                   symlink to the bundle's executable
#   /usr/share/applications/continuity-studio.desktop
#   /usr/share/icons/hicolor/<N>x<N>/apps/continuity-studio.png (+ scalable .svg)
#   /usr/share/mime/packages/continuity-studio.xml   (project.json -> the app)
#   /usr/share/doc/continuity-studio/copyright
# No maintainer scripts: dpkg triggers of desktop-file-utils, shared-mime-info and
# hicolor-icon-theme refresh the menu, MIME and icon caches. The package only ever owns files
# under those paths, so removing it never touches user projects or the user's data folders.
#
# Depends is computed from the bundle: every shared library that its ELF files load from the
# system (not from the bundle) is mapped to its Debian package with dpkg -S, plus the X11/XCB
# libraries Qt's xcb plugin needs. Libraries that only other optional Qt plugins need (Wayland,
# GTK theme) go to Recommends.
# Environment: DEB_VERSION (default: studio.__version__ from the bundle's --version),
# DEB_COMPRESS (zstd | xz | gzip | none; default zstd).
set -euo pipefail

DIST=${1:?usage: build-deb.sh DIST_DIR OUT_DIR}
OUT=${2:?usage: build-deb.sh DIST_DIR OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIST=$(cd "$DIST" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PKG=continuity-studio
[ -x "$DIST/$PKG" ] || { echo "build-deb: no bundle executable at $DIST/$PKG" >&2; exit 1; }
for tool in dpkg-deb dpkg; do
  command -v $tool >/dev/null || { echo "build-deb: $tool is required (Debian/Ubuntu)" >&2; exit 1; }
done

VERSION=${DEB_VERSION:-$(QT_QPA_PLATFORM=offscreen "$DIST/$PKG" --version | awk '{print $2}')}
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/cs-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

echo "== build-deb: staging $PKG $VERSION ($ARCH)"
install -d "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
  "$STAGE/usr/share/mime/packages" "$STAGE/usr/share/doc/$PKG" "$STAGE/DEBIAN"
cp -a "$DIST" "$STAGE/opt/$PKG"
# The bundle finds its _internal/ folder through /proc/self/exe, so a plain symlink works.
ln -s "/opt/$PKG/$PKG" "$STAGE/usr/bin/$PKG"
install -m 644 "$HERE/continuity-studio.desktop" "$STAGE/usr/share/applications/$PKG.desktop"
install -m 644 "$HERE/continuity-studio-mime.xml" "$STAGE/usr/share/mime/packages/$PKG.xml"
install -m 644 "$HERE/copyright" "$STAGE/usr/share/doc/$PKG/copyright"
ICONS=$ROOT/resources/icons
for png in "$ICONS"/$PKG-*.png; do
  n=$(basename "$png" .png); n=${n##*-}
  install -D -m 644 "$png" "$STAGE/usr/share/icons/hicolor/${n}x${n}/apps/$PKG.png"
done
install -D -m 644 "$ICONS/$PKG.svg" "$STAGE/usr/share/icons/hicolor/scalable/apps/$PKG.svg"
# Files readable by all, directories traversable; executables keep their bit.
chmod -R u+rwX,go+rX,go-w "$STAGE/opt" "$STAGE/usr"

echo "== build-deb: computing dependencies"
# Libraries the bundle loads from the system. An ELF under _internal/PySide6/Qt/plugins whose
# dependency is not needed by anything else marks an optional (plugin-only) dependency.
declare -A CORE=() OPTIONAL=()
while IFS= read -r -d '' elf; do
  case "$elf" in */PySide6/Qt/plugins/*) kind=OPTIONAL ;; *) kind=CORE ;; esac
  while read -r lib path; do
    case "$path" in ""|"$STAGE"*|"$DIST"*) continue ;; esac
    [ "$kind" = CORE ] && CORE[$path]=1 || OPTIONAL[$path]=1
  done < <(LD_LIBRARY_PATH="$DIST/_internal" ldd "$elf" 2>/dev/null \
           | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
done < <(find "$DIST" -type f \( -name '*.so*' -o -perm -u+x \) -print0)  # ldd skips non-ELF

pkgs_of() {  # library paths on stdin -> sorted unique Debian package names
  while read -r p; do
    dpkg -S "$p" 2>/dev/null || dpkg -S "$(readlink -f "$p")" 2>/dev/null || true
  done | cut -d: -f1 | sed 's/,.*//' | sort -u
}
# Qt's X11 platform plugin (libqxcb.so + libQt6XcbQpa) links these (names valid on Debian 12 /
# Ubuntu 22.04+). Without any one of them Qt aborts at start-up on an X11 desktop (the app names
# the missing ones first: studio/ui/qt_libs.py), so they are Depends, not Recommends; Wayland
# sessions get a few small libraries they do not use. Keep in sync with studio.sh's XCB_DEBS
# (tests/packaging/test_packaging_bootstrap.py checks both against the plugin's real needs).
XCB_DEPENDS="libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1
  libxcb-xfixes0 libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0 libx11-6 libx11-xcb1"
DEPENDS_FOUND=$(printf '%s\n' "${!CORE[@]}" | pkgs_of)
[ -n "$DEPENDS_FOUND" ] || { echo "build-deb: no system libraries found (ldd failed?)" >&2; exit 1; }
# shellcheck disable=SC2086  # a list of package names
DEPENDS=$( { echo "$DEPENDS_FOUND"; printf '%s\n' $XCB_DEPENDS; } | grep -v '^$' | sort -u \
  | paste -sd, | sed 's/,/, /g')
RECOMMENDS_FOUND=$(printf '%s\n' "${!OPTIONAL[@]}" | pkgs_of)
# python3-venv: the GPU runtime; a font for Qt.
RECOMMENDS=$( { echo "$RECOMMENDS_FOUND"; printf '%s\n' python3-venv fonts-dejavu-core; } \
  | grep -v '^$' | sort -u | grep -vxF -f <(echo "$DEPENDS" | tr -d ' ' | tr , '\n') \
  | paste -sd, | sed 's/,/, /g')
echo "Depends: $DEPENDS"
echo "Recommends: $RECOMMENDS"

SIZE_KB=$(du -sk --apparent-size "$STAGE/opt" "$STAGE/usr" | awk '{s += $1} END {print s}')
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$SIZE_KB/" \
    -e "s/@DEPENDS@/$DEPENDS/" -e "s/@RECOMMENDS@/$RECOMMENDS/" \
    "$HERE/control.in" > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find opt usr -type f -print0 | sort -z | xargs -0 md5sum) > "$STAGE/DEBIAN/md5sums"

DEB=$OUT/${PKG}_${VERSION}_${ARCH}.deb
COMPRESS=${DEB_COMPRESS:-zstd}
echo "== build-deb: dpkg-deb ($COMPRESS)"
T0=$(date +%s)
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$STAGE" "$DEB" >/dev/null
dpkg-deb --info "$DEB" | sed -n '/Package:/,/Description:/p'
echo "package:  $DEB"
echo "size:     $(( $(stat -c %s "$DEB") / 1048576 )) MiB (installed $(( SIZE_KB / 1024 )) MiB), built in $(( $(date +%s) - T0 )) s"
