"""plan_assembly.assemble on buffers filled with messages built in memory (no DDS, no node)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="needs the ROS 2 message packages")

from nav_msgs.msg import Odometry

from alpamayo_ros.node.camera_buffer import CameraBuffer, CameraBufferConfig
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.image_conversion import array_to_image
from alpamayo_ros.node.messages import STATUS_DEGRADED, STATUS_OK, time_msg
from alpamayo_ros.node.plan_assembly import InputsUnavailable, assemble

T0_NS = 1_800_000_000_000_000_000
CAMERAS = ("a", "b")
SPEED_MPS = 5.0


def _buffers(camera_times_s=None, sizes=None, odom_frame="odom"):
    cameras = CameraBuffer(CameraBufferConfig(cameras=CAMERAS, reference_camera="b"))
    for i, name in enumerate(CAMERAS):
        h, w = (sizes or {}).get(name, (8, 12))
        times = (camera_times_s or {}).get(name, np.arange(-0.6, 0.001, 0.1))
        for t in times:
            msg = array_to_image(np.full((h, w, 3), i, np.uint8), "rgb8",
                                 stamp_ns=T0_NS + round(t * 1e9))
            cameras.add(name, msg)
    odometry = EgoHistoryBuffer()
    for t in np.arange(-2.0, 0.001, 0.02):
        msg = Odometry()
        msg.header.stamp = time_msg(T0_NS + round(t * 1e9))
        msg.header.frame_id, msg.child_frame_id = odom_frame, "base_link"
        msg.pose.pose.position.x = 100.0 + SPEED_MPS * t
        msg.pose.pose.orientation.w = 1.0
        odometry.add_odometry(msg)
    return cameras, odometry


def _assemble(cameras, odometry, now_s=0.05, **kwargs):
    args = {"tolerance_s": 0.05, "max_image_age_s": 0.5, "odom_frame": "odom", **kwargs}
    return assemble(cameras, odometry, now_ns=T0_NS + round(now_s * 1e9), **args)


def test_ok_inputs_for_t0_of_the_reference_camera():
    out = _assemble(*_buffers())
    assert out.level == STATUS_OK and out.reason == ""
    assert out.inputs.t0_ns == T0_NS
    assert out.inputs.images_rgb.shape == (2, 4, 8, 12, 3)
    np.testing.assert_array_equal(out.inputs.images_rgb[:, :, 0, 0, 0], [[0] * 4, [1] * 4])
    # frame identities for the planner's frame cache: (camera, stamp) in the images' order
    stamps = [T0_NS + round(t * 1e9) for t in (-0.3, -0.2, -0.1, 0.0)]
    assert out.inputs.frame_keys == tuple((cam, s) for cam in CAMERAS for s in stamps)
    np.testing.assert_allclose(out.inputs.history_xyz_m[:, 0],
                               SPEED_MPS * np.arange(-1.5, 0.001, 0.1), atol=1e-9)
    np.testing.assert_allclose(out.history.t0_xyz_m, [100.0, 0.0, 0.0], atol=1e-9)
    assert out.input_ages_s["b"] == pytest.approx(0.05)
    assert out.input_ages_s["odometry"] == pytest.approx(0.05)


def test_frame_beyond_tolerance_is_substituted_and_degraded():
    late = np.array([-0.6, -0.5, -0.4, -0.3, -0.27, -0.1, 0.0])  # nearest to t0-0.2: 0.07 s
    out = _assemble(*_buffers({"a": late}))
    assert out.level == STATUS_DEGRADED
    assert "camera a" in out.reason and "substituted" in out.reason


def test_stale_reference_camera_is_invalid():
    with pytest.raises(InputsUnavailable, match=r"camera b: stale \(newest frame 0\.800 s old"):
        _assemble(*_buffers(), now_s=0.8)


def test_camera_of_another_resolution_is_resized_on_its_own():
    out = _assemble(*_buffers(sizes={"a": (4, 6)}))  # same 3:2 aspect as b's 8x12
    assert out.level == STATUS_OK and out.reason == ""
    assert out.inputs.images_rgb.shape == (2, 4, 8, 12, 3)
    np.testing.assert_array_equal(out.inputs.images_rgb[0], 0)


def test_camera_aspect_ratio_far_off_is_degraded():
    out = _assemble(*_buffers(sizes={"a": (8, 8)}))
    assert out.level == STATUS_DEGRADED
    assert out.reason == ("camera a: aspect ratio 8x8 is 33% off reference camera b (12x8); "
                          "stretched")


def test_stamps_ahead_of_the_node_clock_are_invalid():
    with pytest.raises(InputsUnavailable, match=r"stamped 0\.300 s ahead of the node clock "
                       r"\(max_future_stamp_s 0\.25\)"):
        _assemble(*_buffers(), now_s=-0.3)


def test_odometry_in_another_frame_is_invalid():
    with pytest.raises(InputsUnavailable, match="odometry: poses are in frame 'map'"):
        _assemble(*_buffers(odom_frame="map"))


def test_no_frames_names_the_reference_camera():
    cameras = CameraBuffer(CameraBufferConfig(cameras=CAMERAS, reference_camera="b"))
    with pytest.raises(InputsUnavailable, match="camera b: no frames") as err:
        _assemble(cameras, EgoHistoryBuffer())
    assert err.value.t0_ns is None
