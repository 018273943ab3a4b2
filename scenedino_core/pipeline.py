"""The one inference path: RGB + intrinsics + camera pose -> voxel grid, rendered views and output arrays.

``Pipeline`` owns the model and offers the stages every consumer composes:

* ``encode``: fit the image to the model input (``scenedino_core.images.fit_to_model``: cover, then centre crop)
  and encode it;
* ``predict``: query a voxel grid with ``scenedino_core.voxels.predict_voxels`` (the same query as the SSCBench
  evaluation);
* ``render``: volume-render the input view: z-depth (metres along the optical axis), class ids and, on request, the
  rendered features;
* ``query_points``: density, features and classes at arbitrary camera-frame points.

``process`` chains them for one camera frame and derives the output arrays (occupied voxel list, dense
label/occupancy grids, bird's-eye view) with per-stage timings: the ROS node (``scenedino_ros``) and offline bag
processing call it; ``scenedino-infer`` calls the stages directly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import images as core_images
from . import voxels
from .checkpoint import load_model
from .config import SceneDINOConfig, load_config
from .labels import TRAINID_TO_SSC
from .model import SceneDINO
from .semantics import PredictionMode
from .types import FeatureVolume, FieldOutput

_logger = logging.getLogger(__name__)

#: Label values of the dense grid that are not classes (as in ``msg/SemanticVoxelGrid.msg``).
FREE = 254
UNKNOWN = 255
#: ``voxel_occupancy`` value outside the camera view.
OCCUPANCY_UNKNOWN = 255


class PipelineError(RuntimeError):
    """The pipeline cannot be built (no checkpoint, unusable device or precision)."""


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline needs (the node fills it from its parameters: ``scenedino_ros.outputs.pipeline_config``)."""

    grid: voxels.VoxelGrid
    """The voxel box in the gravity-aligned grid frame (x forward, y left, z up)."""
    checkpoint: str = ""
    model_config: str = ""
    allow_random_weights: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    """fp32, or bf16: autocast for the image encoder (ViT + decoder); point queries stay float32."""
    mode: str = PredictionMode.STEGO_KMEANS.value
    density_threshold: float = voxels.SIGMA_THRESHOLD
    """Grown density (1/m) above which a voxel is occupied."""
    bev_min_height_m: float = 0.2
    bev_max_height_m: float = 2.0
    ground_labels: tuple[int, ...] = (7, 8, 12)
    """SSC labels never marked occupied in the bird's-eye view (road, sidewalk, terrain)."""
    render_depth: bool = True
    render_semantics: bool = True
    render_stride: int = 2
    debug_delay_ms: float = 0.0
    """TEST/DEBUG ONLY: extra sleep per frame, to emulate a slower model."""


@dataclass(frozen=True)
class EncodedFrame:
    """One image fitted to the model input and encoded."""

    volume: FeatureVolume
    """The model's feature volume (batch size 1, float32 features)."""
    fitted: core_images.FittedImage
    """The model input image and its pixel intrinsics."""


@dataclass(frozen=True)
class RenderedView:
    """The model input view, volume-rendered at a pixel stride; arrays (h, w, ...) on the CPU."""

    depth: np.ndarray
    """(h, w) float32 z-depth (m, along the optical axis)."""
    train_ids: np.ndarray | None
    """(h, w) uint8 Cityscapes trainIds (0..18), or None when semantics were not asked for."""
    features: np.ndarray | None
    """(h, w, C) float32 rendered features, or None when not asked for."""


@dataclass(frozen=True)
class FrameResult:
    """Everything the output messages need for one image. Voxel arrays are indexed [x, y, z] in the grid frame."""

    grid: voxels.VoxelGrid
    out_from_grid: np.ndarray
    """(4, 4) grid frame -> output frame."""
    points: np.ndarray
    """(N, 3) float32 centres of the occupied voxels in the output frame."""
    point_labels: np.ndarray
    """(N,) uint8 SSC labels (1..15) of those voxels."""
    point_confidence: np.ndarray
    """(N,) float32 occupancy probability (0..1) of those voxels."""
    point_index: np.ndarray
    """(N, 3) int32 voxel indices (x, y, z) of those voxels."""
    voxel_labels: np.ndarray
    """(X, Y, Z) uint8: SSC label of occupied voxels, FREE (254) in view and empty, UNKNOWN (255) out of view."""
    voxel_occupancy: np.ndarray
    """(X, Y, Z) uint8 occupancy probability in percent (0..100), OCCUPANCY_UNKNOWN (255) out of view."""
    bev: np.ndarray
    """(Y, X) int8 bird's-eye view: 100 occupied, 0 free, -1 never observed (``bev[j, i]`` = column (i, j))."""
    depth: np.ndarray | None
    """(h, w) float32 z-depth (m) of the model's input view at ``render_stride``, or None."""
    semantics: np.ndarray | None
    """(h, w) uint8 SSC labels of the input view, or None."""
    intrinsics: np.ndarray
    """(3, 3) pixel intrinsics of the model input the image was fitted to."""
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Per-stage wall time (ms): fit, encode, voxels, render, [debug_delay,] outputs, total."""


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; ``PipelineError`` when CUDA (or that GPU) is not there."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise PipelineError(f"device {name!r} is not cpu, cuda or cuda:N")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PipelineError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PipelineError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return device


class Pipeline:
    """Owns the model and turns one camera frame into a ``FrameResult``.

    Args:
        config: pipeline settings.
        model: an already built model (tests); otherwise it is loaded from ``config.checkpoint``.
        random_model_config: config of the random model when ``allow_random_weights`` and no checkpoint (default:
            ``config.model_config`` if given, else the full SceneDINO).

    Raises:
        PipelineError: no checkpoint and random weights not allowed; bad device or precision.
        FileNotFoundError, scenedino_core.checkpoint.CheckpointError: the checkpoint cannot be loaded.
    """

    def __init__(self, config: PipelineConfig, model: SceneDINO | None = None,
                 random_model_config: SceneDINOConfig | None = None):
        self.config = config
        self.device = resolve_device(config.device)
        if config.precision not in ("fp32", "bf16"):
            raise PipelineError(f"precision {config.precision!r} is not fp32 or bf16")
        self.mode = PredictionMode.parse(config.mode)
        self.random_weights = False
        if model is None:
            model = self._load(random_model_config)
        self.model = model.to(self.device).eval()
        self._centres_key: bytes | None = None
        self._centres: torch.Tensor | None = None

    def _load(self, random_model_config: SceneDINOConfig | None) -> SceneDINO:
        cfg = self.config
        if cfg.checkpoint:
            return load_model(cfg.checkpoint, device=self.device, config=cfg.model_config or None)
        if not cfg.allow_random_weights:
            raise PipelineError("no checkpoint given: set the 'checkpoint' parameter to a SceneDINO checkpoint file "
                                "(see docs/ros_node.md), or set 'allow_random_weights' to run an untrained model for "
                                "testing")
        if random_model_config is None:
            random_model_config = load_config(cfg.model_config) if cfg.model_config else SceneDINOConfig()
        _logger.warning("RANDOM WEIGHTS: no checkpoint, running an untrained %s model; outputs are meaningless",
                        random_model_config.backbone.name)
        self.random_weights = True
        return SceneDINO(random_model_config)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) the model takes."""
        return tuple(self.model.config.image_size)  # type: ignore[return-value]

    def describe(self) -> str:
        """One line naming the model, for logs and diagnostics."""
        c = self.model.config
        source = "RANDOM WEIGHTS" if self.random_weights else (Path(self.config.checkpoint).name or "given model")
        return f"{c.backbone.name} {c.image_size[0]}x{c.image_size[1]} ({source})"

    def _autocast(self):
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _camera_centres(self, cam_from_grid: np.ndarray) -> torch.Tensor:
        key = np.asarray(cam_from_grid, dtype=np.float64).tobytes()
        if key != self._centres_key:  # a static camera pose reuses the centres
            centres = voxels.voxel_centers_camera(self.config.grid, cam_from_grid)
            self._centres = torch.from_numpy(centres).to(self.device)
            self._centres_key = key
        return self._centres  # type: ignore[return-value]

    def fit(self, rgb: np.ndarray, intrinsics: np.ndarray) -> core_images.FittedImage:
        """Scale (H, W, 3) uint8 ``rgb`` to cover the model input, centre-crop it; (3, 3) ``intrinsics`` follow."""
        return core_images.fit_to_model(rgb, intrinsics, self.image_size)

    def encode(self, rgb: np.ndarray, intrinsics: np.ndarray) -> EncodedFrame:
        """Fit one image to the model input (``fit``) and encode it (``encode_fitted``)."""
        return self.encode_fitted(self.fit(rgb, intrinsics))

    def encode_fitted(self, fitted: core_images.FittedImage) -> EncodedFrame:
        """Encode an image already fitted to the model input."""
        image = core_images.to_tensor_image(fitted.rgb).to(self.device)
        K = torch.from_numpy(np.asarray(fitted.intrinsics, dtype=np.float64)).to(self.device)
        with torch.inference_mode():
            with self._autocast():  # bf16 for the ViT + decoder, the bulk of the work
                volume = self.model.encode(image, K)
            # queries run in float32: predict_voxels casts the query points to the features' dtype, and bf16 would
            # round 50 m coordinates to 0.25 m
            volume = dataclasses.replace(volume, features=volume.features.float())
        return EncodedFrame(volume=volume, fitted=fitted)

    def predict(self, frame: EncodedFrame, cam_from_grid: np.ndarray | None = None, *,
                centres: np.ndarray | torch.Tensor | None = None,
                semantic_mask: np.ndarray | None = None) -> voxels.VoxelPrediction:
        """Occupancy and labels on the configured voxel grid (``config.grid``).

        Args:
            frame: from ``encode``.
            cam_from_grid: (4, 4) grid frame -> camera optical frame; the camera-frame voxel centres are computed
                from it (and cached while it does not change).
            centres: (X, Y, Z, 3) camera-frame voxel centres given directly instead of ``cam_from_grid`` (the
                SSCBench grid's exact float32 centres).
            semantic_mask: (X, Y, Z) bool, voxels that may receive semantics (default: centre in the input view).
        """
        if (cam_from_grid is None) == (centres is None):
            raise ValueError("give exactly one of cam_from_grid and centres")
        points = self._camera_centres(cam_from_grid) if centres is None else torch.as_tensor(centres)
        with torch.inference_mode():
            return voxels.predict_voxels(self.model, frame.volume, points.to(self.device),
                                         self.config.grid.voxel_size, mode=self.mode,
                                         sigma_threshold=self.config.density_threshold, semantic_mask=semantic_mask)

    def render(self, frame: EncodedFrame, stride: int = 1, *, semantics: bool = True,
               features: bool = False) -> RenderedView:
        """Volume-render every ``stride``-th pixel of the model input view.

        Args:
            frame: from ``encode``.
            stride: pixel step of the rendered grid.
            semantics: also predict class ids (``config.mode``).
            features: also return the rendered (reduced) features.
        """
        with torch.inference_mode():
            origins, dirs, (h, w) = self.model.image_rays(frame.volume, stride)
            out = self.model.render(frame.volume, origins, dirs, mode=self.mode if semantics else None)
            # distance along the unit ray -> z-depth (REP-118)
            depth = (out.depth.float() * dirs[..., 2].float()).reshape(h, w).cpu().numpy().astype(np.float32)
            train_ids = out.classes.reshape(h, w).cpu().numpy().astype(np.uint8) if semantics else None
            feats = out.features[0].reshape(h, w, -1).float().cpu().numpy() if features else None
        return RenderedView(depth=depth, train_ids=train_ids, features=feats)

    def query_points(self, frame: EncodedFrame, points: np.ndarray) -> FieldOutput:
        """Density, features and classes (``config.mode``) at (N, 3) camera-frame points; (1, N, ...) tensors."""
        pts = torch.from_numpy(np.asarray(points, dtype=np.float32))[None].to(self.device)
        with torch.inference_mode():
            return self.model.query(frame.volume, pts, mode=self.mode)

    def process(self, rgb: np.ndarray, intrinsics: np.ndarray, cam_from_grid: np.ndarray,
                out_from_grid: np.ndarray | None = None) -> FrameResult:
        """Run the model on one camera frame: encode, voxel grid, rendered view, output arrays.

        Args:
            rgb: (H, W, 3) uint8 RGB image of any size (fitted to the model input: cover, then centre crop).
            intrinsics: (3, 3) pixel intrinsics of ``rgb``.
            cam_from_grid: (4, 4) grid frame -> camera optical frame.
            out_from_grid: (4, 4) grid frame -> output frame (default: ``cam_from_grid``, i.e. camera-frame outputs).
        """
        cfg = self.config
        t = {"start": time.perf_counter()}
        fitted = self.fit(rgb, intrinsics)
        t["fit"] = time.perf_counter()
        frame = self.encode_fitted(fitted)
        t["encode"] = time.perf_counter()
        pred = self.predict(frame, cam_from_grid)
        t["voxels"] = time.perf_counter()
        depth = semantics = None
        if cfg.render_depth or cfg.render_semantics:
            view = self.render(frame, cfg.render_stride, semantics=cfg.render_semantics)
            depth = view.depth if cfg.render_depth else None
            semantics = TRAINID_TO_SSC[view.train_ids] if view.train_ids is not None else None
        t["render"] = time.perf_counter()
        if cfg.debug_delay_ms > 0:  # TEST/DEBUG ONLY
            time.sleep(cfg.debug_delay_ms / 1000.0)
            t["debug_delay"] = time.perf_counter()
        out_from_grid = np.asarray(cam_from_grid if out_from_grid is None else out_from_grid, dtype=np.float64)
        result = self._outputs(pred, out_from_grid, depth, semantics, frame.fitted.intrinsics)
        t["outputs"] = time.perf_counter()
        names = list(t)
        timings = {name: (t[name] - t[prev]) * 1e3 for prev, name in zip(names, names[1:])}
        timings["total"] = (t["outputs"] - t["start"]) * 1e3
        return dataclasses.replace(result, timings_ms=timings)

    def _outputs(self, pred: voxels.VoxelPrediction, out_from_grid: np.ndarray, depth: np.ndarray | None,
                 semantics: np.ndarray | None, intrinsics: np.ndarray) -> FrameResult:
        cfg = self.config
        grid = cfg.grid
        occupied = pred.occupied
        in_view = pred.in_view
        prob = pred.occupancy_probability
        labels = np.where(occupied, pred.labels, np.where(in_view, FREE, UNKNOWN)).astype(np.uint8)
        occupancy = np.where(in_view, np.rint(prob * 100.0), OCCUPANCY_UNKNOWN).astype(np.uint8)

        index = np.argwhere(occupied).astype(np.int32)  # (N, 3), C order = x slowest
        centres_grid = np.asarray(grid.origin, dtype=np.float64) + (index + 0.5) * grid.voxel_size
        points = (centres_grid @ out_from_grid[:3, :3].T + out_from_grid[:3, 3]).astype(np.float32)
        return FrameResult(
            grid=grid, out_from_grid=out_from_grid, points=points, point_labels=pred.labels[occupied],
            point_confidence=prob[occupied], point_index=index, voxel_labels=labels, voxel_occupancy=occupancy,
            bev=bird_eye_view(pred.labels, in_view, grid, cfg.bev_min_height_m, cfg.bev_max_height_m,
                              cfg.ground_labels),
            depth=depth, semantics=semantics, intrinsics=intrinsics)


def bird_eye_view(labels: np.ndarray, in_view: np.ndarray, grid: voxels.VoxelGrid, min_height_m: float,
                  max_height_m: float, ground_labels: tuple[int, ...] = ()) -> np.ndarray:
    """Project voxels onto the grid's x-y plane.

    Args:
        labels: (X, Y, Z) SSC labels (0 = empty).
        in_view: (X, Y, Z) bool, voxels the camera observes.
        grid: the voxel grid (its z axis is "up").
        min_height_m, max_height_m: voxel centres with z in this band (grid frame) take part.
        ground_labels: labels that never make a cell occupied.

    Returns:
        (Y, X) int8: 100 where a voxel of the band is occupied by a non-ground class, 0 where the band is observed
        but not occupied, -1 where no voxel of the band is observed.
    """
    z = grid.origin[2] + (np.arange(grid.dims[2]) + 0.5) * grid.voxel_size
    band = (z >= min_height_m) & (z <= max_height_m)
    lab, seen = labels[:, :, band], in_view[:, :, band]
    blocking = (lab > 0) & ~np.isin(lab, np.asarray(ground_labels, dtype=lab.dtype))
    bev = np.where(blocking.any(axis=2), 100, np.where(seen.any(axis=2), 0, -1)).astype(np.int8)
    return np.ascontiguousarray(bev.T)
