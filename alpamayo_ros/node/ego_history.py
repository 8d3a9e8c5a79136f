"""Ego-motion history from odometry: resampled at fixed times before t0, in the ego frame at t0.

Odometry (`nav_msgs/Odometry`, pose of the vehicle in `odom`, any rate 10-200 Hz, jittery) goes
into a bounded, time-ordered buffer. `history_at(t0_ns)` interpolates N poses at
t0 - (N-1)*dt ... t0 (position linearly, rotation by scipy Slerp) and expresses them in the ego
frame at t0 (x forward, y left, z up), which is what the model wants. It never uses "the last N
messages", so the history is right whatever the odometry rate.

Dimension glossary: M buffered odometry samples, N history poses (16 at 0.1 s by default).

Bad input is counted and dropped: NaN/inf positions, quaternions whose norm is off 1 by more than
`quat_norm_tolerance`, poses in another frame than `frame_id`, out-of-order or duplicated stamps.
Twist and covariance are not used (the history is built from poses only); a message with a
non-finite twist or covariance is kept but counted (`nonfinite_twist_or_covariance`). A large
backwards jump of the stamps (bag loop, sim-time restart) resets the buffer. The buffer is
sized by time (`buffer_s`), so any rate up to `max_rate_hz` fits.
When no history can be made, `history_at` raises `EgoHistoryUnavailable` with a `reason`.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from alpamayo_ros.node.input_stats import (
    NONFINITE_TWIST_OR_COVARIANCE,
    AddResult,
    InputStats,
    RateSnapshot,
    classify_stamp,
)
from alpamayo_ros.node.transforms import RigidTransform


@dataclass(frozen=True)
class EgoHistoryConfig:
    """Odometry buffer and history settings (all times in seconds).

    Attributes:
        num_poses: N history poses, the last one at t0.
        dt_s: spacing of the history poses.
        buffer_s: odometry kept behind the newest stamp (>= (N-1)*dt_s).
        max_rate_hz: highest odometry rate that fills `buffer_s`; the hard cap on buffered
            messages is buffer_s * max_rate_hz (bounds memory against a flood).
        max_gap_s: largest allowed time between the two odometry samples around a pose time.
        max_extrapolation_s: odometry may end this much before t0 with no warning.
        max_age_s: odometry ending more than this before t0 is stale (no history).
        clock_jump_s: a stamp this much older than the newest resets the buffer.
        frame_id: the frame poses must be in ("" = any); others are dropped and counted.
        quat_norm_tolerance: largest | |q| - 1 | of an accepted orientation quaternion.
    """

    num_poses: int = 16
    dt_s: float = 0.1
    buffer_s: float = 3.0
    max_rate_hz: float = 2000.0
    max_gap_s: float = 0.25
    max_extrapolation_s: float = 0.05
    max_age_s: float = 0.2
    clock_jump_s: float = 1.0
    frame_id: str = ""
    quat_norm_tolerance: float = 0.01

    def __post_init__(self) -> None:
        if self.num_poses < 2:
            raise ValueError(f"num_poses must be >= 2, got {self.num_poses}")
        for name in ("dt_s", "max_gap_s", "clock_jump_s", "max_rate_hz", "quat_norm_tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.buffer_s < (self.num_poses - 1) * self.dt_s:
            raise ValueError(
                f"buffer_s={self.buffer_s} must cover the history "
                f"(num_poses - 1) * dt_s = {(self.num_poses - 1) * self.dt_s}"
            )
        if not 0 <= self.max_extrapolation_s <= self.max_age_s:
            raise ValueError(
                f"need 0 <= max_extrapolation_s ({self.max_extrapolation_s}) "
                f"<= max_age_s ({self.max_age_s})"
            )

    @property
    def max_samples(self) -> int:
        """Hard cap on buffered messages: `buffer_s` at `max_rate_hz`."""
        return int(np.ceil(self.buffer_s * self.max_rate_hz)) + 1


class HistoryFailure(enum.Enum):
    """Why no history could be made."""

    NO_DATA = "no odometry received"
    STALE = "odometry is stale"
    NOT_COVERED = "odometry does not cover the history yet"
    GAP = "gap in odometry"


class EgoHistoryUnavailable(RuntimeError):
    """No ego history for the requested t0; `reason` says why, the message says the details."""

    def __init__(self, reason: HistoryFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class EgoHistory:
    """Ego history for one t0.

    Attributes:
        t0_ns: plan time the history ends at.
        stamps_ns: (N,) int64 pose times, t0 - (N-1)*dt ... t0.
        xyz_m: (N, 3) positions in the ego frame at t0 (last row is the origin).
        rot: (N, 3, 3) rotations in the ego frame at t0 (last is the identity).
        odom_from_ego_t0: ego pose at t0 in the odometry frame (maps ego-frame points to odom).
        extrapolated_s: how far past the newest odometry t0 lies (0 if odometry reaches t0).
        warning: "" or why the history is usable but degraded (e.g. extrapolated too far).
        frame_id: odometry header.frame_id (e.g. "odom"); child_frame_id: e.g. "base_link".
    """

    t0_ns: int
    stamps_ns: np.ndarray
    xyz_m: np.ndarray
    rot: np.ndarray
    odom_from_ego_t0: RigidTransform
    extrapolated_s: float = 0.0
    warning: str = ""
    frame_id: str = ""
    child_frame_id: str = ""

    @property
    def t0_xyz_m(self) -> np.ndarray:
        """(3,) ego position at t0 in the odometry frame."""
        return self.odom_from_ego_t0.translation_m


class EgoHistoryBuffer:
    """Thread-safe odometry buffer: `add_*` from the subscription, `history_at` from planning."""

    def __init__(self, config: EgoHistoryConfig | None = None) -> None:
        self.config = config or EgoHistoryConfig()
        self._lock = threading.Lock()
        self._stamps_ns: deque[int] = deque(maxlen=self.config.max_samples)
        self._poses: deque[tuple[float, ...]] = deque(maxlen=self.config.max_samples)  # xyz+quat
        self._stats = InputStats()
        self.frame_id = ""
        self.child_frame_id = ""
        self.wrong_frame_id = ""  # the last rejected frame, for the status text

    def add_odometry(self, msg: object, arrival_ns: int | None = None) -> AddResult:
        """Buffer a `nav_msgs/Odometry` (pose.pose in header.frame_id; twist and covariance
        unused, non-finite ones counted)."""
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        frame = msg.header.frame_id
        if self.config.frame_id and frame != self.config.frame_id:
            with self._lock:
                self.wrong_frame_id = frame
                self._stats.count_result(AddResult.DROPPED_WRONG_FRAME)
            return AddResult.DROPPED_WRONG_FRAME
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        result = self.add_pose(stamp_ns, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), arrival_ns)
        if result.kept:
            self.frame_id, self.child_frame_id = frame, msg.child_frame_id
            if not _finite_twist_and_covariance(msg):
                with self._lock:
                    self._stats.count(NONFINITE_TWIST_OR_COVARIANCE)
        return result

    def add_pose(
        self,
        stamp_ns: int,
        xyz_m: tuple[float, float, float] | np.ndarray,
        quat_xyzw: tuple[float, float, float, float] | np.ndarray,
        arrival_ns: int | None = None,
    ) -> AddResult:
        """Buffer one pose (position in metres, quaternion x, y, z, w) at `stamp_ns`."""
        pose = np.concatenate([np.asarray(xyz_m, float), np.asarray(quat_xyzw, float)])
        valid = (
            pose.shape == (7,) and np.all(np.isfinite(pose))
            and abs(np.linalg.norm(pose[3:]) - 1.0) <= self.config.quat_norm_tolerance
        )
        with self._lock:
            if not valid:
                result = AddResult.DROPPED_INVALID
            else:
                newest = self._stamps_ns[-1] if self._stamps_ns else None
                result = classify_stamp(int(stamp_ns), newest, self.config.clock_jump_s)
            self._stats.count_result(result)
            if not result.kept:
                return result
            if result is AddResult.RESET:
                self._stamps_ns.clear()
                self._poses.clear()
            self._stamps_ns.append(int(stamp_ns))
            self._poses.append(tuple(pose))
            self._trim()
            self._stats.record_accepted(stamp_ns, arrival_ns)
            return result

    def _trim(self) -> None:
        oldest_kept = self._stamps_ns[-1] - int(self.config.buffer_s * 1e9)
        while self._stamps_ns and self._stamps_ns[0] < oldest_kept:
            self._stamps_ns.popleft()
            self._poses.popleft()

    def clear(self) -> None:
        with self._lock:
            self._stamps_ns.clear()
            self._poses.clear()

    def newest_stamp_ns(self) -> int | None:
        with self._lock:
            return self._stamps_ns[-1] if self._stamps_ns else None

    def stats(self, now_arrival_ns: int | None = None) -> RateSnapshot:
        with self._lock:
            return self._stats.snapshot(now_arrival_ns)

    def history_at(self, t0_ns: int) -> EgoHistory:
        """N poses at t0 - (N-1)*dt ... t0 in the ego frame at t0; raises EgoHistoryUnavailable."""
        with self._lock:
            stamps_ns = np.array(self._stamps_ns, dtype=np.int64)  # (M,)
            poses = np.array(self._poses, dtype=np.float64).reshape(-1, 7)  # (M, 7)
        cfg = self.config
        if stamps_ns.size == 0:
            raise EgoHistoryUnavailable(HistoryFailure.NO_DATA, "the odometry buffer is empty")
        rel_s = (stamps_ns - int(t0_ns)) * 1e-9  # (M,) sample times relative to t0
        targets_s = cfg.dt_s * (np.arange(cfg.num_poses) - (cfg.num_poses - 1))  # (N,) <= 0
        extrapolated_s = _check_coverage(rel_s, targets_s, cfg)
        xyz_odom, rot_odom = _resample(rel_s, poses, targets_s)
        odom_from_ego = RigidTransform(xyz_odom[-1], rot_odom[-1])
        ego_from_odom = odom_from_ego.inverse()
        warning = ""
        if extrapolated_s > cfg.max_extrapolation_s:
            warning = (
                f"odometry extrapolated {extrapolated_s:.3f} s to t0 "
                f"(> max_extrapolation_s {cfg.max_extrapolation_s})"
            )
        return EgoHistory(
            t0_ns=int(t0_ns),
            stamps_ns=int(t0_ns) + np.round(targets_s * 1e9).astype(np.int64),
            xyz_m=ego_from_odom.apply(xyz_odom),
            rot=ego_from_odom.apply_rotations(rot_odom).as_matrix(),
            odom_from_ego_t0=odom_from_ego,
            extrapolated_s=extrapolated_s,
            warning=warning,
            frame_id=self.frame_id,
            child_frame_id=self.child_frame_id,
        )


def _finite_twist_and_covariance(msg: object) -> bool:
    """True when the Odometry's twist and both covariances are finite."""
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    values = np.concatenate([
        np.asarray([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=float),
        np.asarray(msg.pose.covariance, dtype=float), np.asarray(msg.twist.covariance, float)])
    return bool(np.all(np.isfinite(values)))


def _check_coverage(rel_s: np.ndarray, targets_s: np.ndarray, cfg: EgoHistoryConfig) -> float:
    """Raise unless the samples (M,) cover the targets (N,); returns the extrapolation in s."""
    newest_age_s = -float(rel_s[-1])
    if newest_age_s > cfg.max_age_s:
        raise EgoHistoryUnavailable(
            HistoryFailure.STALE,
            f"newest odometry is {newest_age_s:.3f} s older than t0 (max_age_s {cfg.max_age_s})",
        )
    if rel_s[0] > targets_s[0] + 1e-9:
        raise EgoHistoryUnavailable(
            HistoryFailure.NOT_COVERED,
            f"odometry starts {-rel_s[0]:.3f} s before t0, need {-targets_s[0]:.3f} s "
            f"(start-up or after a reset)",
        )
    inside = targets_s[targets_s <= rel_s[-1]]
    after = np.searchsorted(rel_s, inside, side="left")  # first sample at/after each target
    after = np.clip(after, 1, rel_s.size - 1)
    gaps_s = rel_s[after] - rel_s[after - 1]  # spacing of the samples around each target
    worst = int(np.argmax(gaps_s)) if gaps_s.size else 0
    if gaps_s.size and gaps_s[worst] > cfg.max_gap_s:
        raise EgoHistoryUnavailable(
            HistoryFailure.GAP,
            f"{gaps_s[worst]:.3f} s between odometry samples around t0{inside[worst]:+.2f} s "
            f"(max_gap_s {cfg.max_gap_s})",
        )
    return max(0.0, newest_age_s)


def _resample(
    rel_s: np.ndarray, poses: np.ndarray, targets_s: np.ndarray
) -> tuple[np.ndarray, Rotation]:
    """Positions (N, 3) and rotations (N,) at the target times, in the odometry frame.

    Linear/Slerp inside the samples; past the newest sample, constant-velocity extrapolation
    from the last two samples (linear position, constant angular rate).
    """
    xyz = poses[:, :3]  # (M, 3)
    rotations = Rotation.from_quat(poses[:, 3:])  # (M,)
    clipped = np.clip(targets_s, rel_s[0], rel_s[-1])
    xyz_out = np.stack([np.interp(clipped, rel_s, xyz[:, k]) for k in range(3)], axis=-1)
    if rel_s.size == 1:
        return xyz_out, Rotation.concatenate([rotations] * targets_s.size)
    rot_out = Slerp(rel_s, rotations)(clipped)
    beyond = targets_s > rel_s[-1]
    if np.any(beyond):
        frac = (targets_s[beyond] - rel_s[-1]) / (rel_s[-1] - rel_s[-2])  # (B,)
        xyz_out[beyond] = xyz[-1] + frac[:, None] * (xyz[-1] - xyz[-2])
        step = (rotations[-2].inv() * rotations[-1]).as_rotvec()  # body-frame rotation per step
        extrapolated = rotations[-1] * Rotation.from_rotvec(frac[:, None] * step)
        quats = rot_out.as_quat()
        quats[beyond] = extrapolated.as_quat()
        rot_out = Rotation.from_quat(quats)
    return xyz_out, rot_out
