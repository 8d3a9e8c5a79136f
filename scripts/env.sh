# Sourced by demo.sh and test.sh: set up from nothing (idempotent), activate the venv, and
# export the environment every ROS process here needs.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ALPAMAYO_VENV:-$ROOT/.venv}/bin/activate"
# Discover ROS peers on this machine only (no multicast on the network).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
