"""Buffered camera frames + odometry -> one `PlanInputs` and its status (no ROS node here).

The node's planning thread calls `assemble` once per tick. It decides the plan time t0 (the
newest reference-camera stamp every camera has delivered a frame for), picks and decodes the
frames nearest t0 + offsets, resamples the ego history at t0, and returns the planner inputs
with a status:

* OK: every input is fresh, every frame within `tolerance_s` of its target time.
* DEGRADED (a plan is made, consumers may use it with care): a camera frame was farther than
  `tolerance_s` (but within twice that) from its target and the nearest frame was substituted,
  the odometry had to be extrapolated to t0 beyond the history buffer's limit, or a camera's
  aspect ratio is more than `MAX_ASPECT_ERROR` off the reference camera's (it is stretched).
* INVALID (`InputsUnavailable` is raised; no plan is made): no reference frame, reference frame
  older than `max_image_age_s` on the node clock, a camera or the odometry stamped more than
  `max_future_stamp_s` ahead of the node clock, a camera missing/stale/not covered, an
  undecodable frame (bad encoding, truncated JPEG, HDR), no usable odometry (missing, stale,
  gaps; NaN and non-unit-quaternion poses and poses in another frame are dropped on arrival).

Cameras may have different resolutions: a frame whose size differs from the reference camera's
is resized to it on its own (the model then resizes all of them to its input size).
The rest of the status rules (dropped messages, model failures) are in `plan_step`.

Dimension glossary: C cameras, F frames per camera, N history poses, H, W image size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from alpamayo_core.inference.plan import PlanInputs
from alpamayo_ros.node.camera_buffer import (
    CameraBuffer,
    FrameSelection,
    FrameSelectionError,
    SelectionFailure,
)
from alpamayo_ros.node.ego_history import EgoHistory, EgoHistoryBuffer, EgoHistoryUnavailable
from alpamayo_ros.node.messages import STATUS_DEGRADED, STATUS_OK

#: Camera failures that a wider tolerance can fix (a frame exists, just farther than wanted).
_SUBSTITUTABLE = frozenset({SelectionFailure.GAP})
ODOMETRY = "odometry"
#: Largest relative difference of a camera's aspect ratio (W/H) from the reference camera's
#: that is resized silently; beyond it the plan is DEGRADED (the image is stretched).
MAX_ASPECT_ERROR = 0.1


class InputsUnavailable(RuntimeError):
    """No valid inputs for a plan. `reason` is for PlanStatus; `t0_ns` is None before frames."""

    def __init__(self, reason: str, t0_ns: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.t0_ns = t0_ns


@dataclass(frozen=True)
class AssembledInputs:
    """Inputs for one plan and how good they are.

    Attributes:
        inputs: the planner request (images (C, F, H, W, 3), history (N, 3) / (N, 3, 3), t0).
        history: the ego history (also holds the ego pose at t0 in odom).
        selection: the chosen frames (stamps (C, F), offset errors).
        level: STATUS_OK or STATUS_DEGRADED.
        reason: "" when OK, else why DEGRADED.
        input_ages_s: input name -> now minus the newest stamp used (cameras: the frame at t0;
            odometry: the newest message buffered when planning started).
        timings_ms: "select_inputs" (frame choice + decoding), "history".
    """

    inputs: PlanInputs
    history: EgoHistory
    selection: FrameSelection
    level: int
    reason: str
    input_ages_s: dict[str, float] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


def assemble(
    cameras: CameraBuffer,
    odometry: EgoHistoryBuffer,
    *,
    now_ns: int,
    tolerance_s: float,
    max_image_age_s: float,
    odom_frame: str,
    max_future_stamp_s: float = 0.25,
) -> AssembledInputs:
    """Build the planner inputs for t0 = `CameraBuffer.plan_t0_ns` (the newest reference-camera
    stamp that every camera has caught up with).

    Args:
        now_ns: node clock now (sim time with use_sim_time), for the staleness check.
        tolerance_s: largest |frame stamp - target time| for an OK plan.
        max_image_age_s: largest now - t0.
        odom_frame: the frame odometry poses must be in.
        max_future_stamp_s: largest time a camera or odometry stamp may be ahead of now.
    Raises:
        InputsUnavailable: when no valid plan can be made (reason names the input).
    """
    reference = cameras.config.reference_camera
    t0_ns = cameras.plan_t0_ns(tolerance_s)
    if t0_ns is None:
        raise InputsUnavailable(f"camera {reference}: no frames received yet", None)
    age_s = (now_ns - t0_ns) * 1e-9
    if age_s > max_image_age_s:
        raise InputsUnavailable(
            f"camera {reference}: stale (newest frame {age_s:.3f} s old, max_image_age_s "
            f"{max_image_age_s})", t0_ns)
    odom_newest_ns = odometry.newest_stamp_ns()  # as of now_ns, before the slow steps
    _check_not_ahead(cameras, odom_newest_ns, now_ns, max_future_stamp_s, t0_ns)
    start = time.perf_counter()
    selection, degraded = _select_frames(cameras, t0_ns, tolerance_s)
    images, stretched = _stack(selection, reference)
    degraded += stretched
    select_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    history = _history(odometry, t0_ns, odom_frame)
    history_ms = (time.perf_counter() - start) * 1e3
    reasons = degraded + ([f"{ODOMETRY}: {history.warning}"] if history.warning else [])
    inputs = PlanInputs(
        images_rgb=images,
        history_xyz_m=history.xyz_m,
        history_rot=history.rot,
        t0_ns=t0_ns,
        frame_keys=tuple((camera, int(stamp)) for camera, stamps in
                         zip(selection.cameras, selection.stamps_ns, strict=True)
                         for stamp in stamps),  # the planner encodes each frame once
    )
    ages_s = {name: (now_ns - int(stamps[-1])) * 1e-9
              for name, stamps in zip(selection.cameras, selection.stamps_ns, strict=True)}
    ages_s[ODOMETRY] = (now_ns - (odom_newest_ns or t0_ns)) * 1e-9
    return AssembledInputs(
        inputs=inputs, history=history, selection=selection,
        level=STATUS_DEGRADED if reasons else STATUS_OK, reason="; ".join(reasons),
        input_ages_s=ages_s, timings_ms={"select_inputs": select_ms, "history": history_ms})


def _select_frames(
    cameras: CameraBuffer, t0_ns: int, tolerance_s: float
) -> tuple[FrameSelection, list[str]]:
    """Frames within tolerance; else (only for GAP failures) within 2x tolerance, DEGRADED."""
    try:
        return cameras.select(t0_ns, tolerance_s=tolerance_s), []
    except FrameSelectionError as err:
        if not all(f.reason in _SUBSTITUTABLE for f in err.failures):
            raise InputsUnavailable(str(err), t0_ns) from err
        first = err
    try:
        selection = cameras.select(t0_ns, tolerance_s=2.0 * tolerance_s)
    except FrameSelectionError as err:
        raise InputsUnavailable(str(err), t0_ns) from err
    return selection, [f"{f}; nearest frame substituted" for f in first.failures]


def _check_not_ahead(cameras: CameraBuffer, odom_newest_ns: int | None, now_ns: int,
                     max_future_stamp_s: float, t0_ns: int) -> None:
    """InputsUnavailable naming the first input stamped more than the limit ahead of now."""
    newest = {f"camera {name}": stamp for name, stamp in cameras.newest_stamps_ns().items()}
    newest[ODOMETRY] = odom_newest_ns
    for name, stamp in newest.items():
        if stamp is not None and (stamp - now_ns) * 1e-9 > max_future_stamp_s:
            raise InputsUnavailable(
                f"{name}: stamped {(stamp - now_ns) * 1e-9:.3f} s ahead of the node clock "
                f"(max_future_stamp_s {max_future_stamp_s}); check the sensor clock and "
                f"use_sim_time", t0_ns)


def _stack(selection: FrameSelection, reference: str) -> tuple[np.ndarray, list[str]]:
    """(C, F, H, W, 3) uint8 at the reference camera's size, and a note per camera whose
    aspect ratio is more than MAX_ASPECT_ERROR off the reference's.

    A frame of another size is resized (cv2 INTER_AREA) on its own. Copies into one
    preallocated array (np.stack of nested stacks copies twice: ~4x slower for 16 full-HD
    frames).
    """
    ref_index = selection.cameras.index(reference)
    want_h, want_w = selection.images_rgb[ref_index][-1].shape[:2]
    images = selection.images_rgb
    out = np.empty((len(images), len(images[0]), want_h, want_w, 3), dtype=np.uint8)
    notes: list[str] = []
    for c, (camera, frames) in enumerate(zip(selection.cameras, images, strict=True)):
        for f, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if (h, w) == (want_h, want_w):
                out[c, f] = frame
                continue
            out[c, f] = cv2.resize(frame, (want_w, want_h), interpolation=cv2.INTER_AREA)
            error = abs((w / h) / (want_w / want_h) - 1.0)
            if f == len(frames) - 1 and error > MAX_ASPECT_ERROR:
                notes.append(f"camera {camera}: aspect ratio {w}x{h} is {error:.0%} off "
                             f"reference camera {reference} ({want_w}x{want_h}); stretched")
    return out, notes


def _history(odometry: EgoHistoryBuffer, t0_ns: int, odom_frame: str) -> EgoHistory:
    try:
        history = odometry.history_at(t0_ns)
    except EgoHistoryUnavailable as err:
        raise InputsUnavailable(f"{ODOMETRY}: {err}", t0_ns) from err
    if history.frame_id != odom_frame:
        raise InputsUnavailable(
            f"{ODOMETRY}: poses are in frame {history.frame_id!r}, expected odom_frame "
            f"{odom_frame!r}", t0_ns)
    return history


def input_ages_s(
    cameras: CameraBuffer, odometry: EgoHistoryBuffer, now_ns: int
) -> dict[str, float]:
    """Age (s, node clock) of the newest message of each input that has one."""
    newest = dict(cameras.newest_stamps_ns())
    newest[ODOMETRY] = odometry.newest_stamp_ns()
    return {name: (now_ns - stamp) * 1e-9 for name, stamp in newest.items() if stamp is not None}
