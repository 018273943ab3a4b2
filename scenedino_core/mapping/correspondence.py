"""Which frame voxel each map voxel takes its evidence from (nearest neighbour, pulled by the map voxel).

Map voxel ``m`` (integer index in the map frame) has its centre at ``(m + 0.5) * s``; it takes the frame voxel whose
cube contains that centre, ``f = floor(A m + b)`` with ``A = R * s / s_frame`` and ``b`` from the pose
(``grid_from_map = [R | t]``). Pulling (one lookup per map voxel) leaves no holes when the frame grid is rotated
against the map, unlike pushing frame voxels into the map.

Three cases:

* **aligned** (``A`` is the identity and the lattices coincide: same voxel size, no rotation, an integer voxel
  offset; a straight drive in a gravity-aligned frame): ``f = m + offset``, and the map box and the frame grid meet
  in a box, read with slices (no index arrays);
* **columns** (a rotation about z only: both frames gravity-aligned): the frame column of each map column (2-D)
  and the frame height of each map height (1-D); the frame's voxel columns are read as whole rows;
* **general** (a tilted frame grid): a flat frame index per map voxel of the frame grid's bounding box, computed as
  broadcast sums of per-axis terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenedino_core.voxels import VoxelGrid

from .observation import Columns

#: Tolerance on ``A``'s entries for the aligned case and on dropping zero terms in the general case.
_EPS = 1e-9


@dataclass(frozen=True)
class Correspondence:
    """Map voxels of the box ``[lo, hi)`` and their frame voxels.

    Exactly one of: ``offset`` (aligned: frame index = map index + offset for every voxel of the box, all inside
    the frame grid); ``columns`` (rotation about z); ``flat`` ((hi - lo) int64 flat C-order frame indices). Indices
    past the end of the frame grid mark map voxels whose centre falls outside it.
    """

    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    offset: tuple[int, int, int] | None = None
    columns: Columns | None = None
    flat: np.ndarray | None = None

    def frame_part(self):
        """The frame grid part for ``FrameObservation.packed``."""
        if self.offset is not None:
            return tuple(slice(a + o, b + o) for a, b, o in zip(self.lo, self.hi, self.offset))
        return self.columns if self.columns is not None else self.flat

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
    box = (tuple(int(v) for v in lo), tuple(int(v) for v in hi))

    def axis_index(a: int, axes: tuple[int, ...]) -> np.ndarray:
        """floor(frame index) along frame axis ``a`` over map axes ``axes`` (broadcast shapes); past the end when
        outside."""
        f = np.full((1,) * len(axes), base[a])
        for pos, c in enumerate(axes):
            if abs(A[a, c]) > _EPS:
                f = f + (ramps[c] * A[a, c]).reshape([-1 if k == pos else 1 for k in range(len(axes))])
        fi = np.floor(f).astype(np.int64)
        return np.where((fi >= 0) & (fi < dims[a]), fi, dims[a])

    if max(abs(A[2, 0]), abs(A[2, 1]), abs(A[0, 2]), abs(A[1, 2])) < _EPS:  # rotation about z only
        fx, fy = axis_index(0, (0, 1)), axis_index(1, (0, 1))
        cols = np.where((fx < dims[0]) & (fy < dims[1]), fx * dims[1] + fy, dims[0] * dims[1])
        cols = np.broadcast_to(cols, shape[:2])
        z = np.broadcast_to(axis_index(2, (2,)), shape[2:])
        return Correspondence(*box, columns=Columns(np.ascontiguousarray(cols), np.ascontiguousarray(z)))
    index = [axis_index(a, (0, 1, 2)) for a in range(3)]
    valid = (index[0] < dims[0]) & (index[1] < dims[1]) & (index[2] < dims[2])
    flat = np.where(valid, (index[0] * dims[1] + index[1]) * dims[2] + index[2], int(np.prod(dims)))
    return Correspondence(*box, flat=np.ascontiguousarray(np.broadcast_to(flat, shape)))
