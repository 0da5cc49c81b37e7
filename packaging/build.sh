#!/usr/bin/env bash
# Builds Peerdesk's Linux release artefacts with PyInstaller; runs on a machine where
# packaging/setup.sh has made .venv. The results start on machines without Python.
#
#   bash packaging/build.sh [--all | --onedir | --onefile] [--tarball]
#
#   --onedir   dist/peerdesk/                      one-folder build, plus share/ (desktop file,
#                                                  icons) and install.sh / uninstall.sh
#   --onefile  dist/peerdesk-VERSION-linux-ARCH    one self-extracting file
#   --tarball  also dist/peerdesk-VERSION-linux-ARCH.tar.gz: the one-folder build to unpack
#              and install with its install.sh
#   --all      all three (the default)
#
# Also writes dist/SHA256SUMS. Inputs generated on the way (build/generated/peerdesk_rc.py,
# build/icons/) come from resources/; nothing in the source tree is changed.
# Environment: PYTHON (default .venv/bin/python), SOURCE_DATE_EPOCH (default: last commit).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYINSTALLER_VERSION=6.22.3
HOOKS_CONTRIB_VERSION=2026.9
APP_ID=io.github.peerdesk.Peerdesk
# binutils: strip and objdump for PyInstaller; the libxcb-* libraries are bundled for Qt's xcb
# platform plugin (many desktops lack them); libwayland-* are not bundled (PyInstaller leaves
# them to the system, like libGL) but the check of the bundle below needs them;
# desktop-file-utils checks the desktop file.
APT_PACKAGES=(binutils libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libwayland-cursor0
              libwayland-egl1 desktop-file-utils)

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

onedir=0 onefile=0 tarball=0
(($#)) || set -- --all
for arg; do
  case $arg in
    --all) onedir=1 onefile=1 tarball=1 ;;
    --onedir) onedir=1 ;;
    --onefile) onefile=1 ;;
    --tarball) onedir=1 tarball=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-$ROOT/.venv/bin/python}
if [[ ! -x $PY ]]; then
  echo "build.sh: $PY not found; run 'bash packaging/setup.sh' first" >&2
  exit 1
fi

# shellcheck source=packaging/apt.sh
source "$ROOT/packaging/apt.sh"
apt_ensure build "${APT_PACKAGES[@]}"

installed_version() {
  "$PY" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$1"
}
if [[ $(installed_version pyinstaller) != "$PYINSTALLER_VERSION" ||
      $(installed_version pyinstaller-hooks-contrib) != "$HOOKS_CONTRIB_VERSION" ]]; then
  echo "build: installing pyinstaller==$PYINSTALLER_VERSION" \
       "pyinstaller-hooks-contrib==$HOOKS_CONTRIB_VERSION"
  "$PY" -m pip install -q "pyinstaller==$PYINSTALLER_VERSION" \
    "pyinstaller-hooks-contrib==$HOOKS_CONTRIB_VERSION"
fi

VERSION=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from core import __version__
print(__version__)' "$ROOT")
ARCH=$(uname -m)
RELEASE=peerdesk-$VERSION-linux-$ARCH
# The same inputs give the same bytes where the tools allow it (rcc, tar, gzip, pyc order).
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH PYTHONHASHSEED=0
export QT_RCC_SOURCE_DATE_OVERRIDE=$SOURCE_DATE_EPOCH QT_QPA_PLATFORM=offscreen

echo "build: Peerdesk $VERSION for linux-$ARCH with PyInstaller $PYINSTALLER_VERSION"
rm -rf build/generated build/icons
mkdir -p build/generated dist
"$(dirname "$PY")/pyside6-rcc" resources/peerdesk.qrc -o build/generated/peerdesk_rc.py
"$PY" packaging/make_icons.py build/icons >/dev/null
desktop-file-validate "packaging/$APP_ID.desktop"

artefacts=()
pyinstaller() {  # MODE NAME
  local start=$SECONDS
  "$PY" -m PyInstaller --noconfirm --log-level WARN \
    --workpath "build/pyinstaller/$1" --distpath dist packaging/peerdesk.spec \
    -- --mode "$1" --name "$2" --generated build/generated
  echo "build: $1 took $((SECONDS - start)) s"
}

if ((onedir)); then
  pyinstaller onedir peerdesk
  share=dist/peerdesk/share
  mkdir -p "$share/applications" "$share/icons"
  cp "packaging/$APP_ID.desktop" "$share/applications/"
  cp -r build/icons/hicolor "$share/icons/"
  cp packaging/install.sh packaging/uninstall.sh dist/peerdesk/
  # Every bundled library must find what it links against in the bundle or the base system.
  unresolved=0
  while IFS= read -r -d '' lib; do
    if missing_libs=$(LD_LIBRARY_PATH=$ROOT/dist/peerdesk/_internal ldd "$lib" 2>/dev/null |
                      grep 'not found'); then
      echo "build: ${lib#dist/peerdesk/}: $(echo "$missing_libs" | xargs)" >&2
      unresolved=1
    fi
  done < <(find dist/peerdesk/_internal -name '*.so*' -type f -print0)
  ((unresolved == 0)) || { echo "build: bundled libraries lack dependencies" >&2; exit 1; }
  dist/peerdesk/peerdesk --version
  artefacts+=(peerdesk/)
fi

if ((tarball)); then
  rm -f "dist/$RELEASE.tar.gz"
  tar -C dist --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --transform "s,^peerdesk,$RELEASE," -cf - peerdesk | gzip -n -6 > "dist/$RELEASE.tar.gz"
  artefacts+=("$RELEASE.tar.gz")
fi

if ((onefile)); then
  pyinstaller onefile "$RELEASE"
  "dist/$RELEASE" --version
  artefacts+=("$RELEASE")
fi

cd dist
files=()
for artefact in "${artefacts[@]}"; do
  [[ $artefact == */ ]] && files+=("${artefact}peerdesk") || files+=("$artefact")
done
sha256sum "${files[@]}" > SHA256SUMS
echo "build: done (dist/SHA256SUMS):"
du -sh "${artefacts[@]}"
