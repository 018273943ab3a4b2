"""Where the voxel grid lives and which frame the outputs are published in (REP-103/105).

The voxel grid is an axis-aligned box in a gravity-aligned *grid frame* (x forward, y left, z up). Two transforms
per image describe it:

* ``cam_from_grid``: grid frame -> camera optical frame (x right, y down, z forward), for the voxel query;
* ``out_from_grid``: grid frame -> output frame (``header.frame_id`` of every voxel output).

Three sources, in the order the node picks them:

1. ``target_frame`` set and TF available (``tf2_ros`` importable, ``use_tf``): the grid frame *is* the target frame
   (e.g. ``base_link``); the camera pose is looked up at the image stamp.
2. ``target_frame`` set, no TF: the same, with the camera pose from parameters (``camera_pose.*``).
3. ``target_frame`` empty: outputs in the camera optical frame; the grid frame is the gravity-aligned frame that the
   ``camera_pose.*`` parameters place the camera in (e.g. on the ground below it), and poses of grid messages carry
   the rotation.

No ROS import: TF is reached through any object with tf2's ``lookup_transform(target, source, time, timeout)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

#: Rotation taking body-frame vectors (x forward, y left, z up) to optical-frame vectors (x right, y down, z forward).
OPTICAL_FROM_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


class FrameError(RuntimeError):
    """The camera pose for an image is not available (TF lookup failed)."""


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (radians, fixed axes x-y-z, REP-103)."""
    return Rotation.from_euler("xyz", [roll, pitch, yaw]).as_matrix()


def camera_pose_from_rpy(xyz_m: Sequence[float], rpy_deg: Sequence[float]) -> np.ndarray:
    """(4, 4) pose of the camera *optical* frame in the grid frame, from a body-style mount description.

    Args:
        xyz_m: camera position in the grid frame (x forward, y left, z up; z is the height above the grid's z = 0).
        rpy_deg: roll, pitch, yaw of the camera body (x along the optical axis, y left, z up) in degrees; pitch > 0
            tilts the camera down (REP-103: positive rotation about y turns x towards -z).
    """
    T = np.eye(4)
    T[:3, :3] = rpy_matrix(*np.deg2rad(np.asarray(rpy_deg, dtype=np.float64))) @ OPTICAL_FROM_BODY.T
    T[:3, 3] = np.asarray(xyz_m, dtype=np.float64)
    return T


def rigid_matrix(values: Sequence[float], what: str = "matrix") -> np.ndarray:
    """(4, 4) from 16 row-major values; ``ValueError`` unless it is a proper rigid transform (R orthonormal, det +1)."""
    m = np.asarray(values, dtype=np.float64)
    if m.size != 16:
        raise ValueError(f"{what} needs 16 row-major values, got {m.size}")
    m = m.reshape(4, 4)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{what} contains NaN or infinite values")
    R = m[:3, :3]
    if not np.allclose(m[3], [0, 0, 0, 1]) or not np.allclose(R @ R.T, np.eye(3), atol=1e-4) \
            or np.linalg.det(R) < 0:
        raise ValueError(f"{what} is not a rigid transform (orthonormal rotation with det +1, last row 0 0 0 1)")
    return m


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a (4, 4) rigid transform."""
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def transform_to_matrix(transform: Any) -> np.ndarray:
    """(4, 4) from a ``geometry_msgs/Transform`` (``translation``, ``rotation`` quaternion)."""
    t, q = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def matrix_to_xyz_quat(T: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    """Translation (x, y, z) and unit quaternion (x, y, z, w) of a (4, 4) rigid transform."""
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in T[:3, 3]), tuple(float(v) for v in q)  # type: ignore[return-value]


@dataclass(frozen=True)
class FrameSet:
    """Transforms for one image."""

    frame_id: str
    """Output frame (``header.frame_id`` of the voxel outputs)."""
    cam_from_grid: np.ndarray
    """(4, 4) grid frame -> camera optical frame."""
    out_from_grid: np.ndarray
    """(4, 4) grid frame -> output frame."""


class FrameResolver:
    """Turns (camera frame, stamp) into a ``FrameSet``.

    Args:
        target_frame: output/grid frame, or "" for the camera optical frame.
        grid_from_camera: (4, 4) static pose of the camera optical frame in the grid frame (``camera_pose.*``).
        tf_buffer: a tf2 ``Buffer`` (or anything with its ``lookup_transform``) to look the pose up instead; None to
            use ``grid_from_camera``. Only used with a ``target_frame``.
        tf_timeout_s: how long a lookup may wait for the transform.
    """

    def __init__(self, target_frame: str, grid_from_camera: np.ndarray, tf_buffer: Any = None,
                 tf_timeout_s: float = 0.0):
        self.target_frame = target_frame
        self.grid_from_camera = np.asarray(grid_from_camera, dtype=np.float64)
        self.tf_buffer = tf_buffer if target_frame else None
        self.tf_timeout_s = tf_timeout_s
        self._static_cam_from_grid = invert(self.grid_from_camera)

    @property
    def uses_tf(self) -> bool:
        return self.tf_buffer is not None

    def resolve(self, camera_frame: str, stamp: Any = None) -> FrameSet:
        """Transforms for an image from ``camera_frame`` taken at ``stamp`` (a ``builtin_interfaces/Time``)."""
        if not self.target_frame:
            return FrameSet(camera_frame, self._static_cam_from_grid, self._static_cam_from_grid)
        if self.tf_buffer is None:
            return FrameSet(self.target_frame, self._static_cam_from_grid, np.eye(4))
        target_from_cam = self._lookup(camera_frame, stamp)
        return FrameSet(self.target_frame, invert(target_from_cam), np.eye(4))

    def _lookup(self, camera_frame: str, stamp: Any) -> np.ndarray:
        from rclpy.duration import Duration  # only reached with a tf2 buffer, i.e. with rclpy
        from rclpy.time import Time

        try:
            tf = self.tf_buffer.lookup_transform(self.target_frame, camera_frame, Time.from_msg(stamp),
                                                 timeout=Duration(seconds=self.tf_timeout_s))
        except Exception as exc:  # tf2's LookupException/ExtrapolationException/... share no importable base here
            raise FrameError(f"no transform {self.target_frame} <- {camera_frame} at the image stamp "
                             f"({type(exc).__name__}: {exc}); publish it, or set use_tf:=false to use the "
                             f"camera_pose.* parameters") from exc
        return transform_to_matrix(tf.transform)
