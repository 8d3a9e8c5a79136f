#!/usr/bin/env bash
# Python 3.12 check (Ubuntu 24.04's Python, which ROS 2 Jazzy and Kilted use there) of what runs
# without torch and ROS: every module byte-compiles, and the launch-argument / RViz-layout /
# package-metadata tests pass. torch for 3.12 is a multi-GB CUDA download, so the rest of the
# suite is checked on the project's 3.11 venv only.
#
# Usage: scripts/check_py312.sh   (PYTHON312=/path/to/python3.12 to pick the interpreter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pyenv_312="$(ls -d "${HOME}"/.pyenv/versions/3.12.*/bin/python 2>/dev/null | tail -1 || true)"
py="${PYTHON312:-${pyenv_312:-python3.12}}"
"${py}" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version'
venv="$(mktemp -d -t alpamayo_py312.XXXXXX)"
trap 'rm -rf "${venv}"' EXIT
export PYTHONPYCACHEPREFIX="${venv}/pycache"  # keep 3.12 bytecode out of the tree
"${py}" -m venv "${venv}"
"${venv}/bin/pip" install -q pyyaml pytest pytest-timeout
"${venv}/bin/python" -m compileall -q alpamayo_core alpamayo_ros launch test bench scripts
"${venv}/bin/python" -m pytest -q -p no:cacheprovider --noconftest \
  test/test_rviz_config.py test/test_ros_install.py \
  -k "not marker_namespaces and not ros_package_keys and not from_the_node and not input_or_output"
