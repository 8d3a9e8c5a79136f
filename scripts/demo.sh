#!/usr/bin/env bash
# Set up from nothing (idempotent), then run the end-to-end demo: the embedded demo model plans
# on a synthetic drive replayed into the node over real DDS; outputs land in ./demo_out.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/demo_out/ros_log}"
python -m alpamayo_ros.tools.demo --out "$ROOT/demo_out" "$@"
