#!/usr/bin/env bash
# Sets up everything Peerdesk needs on a fresh Debian/Ubuntu machine, idempotently:
# system libraries for Qt (and Xvfb for screenshots), Node.js for the js-libp2p interop test,
# a virtualenv in .venv with Peerdesk and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-venv
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xfixes0
  xvfb fluxbox imagemagick x11-utils xdg-utils desktop-file-utils
  nodejs npm
  iproute2 iptables  # the NAT lab tests (network namespaces, MASQUERADE routers)
  miniupnpd nftables  # the port-mapping lab test (a real UPnP gateway in a lab router)
)

wanted=()
for pkg in "${APT_PACKAGES[@]}"; do
  # Node from another source (e.g. nodesource's nodejs, which bundles npm) is fine as it is.
  if [[ $pkg == nodejs || $pkg == npm ]] && command -v node >/dev/null && command -v npm >/dev/null; then
    continue
  fi
  wanted+=("$pkg")
done
# shellcheck source=packaging/apt.sh
source packaging/apt.sh
apt_ensure setup "${wanted[@]}"

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

if command -v npm >/dev/null; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done — start the app with .venv/bin/peerdesk, run the tests with .venv/bin/python -m pytest"
