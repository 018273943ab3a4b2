"""Pure message builders: numpy arrays -> ROS 2 messages, with no node and no ``rclpy.init``.

Byte fields are assigned the bytes of a numpy array (``ndarray.tobytes()``: the message stores them as its
``array.array`` with one more copy; never Python lists). Multi-byte data is written little-endian and flagged so
(``is_bigendian = False``) on any host. Point clouds are filled field by field into one structured array.

* ``semantic_cloud``: ``sensor_msgs/PointCloud2`` with x, y, z (float32), rgb (PCL-style packed float32), label
  (uint32), confidence (float32); 24-byte points, every field 4-byte aligned.
* ``occupancy_grid``: ``nav_msgs/OccupancyGrid`` from a (rows, cols) int8 bird's-eye view.
* ``voxel_markers``: ``visualization_msgs/MarkerArray``, one CUBE_LIST per class, capped.
* ``depth_image`` (32FC1) and ``rgb_image`` (rgb8): ``sensor_msgs/Image``.
* ``semantic_voxel_grid``: ``scenedino_ros/SemanticVoxelGrid`` (generated from ``msg/``).
* ``diagnostic_array``: ``diagnostic_msgs/DiagnosticArray`` with one status.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from .frames import matrix_to_xyz_quat

#: Layout of ``semantic_cloud`` points: (name, offset, PointField datatype, numpy dtype).
CLOUD_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("x", 0, PointField.FLOAT32, "<f4"),
    ("y", 4, PointField.FLOAT32, "<f4"),
    ("z", 8, PointField.FLOAT32, "<f4"),
    ("rgb", 12, PointField.FLOAT32, "<u4"),  # PCL packs 0x00RRGGBB into a float32 field; we write the same bits
    ("label", 16, PointField.UINT32, "<u4"),
    ("confidence", 20, PointField.FLOAT32, "<f4"),
)
CLOUD_POINT_STEP = 24
CLOUD_DTYPE = np.dtype({"names": [f[0] for f in CLOUD_FIELDS], "formats": [f[3] for f in CLOUD_FIELDS],
                        "offsets": [f[1] for f in CLOUD_FIELDS], "itemsize": CLOUD_POINT_STEP})


def _bytes(arr: np.ndarray) -> bytes:
    """The C-order bytes of ``arr`` (one copy; a message's byte-array setter takes them with one memcpy)."""
    return np.ascontiguousarray(arr).tobytes()


def pose_msg(T: np.ndarray) -> Pose:
    """``geometry_msgs/Pose`` of a (4, 4) rigid transform."""
    (x, y, z), (qx, qy, qz, qw) = matrix_to_xyz_quat(np.asarray(T, dtype=np.float64))
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = x, y, z
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    return pose


def translated(T: np.ndarray, xyz: Sequence[float]) -> np.ndarray:
    """``T @ translation(xyz)``: the pose of a point given in T's source frame, with T's rotation."""
    out = np.array(T, dtype=np.float64)
    out[:3, 3] = T[:3, :3] @ np.asarray(xyz, dtype=np.float64) + T[:3, 3]
    return out


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) uint32 ``0x00RRGGBB`` (the bits PCL stores in its float32 ``rgb`` field)."""
    c = np.asarray(colors, dtype=np.uint8)
    packed = c[:, 0].astype(np.uint32) << 16
    packed |= c[:, 1].astype(np.uint32) << 8
    packed |= c[:, 2]
    return packed


def semantic_cloud(header: Header, points: np.ndarray, labels: np.ndarray, colors: np.ndarray,
                   confidence: np.ndarray) -> PointCloud2:
    """Unordered PointCloud2 of N labelled points.

    Args:
        header: stamp and frame of the points.
        points: (N, 3) float positions (m).
        labels: (N,) integer class labels.
        colors: (N, 3) uint8 RGB per point, or (N,) uint32 already packed (``pack_rgb``).
        confidence: (N,) float in [0, 1].
    """
    n = len(points)
    if not (len(labels) == len(colors) == len(confidence) == n):
        raise ValueError(f"points, labels, colors, confidence must have the same length, got {n}, {len(labels)}, "
                         f"{len(colors)}, {len(confidence)}")
    cloud = np.empty(n, dtype=CLOUD_DTYPE)  # the six fields cover all 24 bytes of a point
    pts = np.asarray(points).reshape(n, 3)
    cloud["x"], cloud["y"], cloud["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    colors = np.asarray(colors)
    cloud["rgb"] = colors if colors.ndim == 1 else pack_rgb(colors.reshape(n, 3))
    cloud["label"] = labels
    cloud["confidence"] = confidence
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=name, offset=off, datatype=dt, count=1) for name, off, dt, _ in CLOUD_FIELDS]
    msg.is_bigendian = False
    msg.point_step = CLOUD_POINT_STEP
    msg.row_step = CLOUD_POINT_STEP * n
    msg.is_dense = True
    msg.data = _bytes(cloud)
    return msg


def occupancy_grid(header: Header, bev: np.ndarray, resolution: float, origin: np.ndarray) -> OccupancyGrid:
    """``nav_msgs/OccupancyGrid`` from a (rows, cols) int8 array (``bev[j, i]`` = cell (i, j), index i + j * cols).

    Args:
        origin: (4, 4) pose of the outer corner of cell (0, 0) in ``header.frame_id`` (x along columns, y along rows).
    """
    bev = np.asarray(bev)
    if bev.ndim != 2 or bev.dtype != np.int8:
        raise ValueError(f"bev must be a 2D int8 array, got {bev.shape} {bev.dtype}")
    msg = OccupancyGrid()
    msg.header = header
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(resolution)
    msg.info.height, msg.info.width = int(bev.shape[0]), int(bev.shape[1])
    msg.info.origin = pose_msg(origin)
    msg.data = np.ascontiguousarray(bev).tobytes()
    return msg


def voxel_markers(header: Header, centres: np.ndarray, labels: np.ndarray, palette: np.ndarray,
                  voxel_size: float, pose: np.ndarray, max_voxels: int, ns: str = "scenedino") -> MarkerArray:
    """A DELETEALL marker, then one CUBE_LIST per class present, at most ``max_voxels`` cubes in all.

    Args:
        centres: (N, 3) voxel centres in the frame ``pose`` places (the grid frame, so cubes align with the grid).
        labels: (N,) class labels; marker id = label, colour = ``palette[label]``.
        palette: (C, 3) uint8 class colours.
        pose: (4, 4) pose of the centres' frame in ``header.frame_id``.
        max_voxels: cap; when exceeded, an evenly spaced subset is drawn.
    """
    clear = Marker(header=header, ns=ns, action=Marker.DELETEALL)
    out = MarkerArray(markers=[clear])
    n = len(centres)
    if n == 0 or max_voxels <= 0:
        return out
    if n > max_voxels:
        keep = np.linspace(0, n - 1, max_voxels).astype(np.int64)
        centres, labels = centres[keep], labels[keep]
    labels = np.asarray(labels)
    pose_ros = pose_msg(pose)
    scale = float(voxel_size)
    for cls in np.unique(labels).tolist():
        pts = np.asarray(centres[labels == cls], dtype=np.float64)
        r, g, b = (palette[cls].astype(np.float64) / 255.0).tolist()
        m = Marker(header=header, ns=ns, id=int(cls), type=Marker.CUBE_LIST, action=Marker.ADD, pose=pose_ros)
        m.scale.x = m.scale.y = m.scale.z = scale
        m.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        m.points = [Point(x=x, y=y, z=z) for x, y, z in pts.tolist()]
        out.markers.append(m)
    return out


def depth_image(header: Header, depth: np.ndarray) -> Image:
    """32FC1 ``sensor_msgs/Image`` from an (h, w) array of metres."""
    d = np.asarray(depth, dtype="<f4")
    if d.ndim != 2:
        raise ValueError(f"depth must be (h, w), got {d.shape}")
    return Image(header=header, height=d.shape[0], width=d.shape[1], encoding="32FC1", is_bigendian=False,
                 step=d.shape[1] * 4, data=_bytes(d))


def rgb_image(header: Header, rgb: np.ndarray) -> Image:
    """rgb8 ``sensor_msgs/Image`` from an (h, w, 3) uint8 array."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"rgb must be (h, w, 3) uint8, got {a.shape} {a.dtype}")
    return Image(header=header, height=a.shape[0], width=a.shape[1], encoding="rgb8", is_bigendian=False,
                 step=a.shape[1] * 3, data=_bytes(a))


def semantic_voxel_grid(header: Header, origin: np.ndarray, resolution: float, labels: np.ndarray,
                        occupancy: np.ndarray, class_names: Sequence[str], palette: np.ndarray):
    """``scenedino_ros/SemanticVoxelGrid`` from (X, Y, Z) arrays indexed [x, y, z].

    Args:
        origin: (4, 4) pose of the grid frame in ``header.frame_id``, translated to the minimum corner of voxel 0.
        labels: (X, Y, Z) uint8 class index, FREE (254) or UNKNOWN (255).
        occupancy: (X, Y, Z) uint8 percent, or 255 unknown.
        class_names, palette: the class table; ``palette`` is (C, 3) uint8.
    """
    from scenedino_ros.msg import SemanticVoxelGrid  # generated by CMake (scripts/build_msgs.sh or colcon)

    if labels.shape != occupancy.shape or labels.ndim != 3:
        raise ValueError(f"labels and occupancy must be the same (X, Y, Z) shape, got {labels.shape} "
                         f"and {occupancy.shape}")
    msg = SemanticVoxelGrid()
    msg.header = header
    msg.origin = pose_msg(origin)
    msg.resolution = float(resolution)
    msg.size_x, msg.size_y, msg.size_z = (int(s) for s in labels.shape)
    msg.class_names = list(class_names)
    msg.class_colors = [ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
                        for r, g, b in np.asarray(palette, dtype=np.float64).tolist()]
    # (X, Y, Z) -> (Z, Y, X) in C order: index = x + size_x * (y + size_y * z)
    msg.labels = _bytes(np.asarray(labels, dtype=np.uint8).transpose(2, 1, 0))
    msg.occupancy = _bytes(np.asarray(occupancy, dtype=np.uint8).transpose(2, 1, 0))
    return msg


#: Diagnostic levels by name.
LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def diagnostic_array(stamp: Any, name: str, hardware_id: str, level: str, message: str,
                     values: Mapping[str, Any]) -> DiagnosticArray:
    """``diagnostic_msgs/DiagnosticArray`` with one status; values are rendered with ``str`` (floats to 4 digits)."""
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=text(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
