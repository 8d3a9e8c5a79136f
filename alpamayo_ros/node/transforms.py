"""Rigid 3D transforms between the odom frame and the ego frame at t0 (scipy Rotation inside).

Convention: `RigidTransform` T_a_b is the pose of frame b expressed in frame a, so that
p_a = T_a_b.apply(p_b) = R @ p_b + t. The ego pose at t0 in odom is T_odom_ego; plans made in
the ego frame at t0 go to odom with it, and odom poses go to the ego frame with its inverse.
Quaternions are (x, y, z, w) like geometry_msgs and scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class RigidTransform:
    """Pose of a child frame in a parent frame.

    Attributes:
        translation_m: (3,) float64 child origin in the parent frame, metres.
        rotation: child axes in the parent frame (a single scipy Rotation).
    """

    translation_m: np.ndarray
    rotation: Rotation

    def __post_init__(self) -> None:
        translation = np.asarray(self.translation_m, dtype=np.float64).reshape(-1)
        if translation.shape != (3,) or not np.all(np.isfinite(translation)):
            raise ValueError(f"translation_m must be 3 finite values, got {self.translation_m!r}")
        if not self.rotation.single:
            raise ValueError("rotation must be a single Rotation, not a stack")
        object.__setattr__(self, "translation_m", translation)

    @classmethod
    def identity(cls) -> RigidTransform:
        return cls(np.zeros(3), Rotation.identity())

    @classmethod
    def from_xyz_quat(cls, xyz_m: np.ndarray, quat_xyzw: np.ndarray) -> RigidTransform:
        """From a position (3,) in metres and a quaternion (4,) x, y, z, w (normalised here)."""
        quat = np.asarray(quat_xyzw, dtype=np.float64)
        if quat.shape != (4,) or not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-9:
            raise ValueError(f"quat_xyzw must be 4 finite values, not all zero; got {quat_xyzw!r}")
        return cls(np.asarray(xyz_m, dtype=np.float64), Rotation.from_quat(quat))

    @classmethod
    def from_pose_msg(cls, pose: object) -> RigidTransform:
        """From a `geometry_msgs/Pose` (or anything with .position.x.. and .orientation.x..)."""
        p, q = pose.position, pose.orientation
        return cls.from_xyz_quat(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))

    @property
    def quat_xyzw(self) -> np.ndarray:
        """(4,) unit quaternion x, y, z, w with w >= 0."""
        return self.rotation.as_quat(canonical=True)

    @property
    def yaw_rad(self) -> float:
        """Heading of the child x axis about the parent z axis, radians in (-pi, pi]."""
        return float(self.rotation.as_euler("ZYX")[0])

    def inverse(self) -> RigidTransform:
        """T_b_a from T_a_b."""
        inv_rot = self.rotation.inv()
        return RigidTransform(-inv_rot.apply(self.translation_m), inv_rot)

    def compose(self, other: RigidTransform) -> RigidTransform:
        """T_a_c = T_a_b * T_b_c (self is T_a_b, other is T_b_c)."""
        return RigidTransform(self.apply(other.translation_m), self.rotation * other.rotation)

    def apply(self, points_m: np.ndarray) -> np.ndarray:
        """Map points (N, 3) or (3,) from the child frame to the parent frame."""
        return self.rotation.apply(points_m) + self.translation_m

    def apply_rotations(self, rotations: Rotation) -> Rotation:
        """Orientations (N,) given in the child frame, expressed in the parent frame."""
        return self.rotation * rotations

    def to_pose_msg(self, pose: object) -> object:
        """Write this transform into a `geometry_msgs/Pose` (in place) and return it."""
        x, y, z = (float(v) for v in self.translation_m)
        qx, qy, qz, qw = (float(v) for v in self.quat_xyzw)
        pose.position.x, pose.position.y, pose.position.z = x, y, z
        pose.orientation.x, pose.orientation.y = qx, qy
        pose.orientation.z, pose.orientation.w = qz, qw
        return pose


def planar_rotations(yaw_rad: np.ndarray) -> Rotation:
    """Rotations about +z by `yaw_rad` (N,), radians."""
    return Rotation.from_euler("z", np.asarray(yaw_rad, dtype=np.float64).reshape(-1, 1))


def yaw_of(rotations: Rotation) -> np.ndarray:
    """(N,) heading about +z (ZYX Euler yaw), radians in (-pi, pi]."""
    return rotations.as_euler("ZYX")[..., 0]
