"""Analytic tests of alpamayo_ros.node.ego_history (odometry -> history in the ego frame at t0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from alpamayo_ros.node.ego_history import (
    EgoHistoryBuffer,
    EgoHistoryConfig,
    EgoHistoryUnavailable,
    HistoryFailure,
)
from alpamayo_ros.node.input_stats import AddResult

T0_NS = 1_700_000_000_123_456_789
SEC = 1_000_000_000
TAU_S = np.linspace(-1.5, 0.0, 16)  # history times relative to t0


def _stamps(rate_hz: float, start_s: float, end_s: float, jitter_s: float = 0.0, seed: int = 0):
    """Odometry stamps (ns) from t0+start_s to t0+end_s at rate_hz with uniform jitter."""
    rel = np.arange(start_s, end_s + 1e-9, 1.0 / rate_hz)
    rel = rel + np.random.default_rng(seed).uniform(-jitter_s, jitter_s, rel.size)
    return T0_NS + np.round(np.sort(rel) * 1e9).astype(np.int64)


def _straight(stamps_ns, speed_mps=8.0, yaw0=0.7, origin=(100.0, -40.0, 2.0)):
    """Constant-speed straight drive with heading yaw0 through `origin` at t0."""
    for stamp in stamps_ns:
        tau = (int(stamp) - T0_NS) * 1e-9
        xyz = np.array(origin) + speed_mps * tau * np.array([math.cos(yaw0), math.sin(yaw0), 0])
        yield int(stamp), xyz, Rotation.from_euler("z", yaw0).as_quat()


def _circle(stamps_ns, radius_m=30.0, omega_rps=0.25, yaw0=-1.2, origin=(5.0, 7.0, 0.0)):
    """Constant yaw-rate left turn; at t0 the ego is at `origin` with heading yaw0."""
    centre = np.array(origin) + radius_m * np.array([-math.sin(yaw0), math.cos(yaw0), 0.0])
    for stamp in stamps_ns:
        heading = yaw0 + omega_rps * (int(stamp) - T0_NS) * 1e-9
        xyz = centre + radius_m * np.array([math.sin(heading), -math.cos(heading), 0.0])
        yield int(stamp), xyz, Rotation.from_euler("z", heading).as_quat()


def _filled(samples, config: EgoHistoryConfig | None = None) -> EgoHistoryBuffer:
    buffer = EgoHistoryBuffer(config)
    for stamp, xyz, quat in samples:
        assert buffer.add_pose(stamp, xyz, quat) is AddResult.ACCEPTED
    return buffer


@pytest.mark.parametrize(("rate_hz", "jitter_s"), [(10, 0.0), (50, 0.004), (200, 0.001)])
def test_straight_constant_speed_gives_x_equal_minus_v_tau(rate_hz, jitter_s):
    speed = 8.0
    stamps = _stamps(rate_hz, -2.0, 0.05, jitter_s, seed=rate_hz)
    history = _filled(_straight(stamps, speed)).history_at(T0_NS)
    np.testing.assert_allclose(history.xyz_m[:, 0], speed * TAU_S, atol=1e-6)
    np.testing.assert_allclose(history.xyz_m[:, 1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(history.rot, np.broadcast_to(np.eye(3), (16, 3, 3)), atol=1e-9)
    assert history.stamps_ns[-1] == T0_NS
    assert history.stamps_ns[0] == T0_NS - 1_500_000_000
    np.testing.assert_allclose(history.t0_xyz_m, [100.0, -40.0, 2.0], atol=1e-6)
    assert history.extrapolated_s == 0.0 and history.warning == ""


def test_constant_yaw_rate_circle_gives_the_arc():
    radius, omega = 30.0, 0.25
    stamps = _stamps(100, -2.0, 0.02, 0.002, seed=3)
    history = _filled(_circle(stamps, radius, omega)).history_at(T0_NS)
    heading = omega * TAU_S  # relative to the heading at t0
    expected = np.stack(
        [radius * np.sin(heading), radius * (1 - np.cos(heading)), np.zeros(16)], -1
    )
    np.testing.assert_allclose(history.xyz_m, expected, atol=2e-3)  # chord vs arc at 100 Hz
    yaw = Rotation.from_matrix(history.rot).as_euler("ZYX")[:, 0]
    np.testing.assert_allclose(yaw, heading, atol=1e-6)
    assert history.xyz_m[0, 0] < 0 and history.xyz_m[0, 1] > 0  # behind, towards the centre


def test_history_does_not_depend_on_where_odom_is():
    """Moving and rotating the whole odom frame (incl. roll/pitch) leaves the history unchanged."""
    stamps = _stamps(50, -2.0, 0.0, 0.003, seed=5)
    base = _filled(_circle(stamps)).history_at(T0_NS)
    moved_by = Rotation.from_euler("xyz", [0.3, -0.2, 2.5])
    shift = np.array([1e3, -2e3, 30.0])
    moved = [
        (s, moved_by.apply(xyz) + shift, (moved_by * Rotation.from_quat(q)).as_quat())
        for s, xyz, q in _circle(stamps)
    ]
    history = _filled(moved).history_at(T0_NS)
    np.testing.assert_allclose(history.xyz_m, base.xyz_m, atol=1e-6)
    np.testing.assert_allclose(history.rot, base.rot, atol=1e-9)
    np.testing.assert_allclose(
        history.odom_from_ego_t0.apply(np.zeros(3)),
        moved_by.apply([5.0, 7.0, 0.0]) + shift,
        atol=2e-4,  # chord sag of linear interpolation on the arc at 50 Hz
    )


def test_small_extrapolation_to_t0_is_silent_and_exact_on_a_straight_line():
    stamps = _stamps(50, -2.03, -0.03)
    history = _filled(_straight(stamps)).history_at(T0_NS)
    np.testing.assert_allclose(history.xyz_m[:, 0], 8.0 * TAU_S, atol=1e-6)
    assert history.extrapolated_s == pytest.approx(0.03, abs=1e-3)
    assert history.warning == ""


def test_larger_extrapolation_warns_but_works():
    stamps = _stamps(50, -2.0, -0.12)
    history = _filled(_circle(stamps)).history_at(T0_NS)
    assert "extrapolated" in history.warning
    yaw = Rotation.from_matrix(history.rot).as_euler("ZYX")[:, 0]
    np.testing.assert_allclose(yaw, 0.25 * TAU_S, atol=1e-6)  # constant rate extrapolates exactly


def _failure(buffer: EgoHistoryBuffer, t0_ns: int = T0_NS) -> EgoHistoryUnavailable:
    with pytest.raises(EgoHistoryUnavailable) as info:
        buffer.history_at(t0_ns)
    return info.value


def test_failures_no_data_stale_not_covered_gap():
    assert _failure(EgoHistoryBuffer()).reason is HistoryFailure.NO_DATA
    stale = _failure(_filled(_straight(_stamps(50, -3.0, -0.5))))
    assert stale.reason is HistoryFailure.STALE and "0.500 s older" in str(stale)
    startup = _failure(_filled(_straight(_stamps(50, -1.0, 0.0))))
    assert startup.reason is HistoryFailure.NOT_COVERED
    stamps = _stamps(50, -2.0, 0.0)
    gappy = stamps[(stamps < T0_NS - 800_000_000) | (stamps > T0_NS - 400_000_000)]
    gap = _failure(_filled(_straight(gappy)))
    assert gap.reason is HistoryFailure.GAP and "0.440 s" in str(gap)


def test_invalid_poses_are_dropped_and_counted():
    buffer = _filled(_straight(_stamps(50, -2.0, 0.0)))
    assert (
        buffer.add_pose(T0_NS + SEC, (math.nan, 0, 0), (0, 0, 0, 1)) is AddResult.DROPPED_INVALID
    )
    assert buffer.add_pose(T0_NS + SEC, (0, 0, 0), (0, 0, 0, 0)) is AddResult.DROPPED_INVALID
    assert buffer.add_pose(T0_NS + SEC, (0, 0, math.inf), (0, 0, 0, 1)).name == "DROPPED_INVALID"
    assert buffer.stats().counters["dropped_invalid"] == 3
    assert buffer.newest_stamp_ns() == T0_NS  # nothing bad got in
    np.testing.assert_allclose(buffer.history_at(T0_NS).xyz_m[:, 0], 8.0 * TAU_S, atol=1e-6)


def test_out_of_order_and_duplicates_are_dropped_and_counted():
    buffer = _filled(_straight(_stamps(50, -2.0, 0.0)))
    assert buffer.add_pose(T0_NS, (0, 0, 0), (0, 0, 0, 1)) is AddResult.DROPPED_DUPLICATE
    late = T0_NS - 50_000_000
    assert buffer.add_pose(late, (0, 0, 0), (0, 0, 0, 1)) is AddResult.DROPPED_OUT_OF_ORDER
    counters = buffer.stats().counters
    assert counters["dropped_duplicate"] == 1 and counters["dropped_out_of_order"] == 1
    np.testing.assert_allclose(buffer.history_at(T0_NS).xyz_m[:, 0], 8.0 * TAU_S, atol=1e-6)


def test_clock_jump_backwards_resets_the_buffer():
    buffer = _filled(_straight(_stamps(50, -2.0, 0.0)))
    result = buffer.add_pose(T0_NS - 10 * SEC, (0, 0, 0), (0, 0, 0, 1))  # bag loop
    assert result is AddResult.RESET
    assert buffer.stats().counters["clock_resets"] == 1
    assert buffer.newest_stamp_ns() == T0_NS - 10 * SEC
    assert _failure(buffer, T0_NS - 10 * SEC).reason is HistoryFailure.NOT_COVERED


def test_add_odometry_message_and_frames():
    nav_msgs = pytest.importorskip("nav_msgs.msg", reason="needs ROS 2 nav_msgs")
    buffer = EgoHistoryBuffer()
    for stamp, xyz, quat in _straight(_stamps(20, -2.0, 0.0)):
        msg = nav_msgs.Odometry(child_frame_id="base_link")
        msg.header.frame_id = "odom"
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, SEC)
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        p.x, p.y, p.z = (float(v) for v in xyz)
        q.x, q.y, q.z, q.w = (float(v) for v in quat)
        assert buffer.add_odometry(msg) is AddResult.ACCEPTED
    history = buffer.history_at(T0_NS)
    assert (history.frame_id, history.child_frame_id) == ("odom", "base_link")
    np.testing.assert_allclose(history.xyz_m[:, 0], 8.0 * TAU_S, atol=1e-6)


def test_buffer_is_bounded_in_time_and_rate_is_measured():
    config = EgoHistoryConfig(buffer_s=2.0)
    stamps = _stamps(100, -10.0, 0.0)
    buffer = EgoHistoryBuffer(config)
    for i, (stamp, xyz, quat) in enumerate(_straight(stamps)):
        buffer.add_pose(stamp, xyz, quat, arrival_ns=i * 10_000_000)
    snapshot = buffer.stats(now_arrival_ns=len(stamps) * 10_000_000)
    assert snapshot.rate_hz_by_stamp == pytest.approx(100.0, rel=1e-3)
    assert snapshot.rate_hz_by_arrival == pytest.approx(100.0, rel=1e-3)
    assert len(buffer._stamps_ns) == 201  # 2 s at 100 Hz, both ends included


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_poses": 1}, "num_poses"),
        ({"dt_s": 0.0}, "dt_s"),
        ({"buffer_s": 1.0}, "buffer_s"),
        ({"max_extrapolation_s": 0.5, "max_age_s": 0.2}, "max_extrapolation_s"),
        ({"max_rate_hz": 0.0}, "max_rate_hz"),
        ({"quat_norm_tolerance": -0.1}, "quat_norm_tolerance"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EgoHistoryConfig(**kwargs)


def test_one_khz_odometry_covers_the_history():
    """The buffer is sized by time: 1 kHz for 3 s still holds the 1.5 s history."""
    buffer = EgoHistoryBuffer(EgoHistoryConfig())
    stamps = _stamps(1000, -3.0, 0.0)
    for stamp, xyz, quat in _straight(stamps):
        buffer.add_pose(stamp, xyz, quat)
    history = buffer.history_at(int(stamps[-1]))
    assert history.xyz_m.shape == (16, 3)
    assert len(buffer._stamps_ns) > 2000


def test_quaternion_far_from_unit_norm_is_dropped_and_counted():
    buffer = EgoHistoryBuffer(EgoHistoryConfig(quat_norm_tolerance=0.01))
    assert buffer.add_pose(1, (0, 0, 0), (1e-5, 0, 0, 0)) is AddResult.DROPPED_INVALID
    assert buffer.add_pose(2, (0, 0, 0), (0, 0, 0, 1.02)) is AddResult.DROPPED_INVALID
    assert buffer.add_pose(3, (0, 0, 0), (0, 0, 0, 1.005)) is AddResult.ACCEPTED
    assert buffer.stats().counters["dropped_invalid"] == 2
