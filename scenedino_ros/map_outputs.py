"""The map's output messages (``~/map/*``), built from a ``MapSnapshot`` with no node: shared by the node and
``scenedino-process-bag``.

* ``map/occupancy`` (``nav_msgs/OccupancyGrid``, latched): the bird's-eye view of the window, 100 occupied / 0 free
  / -1 never observed, from the voxels whose centre lies ``occupancy.min_height_m`` .. ``occupancy.max_height_m``
  above the ground below the latest fused camera (the grid frame's z = 0 plane), ground classes never occupied;
  the grid lies at that ground height.
* ``map/semantic_points`` (``sensor_msgs/PointCloud2``): the occupied voxel centres, the fields of
  ``~/semantic_points`` (x, y, z, rgb, label, and confidence = the fused occupancy probability); only the surface
  voxels with ``points.surface_only``.
* ``map/voxel_grid`` (``scenedino_ros/SemanticVoxelGrid``): the dense window, labels (fused class, FREE, UNKNOWN)
  and occupancy in percent (255 never observed).

All in the map frame, stamped with the latest fused frame's stamp; axis-aligned with the map frame.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from scenedino_core.mapping.observation import FREE, OCCUPANCY_UNKNOWN, UNKNOWN
from scenedino_core.surface import exposed_voxels

from . import messages
from .map_fusion import MapSettings, MapSnapshot
from .outputs import semantic_voxel_grid_type

#: Map outputs by name relative to the node (``~/<name>``), in publishing order.
MAP_OUTPUT_NAMES = ("map/occupancy", "map/semantic_points", "map/voxel_grid")
#: Map outputs published latched (reliable, transient local, depth 1).
LATCHED_MAP_OUTPUTS = frozenset({"map/occupancy"})


def map_output_types(*, voxel_grid: bool = True) -> dict[str, type]:
    """Name -> message type of every map output (``voxel_grid`` False leaves ``map/voxel_grid`` out: the message
    is not generated)."""
    types: dict[str, type] = {"map/occupancy": OccupancyGrid, "map/semantic_points": PointCloud2}
    if voxel_grid:
        types["map/voxel_grid"] = semantic_voxel_grid_type()
    return types


def _translation(xyz) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = xyz
    return T


def occupancy_percent(snapshot: MapSnapshot) -> np.ndarray:
    """(X, Y, Z) uint8 fused occupancy probability in percent, ``OCCUPANCY_UNKNOWN`` (255) never observed."""
    d = snapshot.dense
    return np.where(d.observed, np.rint(d.probability * 100.0), OCCUPANCY_UNKNOWN).astype(np.uint8)


def bird_eye_view(snapshot: MapSnapshot, settings: MapSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """((Y, X) int8 bird's-eye view, (4, 4) pose of its cell (0, 0) corner), or None when no voxel centre of the
    window lies in the height band."""
    d = snapshot.dense
    lo, hi = snapshot.ground_z_m + settings.bev_min_height_m, snapshot.ground_z_m + settings.bev_max_height_m
    s = d.voxel_size
    z = (d.origin_index[2] + np.arange(d.labels.shape[2]) + 0.5) * s
    band = (z >= lo) & (z <= hi)
    if not band.any():
        return None
    lab = d.labels[:, :, band]
    occupied = (lab != FREE) & (lab != UNKNOWN) & ~np.isin(lab, np.asarray(settings.ground_labels, dtype=np.uint8))
    seen = lab != UNKNOWN
    data = np.where(occupied.any(axis=2), 100, np.where(seen.any(axis=2), 0, -1)).astype(np.int8)
    origin = _translation((d.origin_index[0] * s, d.origin_index[1] * s, snapshot.ground_z_m))
    return np.ascontiguousarray(data.T), origin


def occupied_points(snapshot: MapSnapshot, surface_only: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) float32 centres (map frame), (N,) uint8 labels and (N,) float32 occupancy probabilities of the occupied
    voxels (window order), only the surface ones with ``surface_only``."""
    d = snapshot.dense
    occupied = d.occupied
    index = np.argwhere(exposed_voxels(occupied) if surface_only else occupied)
    centres = ((np.asarray(d.origin_index) + index + 0.5) * d.voxel_size).astype(np.float32)
    sel = tuple(index.T)
    return centres, d.labels[sel], d.probability[sel].astype(np.float32)


def map_messages(snapshot: MapSnapshot, settings: MapSettings, class_names: tuple[str, ...], palette: np.ndarray,
                 outputs: Collection[str] | None = None) -> list[tuple[str, Any]]:
    """The map's output messages, in publishing order.

    Args:
        snapshot: the map (``MapFusion.snapshot``).
        settings: bird's-eye band, surface-only points (``MapSettings``).
        class_names: (16,) SSC class names; palette: (16, 3) uint8 class colours.
        outputs: names to build (default: all of ``MAP_OUTPUT_NAMES``).

    Returns:
        (name, message) pairs; ``map/occupancy`` is left out when no voxel centre of the window lies in the height
        band.
    """
    wanted = set(MAP_OUTPUT_NAMES if outputs is None else outputs)
    stamp_ns = snapshot.stamp_ns
    header = Header(frame_id=snapshot.frame)
    header.stamp.sec, header.stamp.nanosec = stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
    d = snapshot.dense
    out: list[tuple[str, Any]] = []
    if "map/occupancy" in wanted:
        bev = bird_eye_view(snapshot, settings)
        if bev is not None:
            out.append(("map/occupancy", messages.occupancy_grid(header, bev[0], d.voxel_size, bev[1])))
    if "map/semantic_points" in wanted:
        points, labels, probability = occupied_points(snapshot, settings.surface_only)
        out.append(("map/semantic_points", messages.semantic_cloud(header, points, labels, palette[labels],
                                                                   probability)))
    if "map/voxel_grid" in wanted:
        origin = _translation(np.asarray(d.origin_index, dtype=np.float64) * d.voxel_size)
        out.append(("map/voxel_grid", messages.semantic_voxel_grid(header, origin, d.voxel_size, d.labels,
                                                                   occupancy_percent(snapshot), class_names,
                                                                   palette)))
    return out
