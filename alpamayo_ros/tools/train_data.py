"""Training samples from bags and from synthetic drives, through the node's own input code.

Bags (`bag_samples`): messages are fed in bag order to the node's `CameraBuffer` and
`EgoHistoryBuffer` (`pipeline.make_buffers`, the node's parameters) and every `every_s` of bag
time the inputs are assembled by `plan_assembly.assemble` with the arguments `PlanStep` uses,
so a sample holds exactly the frames and history the node would plan from at that moment.
The future is the bag's own odometry (`evaluate.load_track`: position linear, rotation slerp)
at t0 + 0.1 ... 6.4 s in the ego frame at t0; moments without that future, or whose inputs the
node would call INVALID, are skipped. Bags carry no reasoning: their samples train the
trajectory term only.

Synthetic drives (`synthetic_samples`): the odometry messages go through the same
`EgoHistoryBuffer`, t0 is a reference-camera stamp and each camera's frame is the one nearest
t0 + offset (as `CameraBuffer.select` picks it; rendering every frame into a buffer would cost
~5x more), the future is the drive's ground truth and the reasoning comes from
`sim.labels.reasoning_label`.

Frames are stored at the model's input size (`inputs.images.resize_to_model`, the
preprocessing's own resize), so a dataset of thousands of moments fits in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from alpamayo_core.inputs.images import resize_to_model
from alpamayo_core.model.config import ModelConfig
from alpamayo_core.sim.drive import SyntheticDrive
from alpamayo_core.sim.labels import reasoning_label
from alpamayo_core.training.sample import TrainSample
from alpamayo_ros.node.ego_history import EgoHistoryBuffer
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.pipeline import make_buffers
from alpamayo_ros.node.plan_assembly import AssembledInputs, InputsUnavailable, assemble
from alpamayo_ros.tools.bag_io import iter_raw, topic_counts
from alpamayo_ros.tools.evaluate import camera_topics, load_track
from alpamayo_ros.tools.metrics import OdomTrack

LOG = logging.getLogger(__name__)


def model_frames(images_rgb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """(C, F, H, W, 3) uint8 -> (C, F, h, w, 3) at the model's input size."""
    c, f, height, width, _ = images_rgb.shape
    chw = np.ascontiguousarray(images_rgb.reshape(c * f, height, width, 3).transpose(0, 3, 1, 2))
    resized = resize_to_model(chw, cfg.images, cfg.vision).numpy()  # (C*F, 3, h, w)
    return np.ascontiguousarray(resized.transpose(0, 2, 3, 1)).reshape(
        c, f, *resized.shape[2:], 3)


def future_in_ego(track: OdomTrack, t0_ns: int, cfg: ModelConfig):
    """(T, 3), (T, 3, 3) future poses from the track in the ego frame at t0, or None when the
    odometry does not cover t0 ... t0 + T dt."""
    space = cfg.action_space
    offsets_ns = np.round(np.arange(1, space.n_waypoints + 1) * space.dt_s * 1e9)
    t_ns = int(t0_ns) + offsets_ns.astype(np.int64)
    if not (np.all(track.covered(t_ns)) and bool(track.covered(np.array([t0_ns]))[0])):
        return None
    ego_from_odom = track.pose_at(t0_ns).inverse()
    xyz_odom, rot_odom = track.poses_at(t_ns)
    return ego_from_odom.apply(xyz_odom), ego_from_odom.apply_rotations(rot_odom).as_matrix()


def _sample(assembled: AssembledInputs, future, cfg: ModelConfig, source: str) -> TrainSample:
    inputs = assembled.inputs
    return TrainSample(
        images_rgb=model_frames(inputs.images_rgb, cfg),
        history_xyz_m=np.asarray(inputs.history_xyz_m), history_rot=np.asarray(inputs.history_rot),
        future_xyz_m=future[0], future_rot=future[1], source=source)


def bag_inputs(bag: Path | str, params: NodeParams, cfg: ModelConfig,
               every_s: float = 0.5):
    """(tick_ns, AssembledInputs) every `every_s` of bag time where the node would plan."""
    counts = topic_counts(bag)
    cams = camera_topics(set(counts), params)
    cameras, odometry = make_buffers(params, cfg)
    period_ns, next_tick = round(every_s * 1e9), None
    for raw in iter_raw(bag, [params.odom_topic, *cams]):
        next_tick = raw.t_ns + period_ns if next_tick is None else next_tick
        while raw.t_ns > next_tick:
            try:
                yield next_tick, assemble(
                    cameras, odometry, now_ns=next_tick, tolerance_s=params.sync_tolerance_s,
                    max_image_age_s=params.max_image_age_s, odom_frame=params.odom_frame,
                    max_future_stamp_s=params.max_future_stamp_s)
            except InputsUnavailable as err:
                LOG.debug("tick %d: no inputs (%s)", next_tick, err.reason)
            next_tick += period_ns
        if raw.topic == params.odom_topic:
            odometry.add_odometry(deserialize_message(raw.data, Odometry))
        else:
            kind = CompressedImage if raw.topic.endswith("/compressed") else Image
            cameras.add(cams[raw.topic], deserialize_message(raw.data, kind))


def bag_samples(bag: Path | str, params: NodeParams, cfg: ModelConfig,
                every_s: float = 0.5) -> list[TrainSample]:
    """Unlabelled samples of a recorded drive (see the module docstring)."""
    track = load_track(bag, params.odom_topic)
    samples = []
    for _, assembled in bag_inputs(bag, params, cfg, every_s):
        t0_ns = assembled.inputs.t0_ns
        future = future_in_ego(track, t0_ns, cfg)
        if future is not None:
            samples.append(_sample(assembled, future, cfg, f"{Path(bag).name} t0 {t0_ns}"))
    LOG.info("%s: %d samples", bag, len(samples))
    return samples


def synthetic_samples(drive: SyntheticDrive, params: NodeParams, cfg: ModelConfig,
                      every_s: float = 0.5) -> list[TrainSample]:
    """Labelled samples of a synthetic drive, one per `every_s` from the first moment the
    node's history is covered (see the module docstring)."""
    odometry = make_buffers(params, cfg)[1]
    stamps = drive.stamps
    reference = stamps.camera_ns[params.reference_camera]
    history_s = cfg.action_space.dt_s * (cfg.history_tokenizer.num_steps - 1)
    first_ns = int(stamps.odom_ns[0]) + round((history_s + 0.05) * 1e9)
    targets = np.arange(first_ns, int(reference[-1]), round(every_s * 1e9))
    t0s = np.unique(reference[np.searchsorted(reference, targets).clip(0, len(reference) - 1)])
    samples, fed = [], 0
    for t0_ns in t0s:
        while fed < len(stamps.odom_ns) and stamps.odom_ns[fed] <= t0_ns:
            odom = drive.odom_sample(fed)
            odometry.add_pose(odom.stamp_ns, odom.xyz_m, odom.quat_xyzw)
            fed += 1
        samples.append(_synthetic_sample(drive, odometry, int(t0_ns), params, cfg))
    return samples


def _synthetic_sample(drive: SyntheticDrive, odometry: EgoHistoryBuffer, t0_ns: int,
                      params: NodeParams, cfg: ModelConfig) -> TrainSample:
    history = odometry.history_at(t0_ns)
    frames = []
    for camera in params.camera_names:
        stamps = drive.stamps.camera_ns[camera]
        wanted = t0_ns + np.round(np.array(cfg.images.frame_offsets_s) * 1e9).astype(np.int64)
        nearest = [int(stamps[np.argmin(np.abs(stamps - w))]) for w in wanted]
        frames.append([drive.render(camera, s) for s in nearest])
    future = drive.true_future(t0_ns, cfg.action_space.n_waypoints, cfg.action_space.dt_s)
    label = reasoning_label(drive, t0_ns)
    c = drive.config
    return TrainSample(
        images_rgb=model_frames(np.asarray(frames, dtype=np.uint8), cfg),
        history_xyz_m=history.xyz_m, history_rot=history.rot,
        future_xyz_m=future.xyz_m, future_rot=future.rot, cot=label.cot,
        meta_action=label.meta_action,
        source=f"{c.kind} seed {c.seed} t0 {drive.to_scene_s(t0_ns):.2f} s")
