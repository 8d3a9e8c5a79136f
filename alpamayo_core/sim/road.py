"""The road and the speed profiles of synthetic drives (numpy only, no ROS).

`RoadPath` is a road centre line from curvature as a function of arc length s (metres), in the
world (`odom`) frame: s = 0 is the ego's position at scene time 0, the origin, heading +x.
`SpeedRamp` is a speed profile in scene time with closed-form speed, acceleration and distance.
`road_geometry` turns a stretch of road into world polygons (surface, lines) and posts for
`sim.render`. The road has three lanes; the ego drives on the centre one.

Dimension glossary:
    N  samples along the road or in time
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alpamayo_core.sim.render import SceneGeometry, box_corners

LANE_WIDTH_M = 3.5
_PATH_STEP_M = 0.1
_POST_SIZE_LWH_M = (0.25, 0.25, 1.2)
_POST_SPACING_M = 20.0
_DASH_LENGTH_M, _DASH_PERIOD_M = 3.0, 12.0
_ROAD_RGB = (96, 96, 102)
_LINE_RGB = (235, 235, 235)
_POST_RGB = (230, 140, 40)


@dataclass(frozen=True)
class SpeedRamp:
    """Speed v0 until t_start_s, cosine ramp to v1 over duration_s, then v1 (closed forms)."""

    v0_mps: float
    v1_mps: float
    t_start_s: float = 0.0
    duration_s: float = 0.0

    def _phase(self, t_s: np.ndarray) -> np.ndarray:
        if self.duration_s <= 0.0:
            return np.where(t_s >= self.t_start_s, 1.0, 0.0)
        return np.clip((t_s - self.t_start_s) / self.duration_s, 0.0, 1.0)

    def speed(self, t_s: np.ndarray) -> np.ndarray:
        u = self._phase(np.asarray(t_s, dtype=float))
        return self.v0_mps + (self.v1_mps - self.v0_mps) * 0.5 * (1.0 - np.cos(np.pi * u))

    def accel(self, t_s: np.ndarray) -> np.ndarray:
        u = self._phase(np.asarray(t_s, dtype=float))
        if self.duration_s <= 0.0:
            return np.zeros_like(u)
        peak = (self.v1_mps - self.v0_mps) * np.pi / (2.0 * self.duration_s)
        return peak * np.sin(np.pi * u)

    def distance(self, t_s: np.ndarray) -> np.ndarray:
        """Arc length travelled since t = 0 (negative before 0)."""
        t_s = np.asarray(t_s, dtype=float)
        dv, dur = self.v1_mps - self.v0_mps, self.duration_s
        tau = np.clip(t_s - self.t_start_s, 0.0, dur)
        ramp = self.v0_mps * tau
        if dur > 0.0:
            ramp = ramp + dv * (tau / 2.0 - dur / (2.0 * np.pi) * np.sin(np.pi * tau / dur))
        before = self.v0_mps * np.minimum(t_s, self.t_start_s)
        after = self.v1_mps * np.maximum(t_s - self.t_start_s - dur, 0.0)
        return before + ramp + after


def cosine_stop(v0_mps: float, v1_mps: float, t_start_s: float, decel_mps2: float) -> SpeedRamp:
    """A ramp from v0 to v1 whose mean deceleration is `decel_mps2`."""
    return SpeedRamp(v0_mps, v1_mps, t_start_s, abs(v0_mps - v1_mps) / decel_mps2)


class RoadPath:
    """Road centre line in the world, from curvature as a function of arc length s.

    Integrated on a 0.1 m grid with exact circular arcs per step (constant-curvature parts lie
    exactly on circles); s = 0 is the ego's position at t = 0, the origin, heading +x.
    """

    def __init__(self, s_min_m: float, s_max_m: float, curvature_fn) -> None:
        n_back = int(np.ceil(-min(s_min_m, 0.0) / _PATH_STEP_M))
        n_fwd = int(np.ceil(max(s_max_m, 0.0) / _PATH_STEP_M))
        self.s_m = np.arange(-n_back, n_fwd + 1) * _PATH_STEP_M  # (N,), contains 0 exactly
        self.kappa_1pm = curvature_fn(self.s_m)
        dyaw = 0.5 * (self.kappa_1pm[1:] + self.kappa_1pm[:-1]) * _PATH_STEP_M
        yaw = np.concatenate([[0.0], np.cumsum(dyaw)])
        chord = _PATH_STEP_M * np.sinc(dyaw / (2.0 * np.pi))  # exact arc chord length
        heading = yaw[:-1] + 0.5 * dyaw
        xy = np.concatenate([[[0.0, 0.0]], np.cumsum(
            chord[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1), axis=0)])
        zero = n_back
        self.yaw_rad = yaw - yaw[zero]
        self.xy_m = xy - xy[zero]  # (N, 2)

    def at(self, s_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy_m (N, 2), yaw_rad (N,), curvature_1pm (N,)) at arc lengths s_m (N,)."""
        s_m = np.atleast_1d(np.asarray(s_m, dtype=float))
        if s_m.min() < self.s_m[0] - 1e-9 or s_m.max() > self.s_m[-1] + 1e-9:
            raise ValueError(f"arc length outside the road [{self.s_m[0]}, {self.s_m[-1]}] m")
        x = np.interp(s_m, self.s_m, self.xy_m[:, 0])
        y = np.interp(s_m, self.s_m, self.xy_m[:, 1])
        return (np.stack([x, y], axis=1), np.interp(s_m, self.s_m, self.yaw_rad),
                np.interp(s_m, self.s_m, self.kappa_1pm))

    def offset(self, s_m: np.ndarray, lateral_m: float) -> np.ndarray:
        """(N, 3) ground points `lateral_m` to the left of the centre line at s_m (N,)."""
        xy, yaw, _ = self.at(s_m)
        normal = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
        pts = xy + lateral_m * normal
        return np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)


def road_geometry(road: RoadPath, s0_m: float, s1_m: float) -> SceneGeometry:
    """Road surface, edge lines, dashed lane lines and roadside posts between s0 and s1."""
    s = np.linspace(s0_m, s1_m, int(np.ceil((s1_m - s0_m) / 2.0)) + 1)
    half_m = 1.5 * LANE_WIDTH_M
    surface = np.concatenate([road.offset(s, half_m + 0.5), road.offset(s[::-1], -half_m - 0.5)])
    edges = [np.concatenate([road.offset(s, lat + 0.1), road.offset(s[::-1], lat - 0.1)])
             for lat in (half_m, -half_m)]
    first = np.floor(s0_m / _DASH_PERIOD_M) * _DASH_PERIOD_M
    starts = np.arange(first, s1_m - _DASH_LENGTH_M, _DASH_PERIOD_M)
    starts = starts[starts >= s0_m]
    dashes = []
    for lat in (0.5 * LANE_WIDTH_M, -0.5 * LANE_WIDTH_M):
        near = road.offset(np.repeat(starts, 2) + np.tile([0.0, _DASH_LENGTH_M], len(starts)),
                           lat + 0.075).reshape(-1, 2, 3)
        far = road.offset(np.repeat(starts, 2) + np.tile([_DASH_LENGTH_M, 0.0], len(starts)),
                          lat - 0.075).reshape(-1, 2, 3)
        dashes += list(np.concatenate([near, far], axis=1))  # each (4, 3)
    geometry = SceneGeometry([([surface], _ROAD_RGB), (edges + dashes, _LINE_RGB)])
    post_s = np.arange(np.ceil(s0_m / _POST_SPACING_M) * _POST_SPACING_M, s1_m, _POST_SPACING_M)
    for lat in (half_m + 1.5, -half_m - 1.5):
        xy = road.offset(post_s, lat)
        _, yaw, _ = road.at(post_s)
        geometry.boxes.extend((box_corners(p[:2], a, _POST_SIZE_LWH_M), _POST_RGB)
                              for p, a in zip(xy, yaw, strict=True))
    return geometry
