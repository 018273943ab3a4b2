"""Exact SSCBench voxel ground truth of the synthetic world, rasterised from its primitives.

Grid: 256 x 256 x 32 voxels of 0.2 m in the Velodyne frame (``sscbench.grid`` conventions), GT id space 0..19 / 255.
A voxel whose (closed) cube meets a primitive's boundary gets that primitive's id (ties: the higher-priority class,
poles/signs > cars > vegetation > fences > buildings > ground; the ground label is taken at the voxel centre); a
voxel entirely inside one solid (below ground, or inside a building/car/crown; grounded primitives are extended below
ground so the union with the ground counts) is 255 (unknown, never observable); every other voxel is 0 (exactly
empty, also where no camera could see it).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scenedino_core.data.synthetic.layout import Primitives, Shape
from scenedino_core.labels import UNKNOWN
from scenedino_core.sscbench import grid as sgrid

#: trainId -> SSCBench GT id (road 7, sidewalk 9, building 11, fence 12, vegetation 13, terrain 14, pole 15, sign 16,
#: car 1, ...); through ``labels.SSCBENCH_GT_TO_SSC`` it gives ``labels.TRAINID_TO_SSC`` except rider (a person here).
TRAINID_TO_SSCBENCH_GT = np.array([7, 9, 11, 11, 12, 15, 18, 16, 13, 14, 0, 6, 6, 1, 4, 5, 5, 3, 2], dtype=np.uint8)
#: Voxel label priority per trainId (higher wins where several surfaces meet one voxel).
_PRIORITY = np.array([0, 0, 1, 1, 2, 5, 6, 6, 3, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4], dtype=np.int64)
#: Contact tolerance of the voxel tests (m): faces on voxel planes up to float rounding count as touching.
_TOUCH_M = 1e-9


def rasterize(primitives: Primitives, velo_to_world: np.ndarray,
              ground_train_id: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """(256, 256, 32) uint8 SSCBench GT ids of the grid at ``velo_to_world`` (4, 4) (see module doc).

    ``ground_train_id(x, y)`` labels the ground; the grid must be axis-aligned with the world.
    """
    v2w = np.asarray(velo_to_world, dtype=np.float64)
    if not np.allclose(v2w[:3, :3], np.eye(3), atol=1e-12):
        raise ValueError("the SSCBench grid must be axis-aligned with the world (straight drive)")
    g = sgrid.SSCBENCH_GRID
    edges = [g.origin[a] + v2w[a, 3] + g.voxel_size * np.arange(g.dims[a] + 1) for a in range(3)]
    vlo, vhi = [e[:-1] for e in edges], [e[1:] for e in edges]
    inside = np.zeros(g.dims, bool)
    inside[:, :, vhi[2] <= 0.0] = True
    label = np.zeros(g.dims, np.uint8)
    prio = np.full(g.dims, -1, np.int64)
    ground_layer = (vlo[2] < 0.0) & (vhi[2] > 0.0)
    if ground_layer.any():
        xc, yc = 0.5 * (vlo[0] + vhi[0]), 0.5 * (vlo[1] + vhi[1])
        gid = TRAINID_TO_SSCBENCH_GT[ground_train_id(*np.meshgrid(xc, yc, indexing="ij"))]
        label[:, :, ground_layer] = gid[:, :, None]
        prio[:, :, ground_layer] = 0
    P = primitives
    lo_in = np.where((P.lo[:, 2] <= 1e-9)[:, None], P.lo * [1, 1, 0] + [0, 0, -np.inf], P.lo)
    blocks = []
    for m in range(len(P)):  # pass 1: interiors (grounded primitives extended below the ground)
        sl = [slice(int(np.searchsorted(vhi[a], lo_in[m, a] - _TOUCH_M)),
                    int(np.searchsorted(vlo[a], P.hi[m, a] + _TOUCH_M, "right")))
              for a in range(3)]
        if any(s.start >= s.stop for s in sl):
            continue
        ov, full = _cube_tests(P, m, [x[s] for x, s in zip(vlo, sl)], [x[s] for x, s in zip(vhi, sl)],
                                    lo_in[m, 2])
        inside[tuple(sl)] |= full
        blocks.append((m, sl, ov))
    for m, sl, ov in blocks:  # pass 2: boundaries, by class priority
        block = tuple(sl)
        pr = _PRIORITY[P.train_id[m]] + 1
        surf = ov & ~inside[block] & (pr > prio[block])
        label[block][surf] = TRAINID_TO_SSCBENCH_GT[P.train_id[m]]
        prio[block][surf] = pr
    label[inside] = UNKNOWN
    return label

def _cube_tests(P: Primitives, m: int, lo: list[np.ndarray], hi: list[np.ndarray], z_in: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(meets, fully inside) of the closed voxel cubes [lo, hi] of a sub-block and primitive m.

    Closed cubes (with a 1 nm tolerance): a face lying exactly on a voxel plane (a car at the kerb, y = -4.75 m)
    still marks the voxel outside it, which is where its surface would be observed from.
    """
    plo, phi, r = P.lo[m], P.hi[m], P.radius[m]
    tlo, thi, tr2 = plo - _TOUCH_M, phi + _TOUCH_M, (r + _TOUCH_M) ** 2
    c = 0.5 * (plo + phi)
    ov_z = (lo[2] <= thi[2]) & (hi[2] >= tlo[2])
    in_z = (lo[2] >= z_in) & (hi[2] <= phi[2])
    if P.shape[m] == Shape.BOX:
        ov = [(lo[a] <= thi[a]) & (hi[a] >= tlo[a]) for a in range(2)] + [ov_z]
        full = [(lo[a] >= plo[a]) & (hi[a] <= phi[a]) for a in range(2)] + [in_z]
        return (ov[0][:, None, None] & ov[1][None, :, None] & ov[2][None, None, :],
                full[0][:, None, None] & full[1][None, :, None] & full[2][None, None, :])
    near = [np.maximum(np.maximum(lo[a] - c[a], c[a] - hi[a]), 0.0) ** 2 for a in range(3)]
    far = [np.maximum(np.abs(lo[a] - c[a]), np.abs(hi[a] - c[a])) ** 2 for a in range(3)]
    if P.shape[m] == Shape.CYLINDER:
        ov_xy = near[0][:, None] + near[1][None, :] <= tr2
        in_xy = far[0][:, None] + far[1][None, :] <= r * r
        return ov_xy[:, :, None] & ov_z[None, None, :], in_xy[:, :, None] & in_z[None, None, :]
    n3 = near[0][:, None, None] + near[1][None, :, None] + near[2][None, None, :]
    f3 = far[0][:, None, None] + far[1][None, :, None] + far[2][None, None, :]
    return n3 <= tr2, f3 <= r * r


__all__ = ["TRAINID_TO_SSCBENCH_GT", "rasterize"]
