"""What one frame tells the map: ``FrameObservation``, and how it is made from the pipeline's dense arrays.

Visible vs completed voxels: every voxel centre is projected into the frame's rendered depth image (z-depth of the
model input at a stride). A voxel is *completed* (the model filled it in behind a visible surface) when its camera
z exceeds the rendered depth at its pixel by more than ``MapConfig.occlusion_margin_m``; every other observed voxel
is *visible*: in front of or on the first surface, or without a rendered depth (outside the depth image, non-finite
depth, or no depth given at all). The projection of the grid depends only on the camera pose in the grid frame and
the intrinsics, so ``ObservationBuilder`` computes it once per pose (a camera fixed on the robot: once).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenedino_core import voxels

from .config import MapConfig
from .occupancy import LEVELS, quantize_probability

#: ``FrameObservation.code`` of voxels the frame does not predict.
NOT_OBSERVED = 2 * LEVELS

#: Label values of the pipeline's dense grid that are not classes: in view and empty, out of view.
FREE = 254
UNKNOWN = 255
#: ``voxel_occupancy`` value (percent) of voxels out of view.
OCCUPANCY_UNKNOWN = 255


def _rigid(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise ValueError(f"{name} must be a finite (4, 4) matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0 or not np.allclose(T[3], (0, 0, 0, 1)):
        raise ValueError(f"{name} is not a rigid transform (rotation not orthonormal or last row not 0 0 0 1)")
    return T


#: The whole grid, as a part (see ``FrameObservation.packed``).
ALL = (slice(None), slice(None), slice(None))


@dataclass(frozen=True)
class Packed:
    """What the map reads from a part of a frame grid (arrays of the part's shape)."""

    code: np.ndarray
    """uint16: probability level, plus ``LEVELS`` for completed voxels; ``NOT_OBSERVED`` (see ``FrameObservation``)."""
    labels: np.ndarray | None
    """uint8 class 1..C of observed voxels the frame calls occupied, 0 elsewhere; None: geometry only."""
    confidence: np.ndarray | None
    """float32 [0, 1] confidence of ``labels``; None: 1."""


class FrameObservation:
    """One frame's prediction on its voxel grid, for fusion (``SemanticMap.integrate``).

    Every voxel has a uint16 *code* packing three facts: the occupancy probability quantised to ``LEVELS`` steps
    (``level = round(p * (LEVELS - 1))``), plus ``LEVELS`` when the voxel is completed (occluded), or
    ``NOT_OBSERVED`` when the frame does not predict it; and a class label (0 = none). ``packed`` returns them for
    a part of the grid, so the map only pays for the part of the frame inside its window. Made by
    ``ObservationBuilder`` (``PackedObservation`` from arrays, ``DenseObservation`` from the pipeline's grids) or
    ``from_masks``.

    Attributes:
        grid: the frame's voxel grid in its grid frame (the frame ``map_from_grid`` maps).
        cam_from_grid: (4, 4) grid frame -> camera frame (the map centres its window on the camera).
    """

    grid: voxels.VoxelGrid
    cam_from_grid: np.ndarray

    def packed(self, index=ALL) -> Packed:
        """Codes, labels and confidences of a part of the grid: a tuple of three slices (a box), ``Columns``, or an
        int array of flat C-order voxel indices; indices past the end stand for "outside the grid" (not
        observed)."""
        raise NotImplementedError

    @staticmethod
    def from_masks(grid: voxels.VoxelGrid, probability: np.ndarray, observed: np.ndarray, visible: np.ndarray,
                   labels: np.ndarray | None, cam_from_grid: np.ndarray,
                   confidence: np.ndarray | None = None) -> PackedObservation:
        """Pack per-voxel arrays: probability in [0, 1], ``observed`` and ``visible`` masks (visible voxels that are
        not observed are ignored), labels (forced to 0 where not observed), optional confidence."""
        observed = np.asarray(observed, dtype=bool)
        code = pack_code(probability, observed, observed & ~np.asarray(visible, dtype=bool))
        if labels is not None:
            labels = np.where(observed, np.asarray(labels), 0).astype(np.uint8)
        if confidence is not None:
            confidence = np.asarray(confidence, dtype=np.float32)
        return PackedObservation(grid=grid, code=code, labels=labels, cam_from_grid=cam_from_grid,
                                 confidence=confidence)

    @property
    def observed(self) -> np.ndarray:
        """(X, Y, Z) bool: voxels the frame predicts (in the camera's view and range)."""
        return self.packed().code != NOT_OBSERVED

    @property
    def visible(self) -> np.ndarray:
        """(X, Y, Z) bool: observed and directly visible; ``observed & ~visible`` are completed (occluded) voxels."""
        return self.packed().code < LEVELS

    @property
    def probability(self) -> np.ndarray:
        """(X, Y, Z) float32 quantised occupancy probability (0 where not observed)."""
        code = self.packed().code
        level = np.where(code != NOT_OBSERVED, code % LEVELS, 0)
        return (level / np.float32(LEVELS - 1)).astype(np.float32)

    @property
    def camera_in_grid(self) -> np.ndarray:
        """(3,) camera position in the grid frame."""
        return np.linalg.inv(self.cam_from_grid)[:3, 3]


@dataclass(frozen=True)
class Columns:
    """A part of a frame grid given by whole voxel columns: map voxel (i, j, k) of a box takes frame voxel
    (column ``columns[i, j]``, height ``z[k]``). Values past the end (>= X * Y, >= Z) stand for "outside"."""

    columns: np.ndarray
    """(bx, by) int64 flat frame column index ``x * Y + y``."""
    z: np.ndarray
    """(bz,) int64 frame z index."""


def take_part(a: np.ndarray, index, fill) -> np.ndarray:
    """``a`` (X, Y, Z) over a part of the grid: slices (a view), ``Columns`` (row gathers), or flat indices
    (element gathers); voxels outside the grid get ``fill``."""
    if isinstance(index, tuple):
        return a[index]
    if isinstance(index, Columns):
        X, Y, Z = a.shape
        z = index.z
        inside_z = z < Z
        if inside_z.all() and z.size and np.array_equal(z, np.arange(z[0], z[0] + z.size)):
            rows = a.reshape(X * Y, Z)[:, z[0]:z[0] + z.size]  # the usual case: the z lattices coincide
            out = np.take(rows, index.columns.reshape(-1), axis=0, mode="clip")
        else:
            out = np.take(a.reshape(X * Y, Z), index.columns.reshape(-1), axis=0, mode="clip")
            out = np.take(out, z, axis=1, mode="clip")
            out[:, ~inside_z] = fill
        out = out.reshape(index.columns.shape + (z.size,))
        outside = index.columns >= X * Y
        if outside.any():
            out[outside] = fill
        return out
    out = np.take(a.reshape(-1), index, mode="clip")
    outside = index >= a.size
    if outside.any():
        out[outside] = fill
    return out


@dataclass(frozen=True, eq=False)
class PackedObservation(FrameObservation):
    """An observation held as packed arrays (X, Y, Z)."""

    grid: voxels.VoxelGrid
    code: np.ndarray
    """uint16 packed probability level / completed flag / not observed."""
    labels: np.ndarray | None
    """uint8 class 1..C of observed voxels the frame calls occupied, 0 elsewhere; None: geometry only."""
    cam_from_grid: np.ndarray
    confidence: np.ndarray | None = None
    """float32 [0, 1] confidence of ``labels`` (scales their class evidence); None: 1."""

    def __post_init__(self) -> None:
        dims = tuple(self.grid.dims)
        for name, dtype in (("code", np.uint16), ("labels", np.uint8), ("confidence", np.float32)):
            a = getattr(self, name)
            if a is None:
                continue
            if np.shape(a) != dims:
                raise ValueError(f"{name} must have the grid's shape {dims}, got {np.shape(a)}")
            if np.asarray(a).dtype != dtype:
                raise ValueError(f"{name} must be {np.dtype(dtype)}, got {np.asarray(a).dtype}")
        object.__setattr__(self, "cam_from_grid", _rigid(self.cam_from_grid, "cam_from_grid"))

    def packed(self, index=ALL) -> Packed:
        return Packed(take_part(self.code, index, NOT_OBSERVED),
                      None if self.labels is None else take_part(self.labels, index, 0),
                      None if self.confidence is None else take_part(self.confidence, index, 0.0))


@dataclass(frozen=True, eq=False)
class DenseObservation(FrameObservation):
    """An observation from the pipeline's dense grids, packed on demand (``ObservationBuilder.from_dense``).

    The rules (the same as ``ObservationBuilder.from_arrays``): a FREE voxel whose probability passes the frame
    threshold counts as free; completed and (with carving) in-front voxels come from the rendered depth.
    """

    grid: voxels.VoxelGrid
    cam_from_grid: np.ndarray
    voxel_labels: np.ndarray
    """(X, Y, Z) uint8: class, FREE (254) or UNKNOWN (255)."""
    voxel_occupancy: np.ndarray
    """(X, Y, Z) uint8 probability in percent, 255 out of view."""
    table: np.ndarray
    """(2048,) uint16 code of ``percent | FREE << 8 | completed << 9 | in front << 10``."""
    projection: VoxelProjection | None = None
    depth: np.ndarray | None = None
    """(h * w + 1,) float32 rendered depth with a trailing NaN (pixel index of centres outside the image)."""
    margin_m: float = 0.0
    carve: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cam_from_grid", _rigid(self.cam_from_grid, "cam_from_grid"))

    def packed(self, index=ALL) -> Packed:
        occ = take_part(self.voxel_occupancy, index, OCCUPANCY_UNKNOWN)
        lab = take_part(self.voxel_labels, index, UNKNOWN)
        key = occ.astype(np.uint16)
        key |= (lab == FREE).view(np.uint8).astype(np.uint16) << 8
        in_front = None
        if self.projection is not None and self.depth is not None:
            at = np.take(self.depth, take_part(self.projection.pixel, index, self.projection.num_pixels))
            z = take_part(self.projection.z, index, 0.0)
            m = np.float32(self.margin_m)
            with np.errstate(invalid="ignore"):
                key |= (z > at + m).view(np.uint8).astype(np.uint16) << 9
                if self.carve:
                    in_front = z < at - m
                    key |= in_front.view(np.uint8).astype(np.uint16) << 10
        code = np.take(self.table, key)
        keep = lab < FREE
        if in_front is not None:
            keep &= ~in_front
        labels = np.where(keep, lab, np.uint8(0))
        return Packed(code, labels, None)

    @property
    def code(self) -> np.ndarray:
        return self.packed().code

    @property
    def labels(self) -> np.ndarray:
        return self.packed().labels  # type: ignore[return-value]


def pack_code(probability: np.ndarray, observed: np.ndarray, completed: np.ndarray) -> np.ndarray:
    """uint16 codes of ``FrameObservation`` from probability (clipped to [0, 1]) and bool masks."""
    level = quantize_probability(probability).astype(np.uint16)
    level[np.asarray(completed, dtype=bool)] += LEVELS
    level[~np.asarray(observed, dtype=bool)] = NOT_OBSERVED
    return level


@dataclass(frozen=True)
class VoxelProjection:
    """Depth-image pixel of every voxel centre of a grid, and its camera z (a camera fixed in the grid frame)."""

    pixel: np.ndarray
    """(X, Y, Z) int32 flat index into the depth image; ``num_pixels`` for centres outside it or behind the
    camera."""
    z: np.ndarray
    """(X, Y, Z) float32 camera z of the centres."""
    num_pixels: int

    @staticmethod
    def build(grid: voxels.VoxelGrid, cam_from_grid: np.ndarray, intrinsics: np.ndarray,
              depth_shape: tuple[int, int], stride: int) -> VoxelProjection:
        """Project the voxel centres with the model input's pixel ``intrinsics``; depth pixel (r, c) covers model
        input pixels [stride * r, stride * (r + 1)) x [stride * c, stride * (c + 1)) (pixel i spans [i, i + 1))."""
        K = np.asarray(intrinsics, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"intrinsics must be (3, 3), got {K.shape}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        h, w = depth_shape
        p = voxels.voxel_centers_camera(grid, cam_from_grid)
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        front = z > 1e-3
        zs = np.where(front, z, 1.0)
        col = np.floor(((K[0, 0] * x + K[0, 1] * y) / zs + K[0, 2]) / stride)
        row = np.floor((K[1, 1] * y / zs + K[1, 2]) / stride)
        inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        pixel = np.where(inside, row * w + col, h * w).astype(np.int32)
        return VoxelProjection(pixel=pixel, z=z.astype(np.float32), num_pixels=h * w)

    def depth_relation(self, depth: np.ndarray, margin_m: float) -> tuple[np.ndarray, np.ndarray]:
        """(completed, in front), both (X, Y, Z) bool: voxel centre more than ``margin_m`` behind / in front of the
        rendered ``depth`` at its pixel. Centres outside the depth image, and pixels with a non-finite depth, are
        neither."""
        d = np.asarray(depth, dtype=np.float32).reshape(-1)
        if d.size != self.num_pixels:
            raise ValueError(f"depth has {d.size} pixels, the projection {self.num_pixels}")
        at = np.take(np.append(np.where(np.isfinite(d), d, np.float32(np.nan)), np.float32(np.nan)), self.pixel)
        m = np.float32(margin_m)
        with np.errstate(invalid="ignore"):
            return self.z > at + m, self.z < at - m

    def completed(self, depth: np.ndarray, margin_m: float) -> np.ndarray:
        """(X, Y, Z) bool: voxel centre more than ``margin_m`` behind the rendered depth (see ``depth_relation``)."""
        return self.depth_relation(depth, margin_m)[0]


class ObservationBuilder:
    """Makes ``FrameObservation``s for one voxel grid and keeps the voxel projection while the camera stays put.

    Args:
        grid: the frames' voxel grid (the pipeline's ``FrameResult.grid``).
        config: the map's configuration (``occlusion_margin_m``, ``frame_threshold_probability``,
            ``num_classes``; default ``MapConfig()``).
    """

    def __init__(self, grid: voxels.VoxelGrid, config: MapConfig | None = None):
        self.grid = grid
        self.config = config = MapConfig() if config is None else config
        self._key: tuple[np.ndarray, np.ndarray, tuple[int, int], int] | None = None
        self._projection: VoxelProjection | None = None
        self._threshold_level = int(quantize_probability(np.float32(config.frame_threshold_probability)))
        if self._threshold_level * 1.0 / (LEVELS - 1) < config.frame_threshold_probability:
            self._threshold_level += 1
        # index = percent | (FREE label) << 8 | (completed) << 9 | (in front of the depth) << 10  ->  code
        pct = np.arange(256)
        level = quantize_probability(np.minimum(pct, 100) * np.float32(0.01)).astype(np.int64)
        said_empty = level >= self._threshold_level
        table = np.zeros((2, 2, 2, 256), dtype=np.uint16)  # in front and completed together: never used
        for free in (0, 1):
            for completed in (0, 1):
                lv = np.where(said_empty, 0, level) if free else level
                table[0, completed, free] = np.where(pct == OCCUPANCY_UNKNOWN, NOT_OBSERVED, lv + completed * LEVELS)
            table[1, 0, free] = np.where(pct == OCCUPANCY_UNKNOWN, NOT_OBSERVED, 0)
        self._percent_table = table.reshape(-1)

    def projection(self, cam_from_grid: np.ndarray, intrinsics: np.ndarray, depth_shape: tuple[int, int],
                   stride: int) -> VoxelProjection:
        """The projection of the grid for this camera pose, intrinsics and depth image; reused while they stay
        the same (poses and intrinsics equal to 1e-9)."""
        T = np.asarray(cam_from_grid, dtype=np.float64)
        K = np.asarray(intrinsics, dtype=np.float64)
        shape = (int(depth_shape[0]), int(depth_shape[1]))
        k = self._key
        if not (k is not None and k[2] == shape and k[3] == stride and np.allclose(k[0], T, rtol=0, atol=1e-9)
                and np.allclose(k[1], K, rtol=0, atol=1e-9)):
            self._projection = VoxelProjection.build(self.grid, T, K, shape, stride)
            self._key = (T.copy(), K.copy(), shape, stride)
        return self._projection  # type: ignore[return-value]

    def _depth_masks(self, cam_from_grid, depth, intrinsics, render_stride
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(completed, in front of the depth and to be carved) masks, None without a depth (or without carving)."""
        if depth is None:
            return None, None
        if intrinsics is None:
            raise ValueError("intrinsics are needed to use the rendered depth")
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must be (h, w), got shape {depth.shape}")
        proj = self.projection(cam_from_grid, intrinsics, depth.shape, render_stride)
        completed, in_front = proj.depth_relation(depth, self.config.occlusion_margin_m)
        return completed, (in_front if self.config.free_in_front_of_depth else None)

    def _check_labels(self, labels: np.ndarray) -> None:
        top = int(labels.max(initial=0))
        if top > self.config.num_classes:
            raise ValueError(f"labels must lie in 0..{self.config.num_classes} (MapConfig.num_classes), got {top}")

    def from_arrays(self, probability: np.ndarray, observed: np.ndarray, labels: np.ndarray | None,
                    cam_from_grid: np.ndarray, *, depth: np.ndarray | None = None,
                    intrinsics: np.ndarray | None = None, render_stride: int = 1,
                    confidence: np.ndarray | None = None) -> FrameObservation:
        """An observation from per-voxel arrays on ``grid``.

        Args:
            probability: (X, Y, Z) occupancy probability.
            observed: (X, Y, Z) bool, voxels the frame predicts.
            labels: (X, Y, Z) uint8 class of voxels the frame calls occupied, 0 where it calls them empty (an
                observed voxel labelled 0 whose probability passes ``frame_threshold_probability`` counts as free:
                the frame's labels have the last word); None: geometry only.
            cam_from_grid: (4, 4) grid frame -> camera frame.
            depth: (h, w) rendered z-depth of the model input at ``render_stride`` (None: every observed voxel is
                visible).
            intrinsics: (3, 3) pixel intrinsics of the model input (needed with ``depth``).
            confidence: (X, Y, Z) confidence of the labels, or None.
        """
        dims = tuple(self.grid.dims)
        observed = np.asarray(observed, dtype=bool)
        prob = np.asarray(probability, dtype=np.float32)
        if observed.shape != dims or prob.shape != dims:
            raise ValueError(f"probability and observed must have the grid's shape {dims}, got {prob.shape} and "
                             f"{observed.shape}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != dims:
                raise ValueError(f"labels must have the grid's shape {dims}, got {labels.shape}")
            self._check_labels(labels)
            labels = np.where(observed, labels, 0).astype(np.uint8)
            said_empty = (labels == 0) & (prob >= np.float32(self.config.frame_threshold_probability))
            if said_empty.any():
                prob = np.where(said_empty, np.float32(0.0), prob)
        completed, in_front = self._depth_masks(cam_from_grid, depth, intrinsics, render_stride)
        if in_front is not None:
            prob = np.where(in_front, np.float32(0.0), prob)
            if labels is not None:
                labels = np.where(in_front, np.uint8(0), labels)
        code = pack_code(prob, observed, observed & completed if completed is not None else np.zeros_like(observed))
        return PackedObservation(grid=self.grid, code=code, labels=labels, cam_from_grid=cam_from_grid,
                                 confidence=None if confidence is None else np.asarray(confidence, np.float32))

    def from_dense(self, voxel_labels: np.ndarray, voxel_occupancy: np.ndarray, cam_from_grid: np.ndarray, *,
                   depth: np.ndarray | None = None, intrinsics: np.ndarray | None = None,
                   render_stride: int = 1) -> FrameObservation:
        """An observation from the pipeline's dense grids (``FrameResult.voxel_labels`` / ``voxel_occupancy``).

        Args:
            voxel_labels: (X, Y, Z) uint8 class of occupied voxels, FREE (254) in view and empty, UNKNOWN (255) out
                of view.
            voxel_occupancy: (X, Y, Z) uint8 occupancy probability in percent, 255 out of view.
            cam_from_grid, depth, intrinsics, render_stride: as in ``from_arrays``. A FREE voxel whose probability
                passes ``frame_threshold_probability`` counts as free (probability 0), as in ``from_arrays``.
        """
        dims = tuple(self.grid.dims)
        voxel_labels = np.asarray(voxel_labels)
        voxel_occupancy = np.asarray(voxel_occupancy)
        if voxel_labels.dtype != np.uint8 or voxel_occupancy.dtype != np.uint8:
            raise ValueError(f"voxel_labels and voxel_occupancy must be uint8, got {voxel_labels.dtype} and "
                             f"{voxel_occupancy.dtype}")
        if voxel_labels.shape != dims or voxel_occupancy.shape != dims:
            raise ValueError(f"voxel_labels and voxel_occupancy must have the grid's shape {dims}, got "
                             f"{voxel_labels.shape} and {voxel_occupancy.shape}")
        bad = (voxel_labels > self.config.num_classes) & (voxel_labels < FREE)
        if bad.any():
            raise ValueError(f"voxel_labels must be 0..{self.config.num_classes} (MapConfig.num_classes), FREE (254) "
                             f"or UNKNOWN (255), got {int(voxel_labels[bad].max())}")
        projection = depth_ext = None
        if depth is not None:
            if intrinsics is None:
                raise ValueError("intrinsics are needed to use the rendered depth")
            depth = np.asarray(depth, dtype=np.float32)
            if depth.ndim != 2:
                raise ValueError(f"depth must be (h, w), got shape {depth.shape}")
            projection = self.projection(cam_from_grid, intrinsics, depth.shape, render_stride)
            d = depth.reshape(-1)
            depth_ext = np.append(np.where(np.isfinite(d), d, np.float32(np.nan)), np.float32(np.nan))
        return DenseObservation(grid=self.grid, cam_from_grid=cam_from_grid, voxel_labels=voxel_labels,
                                voxel_occupancy=voxel_occupancy, table=self._percent_table, projection=projection,
                                depth=depth_ext, margin_m=self.config.occlusion_margin_m,
                                carve=self.config.free_in_front_of_depth)

    def from_result(self, result, cam_from_grid: np.ndarray, render_stride: int) -> FrameObservation:
        """An observation from a pipeline ``FrameResult`` (its dense grids, rendered depth and intrinsics)."""
        if result.grid != self.grid:
            raise ValueError(f"the result's grid {result.grid} is not the builder's {self.grid}")
        return self.from_dense(result.voxel_labels, result.voxel_occupancy, cam_from_grid, depth=result.depth,
                               intrinsics=result.intrinsics, render_stride=render_stride)
