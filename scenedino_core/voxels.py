"""Voxel-grid queries: the one implementation of the SSC protocol used by evaluation, the CLIs and the ROS node.

Protocol (the original SSCBench evaluation): density at every voxel centre (or the max over ``samples_per_axis**3``
sub-points), 3x3x3 max-pool "grow" of density, class scores alpha * one-hot with alpha = 1 - exp(-voxel_size * sigma)
averaged over sub-points, argmax -> trainId -> SSC label, label := 0 where the grown density is below the threshold.
Semantics (768-d expansion + head) are computed only for voxels that can end up labelled (grown density above the
threshold, inside the semantic mask); all other voxels never need them. The field runs once per point: the voxels
that need semantics are classified from the reduced features of the density pass (``query_voxels``).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .labels import TRAINID_TO_SSC, UNKNOWN
from .model import DEFAULT_CHUNK, SceneDINO
from .semantics import PredictionMode
from .threads import one_cpu_thread, torch_threads
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


@dataclass(frozen=True)
class VoxelTensors:
    """Per-voxel results of ``query_voxels``: (X, Y, Z) tensors on the model's device (nothing copied to the host)."""

    sigma: Tensor
    """float32 density (max over sub-points)."""
    sigma_grown: Tensor
    """float32 density after the 3x3x3 max-pool (the occupied/free decision thresholds it)."""
    train_ids: Tensor
    """uint8 trainIds where semantics were computed, 255 elsewhere."""
    labels: Tensor
    """uint8 SSC labels 0..15 (0 = empty, also where no semantics were computed)."""
    in_view: Tensor
    """bool: voxel centre inside the semantic mask (by default: inside the input view)."""
    voxel_size: float
    occupied: Tensor | None = None
    """(N,) int64 flat indices of the occupied voxels (labels > 0), ascending in the C order of the ``centers`` the
    query was given (found while classifying, so no pass over the whole grid is needed)."""

    def numpy(self) -> VoxelPrediction:
        """The same results as numpy arrays on the host."""
        return VoxelPrediction(sigma=self.sigma.float().cpu().numpy(),
                               sigma_grown=self.sigma_grown.float().cpu().numpy(),
                               train_ids=self.train_ids.cpu().numpy(), labels=self.labels.cpu().numpy(),
                               in_view=self.in_view.cpu().numpy(), voxel_size=self.voxel_size)


#: Feature rows per call of the expansion + semantic head (its 768-wide activations then stay in the CPU caches).
SEMANTIC_CHUNK = 16384

FieldFn = Callable[[FeatureVolume, Tensor], "tuple[Tensor, Tensor, Tensor]"]
SemanticsFn = Callable[[Tensor], Tensor]


def predict_voxels(model: SceneDINO, volume: FeatureVolume, centers: np.ndarray | torch.Tensor, voxel_size: float, *,
                   mode: PredictionMode | str = PredictionMode.STEGO_KMEANS, sigma_threshold: float = SIGMA_THRESHOLD,
                   grow: bool = True, semantic_mask: np.ndarray | None = None, occupied_only: bool = True,
                   chunk_size: int = DEFAULT_CHUNK) -> VoxelPrediction:
    """Density, trainIds and SSC labels on a voxel grid for one encoded image, as numpy arrays.

    ``query_voxels`` (see there for the arguments), copied to the host.
    """
    return query_voxels(model, volume, centers, voxel_size, mode=mode, sigma_threshold=sigma_threshold, grow=grow,
                        semantic_mask=semantic_mask, occupied_only=occupied_only, chunk_size=chunk_size).numpy()


def query_voxels(model: SceneDINO, volume: FeatureVolume, centers: np.ndarray | torch.Tensor, voxel_size: float, *,
                 mode: PredictionMode | str = PredictionMode.STEGO_KMEANS, sigma_threshold: float = SIGMA_THRESHOLD,
                 grow: bool = True, semantic_mask: np.ndarray | Tensor | None = None, occupied_only: bool = True,
                 chunk_size: int = DEFAULT_CHUNK, semantic_chunk: int = SEMANTIC_CHUNK, fixed_shapes: bool = False,
                 field_fn: FieldFn | None = None, semantics_fn: SemanticsFn | None = None) -> VoxelTensors:
    """Density, trainIds and SSC labels on a voxel grid for one encoded image, on the model's device.

    The field runs once per (sub-)point: the grid is swept in slabs along its first axis, and a slab's voxels are
    classified from the reduced features the density pass just computed as soon as the densities of the
    neighbouring slabs (which the 3x3x3 growth needs) are known. Only the features of the last few slabs are kept.

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
        chunk_size: points per density call (rounded to whole slabs).
        semantic_chunk: feature rows per call of the expansion and the semantic head.
        fixed_shapes: pad every call to the same shape (zero points, zero features; their results are dropped),
            so a compiled ``field_fn`` / ``semantics_fn`` never sees a new shape.
        field_fn: replaces ``model.field`` (a compiled copy of it).
        semantics_fn: replaces ``model.semantics`` with ``mode`` bound (a compiled copy of it).
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
    if semantic_mask is not None:
        semantic_mask = torch.as_tensor(semantic_mask, device=device).bool()
        if semantic_mask.shape != (X, Y, Z):
            raise ValueError(f"semantic_mask must be {(X, Y, Z)}, got {tuple(semantic_mask.shape)}")
    field_fn = field_fn or model.field
    semantics_fn = semantics_fn or functools.partial(model.semantics, mode=PredictionMode.parse(mode))
    slab = Y * Z * n  # points per slab (constant first index)
    per_call = max(1, chunk_size // slab)  # slabs per density call
    flat = pts.reshape(X, slab, 3).to(device=device, dtype=torch.float32)
    threads = torch.get_num_threads()
    with torch.no_grad():
        if volume.projected is None and X * slab > volume.features[0, 0].numel():
            volume = model.for_dense_queries(volume)
    # the bookkeeping on one CPU thread, the field and the semantic head on all (scenedino_core.threads)
    with torch.no_grad(), one_cpu_thread(device):
        sweep = _Sweep((X, Y, Z, n), device, voxel_size, sigma_threshold, grow, occupied_only, semantic_mask,
                       model.config.semantic.n_classes, semantics_fn, semantic_chunk, fixed_shapes, threads)
        for x0 in range(0, X, per_call):
            x1 = min(X, x0 + per_call)
            chunk = flat[x0:x1].reshape(1, -1, 3)
            m = chunk.shape[1]
            if fixed_shapes and x1 - x0 < per_call:
                chunk = torch.cat([chunk, chunk.new_zeros(1, per_call * slab - m, 3)], dim=1)
            with torch_threads(threads):
                sigma_c, feats_c, outside_c = field_fn(volume, chunk)
            feats_c = feats_c[0, :m].reshape(x1 - x0, Y * Z, n, -1)
            # a compiled field_fn may reuse its output buffers (CUDA graphs): keep a copy of what outlives the call
            sweep.add(x0, x1, sigma_c[0, :m], outside_c[0, :m], feats_c.clone() if fixed_shapes else feats_c)
    return VoxelTensors(sigma=sweep.sigma, sigma_grown=sweep.grown, train_ids=sweep.train_ids, labels=sweep.labels,
                        in_view=sweep.mask, voxel_size=float(voxel_size), occupied=sweep.occupied())


def _max3(out: Tensor, x: Tensor, dim: int) -> Tensor:
    """``out`` = max of ``x`` and its two neighbours along ``dim`` (edges: the neighbours that exist)."""
    n = x.shape[dim]
    if n == 1:
        return out.copy_(x)
    torch.maximum(x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1), out=out.narrow(dim, 1, n - 1))
    out.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
    torch.maximum(out.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), out=out.narrow(dim, 0, n - 1))
    return out


def grow_density(sigma: Tensor) -> Tensor:
    """3x3x3 max-pool of (A, B, C) densities, borders padded with -inf (``max_pool3d(sigma, 3, 1, 1)``).

    Computed as three 1D passes: the same values (a max is exact), several times faster on a CPU.
    """
    a = _max3(torch.empty_like(sigma), sigma, 2)
    b = _max3(torch.empty_like(sigma), a, 1)
    return _max3(a, b, 0)


class _Sweep:
    """Receives the field's output slab by slab; grows densities and classifies a slab once its neighbours are in.

    The growth runs separably: along the two in-slab axes when a slab arrives, across slabs once the next slab is
    known. Labels are written only where semantics are computed; nothing else touches the whole grid twice.
    """

    def __init__(self, shape: tuple[int, int, int, int], device: torch.device, voxel_size: float, threshold: float,
                 grow: bool, occupied_only: bool, semantic_mask: Tensor | None, n_classes: int,
                 semantics_fn: SemanticsFn, rows_per_call: int, fixed_shapes: bool, threads: int):
        X, Y, Z, n = shape
        self.X, self.n = X, n
        self.voxel_size, self.threshold, self.grow, self.occupied_only = voxel_size, threshold, grow, occupied_only
        self.n_classes, self.semantics_fn = n_classes, semantics_fn
        self.rows_per_call, self.fixed_shapes, self.threads = max(1, rows_per_call), fixed_shapes, threads
        self.sub_sigma = torch.empty((X, Y, Z, n), dtype=torch.float32, device=device)
        self.sigma = self.sub_sigma[..., 0] if n == 1 else torch.empty((X, Y, Z), dtype=torch.float32, device=device)
        self.grown_in_slab = torch.empty((X, Y, Z), dtype=torch.float32, device=device) if grow else self.sigma
        self.grown = torch.empty((X, Y, Z), dtype=torch.float32, device=device) if grow else self.sigma
        self.given_mask = semantic_mask is not None
        self.mask = semantic_mask if semantic_mask is not None else torch.empty((X, Y, Z), dtype=torch.bool,
                                                                                  device=device)
        self.train_ids = torch.full((X, Y, Z), UNKNOWN, dtype=torch.uint8, device=device)
        self.labels = torch.zeros((X, Y, Z), dtype=torch.uint8, device=device)
        self.to_ssc = torch.as_tensor(TRAINID_TO_SSC, device=device)
        self.pending: list[tuple[int, int, Tensor]] = []  # (x0, x1, features (x1 - x0, Y * Z, n, F))
        self.done = 0  # slabs [0, done) are grown and classified
        self.slab_voxels = Y * Z
        self.occupied_parts: list[Tensor] = []  # flat indices of labelled voxels, ascending

    def occupied(self) -> Tensor:
        """(N,) int64 flat indices (C order) of the voxels with labels > 0, ascending."""
        if not self.occupied_parts:
            return torch.zeros(0, dtype=torch.int64, device=self.labels.device)
        return torch.cat(self.occupied_parts)

    def add(self, x0: int, x1: int, sigma: Tensor, outside: Tensor, features: Tensor) -> None:
        """Slabs [x0, x1): their (M,) densities and outside flags and (x1 - x0, Y * Z, n, F) features."""
        X, n = self.X, self.n
        sub = self.sub_sigma[x0:x1]
        sub.copy_(sigma.reshape(sub.shape))
        if n > 1:
            torch.amax(sub, dim=-1, out=self.sigma[x0:x1])
        if not self.given_mask:
            torch.logical_not(outside.reshape(sub.shape)[..., n // 2], out=self.mask[x0:x1])
        if self.grow:
            tmp = torch.empty_like(self.sigma[x0:x1])
            _max3(self.grown_in_slab[x0:x1], _max3(tmp, self.sigma[x0:x1], 2), 1)
        self.pending.append((x0, x1, features))
        ready = x1 - 1 if self.grow and x1 < X else x1  # the growth of slab x needs slab x + 1
        if ready > self.done:
            a, b = self.done, ready
            if self.grow:  # across slabs: max of slabs x - 1, x, x + 1 of the in-slab growth
                lo, hi = max(0, a - 1), min(X, b + 1)
                self.grown[a:b] = _max3(torch.empty_like(self.grown_in_slab[lo:hi]), self.grown_in_slab[lo:hi],
                                        0)[a - lo:b - lo]
            self._classify(a, b)
            self.done = ready
            self.pending = [p for p in self.pending if p[1] > ready]

    def _classify(self, a: int, b: int) -> None:
        passed = self.grown[a:b] >= self.threshold
        selected = self.mask[a:b] & passed if self.occupied_only else self.mask[a:b]
        for x0, x1, features in self.pending:
            s0, s1 = max(a, x0), min(b, x1)
            if s0 >= s1:
                continue
            idx = selected[s0 - a:s1 - a].reshape(-1).nonzero().squeeze(1)
            if not idx.numel():
                continue
            n = self.n
            feats = features[s0 - x0:s1 - x0].reshape(-1, n, features.shape[-1])[idx]
            classes = self._semantics(feats.reshape(-1, feats.shape[-1])).reshape(-1, n)
            alpha = 1.0 - torch.exp(-self.voxel_size * self.sub_sigma[s0:s1].reshape(-1, n)[idx])
            scores = torch.zeros(idx.numel(), self.n_classes, device=alpha.device, dtype=alpha.dtype)
            scores.scatter_add_(1, classes, alpha)
            train_ids = scores.argmax(dim=1)
            self.train_ids[s0:s1].view(-1)[idx] = train_ids.to(torch.uint8)
            labels = self.to_ssc[train_ids]
            if not self.occupied_only:  # label := 0 where the grown density is below the threshold
                labels = labels * passed[s0 - a:s1 - a].reshape(-1)[idx]
            self.labels[s0:s1].view(-1)[idx] = labels
            self.occupied_parts.append(idx[labels > 0] + s0 * self.slab_voxels)

    def _semantics(self, feats: Tensor) -> Tensor:
        """(M, F) -> (M,) trainIds, ``rows_per_call`` rows at a time (with ``fixed_shapes``, the last zero-padded)."""
        rows = self.rows_per_call
        parts = []
        for i in range(0, feats.shape[0], rows):
            part = feats[i:i + rows]
            m = part.shape[0]
            if self.fixed_shapes and m < rows:
                part = torch.cat([part, part.new_zeros(rows - m, part.shape[1])])
            with torch_threads(self.threads):
                parts.append(self.semantics_fn(part)[:m])
        return torch.cat(parts) if len(parts) > 1 else parts[0]
