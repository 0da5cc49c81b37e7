#!/usr/bin/env bash
# Removes what install.sh put in place: the app folder, the peerdesk symlink, the desktop file,
# the icons and Peerdesk's ipfs:// / ipns:// handler entries. Idempotent. Peerdesk's profiles
# (identity, contacts, files; ~/.local/share/Peerdesk by default) are not touched.
#
#   uninstall.sh [--prefix DIR]      (the same --prefix / PREFIX as given to install.sh)
set -euo pipefail

APP_ID=io.github.peerdesk.Peerdesk
MANIFEST=.install-manifest

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

prefix=${PREFIX:-}
while (($#)); do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ -n $prefix ]]; then
  [[ -d $prefix ]] || { echo "Peerdesk is not installed in $prefix"; exit 0; }
  prefix=$(cd "$prefix" && pwd)
  BINDIR=$prefix/bin
  APPDIR=$prefix/opt/peerdesk
  DATADIR=$prefix/share
else
  : "${HOME:?HOME is not set}"
  BINDIR=$HOME/.local/bin
  APPDIR=$HOME/.local/opt/peerdesk
  DATADIR=${XDG_DATA_HOME:-$HOME/.local/share}
fi

# What install.sh recorded, plus the names it always uses (for an install without a manifest).
files=("$BINDIR/peerdesk" "$DATADIR/applications/$APP_ID.desktop")
if [[ -f $APPDIR/$MANIFEST ]]; then
  mapfile -t recorded < "$APPDIR/$MANIFEST"
  files+=("${recorded[@]}")
fi
if [[ -d $DATADIR/icons/hicolor ]]; then
  while IFS= read -r -d '' icon; do files+=("$icon"); done \
    < <(find "$DATADIR/icons/hicolor" -path "*/apps/$APP_ID.*" -print0)
fi

removed=0
dirs=()
for file in "${files[@]}"; do
  [[ -n $file && ( -e $file || -L $file ) ]] || continue
  case $file in
    "$BINDIR/peerdesk")
      # Only our symlink, never someone else's peerdesk program.
      [[ -L $file && $(readlink "$file") == "$APPDIR/peerdesk" ]] || continue ;;
    "$DATADIR"/applications/"$APP_ID".desktop | "$DATADIR"/icons/*/apps/"$APP_ID".*) ;;
    *) continue ;;  # a manifest line that is not one of our files
  esac
  rm -f "$file"
  removed=$((removed + 1))
  dirs+=("$(dirname "$file")")
done

if [[ -d $APPDIR ]]; then
  if [[ -f $APPDIR/$MANIFEST || ( -x $APPDIR/peerdesk && -d $APPDIR/_internal ) ]]; then
    rm -rf "$APPDIR"
    removed=$((removed + 1))
    dirs+=("$(dirname "$APPDIR")")
  else
    echo "uninstall.sh: $APPDIR is not a Peerdesk install; left as it is" >&2
  fi
fi
rm -rf "$APPDIR.new" "$APPDIR.old"

# Our entries in the link-handler settings (xdg-mime default wrote them).
config=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}
for list in "$config/mimeapps.list" "$DATADIR/applications/mimeapps.list"; do
  if [[ ! -f $list ]] || ! grep -q "$APP_ID.desktop" "$list"; then continue; fi
  awk -v id="$APP_ID.desktop" -F= '
    /^x-scheme-handler\/(ipfs|ipns)=/ {
      n = split($2, ids, ";"); kept = ""
      for (i = 1; i <= n; i++) if (ids[i] != "" && ids[i] != id) kept = kept ids[i] ";"
      if (kept == "") next
      print $1 "=" kept; next
    }
    { print }' "$list" > "$list.tmp"
  mv "$list.tmp" "$list"
  # Nothing but section headers left: xdg-mime made the file for us alone.
  if ! grep -qv '^\(\[.*\]\)\?[[:space:]]*$' "$list"; then rm -f "$list"; fi
done

if [[ -d $DATADIR/applications ]]; then
  if command -v update-desktop-database >/dev/null; then
    update-desktop-database -q "$DATADIR/applications"
  fi
  # A cache that now lists nothing is ours alone.
  cache=$DATADIR/applications/mimeinfo.cache
  if [[ -f $cache ]] && ! grep -qv '^\(\[MIME Cache\]\)\?$' "$cache"; then
    rm -f "$cache"
  fi
fi
if [[ -d $DATADIR/icons/hicolor ]]; then
  touch "$DATADIR/icons/hicolor"
  if [[ -f $DATADIR/icons/hicolor/icon-theme.cache ]] &&
     command -v gtk-update-icon-cache >/dev/null; then
    gtk-update-icon-cache -q -t -f "$DATADIR/icons/hicolor" || true
  fi
fi

# Folders left empty: all of them inside a --prefix; in the per-user default, only those that
# install.sh alone makes (~/.local/opt, icons/hicolor/<size>/apps), not the standard ones.
if [[ -n $prefix ]]; then
  roots=("$prefix") keep=()
else
  roots=("$HOME/.local" "$DATADIR")
  keep=("$BINDIR" "$HOME/.local/share" "$DATADIR" "$DATADIR/applications" "$DATADIR/icons"
        "$DATADIR/icons/hicolor")
fi
prune_up() {
  local dir=$1 root kept
  for root in "${roots[@]}"; do
    while [[ $dir == "$root"/* ]]; do
      for kept in "${keep[@]}"; do [[ $dir == "$kept" ]] && return 0; done
      rmdir "$dir" 2>/dev/null || return 0
      dir=$(dirname "$dir")
    done
  done
}
dirs+=("$DATADIR/applications" "$DATADIR/icons/hicolor" "$BINDIR")
for dir in "${dirs[@]}"; do prune_up "$dir"; done

if ((removed)); then
  echo "Peerdesk uninstalled from $APPDIR (profiles in ~/.local/share/Peerdesk are kept)"
else
  echo "Peerdesk is not installed in $APPDIR"
fi
