"""The demo: a synthetic drive through the live node over real DDS, recorded, then scored.

    python -m alpamayo_ros.tools.demo --out /tmp/alpamayo_demo [--seconds 8] [--scene curve_left]

Steps (each tool a separate process, as on a vehicle):
    1. the embedded demo model (`alpamayo_core/demo_model`, trained on synthetic drives by
       `alpamayo-train --preset demo`) unless --model is given
    2. a synthetic drive bag: 4 cameras 1920x1080 JPEG at 10 Hz + odometry at 50 Hz (OUT/drive)
    3. the node (use_sim_time), a recorder of its outputs, and alpamayo-replay with /clock;
       the node's plans go to OUT/live/plans (rosbag2, MCAP) and are scored (OUT/live/metrics.json)
    4. the offline evaluation of the same drive (OUT/eval: plans bag, metrics JSON/CSV, a picture
       per plan, drive.gif)
Every ROS process uses localhost discovery, the demo's own ROS_DOMAIN_ID and the shipped Fast DDS
profile. Prints where everything is and a short summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from alpamayo_core.demo_model import demo_model_dir
from alpamayo_core.sim.drive import SCENE_KINDS, SceneConfig, SyntheticDrive
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.bag_io import BagWriteOptions, iter_raw, write_drive_bag
from alpamayo_ros.tools.evaluate import (
    EvalOptions,
    evaluate_bag,
    load_track,
    score_recorded_plans,
)
from alpamayo_ros.tools.processes import ChildProcess, node_params_file, ros_env

OUTPUT_TOPICS = {
    "/alpamayo/plan": "alpamayo/msg/DrivingPlan",
    "/alpamayo/trajectory": "nav_msgs/msg/Path",
    "/alpamayo/markers": "visualization_msgs/msg/MarkerArray",
    "/alpamayo/reasoning": "std_msgs/msg/String",
}
NODE_SETTINGS = {"num_traj_samples": 3, "max_generation_tokens": 64, "plan_rate_hz": 2.0,
                 "seed": 0, "camera_transport": ["compressed"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seconds", type=float, default=8.0, help="drive length")
    parser.add_argument("--scene", choices=SCENE_KINDS, default="curve_left")
    parser.add_argument("--model", help="model folder (default: the embedded demo model)")
    parser.add_argument("--rate", type=float, default=0.5, help="replay speed factor")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--domain-id", type=int, default=100 + os.getpid() % 20,
                        help="ROS_DOMAIN_ID of the demo's processes")
    return parser


def make_drive(out: Path, scene: str, seconds: float, width: int, height: int) -> Path:
    drive = SyntheticDrive(SceneConfig(kind=scene, seconds=seconds, width=width,
                                       height=height))
    summary = write_drive_bag(drive, out, BagWriteOptions(compressed=True))
    print(f"[demo] drive bag: {out} ({sum(summary.counts.values())} messages, {scene}, "
          f"{seconds:g} s, {width}x{height} JPEG)", flush=True)
    return out


def run_live(args: argparse.Namespace, model: Path, drive: Path, live: Path) -> Path:
    """Node + recorder + replay as separate processes; returns the recorded plans bag."""
    env = ros_env(args.domain_id, live / "ros_logs")
    params = node_params_file(live / "node_params.yaml", model_dir=str(model), **NODE_SETTINGS)
    sim_time = ["--ros-args", "-p", "use_sim_time:=true"]
    node = ChildProcess(["-m", "alpamayo_ros", "--ros-args", "--params-file", str(params),
                         "-p", "use_sim_time:=true"], env, live / "node.log")
    children = [node]
    try:
        node.wait_for("active: planning", 300.0)
        print("[demo] node active; starting the recorder and the replay", flush=True)
        topics = [f"{t}:={m}" for t, m in OUTPUT_TOPICS.items()]
        recorder = ChildProcess(["-m", "alpamayo_ros.tools.record", "--out", str(live / "plans"),
                                 *topics, *sim_time], env, live / "record.log")
        children.append(recorder)
        recorder.wait_for("^MATCHED", 60.0)
        replay = ChildProcess(["-m", "alpamayo_ros.cli.replay", str(drive), "--clock",
                               "--rate", str(args.rate), "--wait-subscribers", "30",
                               "--quiet"], env, live / "replay.log")
        children.append(replay)
        replay.wait_for("^MATCHED", 60.0)
        done = replay.wait_for("^DONE.*", args.seconds / args.rate + 120.0)
        print(f"[demo] replay: {done.group(0)}", flush=True)
        time.sleep(3.0)  # let the last plan finish and reach the recorder
        recorder.stop()
        recorder.wait_for("^RECORDED", 10.0)
    finally:
        for child in reversed(children):
            child.stop()
    return live / "plans"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out).resolve()
    for name in ("drive", "live", "eval"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "live").mkdir(parents=True)
    model = Path(args.model) if args.model else demo_model_dir()
    drive = make_drive(out / "drive", args.scene, args.seconds, args.width, args.height)
    try:
        plans_bag = run_live(args, model, drive, out / "live")
    except RuntimeError as err:
        print(f"[demo] error: {err}", file=sys.stderr)
        return 1
    track = load_track(drive, "/odom")
    rows, live_counts = score_recorded_plans(plans_bag, track)
    live_summary = metrics.write_json(out / "live" / "metrics.json", rows,
                                      {"plans_bag": plans_bag, "status_counts": live_counts})
    print("[demo] offline evaluation of the same drive", flush=True)
    params = NodeParams.from_values({"model_dir": str(model), **NODE_SETTINGS})
    result = evaluate_bag(drive, out / "eval", EvalOptions(params))
    _report(out, live_counts, live_summary, result, time.perf_counter() - start)
    return 0


def _report(out: Path, live_counts: dict, live_summary: dict, result, seconds: float) -> None:
    print(f"\n=== alpamayo demo done in {seconds:.0f} s ===")
    print(f"drive bag:          {out / 'drive'}")
    print(f"live node plans:    {out / 'live' / 'plans'}  (statuses {json.dumps(live_counts)})")
    print(f"live metrics:       {out / 'live' / 'metrics.json'}")
    print(f"node/replay logs:   {out / 'live'}/*.log")
    print(f"offline plans bag:  {result.plans_bag}  (statuses "
          f"{json.dumps(result.status_counts)})")
    print(f"offline metrics:    {result.metrics_json}, {result.metrics_csv}")
    if result.pictures:
        print(f"pictures:           {len(result.pictures)} in {result.pictures[0].parent}")
    if result.animation:
        print(f"animation:          {result.animation}")
    print("\nlive node plans vs the recorded odometry (constant velocity = CV baseline):")
    print(metrics.format_summary(live_summary))
    print("\noffline evaluation:")
    print(metrics.format_summary(result.summary))
    print("\nreasoning of a few offline plans (selected sample):")
    for line in reasoning_lines(result.plans_bag):
        print(line)


def reasoning_lines(plans_bag: Path, count: int = 4) -> list[str]:
    """`count` plans spread over the drive: "t0 - first plan's t0 (s)  [meta-action] reasoning"."""
    from rclpy.serialization import deserialize_message

    from alpamayo.msg import DrivingPlan

    plans = [deserialize_message(raw.data, DrivingPlan)
             for raw in iter_raw(plans_bag, ["/alpamayo/plan"])]
    plans = [p for p in plans if p.trajectories]
    if not plans:
        return ["  (no plan with trajectories)"]
    t0_s = [p.header.stamp.sec + p.header.stamp.nanosec * 1e-9 for p in plans]
    picked = np.linspace(0, len(plans) - 1, min(count, len(plans)), dtype=int)
    return [f"  +{t0_s[i] - t0_s[0]:4.1f} s  [{plans[i].meta_action}] {plans[i].reasoning}"
            for i in picked]


if __name__ == "__main__":
    sys.exit(main())
