"""Alpamayo 1.5 navigation text in bags: a synthetic drive carries "Turn left in 50m" on
/alpamayo/route (offered reliable + transient-local), and the offline evaluation feeds it to a
tiny 1.5 model with guidance, exactly as the node would."""

from __future__ import annotations

import pytest
from rosbags.highlevel import AnyReader

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools.bag_io import ROUTE_TOPIC, BagWriteOptions, iter_raw, write_drive_bag

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

ROUTE = "Turn left in 50m"


@pytest.fixture(scope="module")
def route_bag(tmp_path_factory):
    base = tmp_path_factory.mktemp("route_bag")
    drive = SyntheticDrive(SceneConfig(kind="curve_left", seconds=3.0, width=480, height=270,
                                       seed=1))
    write_drive_bag(drive, base / "drive", BagWriteOptions(compressed=True, route_text=ROUTE))
    return base / "drive"


def test_route_is_stored_once_transient_local(route_bag):
    from alpamayo_ros.tools.bag_io import decode

    with AnyReader([route_bag]) as reader:
        (conn,) = [c for c in reader.connections if c.topic == ROUTE_TOPIC]
        assert conn.msgtype == "std_msgs/msg/String" and conn.msgcount == 1
        (qos,) = conn.ext.offered_qos_profiles
        assert (qos.reliability.name, qos.durability.name) == ("RELIABLE", "TRANSIENT_LOCAL")
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from alpamayo_ros.tools.replay import qos_from_bag

    replayed = qos_from_bag(conn.ext.offered_qos_profiles, "bag")  # what alpamayo-replay uses
    assert replayed.reliability == ReliabilityPolicy.RELIABLE
    assert replayed.durability == DurabilityPolicy.TRANSIENT_LOCAL
    first = next(iter_raw(route_bag))
    assert first.topic == ROUTE_TOPIC and decode(first).data == ROUTE  # before any frame


def test_evaluation_feeds_the_route_with_guidance(route_bag, tmp_path):
    from rclpy.serialization import deserialize_message

    from alpamayo.msg import DrivingPlan
    from alpamayo_ros.tools.evaluate import EvalOptions, evaluate_bag

    model = make_tiny(tmp_path / "tiny-1.5", preset_name="tiny-1.5")
    params = NodeParams(model_dir=str(model), max_generation_tokens=6, guidance_weight=1.5,
                        noise_temperature=0.6, seed=0)
    result = evaluate_bag(route_bag, tmp_path / "eval",
                          EvalOptions(params, render=False, animation=False), progress=False)
    plans = [deserialize_message(raw.data, DrivingPlan)
             for raw in iter_raw(result.plans_bag, ["/alpamayo/plan"])]
    planned = [p for p in plans if p.trajectories]
    assert planned, result.status_counts
    assert all(p.route_text == ROUTE for p in planned)
    assert all(p.guidance_weight == pytest.approx(1.5) for p in planned)
    assert all("unguided_prefill" in {lat.stage for lat in p.latencies} for p in planned)
