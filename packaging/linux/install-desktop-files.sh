#!/bin/sh
# Put llmtray into the desktop's application menu: the launcher, the icons in the hicolor theme
# (share/icons/hicolor/<size>x<size>/apps/llmtray.png and scalable/apps/llmtray.svg) and the
# AppStream metainfo, under PREFIX/share. The program itself is installed separately
# (pipx, uv tool, a venv, or the PyInstaller bundle).
#
#   sh packaging/linux/install-desktop-files.sh                          # per user: ~/.local/share
#   sh packaging/linux/install-desktop-files.sh --exec /opt/llmtray/llmtray   # the bundle
#   sudo sh packaging/linux/install-desktop-files.sh --prefix /usr/local  # system-wide
#   DESTDIR=pkg sh packaging/linux/install-desktop-files.sh --prefix /usr # staging for a package
#   sh packaging/linux/install-desktop-files.sh --uninstall [--prefix DIR]
#
# Exec: --exec PATH if given; otherwise, under /usr or /usr/local, plain `llmtray`; otherwise the
# absolute path of `llmtray` on PATH (a desktop session's PATH often lacks ~/.local/bin).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PREFIX="$HOME/.local"
EXEC=""
UNINSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --exec) EXEC="$2"; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install-desktop-files.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

SHARE="${DESTDIR:-}$PREFIX/share"
ICONS="$SHARE/icons/hicolor"
APP_ID=io.github.llmtray.llmtray
SIZES="16 22 24 32 48 64 128 256 512"

refresh_caches() {
  [ -n "${DESTDIR:-}" ] && return 0  # a package's post-install step does this on the target
  if command -v gtk-update-icon-cache >/dev/null 2>&1; then gtk-update-icon-cache -q -t -f "$ICONS" || true; fi
  if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$SHARE/applications" || true; fi
}

if [ "$UNINSTALL" = 1 ]; then
  for size in $SIZES; do rm -f "$ICONS/${size}x${size}/apps/llmtray.png"; done
  rm -f "$ICONS/scalable/apps/llmtray.svg" "$SHARE/applications/llmtray.desktop" \
        "$SHARE/metainfo/$APP_ID.metainfo.xml"
  refresh_caches
  echo "removed llmtray's desktop files from $SHARE"
  exit 0
fi

if [ -z "$EXEC" ]; then
  case "$PREFIX" in
    /usr|/usr/local) EXEC=llmtray ;;
    *) EXEC=$(command -v llmtray || true)
       if [ -z "$EXEC" ]; then
         echo "install-desktop-files.sh: warning: no llmtray on PATH; the launcher runs plain 'llmtray' (or pass --exec)" >&2
         EXEC=llmtray
       fi ;;
  esac
fi
case "$EXEC" in
  llmtray|/*) ;;
  *) echo "install-desktop-files.sh: --exec needs an absolute path, got $EXEC" >&2; exit 2 ;;
esac

# The Exec value: quoted as the desktop-entry spec asks ("`$\ backslash-escaped inside quotes,
# % doubled), then every backslash doubled (string escaping).
exec_value=$(printf '%s' "$EXEC" | sed -e 's/[\\"`$]/\\&/g' -e 's/%/%%/g')
case "$EXEC" in
  *[![:alnum:]/._+-]*) exec_value="\"$exec_value\"" ;;
esac
exec_value=$(printf '%s' "$exec_value" | sed -e 's/\\/\\\\/g')
sed_value=$(printf '%s' "$exec_value" | sed -e 's/[\\&|]/\\&/g')  # for sed's replacement text

for size in $SIZES; do
  install -D -m 644 "$ROOT/resources/icons/llmtray-$size.png" "$ICONS/${size}x${size}/apps/llmtray.png"
done
install -D -m 644 "$ROOT/resources/icons/llmtray.svg" "$ICONS/scalable/apps/llmtray.svg"
mkdir -p "$SHARE/applications"
sed "s|^Exec=.*|Exec=$sed_value|" "$HERE/llmtray.desktop" > "$SHARE/applications/llmtray.desktop"
chmod 644 "$SHARE/applications/llmtray.desktop"
install -D -m 644 "$HERE/$APP_ID.metainfo.xml" "$SHARE/metainfo/$APP_ID.metainfo.xml"
refresh_caches
echo "installed llmtray's launcher (Exec=$EXEC), icons and metainfo under $SHARE"
