"""The voxel query on a tiny model: centres, supersampling, the occupied-only path, masks, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_model
from scenedino_core.voxels import VoxelGrid, predict_voxels, voxel_centers, voxel_centers_camera

# camera optical frame from a grid frame x forward, y left, z up, camera 1.5 m above the grid origin plane
CAM_FROM_GRID = np.array([[0, -1, 0, 0], [0, 0, -1, 1.5], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
GRID = VoxelGrid(origin=(0.0, -6.4, -1.6), voxel_size=0.4, dims=(32, 32, 8))


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=2)


@pytest.fixture(scope="module")
def volume(model):
    K = torch.tensor([[30.0, 0.0, 32.0], [0.0, 30.0, 16.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        return model.encode(torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(4)), K)


def test_centres_and_subcentres():
    c = voxel_centers(GRID)
    assert c.shape == (32, 32, 8, 3) and c.dtype == np.float32
    np.testing.assert_allclose(c[0, 0, 0], [0.2, -6.2, -1.4], atol=1e-6)
    sub = voxel_centers(GRID, samples_per_axis=2)
    assert sub.shape == (32, 32, 8, 8, 3)
    np.testing.assert_allclose(sub.mean(axis=3), c, atol=1e-5)
    assert np.abs(sub - c[:, :, :, None]).max() == pytest.approx(0.1, abs=1e-5)
    cam = voxel_centers_camera(GRID, CAM_FROM_GRID)
    np.testing.assert_allclose(cam[5, 16, 2], [-(c[5, 16, 2, 1]), 1.5 - c[5, 16, 2, 2], c[5, 16, 2, 0]], atol=1e-5)


def test_occupied_only_equals_full_path(model, volume):
    centres = voxel_centers_camera(GRID, CAM_FROM_GRID)
    for threshold in (0.05, 0.5):
        fast = predict_voxels(model, volume, centres, 0.4, sigma_threshold=threshold)
        full = predict_voxels(model, volume, centres, 0.4, sigma_threshold=threshold, occupied_only=False)
        np.testing.assert_array_equal(fast.labels, full.labels)
        np.testing.assert_array_equal(fast.sigma, full.sigma)
        sel = fast.train_ids != 255
        np.testing.assert_array_equal(fast.train_ids[sel], full.train_ids[sel])
        assert sel.sum() < full.in_view.sum() or threshold < 0.1  # fewer voxels went through the heads
    assert 0 < fast.in_view.mean() < 1


def test_result_semantics(model, volume):
    centres = voxel_centers_camera(GRID, CAM_FROM_GRID)
    pred = predict_voxels(model, volume, centres, 0.4, sigma_threshold=0.1, mode="direct_kmeans", chunk_size=999)
    ref = predict_voxels(model, volume, centres, 0.4, sigma_threshold=0.1, mode="direct_kmeans")
    np.testing.assert_array_equal(pred.labels, ref.labels)
    assert pred.labels.dtype == np.uint8 and pred.labels.max() <= 15
    assert not pred.labels[~pred.in_view].any()  # semantics only inside the view
    assert not pred.labels[pred.sigma_grown < 0.1].any()
    assert np.all(pred.sigma_grown >= pred.sigma)  # the 3x3x3 max-pool only grows
    assert np.all((pred.occupancy_probability >= 0) & (pred.occupancy_probability <= 1))
    nothing = predict_voxels(model, volume, centres, 0.4, sigma_threshold=1e9)
    assert not nothing.occupied.any() and np.all(nothing.train_ids == 255)
    mask = np.zeros(GRID.dims, bool)
    mask[:, :16] = True
    half = predict_voxels(model, volume, centres, 0.4, sigma_threshold=0.1, semantic_mask=mask)
    assert not half.labels[:, 16:].any()


def test_supersampled_query(model, volume):
    centres = voxel_centers_camera(GRID, CAM_FROM_GRID, samples_per_axis=2)
    pred = predict_voxels(model, volume, centres, 0.4, sigma_threshold=0.1)
    single = predict_voxels(model, volume, voxel_centers_camera(GRID, CAM_FROM_GRID), 0.4, sigma_threshold=0.1)
    assert pred.labels.shape == GRID.dims
    assert pred.sigma.mean() >= 0 and not np.array_equal(pred.sigma, single.sigma)


def test_validation(model, volume):
    with pytest.raises(ValueError, match="centers must be"):
        predict_voxels(model, volume, np.zeros((4, 4, 3)), 0.2)
    with pytest.raises(ValueError, match="semantic_mask must be"):
        predict_voxels(model, volume, voxel_centers_camera(GRID, CAM_FROM_GRID), 0.4, semantic_mask=np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelGrid(origin=(0, 0, 0), voxel_size=-1, dims=(2, 2, 2))
