#!/usr/bin/env bash
# Build the one-folder llmtray bundle with PyInstaller: dist/llmtray/ (dist/llmtray.app on macOS).
# Not part of CI (it takes minutes); run it by hand or in a release job:
#
#   bash packaging/pyinstaller/build.sh
#
# llmtray and PyInstaller go into a venv of their own (build/bundle-venv, or $BUNDLE_VENV), from
# the checkout as a regular (non-editable) install with the `bundle` extra, so the bundle holds
# what the wheel holds. $PYTHON picks the interpreter that creates the venv (default python3).
# Ends with a smoke test: the bundled program prints its version.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
VENV="${BUNDLE_VENV:-$ROOT/build/bundle-venv}"

if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/Scripts/python.exe" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/Scripts/python.exe"

"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q ".[bundle]"
"$PY" -m pip install -q --no-deps --force-reinstall .  # this checkout's code, even at an unchanged version

"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
  packaging/pyinstaller/llmtray.spec

case "$(uname -s)" in
  Darwin) APP="$ROOT/dist/llmtray.app/Contents/MacOS/llmtray" ;;
  MINGW*|MSYS*|CYGWIN*) APP="$ROOT/dist/llmtray/llmtray.exe" ;;
  *) APP="$ROOT/dist/llmtray/llmtray" ;;
esac
case "$(uname -s)" in
  MINGW*|MSYS*|CYGWIN*) echo "built $APP (windowed: no console output to smoke-test)" ;;
  *) echo "built $("$APP" --version) into $(dirname "$APP")" ;;
esac
du -sh "$ROOT/dist/llmtray" 2>/dev/null || true
