"""Planar (yaw-only) rotation helpers for ego poses, in torch.

Dimension glossary: `...` = any leading batch dims, N = poses along a trajectory.
Frames: right-handed, z up; yaw is the heading about +z, radians, counter-clockwise from +x.
Hand-written because they are three one-liners; scipy's Rotation does not run on torch tensors.
"""

from __future__ import annotations

import math

import torch


def yaw_from_rot(rot: torch.Tensor) -> torch.Tensor:
    """Yaw of rotation matrices: atan2(R[1, 0], R[0, 0]).

    Args:
        rot: (..., 3, 3) rotation matrices.
    Returns:
        (...) yaw in radians, in (-pi, pi].
    """
    if rot.shape[-2:] != (3, 3):
        raise ValueError(f"rot must end in (3, 3), got shape {tuple(rot.shape)}")
    return torch.atan2(rot[..., 1, 0], rot[..., 0, 0])


def rot_from_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Rotation about +z by `yaw`.

    Args:
        yaw: (...) radians.
    Returns:
        (..., 3, 3) matrices [[c, -s, 0], [s, c, 0], [0, 0, 1]], in yaw's dtype.
    """
    c, s = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    rows = (
        torch.stack([c, -s, zero], dim=-1),
        torch.stack([s, c, zero], dim=-1),
        torch.stack([zero, zero, one], dim=-1),
    )
    return torch.stack(rows, dim=-2)


def unwrap(angle: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Remove 2*pi jumps along `dim` (like `numpy.unwrap` with the default period).

    Args:
        angle: (..., N) radians.
    Returns:
        (..., N) continuous angles; the first element along `dim` is unchanged.
    """
    delta = torch.diff(angle, dim=dim)
    wrapped = torch.remainder(delta + math.pi, 2.0 * math.pi) - math.pi
    # Keep +pi steps as +pi (numpy's convention) instead of mapping them to -pi.
    wrapped = torch.where((wrapped == -math.pi) & (delta > 0), torch.full_like(wrapped, math.pi),
                          wrapped)
    correction = torch.cumsum(wrapped - delta, dim=dim)
    first = angle.narrow(dim, 0, 1)
    rest = angle.narrow(dim, 1, angle.shape[dim] - 1) + correction
    return torch.cat([first, rest], dim=dim)
