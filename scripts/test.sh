#!/usr/bin/env bash
# Set up from nothing (idempotent), then lint and run the whole test suite.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d /tmp/alpamayo_roslog.XXXXXX)}"
ruff check .
python -m pytest -q "$@"
