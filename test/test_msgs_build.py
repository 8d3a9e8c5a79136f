"""The ROS package build: msg/ files, package.xml, CMakeLists.txt and the generated module."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MSG_FILES = sorted((ROOT / "msg").glob("*.msg"))
EXPECTED = {
    "DrivingPlan",
    "Trajectory",
    "TrajectoryPoint",
    "PlanStatus",
    "StageLatency",
    "InputAge",
}

needs_interfaces = pytest.mark.skipif(
    importlib.util.find_spec("alpamayo") is None
    or importlib.util.find_spec("alpamayo.msg") is None,
    reason="alpamayo.msg not built: run scripts/build_interfaces.sh",
)


def test_all_messages_exist_and_are_listed_in_cmake():
    assert {p.stem for p in MSG_FILES} == EXPECTED
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for path in MSG_FILES:
        assert f'"msg/{path.name}"' in cmake, (
            f"{path.name} missing from rosidl_generate_interfaces"
        )


@pytest.mark.parametrize("path", MSG_FILES, ids=lambda p: p.name)
def test_every_field_is_documented(path):
    """Each field or constant line follows a comment block (units and frames live there)."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        before = [x for x in lines[max(0, i - 3) : i] if x.strip()]
        assert (before and before[-1].lstrip().startswith("#")) or "=" in line, (
            f"{path.name}:{i + 1}: field {line.strip()!r} has no comment above it"
        )


def test_plan_status_constants_in_msg_file():
    text = (ROOT / "msg" / "PlanStatus.msg").read_text()
    constants = dict(re.findall(r"^uint8 (\w+) = (\d+)", text, flags=re.M))
    assert constants == {"OK": "0", "DEGRADED": "1", "INVALID": "2"}


def test_package_xml_is_format_3_ament_cmake_named_alpamayo():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "alpamayo"
    assert root.find("export/build_type").text == "ament_cmake"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for dep in (
        "rclpy",
        "std_msgs",
        "geometry_msgs",
        "sensor_msgs",
        "nav_msgs",
        "visualization_msgs",
        "diagnostic_msgs",
        "builtin_interfaces",
        "lifecycle_msgs",
        "rosidl_default_generators",
        "rosidl_default_runtime",
        "launch_ros",
        "python3-numpy",
        "python3-scipy",
        "python3-opencv",
        "ros2launch",
        "ros2bag",
    ):
        assert dep in deps, f"package.xml lacks {dep}"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


def test_cmake_includes_the_pypi_fix_right_after_project():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert (
        cmake.index("project(alpamayo)")
        < cmake.index("pypi_ros_wheels_fix.cmake")
        < (cmake.index("find_package("))
    )
    fix = (ROOT / "cmake" / "pypi_ros_wheels_fix.cmake").read_text()
    assert "cmake_language(DEFER" in fix  # must run after rosidl imports its targets
    for name in (
        "ament_python_install_package(alpamayo_core)",
        "ament_python_install_package(alpamayo_ros)",
        "lib/${PROJECT_NAME}",
    ):
        assert name in cmake


@needs_interfaces
def test_generated_messages_import_and_round_trip():
    from rclpy.serialization import deserialize_message, serialize_message

    from alpamayo.msg import DrivingPlan, PlanStatus, Trajectory, TrajectoryPoint

    assert (PlanStatus.OK, PlanStatus.DEGRADED, PlanStatus.INVALID) == (0, 1, 2)
    point = TrajectoryPoint(yaw=0.5, speed=3.0, acceleration=-1.0, curvature=0.02)
    point.time_from_start.sec = 2
    plan = DrivingPlan(trajectories=[Trajectory(points=[point], reasoning="why")])
    plan.header.frame_id = "odom"
    plan.status.level = PlanStatus.INVALID
    plan.status.reason = "no odometry"
    back = deserialize_message(serialize_message(plan), DrivingPlan)
    assert back == plan
    assert back.trajectories[0].points[0].time_from_start.sec == 2
    fields = set(DrivingPlan.get_fields_and_field_types())
    assert {
        "header",
        "ego_pose_t0",
        "trajectories",
        "selected_index",
        "reasoning",
        "meta_action",
        "latencies",
        "input_ages",
        "status",
        "model_id",
        "backend",
    } <= fields
