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
  python -m pip install -q -r requirements.txt -r requirements-ros.txt
  python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
bash scripts/build_interfaces.sh
echo "[setup] ready: . $VENV/bin/activate"
