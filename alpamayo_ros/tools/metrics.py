"""Open-loop trajectory metrics against recorded odometry: minADE / FDE at fixed horizons.

The ground truth of a plan made at t0 is the recorded odometry interpolated at the plan's
waypoint times t0 + time_from_start (position linear, rotation Slerp) and expressed in the ego
frame at t0 (x forward, y left, z up), the frame the planner predicts in. Errors are planar
(x, y) Euclidean distances in metres.

At a horizon h (default 0.5, 1, 3, 5 s):
    ADE_h   mean displacement over the waypoints with time_from_start <= h
    FDE_h   displacement at the waypoint at h
    min*    the best of the K samples (minADE picks the sample with the smallest ADE_h)
A plan is scored at h only when the odometry covers t0 ... t0 + h without a gap (e.g. near the
end of a bag there is no 5 s future): otherwise it is excluded at that horizon and counted.

The constant-velocity baseline extrapolates the ego velocity at t0 (from the odometry at t0 - dt
and t0, so it uses only the past) along a straight line and is scored the same way (K = 1).

Dimension glossary: M odometry samples, K trajectory samples, T waypoints.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from alpamayo_ros.node.transforms import RigidTransform

HORIZONS_S: tuple[float, ...] = (0.5, 1.0, 3.0, 5.0)
METHODS = ("model", "constant_velocity")
_TIME_EPS_S = 1e-6


@dataclass(frozen=True)
class OdomTrack:
    """A recorded odometry trajectory (the ground truth).

    Attributes:
        stamps_ns: (M,) int64 strictly increasing stamps.
        xyz_m: (M, 3) positions in the odometry frame.
        quat_xyzw: (M, 4) orientations in the odometry frame.
        max_gap_s: largest spacing of two samples that a ground-truth pose is interpolated across.
    """

    stamps_ns: np.ndarray
    xyz_m: np.ndarray
    quat_xyzw: np.ndarray
    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps_ns, dtype=np.int64)
        m = stamps.shape[0]
        if stamps.ndim != 1 or m < 2 or np.any(np.diff(stamps) <= 0):
            raise ValueError("OdomTrack.stamps_ns: need >= 2 strictly increasing stamps")
        for name, width in (("xyz_m", 3), ("quat_xyzw", 4)):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (m, width) or not np.all(np.isfinite(value)):
                raise ValueError(f"OdomTrack.{name}: expected finite ({m}, {width}), "
                                 f"got {value.shape}")
            object.__setattr__(self, name, value)
        if not self.max_gap_s > 0:
            raise ValueError(f"OdomTrack.max_gap_s: must be > 0, got {self.max_gap_s}")
        object.__setattr__(self, "stamps_ns", stamps)

    @classmethod
    def from_odometry(cls, msgs: Iterable[object], max_gap_s: float = 0.5) -> OdomTrack:
        """From `nav_msgs/Odometry` messages; drops non-finite, duplicated and late stamps."""
        rows: dict[int, list[float]] = {}
        for msg in msgs:
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            row = [p.x, p.y, p.z, q.x, q.y, q.z, q.w]
            if np.all(np.isfinite(row)) and np.linalg.norm(row[3:]) > 1e-6:
                rows.setdefault(stamp, row)
        stamps = np.array(sorted(rows), dtype=np.int64)
        data = np.array([rows[s] for s in stamps], dtype=np.float64).reshape(-1, 7)
        return cls(stamps, data[:, :3], data[:, 3:], max_gap_s)

    def covered(self, t_ns: np.ndarray) -> np.ndarray:
        """(N,) bool: inside the track and no sample gap > max_gap_s around the time."""
        t_ns = np.asarray(t_ns, dtype=np.int64)
        inside = (t_ns >= self.stamps_ns[0]) & (t_ns <= self.stamps_ns[-1])
        after = np.clip(np.searchsorted(self.stamps_ns, t_ns, side="left"), 1,
                        len(self.stamps_ns) - 1)
        gaps_s = (self.stamps_ns[after] - self.stamps_ns[after - 1]) * 1e-9
        return inside & (gaps_s <= self.max_gap_s)

    def poses_at(self, t_ns: np.ndarray) -> tuple[np.ndarray, Rotation]:
        """Positions (N, 3) and rotations (N,) at times inside the track (clamped at its ends)."""
        rel_s = (self.stamps_ns - self.stamps_ns[0]) * 1e-9  # (M,)
        q_s = np.clip((np.asarray(t_ns, dtype=np.int64) - self.stamps_ns[0]) * 1e-9,
                      0.0, rel_s[-1])
        xyz = np.stack([np.interp(q_s, rel_s, self.xyz_m[:, k]) for k in range(3)], axis=-1)
        return xyz, Slerp(rel_s, Rotation.from_quat(self.quat_xyzw))(q_s)

    def pose_at(self, t_ns: int) -> RigidTransform:
        """The ego pose at `t_ns` in the odometry frame."""
        xyz, rot = self.poses_at(np.array([t_ns]))
        return RigidTransform(xyz[0], rot[0])

    def future_in_ego(self, t0_ns: int, offsets_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth at t0 + offsets (T,) in the ego frame at t0: (T, 3) and (T,) validity."""
        t_ns = int(t0_ns) + np.round(np.asarray(offsets_s) * 1e9).astype(np.int64)
        valid = self.covered(t_ns) & bool(self.covered(np.array([t0_ns]))[0])
        xyz_odom, _ = self.poses_at(t_ns)
        return self.pose_at(t0_ns).inverse().apply(xyz_odom), valid


def constant_velocity(track: OdomTrack, t0_ns: int, offsets_s: np.ndarray,
                      dt_s: float = 0.1) -> np.ndarray:
    """(1, T, 3) straight-line extrapolation of the velocity over [t0 - dt, t0], ego frame at t0.

    NaN when the odometry does not cover t0 - dt ... t0.
    """
    offsets_s = np.asarray(offsets_s, dtype=np.float64)
    past_ns = int(t0_ns) - round(dt_s * 1e9)
    if not np.all(track.covered(np.array([past_ns, t0_ns]))):
        return np.full((1, offsets_s.size, 3), np.nan)
    ego_from_odom = track.pose_at(t0_ns).inverse()
    xyz_odom, _ = track.poses_at(np.array([past_ns]))
    velocity = -ego_from_odom.apply(xyz_odom)[0] / dt_s  # (3,) the ego is at the origin at t0
    return (offsets_s[:, None] * velocity[None, :])[None]  # (1, T, 3)


@dataclass(frozen=True)
class HorizonScore:
    """Errors (m) at one horizon: best-of-K and of the selected sample."""

    min_ade_m: float
    min_fde_m: float
    ade_m: float
    fde_m: float


def score_horizons(
    pred_xyz_m: np.ndarray,
    selected: int,
    offsets_s: np.ndarray,
    gt_xyz_m: np.ndarray,
    valid: np.ndarray,
    horizons_s: Sequence[float] = HORIZONS_S,
) -> dict[float, HorizonScore | None]:
    """Scores per horizon (None = not scored: ground truth or waypoints do not reach it).

    Args:
        pred_xyz_m: (K, T, 3) predicted positions, ego frame at t0.
        selected: index of the sample a consumer follows.
        offsets_s: (T,) waypoint times after t0.
        gt_xyz_m: (T, 3) ground-truth positions; valid: (T,) bool where the ground truth exists.
    """
    pred = np.asarray(pred_xyz_m, dtype=np.float64)
    offsets_s = np.asarray(offsets_s, dtype=np.float64)
    shape_ok = pred.ndim == 3 and pred.shape[1:] == (offsets_s.size, 3)
    if not shape_ok or gt_xyz_m.shape != (offsets_s.size, 3):
        raise ValueError(f"pred_xyz_m {pred.shape}, offsets_s {offsets_s.shape} and gt_xyz_m "
                         f"{gt_xyz_m.shape} must agree as (K, T, 3), (T,), (T, 3)")
    if not 0 <= selected < pred.shape[0]:
        raise ValueError(f"selected={selected} outside 0..{pred.shape[0] - 1}")
    errors = np.linalg.norm(pred[..., :2] - gt_xyz_m[None, :, :2], axis=-1)  # (K, T)
    out: dict[float, HorizonScore | None] = {}
    for h in horizons_s:
        upto = offsets_s <= h + _TIME_EPS_S
        end = np.flatnonzero(np.abs(offsets_s - h) <= _TIME_EPS_S)
        if end.size == 0 or not np.all(valid[upto]) or not np.all(np.isfinite(errors[:, upto])):
            out[h] = None
            continue
        ade = errors[:, upto].mean(axis=1)  # (K,)
        fde = errors[:, end[0]]  # (K,)
        out[h] = HorizonScore(float(ade.min()), float(fde.min()), float(ade[selected]),
                              float(fde[selected]))
    return out


@dataclass(frozen=True)
class PlanMetrics:
    """One plan's scores for the model and the constant-velocity baseline, per horizon."""

    t0_ns: int
    status: int
    model: dict[float, HorizonScore | None] = field(default_factory=dict)
    constant_velocity: dict[float, HorizonScore | None] = field(default_factory=dict)


def evaluate_plan(
    track: OdomTrack,
    t0_ns: int,
    pred_xyz_m: np.ndarray,
    selected: int,
    offsets_s: np.ndarray,
    status: int = 0,
    horizons_s: Sequence[float] = HORIZONS_S,
) -> PlanMetrics:
    """Score a plan (K, T, 3 in the ego frame at t0) and the baseline against `track`."""
    gt, valid = track.future_in_ego(t0_ns, offsets_s)
    baseline = constant_velocity(track, t0_ns, offsets_s)
    return PlanMetrics(
        t0_ns=int(t0_ns), status=int(status),
        model=score_horizons(pred_xyz_m, selected, offsets_s, gt, valid, horizons_s),
        constant_velocity=score_horizons(baseline, 0, offsets_s, gt, valid, horizons_s))


def summarize(rows: Sequence[PlanMetrics], horizons_s: Sequence[float] = HORIZONS_S) -> dict:
    """Means over the scored plans per method and horizon, with scored/excluded counts."""
    summary: dict = {"num_plans": len(rows), "horizons_s": list(horizons_s)}
    for method in METHODS:
        per_h = {}
        for h in horizons_s:
            scores = [s for r in rows if (s := getattr(r, method).get(h)) is not None]
            entry: dict[str, float | int | None] = {
                "num_scored": len(scores), "num_excluded": len(rows) - len(scores)}
            for name in ("min_ade_m", "min_fde_m", "ade_m", "fde_m"):
                values = [getattr(s, name) for s in scores]
                entry[name] = float(np.mean(values)) if values else None
            per_h[_h_key(h)] = entry
        summary[method] = per_h
    return summary


def _h_key(h: float) -> str:
    return f"{h:g}s"


def write_json(path: Path | str, rows: Sequence[PlanMetrics], meta: Mapping[str, object]) -> dict:
    """Write {"meta", "summary", "plans"} as JSON; returns the summary."""
    summary = summarize(rows, meta.get("horizons_s", HORIZONS_S))
    plans = [{"t0_ns": r.t0_ns, "status": r.status,
              **{m: {_h_key(h): (asdict(s) if s else None) for h, s in getattr(r, m).items()}
                 for m in METHODS}} for r in rows]
    Path(path).write_text(json.dumps({"meta": dict(meta), "summary": summary, "plans": plans},
                                     indent=2, default=_json_default))
    return summary


def read_json_rows(path: Path | str) -> list[PlanMetrics]:
    """The per-plan rows of a file written by `write_json` (the inverse of its "plans")."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    horizons_s = data["meta"].get("horizons_s", HORIZONS_S)
    return [PlanMetrics(
        t0_ns=int(p["t0_ns"]), status=int(p["status"]),
        **{m: {h: (HorizonScore(**s) if (s := p[m].get(_h_key(h))) else None)
               for h in horizons_s if _h_key(h) in p[m]} for m in METHODS})
        for p in data["plans"]]


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_csv(path: Path | str, rows: Sequence[PlanMetrics]) -> None:
    """Long-format CSV: one line per plan, method and horizon (empty cells = not scored)."""
    names = ("min_ade_m", "min_fde_m", "ade_m", "fde_m")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["t0_ns", "status", "method", "horizon_s", *names])
        for r in rows:
            for method in METHODS:
                for h, s in getattr(r, method).items():
                    cells = ["" if s is None else f"{getattr(s, n):.6f}" for n in names]
                    writer.writerow([r.t0_ns, r.status, method, f"{h:g}", *cells])


def format_summary(summary: Mapping) -> str:
    """A short table: minADE / FDE per horizon, model vs constant velocity."""
    lines = [f"{'horizon':>8} {'model minADE':>13} {'model FDE':>10} {'CV ADE':>8} "
             f"{'CV FDE':>8} {'scored':>7}"]
    for h in summary["horizons_s"]:
        m, cv = summary["model"][_h_key(h)], summary["constant_velocity"][_h_key(h)]
        lines.append(f"{h:>7g}s {_fmt(m['min_ade_m']):>13} {_fmt(m['fde_m']):>10} "
                     f"{_fmt(cv['ade_m']):>8} {_fmt(cv['fde_m']):>8} "
                     f"{m['num_scored']:>3}/{m['num_scored'] + m['num_excluded']:<3}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f} m"
