#!/usr/bin/env bash
# Idempotent set-up from nothing: venv, pinned requirements (torch 2.13.0 CPU from local disk,
# ROS 2 kilted wheels), the project in editable mode, and msg/ built into the venv.
# Re-running skips every step whose inputs did not change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${ALPAMAYO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -U pip
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

stamp="$VENV/.alpamayo-requirements.sha"
want="$(cat requirements.txt requirements-ros.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing pinned requirements (first time: ~1-2 min)"
  # (this machine's pip config names optional local indexes; hide its "is ignored" noise)
  python -m pip install -q -r requirements.txt -r requirements-ros.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  # An earlier checkout installed this project under the distribution name of the ROS package
  # ("alpamayo"); uninstalling that also removes the generated messages, rebuilt below.
  purelib="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  if [ -f "$purelib/__editable__.alpamayo-0.1.0.pth" ]; then
    python -m pip uninstall -q -y alpamayo
  fi
  python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
  rebuild=--force  # (re)installs may have touched the venv prefix the messages live in
fi

# The fleet report's test opens the report in a real headless browser: Debian's chromium and
# chromedriver. Installed once; without them that test fails (it never skips).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "[setup] installing chromium + chromium-driver (apt-get)"
  sudo_="" && [ "$(id -u)" -ne 0 ] && sudo_="sudo -n"
  { $sudo_ apt-get update -q && DEBIAN_FRONTEND=noninteractive \
      $sudo_ apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
    || echo "[setup] WARNING: could not install chromium (root or sudo needed)" >&2
fi

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
bash scripts/build_interfaces.sh ${rebuild:-}
echo "[setup] ready: . $VENV/bin/activate"
