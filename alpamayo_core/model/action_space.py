"""Unicycle (acceleration, curvature) action space: actions <-> ego trajectories.

Dimension glossary:
    B  trajectory rows (samples)
    T  future waypoints (`n_waypoints`, 64 in the release), spaced `dt_s`
    N  history poses (16 in the release), oldest first, the last one at t0
Frames and units: everything is in the ego frame at t0 (x forward, y left, z up), metres,
seconds, radians. An action row is (acceleration [m/s^2], curvature [1/m]) held over
[t0 + k*dt, t0 + (k+1)*dt], stored normalised by the dataset mean and std.

All geometry runs in float32 whatever the module dtype, as in the reference. The statistics are
0-d buffers created in `stats_dtype` (the model passes its load dtype, as the reference does):
with bfloat16 the effective constants are the bf16-rounded values of the config, with float32
the config's values; the multiply runs in float32 on them either way.
The regularised least-squares fits are hand-written (tiny banded normal equations solved by a
batched Cholesky); scipy has no batched torch solver with these penalties.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from alpamayo_core.model.config import ActionSpaceConfig
from alpamayo_core.model.geometry import rot_from_yaw, unwrap, yaw_from_rot

_MAX_RIDGE_RETRIES = 8
_STAT_NAMES = ("accel_mean", "accel_std", "curvature_mean", "curvature_std")
_F = TypeVar("_F", bound=Callable)


def _float32_geometry(fn: _F) -> _F:
    """Run `fn` with CPU and CUDA autocast disabled (the reference fits in float32)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class UnicycleTrajectory:
    """Integrated future trajectory, one entry per waypoint k = 1..T (t0 + k*dt)."""

    xyz: torch.Tensor        # (B, T, 3) metres, ego frame at t0
    rot: torch.Tensor        # (B, T, 3, 3) yaw rotations
    yaw: torch.Tensor        # (B, T) radians, continuous (not wrapped)
    speed: torch.Tensor      # (B, T) m/s at each waypoint (v_{k+1})
    accel: torch.Tensor      # (B, T) m/s^2 over step k (de-normalised action)
    curvature: torch.Tensor  # (B, T) 1/m over step k (de-normalised action)


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"stats_dtype must be float32, bfloat16 or float16, got {dtype!r}")
    return getattr(torch, dtype)


def _difference_matrix(n: int, order: int, device: torch.device) -> torch.Tensor:
    """(n - order, n) finite-difference operator, e.g. rows [-1, 3, -3, 1] for order 3."""
    return torch.diff(torch.eye(n, device=device, dtype=torch.float32), n=order, dim=0)


def _solve_cholesky(lhs: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """Solve (lhs + ridge*I) x = rhs for SPD lhs (B, n, n), rhs (B, n).

    When the factorisation fails (rank-deficient data, e.g. a stopped vehicle) the ridge grows
    x10 until it succeeds, as in the reference.
    """
    eye = torch.eye(lhs.shape[-1], device=lhs.device, dtype=lhs.dtype)
    for _ in range(_MAX_RIDGE_RETRIES):
        chol, info = torch.linalg.cholesky_ex(lhs + ridge * eye)
        if not bool((info != 0).any()):
            return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        ridge *= 10.0
    raise ValueError(f"least-squares system stays singular up to ridge {ridge:g}; "
                     "check the trajectory for NaNs or duplicated poses")


def _regularised_lstsq(design: torch.Tensor, target: torch.Tensor, diff_order: int,
                       smooth_weight: float, ridge: float,
                       fixed_first: torch.Tensor | None = None) -> torch.Tensor:
    """argmin_x |design @ x - target|^2 + smooth_weight*|D x|^2 + ridge*|x_free|^2.

    Args:
        design: (B, M, n) float32.
        target: (B, M) float32.
        diff_order: order of the finite-difference penalty D, applied to all n unknowns.
        fixed_first: (B,) value of x[0] held fixed, or None to solve for all n.
    Returns:
        (B, n) solution (x[0] = fixed_first when given).
    """
    n = design.shape[-1]
    diff = _difference_matrix(n, diff_order, design.device)
    if fixed_first is None:
        lhs = design.mT @ design + smooth_weight * (diff.T @ diff)
        rhs = (design.mT @ target.unsqueeze(-1)).squeeze(-1)
        return _solve_cholesky(lhs, rhs, ridge)
    a_free, d_free = design[..., 1:], diff[:, 1:]
    target = target - design[..., 0] * fixed_first.unsqueeze(-1)
    lhs = a_free.mT @ a_free + smooth_weight * (d_free.T @ d_free)
    rhs = (a_free.mT @ target.unsqueeze(-1)).squeeze(-1)
    rhs = rhs - smooth_weight * (d_free.T @ diff[:, 0]) * fixed_first.unsqueeze(-1)
    free = _solve_cholesky(lhs, rhs, ridge)
    return torch.cat([fixed_first.unsqueeze(-1), free], dim=-1)


def _velocity_system(xy: torch.Tensor, theta: torch.Tensor,
                     dt_s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Trapezoid model v_t*u_t + v_{t+1}*u_{t+1} = 2*(p_{t+1} - p_t)/dt, u = (cos, sin).

    Args:
        xy: (B, N, 2) positions; theta: (B, N) headings.
    Returns:
        design (B, 2(N-1), N) and target (B, 2(N-1)).
    """
    rows = []
    for comp in (torch.cos(theta), torch.sin(theta)):
        diag = torch.diag_embed(comp)  # (B, N, N)
        rows.append(diag[:, :-1, :] + diag[:, 1:, :])
    target = 2.0 * torch.diff(xy, dim=1) / dt_s  # (B, N-1, 2)
    return torch.cat(rows, dim=1), torch.cat([target[..., 0], target[..., 1]], dim=1)


def _check_history(history_xyz: torch.Tensor, history_rot: torch.Tensor) -> None:
    if history_xyz.ndim != 3 or history_xyz.shape[-1] != 3:
        raise ValueError(f"history_xyz must be (B, N, 3), got {tuple(history_xyz.shape)}")
    if history_rot.shape != (*history_xyz.shape[:2], 3, 3):
        raise ValueError(f"history_rot must be (B, N, 3, 3) matching history_xyz, "
                         f"got {tuple(history_rot.shape)}")
    if history_xyz.shape[1] < 2:
        raise ValueError("the history needs at least 2 poses to estimate the t0 speed")


def forward_speeds(v0: torch.Tensor, accel: torch.Tensor, dt_s: float) -> torch.Tensor:
    """Speeds (B, T+1) in m/s of v_0 = max(v0, 0), v_{k+1} = max(v_k + accel_k * dt_s, 0).

    The recursion in closed form (a running minimum, no loop over T): with S_k = v_0 +
    sum_{j<k} accel_j dt_s, v_k = S_k - min(0, min_{j<=k} S_j).
    Args:
        v0: (B,) speed at t0 in m/s; accel: (B, T) m/s^2.
    """
    start = v0.clamp(min=0.0)[:, None]  # (B, 1)
    free = torch.cat([start, start + torch.cumsum(accel * dt_s, dim=1)], dim=1)  # (B, T+1)
    return free - torch.cummin(free, dim=1).values.clamp(max=0.0)


class UnicycleActionSpace(nn.Module):
    """Normalised (accel, curvature) actions and their unicycle integration."""

    accel_mean: torch.Tensor
    accel_std: torch.Tensor
    curvature_mean: torch.Tensor
    curvature_std: torch.Tensor

    def __init__(self, cfg: ActionSpaceConfig, stats_dtype: str | torch.dtype = "bfloat16",
                 persistent: bool = True):
        """`persistent` False (Alpamayo 1.5): the statistics are not in the state dict; they
        come from `cfg` only (`reset_buffers` after materialising a meta model)."""
        super().__init__()
        self.cfg = cfg
        dtype = _as_dtype(stats_dtype)
        for name in _STAT_NAMES:
            self.register_buffer(name, torch.tensor(getattr(cfg, name), dtype=dtype),
                                 persistent=persistent)

    def reset_buffers(self) -> None:
        """Recompute non-persistent statistics (garbage after `to_empty`) from the config."""
        for name in _STAT_NAMES:
            if name in self._non_persistent_buffers_set:
                old = getattr(self, name)
                setattr(self, name, torch.tensor(getattr(self.cfg, name), dtype=old.dtype,
                                                 device=old.device))

    @property
    def n_waypoints(self) -> int:
        return self.cfg.n_waypoints

    @property
    def dt_s(self) -> float:
        return self.cfg.dt_s

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.stack([self.accel_mean.float(), self.curvature_mean.float()])
        std = torch.stack([self.accel_std.float(), self.curvature_std.float()])
        return mean, std  # (2,), (2,)

    def denormalize(self, action: torch.Tensor) -> torch.Tensor:
        """(..., 2) normalised action -> (..., 2) float32 (accel m/s^2, curvature 1/m)."""
        mean, std = self._stats()
        return action.float() * std + mean

    def normalize(self, action_phys: torch.Tensor) -> torch.Tensor:
        """(..., 2) float32 (accel m/s^2, curvature 1/m) -> (..., 2) normalised."""
        mean, std = self._stats()
        return (action_phys.float() - mean) / std

    @_float32_geometry
    def estimate_t0_speed(self, history_xyz: torch.Tensor,
                          history_rot: torch.Tensor) -> torch.Tensor:
        """Speed at t0 (the last history pose) by regularised least squares.

        Args:
            history_xyz: (B, N, 3) positions, oldest first.
            history_rot: (B, N, 3, 3) orientations.
        Returns:
            (B,) float32 speed v0 in m/s.
        """
        _check_history(history_xyz, history_rot)
        cfg = self.cfg
        theta = unwrap(yaw_from_rot(history_rot.float()))  # (B, N)
        design, target = _velocity_system(history_xyz[..., :2].float(), theta, cfg.dt_s)
        speed = _regularised_lstsq(design, target, 3, cfg.v_lambda / cfg.dt_s**6, cfg.v_ridge)
        return speed[:, -1]

    @_float32_geometry
    def action_to_traj(self, action: torch.Tensor, history_xyz: torch.Tensor,
                       history_rot: torch.Tensor,
                       forward_only: bool = False) -> UnicycleTrajectory:
        """Integrate normalised actions (B, T, 2) from the t0 state into a trajectory.

        The heading starts at 0 and the position at the origin (t0 ego frame); z is the last
        history z. Each sum is its own cumulative sum, as in the reference, for bit-closeness.

        `forward_only` (not the reference's behaviour, which is the default): the speed never
        goes below 0 m/s: v0 is clamped at 0 and the integration stops at 0 instead of
        reversing (`forward_speeds`); `accel` then holds the accelerations actually applied.
        It removes backward plans at a standstill, where the least-squares v0 of a noisy
        history is a few tenths of a m/s either side of 0.
        """
        if action.ndim != 3 or action.shape[-1] != 2:
            raise ValueError(f"action must be (B, T, 2), got {tuple(action.shape)}")
        dt = self.cfg.dt_s
        phys = self.denormalize(action)
        accel, curv = phys[..., 0], phys[..., 1]  # (B, T)
        v0 = self.estimate_t0_speed(history_xyz, history_rot)  # (B,)
        if forward_only:
            speed = forward_speeds(v0, accel, dt)  # (B, T+1)
            accel = torch.diff(speed, dim=1) / dt
        else:
            speed = torch.cat([v0[:, None], v0[:, None] + torch.cumsum(accel * dt, dim=1)],
                              dim=1)
        v_k = speed[:, :-1]  # (B, T) speed at the start of each step
        dtheta_v = torch.cumsum(curv * v_k * dt, dim=1)
        dtheta_a = torch.cumsum(curv * accel * (dt**2 / 2.0), dim=1)
        yaw_next = dtheta_v + dtheta_a  # (B, T) = theta_{k+1}
        theta = torch.cat([torch.zeros_like(v0)[:, None], yaw_next], dim=1)  # (B, T+1)
        half = dt / 2.0
        xy = []
        for trig in (torch.cos(theta), torch.sin(theta)):
            step = speed * trig  # (B, T+1)
            xy.append(torch.cumsum(half * step[:, :-1], dim=1)
                      + torch.cumsum(half * step[:, 1:], dim=1))
        z = history_xyz[:, -1:, 2].float().expand_as(xy[0])
        return UnicycleTrajectory(
            xyz=torch.stack([xy[0], xy[1], z], dim=-1),
            rot=rot_from_yaw(yaw_next),
            yaw=yaw_next,
            speed=speed[:, 1:],
            accel=accel,
            curvature=curv,
        )

    @_float32_geometry
    def traj_to_action(self, future_xyz: torch.Tensor, future_rot: torch.Tensor,
                       history_xyz: torch.Tensor, history_rot: torch.Tensor,
                       forward_only: bool = False) -> torch.Tensor:
        """Fit normalised actions (B, T, 2) to a future trajectory (training labels).

        Args:
            future_xyz: (B, T, 3) waypoints t0 + k*dt, k = 1..T, in the t0 ego frame.
            future_rot: (B, T, 3, 3) their orientations.
            history_xyz, history_rot: the history (for v0), as in `estimate_t0_speed`.
            forward_only: fix the fit's first speed at max(v0, 0) rather than v0 (labels for
                a model integrated with `action_to_traj(..., forward_only=True)`: at a
                standstill a negative v0 is 0 there, so the label must not cancel it).
        """
        if future_xyz.ndim != 3 or future_rot.shape != (*future_xyz.shape[:2], 3, 3):
            raise ValueError(f"future_xyz must be (B, T, 3) and future_rot (B, T, 3, 3), got "
                             f"{tuple(future_xyz.shape)} and {tuple(future_rot.shape)}")
        cfg, dt = self.cfg, self.cfg.dt_s
        batch = future_xyz.shape[0]
        zero = torch.zeros(batch, 1, device=future_xyz.device, dtype=torch.float32)
        theta = self._fit_heading(torch.cat([zero, yaw_from_rot(future_rot.float())], dim=1))
        xy = torch.cat([zero.expand(-1, 2)[:, None], future_xyz[..., :2].float()], dim=1)
        design, target = _velocity_system(xy, theta, dt)
        v0 = self.estimate_t0_speed(history_xyz, history_rot)
        if forward_only:
            v0 = v0.clamp(min=0.0)
        speed = _regularised_lstsq(design, target, 3, cfg.v_lambda / dt**6, cfg.v_ridge,
                                   fixed_first=v0)  # (B, T+1)
        eye = torch.eye(speed.shape[1] - 1, device=speed.device).expand(batch, -1, -1)
        accel = _regularised_lstsq(eye, torch.diff(speed, dim=1) / dt, 2,
                                   cfg.a_lambda / dt**4, cfg.a_ridge)  # (B, T)
        dist = speed[:, :-1] * dt + accel * (dt**2 / 2.0)  # (B, T) metres per step
        curv = _regularised_lstsq(torch.diag_embed(dist), torch.diff(theta, dim=1), 2,
                                  cfg.kappa_lambda / dt**4, cfg.kappa_ridge)
        return self.normalize(torch.stack([accel, curv], dim=-1))

    def _fit_heading(self, yaw: torch.Tensor) -> torch.Tensor:
        """Smooth headings (B, T+1) with theta_0 = 0 held fixed -> (B, T+1) float32."""
        cfg = self.cfg
        theta = unwrap(yaw)
        n = theta.shape[1]
        design = torch.eye(n, device=theta.device).expand(theta.shape[0], -1, -1)
        return _regularised_lstsq(design, theta, 3, cfg.theta_lambda / cfg.dt_s**6,
                                  cfg.theta_ridge, fixed_first=theta[:, 0])
