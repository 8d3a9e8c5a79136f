#!/usr/bin/env bash
# Build the `alpamayo` ROS package's interfaces (msg/, srv/) with plain CMake and install them into the
# active virtualenv, so that `from alpamayo.msg import DrivingPlan` works with no extra
# environment variables. Idempotent: skips the build when msg/, CMakeLists.txt, package.xml and
# cmake/ are unchanged since the last successful install (stamp in build/cmake).
#
# The Python packages (alpamayo_core, alpamayo_ros) are NOT copied into the venv here; use the
# working tree or `pip install -e .` for them. Use colcon for a full ROS install.
#
# Usage: . .venv/bin/activate && scripts/build_interfaces.sh [--force]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${repo_root}/build/cmake"
stamp_file="${build_dir}/.alpamayo_interfaces.stamp"

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
  echo "build_interfaces.sh: activate the venv first (. .venv/bin/activate)" >&2
  exit 2
fi

inputs_hash() {
  # Hash of every input that changes the generated interfaces, plus the install prefix.
  (
    cd "${repo_root}"
    find msg srv cmake -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum CMakeLists.txt package.xml
    echo "prefix=${VIRTUAL_ENV}"
  ) | sha256sum | cut -d' ' -f1
}

want_hash="$(inputs_hash)"
site_dir="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [[ "${1:-}" != "--force" && -f "${stamp_file}" ]] \
    && [[ "$(cat "${stamp_file}")" == "${want_hash}" ]] \
    && [[ -d "${site_dir}/alpamayo/msg" ]]; then
  echo "build_interfaces.sh: interfaces up to date (${build_dir})"
  exit 0
fi

export CMAKE_PREFIX_PATH="${VIRTUAL_ENV}${CMAKE_PREFIX_PATH:+:${CMAKE_PREFIX_PATH}}"
export AMENT_PREFIX_PATH="${VIRTUAL_ENV}${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}"

mkdir -p "${build_dir}"
cmake -S "${repo_root}" -B "${build_dir}" \
  -DCMAKE_INSTALL_PREFIX="${VIRTUAL_ENV}" \
  -DPython3_EXECUTABLE="$(command -v python)" \
  -DALPAMAYO_INSTALL_PYTHON_PACKAGES=OFF \
  -DBUILD_TESTING=OFF
cmake --build "${build_dir}" -j "$(nproc)"
cmake --install "${build_dir}"

python -c "from alpamayo.msg import DrivingPlan; from alpamayo.srv import Ask; DrivingPlan(); Ask.Request()"
echo "${want_hash}" > "${stamp_file}"
echo "build_interfaces.sh: installed alpamayo interfaces into ${VIRTUAL_ENV}"
