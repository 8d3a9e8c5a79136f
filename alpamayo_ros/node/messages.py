"""Planner output (`alpamayo_core.inference.plan.Plan`) -> ROS messages, and /diagnostics helpers.

Frames: the plan is in the ego frame at t0 (x forward, y left, z up); every output here is in
the odometry frame (default "odom"), mapped with `odom_from_ego`, the ego pose at t0 in odom
(`RigidTransform`, e.g. `EgoHistory.odom_from_ego_t0`). All headers are stamped t0, so the plan
stays correct however late it is published.

Dimension glossary: K trajectory samples, T waypoints per sample.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped
from nav_msgs.msg import Path
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from alpamayo_core.inference.plan import Plan
from alpamayo_ros.node.transforms import RigidTransform, planar_rotations, yaw_of

#: PlanStatus levels (same values as alpamayo/msg/PlanStatus constants).
STATUS_OK, STATUS_DEGRADED, STATUS_INVALID = 0, 1, 2

#: DiagnosticStatus levels as ints (the message field is a byte).
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


def time_msg(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def duration_msg(seconds: float) -> Duration:
    sec, nanosec = divmod(round(float(seconds) * 1e9), 1_000_000_000)
    return Duration(sec=int(sec), nanosec=int(nanosec))


@dataclass(frozen=True)
class OdomTrajectories:
    """All samples of a plan in the odometry frame.

    Attributes:
        xyz_m: (K, T, 3) positions in odom.
        quat_xyzw: (K, T, 4) orientations in odom (heading from the plan's yaw).
        yaw_rad: (K, T) heading about odom +z.
    """

    xyz_m: np.ndarray
    quat_xyzw: np.ndarray
    yaw_rad: np.ndarray


def trajectories_in_odom(plan: Plan, odom_from_ego: RigidTransform) -> OdomTrajectories:
    """Map every sample's poses from the ego frame at t0 to odom."""
    num_k, num_t = plan.yaw_rad.shape
    xyz = odom_from_ego.apply(np.asarray(plan.xyz_m, dtype=np.float64).reshape(-1, 3))
    rotations = odom_from_ego.apply_rotations(planar_rotations(plan.yaw_rad))  # (K*T,)
    return OdomTrajectories(
        xyz_m=xyz.reshape(num_k, num_t, 3),
        quat_xyzw=rotations.as_quat(canonical=True).reshape(num_k, num_t, 4),
        yaw_rad=yaw_of(rotations).reshape(num_k, num_t),
    )


def _pose(xyz: np.ndarray, quat: np.ndarray) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in xyz)
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return pose


def _text(texts: Sequence[str], index: int) -> str:
    return texts[index] if 0 <= index < len(texts) else ""


def _trajectory_msgs(plan: Plan, odom: OdomTrajectories) -> list:
    from alpamayo.msg import Trajectory, TrajectoryPoint

    durations = [duration_msg(s) for s in plan.time_from_start_s]
    out = []
    for k in range(plan.num_samples):
        points = [
            TrajectoryPoint(
                pose=_pose(odom.xyz_m[k, t], odom.quat_xyzw[k, t]),
                yaw=float(odom.yaw_rad[k, t]),
                speed=float(plan.speed_mps[k, t]),
                acceleration=float(plan.accel_mps2[k, t]),
                curvature=float(plan.curvature_1pm[k, t]),
                time_from_start=durations[t],
            )
            for t in range(len(durations))
        ]
        out.append(
            Trajectory(
                points=points,
                reasoning=_text(plan.cot, k),
                meta_action=_text(plan.meta_action, k),
                answer=_text(plan.answer, k),
            )
        )
    return out


def _base_driving_plan(
    t0_ns: int,
    odom_from_ego: RigidTransform | None,
    frame_id: str,
    ego_frame_id: str,
    status: tuple[int, str],
    input_ages_s: Mapping[str, float] | None,
):
    from alpamayo.msg import DrivingPlan, InputAge, PlanStatus

    msg = DrivingPlan()
    msg.header.stamp = time_msg(t0_ns)
    msg.header.frame_id = frame_id
    if odom_from_ego is not None:
        odom_from_ego.to_pose_msg(msg.ego_pose_t0)
    msg.ego_frame_id = ego_frame_id
    msg.status = PlanStatus(level=int(status[0]), reason=str(status[1]))
    msg.input_ages = [
        InputAge(name=name, age_s=float(age)) for name, age in (input_ages_s or {}).items()
    ]
    return msg


def plan_to_driving_plan(
    plan: Plan,
    odom_from_ego: RigidTransform,
    *,
    frame_id: str = "odom",
    ego_frame_id: str = "base_link",
    status: tuple[int, str] = (STATUS_OK, ""),
    input_ages_s: Mapping[str, float] | None = None,
):
    """Full `alpamayo/msg/DrivingPlan` (all K samples in `frame_id`, stamped t0).

    Args:
        status: (level, reason) with level STATUS_OK / STATUS_DEGRADED / STATUS_INVALID.
        input_ages_s: input name -> age in seconds at plan time.
    """
    from alpamayo.msg import StageLatency

    if not 0 <= plan.selected < plan.num_samples:
        raise ValueError(f"plan.selected={plan.selected} outside 0..{plan.num_samples - 1}")
    msg = _base_driving_plan(
        plan.t0_ns, odom_from_ego, frame_id, ego_frame_id, status, input_ages_s
    )
    msg.trajectories = _trajectory_msgs(plan, trajectories_in_odom(plan, odom_from_ego))
    msg.selected_index = int(plan.selected)
    msg.reasoning = _text(plan.cot, plan.selected)
    msg.meta_action = _text(plan.meta_action, plan.selected)
    msg.latencies = [
        StageLatency(stage=name, latency_ms=float(ms)) for name, ms in plan.timings_ms.items()
    ]
    msg.model_id, msg.backend = plan.model_id, plan.backend
    msg.num_generated_tokens = int(plan.num_generated_tokens)
    msg.route_text, msg.guidance_weight = plan.route_text, float(plan.guidance_weight)
    return msg


def invalid_driving_plan(
    t0_ns: int,
    reason: str,
    *,
    frame_id: str = "odom",
    ego_frame_id: str = "base_link",
    odom_from_ego: RigidTransform | None = None,
    input_ages_s: Mapping[str, float] | None = None,
    model_id: str = "",
    backend: str = "",
):
    """A `DrivingPlan` with status INVALID, no trajectories and `reason` (for bad inputs)."""
    msg = _base_driving_plan(
        t0_ns, odom_from_ego, frame_id, ego_frame_id, (STATUS_INVALID, reason), input_ages_s
    )
    msg.model_id, msg.backend = model_id, backend
    return msg


def plan_to_path(
    plan: Plan, odom_from_ego: RigidTransform, *, frame_id: str = "odom", sample: int | None = None
) -> Path:
    """`nav_msgs/Path` of one sample (default: the selected one) in `frame_id`.

    The first pose is the ego pose at t0 (stamp t0); pose i+1 is waypoint i, stamped
    t0 + time_from_start_s[i]. header.stamp = t0.
    """
    k = plan.selected if sample is None else int(sample)
    odom = trajectories_in_odom(plan, odom_from_ego)
    path = Path()
    path.header.stamp = time_msg(plan.t0_ns)
    path.header.frame_id = frame_id
    start = PoseStamped()
    start.header = path.header
    odom_from_ego.to_pose_msg(start.pose)
    poses = [start]
    for t, tfs_s in enumerate(plan.time_from_start_s):
        stamped = PoseStamped(pose=_pose(odom.xyz_m[k, t], odom.quat_xyzw[k, t]))
        stamped.header.stamp = time_msg(plan.t0_ns + round(float(tfs_s) * 1e9))
        stamped.header.frame_id = frame_id
        poses.append(stamped)
    path.poses = poses
    return path


def reasoning_string(plan: Plan) -> String:
    """`std_msgs/String` with the selected sample's reasoning text."""
    return String(data=_text(plan.cot, plan.selected))


@dataclass(frozen=True)
class MarkerStyle:
    """Look of the plan markers (metres, RGBA 0..1)."""

    line_width_m: float = 0.15
    selected_line_width_m: float = 0.4
    color_rgba: tuple[float, float, float, float] = (0.2, 0.5, 1.0, 0.6)
    selected_color_rgba: tuple[float, float, float, float] = (0.1, 0.95, 0.2, 1.0)
    text_height_m: float = 0.6
    text_offset_z_m: float = 3.0
    text_wrap_chars: int = 60

    def __post_init__(self) -> None:
        for name in ("line_width_m", "selected_line_width_m", "text_height_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.text_wrap_chars < 10:
            raise ValueError(f"text_wrap_chars must be >= 10, got {self.text_wrap_chars}")


def _marker(header, ns: str, marker_id: int, marker_type: int) -> Marker:
    marker = Marker(ns=ns, id=marker_id, type=marker_type, action=Marker.ADD)
    marker.header = header
    marker.pose.orientation.w = 1.0
    return marker


def plan_to_markers(
    plan: Plan,
    odom_from_ego: RigidTransform,
    *,
    frame_id: str = "odom",
    ns: str = "alpamayo",
    style: MarkerStyle | None = None,
) -> MarkerArray:
    """`visualization_msgs/MarkerArray`: DELETEALL, one LINE_STRIP per sample (the selected one
    thicker and green, drawn last), and the meta-action + reasoning as TEXT_VIEW_FACING above
    the ego pose at t0. All in `frame_id`, stamped t0."""
    style = style or MarkerStyle()
    odom = trajectories_in_odom(plan, odom_from_ego)
    clear = Marker(action=Marker.DELETEALL)
    clear.header.frame_id = frame_id
    clear.header.stamp = time_msg(plan.t0_ns)
    markers = [clear]
    start = odom_from_ego.translation_m
    order = [k for k in range(plan.num_samples) if k != plan.selected] + [plan.selected]
    for k in order:
        selected = k == plan.selected
        line = _marker(clear.header, f"{ns}/samples", k, Marker.LINE_STRIP)
        line.scale.x = style.selected_line_width_m if selected else style.line_width_m
        rgba = style.selected_color_rgba if selected else style.color_rgba
        line.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
        xyz = np.vstack([start[None, :], odom.xyz_m[k]])  # (T + 1, 3), from the ego at t0
        line.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]
        markers.append(line)
    text = _marker(clear.header, f"{ns}/reasoning", 0, Marker.TEXT_VIEW_FACING)
    text.pose.position.x, text.pose.position.y = float(start[0]), float(start[1])
    text.pose.position.z = float(start[2]) + style.text_offset_z_m
    text.scale.z = style.text_height_m
    text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    route = f"route: {plan.route_text}" if plan.route_text else ""
    lines = [route, _text(plan.meta_action, plan.selected), _text(plan.cot, plan.selected)]
    text.text = (
        "\n".join(textwrap.fill(line, style.text_wrap_chars) for line in lines if line)
        or "(no reasoning)"
    )
    markers.append(text)
    return MarkerArray(markers=markers)


def level_from_thresholds(value: float, warn_above: float, error_above: float) -> int:
    """DIAG_OK / DIAG_WARN / DIAG_ERROR for a "bigger is worse" value (NaN -> DIAG_ERROR)."""
    if not np.isfinite(value) or value > error_above:
        return DIAG_ERROR
    return DIAG_WARN if value > warn_above else DIAG_OK


def _value_text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def diagnostic_status(
    name: str,
    level: int,
    message: str,
    values: Mapping[str, object] | None = None,
    hardware_id: str = "",
) -> DiagnosticStatus:
    """One `DiagnosticStatus`; `values` become key/value strings (floats to 6 digits)."""
    if level not in (DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE):
        raise ValueError(f"level must be one of 0 (OK), 1 (WARN), 2 (ERROR), 3 (STALE): {level}")
    return DiagnosticStatus(
        level=bytes([level]),
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_value_text(v)) for k, v in (values or {}).items()],
    )


def diagnostic_array(stamp_ns: int, statuses: Sequence[DiagnosticStatus]) -> DiagnosticArray:
    """`DiagnosticArray` stamped `stamp_ns` (node clock) holding `statuses`."""
    array = DiagnosticArray(status=list(statuses))
    array.header.stamp = time_msg(stamp_ns)
    return array


def input_diagnostic(
    name: str,
    stats: Mapping[str, object],
    age_s: float | None,
    *,
    warn_age_s: float,
    error_age_s: float,
    prefix: str = "alpamayo: input ",
) -> DiagnosticStatus:
    """Status of one input from its stats dict (e.g. `RateSnapshot.as_dict()`) and its age.

    ERROR when nothing was received (age None) or age > error_age_s, WARN when
    age > warn_age_s, OK otherwise. The stats are attached as key/values.
    """
    values = dict(stats)
    if age_s is None:
        level, message = DIAG_ERROR, "no messages received"
    else:
        values["age_s"] = float(age_s)
        level = level_from_thresholds(float(age_s), warn_age_s, error_age_s)
        message = {DIAG_OK: "ok", DIAG_WARN: "old", DIAG_ERROR: "stale"}[level]
        message = f"{message} (age {age_s:.3f} s)"
    return diagnostic_status(prefix + name, level, message, values, hardware_id=name)
