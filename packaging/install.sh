#!/usr/bin/env bash
# Installs Peerdesk's one-folder build for the current user (no root needed), idempotently:
#
#   APPDIR/                  the one-folder build      (default ~/.local/opt/peerdesk)
#   BINDIR/peerdesk          a symlink to APPDIR/peerdesk (default ~/.local/bin)
#   DATADIR/applications/io.github.peerdesk.Peerdesk.desktop   (default ~/.local/share, or
#   DATADIR/icons/hicolor/*/apps/io.github.peerdesk.Peerdesk.*   $XDG_DATA_HOME)
#
# and makes Peerdesk the handler of ipfs:// and ipns:// links (update-desktop-database,
# xdg-mime; skipped with a note where those tools are missing). APPDIR/uninstall.sh undoes it.
#
#   install.sh [--prefix DIR] [--source DIR] [--register | --no-register]
#
#   --prefix DIR   install under DIR: DIR/bin, DIR/opt/peerdesk, DIR/share (also: PREFIX=DIR);
#                  then links are registered only with --register
#   --source DIR   the one-folder build to install (also: PEERDESK_SOURCE=DIR); default: the
#                  folder this script is in when it is the build (a release tarball), else
#                  dist/peerdesk of the repository it is in
#   --no-register  do not make Peerdesk the handler of ipfs:// and ipns:// links
set -euo pipefail

APP_ID=io.github.peerdesk.Peerdesk
MANIFEST=.install-manifest
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

prefix=${PREFIX:-}
source_dir=${PEERDESK_SOURCE:-}
register=""
while (($#)); do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --source) source_dir=${2:?--source needs a folder}; shift 2 ;;
    --source=*) source_dir=${1#*=}; shift ;;
    --register) register=1; shift ;;
    --no-register) register=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ -n $prefix ]]; then
  prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)
  BINDIR=$prefix/bin
  APPDIR=$prefix/opt/peerdesk
  DATADIR=$prefix/share
  register=${register:-0}  # xdg-mime writes the user's own settings, not the prefix's
else
  : "${HOME:?HOME is not set}"
  BINDIR=$HOME/.local/bin
  APPDIR=$HOME/.local/opt/peerdesk
  DATADIR=${XDG_DATA_HOME:-$HOME/.local/share}
  register=${register:-1}
fi

is_build() { [[ -x $1/peerdesk && -d $1/_internal && -d $1/share/applications ]]; }
if [[ -z $source_dir ]]; then
  if is_build "$here"; then
    source_dir=$here
  else
    source_dir=$here/../dist/peerdesk
  fi
fi
if ! is_build "$source_dir"; then
  echo "install.sh: no Peerdesk build in $source_dir (make one with 'bash packaging/build.sh')" >&2
  exit 1
fi
source_dir=$(cd "$source_dir" && pwd)

if [[ $APPDIR == *%* ]]; then
  # The desktop file spec's %% escape is not undone by GLib when it looks the program up.
  echo "install.sh: $APPDIR: a '%' in the path cannot go into a desktop file" >&2
  exit 1
fi

# Our files only: anything at APPDIR that is not an earlier install of ours stays untouched.
if [[ -e $APPDIR && $source_dir != "$APPDIR" ]] && ! [[ -f $APPDIR/$MANIFEST ]] &&
   ! { [[ -x $APPDIR/peerdesk && -d $APPDIR/_internal ]]; }; then
  echo "install.sh: $APPDIR exists and is not a Peerdesk install; not replacing it" >&2
  exit 1
fi
if [[ -e $BINDIR/peerdesk || -L $BINDIR/peerdesk ]] &&
   ! [[ -L $BINDIR/peerdesk && $(readlink "$BINDIR/peerdesk") == "$APPDIR/peerdesk" ]]; then
  # e.g. a pip or pipx install's peerdesk command
  echo "install.sh: $BINDIR/peerdesk exists and is not our symlink; not replacing it" \
       "(remove it to install)" >&2
  exit 1
fi

# The app folder: copy next to the old one, then swap, so a failed copy breaks nothing.
if [[ $source_dir != "$APPDIR" ]]; then
  mkdir -p "$(dirname "$APPDIR")"
  rm -rf "$APPDIR.new" "$APPDIR.old"
  cp -a "$source_dir" "$APPDIR.new"
  [[ -e $APPDIR ]] && mv "$APPDIR" "$APPDIR.old"
  mv "$APPDIR.new" "$APPDIR"
  rm -rf "$APPDIR.old"
fi

# Files outside APPDIR, recorded for uninstall.sh.
installed=()
mkdir -p "$BINDIR"
ln -sfn "$APPDIR/peerdesk" "$BINDIR/peerdesk"
installed+=("$BINDIR/peerdesk")

# The desktop file starts the program by its full path: ~/.local/bin is often not on the
# PATH the desktop session was started with (Debian adds it at login only if it existed).
desktop_quote() {  # a path as one argument of Exec= (desktop entry spec, "The Exec key")
  local arg=$1 bs=\\ quote='"' tick='`' dollar='$'
  if [[ $arg =~ ^[A-Za-z0-9/._+-]+$ ]]; then
    printf '%s' "$arg"
    return
  fi
  # Inside quotes \ " ` $ take a backslash, which the file's string escaping doubles.
  arg=${arg//"$bs"/"$bs$bs$bs$bs"}
  arg=${arg//"$quote"/"$bs$bs$quote"}
  arg=${arg//"$tick"/"$bs$bs$tick"}
  arg=${arg//"$dollar"/"$bs$bs$dollar"}
  printf '"%s"' "$arg"
}
exec_path=$(desktop_quote "$APPDIR/peerdesk")
mkdir -p "$DATADIR/applications"
desktop=$DATADIR/applications/$APP_ID.desktop
while IFS= read -r line; do
  [[ $line == "Exec=peerdesk "* ]] && line="Exec=$exec_path ${line#Exec=peerdesk }"
  printf '%s\n' "$line"
done < "$APPDIR/share/applications/$APP_ID.desktop" > "$desktop.tmp"
mv "$desktop.tmp" "$desktop"
installed+=("$desktop")

while IFS= read -r -d '' icon; do
  rel=${icon#"$APPDIR/share/icons/"}
  mkdir -p "$(dirname "$DATADIR/icons/$rel")"
  cp "$icon" "$DATADIR/icons/$rel"
  installed+=("$DATADIR/icons/$rel")
done < <(find "$APPDIR/share/icons" -type f -name "$APP_ID.*" -print0 | sort -z)

printf '%s\n' "${installed[@]}" > "$APPDIR/$MANIFEST"

# Desktops notice new icons by the theme folder's time; refresh a cache that would hide them.
mkdir -p "$DATADIR/icons/hicolor"
touch "$DATADIR/icons/hicolor"
if [[ -f $DATADIR/icons/hicolor/icon-theme.cache ]] && command -v gtk-update-icon-cache >/dev/null
then
  gtk-update-icon-cache -q -t -f "$DATADIR/icons/hicolor" || true
fi

if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$desktop"
fi
if command -v update-desktop-database >/dev/null; then
  update-desktop-database -q "$DATADIR/applications"
else
  echo "install.sh: update-desktop-database not found (desktop-file-utils); skipped"
fi
if ((register)); then
  if command -v xdg-mime >/dev/null; then
    xdg-mime default "$APP_ID.desktop" x-scheme-handler/ipfs x-scheme-handler/ipns ||
      echo "install.sh: xdg-mime could not set the ipfs:// handler; skipped"
  else
    echo "install.sh: xdg-mime not found (xdg-utils); ipfs:// links are not set to open Peerdesk"
  fi
fi

echo "Peerdesk installed in $APPDIR"
echo "  command:      $BINDIR/peerdesk"
echo "  desktop file: $desktop"
echo "  uninstall:    $APPDIR/uninstall.sh${prefix:+ --prefix $prefix}"
case ":$PATH:" in
  *":$BINDIR:"*) ;;
  *) echo "  note: $BINDIR is not on your PATH; the menu entry works all the same" ;;
esac
