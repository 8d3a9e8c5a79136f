"""`colcon build` of the package in a fresh workspace (colcon from PyPI), as a ROS user builds it.

Runs scripts/check_colcon_build.sh: messages, Python packages, the node executable, launch and
config files land in the install space and the generated messages import from there.
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
@pytest.mark.skipif(shutil.which("colcon", path=str(Path(sys.executable).parent)) is None,
                    reason="colcon is not installed in this environment")
def test_colcon_build_in_a_fresh_workspace():
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "check_colcon_build.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
