"""Offline evaluation end to end: a short synthetic bag (480x270 JPEG) and the tiny model."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
from rosproc import tiny_checkpoint

from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools.bag_io import BagWriteOptions, image_topic, iter_raw, topic_counts
from alpamayo_ros.tools.evaluate import camera_topics

pytest.importorskip("alpamayo.msg", reason="build the interfaces: scripts/build_interfaces.sh")

SECONDS = 4.0
SAMPLES = 2


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from alpamayo_ros.cli.evaluate import main
    from alpamayo_ros.tools.bag_io import write_drive_bag

    base = tmp_path_factory.mktemp("evaluate")
    drive = SyntheticDrive(SceneConfig(kind="curve_left", seconds=SECONDS, width=480,
                                       height=270, seed=3))
    write_drive_bag(drive, base / "drive", BagWriteOptions(compressed=True))
    model = tiny_checkpoint(tmp_path_factory.getbasetemp())
    code = main([str(base / "drive"), "--model", str(model), "--out", str(base / "eval"),
                 "--samples", str(SAMPLES), "--max-tokens", "8", "--quiet"])
    assert code == 0
    return drive, base / "eval"


def test_output_bag_has_the_plan_topics_stamped_at_reference_frames(evaluated):
    from rclpy.serialization import deserialize_message

    from alpamayo.msg import DrivingPlan

    drive, out = evaluated
    counts = topic_counts(out / "plans")
    assert set(counts) == {"/alpamayo/plan", "/alpamayo/trajectory", "/alpamayo/markers",
                           "/alpamayo/reasoning"}
    plans = [deserialize_message(r.data, DrivingPlan)
             for r in iter_raw(out / "plans", ["/alpamayo/plan"])]
    assert len(plans) == int(SECONDS * 2) - 1  # one tick per 0.5 s of bag time
    made = [p for p in plans if p.status.level != 2]
    assert len(made) >= 3 and counts["/alpamayo/trajectory"] == len(made)
    reference = set(drive.stamps.camera_ns["camera_front_wide_120fov"].tolist())
    for plan in made:
        assert plan.header.frame_id == "odom"
        assert plan.header.stamp.sec * 10**9 + plan.header.stamp.nanosec in reference
        assert len(plan.trajectories) == SAMPLES
    invalid = [p for p in plans if p.status.level == 2]
    assert all(p.status.reason for p in invalid), "INVALID plans say why"


def test_demo_reasoning_lines_span_the_drive_and_quote_the_plans(evaluated):
    """The demo's "reasoning of a few offline plans": first and last made plan included, offsets
    from the first plan's t0 in order, each line the plan's own meta-action and reasoning."""
    from rclpy.serialization import deserialize_message

    from alpamayo.msg import DrivingPlan
    from alpamayo_ros.tools.demo import reasoning_lines

    _, out = evaluated
    made = [p for p in (deserialize_message(r.data, DrivingPlan)
                        for r in iter_raw(out / "plans", ["/alpamayo/plan"])) if p.trajectories]
    lines = reasoning_lines(out / "plans", count=3)
    assert len(lines) == 3
    offsets_s = [float(line.split(" s  [")[0].replace("+", "")) for line in lines]
    t0_s = [p.header.stamp.sec + p.header.stamp.nanosec * 1e-9 for p in made]
    assert offsets_s[0] == 0.0
    assert offsets_s[-1] == pytest.approx(t0_s[-1] - t0_s[0], abs=0.05)
    assert offsets_s == sorted(offsets_s) and len(set(offsets_s)) == 3
    assert lines[0].endswith(f"[{made[0].meta_action}] {made[0].reasoning}")
    assert lines[-1].endswith(f"[{made[-1].meta_action}] {made[-1].reasoning}")


def test_metrics_have_the_horizons_and_the_baseline(evaluated):
    _, out = evaluated
    data = json.loads((out / "metrics.json").read_text())
    summary = data["summary"]
    assert summary["horizons_s"] == [0.5, 1.0, 3.0, 5.0]
    made = data["meta"]["status_counts"].get("OK", 0) + data["meta"]["status_counts"].get(
        "DEGRADED", 0)
    assert summary["num_plans"] == made == len(data["plans"])
    for method in ("model", "constant_velocity"):
        assert summary[method]["0.5s"]["num_scored"] >= 1
        assert summary[method]["0.5s"]["min_ade_m"] >= 0.0
        # a 4 s bag has no 5 s future for any plan: excluded and counted
        assert summary[method]["5s"]["num_scored"] == 0
        assert summary[method]["5s"]["num_excluded"] == made
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("t0_ns,status,method,horizon_s,min_ade_m")
    assert len(lines) == 1 + made * 2 * 4


def test_pictures_and_animation_are_written(evaluated):
    _, out = evaluated
    pictures = sorted((out / "frames").glob("plan_*.png"))
    data = json.loads((out / "metrics.json").read_text())
    assert len(pictures) == data["summary"]["num_plans"]
    image = iio.imread(pictures[0])
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert np.std(image) > 10, "the picture is not blank"
    gif = iio.imread(out / "drive.gif", index=None)
    assert gif.shape[0] == len(pictures)


def test_missing_camera_topic_is_reported():
    params = NodeParams(model_dir="m")
    topics = {image_topic(c, True) for c in params.camera_names[1:]} | {"/odom"}
    assert len(camera_topics(topics | {image_topic(params.camera_names[0], False)}, params)) == 4
    with pytest.raises(ValueError, match=params.camera_names[0]):
        camera_topics(topics, params)
