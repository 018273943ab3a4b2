"""The one inference path: RGB + intrinsics + camera pose -> voxel grid, rendered views and output arrays.

``Pipeline`` owns the model and offers the stages every consumer composes:

* ``encode``: fit the image to the model input (``scenedino_core.images.fit_to_model``: cover, then centre crop)
  and encode it;
* ``predict`` / ``query_voxels``: query a voxel grid with ``scenedino_core.voxels.query_voxels`` (the same query as
  the SSCBench evaluation), as host arrays or as tensors on the device;
* ``render``: volume-render the input view: z-depth (metres along the optical axis), class ids and, on request, the
  rendered features;
* ``query_points``: density, features and classes at arbitrary camera-frame points.

``process`` chains them for one camera frame and derives the output arrays (occupied voxel list, bird's-eye view and,
on request, the dense label/occupancy grids) with per-stage timings: the ROS node (``scenedino_ros``) and offline bag
processing call it; ``scenedino-infer`` calls the stages directly. The output arrays are derived on the model's
device; only compact results (occupied voxel indices, their labels and confidences, the bird's-eye view) and the
dense grids a caller asks for are copied to the host.

Precision ``bf16`` runs the frame's matrix work under autocast (encoder, the semantic head of the voxel query, the
rendered view) while coordinates, the positional code and the voxel densities, which decide occupancy by a
threshold, stay float32. On CUDA, ``fp32`` is strict float32 (no TF32 in matrix products or convolutions) and
``tf32`` lets every float32 matrix product and convolution use TF32 tensor cores (``PRECISIONS``).

``compile`` runs the encoder and the voxel query's per-chunk steps through ``torch.compile`` with fixed shapes (CUDA
graphs on CUDA); ``warm_up`` compiles them (or falls back to eager execution when that fails) before the first real
frame.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
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
from .model import DEFAULT_CHUNK, SceneDINO
from .semantics import PredictionMode
from .threads import one_cpu_thread
from .types import FeatureVolume, FieldOutput

_logger = logging.getLogger(__name__)

#: Label values of the dense grid that are not classes (as in ``msg/SemanticVoxelGrid.msg``).
FREE = 254
UNKNOWN = 255
#: ``voxel_occupancy`` value outside the camera view.
OCCUPANCY_UNKNOWN = 255


class PipelineError(RuntimeError):
    """The pipeline cannot be built (no checkpoint, unusable device or precision)."""


#: Inference precisions, and what each does. bf16 leaves TF32 off, so its float32 parts (densities) stay exact.
PRECISIONS = {
    "fp32": "float32 throughout; on CUDA without TF32 (the CPU's results up to rounding)",
    "tf32": "float32 tensors; on CUDA every float32 matrix product and convolution may use TF32 tensor cores "
            "(10-bit mantissa; the densities too); on the CPU the same as fp32",
    "bf16": "bfloat16 autocast for the encoder, the voxel query's semantic head and the rendered view; coordinates, "
            "the positional code and the voxel densities (they decide occupancy) stay float32",
}


def use_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 for CUDA float32 matrix products and cuDNN convolutions. These are process-wide
    PyTorch settings: a CUDA ``Pipeline`` sets them from its precision when it is built."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


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
    """One of ``PRECISIONS``: fp32, tf32 or bf16."""
    compile: bool = False
    """Run the encoder and the voxel query's per-chunk steps through ``torch.compile`` (fixed shapes; CUDA graphs on
    CUDA). ``warm_up`` compiles them; when compiling fails the pipeline logs why and runs eagerly."""
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
    """(N,) float32 occupancy probability 1 - exp(-voxel_size * grown density) of those voxels: the quantity the
    occupied/free decision thresholds, so every occupied voxel has at least ``decision_probability``."""
    point_index: np.ndarray
    """(N, 3) int32 voxel indices (x, y, z) of those voxels."""
    voxel_labels: np.ndarray | None
    """(X, Y, Z) uint8: SSC label of occupied voxels, FREE (254) in view and empty, UNKNOWN (255) out of view; None
    when ``process`` was asked not to build the dense grids."""
    voxel_occupancy: np.ndarray | None
    """(X, Y, Z) uint8 occupancy probability (as ``point_confidence``) in percent (0..100), OCCUPANCY_UNKNOWN (255)
    out of view; None when the dense grids were not asked for."""
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
    decision_probability: float = 0.0
    """Occupancy probability of the density threshold, 1 - exp(-voxel_size * threshold): a voxel in view is occupied
    when its probability reaches it and its class is not empty."""


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
        if config.precision not in PRECISIONS:
            raise PipelineError(f"precision {config.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.device.type == "cuda":
            use_tf32(config.precision == "tf32")
        self.mode = PredictionMode.parse(config.mode)
        self.random_weights = False
        if model is None:
            model = self._load(random_model_config)
        self.model = model.to(self.device).eval()
        self._centres_key: bytes | None = None
        self._centres: torch.Tensor | None = None
        self._points_key: bytes | None = None
        self._points_tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._scratch: torch.Tensor | None = None
        self._compiled: dict[str, object] = {}
        if config.compile:
            self._compile()

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

    # ------------------------------------------------------------------ compiled path
    def _compile(self) -> None:
        """Compiled copies of the encoder and of the voxel query's per-chunk steps (compiled lazily, at first use)."""
        options = {"dynamic": False}
        if self.device.type == "cuda":
            options["mode"] = "reduce-overhead"  # CUDA graphs: one launch per step instead of one per kernel
        m = self.model
        self._compiled = {
            "image_features": torch.compile(m.image_features, **options),
            "field": torch.compile(m.field, **options),
            "semantics": torch.compile(functools.partial(m.semantics, mode=self.mode), **options),
        }

    @property
    def compiled(self) -> bool:
        """True while the compiled path is in use (``compile`` set and compiling did not fail)."""
        return bool(self._compiled)

    def warm_up(self, cam_from_grid: np.ndarray | None = None) -> float:
        """Run one synthetic frame (every output, the semantic head included) so the first real frame is not slow.

        Initialises the device, the allocator and, with ``compile``, compiles every compiled step for the shapes
        real frames use. When compiling fails the pipeline logs the reason, drops the compiled path and warms up
        eagerly.

        Args:
            cam_from_grid: (4, 4) camera pose to use (default: a level camera 1.5 m above the grid origin, looking
                along the grid's x axis).

        Returns:
            The seconds the warm-up took.
        """
        start = time.perf_counter()
        if cam_from_grid is None:
            cam_from_grid = DEFAULT_CAM_FROM_GRID
        rgb = core_images.synthetic_street_image(self.image_size)
        K = core_images.kitti360_intrinsics(self.image_size)
        try:
            self._warm_frame(rgb, K, cam_from_grid)
        except Exception as exc:  # torch.compile failures come in many types (backend, dynamo, C++ toolchain)
            if not self.compiled:
                raise
            _logger.warning("torch.compile failed, running eagerly: %s: %s", type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
            self._compiled = {}
            self._warm_frame(rgb, K, cam_from_grid)
        return time.perf_counter() - start

    def _warm_frame(self, rgb: np.ndarray, K: np.ndarray, cam_from_grid: np.ndarray) -> None:
        self.process(rgb, K, cam_from_grid)
        rows = SEMANTIC_CHUNK.get(self.device.type, voxels.SEMANTIC_CHUNK)
        features = torch.zeros(rows, self.model.config.field.feature_dim, device=self.device)
        with torch.inference_mode():  # the head, even when the warm-up frame occupies nothing
            self._semantics(features)
        self._sync()

    # ------------------------------------------------------------------ stages
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

    def _semantics(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) reduced features -> (N,) trainIds: expansion + semantic head (``precision``, compiled if set)."""
        fn = self._compiled.get("semantics") or functools.partial(self.model.semantics, mode=self.mode)
        with self._autocast():
            return fn(features)

    def _sync(self) -> None:
        """Wait for the device, so stage timings are the stage's own."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _camera_centres(self, cam_from_grid: np.ndarray) -> torch.Tensor:
        """(Z, Y, X, 3) camera-frame voxel centres on the device (z-major: see ``query_voxels``)."""
        key = np.asarray(cam_from_grid, dtype=np.float64).tobytes()
        if key != self._centres_key:  # a static camera pose reuses the centres
            centres = voxels.voxel_centers_camera(self.config.grid, cam_from_grid)
            self._centres = torch.from_numpy(np.ascontiguousarray(centres.transpose(2, 1, 0, 3))).to(self.device)
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
        # uint8 to the device, then to float there (a quarter of the bytes cross); same values as to_tensor_image
        image = torch.from_numpy(np.ascontiguousarray(fitted.rgb)).to(self.device)
        image = image.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        K = torch.from_numpy(np.asarray(fitted.intrinsics, dtype=np.float64)).to(self.device)
        with torch.inference_mode():
            with self._autocast():  # bf16 for the ViT + decoder, the bulk of the work
                volume = self.model.encode(image, K, image_features=self._compiled.get("image_features"))
            features = volume.features.float()
            if self.compiled and features is volume.features:
                features = features.clone()  # a compiled step may reuse its output buffer (CUDA graphs)
            # queries sample the features at float32 coordinates
            volume = dataclasses.replace(volume, features=features)
        return EncodedFrame(volume=volume, fitted=fitted)

    def query_voxels(self, frame: EncodedFrame, cam_from_grid: np.ndarray | None = None, *,
                     centres: np.ndarray | torch.Tensor | None = None,
                     semantic_mask: np.ndarray | None = None) -> voxels.VoxelTensors:
        """Occupancy and labels on the configured voxel grid (``config.grid``) as tensors on the device.

        The grid is queried z-major (x fastest), so the (X, Y, Z) tensors returned, indexed [x, y, z], are views of
        storage in the voxel grid message's order: the dense outputs need no transposition.

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
        points = self._camera_centres(cam_from_grid) if centres is None else _swap_xz(torch.as_tensor(centres))
        mask = None if semantic_mask is None else _swap_xz(torch.as_tensor(np.asarray(semantic_mask)))
        with torch.inference_mode():  # densities in float32: they decide occupancy by a threshold
            vox = voxels.query_voxels(self.model, frame.volume, points.to(self.device), self.config.grid.voxel_size,
                                      mode=self.mode, sigma_threshold=self.config.density_threshold,
                                      semantic_mask=mask, fixed_shapes=self.compiled,
                                      chunk_size=DENSITY_CHUNK.get(self.device.type, DEFAULT_CHUNK),
                                      semantic_chunk=SEMANTIC_CHUNK.get(self.device.type, voxels.SEMANTIC_CHUNK),
                                      field_fn=self._compiled.get("field"), semantics_fn=self._semantics)
        return dataclasses.replace(vox, **{name: _swap_xz(getattr(vox, name)) for name in
                                           ("sigma", "sigma_grown", "train_ids", "labels", "in_view")})

    def predict(self, frame: EncodedFrame, cam_from_grid: np.ndarray | None = None, *,
                centres: np.ndarray | torch.Tensor | None = None,
                semantic_mask: np.ndarray | None = None) -> voxels.VoxelPrediction:
        """``query_voxels`` (same arguments), copied to the host as numpy arrays."""
        return self.query_voxels(frame, cam_from_grid, centres=centres, semantic_mask=semantic_mask).numpy()

    def render(self, frame: EncodedFrame, stride: int = 1, *, semantics: bool = True,
               features: bool = False) -> RenderedView:
        """Volume-render every ``stride``-th pixel of the model input view.

        Args:
            frame: from ``encode``.
            stride: pixel step of the rendered grid.
            semantics: also predict class ids (``config.mode``).
            features: also return the rendered (reduced) features.
        """
        with torch.inference_mode(), self._autocast():
            origins, dirs, (h, w) = self.model.image_rays(frame.volume, stride)
            out = self.model.render(frame.volume, origins, dirs, mode=self.mode if semantics else None)
            # distance along the unit ray -> z-depth (REP-118)
            depth = (out.depth.float() * dirs[..., 2].float()).reshape(h, w).cpu().numpy().astype(np.float32)
            train_ids = out.classes.reshape(h, w).to(torch.uint8).cpu().numpy() if semantics else None
            feats = out.features[0].reshape(h, w, -1).float().cpu().numpy() if features else None
        return RenderedView(depth=depth, train_ids=train_ids, features=feats)

    def query_points(self, frame: EncodedFrame, points: np.ndarray) -> FieldOutput:
        """Density, features and classes (``config.mode``) at (N, 3) camera-frame points; (1, N, ...) tensors."""
        pts = torch.from_numpy(np.asarray(points, dtype=np.float32))[None].to(self.device)
        with torch.inference_mode():
            return self.model.query(frame.volume, pts, mode=self.mode)

    def process(self, rgb: np.ndarray, intrinsics: np.ndarray, cam_from_grid: np.ndarray,
                out_from_grid: np.ndarray | None = None, *, dense_grid: bool = True,
                render: bool = True) -> FrameResult:
        """Run the model on one camera frame: encode, voxel grid, rendered view, output arrays.

        Args:
            rgb: (H, W, 3) uint8 RGB image of any size (fitted to the model input: cover, then centre crop).
            intrinsics: (3, 3) pixel intrinsics of ``rgb``.
            cam_from_grid: (4, 4) grid frame -> camera optical frame.
            out_from_grid: (4, 4) grid frame -> output frame (default: ``cam_from_grid``, i.e. camera-frame outputs).
            dense_grid: build the dense ``voxel_labels`` / ``voxel_occupancy`` grids (else they are None).
            render: render the input view when the config asks for depth or semantics (else both are None).
        """
        cfg = self.config
        t = {"start": time.perf_counter()}
        fitted = self.fit(rgb, intrinsics)
        t["fit"] = time.perf_counter()
        frame = self.encode_fitted(fitted)
        self._sync()
        t["encode"] = time.perf_counter()
        vox = self.query_voxels(frame, cam_from_grid)
        self._sync()
        t["voxels"] = time.perf_counter()
        depth = semantics = None
        if render and (cfg.render_depth or cfg.render_semantics):
            view = self.render(frame, cfg.render_stride, semantics=cfg.render_semantics)
            depth = view.depth if cfg.render_depth else None
            semantics = TRAINID_TO_SSC[view.train_ids] if view.train_ids is not None else None
        t["render"] = time.perf_counter()
        if cfg.debug_delay_ms > 0:  # TEST/DEBUG ONLY
            time.sleep(cfg.debug_delay_ms / 1000.0)
            t["debug_delay"] = time.perf_counter()
        out_from_grid = np.asarray(cam_from_grid if out_from_grid is None else out_from_grid, dtype=np.float64)
        result = self._outputs(vox, out_from_grid, depth, semantics, frame.fitted.intrinsics, dense_grid)
        t["outputs"] = time.perf_counter()
        names = list(t)
        timings = {name: (t[name] - t[prev]) * 1e3 for prev, name in zip(names, names[1:])}
        timings["total"] = (t["outputs"] - t["start"]) * 1e3
        return dataclasses.replace(result, timings_ms=timings)

    # ------------------------------------------------------------------ output arrays
    def _outputs(self, vox: voxels.VoxelTensors, out_from_grid: np.ndarray, depth: np.ndarray | None,
                 semantics: np.ndarray | None, intrinsics: np.ndarray, dense_grid: bool) -> FrameResult:
        """Derive the output arrays on the device; copy only the compact ones (and the dense grids if asked)."""
        cfg = self.config
        grid = cfg.grid
        X, Y, _ = grid.dims
        with torch.inference_mode(), one_cpu_thread(self.device):  # small passes (scenedino_core.threads)
            # (Z, Y, X) views; no copies for the pipeline's own (z-major) results
            labels = _swap_xz(vox.labels).contiguous()
            in_view = _swap_xz(vox.in_view).contiguous()
            # occupied voxels in z-major order (x fastest), as the query found them
            flat = vox.occupied if vox.occupied is not None else labels.view(-1).nonzero().squeeze(1)
            index = torch.stack([flat % X, (flat // X) % Y, flat // (X * Y)], dim=1).to(torch.int32)
            point_labels = labels.view(-1)[flat]
            grown = _swap_xz(vox.sigma_grown)
            confidence = self._probability(grown.reshape(-1)[flat])
            bev = _bird_eye_view_zyx(flat, point_labels, in_view, grid, cfg.bev_min_height_m, cfg.bev_max_height_m,
                                     cfg.ground_labels)
            voxel_labels = voxel_occupancy = None
            if dense_grid:
                voxel_labels, voxel_occupancy = self._dense_grids(flat, point_labels, in_view, grown.contiguous())
            index = index.cpu().numpy()
            point_labels, confidence = point_labels.cpu().numpy(), confidence.cpu().numpy()
            bev = bev.cpu().numpy()
        return FrameResult(
            grid=grid, out_from_grid=out_from_grid, points=self._voxel_points(index, out_from_grid),
            point_labels=point_labels, point_confidence=confidence, point_index=index, voxel_labels=voxel_labels,
            voxel_occupancy=voxel_occupancy, bev=bev, depth=depth, semantics=semantics, intrinsics=intrinsics,
            decision_probability=float(1.0 - np.exp(-grid.voxel_size * cfg.density_threshold)))

    def _dense_grids(self, flat: torch.Tensor, point_labels: torch.Tensor, in_view: torch.Tensor,
                     grown: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y, Z) uint8 label and occupancy grids (views of z-major storage, the voxel grid message's order).

        Args:
            flat, point_labels: (N,) z-major flat indices and labels of the occupied voxels.
            in_view, grown: (Z, Y, X) contiguous.
        """
        # FREE (254) in view, UNKNOWN (255) out of view; then the labels of the occupied voxels
        in_view_u8 = in_view.view(torch.uint8)
        labels = UNKNOWN - in_view_u8
        labels.view(-1)[flat] = point_labels
        # rint(100 * probability), block by block in a scratch buffer that stays in the CPU caches
        occupancy = torch.empty_like(labels)
        Z, Y, X = grown.shape
        step = max(1, DENSE_BLOCK // (Y * X)) if grown.device.type == "cpu" else Z
        if self._scratch is None or self._scratch.shape != (step, Y, X) or self._scratch.device != grown.device:
            self._scratch = torch.empty((step, Y, X), dtype=torch.float32, device=grown.device)
        for z0 in range(0, Z, step):
            z1 = min(Z, z0 + step)
            buf = torch.mul(grown[z0:z1], -self.config.grid.voxel_size, out=self._scratch[:z1 - z0])
            buf.exp_().neg_().add_(1.0).mul_(100.0).round_()  # as _probability (exp is vectorised, expm1 is not)
            occupancy[z0:z1].copy_(buf)
        occupancy.bitwise_or_(in_view_u8 - 1)  # uint8 0 - 1 wraps to 255 = OCCUPANCY_UNKNOWN out of view
        return labels.cpu().numpy().transpose(2, 1, 0), occupancy.cpu().numpy().transpose(2, 1, 0)

    def _probability(self, sigma_grown: torch.Tensor) -> torch.Tensor:
        """float32 occupancy probability 1 - exp(-voxel_size * grown density)."""
        return 1.0 - torch.exp(sigma_grown.float() * -self.config.grid.voxel_size)

    def _voxel_points(self, index: np.ndarray, out_from_grid: np.ndarray) -> np.ndarray:
        """(N, 3) float32 output-frame centres of the voxels at (N, 3) ``index`` (float64 sums of per-axis tables)."""
        key = out_from_grid.tobytes()
        if key != self._points_key:
            grid = self.config.grid
            origin = np.asarray(grid.origin, dtype=np.float64)
            R, t = out_from_grid[:3, :3], out_from_grid[:3, 3]
            # column a of R times the voxel-centre coordinates along axis a; the translation rides on x
            tables = [np.outer(origin[a] + (np.arange(grid.dims[a]) + 0.5) * grid.voxel_size, R[:, a])
                      for a in range(3)]
            tables[0] = tables[0] + t
            self._points_tables, self._points_key = tuple(tables), key  # type: ignore[assignment]
        tx, ty, tz = self._points_tables  # type: ignore[misc]
        points = np.take(tx, index[:, 0], axis=0)
        points += np.take(ty, index[:, 1], axis=0)
        points += np.take(tz, index[:, 2], axis=0)
        return points.astype(np.float32)


def _swap_xz(t: torch.Tensor) -> torch.Tensor:
    """View of a (A, B, C, ...) tensor as (C, B, A, ...)."""
    return t.permute(2, 1, 0, *range(3, t.ndim))


#: Points per density call of the voxel query by device type: on a GPU, few calls (each ends in a synchronising
#: selection of the voxels that need semantics) at the cost of keeping ~270 MB of features.
DENSITY_CHUNK = {"cpu": DEFAULT_CHUNK, "cuda": 1 << 20}
#: Rows per call of the semantic head by device type: cache-sized blocks on a CPU, few large launches on a GPU.
SEMANTIC_CHUNK = {"cpu": voxels.SEMANTIC_CHUNK, "cuda": 65536}
#: Voxels per block when deriving the dense occupancy grid on a CPU (a 1 MB float32 scratch buffer).
DENSE_BLOCK = 262144
#: Default warm-up pose: camera optical frame 1.5 m above the grid origin, looking along the grid's x axis.
DEFAULT_CAM_FROM_GRID = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 1.5], [1.0, 0.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 1.0]])


def bird_eye_view(labels: np.ndarray | torch.Tensor, in_view: np.ndarray | torch.Tensor, grid: voxels.VoxelGrid,
                  min_height_m: float, max_height_m: float, ground_labels: tuple[int, ...] = ()) -> np.ndarray:
    """Project voxels onto the grid's x-y plane.

    Args:
        labels: (X, Y, Z) SSC labels (0 = empty), numpy or torch.
        in_view: (X, Y, Z) bool, voxels the camera observes.
        grid: the voxel grid (its z axis is "up").
        min_height_m, max_height_m: voxel centres with z in this band (grid frame) take part.
        ground_labels: labels that never make a cell occupied.

    Returns:
        (Y, X) int8: 100 where a voxel of the band is occupied by a non-ground class, 0 where the band is observed
        but not occupied, -1 where no voxel of the band is observed.
    """
    labels = _swap_xz(torch.as_tensor(labels)).contiguous()
    flat = labels.view(-1).nonzero().squeeze(1)
    return _bird_eye_view_zyx(flat, labels.view(-1)[flat], _swap_xz(torch.as_tensor(in_view)).contiguous(), grid,
                              min_height_m, max_height_m, ground_labels).cpu().numpy()


def _bird_eye_view_zyx(flat: torch.Tensor, point_labels: torch.Tensor, in_view: torch.Tensor, grid: voxels.VoxelGrid,
                       min_height_m: float, max_height_m: float, ground_labels: tuple[int, ...]) -> torch.Tensor:
    """``bird_eye_view`` from the occupied voxels' (N,) z-major flat indices and labels and a (Z, Y, X) view mask.

    Returns the (Y, X) int8 tensor on the inputs' device.
    """
    X, Y, _ = grid.dims
    z = grid.origin[2] + (np.arange(grid.dims[2]) + 0.5) * grid.voxel_size
    band = np.flatnonzero((z >= min_height_m) & (z <= max_height_m))  # z is increasing: a run of slabs
    lo, hi = (int(band[0]), int(band[-1]) + 1) if band.size else (0, 0)
    bev = in_view[lo:hi].any(dim=0).to(torch.int8) - 1  # 0 observed, -1 not
    blocking = np.ones(256, dtype=bool)  # by label: occupies a cell
    blocking[[0, *ground_labels]] = False
    blocking = torch.from_numpy(blocking).to(flat.device)
    in_band = (flat >= lo * X * Y) & (flat < hi * X * Y) & blocking[point_labels.long()]
    bev.view(-1)[flat[in_band] % (X * Y)] = 100
    return bev
