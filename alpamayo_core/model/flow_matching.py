"""Stateless flow-matching sampler and the training-time interpolation helpers.

Dimension glossary: B = trajectory rows, T = waypoints, 2 = normalised (accel, curvature).
Time runs from 0 (pure noise) to 1 (data), as in the reference.

sigma_min convention (Lipman et al. 2023, with time reversed to match the reference):
    x_t = t * x_data + (1 - (1 - sigma_min) * t) * noise
    target velocity u = x_data - (1 - sigma_min) * noise
so x_0 = noise and x_1 = x_data + sigma_min * noise. sigma_min only shapes the training target;
the sampler integrates whatever field it is given from t = 0 to 1 and is the same for every
sigma_min. With sigma_min = 0 both formulas are exactly the reference's.

The ODE solvers are a few lines each and hand-written: torchdiffeq is not a dependency, and the
reference's float32 time grid must be reproduced bit for bit (dt = t[i+1] - t[i] in float32).
"""

from __future__ import annotations

from typing import Protocol

import torch

from alpamayo_core.model.config import FlowConfig


class VelocityFn(Protocol):
    """A denoising step: velocity of the flow at (x, t)."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, T, 2) float32, t (B,) float32 in [0, 1) -> velocity (B, T, 2) float32."""
        ...


def time_grid(num_steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(num_steps + 1,) float32 `linspace(0, 1)`, the reference's grid."""
    return torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float32, device=device)


def _velocity(fn: VelocityFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    v = fn(x, t.expand(x.shape[0]))
    if v.shape != x.shape:
        raise ValueError(f"velocity_fn returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
    return v.float()


def _euler(fn: VelocityFn, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    return x + dt * _velocity(fn, x, t)


def _midpoint(fn: VelocityFn, x: torch.Tensor, t: torch.Tensor,
              dt: torch.Tensor) -> torch.Tensor:
    x_mid = x + (dt / 2) * _velocity(fn, x, t)
    return x + dt * _velocity(fn, x_mid, t + dt / 2)


def _heun(fn: VelocityFn, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    v_start = _velocity(fn, x, t)
    v_end = _velocity(fn, x + dt * v_start, t + dt)
    return x + (dt / 2) * (v_start + v_end)


_STEPPERS = {"euler": _euler, "midpoint": _midpoint, "heun": _heun}


def sample(velocity_fn: VelocityFn, noise: torch.Tensor, cfg: FlowConfig) -> torch.Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from x(0) = noise to t = 1.

    Args:
        velocity_fn: see `VelocityFn`; called with t shaped (B,), the left end of each step
            (and the step's midpoint or right end for the second-order solvers).
        noise: (B, T, 2) initial state; cast to float32.
        cfg: number of steps and solver ("euler" is the reference; "midpoint" and "heun" are
            second order at two velocity evaluations per step).
    Returns:
        (B, T, 2) float32 sample x(1), in normalised action units.
    """
    if noise.ndim != 3:
        raise ValueError(f"noise must be (B, T, 2), got shape {tuple(noise.shape)}")
    step = _STEPPERS[cfg.solver]
    grid = time_grid(cfg.num_steps, noise.device)
    x = noise.float()
    for i in range(cfg.num_steps):
        x = step(velocity_fn, x, grid[i], grid[i + 1] - grid[i])
    return x


def make_noise(batch: int, n_waypoints: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, T, 2) float32 standard normal noise, reproducible with `generator`."""
    return torch.randn(batch, n_waypoints, 2, generator=generator, device=device,
                       dtype=torch.float32)


def _time_like(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
    return t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim == 1 else t


def interpolate(x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float,
                sigma_min: float = 0.0) -> torch.Tensor:
    """Noisy sample x_t (B, T, 2) on the path from noise (t = 0) to data (t = 1).

    Args:
        x_data, noise: (B, T, 2); t: scalar or (B,) in [0, 1].
    """
    t = _time_like(t, x_data)
    return t * x_data + (1.0 - (1.0 - sigma_min) * t) * noise


def target_velocity(x_data: torch.Tensor, noise: torch.Tensor,
                    sigma_min: float = 0.0) -> torch.Tensor:
    """Regression target d x_t / dt = x_data - (1 - sigma_min) * noise, (B, T, 2)."""
    return x_data - (1.0 - sigma_min) * noise
