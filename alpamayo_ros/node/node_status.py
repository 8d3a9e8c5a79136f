"""The node's running health record and what it publishes about it (/diagnostics, ~/history).

`NodeStatus` is updated by the planning thread (each plan's level, reason, latency) and the
executor (skipped ticks) under a lock. `diagnostics_statuses` turns it, the input buffers'
receive statistics (rate by header stamp and by arrival, drops, clock resets, decode failures,
age) and the model identity into `DiagnosticStatus` entries. The planner's entry is ERROR when
no plan finished for `plan_watchdog_periods` planning periods (wall clock: a dead worker or a
stopped node clock cannot hide) or when the node clock does not advance (`ClockWatch`).
`ReasonLog` decides when a plan status is worth a log line; `history_path` shows the ego history
the model was given, in the odometry frame.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from scipy.spatial.transform import Rotation

from alpamayo_ros.node import messages
from alpamayo_ros.node.camera_buffer import CameraBuffer
from alpamayo_ros.node.ego_history import EgoHistory, EgoHistoryBuffer
from alpamayo_ros.node.params import NodeParams
from alpamayo_ros.node.plan_assembly import ODOMETRY

if TYPE_CHECKING:
    from alpamayo_core.backends.selection import BackendSelection

_LEVEL_NAMES = {messages.STATUS_OK: "ok", messages.STATUS_DEGRADED: "degraded",
                messages.STATUS_INVALID: "invalid"}
_DIAG_OF_PLAN = {messages.STATUS_OK: messages.DIAG_OK,
                 messages.STATUS_DEGRADED: messages.DIAG_WARN,
                 messages.STATUS_INVALID: messages.DIAG_ERROR}


class NodeStatus:
    """Counters and the last plan outcome (thread-safe)."""

    def __init__(self, latency_window: int = 50) -> None:
        self._lock = threading.Lock()
        self.active = False
        self.skipped_ticks = 0
        self.counts = dict.fromkeys(_LEVEL_NAMES, 0)
        self.last_level: int | None = None
        self.last_reason = ""
        self.last_t0_ns: int | None = None
        self.plan_period_s = 0.0
        self.last_finish_monotonic_s = 0.0  # last plan finished, or activation
        self._latencies_ms: deque[float] = deque(maxlen=latency_window)

    def mark_active(self, active: bool, plan_rate_hz: float = 0.0) -> None:
        """Activation starts the watchdog clock; `plan_rate_hz` sets the planning period."""
        with self._lock:
            self.active = active
            if active:
                self.plan_period_s = 1.0 / plan_rate_hz
                self.last_finish_monotonic_s = time.monotonic()

    def record(self, level: int, reason: str, latency_ms: float | None, t0_ns: int) -> None:
        """One finished planning attempt (latency None when no plan was made)."""
        with self._lock:
            self.counts[level] += 1
            self.last_level, self.last_reason, self.last_t0_ns = level, reason, t0_ns
            self.last_finish_monotonic_s = time.monotonic()
            if latency_ms is not None:
                self._latencies_ms.append(latency_ms)

    def since_last_plan_s(self) -> float:
        """Wall-clock seconds since the last plan finished (or since activation)."""
        with self._lock:
            return time.monotonic() - self.last_finish_monotonic_s

    def values(self) -> dict[str, object]:
        """Key/values for diagnostics."""
        with self._lock:
            lat = np.array(self._latencies_ms) if self._latencies_ms else np.zeros(1)
            out: dict[str, object] = {f"plans_{name}": self.counts[level]
                                      for level, name in _LEVEL_NAMES.items()}
            out.update({
                "skipped_ticks": self.skipped_ticks,
                "latency_ms_last": float(lat[-1]),
                "latency_ms_mean": float(lat.mean()),
                "latency_ms_max": float(lat.max()),
            })
            return out


class ReasonLog:
    """Log a plan status when the KIND of its reason changes (the reason with its numbers
    blanked: timings change every plan), at most once per `min_interval_s` (a suppressed
    change is logged by a later plan once the interval has passed)."""

    _NUMBER = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?")

    def __init__(self, min_interval_s: float = 2.0) -> None:
        self.min_interval_s = min_interval_s
        self._last_kind: str | None = None
        self._last_log_s = -float("inf")

    @classmethod
    def kind(cls, reason: str) -> str:
        return cls._NUMBER.sub("#", reason)

    def should_log(self, reason: str, now_s: float | None = None) -> bool:
        """Call for every plan ("" when OK: a later fault of the same kind is logged again)."""
        if not reason:
            self._last_kind = ""
            return False
        now_s = time.monotonic() if now_s is None else now_s
        kind = self.kind(reason)
        if kind == self._last_kind or now_s - self._last_log_s < self.min_interval_s:
            return False
        self._last_kind, self._last_log_s = kind, now_s
        return True


class ClockWatch:
    """Is the node clock advancing? Compares each reading with the previous one (called from
    the wall-clock diagnostics timer; with use_sim_time and no /clock the clock stands)."""

    def __init__(self) -> None:
        self._last_ns: int | None = None

    def advancing(self, now_ns: int) -> bool:
        previous, self._last_ns = self._last_ns, now_ns
        return now_ns > 0 and (previous is None or now_ns > previous)


def _planner_level(status: NodeStatus, params: NodeParams,
                   clock_advancing: bool) -> tuple[int, str]:
    if not status.active:
        return messages.DIAG_OK, "inactive"
    if not clock_advancing:
        return messages.DIAG_ERROR, ("node clock is not advancing (use_sim_time is on and "
                                     "/clock is not published?): no plans")
    since_s = status.since_last_plan_s()
    limit_s = params.plan_watchdog_periods / params.plan_rate_hz
    if since_s > limit_s:
        return messages.DIAG_ERROR, (f"no plan finished for {since_s:.1f} s (> "
                                     f"plan_watchdog_periods {params.plan_watchdog_periods} "
                                     f"planning periods)")
    if status.last_level is None:
        return messages.DIAG_WARN, "no plan yet"
    return _DIAG_OF_PLAN[status.last_level], _LEVEL_NAMES[status.last_level] + (
        f": {status.last_reason}" if status.last_reason else "")


def _planner_status(status: NodeStatus, params: NodeParams, now_ns: int, model_id: str,
                    backend: str, decode: str, clock_advancing: bool):
    values = {"state": "active" if status.active else "inactive", "model_id": model_id,
              "backend": backend, "decode": decode, "device": params.device,
              "plan_rate_hz": params.plan_rate_hz,
              "clock_advancing": clock_advancing,
              "since_last_plan_s": round(status.since_last_plan_s(), 3), **status.values()}
    if status.last_t0_ns is not None:
        values["last_t0_age_s"] = (now_ns - status.last_t0_ns) * 1e-9
    level, message = _planner_level(status, params, clock_advancing)
    return messages.diagnostic_status("alpamayo: planner", level, message, values,
                                      hardware_id=model_id)


def backend_status(backend: str, selection: BackendSelection | None):
    """How the expert backend was chosen: WARN when a preferred backend was rejected (the
    message says which and why), with the chosen one's parity figures against eager torch."""
    if selection is None:
        return messages.diagnostic_status("alpamayo: expert backend", messages.DIAG_OK,
                                          backend, {"backend": backend})
    values = selection.diagnostic_values()
    if selection.fell_back:
        rejected = "; ".join(t.summary() for t in selection.trials[:-1])
        return messages.diagnostic_status("alpamayo: expert backend", messages.DIAG_WARN,
                                          f"fell back to {backend}: {rejected}", values)
    return messages.diagnostic_status("alpamayo: expert backend", messages.DIAG_OK,
                                      selection.chosen.summary(), values)


def diagnostics_statuses(
    status: NodeStatus,
    params: NodeParams,
    cameras: CameraBuffer,
    odometry: EgoHistoryBuffer,
    now_ns: int,
    *,
    model_id: str,
    backend: str,
    camera_reliability: dict[str, str],
    backend_selection: BackendSelection | None = None,
    clock_advancing: bool = True,
    decode: str = "eager",
) -> list:
    """Planner status (with `decode`, how the reasoning decode loop runs), the expert
    backend's, one status per camera (ERROR while its newest decode attempt failed), one for
    odometry."""
    out = [_planner_status(status, params, now_ns, model_id, backend, decode,
                           clock_advancing),
           backend_status(backend, backend_selection)]
    newest = cameras.newest_stamps_ns()
    decode_errors = cameras.decode_errors()
    for index, (name, snapshot) in enumerate(cameras.stats().items()):
        values = {"topic": params.subscribed_topic(index),
                  "reliability": camera_reliability.get(name, ""), **snapshot.as_dict()}
        age_s = None if newest[name] is None else (now_ns - newest[name]) * 1e-9
        diag = messages.input_diagnostic(
            name, values, age_s, warn_age_s=params.max_image_age_s / 2.0,
            error_age_s=params.max_image_age_s)
        if name in decode_errors:
            diag.level = bytes([messages.DIAG_ERROR])
            diag.message = f"frames cannot be decoded: {decode_errors[name]}"
        out.append(diag)
    odom_newest = odometry.newest_stamp_ns()
    out.append(messages.input_diagnostic(
        ODOMETRY, {"topic": params.odom_topic, **odometry.stats().as_dict()},
        None if odom_newest is None else (now_ns - odom_newest) * 1e-9,
        warn_age_s=params.history_max_age_s / 2.0, error_age_s=params.history_max_age_s))
    return out


def history_path(history: EgoHistory, frame_id: str) -> Path:
    """`nav_msgs/Path` of the N history poses in `frame_id`, each stamped with its time."""
    odom_from_ego = history.odom_from_ego_t0
    xyz = odom_from_ego.apply(history.xyz_m)  # (N, 3)
    quats = odom_from_ego.apply_rotations(Rotation.from_matrix(history.rot)).as_quat()  # (N, 4)
    path = Path()
    path.header.stamp = messages.time_msg(history.t0_ns)
    path.header.frame_id = frame_id
    for stamp_ns, p, q in zip(history.stamps_ns, xyz, quats, strict=True):
        pose = PoseStamped()
        pose.header.stamp = messages.time_msg(int(stamp_ns))
        pose.header.frame_id = frame_id
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = map(float, p)
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = map(float, q)
        path.poses.append(pose)
    return path
