"""Offline evaluation: run the planner over a bag without DDS, as the node would on a replay.

Messages are read in bag order and fed to the same `CameraBuffer` / `EgoHistoryBuffer` and
`plan_step.PlanStep` (inputs, model, every status rule) the node uses; the bag time plays the
node's clock (as with use_sim_time), and a plan is attempted at every tick of `plan_rate_hz` on
that clock, with the messages received up to the tick. Unlike the live node nothing is
skipped: every tick plans (deterministic, so runs are comparable).

Outputs in `out_dir`:
    plans/         rosbag2 (MCAP) with /alpamayo/plan (DrivingPlan, INVALID ones included),
                   /alpamayo/trajectory (Path), /alpamayo/markers (MarkerArray),
                   /alpamayo/reasoning (String), written at the tick time, stamped t0 in odom
    metrics.json   summary + per-plan minADE / FDE at 0.5/1/3/5 s, model vs constant velocity
    metrics.csv    the same, one line per plan, method and horizon
    frames/        plan_NNNN.png per plan (camera mosaic + bird's-eye view + text)
    drive.gif      the pictures as an animation

Ground truth is the bag's own odometry (see `metrics`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import StoragePlugin
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from tqdm import tqdm

from alpamayo_ros.node import messages, plan_step
from alpamayo_ros.node.navigation import RouteState
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import load_planner, make_buffers
from alpamayo_ros.node.transforms import RigidTransform
from alpamayo_ros.tools import metrics, render
from alpamayo_ros.tools.bag_io import iter_raw, make_typestore, topic_counts
from alpamayo_ros.tools.bag_writer import BagWriter
from alpamayo_ros.tools.share import share_path

LOG = logging.getLogger(__name__)

OUTPUT_TYPES = {
    "plan": "alpamayo/msg/DrivingPlan",
    "trajectory": "nav_msgs/msg/Path",
    "markers": "visualization_msgs/msg/MarkerArray",
    "reasoning": "std_msgs/msg/String",
}
STATUS_NAMES = {messages.STATUS_OK: "OK", messages.STATUS_DEGRADED: "DEGRADED",
                messages.STATUS_INVALID: "INVALID"}


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate.

    Attributes:
        params: the node's parameters (model_dir, cameras, topics, tolerances, sampling).
        render: write a PNG per plan; animation: also a GIF of them.
        max_plans: stop after this many planning ticks (0 = the whole bag).
        namespace: output topic prefix (the node's fully qualified name).
    """

    params: NodeParams
    render: bool = True
    animation: bool = True
    max_plans: int = 0
    namespace: str = "/alpamayo"
    horizons_s: tuple[float, ...] = metrics.HORIZONS_S

    def __post_init__(self) -> None:
        if self.max_plans < 0:
            raise ValueError(f"EvalOptions.max_plans: must be >= 0, got {self.max_plans}")
        if not self.namespace.startswith("/"):
            raise ValueError(f"EvalOptions.namespace: must start with '/', got {self.namespace!r}")


@dataclass(frozen=True)
class EvalResult:
    """Where the outputs are and what happened."""

    out_dir: Path
    plans_bag: Path
    metrics_json: Path
    metrics_csv: Path
    pictures: tuple[Path, ...]
    animation: Path | None
    summary: dict
    status_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def camera_topics(bag_topics: set[str], params: NodeParams) -> dict[str, str]:
    """Bag topic -> camera name: each camera's raw topic, or its /compressed one if only that."""
    found = {}
    for index, camera in enumerate(params.camera_names):
        raw = params.camera_topics[index]
        compressed = raw.rstrip("/") + "/compressed"
        topic = raw if raw in bag_topics else compressed if compressed in bag_topics else None
        if topic is None:
            raise ValueError(f"camera {camera}: neither {raw} nor {compressed} is in the bag "
                             f"(topics: {sorted(bag_topics)}); set camera_topics")
        found[topic] = camera
    return found


def load_track(bag: Path | str, odom_topic: str) -> metrics.OdomTrack:
    """The bag's odometry as the ground-truth track."""
    msgs = (deserialize_message(raw.data, Odometry) for raw in iter_raw(bag, [odom_topic]))
    return metrics.OdomTrack.from_odometry(msgs)


class _Outputs:
    """The output bag, metrics rows and pictures of one evaluation."""

    def __init__(self, out_dir: Path, options: EvalOptions) -> None:
        self.out_dir, self.options = out_dir, options
        self.typestore = make_typestore(share_path("msg"))
        self.writer = BagWriter(out_dir / "plans", version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections = {
            name: self.writer.add_connection(f"{options.namespace}/{name}", msgtype,
                                             typestore=self.typestore)
            for name, msgtype in OUTPUT_TYPES.items()}
        self.rows: list[metrics.PlanMetrics] = []
        self.pictures: list[Path] = []
        self.frames: list[np.ndarray] = []
        self.status_counts: Counter[str] = Counter()
        if options.render:
            (out_dir / "frames").mkdir()

    def write(self, name: str, t_ns: int, msg: object) -> None:
        self.writer.write(self.connections[name], t_ns, serialize_message(msg))

    def close(self) -> None:
        self.writer.close()



class OfflineEvaluator:
    """Feeds bag messages to the node's buffers and plans on the bag clock."""

    def __init__(self, planner, options: EvalOptions, track: metrics.OdomTrack,
                 outputs: _Outputs) -> None:
        self.planner, self.options, self.track, self.outputs = planner, options, track, outputs
        p = options.params
        self.cameras, self.odometry = make_buffers(p, planner.cfg)
        self.route = RouteState()
        self.route_topic = f"{options.namespace}/route"
        self.step = plan_step.PlanStep(planner, self.cameras, self.odometry, p, route=self.route)
        self.ticks = 0

    def feed(self, topic: str, camera: str | None, data: bytes, t_ns: int = 0) -> None:
        """One bag message at bag time `t_ns`: odometry, a camera image (raw or compressed), or
        the route text (the node's `~/route`)."""
        if topic == self.route_topic:
            self.route.update(deserialize_message(data, String).data, t_ns)
            return
        if camera is None:
            self.odometry.add_odometry(deserialize_message(data, Odometry))
            return
        msg_type = CompressedImage if topic.endswith("/compressed") else Image
        self.cameras.add(camera, deserialize_message(data, msg_type))

    def tick(self, now_ns: int) -> None:
        """One planning attempt at bag time `now_ns`: the node's `PlanStep`, so the statuses
        are the live node's."""
        self.ticks += 1
        outcome = self.step.run(now_ns)
        out = self.outputs
        msgs = plan_step.outcome_messages(outcome, self.options.params,
                                          model_id=self.planner.model_id,
                                          backend=self.planner.backend_name)
        for name, msg in msgs.items():
            if name in out.connections:
                out.write(name, now_ns, msg)
        out.status_counts[STATUS_NAMES[outcome.level]] += 1
        if outcome.plan is None:
            LOG.info("tick at %d ns: INVALID (%s)", now_ns, outcome.reason)
            return
        plan = outcome.plan
        row = metrics.evaluate_plan(self.track, plan.t0_ns, plan.xyz_m, plan.selected,
                                    plan.time_from_start_s, outcome.level,
                                    self.options.horizons_s)
        out.rows.append(row)
        if self.options.render:
            self._render(outcome, row)

    def _render(self, outcome: plan_step.PlanOutcome, row: metrics.PlanMetrics) -> None:
        assembled, plan = outcome.assembled, outcome.plan
        gt, valid = self.track.future_in_ego(plan.t0_ns, plan.time_from_start_s)
        gt = np.where(valid[:, None], gt, np.nan)
        baseline = metrics.constant_velocity(self.track, plan.t0_ns, plan.time_from_start_s)[0]
        status = STATUS_NAMES[outcome.level]
        title = (f"plan {len(self.outputs.rows) - 1}  t0 = {plan.t0_ns * 1e-9:.2f} s  {status}"
                 + (f" ({outcome.reason})" if outcome.reason else ""))
        k = plan.selected
        picture = render.PlanPicture(
            camera_names=assembled.selection.cameras,
            images_rgb=[frames[-1] for frames in assembled.selection.images_rgb],
            samples_xyz_m=plan.xyz_m, selected=k, ground_truth_xyz_m=gt,
            baseline_xyz_m=baseline, history_xyz_m=assembled.history.xyz_m, title=title,
            texts=[("meta-action", plan.meta_action[k]), ("reasoning", plan.cot[k])],
            errors=render.error_lines(row.model, row.constant_velocity))
        image = render.render_plan(picture)
        path = self.outputs.out_dir / "frames" / f"plan_{len(self.outputs.rows) - 1:04d}.png"
        self.outputs.pictures.append(render.save_png(path, image))
        if self.options.animation:
            self.outputs.frames.append(image)


def evaluate_bag(bag: Path | str, out_dir: Path | str, options: EvalOptions,
                 progress: bool = True, planner=None) -> EvalResult:
    """Run the planner over `bag` and write plans, metrics and pictures to `out_dir` (new).

    `planner`: an already loaded `load_planner(options.params)` to reuse across bags (its frame
    cache is cleared: its (camera, stamp) keys would match another bag's frames); None loads one.
    """
    start = time.perf_counter()
    bag, out_dir = Path(bag), Path(out_dir)
    counts = topic_counts(bag)
    p = options.params
    cams = camera_topics(set(counts), p)
    if p.odom_topic not in counts:
        raise ValueError(f"odometry topic {p.odom_topic} is not in the bag (topics: "
                         f"{sorted(counts)}); set odom_topic")
    track = load_track(bag, p.odom_topic)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "plans").exists():
        raise FileExistsError(f"{out_dir / 'plans'} exists; choose a new output folder")
    if planner is None:
        planner = load_planner(p)
    else:
        planner.forget_frames()
    outputs = _Outputs(out_dir, options)
    evaluator = OfflineEvaluator(planner, options, track, outputs)
    topics = [p.odom_topic, *cams]
    if evaluator.route_topic in counts:  # Alpamayo 1.5 navigation text recorded in the bag
        topics.append(evaluator.route_topic)
    try:
        _run(evaluator, bag, topics, cams, sum(counts[t] for t in topics), progress)
    finally:
        outputs.close()
    return _finish(outputs, options, bag, planner.model_id, time.perf_counter() - start)


def _run(evaluator: OfflineEvaluator, bag: Path, topics: list[str], cams: dict[str, str],
         total: int, progress: bool) -> None:
    """Feed messages in bag order, planning at each tick of the bag clock."""
    period_ns = round(1e9 / evaluator.options.params.plan_rate_hz)
    max_ticks = evaluator.options.max_plans
    next_tick: int | None = None
    with tqdm(total=total, unit="msg", desc="evaluate", disable=not progress) as bar:
        for raw in iter_raw(bag, topics):
            if next_tick is None:
                next_tick = raw.t_ns + period_ns
            while raw.t_ns > next_tick:
                evaluator.tick(next_tick)
                next_tick += period_ns
                bar.set_postfix(plans=len(evaluator.outputs.rows), refresh=False)
                if max_ticks and evaluator.ticks >= max_ticks:
                    return
            evaluator.feed(raw.topic, cams.get(raw.topic), raw.data, raw.t_ns)
            bar.update()


def _finish(outputs: _Outputs, options: EvalOptions, bag: Path, model_id: str,
            seconds: float) -> EvalResult:
    out_dir = outputs.out_dir
    meta = {"bag": str(bag), "model_id": model_id, "plan_rate_hz": options.params.plan_rate_hz,
            "num_traj_samples": options.params.num_traj_samples, "seed": options.params.seed,
            "horizons_s": list(options.horizons_s), "status_counts": dict(outputs.status_counts)}
    summary = metrics.write_json(out_dir / "metrics.json", outputs.rows, meta)
    metrics.write_csv(out_dir / "metrics.csv", outputs.rows)
    animation = None
    if outputs.frames:
        fps = min(options.params.plan_rate_hz, 10.0)
        animation = render.write_animation(out_dir / "drive.gif", outputs.frames, fps=fps)
    return EvalResult(out_dir, out_dir / "plans", out_dir / "metrics.json",
                      out_dir / "metrics.csv", tuple(outputs.pictures), animation, summary,
                      dict(outputs.status_counts), seconds)


def score_recorded_plans(plans_bag: Path | str, track: metrics.OdomTrack,
                         topic: str = "/alpamayo/plan",
                         horizons_s: tuple[float, ...] = metrics.HORIZONS_S
                         ) -> tuple[list[metrics.PlanMetrics], dict[str, int]]:
    """Score the DrivingPlans of a recorded bag (e.g. the live node's) against `track`.

    Trajectories are mapped from odom back to the ego frame at t0 with each plan's
    ego_pose_t0. Returns the metrics of the plans with trajectories and the status counts.
    """
    from alpamayo.msg import DrivingPlan

    rows, counts = [], Counter()
    for raw in iter_raw(plans_bag, [topic]):
        plan = deserialize_message(raw.data, DrivingPlan)
        counts[STATUS_NAMES.get(plan.status.level, str(plan.status.level))] += 1
        if not plan.trajectories:
            continue
        ego_from_odom = RigidTransform.from_pose_msg(plan.ego_pose_t0).inverse()
        xyz_odom = np.array([[[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                              for p in traj.points] for traj in plan.trajectories])  # (K, T, 3)
        offsets_s = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
                              for p in plan.trajectories[0].points])  # (T,)
        t0_ns = plan.header.stamp.sec * 1_000_000_000 + plan.header.stamp.nanosec
        xyz_ego = ego_from_odom.apply(xyz_odom.reshape(-1, 3)).reshape(xyz_odom.shape)
        rows.append(metrics.evaluate_plan(track, t0_ns, xyz_ego, int(plan.selected_index),
                                          offsets_s, plan.status.level, horizons_s))
    return rows, dict(counts)
