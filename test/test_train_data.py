"""Training data from a real bag and from synthetic drives, through the node's input code.

The bag test replays the same bag into the node's own per-tick function (`PlanStep.run` over
`make_buffers`, fed as the node's subscriptions feed it, a real demo-preset checkpoint) and
checks that every dataset sample holds exactly the history and frames the node planned from.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from train_helpers import demo_model

from alpamayo_core.io.model_io import save_model_folder
from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_core.sim.labels import CAUSE_KEYWORDS, names_cause, reasoning_label
from alpamayo_core.sim.randomize import random_scene
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import load_planner, make_buffers
from alpamayo_ros.node.plan_step import PlanStep
from alpamayo_ros.tools.bag_io import BagWriteOptions, iter_raw, topic_counts, write_drive_bag
from alpamayo_ros.tools.evaluate import camera_topics
from alpamayo_ros.tools.train_data import (
    bag_inputs,
    bag_samples,
    model_frames,
    synthetic_samples,
)

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

EVERY_S = 0.5


@pytest.fixture(scope="module")
def bag_and_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("train_data")
    drive = SyntheticDrive(SceneConfig(kind="stop", seconds=8.5, width=320, height=180,
                                       seed=2, brake_at_s=1.0))
    write_drive_bag(drive, base / "drive", BagWriteOptions(compressed=True))
    model, tokenizer = demo_model()
    save_model_folder(model, tokenizer, base / "model")
    params = NodeParams.from_values({"model_dir": str(base / "model"), "backend": "torch",
                                     "max_generation_tokens": 2, "num_traj_samples": 1,
                                     "plan_rate_hz": 1.0 / EVERY_S})
    return base / "drive", params, model.cfg


def _node_inputs(bag, params: NodeParams, ticks: list[int]) -> dict[int, object]:
    """tick -> the inputs the node's PlanStep planned from, feeding messages in bag order."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CompressedImage

    planner = load_planner(params)
    cameras, odometry = make_buffers(params, planner.cfg)
    step = PlanStep(planner, cameras, odometry, params)
    cams = camera_topics(set(topic_counts(bag)), params)
    pending, outcomes = list(ticks), {}
    for raw in iter_raw(bag, [params.odom_topic, *cams]):
        while pending and raw.t_ns > pending[0]:
            tick = pending.pop(0)
            outcomes[tick] = step.run(tick).assembled
        if raw.topic == params.odom_topic:
            odometry.add_odometry(deserialize_message(raw.data, Odometry))
        else:
            cameras.add(cams[raw.topic], deserialize_message(raw.data, CompressedImage))
    return outcomes


def test_bag_samples_hold_what_the_node_plans_from(bag_and_model):
    bag, params, cfg = bag_and_model
    dataset = list(bag_inputs(bag, params, cfg, EVERY_S))
    assert len(dataset) >= 10
    node = _node_inputs(bag, params, [tick for tick, _ in dataset])
    for tick, assembled in dataset:
        ours, theirs = assembled.inputs, node[tick].inputs
        assert ours.t0_ns == theirs.t0_ns
        assert np.array_equal(ours.history_xyz_m, theirs.history_xyz_m)
        assert np.array_equal(ours.history_rot, theirs.history_rot)
        assert np.array_equal(ours.images_rgb, theirs.images_rgb)
    samples = bag_samples(bag, params, cfg, EVERY_S)
    # a sample for exactly the moments whose whole future (64 x 0.1 s) the odometry covers
    from nav_msgs.msg import Odometry
    from rosproc import stamp_ns

    odom_ns = [stamp_ns(deserialize_message(raw.data, Odometry).header.stamp)
               for raw in iter_raw(bag, [params.odom_topic])]
    horizon_ns = round(cfg.action_space.n_waypoints * cfg.action_space.dt_s * 1e9)
    expected = [a.inputs.t0_ns for _, a in dataset if a.inputs.t0_ns + horizon_ns <= max(odom_ns)]
    assert 0 < len(expected) < len(dataset)  # the drive (8.5 s) ends before the late futures
    assert [int(sample.source.split()[-1]) for sample in samples] == expected
    by_t0 = {a.inputs.t0_ns: a.inputs for _, a in dataset}
    for sample in samples:
        t0_ns = int(sample.source.split()[-1])
        assert np.array_equal(sample.history_xyz_m, by_t0[t0_ns].history_xyz_m)
        assert np.array_equal(sample.images_rgb, model_frames(by_t0[t0_ns].images_rgb, cfg))
        assert not sample.labelled and sample.future_xyz_m.shape == (64, 3)


def test_synthetic_samples_are_labelled_moments_with_the_node_history(bag_and_model):
    _, params, cfg = bag_and_model
    drive = SyntheticDrive(random_scene("curve_right", 3, width=320, height=180, seconds=4.0))
    samples = synthetic_samples(drive, params, cfg, EVERY_S)
    assert len(samples) == 5  # t0 from 1.55 s (history covered) every 0.5 s below 4 s
    for sample in samples:
        assert sample.images_rgb.shape == (4, 1, 96, 160, 3)
        assert names_cause("curve_right", sample.cot) and sample.meta_action
        # the node's history ends at the origin, 1.5 s long, moving forward
        assert np.allclose(sample.history_xyz_m[-1], 0.0)
        assert 0.5 < -sample.history_xyz_m[0, 0] < 25.0


@pytest.mark.parametrize("kind", sorted(CAUSE_KEYWORDS))
def test_each_label_names_its_own_cause_only(kind):
    drive = SyntheticDrive(random_scene(kind, 11, width=64, height=36))
    for t_s in np.arange(0.0, drive.config.seconds, 0.25):
        label = reasoning_label(drive, int(drive.to_ns(t_s)))
        assert names_cause(kind, label.cot), (kind, t_s, label.cot)
        others = [k for k in CAUSE_KEYWORDS if k != kind and names_cause(k, label.cot)]
        assert not others, (kind, t_s, label.cot, others)
