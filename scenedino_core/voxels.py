"""Voxel-grid queries: the one implementation of the SSC protocol used by evaluation, the CLIs and the ROS node.

Protocol (the original SSCBench evaluation's): density at every voxel centre (or the max over
``samples_per_axis**3`` sub-points), 3x3x3 max-pool "grow" of density, class scores alpha * one-hot with
alpha = 1 - exp(-voxel_size * sigma) averaged over sub-points, argmax -> trainId -> SSC label, label := 0 where the
grown density is below the threshold. Semantics (768-d expansion + head) are computed only for voxels that can end
up labelled (grown density above the threshold, inside the semantic mask); all other voxels never need them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .labels import TRAINID_TO_SSC, UNKNOWN
from .model import DEFAULT_CHUNK, SceneDINO
from .semantics import PredictionMode
from .types import FeatureVolume

#: Grown density below which a voxel is empty (the original SSCBench cut-off).
SIGMA_THRESHOLD = 0.2


@dataclass(frozen=True)
class VoxelGrid:
    """A regular axis-aligned grid in some frame: ``dims`` = (X, Y, Z), ``origin`` = outer corner of voxel (0, 0, 0)."""

    origin: tuple[float, float, float]
    voxel_size: float
    dims: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0, got {self.voxel_size}")
        if len(self.dims) != 3 or any(int(d) <= 0 for d in self.dims):
            raise ValueError(f"dims must be 3 positive ints, got {self.dims}")
        if len(self.origin) != 3:
            raise ValueError(f"origin must have 3 entries, got {self.origin}")

    @property
    def scene_size(self) -> tuple[float, float, float]:
        """Extent of the grid in metres."""
        return tuple(d * self.voxel_size for d in self.dims)  # type: ignore[return-value]

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.dims))


def voxel_centers(grid: VoxelGrid, samples_per_axis: int = 1) -> np.ndarray:
    """Voxel (sub-)centres in the grid frame.

    Rounded as the original: float32 origin, float64 sum ``o + s*i + s*0.5``, stored as float32.

    Returns:
        (X, Y, Z, 3) float32 for ``samples_per_axis == 1``, else (X, Y, Z, n**3, 3) sub-voxel centres.
    """
    n = samples_per_axis
    if n < 1:
        raise ValueError(f"samples_per_axis must be >= 1, got {n}")
    origin = np.asarray(grid.origin, dtype=np.float32).astype(np.float64)
    s = float(grid.voxel_size) / n
    axes = []
    for axis in range(3):
        idx = np.arange(grid.dims[axis] * n, dtype=np.float64)
        axes.append(((origin[axis] + s * idx) + s * 0.5).astype(np.float32))
    x, y, z = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([x, y, z], axis=-1)
    if n == 1:
        return pts
    X, Y, Z = grid.dims
    pts = pts.reshape(X, n, Y, n, Z, n, 3).transpose(0, 2, 4, 1, 3, 5, 6)
    return np.ascontiguousarray(pts.reshape(X, Y, Z, n ** 3, 3))


def transform_points_f64(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) or (3, 4) transform to (..., 3) points in float64 (``r0*x + r1*y + r2*z + t`` per row)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"transform must be (4, 4) or (3, 4), got {T.shape}")
    p = np.asarray(points).astype(np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    return np.stack([T[r, 0] * x + T[r, 1] * y + T[r, 2] * z + T[r, 3] for r in range(3)], axis=-1)


def voxel_centers_camera(grid: VoxelGrid, cam_from_grid: np.ndarray, samples_per_axis: int = 1) -> np.ndarray:
    """(X, Y, Z[, n**3], 3) float32 camera-frame (sub-)voxel centres (transformed in float64)."""
    return transform_points_f64(voxel_centers(grid, samples_per_axis), cam_from_grid).astype(np.float32)


@dataclass(frozen=True)
class VoxelPrediction:
    """Per-voxel results of ``predict_voxels``; arrays (X, Y, Z) on the CPU."""

    sigma: np.ndarray
    """float32 density (max over sub-points)."""
    sigma_grown: np.ndarray
    """float32 density after the 3x3x3 max-pool."""
    train_ids: np.ndarray
    """uint8 trainIds where semantics were computed, 255 elsewhere."""
    labels: np.ndarray
    """uint8 SSC labels 0..15 (0 = empty, also where no semantics were computed)."""
    in_view: np.ndarray
    """bool: voxel centre inside the semantic mask (by default: inside the input view)."""
    voxel_size: float

    @property
    def occupied(self) -> np.ndarray:
        """bool: labelled non-empty."""
        return self.labels > 0

    @property
    def occupancy_probability(self) -> np.ndarray:
        """float32 in [0, 1]: 1 - exp(-voxel_size * grown density)."""
        return (1.0 - np.exp(-self.voxel_size * self.sigma_grown)).astype(np.float32)


def predict_voxels(model: SceneDINO, volume: FeatureVolume, centers: np.ndarray | torch.Tensor, voxel_size: float, *,
                   mode: PredictionMode | str = PredictionMode.STEGO_KMEANS, sigma_threshold: float = SIGMA_THRESHOLD,
                   grow: bool = True, semantic_mask: np.ndarray | None = None, occupied_only: bool = True,
                   chunk_size: int = DEFAULT_CHUNK) -> VoxelPrediction:
    """Density, trainIds and SSC labels on a voxel grid for one encoded image.

    Args:
        model, volume: the model and one encoded image (batch size 1).
        centers: (X, Y, Z, 3) or (X, Y, Z, n, 3) camera-frame (sub-)voxel centres (``voxel_centers_camera``).
        voxel_size: voxel edge (m), for alpha = 1 - exp(-voxel_size * sigma).
        mode: semantic prediction mode.
        sigma_threshold: grown density below which a voxel is empty.
        grow: 3x3x3 max-pool the density before thresholding.
        semantic_mask: (X, Y, Z) bool, voxels that may receive semantics (default: centre inside the input view).
        occupied_only: compute semantics only for voxels that pass the threshold inside the mask (same labels as
            ``False``, which sends every masked voxel through every head; kept for verification and benchmarks).
        chunk_size: points per model call.
    """
    if volume.batch_size != 1:
        raise ValueError(f"predict_voxels takes one encoded image, got a batch of {volume.batch_size}")
    pts = torch.as_tensor(centers)
    if pts.ndim == 4:
        pts = pts.unsqueeze(3)
    if pts.ndim != 5 or pts.shape[-1] != 3:
        raise ValueError(f"centers must be (X, Y, Z, 3) or (X, Y, Z, n, 3), got {tuple(pts.shape)}")
    X, Y, Z, n, _ = pts.shape
    device = volume.features.device
    flat = pts.reshape(1, -1, 3).to(device=device, dtype=volume.features.dtype)
    with torch.no_grad():
        if volume.projected is None and flat.shape[1] > volume.features[0, 0].numel():
            volume = model.for_dense_queries(volume)
        out = model.query(volume, flat, chunk_size=chunk_size)
        sub_sigma = out.sigma.reshape(X, Y, Z, n)
        sigma = sub_sigma.amax(dim=-1)
        grown = F.max_pool3d(sigma[None, None], 3, stride=1, padding=1)[0, 0] if grow else sigma
        if semantic_mask is None:
            mask = out.outside.reshape(X, Y, Z, n)[..., n // 2].logical_not()
        else:
            mask = torch.as_tensor(np.asarray(semantic_mask), device=device).bool()
            if mask.shape != (X, Y, Z):
                raise ValueError(f"semantic_mask must be {(X, Y, Z)}, got {tuple(mask.shape)}")
        selected = mask & (grown >= sigma_threshold) if occupied_only else mask
        train_ids = torch.full((X, Y, Z), UNKNOWN, dtype=torch.uint8, device=device)
        idx = selected.reshape(-1).nonzero().squeeze(1)
        if idx.numel():
            sel_pts = flat.reshape(X * Y * Z, n, 3)[idx].reshape(1, -1, 3)
            classes = model.query(volume, sel_pts, mode=mode, chunk_size=chunk_size).classes.reshape(-1, n)
            alpha = 1.0 - torch.exp(-voxel_size * sub_sigma.reshape(-1, n)[idx])
            n_classes = model.config.semantic.n_classes
            scores = torch.zeros(idx.numel(), n_classes, device=device, dtype=alpha.dtype)
            scores.scatter_add_(1, classes, alpha)
            train_ids.view(-1)[idx] = scores.argmax(dim=1).to(torch.uint8)
        labels = torch.zeros((X, Y, Z), dtype=torch.uint8, device=device)
        known = train_ids != UNKNOWN
        labels[known] = torch.as_tensor(TRAINID_TO_SSC, device=device)[train_ids[known].long()]
        labels[grown < sigma_threshold] = 0
    return VoxelPrediction(sigma=sigma.float().cpu().numpy(), sigma_grown=grown.float().cpu().numpy(),
                           train_ids=train_ids.cpu().numpy(), labels=labels.cpu().numpy(),
                           in_view=mask.cpu().numpy(), voxel_size=float(voxel_size))
