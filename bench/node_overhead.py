"""Node overhead per plan: image conversion + frame sync + ego history + message building.

4 cameras of 1920x1080 (synthetic road scenes), raw rgb8 `Image` and JPEG `CompressedImage`,
odometry at 50 Hz, all built in memory (no DDS), fed through the node's own buffers and
`plan_assembly.assemble`, then the plan turned into every output message. Two cases per
transport: "all new" (plan rate <= 2.5 Hz: all 16 frames at t0-0.3 ... t0 are new and decoded)
and "steady 10 Hz" (planning at the camera rate: 4 new frames per plan, the rest cached).
The tiny model's plan time (node defaults: 1 sample, up to 256 reasoning tokens, 1080p inputs)
is measured in the same run and printed next to the overhead.

    python bench/node_overhead.py [--runs 5] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from nav_msgs.msg import Odometry
from rclpy.serialization import serialize_message

from alpamayo_core.cli.make_tiny import make_tiny
from alpamayo_core.inference.planner import Planner
from alpamayo_core.sim.drive import SceneConfig, SyntheticDrive
from alpamayo_ros.node import messages
from alpamayo_ros.node.camera_buffer import CameraBuffer, CameraBufferConfig
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.image_conversion import array_to_image, rgb8_to_compressed
from alpamayo_ros.node.node_status import history_path
from alpamayo_ros.node.plan_assembly import assemble

CAMERA_DT_NS, ODOM_DT_NS = 100_000_000, 20_000_000
START_NS = 1_700_000_000 * 10**9


def _camera_messages(transport: str) -> list[tuple[str, object]]:
    """One message per camera (rendered once; re-stamped for every frame)."""
    drive = SyntheticDrive(SceneConfig(seconds=1.0))
    t_ns = drive.config.start_ns + 500_000_000
    out = []
    for name in drive.config.camera_names:
        rgb = drive.render(name, t_ns)
        out.append((name, array_to_image(rgb) if transport == "raw" else rgb8_to_compressed(rgb)))
    return out


def _copy(msg, stamp_ns: int):
    """A fresh message per frame, as a subscription would deliver (decode cache starts empty)."""
    new = type(msg)()
    for field in msg.get_fields_and_field_types():
        setattr(new, field, getattr(msg, field))
    new.header.stamp = messages.time_msg(stamp_ns)
    return new


def _odom(stamp_ns: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp = messages.time_msg(stamp_ns)
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    msg.pose.pose.position.x = 10.0 * (stamp_ns - START_NS) * 1e-9
    msg.pose.pose.orientation.w = 1.0
    return msg


def _feed(cameras: CameraBuffer, odometry: EgoHistoryBuffer, frames, t_from_ns: int,
          t_to_ns: int) -> None:
    for t in range(t_from_ns, t_to_ns + 1, ODOM_DT_NS):
        odometry.add_odometry(_odom(t))
    first = -(-t_from_ns // CAMERA_DT_NS) * CAMERA_DT_NS
    for t in range(first, t_to_ns + 1, CAMERA_DT_NS):
        for name, msg in frames:
            cameras.add(name, _copy(msg, t))


def _build_outputs(plan, assembled) -> float:
    """ms to build (and serialize, as publish does) every output message of one plan."""
    start = time.perf_counter()
    pose = assembled.history.odom_from_ego_t0
    outputs = [
        messages.plan_to_driving_plan(plan, pose, status=(assembled.level, assembled.reason),
                                      input_ages_s=assembled.input_ages_s),
        messages.plan_to_path(plan, pose), messages.reasoning_string(plan),
        messages.plan_to_markers(plan, pose), history_path(assembled.history, "odom")]
    for msg in outputs:
        serialize_message(msg)
    return (time.perf_counter() - start) * 1e3


def measure(planner: Planner, transport: str, step_ns: int, runs: int) -> dict[str, float]:
    """Median ms per plan of each node stage for frames arriving every `step_ns` per plan."""
    frames = _camera_messages(transport)
    cameras = CameraBuffer(CameraBufferConfig(cameras=tuple(n for n, _ in frames),
                                              reference_camera=frames[1][0], window_s=1.5))
    odometry = EgoHistoryBuffer()
    t_ns = START_NS + 2_000_000_000
    _feed(cameras, odometry, frames, START_NS, t_ns)
    rows: dict[str, list[float]] = {"feed": [], "select_inputs": [], "history": [],
                                    "messages": [], "plan": []}
    for _ in range(runs):
        start = time.perf_counter()
        _feed(cameras, odometry, frames, t_ns + 1, t_ns + step_ns)
        rows["feed"].append((time.perf_counter() - start) * 1e3)
        t_ns += step_ns
        assembled = assemble(cameras, odometry, now_ns=t_ns, tolerance_s=0.05,
                             max_image_age_s=0.5, odom_frame="odom")
        rows["select_inputs"].append(assembled.timings_ms["select_inputs"])
        rows["history"].append(assembled.timings_ms["history"])
        start = time.perf_counter()
        plan = planner.plan(assembled.inputs, seed=0)
        rows["plan"].append((time.perf_counter() - start) * 1e3)
        rows["messages"].append(_build_outputs(plan, assembled))
    return {k: statistics.median(v) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", help="model folder (default: build the tiny model)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or make_tiny(os.path.join(tmp, "tiny"))
        planner = Planner.from_pretrained(model_dir)
        print(f"model {planner.model_id}, {args.runs} runs, median ms per plan "
              f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
        print(f"{'case':<24}{'feed':>8}{'select':>9}{'history':>9}{'msgs':>8}{'overhead':>10}"
              f"{'plan':>9}{'overhead/plan':>15}")
        for transport in ("raw", "jpeg"):
            for label, step_ns in (("all new", 5 * CAMERA_DT_NS), ("steady 10 Hz",
                                                                   CAMERA_DT_NS)):
                r = measure(planner, transport, step_ns, args.runs)
                overhead = r["feed"] + r["select_inputs"] + r["history"] + r["messages"]
                print(f"{transport + ', ' + label:<24}{r['feed']:>8.1f}{r['select_inputs']:>9.1f}"
                      f"{r['history']:>9.1f}{r['messages']:>8.1f}{overhead:>10.1f}"
                      f"{r['plan']:>9.1f}{overhead / r['plan']:>15.1%}")
    print("feed: buffering the frames and odometry that arrive between two plans (subscription "
          "callbacks); select: frame choice + decoding; msgs: build + serialize all outputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
