"""SSCBench grid: voxel centres and FOV mask vs the reference fixtures, plus basic geometry checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scenedino_core.sscbench import grid
from scenedino_core.voxels import VoxelGrid, voxel_centers

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
UPSTREAM = REFERENCE / "upstream_v1"


@pytest.fixture(scope="module")
def upstream():
    if not (UPSTREAM / "expected.npz").is_file() or not (UPSTREAM / "inputs.npz").is_file():
        pytest.skip(f"upstream_v1 fixture not found at {UPSTREAM} (needs expected.npz and inputs.npz)")
    exp = np.load(UPSTREAM / "expected.npz")
    inp = np.load(UPSTREAM / "inputs.npz")
    return {
        "centers_box": exp["ssc_voxel_centers_box"],
        "fov": exp["ssc_fov_mask_full"],
        "box": inp["ssc_box"],
    }


@pytest.fixture(scope="module")
def centers_camera():
    return grid.voxel_centers_camera()


def test_voxel_centers_bit_exact(upstream, centers_camera):
    (x0, x1), (y0, y1), (z0, z1) = upstream["box"].tolist()
    box = centers_camera[x0:x1, y0:y1, z0:z1]
    assert box.dtype == np.float32 and box.shape == upstream["centers_box"].shape
    np.testing.assert_array_equal(box, upstream["centers_box"])


def test_fov_mask_exact(upstream):
    fov = grid.fov_mask(grid.SSCBENCH_GRID, grid.intrinsics_full(), grid.IMAGE_SIZE_WH, grid.velo_to_cam_matrix())
    assert fov.dtype == bool and fov.shape == (256, 256, 32)
    np.testing.assert_array_equal(fov, upstream["fov"].astype(bool))
    np.testing.assert_array_equal(grid.fov_mask(), fov)


def test_fov_mask_matches_metric_fixture():
    path = REFERENCE / "sscbench_metrics" / "frames.npz"
    if not path.is_file():
        pytest.skip(f"SSCBench metric fixture not found at {path}")
    np.testing.assert_array_equal(grid.fov_mask(), np.load(path)["fov_mask"].astype(bool))


def test_centres_velo_and_roundtrip(centers_camera):
    velo = voxel_centers(grid.SSCBENCH_GRID)
    assert velo.shape == (256, 256, 32, 3) and velo.dtype == np.float32
    np.testing.assert_allclose(velo[0, 0, 0], [0.1, -25.5, -1.9], atol=1e-6)
    np.testing.assert_allclose(velo[255, 255, 31], [51.1, 25.5, 4.3], atol=1e-5)
    np.testing.assert_allclose(velo[10, 128, 10], [2.1, 0.1, 0.1], atol=1e-6)
    # camera -> velo with the original cam->velo matrix gives the velo centres back
    c = centers_camera[::17, ::13, ::5].astype(np.float64)
    m = grid.cam_to_velo_matrix()
    back = c @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(back, velo[::17, ::13, ::5], atol=2e-5)
    # the camera looks along velo +x: a voxel straight ahead is in front (z > 0) and near the image centre
    ahead = centers_camera[100, 128, 10]
    assert ahead[2] > 15 and abs(ahead[0]) < 1.5


def test_fov_mask_follows_intrinsics():
    base = grid.fov_mask()
    assert 0.7 < base.mean() < 0.8
    narrow = grid.fov_mask(image_size_wh=(704, 376))  # left half of the image only
    assert narrow.sum() < base.sum() and not np.any(narrow & ~base)
    K = grid.intrinsics_full()
    K[0, 0] *= 2  # doubling fx halves the horizontal field of view
    assert grid.fov_mask(K=K).sum() < base.sum()
    # behind-the-camera voxels are never inside
    flip = np.diag([-1.0, -1.0, -1.0, 1.0]) @ grid.velo_to_cam_matrix()
    assert not np.any(grid.fov_mask(cam_from_velo=flip) & base)


def test_grid_validation_and_constants():
    g = grid.SSCBENCH_GRID
    assert g.dims == (256, 256, 32) and g.voxel_size == 0.2 and g.origin == (0.0, -25.6, -2.0)
    assert g.scene_size == pytest.approx((51.2, 51.2, 6.4))
    assert g.num_voxels == 2_097_152
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelGrid(origin=(0, 0, 0), voxel_size=0.0, dims=(2, 2, 2))
    with pytest.raises(ValueError, match="dims"):
        VoxelGrid(origin=(0, 0, 0), voxel_size=0.2, dims=(256, 256))
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        grid.voxel_centers_camera(cam_from_velo=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="K"):
        grid.fov_mask(K=np.eye(4))
    small = VoxelGrid(origin=grid.GRID_ORIGIN_VELO, voxel_size=0.2, dims=(4, 6, 2))
    assert grid.voxel_centers_camera(small).shape == (4, 6, 2, 3)
    assert grid.fov_mask(small).shape == (4, 6, 2)
