"""Pinhole rendering of a flat-world road scene for synthetic drives (numpy + cv2, no ROS).

The world is the ground plane z = 0 of the `odom` frame (x forward at start, y left, z up;
metres) with flat polygons on it (road, markings) and boxes standing on it (vehicles, posts).
A camera is a distortion-free pinhole mounted on the ego vehicle (`CameraModel`). Rendering is
painter's algorithm: a precomputed sky/ground background, then ground layers in order, then
boxes far to near with back faces culled. Polygons are clipped against the camera's near plane
before projection, so geometry behind or beside the camera never wraps around.

Dimension glossary:
    N  points of a polygon or point set
    H, W  image height and width in pixels
Frames:
    world  odom frame (REP-103), z = 0 is the ground
    ego    base_link on the ground (x forward, y left, z up)
    cam    optical frame (z forward, x right, y down)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

Rgb = tuple[int, int, int]
Z_NEAR_M = 0.5
_SUBPIXEL_BITS = 4
_SKY_TOP_RGB = np.array([70.0, 130.0, 200.0])
_SKY_HORIZON_RGB = np.array([190.0, 215.0, 235.0])
_GROUND_RGB = (84, 118, 66)
# (optical <- body) axes: optical z = body x, optical x = -body y, optical y = -body z.
_OPTICAL_FROM_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera on the ego vehicle.

    Attributes:
        name: camera name (topic and frame id component).
        width, height: image size in pixels.
        hfov_deg: horizontal field of view in degrees (square pixels, principal point centred).
        yaw_deg: mounting yaw relative to forward, positive to the left (REP-103).
        height_m: optical centre height above the ground.
        pitch_deg: mounting pitch, positive nose down.
        x_m, y_m: optical centre position in the ego frame (forward, left).
    """

    name: str
    width: int = 1920
    height: int = 1080
    hfov_deg: float = 120.0
    yaw_deg: float = 0.0
    height_m: float = 1.5
    pitch_deg: float = 0.0
    x_m: float = 1.5
    y_m: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("name", bool(self.name), "must be a non-empty string"),
            ("width", self.width >= 16, "must be >= 16 px"),
            ("height", self.height >= 16, "must be >= 16 px"),
            ("hfov_deg", 1.0 <= self.hfov_deg <= 170.0, "must be in [1, 170]"),
            ("yaw_deg", -180.0 <= self.yaw_deg <= 180.0, "must be in [-180, 180]"),
            ("height_m", self.height_m > 0.0, "must be > 0"),
            ("pitch_deg", -45.0 <= self.pitch_deg <= 45.0, "must be in [-45, 45]"),
        )
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"CameraModel.{name}: {msg} (got {getattr(self, name)!r})")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (fx = fy)."""
        return 0.5 * self.width / np.tan(np.radians(self.hfov_deg) / 2.0)

    @property
    def horizon_row(self) -> float:
        """Image row of the horizon (rows below it see the ground)."""
        return self.height / 2.0 - self.focal_px * np.tan(np.radians(self.pitch_deg))

    def ego_from_camera_body(self) -> np.ndarray:
        """(3, 3) rotation of the camera body (x forward, y left, z up) in the ego frame."""
        angles = np.radians([self.yaw_deg, self.pitch_deg])
        return Rotation.from_euler("ZY", angles).as_matrix()


def default_rig(width: int = 1920, height: int = 1080) -> tuple[CameraModel, ...]:
    """The default 4-camera rig in model order (cross-left, front-wide, cross-right, tele)."""
    return (
        CameraModel("camera_cross_left_120fov", width, height, 120.0, 60.0, 1.6, 8.0, 2.0, 0.9),
        CameraModel("camera_front_wide_120fov", width, height, 120.0, 0.0, 1.5, 5.0, 1.8, 0.0),
        CameraModel("camera_cross_right_120fov", width, height, 120.0, -60.0, 1.6, 8.0, 2.0, -0.9),
        CameraModel("camera_front_tele_30fov", width, height, 30.0, 0.0, 1.5, 0.0, 1.8, 0.0),
    )


def camera_from_world(camera: CameraModel, ego_xy_yaw: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid transform world -> optical frame: `p_cam = R @ p_world + t`.

    Args:
        ego_xy_yaw: (3,) ego pose in the world (x_m, y_m, yaw_rad), ego on the ground.
    Returns:
        R (3, 3) and t (3,).
    """
    x, y, yaw = (float(v) for v in ego_xy_yaw)
    world_from_ego = Rotation.from_euler("z", yaw).as_matrix()
    mount_ego = np.array([camera.x_m, camera.y_m, camera.height_m])
    world_from_body = world_from_ego @ camera.ego_from_camera_body()
    cam_pos_world = np.array([x, y, 0.0]) + world_from_ego @ mount_ego
    rot = _OPTICAL_FROM_BODY @ world_from_body.T
    return rot, -rot @ cam_pos_world


def project_points(camera: CameraModel, xyz_cam: np.ndarray) -> np.ndarray:
    """Project (N, 3) optical-frame points (z > 0) to (N, 2) pixel coordinates (u, v)."""
    f = camera.focal_px
    z = xyz_cam[:, 2]
    u = camera.width / 2.0 + f * xyz_cam[:, 0] / z
    v = camera.height / 2.0 + f * xyz_cam[:, 1] / z
    return np.stack([u, v], axis=1)


def project_ego_points(camera: CameraModel, xyz_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) ego-frame points; returns (N, 2) pixels and an (N,) in-front mask."""
    rot, t = camera_from_world(camera, np.zeros(3))
    xyz_cam = np.asarray(xyz_ego, dtype=float) @ rot.T + t
    in_front = xyz_cam[:, 2] > Z_NEAR_M
    safe = np.where(in_front[:, None], xyz_cam, np.array([0.0, 0.0, 1.0]))
    return project_points(camera, safe), in_front


def clip_polygon_near(poly_cam: np.ndarray, z_near: float = Z_NEAR_M) -> np.ndarray:
    """Sutherland-Hodgman clip of a closed (N, 3) optical-frame polygon to z >= z_near.

    Vectorised over edges: edge i (P_i -> P_i+1) emits P_i if inside and the crossing point if
    the edge crosses the plane. Returns (M, 3), M = 0 when the polygon is fully behind.
    """
    nxt = np.roll(poly_cam, -1, axis=0)
    z0, z1 = poly_cam[:, 2], nxt[:, 2]
    inside0, inside1 = z0 >= z_near, z1 >= z_near
    crosses = inside0 != inside1
    denom = np.where(crosses, z1 - z0, 1.0)
    frac = np.where(crosses, (z_near - z0) / denom, 0.0)
    crossing = poly_cam + frac[:, None] * (nxt - poly_cam)
    candidates = np.stack([poly_cam, crossing], axis=1).reshape(-1, 3)  # (2N, 3)
    keep = np.stack([inside0, crosses], axis=1).reshape(-1)
    return candidates[keep]


# Box corner k has offsets (bit0: +x, bit1: +y, bit2: +z); faces listed with outward normal.
_BOX_FACES = ((1, 3, 7, 5), (0, 4, 6, 2), (2, 6, 7, 3), (0, 1, 5, 4), (4, 5, 7, 6), (0, 2, 3, 1))
_FACE_SHADE = (0.85, 0.75, 0.65, 0.65, 1.0, 0.5)


def box_corners(center_xy: np.ndarray, yaw_rad: float, size_lwh_m: tuple[float, float, float]
                ) -> np.ndarray:
    """(8, 3) world corners of a box standing on the ground (bit0 +x, bit1 +y, bit2 +z)."""
    length, width, height = size_lwh_m
    bits = np.array([[(k >> b) & 1 for b in range(3)] for k in range(8)], dtype=float)
    local = (bits - [0.5, 0.5, 0.0]) * [length, width, height]
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return local @ rot.T + np.array([center_xy[0], center_xy[1], 0.0])


@dataclass(frozen=True)
class SceneGeometry:
    """What one frame shows, in world coordinates.

    Attributes:
        ground_layers: ordered (polygons, rgb) pairs; each polygon (N, 3) on the ground.
        boxes: (corners (8, 3) from `box_corners`, rgb) pairs, any order.
    """

    ground_layers: list[tuple[list[np.ndarray], Rgb]] = field(default_factory=list)
    boxes: list[tuple[np.ndarray, Rgb]] = field(default_factory=list)


class CameraRenderer:
    """Renders `SceneGeometry` through one camera; holds the camera's cached background."""

    def __init__(self, camera: CameraModel, noise_std: float = 0.0, seed: int = 0) -> None:
        self.camera = camera
        self._background = _background(camera)
        self._noise = _noise_field(camera, noise_std, seed) if noise_std > 0 else None
        self._noise_std = noise_std

    def render(self, geometry: SceneGeometry, ego_xy_yaw: np.ndarray,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB view of `geometry` from the ego pose (x_m, y_m, yaw_rad)."""
        image = self._background.copy()
        rot, t = camera_from_world(self.camera, ego_xy_yaw)
        for polygons, rgb in geometry.ground_layers:
            self._fill(image, [p @ rot.T + t for p in polygons], rgb)
        cam_pos_world = -rot.T @ t
        order = sorted(geometry.boxes, key=lambda b: -np.linalg.norm(b[0].mean(0) - cam_pos_world))
        for corners, rgb in order:
            self._draw_box(image, corners, rgb, rot, t, cam_pos_world)
        if self._noise is not None:
            image = self._add_noise(image, rng or np.random.default_rng(0))
        return image

    def _fill(self, image: np.ndarray, polygons_cam: list[np.ndarray], rgb) -> None:
        pixel_polys = []
        for poly in polygons_cam:
            if np.all(poly[:, 2] < Z_NEAR_M):
                continue
            if np.any(poly[:, 2] < Z_NEAR_M):
                poly = clip_polygon_near(poly)
            if len(poly) >= 3:
                uv = np.clip(project_points(self.camera, poly), -1e5, 1e5)
                pixel_polys.append(np.round(uv * (1 << _SUBPIXEL_BITS)).astype(np.int32))
        if pixel_polys:
            cv2.fillPoly(image, pixel_polys, tuple(int(c) for c in rgb), cv2.LINE_AA,
                         shift=_SUBPIXEL_BITS)

    def _draw_box(self, image, corners, rgb, rot, t, cam_pos_world) -> None:
        center = corners.mean(axis=0)
        for face, shade in zip(_BOX_FACES, _FACE_SHADE, strict=True):
            quad = corners[list(face)]
            face_center = quad.mean(axis=0)
            normal = face_center - center
            if np.dot(normal, cam_pos_world - face_center) <= 0.0:
                continue
            self._fill(image, [quad @ rot.T + t], tuple(shade * np.asarray(rgb)))

    def _add_noise(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        dy, dx = rng.integers(0, _NOISE_PAD, size=2)
        window = self._noise[dy:dy + h, dx:dx + w]
        bias = round(3 * self._noise_std)
        return cv2.subtract(cv2.add(image, window), (bias, bias, bias, 0))


_NOISE_PAD = 64


def _noise_field(camera: CameraModel, noise_std: float, seed: int) -> np.ndarray:
    """(H + pad, W + pad, 3) uint8 Gaussian noise biased by 3 sigma; windows of it are added."""
    rng = np.random.default_rng(seed)
    shape = (camera.height + _NOISE_PAD, camera.width + _NOISE_PAD, 3)
    bias = round(3 * noise_std)
    noise = rng.normal(bias, noise_std, size=shape).astype(np.float32)
    return np.clip(np.round(noise), 0, 255).astype(np.uint8)


def _background(camera: CameraModel) -> np.ndarray:
    """(H, W, 3) uint8: sky gradient above the horizon row, plain ground below."""
    h, w = camera.height, camera.width
    horizon = int(np.clip(np.round(camera.horizon_row), 0, h))
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[horizon:] = _GROUND_RGB
    if horizon > 0:
        frac = np.linspace(0.0, 1.0, horizon)[:, None]
        sky = (1.0 - frac) * _SKY_TOP_RGB + frac * _SKY_HORIZON_RGB  # (horizon, 3)
        image[:horizon] = np.round(sky).astype(np.uint8)[:, None, :]
    return image
