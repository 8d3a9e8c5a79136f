#!/usr/bin/env bash
# CI check: build the `alpamayo` package with colcon in a throw-away workspace (the repo is
# symlinked into ws/src) and check, from the install space alone, that the generated messages
# import and round-trip, that launch/config, the Python packages, install/setup.bash and every
# `ros2 run alpamayo <tool>` executable were installed (each tool answers --help), and that
# `colcon test` runs pytest (on ALPAMAYO_COLCON_PYTEST, a quick test file by default; a ROS
# developer's plain `colcon test` runs the whole suite).
#
# Usage: . .venv/bin/activate && scripts/check_colcon_build.sh [extra `colcon build` args]
# Env: ALPAMAYO_CMAKE_ARGS="-DX=Y ..." extra CMake args; KEEP_WS=1 keeps the workspace (its path
# is printed); WS_DIR=<dir> picks it; ALPAMAYO_COLCON_PYTEST=<test path> what colcon test runs.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ws="${WS_DIR:-$(mktemp -d -t alpamayo_colcon_ws.XXXXXX)}"
cleanup() {
  if [[ "${KEEP_WS:-0}" != "1" ]]; then rm -rf "${ws}"; else echo "workspace kept: ${ws}"; fi
}
trap cleanup EXIT

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  # PyPI ROS wheels: the venv is the underlay. On a real ROS install, source it before calling.
  export CMAKE_PREFIX_PATH="${VIRTUAL_ENV}${CMAKE_PREFIX_PATH:+:${CMAKE_PREFIX_PATH}}"
  export AMENT_PREFIX_PATH="${VIRTUAL_ENV}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-${ws}/ros_log}"

mkdir -p "${ws}/src"
ln -sfn "${repo_root}" "${ws}/src/alpamayo"
cd "${ws}"
# shellcheck disable=SC2206
cmake_args=(-DBUILD_TESTING=ON -DPython3_EXECUTABLE="$(command -v python3)"
            -DALPAMAYO_PYTEST_PATH="${ALPAMAYO_COLCON_PYTEST:-test/test_rviz_config.py}"
            ${ALPAMAYO_CMAKE_ARGS:-})
colcon build --event-handlers console_direct+ --packages-select alpamayo \
  "$@" --cmake-args "${cmake_args[@]}"

[[ -f "${ws}/install/setup.bash" ]] || { echo "missing install/setup.bash (colcon-bash)"; exit 1; }

# Check in a clean shell that sees only the underlay + this install space.
(
  set +u
  # shellcheck disable=SC1090,SC1091
  . "${ws}/install/setup.bash"
  set -u
  cd "${ws}"
  python3 - "${ws}/install" <<'PY'
import importlib
import importlib.util
import os
import sys

install = os.path.realpath(sys.argv[1])
from alpamayo.msg import DrivingPlan, PlanStatus, Trajectory, TrajectoryPoint
from rclpy.serialization import deserialize_message, serialize_message

module_path = os.path.realpath(importlib.import_module("alpamayo.msg").__file__)
if not module_path.startswith(install):
    sys.exit(f"alpamayo.msg imported from {module_path}, not from the install space {install}")
plan = DrivingPlan()
plan.header.frame_id = "odom"
plan.status.level = PlanStatus.DEGRADED
plan.trajectories = [Trajectory(points=[TrajectoryPoint(speed=3.5)])]
back = deserialize_message(serialize_message(plan), DrivingPlan)
if back != plan:
    sys.exit("DrivingPlan did not survive a serialize/deserialize round trip")
share = os.path.join(install, "alpamayo", "share", "alpamayo")
if not os.path.isfile(os.path.join(share, "package.xml")):
    sys.exit(f"missing {share}/package.xml")
lib = os.path.join(install, "alpamayo", "lib", "alpamayo", "alpamayo_node")
if os.path.exists(os.path.join(install, "alpamayo", "lib", "alpamayo")):
    if not os.access(lib, os.X_OK):
        sys.exit(f"missing executable {lib}")
    for pkg in ("alpamayo_core", "alpamayo_ros", "alpamayo_core.model.vlm",
                "alpamayo_ros.node.alpamayo_node", "alpamayo_ros.tools.share"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not os.path.realpath(spec.origin).startswith(install):
            sys.exit(f"{pkg} not importable from the install space")
    from alpamayo_ros.tools.share import share_path

    profile = os.path.realpath(share_path("config/fastdds.xml"))
    if not profile.startswith(share):
        sys.exit(f"share_path found {profile}, not the installed share directory {share}")
print(f"check_colcon_build: OK (alpamayo.msg from {module_path})")
PY
  # What `ros2 run alpamayo <tool>` executes: lib/alpamayo/<tool>. The node has no --help (it
  # would start), so it is checked for its entry point only.
  lib="${ws}/install/alpamayo/lib/alpamayo"
  for tool in replay eval record synth export prepare plan demo make_tiny node alpamayo_node; do
    [[ -x "${lib}/${tool}" ]] || { echo "missing executable ${lib}/${tool}"; exit 1; }
  done
  # The tools start in parallel (most import torch: ~5 s each on one core) and each is
  # waited for on its own, so a failing one is named.
  declare -A pids=()
  for tool in replay eval record synth export prepare plan demo make_tiny; do
    "${lib}/${tool}" --help > /dev/null & pids[${tool}]=$!
  done
  for tool in "${!pids[@]}"; do
    wait "${pids[${tool}]}" || { echo "ros2 run alpamayo ${tool} --help failed"; exit 1; }
  done
  grep -q "^from alpamayo_ros.__main__ import main$" "${lib}/node"
  echo "check_colcon_build: ${lib}: $(ls "${lib}" | tr '\n' ' ')"
)

# `colcon test` runs the registered pytest suite; colcon test-result fails on a failed test.
colcon test --event-handlers console_direct+ --packages-select alpamayo
colcon test-result --all --verbose
results="$(find "${ws}/build/alpamayo/test_results" -name '*.xml' | head -1)"
[[ -n "${results}" ]] && grep -q '<testcase' "${results}" || {
  echo "colcon test ran no test"; exit 1; }
echo "check_colcon_build: colcon test OK ($(grep -o 'tests="[0-9]*"' "${results}" | head -1))"
