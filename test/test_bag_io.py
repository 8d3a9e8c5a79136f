"""Synthetic drives written as ROS 2 bags (MCAP and SQLite3) and read back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.tools.bag_io import (
    JPEG_FORMAT,
    ODOM_TOPIC,
    BagWriteOptions,
    decode,
    image_from_msg,
    image_topic,
    iter_raw,
    make_typestore,
    register_msg_dir,
    topic_counts,
    write_drive_bag,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = SceneConfig(kind="curve_left", seconds=2.0, width=320, height=180, seed=3)
N_ODOM, N_FRAMES = 100, 20


@pytest.fixture(scope="module")
def drive() -> SyntheticDrive:
    return SyntheticDrive(CONFIG)


@pytest.fixture(scope="module", params=[("mcap", False), ("sqlite3", False), ("mcap", True),
                                        ("sqlite3", True)], ids=lambda p: f"{p[0]}-{p[1]}")
def bag(request, drive, tmp_path_factory):
    storage, compressed = request.param
    out = tmp_path_factory.mktemp("bags") / f"drive_{storage}_{compressed}"
    summary = write_drive_bag(drive, out, BagWriteOptions(storage, compressed))
    return out, storage, compressed, summary


def test_bag_layout_and_counts(bag, drive):
    out, storage, compressed, summary = bag
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert (out / "metadata.yaml").is_file() and list(out.glob(f"*{suffix}"))
    expected = {ODOM_TOPIC: N_ODOM}
    expected |= {image_topic(c, compressed): N_FRAMES for c in CONFIG.camera_names}
    assert summary.counts == expected
    assert topic_counts(out) == expected
    with AnyReader([out]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    assert types[ODOM_TOPIC] == "nav_msgs/msg/Odometry"
    assert {types[image_topic(c, compressed)] for c in CONFIG.camera_names} == {image_type}


def test_messages_in_time_order_with_header_stamps(bag):
    out, _, _, summary = bag
    raws = list(iter_raw(out))
    stamps = [r.t_ns for r in raws]
    assert stamps == sorted(stamps) and stamps[0] == summary.start_ns
    for raw in raws[:: 7]:
        header = decode(raw).header
        assert header.stamp.sec * 1_000_000_000 + header.stamp.nanosec == raw.t_ns


def test_odometry_contents(bag, drive):
    out, *_ = bag
    raws = list(iter_raw(out, topics=[ODOM_TOPIC]))
    msg = decode(raws[10])
    expected = drive.odom_sample(10)
    assert msg.header.frame_id == "odom" and msg.child_frame_id == "base_link"
    assert msg.pose.pose.position.x == pytest.approx(expected.xyz_m[0])
    assert msg.pose.pose.position.y == pytest.approx(expected.xyz_m[1])
    q = msg.pose.pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], expected.quat_xyzw)
    assert msg.twist.twist.linear.x == pytest.approx(CONFIG.speed_mps)
    assert msg.pose.covariance.shape == (36,)


def test_image_contents(bag, drive):
    out, _, compressed, _ = bag
    camera = CONFIG.camera_names[1]
    raws = list(iter_raw(out, topics=[image_topic(camera, compressed)]))
    msg = decode(raws[5])
    expected = drive.render(camera, raws[5].t_ns)
    assert msg.header.frame_id == camera
    image = image_from_msg(msg)
    assert image.shape == (180, 320, 3)
    if compressed:
        assert msg.format == JPEG_FORMAT
        assert np.abs(image.astype(int) - expected).mean() < 4.0  # JPEG loss only
    else:
        assert msg.encoding == "rgb8" and msg.step == 3 * 320
        np.testing.assert_array_equal(image, expected)


def test_rclpy_deserializes_the_raw_bytes(bag):
    serialization = pytest.importorskip("rclpy.serialization")
    nav_msgs = pytest.importorskip("nav_msgs.msg")
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    out = bag[0]
    classes = {"nav_msgs/msg/Odometry": nav_msgs.Odometry, "sensor_msgs/msg/Image":
               sensor_msgs.Image, "sensor_msgs/msg/CompressedImage": sensor_msgs.CompressedImage}
    seen = set()
    for raw in iter_raw(out):
        if raw.msgtype in seen:
            continue
        seen.add(raw.msgtype)
        msg = serialization.deserialize_message(raw.data, classes[raw.msgtype])
        ours = decode(raw)
        assert msg.header.stamp.sec == ours.header.stamp.sec
        assert msg.header.frame_id == ours.header.frame_id
        if raw.msgtype.endswith("Image"):
            assert bytes(msg.data) == ours.data.tobytes()
        else:
            assert msg.twist.twist.linear.x == ours.twist.twist.linear.x
    assert len(seen) == 2


def test_existing_bag_path_is_refused(tmp_path, drive):
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        write_drive_bag(drive, tmp_path / "exists")
    with pytest.raises(ValueError, match="storage"):
        BagWriteOptions(storage="rosbag1")


def test_register_msg_dir_with_cross_references(tmp_path):
    (tmp_path / "Point2.msg").write_text("float64 x\nfloat64 y\n")
    (tmp_path / "Polyline.msg").write_text(
        "# a comment\nstd_msgs/Header header\nPoint2[] points\nstring label\n")
    typestore = make_typestore()
    names = register_msg_dir(typestore, tmp_path, package="alpamayo")
    assert names == ["alpamayo/msg/Point2", "alpamayo/msg/Polyline"]
    types = typestore.types
    header = types["std_msgs/msg/Header"](types["builtin_interfaces/msg/Time"](1, 2), "odom")
    msg = types["alpamayo/msg/Polyline"](header, [types["alpamayo/msg/Point2"](1.0, 2.0)], "x")
    back = typestore.deserialize_cdr(typestore.serialize_cdr(msg, msg.__msgtype__),
                                     "alpamayo/msg/Polyline")
    assert back.points[0].y == 2.0 and back.label == "x"


def test_register_msg_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        register_msg_dir(make_typestore(), tmp_path / "missing")
    (tmp_path / "Bad.msg").write_text("this is not a message definition !!\n")
    with pytest.raises(ValueError, match=r"Bad\.msg"):
        register_msg_dir(make_typestore(), tmp_path)


@pytest.mark.skipif(not list((REPO / "msg").glob("*.msg")), reason="no msg/*.msg in the repo")
def test_project_messages_register():
    typestore = make_typestore(REPO / "msg")
    assert any(name.startswith("alpamayo/msg/") for name in typestore.types)


def test_images_have_the_configured_size(bag):
    """JPEG payloads decode (cv2) to the rendered size; raw images declare it."""
    out, _, compressed, _ = bag
    msg = decode(next(iter_raw(out, topics=[image_topic(CONFIG.camera_names[0], compressed)])))
    if compressed:
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        assert bgr.shape == (180, 320, 3)
    else:
        assert (msg.height, msg.width, msg.step) == (180, 320, 3 * 320)


def test_cli_writes_a_bag_and_reports_counts(tmp_path, capsys):
    from alpamayo_ros.cli.synth import main

    out = tmp_path / "cli_bag"
    rc = main(["--out", str(out), "--scene", "straight", "--seconds", "1", "--speed", "2",
               "--storage", "sqlite3", "--compressed", "--width", "160", "--height", "90"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "/odom: 50" in printed
    assert topic_counts(out)[image_topic(CONFIG.camera_names[0], True)] == 10
    assert main(["--out", str(out)]) == 2  # exists already: clear error, no traceback
