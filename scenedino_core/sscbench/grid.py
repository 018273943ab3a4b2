"""SSCBench-KITTI-360 voxel grid: the one place for its constants, voxel centres and the camera FOV mask.

Conventions (the reference evaluation's):

* the grid lives in the Velodyne frame, origin (0, -25.6, -2) m = corner of voxel (0, 0, 0);
* index order [x forward, y left (index 0 = y -25.6 m), z up], 256 x 256 x 32 voxels of 0.2 m;
* queries are made at voxel *centres* (corner + 0.5 voxel);
* velo -> camera is the inverse of the hard-coded KITTI-360 ``calib_cam_to_velo`` (unrectified cam00 -> velo);
  the rectification rotation is ignored, as in the reference;
* the FOV mask uses the full-resolution 1408 x 376 intrinsics of KITTI-360 camera 00 (``data.kitti360_calib``).

Numerics (checked bit-exactly against the reference fixture ``upstream_v1/expected.npz``):

* velo-frame centres: ``float32(float64(float32(origin)) + voxel_size * i + voxel_size * 0.5)``, i.e. the origin
  is first rounded to float32, the sum is formed in float64 left to right, and the result is stored as float32;
* camera-frame centres: those float32 centres, promoted to float64, times the float64 ``np.linalg.inv`` of the
  4x4 cam->velo matrix, each row evaluated as ``r0*x + r1*y + r2*z + t`` in float64, then cast to float32;
* FOV: computed on the float64 camera-frame centres (before the float32 cast), ``u = round(x * fx / z + cx)``,
  ``v = round(y * fy / z + cy)`` (round half to even), inside iff ``0 <= u < W``, ``0 <= v < H`` and ``z > 0``.
"""
from __future__ import annotations

import numpy as np

from .. import voxels
from ..data.kitti360_calib import CAM00_SIZE_HW, cam00_intrinsics
from ..voxels import VoxelGrid

#: Voxel edge length (m).
VOXEL_SIZE: float = 0.2
#: Grid size in voxels (x, y, z).
GRID_DIMS: tuple[int, int, int] = (256, 256, 32)
#: Velodyne-frame coordinates (m) of the outer corner of voxel (0, 0, 0).
GRID_ORIGIN_VELO: tuple[float, float, float] = (0.0, -25.6, -2.0)

#: Hard-coded KITTI-360 ``calib_cam_to_velo`` (cam00, unrectified -> Velodyne), 3x4 row-major, as the reference
#: evaluation hard-codes it (the voxel GT was made in this frame).
CAM_TO_VELO_3X4: tuple[float, ...] = (
    0.04307104361, -0.08829286498, 0.995162929, 0.8043914418,
    -0.999004371, 0.007784614041, 0.04392796942, 0.2993489574,
    -0.01162548558, -0.9960641394, -0.08786966659, -0.1770225824,
)

#: Full-resolution image size of image_00 as (width, height) (KITTI-360 camera 00).
IMAGE_SIZE_WH: tuple[int, int] = (CAM00_SIZE_HW[1], CAM00_SIZE_HW[0])


#: The SSCBench-KITTI-360 grid.
SSCBENCH_GRID = VoxelGrid(origin=GRID_ORIGIN_VELO, voxel_size=VOXEL_SIZE, dims=GRID_DIMS)


def cam_to_velo_matrix() -> np.ndarray:
    """(4, 4) float64 cam00 -> Velodyne transform (the hard-coded KITTI-360 calibration)."""
    m = np.eye(4, dtype=np.float64)
    m[:3, :] = np.asarray(CAM_TO_VELO_3X4, dtype=np.float64).reshape(3, 4)
    return m


def velo_to_cam_matrix(cam_to_velo: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) float64 Velodyne -> camera transform = ``np.linalg.inv`` of the 4x4 cam->velo matrix.

    ``cam_to_velo``: (4, 4) or (3, 4); defaults to the hard-coded SSCBench calibration.
    """
    m = cam_to_velo_matrix() if cam_to_velo is None else _as_4x4(cam_to_velo, "cam_to_velo")
    return np.linalg.inv(m)


def intrinsics_full() -> np.ndarray:
    """(3, 3) float64 full-resolution K of the SSCBench evaluation (KITTI-360 camera 00, 1408 x 376)."""
    return cam00_intrinsics()


def _as_4x4(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 4):
        out = np.eye(4, dtype=np.float64)
        out[:3] = m
        return out
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be (4, 4) or (3, 4), got shape {m.shape}")
    return m


def voxel_centers_camera(grid: VoxelGrid = SSCBENCH_GRID, cam_from_velo: np.ndarray | None = None) -> np.ndarray:
    """(X, Y, Z, 3) float32 camera-frame voxel centres.

    ``cam_from_velo``: (4, 4) or (3, 4) Velodyne -> camera transform; default ``velo_to_cam_matrix()`` (the
    float64 inverse of the hard-coded cam->velo matrix). Computed in float64 and cast to float32, which
    reproduces the reference's query points bit-exactly.
    """
    m = velo_to_cam_matrix() if cam_from_velo is None else _as_4x4(cam_from_velo, "cam_from_velo")
    return voxels.voxel_centers_camera(grid, m)


def fov_mask(
    grid: VoxelGrid = SSCBENCH_GRID,
    K: np.ndarray | None = None,
    image_size_wh: tuple[int, int] = IMAGE_SIZE_WH,
    cam_from_velo: np.ndarray | None = None,
) -> np.ndarray:
    """(X, Y, Z) bool mask of voxels whose centre projects into the image.

    ``K``: (3, 3) intrinsics (default: full-resolution SSCBench K); ``image_size_wh`` = (width, height);
    ``cam_from_velo``: (4, 4) or (3, 4) Velodyne -> camera transform (default: hard-coded SSCBench one).
    A voxel is inside iff its camera-frame centre has z > 0 and the rounded pixel (u, v) satisfies
    0 <= u < width and 0 <= v < height.
    """
    K = intrinsics_full() if K is None else np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {K.shape}")
    if len(image_size_wh) != 2 or min(image_size_wh) <= 0:
        raise ValueError(f"image_size_wh must be (width, height) > 0, got {image_size_wh}")
    width, height = int(image_size_wh[0]), int(image_size_wh[1])
    m = velo_to_cam_matrix() if cam_from_velo is None else _as_4x4(cam_from_velo, "cam_from_velo")
    p = voxels.transform_points_f64(voxels.voxel_centers(grid), m)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    front = z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(x * K[0, 0] / z + K[0, 2])
        v = np.rint(y * K[1, 1] / z + K[1, 2])
    return front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
