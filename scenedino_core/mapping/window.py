"""The rolling window: which integer map voxels the map holds, and where each one is stored (a ring buffer).

Map voxel ``m`` (integer index in the map frame, any sign) of the window ``[origin, origin + dims)`` is stored at
``m mod dims`` along each axis. Moving the window changes ``origin`` only: voxels that stay keep their storage
cell, and the cells of the voxels that leave are the cells of the voxels that enter, so a move clears
O(voxels that leave) cells and copies nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def _axis_runs(lo: int, hi: int, n: int) -> list[tuple[int, int, int]]:
    """Map indices [lo, hi) (hi - lo <= n) of one axis as runs (map start, storage start, length)."""
    runs = []
    m = lo
    while m < hi:
        s = m % n
        length = min(hi - m, n - s)
        runs.append((m, s, length))
        m += length
    return runs


@dataclass(frozen=True)
class Block:
    """A box of map voxels stored contiguously: map indices ``[lo, lo + shape)``, storage ``slices``."""

    lo: tuple[int, int, int]
    shape: tuple[int, int, int]
    slices: tuple[slice, slice, slice]

    def local(self, box_lo: tuple[int, int, int]) -> tuple[slice, slice, slice]:
        """The block's slices inside an array that covers a box starting at map index ``box_lo``."""
        return tuple(slice(a - b, a - b + n) for a, b, n in zip(self.lo, box_lo, self.shape))  # type: ignore


class RingWindow:
    """Window of ``dims`` voxels with map-index ``origin`` (the lowest voxel index along each axis)."""

    def __init__(self, dims: tuple[int, int, int], origin: tuple[int, int, int] = (0, 0, 0)):
        if len(dims) != 3 or any(int(d) <= 0 for d in dims):
            raise ValueError(f"dims must be 3 positive ints, got {dims}")
        self.dims = tuple(int(d) for d in dims)
        self.origin = tuple(int(o) for o in origin)

    @property
    def hi(self) -> tuple[int, int, int]:
        """One past the highest voxel index along each axis."""
        return tuple(o + d for o, d in zip(self.origin, self.dims))  # type: ignore[return-value]

    def clip_box(self, lo, hi) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
        """The part of the map-index box [lo, hi) inside the window, or None when they do not meet."""
        lo = tuple(max(int(a), o) for a, o in zip(lo, self.origin))
        hi = tuple(min(int(b), h) for b, h in zip(hi, self.hi))
        return None if any(a >= b for a, b in zip(lo, hi)) else (lo, hi)  # type: ignore[return-value]

    def blocks(self, lo, hi) -> Iterator[Block]:
        """Contiguous storage blocks (at most 8) of the map-index box [lo, hi), which must lie in the window."""
        if any(a < o or b > h or a > b for a, b, o, h in zip(lo, hi, self.origin, self.hi)):
            raise ValueError(f"box {tuple(lo)}..{tuple(hi)} is not inside the window {self.origin}..{self.hi}")
        rx, ry, rz = (_axis_runs(int(a), int(b), n) for a, b, n in zip(lo, hi, self.dims))
        for mx, sx, nx in rx:
            for my, sy, ny in ry:
                for mz, sz, nz in rz:
                    yield Block((mx, my, mz), (nx, ny, nz),
                                (slice(sx, sx + nx), slice(sy, sy + ny), slice(sz, sz + nz)))

    def storage_to_map(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) storage indices -> (N, 3) int64 map voxel indices."""
        o = np.asarray(self.origin, dtype=np.int64)
        n = np.asarray(self.dims, dtype=np.int64)
        return o + np.mod(np.asarray(index, dtype=np.int64) - o, n)

    def map_to_storage(self, index: np.ndarray) -> np.ndarray:
        """(N, 3) map voxel indices (inside the window) -> (N, 3) int64 storage indices."""
        return np.mod(np.asarray(index, dtype=np.int64), np.asarray(self.dims, dtype=np.int64))

    def move(self, origin) -> list[tuple[slice, slice, slice]]:
        """Move the window to ``origin``; returns the storage slices of the voxels that left (to be cleared).

        The slabs are computed axis by axis (x, then y, then z), each over the full extent of the other axes, so
        their union is exactly the cells whose voxel is no longer in the window; a slab may overlap an earlier one.
        A move by the window size or more along an axis returns the whole storage.
        """
        new = tuple(int(o) for o in origin)
        out: list[tuple[slice, slice, slice]] = []
        for axis in range(3):
            n, d = self.dims[axis], new[axis] - self.origin[axis]
            if d == 0:
                continue
            if abs(d) >= n:
                self.origin = new
                return [(slice(None), slice(None), slice(None))]
            leaving = (self.origin[axis], self.origin[axis] + d) if d > 0 else (new[axis] + n, self.origin[axis] + n)
            for _, s, length in _axis_runs(*leaving, n):
                sl = [slice(None)] * 3
                sl[axis] = slice(s, s + length)
                out.append(tuple(sl))  # type: ignore[arg-type]
        self.origin = new
        return out
