"""Which frame voxel each map voxel takes its evidence from (nearest neighbour, pulled by the map voxel).

Map voxel ``m`` (integer index in the map frame) has its centre at ``(m + 0.5) * s``; it takes the frame voxel whose
cube contains that centre, ``f = floor(A m + b)`` with ``A = R * s / s_frame`` and ``b`` from the pose
(``grid_from_map = [R | t]``). Pulling (one lookup per map voxel) leaves no holes when the frame grid is rotated
against the map, unlike pushing frame voxels into the map.

Two cases:

* **aligned** (``A`` is the identity and the lattices coincide: same voxel size, no rotation, an integer voxel
  offset; a straight drive in a gravity-aligned frame): ``f = m + offset``, and the map box and the frame grid meet
  in a box, read with slices (no index arrays);
* **general**: ``f`` per map voxel in the frame grid's bounding box, computed as broadcast sums of per-axis terms
  (for a yaw-only rotation the x / y indices are 2-D and z is 1-D: no per-voxel 3-D transform).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenedino_core.voxels import VoxelGrid

#: Tolerance on ``A``'s entries for the aligned case and on dropping zero terms in the general case.
_EPS = 1e-9


@dataclass(frozen=True)
class Correspondence:
    """Map voxels of the box ``[lo, hi)`` and their frame voxels.

    Aligned: ``offset`` is set; frame index = map index + offset for every voxel of the box (all inside the frame
    grid). General: ``flat`` is set, (hi - lo) int64 flat (C-order) frame indices, ``sentinel`` (= number of frame
    voxels) where the centre falls outside the frame grid.
    """

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    offset: tuple[int, int, int] | None = None
    flat: np.ndarray | None = None
    sentinel: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(b - a for a, b in zip(self.lo, self.hi))  # type: ignore[return-value]


def affine(frame_grid: VoxelGrid, grid_from_map: np.ndarray, map_voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(A (3, 3), b (3,)) with continuous frame index = A @ m + b for map voxel index m (float64)."""
    R, t = grid_from_map[:3, :3], grid_from_map[:3, 3]
    s, sf = float(map_voxel_size), float(frame_grid.voxel_size)
    A = R * (s / sf)
    b = (R @ np.full(3, 0.5 * s) + t - np.asarray(frame_grid.origin, dtype=np.float64)) / sf
    return A, b


def frame_box_in_map(frame_grid: VoxelGrid, map_from_grid: np.ndarray, map_voxel_size: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Map-index box [lo, hi) (int64) that holds every map voxel whose centre can fall in the frame grid."""
    o = np.asarray(frame_grid.origin, dtype=np.float64)
    ext = np.asarray(frame_grid.dims, dtype=np.float64) * frame_grid.voxel_size
    corners = o + np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64) * ext
    pts = corners @ map_from_grid[:3, :3].T + map_from_grid[:3, 3]
    s = float(map_voxel_size)
    return (np.floor(pts.min(axis=0) / s - 0.5).astype(np.int64),
            np.ceil(pts.max(axis=0) / s - 0.5).astype(np.int64) + 1)


def correspond(frame_grid: VoxelGrid, map_from_grid: np.ndarray, map_voxel_size: float,
               window_lo: tuple[int, int, int], window_hi: tuple[int, int, int]) -> Correspondence | None:
    """The correspondence of the window voxels that can see the frame grid; None when none can."""
    grid_from_map = np.linalg.inv(map_from_grid)
    A, b = affine(frame_grid, grid_from_map, map_voxel_size)
    dims = np.asarray(frame_grid.dims, dtype=np.int64)
    wlo, whi = np.asarray(window_lo, dtype=np.int64), np.asarray(window_hi, dtype=np.int64)
    fb = np.floor(b)
    frac = b - fb
    if np.all(np.abs(A - np.eye(3)) < _EPS) and np.all((frac > 1e-6) & (frac < 1 - 1e-6)):
        offset = fb.astype(np.int64)
        lo, hi = np.maximum(wlo, -offset), np.minimum(whi, dims - offset)
        if np.any(lo >= hi):
            return None
        return Correspondence(tuple(int(v) for v in lo), tuple(int(v) for v in hi),  # type: ignore[arg-type]
                              offset=tuple(int(v) for v in offset))  # type: ignore[arg-type]
    blo, bhi = frame_box_in_map(frame_grid, map_from_grid, map_voxel_size)
    lo, hi = np.maximum(wlo, blo), np.minimum(whi, bhi)
    if np.any(lo >= hi):
        return None
    shape = tuple(int(v) for v in hi - lo)
    base = A @ lo.astype(np.float64) + b  # frame index of the box's first voxel
    ramps = [np.arange(n, dtype=np.float64) for n in shape]
    index, valid = [], None
    for a in range(3):
        f = np.full((1, 1, 1), base[a])
        for c in range(3):
            if abs(A[a, c]) > _EPS:
                r = ramps[c] * A[a, c]
                f = f + r.reshape([-1 if k == c else 1 for k in range(3)])
        fi = np.floor(f).astype(np.int64)
        ok = (fi >= 0) & (fi < dims[a])
        index.append(fi)
        valid = ok if valid is None else valid & ok
    flat = (index[0] * dims[1] + index[1]) * dims[2] + index[2]
    sentinel = int(np.prod(dims))
    flat = np.where(valid, flat, sentinel)
    flat = np.broadcast_to(flat, shape)
    return Correspondence(tuple(int(v) for v in lo), tuple(int(v) for v in hi),  # type: ignore[arg-type]
                          flat=flat, sentinel=sentinel)
