"""`colcon build` of the package in a fresh workspace (colcon from PyPI), as a ROS user builds it.

Runs scripts/check_colcon_build.sh: messages, Python packages, launch and config files,
install/setup.bash and one `ros2 run alpamayo <tool>` executable per console script land in the
install space (each tool answers --help from there), the generated messages import from there, and
`colcon test` runs pytest through ament_cmake_pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # build + nine tools' --help + colcon test: ~5 min on 2 busy cores
@pytest.mark.skipif(shutil.which("colcon", path=str(Path(sys.executable).parent)) is None,
                    reason="colcon is not installed in this environment")
def test_colcon_build_in_a_fresh_workspace():
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "check_colcon_build.sh")], env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    installed = next(line for line in lines if "/lib/alpamayo:" in line).split(":", 2)[2].split()
    assert set(installed) >= {"replay", "eval", "record", "synth", "export", "prepare", "plan",
                              "demo", "node", "alpamayo_node"}
    assert any(line.startswith("check_colcon_build: colcon test OK") for line in lines)
