"""MCAP bags carry each channel's `topic_type_hash` as rosbag2 writes and reads it: checked with
an independent MCAP reader (the `mcap` package) against the hash rclpy itself reports for the
same type on a live publisher."""

from __future__ import annotations

import pytest
from mcap.reader import make_reader
from rosproc import next_domain_id

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.tools.bag_io import BagWriteOptions, iter_raw, write_drive_bag
from alpamayo_ros.tools.bag_writer import QOS_KEY, TYPE_HASH_KEY


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    drive = SyntheticDrive(SceneConfig(kind="straight", seconds=0.3, width=64, height=36))
    bag = write_drive_bag(drive, tmp_path_factory.mktemp("mcap") / "bag",
                          BagWriteOptions(compressed=True)).path
    (mcap_file,) = bag.glob("*.mcap")
    with mcap_file.open("rb") as f:
        summary = make_reader(f).get_summary()
    assert len(list(iter_raw(bag))) > 0  # rosbags still reads its own bag
    return {c.topic: (summary.schemas[c.schema_id].name, c.metadata)
            for c in summary.channels.values()}


def _rclpy_type_hash(msg_class) -> str:
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=next_domain_id())
    try:
        node = rclpy.create_node("type_hash_probe", context=context)
        node.create_publisher(msg_class, "/type_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("/type_hash_probe")
        node.destroy_node()
        return str(info.topic_type_hash)
    finally:
        rclpy.shutdown(context=context)


def test_every_channel_has_qos_and_type_hash(channels):
    assert len(channels) == 5  # odometry + four cameras
    for topic, (_, metadata) in channels.items():
        assert set(metadata) == {QOS_KEY, TYPE_HASH_KEY}, topic
        assert metadata[TYPE_HASH_KEY].startswith("RIHS01_") and len(
            metadata[TYPE_HASH_KEY]) == len("RIHS01_") + 64


def test_type_hashes_equal_what_ros_reports(channels):
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CompressedImage

    by_type = {schema: meta[TYPE_HASH_KEY] for schema, meta in channels.values()}
    assert by_type["nav_msgs/msg/Odometry"] == _rclpy_type_hash(Odometry)
    assert by_type["sensor_msgs/msg/CompressedImage"] == _rclpy_type_hash(CompressedImage)
