#!/usr/bin/env bash
# The one GPU check: run once on a machine with a CUDA GPU (set-up included, idempotent).
#   ./scripts/gpu_check.sh [--device cuda:0] [--out gpu_check_out]
#   ./scripts/gpu_check.sh --device cpu --out dry      # CPU dry run of the same steps
# GPU-marked tests, the full-size expert bench, an end-to-end bf16 plan on the tiny model with
# every backend, a summary table (details in OUT/gpu_check.json). Bounded to 10 minutes; exits
# non-zero on any parity failure (see scripts/gpu_check.py).
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d /tmp/alpamayo_roslog.XXXXXX)}"
exec timeout --signal=TERM --kill-after=10 600 python scripts/gpu_check.py "$@"
