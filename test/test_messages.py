"""Plan -> ROS messages (node.messages) and frame transforms (node.transforms)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("visualization_msgs.msg", reason="needs the ROS 2 message packages")

from geometry_msgs.msg import Pose
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import Marker

from alpamayo_core.inference.plan import Plan
from alpamayo_ros.node import messages
from alpamayo_ros.node.transforms import RigidTransform

needs_interfaces = pytest.mark.skipif(
    importlib.util.find_spec("alpamayo") is None
    or importlib.util.find_spec("alpamayo.msg") is None,
    reason="alpamayo.msg not built: run scripts/build_interfaces.sh",
)

T0_NS = 1_700_000_123_400_000_000
K, T = 3, 64
TFS_S = 0.1 * np.arange(1, T + 1)  # (T,)
# Ego pose at t0 in odom: at (10, 5, 1), heading +90 deg (facing odom +y).
ODOM_FROM_EGO = RigidTransform.from_xyz_quat(
    np.array([10.0, 5.0, 1.0]), Rotation.from_euler("z", math.pi / 2).as_quat()
)


def _plan(selected: int = 1) -> Plan:
    """K straight samples at speeds 5, 10, 15 m/s along ego +x, each with slight lateral offset."""
    speeds = np.array([5.0, 10.0, 15.0])[:, None] * np.ones(T)  # (K, T)
    xyz = np.zeros((K, T, 3))
    xyz[..., 0] = speeds * TFS_S
    xyz[..., 1] = np.arange(K)[:, None] * 0.5  # sample k is 0.5*k m to the left
    return Plan(
        t0_ns=T0_NS,
        xyz_m=xyz,
        yaw_rad=np.zeros((K, T)),
        speed_mps=speeds,
        accel_mps2=np.full((K, T), 0.25),
        curvature_1pm=np.full((K, T), -0.01),
        time_from_start_s=TFS_S,
        selected=selected,
        cot=("slow car ahead", "clear road, keep speed", "overtake"),
        meta_action=("slow down", "keep lane", "change lane left"),
        answer=("", "", ""),
        timings_ms={"preprocess": 12.5, "prefill": 80.0, "total": 300.0},
        num_generated_tokens=42,
        model_id="tiny-1234abcd",
        backend="torch",
    )


# --- transforms -------------------------------------------------------------------------------


def test_rigid_transform_maps_ego_x_to_odom_y_when_facing_north():
    np.testing.assert_allclose(ODOM_FROM_EGO.apply(np.array([2.0, 0.0, 0.0])), [10, 7, 1])
    np.testing.assert_allclose(ODOM_FROM_EGO.apply(np.array([0.0, 1.0, 0.0])), [9, 5, 1])
    assert ODOM_FROM_EGO.yaw_rad == pytest.approx(math.pi / 2)


def test_rigid_transform_inverse_and_compose():
    other = RigidTransform.from_xyz_quat(
        np.array([-3.0, 2.0, 0.5]), Rotation.from_euler("xyz", [0.1, -0.3, 2.0]).as_quat()
    )
    points = np.random.default_rng(0).normal(size=(5, 3))
    both = ODOM_FROM_EGO.compose(other)
    np.testing.assert_allclose(both.apply(points), ODOM_FROM_EGO.apply(other.apply(points)))
    identity = ODOM_FROM_EGO.compose(ODOM_FROM_EGO.inverse())
    np.testing.assert_allclose(identity.translation_m, 0.0, atol=1e-12)
    np.testing.assert_allclose(identity.rotation.as_matrix(), np.eye(3), atol=1e-12)


def test_rigid_transform_pose_message_round_trip_and_validation():
    pose = ODOM_FROM_EGO.to_pose_msg(Pose())
    assert (pose.position.x, pose.position.y, pose.position.z) == (10.0, 5.0, 1.0)
    assert pose.orientation.z == pytest.approx(math.sqrt(0.5))
    back = RigidTransform.from_pose_msg(pose)
    np.testing.assert_allclose(back.apply(np.eye(3)), ODOM_FROM_EGO.apply(np.eye(3)))
    with pytest.raises(ValueError, match="quat_xyzw"):
        RigidTransform.from_xyz_quat(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="translation_m"):
        RigidTransform(np.array([0.0, math.nan, 0.0]), Rotation.identity())


# --- plan -> Path / markers / String ----------------------------------------------------------


def test_trajectories_in_odom():
    odom = messages.trajectories_in_odom(_plan(), ODOM_FROM_EGO)
    assert odom.xyz_m.shape == (K, T, 3) and odom.quat_xyzw.shape == (K, T, 4)
    # Sample 2 at 15 m/s, 1 m left of the ego path: odom x = 10 - 1, y = 5 + 15 t.
    np.testing.assert_allclose(odom.xyz_m[2, :, 0], 9.0)
    np.testing.assert_allclose(odom.xyz_m[2, :, 1], 5.0 + 15.0 * TFS_S)
    np.testing.assert_allclose(odom.yaw_rad, math.pi / 2)


def test_path_is_selected_sample_in_odom_stamped_from_t0():
    path = messages.plan_to_path(_plan(selected=1), ODOM_FROM_EGO)
    assert path.header.frame_id == "odom"
    assert (path.header.stamp.sec, path.header.stamp.nanosec) == (1_700_000_123, 400_000_000)
    assert len(path.poses) == T + 1
    first, last = path.poses[0], path.poses[-1]
    assert (first.pose.position.x, first.pose.position.y) == (10.0, 5.0)  # ego at t0
    assert last.pose.position.x == pytest.approx(9.5)  # sample 1: 0.5 m left of ego = odom -x
    assert last.pose.position.y == pytest.approx(5.0 + 10.0 * 6.4)
    stamp_ns = last.header.stamp.sec * 1_000_000_000 + last.header.stamp.nanosec
    assert stamp_ns == T0_NS + 6_400_000_000
    assert last.header.frame_id == "odom"


def test_markers_clear_first_and_highlight_the_selected_sample():
    markers = messages.plan_to_markers(_plan(selected=2), ODOM_FROM_EGO).markers
    assert markers[0].action == Marker.DELETEALL
    lines = [m for m in markers if m.type == Marker.LINE_STRIP]
    assert sorted(m.id for m in lines) == [0, 1, 2]
    widths = {m.id: m.scale.x for m in lines}
    assert widths[2] > widths[0] == widths[1]
    assert lines[-1].id == 2  # selected drawn last (on top)
    assert len(lines[0].points) == T + 1 and lines[0].points[0].x == 10.0
    text = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(text) == 1 and "overtake" in text[0].text and "change lane left" in text[0].text
    assert all(m.header.frame_id == "odom" for m in markers)


def test_reasoning_string_is_the_selected_cot():
    assert messages.reasoning_string(_plan(selected=0)).data == "slow car ahead"


def test_duration_and_time_helpers():
    d = messages.duration_msg(6.4)
    assert (d.sec, d.nanosec) == (6, 400_000_000)
    t = messages.time_msg(T0_NS)
    assert t.sec * 1_000_000_000 + t.nanosec == T0_NS


# --- DrivingPlan ------------------------------------------------------------------------------


@needs_interfaces
def test_driving_plan_carries_every_field_and_survives_cdr():
    from alpamayo.msg import DrivingPlan, PlanStatus

    msg = messages.plan_to_driving_plan(
        _plan(selected=1),
        ODOM_FROM_EGO,
        ego_frame_id="base_link",
        status=(PlanStatus.DEGRADED, "odometry extrapolated 0.1 s"),
        input_ages_s={"front_wide_120fov": 0.12, "odometry": 0.03},
    )
    msg = deserialize_message(serialize_message(msg), DrivingPlan)
    assert msg.header.frame_id == "odom" and msg.header.stamp.nanosec == 400_000_000
    assert len(msg.trajectories) == K and all(len(t.points) == T for t in msg.trajectories)
    point = msg.trajectories[2].points[9]  # t = 1.0 s
    assert (point.pose.position.x, point.pose.position.y) == pytest.approx((9.0, 20.0))
    assert point.yaw == pytest.approx(math.pi / 2)
    assert point.pose.orientation.z == pytest.approx(math.sqrt(0.5))
    assert (point.speed, point.acceleration, point.curvature) == (15.0, 0.25, -0.01)
    assert (point.time_from_start.sec, point.time_from_start.nanosec) == (1, 0)
    assert msg.selected_index == 1
    assert msg.reasoning == "clear road, keep speed" and msg.meta_action == "keep lane"
    assert msg.trajectories[0].reasoning == "slow car ahead"
    assert [(s.stage, s.latency_ms) for s in msg.latencies][-1] == ("total", 300.0)
    assert {a.name: a.age_s for a in msg.input_ages}["odometry"] == 0.03
    assert msg.status.level == PlanStatus.DEGRADED and "extrapolated" in msg.status.reason
    assert (msg.model_id, msg.backend, msg.num_generated_tokens) == ("tiny-1234abcd", "torch", 42)
    assert (msg.ego_pose_t0.position.x, msg.ego_frame_id) == (10.0, "base_link")


@needs_interfaces
def test_invalid_driving_plan_has_no_trajectories():
    from alpamayo.msg import PlanStatus

    msg = messages.invalid_driving_plan(T0_NS, "camera front_wide_120fov: stale", model_id="m")
    assert msg.status.level == PlanStatus.INVALID == messages.STATUS_INVALID
    assert msg.trajectories == [] and "stale" in msg.status.reason
    assert msg.header.frame_id == "odom" and msg.model_id == "m"


@needs_interfaces
def test_driving_plan_rejects_a_bad_selected_index():
    with pytest.raises(ValueError, match="selected"):
        messages.plan_to_driving_plan(_plan(selected=7), ODOM_FROM_EGO)


# --- diagnostics ------------------------------------------------------------------------------


def test_levels_from_thresholds():
    assert messages.level_from_thresholds(0.1, 0.2, 0.5) == messages.DIAG_OK
    assert messages.level_from_thresholds(0.3, 0.2, 0.5) == messages.DIAG_WARN
    assert messages.level_from_thresholds(0.6, 0.2, 0.5) == messages.DIAG_ERROR
    assert messages.level_from_thresholds(math.nan, 0.2, 0.5) == messages.DIAG_ERROR


def test_diagnostic_array_from_plain_stats():
    ok = messages.diagnostic_status(
        "alpamayo: planner", messages.DIAG_OK, "ok", {"latency_ms": 123.456789, "skipped": 2}
    )
    bad = messages.input_diagnostic(
        "front_wide_120fov", {"rate_hz_by_stamp": 0.0}, None, warn_age_s=0.2, error_age_s=0.5
    )
    old = messages.input_diagnostic(
        "odometry", {"dropped": 0}, 0.3, warn_age_s=0.2, error_age_s=0.5
    )
    array = messages.diagnostic_array(T0_NS, [ok, bad, old])
    assert array.header.stamp.sec == 1_700_000_123
    assert [s.level for s in array.status] == [b"\x00", b"\x02", b"\x01"]
    assert {kv.key: kv.value for kv in ok.values} == {"latency_ms": "123.457", "skipped": "2"}
    assert bad.message == "no messages received" and bad.hardware_id == "front_wide_120fov"
    assert "age 0.300 s" in old.message
    with pytest.raises(ValueError, match="level"):
        messages.diagnostic_status("x", 7, "")


def test_marker_style_validation():
    with pytest.raises(ValueError, match="line_width_m"):
        messages.MarkerStyle(line_width_m=0.0)
