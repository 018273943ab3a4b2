"""Surface voxels: the occupied voxels of a grid that a viewer can see.

A voxel is on the surface when it is occupied and at least one of its six face neighbours is not (the grid's outside
counts as not occupied). A solid block of n^3 voxels has about 6 n^2 of them, so views and messages that carry only
surface voxels show the same scene with far fewer points.
"""
from __future__ import annotations

import numpy as np


def exposed_voxels(occupied: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: occupied voxels with at least one face neighbour that is not occupied (the grid's outside
    counts as not occupied)."""
    occupied = np.asarray(occupied, dtype=bool)
    if occupied.ndim != 3:
        raise ValueError(f"occupied must be an (X, Y, Z) array, got shape {occupied.shape}")
    padded = np.pad(occupied, 1, constant_values=False)
    inner = occupied.copy()
    for axis in range(3):
        for lo, hi in ((0, -2), (2, None)):
            window = [slice(1, -1)] * 3
            window[axis] = slice(lo, hi)
            inner &= padded[tuple(window)]
    return occupied & ~inner


def surface_subset(point_index: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """(N,) bool: which of N occupied voxels, given by their (N, 3) integer indices into ``occupied`` (X, Y, Z), are
    surface voxels (``exposed_voxels``)."""
    point_index = np.asarray(point_index)
    if point_index.ndim != 2 or point_index.shape[1] != 3:
        raise ValueError(f"point_index must be (N, 3), got shape {point_index.shape}")
    return exposed_voxels(occupied)[tuple(point_index.T)]


def point_surface(point_index: np.ndarray, dims: tuple[int, int, int]) -> np.ndarray:
    """(N,) bool: which of N voxels, given by their (N, 3) integer indices into a grid of ``dims`` (X, Y, Z) and
    taken as all of its occupied voxels, are surface voxels (``exposed_voxels``)."""
    point_index = np.asarray(point_index)
    if point_index.ndim != 2 or point_index.shape[1] != 3:
        raise ValueError(f"point_index must be (N, 3), got shape {point_index.shape}")
    occupied = np.zeros(dims, bool)
    occupied[tuple(point_index.T)] = True
    return surface_subset(point_index, occupied)
