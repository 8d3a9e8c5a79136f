"""What a ROS 2 install needs from the package: package.xml keys that rosdep resolves (checked
against an extract of rosdistro's key names, test/rosdep_keys.yaml), one `ros2 run` executable
per console script, and no dependency the code does not use."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = yaml.safe_load((Path(__file__).with_name("rosdep_keys.yaml")).read_text(encoding="utf-8"))
DEPEND_TAGS = ("depend", "buildtool_depend", "build_depend", "exec_depend", "test_depend")


def _declared() -> list[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return [e.text.strip() for tag in DEPEND_TAGS for e in root.iter(tag)]


def test_python_keys_are_rosdep_keys():
    python = [k for k in _declared() if k.startswith("python3-")]
    assert python, "package.xml declares no Python dependency"
    unknown = sorted(set(python) - set(KEYS["python_yaml"]["present"]))
    assert not unknown, f"not in rosdistro's rosdep/python.yaml extract: {unknown}"


def test_libraries_without_a_rosdep_key_are_not_declared():
    declared = set(_declared())
    assert not declared & set(KEYS["python_yaml"]["absent"])
    assert "cv_bridge" not in declared  # dropped: never imported (built-in image conversion)


def test_ros_package_keys_are_released_packages():
    """A ROS package key resolves when the distribution releases a package of that name: the
    jazzy extract, or a package the kilted PyPI wheels of this environment install."""
    released = set(KEYS["jazzy_distribution"]["packages"])
    for key in _declared():
        if key.startswith("python3-") or key in released:
            continue
        assert (Path(sys.prefix) / "share" / key / "package.xml").is_file(), (
            f"{key}: not in the jazzy extract and no ROS package of that name is installed")


def test_launch_and_bag_dependencies_are_declared():
    assert {"launch", "launch_ros", "ros2launch", "ros2bag", "rosbag2_storage_mcap", "rviz2",
            "ament_cmake_pytest"} <= set(_declared())


def test_cv_bridge_is_not_imported_anywhere():
    imports = re.compile(r"^\s*(import|from)\s+cv_bridge\b", re.M)
    for path in [*ROOT.glob("alpamayo_ros/**/*.py"), *ROOT.glob("alpamayo_core/**/*.py")]:
        assert not imports.search(path.read_text(encoding="utf-8")), path


# --- ros2 run executables --------------------------------------------------------------------

def _cmake_tools() -> dict[str, str]:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    block = re.search(r"set\(ALPAMAYO_TOOLS(.*?)\)", text, re.S).group(1)
    return dict(item.split("=") for item in block.split())


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") == "setup")
    entry_points = ast.literal_eval(next(k.value for k in call.keywords
                                         if k.arg == "entry_points"))
    pairs = (line.split("=") for line in entry_points["console_scripts"])
    return {name.strip(): target.strip() for name, target in pairs}


def test_every_console_script_has_a_ros2_run_executable():
    tools = _cmake_tools()
    scripts = _console_scripts()
    as_tools = {name.removeprefix("alpamayo-").replace("-", "_"): target.removesuffix(":main")
                for name, target in scripts.items()}
    assert tools == as_tools
    assert {"replay", "eval", "record", "synth", "export", "prepare", "plan", "demo",
            "node"} <= set(tools)


def test_executable_template_calls_main():
    template = (ROOT / "cmake" / "ros2_run_entry.py.in").read_text(encoding="utf-8")
    assert template.startswith("#!/usr/bin/env python3\n")
    assert "from @MODULE@ import main" in template and "sys.exit(main())" in template
