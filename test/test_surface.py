"""Surface voxels (scenedino_core.surface) and the ``points.surface_only`` outputs built from them."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scenedino_core.labels import class_table
from scenedino_core.pipeline import FREE, UNKNOWN, FrameResult
from scenedino_core.surface import exposed_voxels, point_surface, surface_subset
from scenedino_core.voxels import VoxelGrid


def test_exposed_voxels():
    occupied = np.zeros((5, 5, 6), bool)
    occupied[1:4, 1:4, 1:4] = True  # a 3x3x3 block: only its centre is hidden
    occupied[0, 0, 5] = True  # a lone voxel in a corner of the grid
    exposed = exposed_voxels(occupied)
    assert exposed.sum() == 26 + 1 and not exposed[2, 2, 2] and exposed[0, 0, 5]
    assert exposed_voxels(np.ones((3, 3, 3), bool)).sum() == 26  # the grid's outside counts as not occupied
    assert not exposed_voxels(np.zeros((2, 2, 2), bool)).any()
    np.testing.assert_array_equal(surface_subset(np.array([[2, 2, 2], [1, 1, 1], [0, 0, 5]]), occupied),
                                  [False, True, True])
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        exposed_voxels(np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        surface_subset(np.zeros((4, 2), int), occupied)


def test_exposed_voxels_match_a_direct_neighbour_count():
    occupied = np.random.default_rng(0).random((9, 8, 7)) < 0.6
    padded = np.pad(occupied, 1)
    hidden = np.ones_like(occupied)
    for dx, dy, dz in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
        hidden &= padded[1 + dx:10 + dx, 1 + dy:9 + dy, 1 + dz:8 + dz]
    np.testing.assert_array_equal(exposed_voxels(occupied), occupied & ~hidden)


def _block_result() -> FrameResult:
    """A solid 4x4x4 block of class 9 (building) in a 6x6x6 grid: 56 surface voxels, 8 hidden."""
    labels = np.full((6, 6, 6), FREE, np.uint8)
    labels[1:5, 1:5, 1:5] = 9
    labels[5] = UNKNOWN
    index = np.argwhere(labels == 9).astype(np.int32)
    grid = VoxelGrid(origin=(0.0, -3.0, 0.0), voxel_size=0.5, dims=(6, 6, 6))
    return FrameResult(
        grid=grid, out_from_grid=np.eye(4), points=(np.asarray(grid.origin) + (index + 0.5) * 0.5).astype(np.float32),
        point_labels=np.full(len(index), 9, np.uint8),
        point_confidence=np.linspace(0.5, 1, len(index), dtype=np.float32),
        point_index=index, voxel_labels=labels, voxel_occupancy=np.zeros(labels.shape, np.uint8),
        bev=np.zeros((6, 6), np.int8), depth=None, semantics=None, intrinsics=np.eye(3))


def test_surface_only_outputs():
    """``points.surface_only``: the cloud and the markers carry the 56 surface voxels of the block, with their own
    positions and confidences; the dense grid keeps every voxel; off (the node's default), all 64."""
    pytest.importorskip("rclpy", reason="ROS 2 Python packages are not installed")
    from builtin_interfaces.msg import Time

    from scenedino_ros import outputs
    from scenedino_ros.params import NodeParams

    r = _block_result()
    names, palette = class_table()
    surface = surface_subset(r.point_index, r.voxel_labels < FREE)
    assert surface.sum() == 56
    np.testing.assert_array_equal(point_surface(r.point_index, r.grid.dims), surface)  # no dense grid needed
    r = dataclasses.replace(r, voxel_labels=None, voxel_occupancy=None)  # as without a ~/voxel_grid subscriber
    cloud_dtype = np.dtype({"names": ["x", "y", "z", "confidence"], "formats": ["<f4"] * 4,
                            "offsets": [0, 4, 8, 20], "itemsize": 24})
    for surface_only, expected in ((False, np.ones(len(surface), bool)), (True, surface)):
        p = dataclasses.replace(NodeParams(), points_surface_only=surface_only)
        built = dict(outputs.build_messages(r, Time(sec=1), "grid", "cam", p, names, palette))
        cloud = np.frombuffer(bytes(built["semantic_points"].data), cloud_dtype)
        np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), r.points[expected])
        np.testing.assert_array_equal(cloud["confidence"], r.point_confidence[expected])
        assert sum(len(m.points) for m in built["voxels"].markers[1:]) == expected.sum()
        if "voxel_grid" in built:
            assert np.count_nonzero(np.frombuffer(bytes(built["voxel_grid"].labels), np.uint8) == 9) == 64
    assert NodeParams().points_surface_only is False
