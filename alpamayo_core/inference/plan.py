"""Planner inputs and outputs: plain numpy containers shared by the core, the ROS node and tools.

Dimension glossary:
    C  cameras (model order, e.g. cross_left, front_wide, cross_right, front_tele)
    F  frames per camera (oldest first; t0-0.3, -0.2, -0.1, 0 s by default)
    H, W  image height and width in pixels
    N  history poses (16 at 10 Hz: t0-1.5 s ... t0)
    K  trajectory samples (num_traj_sets * num_traj_samples)
    T  future waypoints (64 at 0.1 s: t0+0.1 ... t0+6.4 s)

Frames: every pose is in the ego frame at t0 (x forward, y left, z up; metres), so the last history
pose is the origin with identity rotation.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PlanInputs:
    """One planning request.

    Attributes:
        images_rgb: (C, F, H, W, 3) uint8 RGB, camera-major, oldest frame first.
        history_xyz_m: (N, 3) float ego positions in the ego frame at t0 (last row = 0).
        history_rot: (N, 3, 3) float ego rotations in the ego frame at t0 (last = identity).
        t0_ns: time the plan is for (newest reference-camera stamp), in nanoseconds.
        frame_keys: optional C*F identities of the frames in the images' order (camera-major,
            oldest first), e.g. (camera, stamp_ns): a planner encodes a frame it has seen in a
            recent plan only once (its frame cache).
        camera_ids: Alpamayo 1.5: the id (0-6, ascending) of each of the C cameras; None = the
            checkpoint's camera list. R1 takes only its own four cameras.
        route_text: Alpamayo 1.5: navigation instruction, e.g. "Turn left in 50m"; None = none.
    """

    images_rgb: np.ndarray
    history_xyz_m: np.ndarray
    history_rot: np.ndarray
    t0_ns: int = 0
    frame_keys: tuple[Hashable, ...] | None = None
    camera_ids: tuple[int, ...] | None = None
    route_text: str | None = None


@dataclass(frozen=True)
class Plan:
    """The planner's answer for one `PlanInputs`.

    Attributes:
        t0_ns: time the plan is for; waypoint k is at t0 + time_from_start_s[k].
        xyz_m: (K, T, 3) float64 positions in the ego frame at t0.
        yaw_rad: (K, T) heading in the ego frame at t0.
        speed_mps: (K, T) speed at each waypoint.
        accel_mps2: (K, T) acceleration applied over the step ending at each waypoint.
        curvature_1pm: (K, T) curvature applied over the step ending at each waypoint.
        time_from_start_s: (T,) seconds after t0 of each waypoint.
        selected: index into K of the sample a consumer should follow.
        cot: K chain-of-causation texts (one per sample, "" if none).
        meta_action: K meta-action texts ("" if the model wrote none).
        answer: K answer texts ("" if the model wrote none).
        timings_ms: per-stage wall time in milliseconds (preprocess, prefill, decode, flow,
            total, ...).
        num_generated_tokens: tokens sampled in phase 1 (per row, max over samples).
        num_truncated_reasoning: samples whose reasoning reached max_new_tokens without
            `<|traj_future_start|>` (their trajectory conditions on a truncated reasoning).
        num_ended_without_future_start: samples that closed their turn (`<|im_end|>`) without
            `<|traj_future_start|>` (their trajectory conditions on a turn the model ended).
        model_id: short id of the loaded model (name + weights hash).
        backend: name of the expert backend that produced the trajectories.
        route_text: the navigation text the prompt carried ("" if none).
        guidance_weight: the classifier-free guidance weight used (0 = off).
    """

    t0_ns: int
    xyz_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray
    accel_mps2: np.ndarray
    curvature_1pm: np.ndarray
    time_from_start_s: np.ndarray
    selected: int
    cot: tuple[str, ...]
    meta_action: tuple[str, ...]
    answer: tuple[str, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    num_generated_tokens: int = 0
    num_truncated_reasoning: int = 0
    num_ended_without_future_start: int = 0
    model_id: str = ""
    backend: str = ""
    route_text: str = ""
    guidance_weight: float = 0.0

    @property
    def num_samples(self) -> int:
        return int(self.xyz_m.shape[0])
