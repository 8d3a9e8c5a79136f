"""Synthetic drives: a smooth ground-truth ego trajectory, noisy odometry, rendered cameras.

Pure numpy + cv2 (no ROS), so the core's tests, the bag writer and a live publisher share it.
A drive is a road (curvature as a function of arc length) and a speed profile (cosine ramps in
time); the ego drives on the centre lane of a three-lane road. Everything is deterministic for a
seed: stamps and odometry noise are drawn once at construction, image noise per frame from
(seed, camera, frame).

Times: `t_ns` are absolute stamps (`SceneConfig.start_ns` + scene time); `t_s` is scene time in
seconds (0 = start of the drive; the trajectory is also defined before 0 for history and after
the end for ground-truth futures).
Frames: the world is `odom` (REP-103: x forward at the start, y left, z up; metres); ego poses
for the model are in the ego frame at t (x forward, y left, z up), as in `plan.py`.

Dimension glossary:
    N  poses or samples
    H, W  image height and width in pixels
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from alpamayo_core.sim.render import (
    CameraModel,
    CameraRenderer,
    SceneGeometry,
    box_corners,
    default_rig,
)
from alpamayo_core.sim.road import RoadPath, SpeedRamp, cosine_stop, road_geometry

SCENE_KINDS = ("straight", "curve_left", "curve_right", "lead_vehicle_braking", "stop")
_HISTORY_MARGIN_S = 5.0
_FUTURE_MARGIN_S = 10.0
_VIEW_BEHIND_M, _VIEW_AHEAD_M = 60.0, 250.0
_CAR_SIZE_LWH_M = (4.6, 1.9, 1.5)


@dataclass(frozen=True)
class SceneConfig:
    """One synthetic drive. Rates in Hz, noise as standard deviations, jitter in seconds.

    `curvature_1pm` is the magnitude of the curve's curvature (sign from `kind`), reached after
    `curve_ramp_m` of linearly increasing curvature starting at `curve_start_m` of arc length.
    Braking scenes ramp speed with a cosine whose mean deceleration is `decel_mps2`, starting at
    `brake_at_s`; in `lead_vehicle_braking` the lead (initially `lead_gap_m` ahead) brakes to
    `final_speed_mps` and the ego follows after `reaction_s`; in `stop` the ego stops behind a
stopped car (blue) standing in its lane. `cameras=()` means
    `default_rig(width, height)`.
    """

    kind: str = "straight"
    seconds: float = 10.0
    speed_mps: float = 10.0
    curvature_1pm: float = 1.0 / 80.0
    curve_start_m: float = 20.0
    curve_ramp_m: float = 30.0
    brake_at_s: float = 2.0
    decel_mps2: float = 3.0
    final_speed_mps: float = 3.0
    lead_gap_m: float = 25.0
    reaction_s: float = 0.5
    odom_rate_hz: float = 50.0
    camera_rate_hz: float = 10.0
    width: int = 1920
    height: int = 1080
    cameras: tuple[CameraModel, ...] = ()
    odom_jitter_s: float = 0.002
    camera_jitter_s: float = 0.003
    camera_offset_max_s: float = 0.02
    odom_pos_noise_m: float = 0.01
    odom_yaw_noise_rad: float = 0.001
    image_noise_std: float = 0.0
    start_ns: int = 1_700_000_000 * 10**9
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.cameras:
            object.__setattr__(self, "cameras", default_rig(self.width, self.height))
        for name, ok, msg in self._checks():
            if not ok:
                raise ValueError(f"SceneConfig.{name}: {msg} (got {getattr(self, name)!r})")

    def _checks(self) -> list[tuple[str, bool, str]]:
        names = [c.name for c in self.cameras]
        checks = [
            ("kind", self.kind in SCENE_KINDS, f"must be one of {SCENE_KINDS}"),
            ("seconds", 0.0 < self.seconds <= 3600.0, "must be in (0, 3600]"),
            ("speed_mps", 0.0 <= self.speed_mps <= 60.0, "must be in [0, 60]"),
            ("curvature_1pm", 0.0 < self.curvature_1pm <= 0.2, "must be in (0, 0.2]"),
            ("curve_start_m", self.curve_start_m >= 0.0, "must be >= 0"),
            ("curve_ramp_m", self.curve_ramp_m >= 0.0, "must be >= 0"),
            ("brake_at_s", self.brake_at_s >= 0.0, "must be >= 0"),
            ("decel_mps2", 0.0 < self.decel_mps2 <= 10.0, "must be in (0, 10]"),
            ("reaction_s", self.reaction_s >= 0.0, "must be >= 0"),
            ("odom_rate_hz", 1.0 <= self.odom_rate_hz <= 1000.0, "must be in [1, 1000]"),
            ("camera_rate_hz", 0.5 <= self.camera_rate_hz <= 100.0, "must be in [0.5, 100]"),
            ("odom_jitter_s", 0.0 <= self.odom_jitter_s <= 0.1 / self.odom_rate_hz,
             "must be in [0, 0.1 / odom_rate_hz] so stamps stay ordered"),
            ("camera_jitter_s", 0.0 <= self.camera_jitter_s <= 0.1 / self.camera_rate_hz,
             "must be in [0, 0.1 / camera_rate_hz] so stamps stay ordered"),
            ("camera_offset_max_s", 0.0 <= self.camera_offset_max_s < 0.5 / self.camera_rate_hz,
             "must be in [0, 0.5 / camera_rate_hz)"),
            ("odom_pos_noise_m", self.odom_pos_noise_m >= 0.0, "must be >= 0"),
            ("odom_yaw_noise_rad", self.odom_yaw_noise_rad >= 0.0, "must be >= 0"),
            ("image_noise_std", 0.0 <= self.image_noise_std <= 40.0, "must be in [0, 40]"),
            ("cameras", len(set(names)) == len(names), "camera names must be unique"),
            ("start_ns", self.start_ns >= 0, "must be >= 0"),
            ("seed", self.seed >= 0, "must be >= 0"),
        ]
        return checks + self._scene_checks()

    def _scene_checks(self) -> list[tuple[str, bool, str]]:
        if self.kind == "stop":
            end_s = self.brake_at_s + self.speed_mps / self.decel_mps2
            return [("seconds", end_s <= self.seconds,
                     f"a stop from {self.speed_mps} m/s braking at {self.brake_at_s} s ends at "
                     f"{end_s:.2f} s: raise seconds or decel_mps2, or lower brake_at_s")]
        if self.kind == "lead_vehicle_braking":
            closing_m = (self.speed_mps - self.final_speed_mps) * self.reaction_s
            return [
                ("final_speed_mps", 0.0 <= self.final_speed_mps < self.speed_mps,
                 "must be in [0, speed_mps)"),
                ("lead_gap_m", self.lead_gap_m - closing_m >= _CAR_SIZE_LWH_M[0] + 2.0,
                 f"must leave >= {_CAR_SIZE_LWH_M[0] + 2.0} m after closing {closing_m:.1f} m"),
            ]
        return []

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)


@dataclass(frozen=True)
class EgoState:
    """Ground-truth ego state at N times, in the world (odom) frame. All arrays (N,)."""

    t_ns: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray
    accel_mps2: np.ndarray
    curvature_1pm: np.ndarray


@dataclass(frozen=True)
class EgoPoses:
    """N poses in the ego frame at a reference time (x forward, y left, z up).

    Attributes:
        t_ns: (N,) int64 stamps.
        xyz_m: (N, 3) positions (z = 0).
        yaw_rad: (N,) headings relative to the reference heading, wrapped to (-pi, pi].
        speed_mps: (N,) ground-truth speeds.
    """

    t_ns: np.ndarray
    xyz_m: np.ndarray
    yaw_rad: np.ndarray
    speed_mps: np.ndarray

    @property
    def rot(self) -> np.ndarray:
        """(N, 3, 3) rotations (yaw about z)."""
        return Rotation.from_euler("z", self.yaw_rad[:, None]).as_matrix()


@dataclass(frozen=True)
class OdomSample:
    """One odometry message: pose in `odom`, twist in the child frame (`base_link`).

    Attributes:
        stamp_ns: header stamp.
        xyz_m: (3,) position in odom (noisy).
        yaw_rad: heading in odom (noisy).
        linear_mps: (3,) velocity in base_link (x forward).
        angular_rps: (3,) angular velocity in base_link (z = yaw rate).
    """

    stamp_ns: int
    xyz_m: np.ndarray
    yaw_rad: float
    linear_mps: np.ndarray
    angular_rps: np.ndarray
    pos_std_m: float = 0.0
    yaw_std_rad: float = 0.0

    @property
    def quat_xyzw(self) -> np.ndarray:
        """(4,) orientation quaternion (x, y, z, w)."""
        return np.array([0.0, 0.0, np.sin(self.yaw_rad / 2.0), np.cos(self.yaw_rad / 2.0)])


class DriveEvent(NamedTuple):
    """One time-ordered event: an image (RGB uint8 (H, W, 3)) or an `OdomSample`."""

    stamp_ns: int
    kind: str  # "image" | "odom"
    camera: str | None
    payload: np.ndarray | OdomSample


@dataclass(frozen=True)
class _Stamps:
    odom_ns: np.ndarray  # (N_odom,) int64
    camera_ns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N_frames,) int64


class SyntheticDrive:
    """A deterministic synthetic drive built from a `SceneConfig`.

    Ground truth is defined for scene times [-5 s, seconds + 10 s] so that histories before the
    first message and 6.4 s futures after the last one are available.
    """

    def __init__(self, config: SceneConfig) -> None:
        self.config = config
        self.ego_speed, self.lead_speed = _speed_profiles(config)
        self.t_min_s, self.t_max_s = -_HISTORY_MARGIN_S, config.seconds + _FUTURE_MARGIN_S
        s_far = float(self.ego_speed.distance(self.t_max_s))
        if self.lead_speed is not None:
            s_far = max(s_far, config.lead_gap_m + float(self.lead_speed.distance(self.t_max_s)))
        s_near = float(self.ego_speed.distance(self.t_min_s))
        self.road = RoadPath(s_near - _VIEW_BEHIND_M - 10.0, s_far + _VIEW_AHEAD_M + 10.0,
                             _curvature_fn(config))
        self.stamps = _draw_stamps(config)
        noise_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
        n_odom = len(self.stamps.odom_ns)
        self._odom_xy_noise = noise_rng.normal(0.0, 1.0, (n_odom, 2)) * config.odom_pos_noise_m
        self._odom_yaw_noise = noise_rng.normal(0.0, 1.0, n_odom) * config.odom_yaw_noise_rad
        self._renderers = {
            cam.name: CameraRenderer(cam, config.image_noise_std, seed=config.seed * 101 + i)
            for i, cam in enumerate(config.cameras)}

    # -- time ----------------------------------------------------------------------------------
    def to_scene_s(self, t_ns: np.ndarray | int) -> np.ndarray:
        """Scene seconds for absolute stamps; raises outside the defined time range."""
        t_s = (np.asarray(t_ns, dtype=np.int64) - self.config.start_ns) * 1e-9
        if np.min(t_s) < self.t_min_s - 1e-9 or np.max(t_s) > self.t_max_s + 1e-9:
            raise ValueError(f"time outside the drive's ground truth [{self.t_min_s}, "
                             f"{self.t_max_s}] s after start_ns")
        return t_s

    def to_ns(self, t_s: np.ndarray | float) -> np.ndarray:
        """Absolute int64 stamps for scene seconds."""
        return self.config.start_ns + np.round(np.asarray(t_s) * 1e9).astype(np.int64)

    # -- ground truth --------------------------------------------------------------------------
    def ego_state(self, t_ns: np.ndarray | int) -> EgoState:
        """Ground-truth ego state at stamps (N,) in the odom frame."""
        t_ns = np.atleast_1d(np.asarray(t_ns, dtype=np.int64))
        t_s = self.to_scene_s(t_ns)
        xy, yaw, kappa = self.road.at(self.ego_speed.distance(t_s))
        return EgoState(t_ns, xy[:, 0], xy[:, 1], yaw, self.ego_speed.speed(t_s),
                        self.ego_speed.accel(t_s), kappa)

    def poses_in_ego_frame(self, ref_t_ns: int, t_ns: np.ndarray) -> EgoPoses:
        """Ground-truth poses at stamps (N,) expressed in the ego frame at `ref_t_ns`."""
        ref = self.ego_state(ref_t_ns)
        state = self.ego_state(t_ns)
        d_xy = np.stack([state.x_m - ref.x_m[0], state.y_m - ref.y_m[0]], axis=1)
        c, s = np.cos(ref.yaw_rad[0]), np.sin(ref.yaw_rad[0])
        local_xy = d_xy @ np.array([[c, -s], [s, c]])  # rotate by -yaw: (N, 2)
        xyz = np.concatenate([local_xy, np.zeros((len(local_xy), 1))], axis=1)
        yaw = np.angle(np.exp(1j * (state.yaw_rad - ref.yaw_rad[0])))
        return EgoPoses(state.t_ns, xyz, yaw, state.speed_mps)

    def true_future(self, t_ns: int, n: int = 64, dt_s: float = 0.1) -> EgoPoses:
        """The n ground-truth poses at t + dt ... t + n dt in the ego frame at t."""
        offsets_ns = np.round(np.arange(1, n + 1) * dt_s * 1e9).astype(np.int64)
        return self.poses_in_ego_frame(t_ns, int(t_ns) + offsets_ns)

    def history(self, t_ns: int, n: int = 16, dt_s: float = 0.1) -> EgoPoses:
        """The n ground-truth poses at t - (n-1) dt ... t in the ego frame at t (last = 0)."""
        offsets_ns = np.round(np.arange(-(n - 1), 1) * dt_s * 1e9).astype(np.int64)
        return self.poses_in_ego_frame(t_ns, int(t_ns) + offsets_ns)

    def lead_vehicle_xy_yaw(self, t_ns: int) -> np.ndarray | None:
        """(3,) lead vehicle centre (x_m, y_m, yaw_rad) in odom, or None without a lead."""
        if self.lead_speed is None:
            return None
        t_s = self.to_scene_s(t_ns)
        xy, yaw, _ = self.road.at(self.config.lead_gap_m + self.lead_speed.distance(t_s))
        return np.array([xy[0, 0], xy[0, 1], yaw[0]])

    # -- sensors -------------------------------------------------------------------------------
    def odom_sample(self, index: int) -> OdomSample:
        """The index-th odometry message (noisy pose, true twist in base_link)."""
        stamp_ns = int(self.stamps.odom_ns[index])
        st = self.ego_state(stamp_ns)
        xy = np.array([st.x_m[0], st.y_m[0]]) + self._odom_xy_noise[index]
        yaw = float(np.angle(np.exp(1j * (st.yaw_rad[0] + self._odom_yaw_noise[index]))))
        speed = float(st.speed_mps[0])
        return OdomSample(stamp_ns, np.array([xy[0], xy[1], 0.0]), yaw,
                          np.array([speed, 0.0, 0.0]),
                          np.array([0.0, 0.0, speed * float(st.curvature_1pm[0])]),
                          self.config.odom_pos_noise_m, self.config.odom_yaw_noise_rad)

    def stopped_vehicle_xy_yaw(self) -> np.ndarray | None:
        """(3,) centre (x_m, y_m, yaw_rad) in odom of the stopped car the ego stops behind in a
        `stop` scene (its rear `_STOP_GAP_M` ahead of the ego's final position), else None."""
        if self.config.kind != "stop":
            return None
        s_m = (float(self.ego_speed.distance(self.t_max_s)) + _STOP_GAP_M
               + _CAR_SIZE_LWH_M[0] / 2.0)
        xy, yaw, _ = self.road.at(np.array([s_m]))
        return np.array([xy[0, 0], xy[0, 1], yaw[0]])

    def scene_geometry(self, t_ns: int) -> SceneGeometry:
        """World geometry visible around the ego at `t_ns` (road window, posts, vehicles)."""
        s_ego = float(self.ego_speed.distance(self.to_scene_s(t_ns)))
        geometry = road_geometry(self.road, s_ego - _VIEW_BEHIND_M, s_ego + _VIEW_AHEAD_M)
        for car, rgb in ((self.lead_vehicle_xy_yaw(t_ns), _LEAD_RGB),
                         (self.stopped_vehicle_xy_yaw(), _STOPPED_RGB)):
            if car is not None:
                geometry.boxes.append((box_corners(car[:2], car[2], _CAR_SIZE_LWH_M), rgb))
        return geometry

    def render(self, camera: str, t_ns: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of `camera` at `t_ns` (ground-truth pose, no blur)."""
        if camera not in self._renderers:
            raise ValueError(f"unknown camera {camera!r}; known: {self.config.camera_names}")
        st = self.ego_state(t_ns)
        pose = np.array([st.x_m[0], st.y_m[0], st.yaw_rad[0]])
        index = self.config.camera_names.index(camera)
        rng = np.random.default_rng([self.config.seed, index, int(t_ns)])
        return self._renderers[camera].render(self.scene_geometry(t_ns), pose, rng)

    def num_events(self) -> int:
        """How many events `events()` yields."""
        return len(self.stamps.odom_ns) + sum(len(v) for v in self.stamps.camera_ns.values())

    def events(self) -> Iterator[DriveEvent]:
        """Odometry and image events in stamp order (odom first on equal stamps)."""
        order = [(int(t), 0, None, i) for i, t in enumerate(self.stamps.odom_ns)]
        for c, name in enumerate(self.config.camera_names):
            order += [(int(t), 1 + c, name, i) for i, t in enumerate(self.stamps.camera_ns[name])]
        order.sort()
        for stamp_ns, _, camera, index in order:
            if camera is None:
                yield DriveEvent(stamp_ns, "odom", None, self.odom_sample(index))
            else:
                yield DriveEvent(stamp_ns, "image", camera, self.render(camera, stamp_ns))


_LEAD_RGB = (180, 30, 30)
_STOPPED_RGB = (40, 60, 170)
#: Distance (m) from the stopped ego's centre to the rear of the stopped car ahead of it.
_STOP_GAP_M = 5.0


def _speed_profiles(config: SceneConfig) -> tuple[SpeedRamp, SpeedRamp | None]:
    """(ego speed profile, lead vehicle speed profile or None)."""
    v = config.speed_mps
    if config.kind == "stop":
        return cosine_stop(v, 0.0, config.brake_at_s, config.decel_mps2), None
    if config.kind == "lead_vehicle_braking":
        vf, t_b = config.final_speed_mps, config.brake_at_s
        return (cosine_stop(v, vf, t_b + config.reaction_s, config.decel_mps2),
                cosine_stop(v, vf, t_b, config.decel_mps2))
    return SpeedRamp(v, v), None


def _curvature_fn(config: SceneConfig):
    """Curvature (1/m) as a function of arc length (N,) -> (N,)."""
    sign = {"curve_left": 1.0, "curve_right": -1.0}.get(config.kind, 0.0)
    start, ramp, kappa = config.curve_start_m, config.curve_ramp_m, sign * config.curvature_1pm

    def curvature(s_m: np.ndarray) -> np.ndarray:
        if ramp <= 0.0:
            return np.where(s_m >= start, kappa, 0.0)
        return kappa * np.clip((s_m - start) / ramp, 0.0, 1.0)

    return curvature


def _draw_stamps(config: SceneConfig) -> _Stamps:
    """Jittered odometry and per-camera stamps within [0, seconds), deterministic per seed."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    odom_s = _jittered(rng, config.odom_rate_hz, config.odom_jitter_s, config.seconds, 0.0)
    offsets_s = rng.uniform(0.0, config.camera_offset_max_s, len(config.cameras))
    camera_ns = {}
    for cam, offset_s in zip(config.cameras, offsets_s, strict=True):
        t_s = _jittered(rng, config.camera_rate_hz, config.camera_jitter_s, config.seconds,
                        offset_s)
        camera_ns[cam.name] = config.start_ns + np.round(t_s * 1e9).astype(np.int64)
    return _Stamps(config.start_ns + np.round(odom_s * 1e9).astype(np.int64), camera_ns)


def _jittered(rng: np.random.Generator, rate_hz: float, jitter_s: float, seconds: float,
              offset_s: float) -> np.ndarray:
    """Stamps (k + 0.5) / rate + offset + clipped Gaussian jitter, kept below `seconds`."""
    nominal = (np.arange(int(np.ceil(seconds * rate_hz))) + 0.5) / rate_hz + offset_s
    jitter = np.clip(rng.normal(0.0, 1.0, len(nominal)) * jitter_s, -0.4 / rate_hz,
                     0.4 / rate_hz)
    t_s = nominal + jitter
    return t_s[t_s < seconds]
