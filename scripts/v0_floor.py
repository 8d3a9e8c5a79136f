"""What a plan can reach on held-out synthetic drives, against the constant-velocity baseline.

    python scripts/v0_floor.py [KIND ...]      # default: straight

For the quality tool's held-out drives (`HELD_OUT_SEED_START`, +1) at 2 Hz moments whose
recorded odometry covers 6.4 s, with the history from the node's own buffer, prints the mean
ADE over 6.4 s against the recorded odometry of:

* CV: `metrics.constant_velocity` (the velocity over the last 0.1 s of odometry);
* zero actions: the unicycle from the action space's v0 (`estimate_t0_speed`, the reference's
  least squares at the last history pose), keeping speed and heading;
* linear fit: a straight line at the velocity of a plain linear fit to the 16 history poses;
* labels: the training labels (`traj_to_action`, forward-only) integrated back (a perfect
  model's score);

and the error of v0 against the true speed (mean and std, m/s).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from alpamayo_core.model.action_space import UnicycleActionSpace
from alpamayo_core.model.config import preset
from alpamayo_core.sim.drive import SyntheticDrive
from alpamayo_core.sim.randomize import HELD_OUT_SEED_START, random_scene
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.tools import metrics
from alpamayo_ros.tools.train_data import make_buffers

OFFSETS_S = 0.1 * np.arange(1, 65)
HISTORY_T_S = 0.1 * np.arange(-15, 1)


def _ade_m(plan_xy: np.ndarray, truth_xy: np.ndarray) -> float:
    return float(np.linalg.norm(plan_xy - truth_xy, axis=1).mean())


def _track(samples) -> metrics.OdomTrack:
    return metrics.OdomTrack(np.array([s.stamp_ns for s in samples]),
                             np.array([s.xyz_m for s in samples]),
                             np.array([s.quat_xyzw for s in samples]))


def _moment(drive, space, track, history, t0_ns: int) -> dict[str, float]:
    xyz = torch.as_tensor(history.xyz_m[None], dtype=torch.float32)  # (1, 16, 3)
    rot = torch.as_tensor(history.rot[None], dtype=torch.float32)
    truth_odom, _ = track.poses_at(t0_ns + np.round(OFFSETS_S * 1e9).astype(np.int64))
    truth = track.pose_at(t0_ns).inverse().apply(truth_odom)[:, :2]  # (64, 2) ego frame
    zero = space.action_to_traj(space.normalize(torch.zeros(1, 64, 2)), xyz, rot).xyz[0]
    future = drive.true_future(t0_ns)
    labels = space.traj_to_action(torch.as_tensor(future.xyz_m[None], dtype=torch.float32),
                                  torch.as_tensor(future.rot[None], dtype=torch.float32),
                                  xyz, rot, forward_only=True)
    back = space.action_to_traj(labels, xyz, rot, forward_only=True).xyz[0]
    design = np.stack([HISTORY_T_S, np.ones_like(HISTORY_T_S)], axis=1)
    velocity = np.linalg.lstsq(design, history.xyz_m[:, :2], rcond=None)[0][0]  # (2,) m/s
    cv = metrics.constant_velocity(track, t0_ns, OFFSETS_S)[0, :, :2]
    return {"cv": _ade_m(cv, truth), "zero": _ade_m(zero[:, :2].numpy(), truth),
            "linear": _ade_m(OFFSETS_S[:, None] * velocity, truth),
            "labels": _ade_m(back[:, :2].numpy(), truth),
            "v0_error": float(space.estimate_t0_speed(xyz, rot))
            - float(drive.ego_state(t0_ns).speed_mps[0])}


def drive_floor(kind: str, seed: int) -> dict[str, list[float]]:
    """Per-moment figures of one held-out drive."""
    cfg = preset("demo")
    space = UnicycleActionSpace(cfg.action_space, "float32")
    drive = SyntheticDrive(random_scene(kind, seed, width=160, height=96))
    odometry = make_buffers(NodeParams.from_values({"model_dir": "unused"}), cfg)[1]
    stamps = drive.stamps
    samples = [drive.odom_sample(i) for i in range(len(stamps.odom_ns))]
    track = _track(samples)
    reference = stamps.camera_ns[NodeParams().reference_camera]
    covered = (reference > stamps.odom_ns[0] + 1.6e9) & (reference < stamps.odom_ns[-1] - 6.45e9)
    rows: dict[str, list[float]] = {}
    fed = 0
    for t0_ns in reference[covered][::5]:  # cameras at 10 Hz: 2 Hz moments
        while fed < len(samples) and samples[fed].stamp_ns <= t0_ns:
            odometry.add_pose(samples[fed].stamp_ns, samples[fed].xyz_m, samples[fed].quat_xyzw)
            fed += 1
        moment = _moment(drive, space, track, odometry.history_at(int(t0_ns)), int(t0_ns))
        for name, value in moment.items():
            rows.setdefault(name, []).append(value)
    return rows


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    for kind in argv or ["straight"]:
        for seed in (HELD_OUT_SEED_START, HELD_OUT_SEED_START + 1):
            r = drive_floor(kind, seed)
            print(f"{kind} seed {seed}, {len(r['cv'])} moments: ADE@6.4 s CV "
                  f"{np.mean(r['cv']):.3f}"
                  f" m, zero actions {np.mean(r['zero']):.3f} m, linear fit "
                  f"{np.mean(r['linear']):.3f} m, labels {np.mean(r['labels']):.3f} m; v0 error "
                  f"{np.mean(r['v0_error']):+.3f} +- {np.std(r['v0_error']):.3f} m/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
