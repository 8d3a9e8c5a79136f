#!/usr/bin/env bash
# Set up from nothing (idempotent), then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ALPAMAYO_VENV:-$ROOT/.venv}/bin/activate"
# Every ROS process of the tests discovers peers on this machine only (no multicast).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d /tmp/alpamayo_roslog.XXXXXX)}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ruff check .
python -m pytest -q "$@"
