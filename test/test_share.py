"""The package's data files are found from a checkout and shipped by a plain pip install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from alpamayo_ros.tools.share import share_path

ROOT = Path(__file__).resolve().parents[1]


def test_share_path_finds_the_checkout_files():
    assert share_path("config/fastdds.xml") == ROOT / "config" / "fastdds.xml"
    assert (share_path("msg") / "DrivingPlan.msg").is_file()


def test_missing_file_names_where_it_looked():
    with pytest.raises(FileNotFoundError, match=r"config/nope\.yaml: not found in .*share"):
        share_path("config/nope.yaml")


@pytest.mark.slow
def test_wheel_ships_config_launch_and_msg(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = tmp_path.glob("alpamayo_ros-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    want = {f"share/alpamayo/{p.relative_to(ROOT)}" for d in ("config", "launch", "msg")
            for p in (ROOT / d).glob("*.*")}
    assert want | {"share/alpamayo/package.xml"} <= data
    assert {"alpamayo_core/model/vlm.py", "alpamayo_ros/node/alpamayo_node.py",
            "alpamayo_ros/tools/share.py"} <= names
