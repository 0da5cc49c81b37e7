# shellcheck shell=bash
# Sourced by setup.sh and build.sh: install the Debian packages in "$@" that are missing.
# Uses sudo when not root; one apt-get update only when something is missing.
apt_ensure() {
  local label=$1; shift
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "$label: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
