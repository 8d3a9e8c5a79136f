#!/usr/bin/env bash
# Set up from nothing (idempotent), then run the end-to-end demo: the embedded tiny model plans
# on a synthetic drive replayed into the node over real DDS; outputs land in ./demo_out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ALPAMAYO_VENV:-$ROOT/.venv}/bin/activate"
# Every ROS process of the demo discovers peers on this machine only (no multicast).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/demo_out/ros_log}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m alpamayo_ros.demo --out "$ROOT/demo_out" "$@"
