"""The node's parameters: one table (the ``NodeParams`` dataclass) used to declare them and to read them back.

Every field of ``NodeParams`` carries its ROS name, description and constraints (``ParamSpec`` in the field
metadata). ``declare(node)`` declares them all with ``rcl_interfaces/ParameterDescriptor``s (description, ranges,
read-only); ``read(node)`` / ``from_values(mapping)`` build the frozen dataclass and validate what descriptors
cannot express (choices, array lengths, the grid box, class names). Any invalid value raises ``ParameterError``
naming the parameter, so the node fails at startup with a useful message.

Without ROS, ``scenedino_ros.params_file.load_params`` reads parameter files into the same ``NodeParams``.

All parameters are read once at startup and are read-only afterwards. Units are in the names (``_m``, ``_deg``,
``_s``, ``_ms``, ``_px``, ``_per_m``).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scenedino_core.labels import SSC_CLASSES
from scenedino_core.mapping.config import MapConfig
from scenedino_core.pipeline import PRECISIONS
from scenedino_core.semantics import PredictionMode
from scenedino_core.voxels import SIGMA_THRESHOLD

#: Largest voxel grid the node accepts (voxels); beyond it a frame would take minutes and gigabytes.
MAX_GRID_VOXELS = 16_000_000
#: Number of SSC classes the class palette covers.
NUM_CLASSES = len(SSC_CLASSES)


class ParameterError(ValueError):
    """A parameter value is invalid; the message starts with the parameter's name."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"parameter '{name}': {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ParamSpec:
    """How one parameter is declared and checked."""

    name: str
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    lengths: tuple[int, ...] = ()
    """Allowed lengths of an array parameter (empty: any)."""
    array_type: type | None = None
    """Element type of an array parameter (needed when its default is empty)."""


def _p(name: str, default: Any, description: str, **spec: Any) -> Any:
    factory_free = default if not isinstance(default, list) else tuple(default)
    return dataclasses.field(default=factory_free, metadata={"spec": ParamSpec(name, description, **spec)})


_MODES = tuple(m.value for m in PredictionMode)
#: The map core's defaults, which the ``mapping.*`` parameters share.
_MAP = MapConfig()
_CLASS_NAMES = tuple(c.name for c in SSC_CLASSES)


@dataclass(frozen=True)
class NodeParams:
    """All node parameters (defaults here; ``config/scenedino.yaml`` lists them for users)."""

    # ---- model
    checkpoint: str = _p("checkpoint", "", "SceneDINO checkpoint file (.pt). Project checkpoints embed their "
                         "config; official ones need training_config.yaml beside them (or model_config).")
    model_config: str = _p("model_config", "", "Model config file: the training_config.yaml of an official "
                           "checkpoint (default: beside it); with allow_random_weights and no checkpoint, a project "
                           "config YAML for the random model (default: the full model).")
    allow_random_weights: bool = _p("allow_random_weights", False, "TESTING ONLY: run an untrained, randomly "
                                    "initialised model when no checkpoint is given. Outputs are meaningless; the node "
                                    "says so in its log and diagnostics.")
    device: str = _p("device", "cpu", "Torch device: cpu, cuda or cuda:N.")
    precision: str = _p("precision", "fp32", "Inference precision: " + "; ".join(
                        f"{k}: {v}" for k, v in PRECISIONS.items()) + ". tf32 and bf16 are meant for GPUs.",
                        choices=tuple(PRECISIONS))
    compile: bool = _p("compile", False, "torch.compile the encoder and the voxel query (fixed shapes; CUDA graphs "
                       "on CUDA), compiled during the start-up warm-up; when compiling fails the node says so and "
                       "runs eagerly.")
    warm_up: bool = _p("warm_up", True, "Run one synthetic frame at start-up (and compile, with compile) so the "
                       "first real frame is not slow.")
    max_rate_hz: float = _p("max_rate_hz", 0.0, "Process at most this many frames per second (0: no limit); "
                            "paired frames beyond it are dropped (diagnostics: frames_rate_limited).", min=0.0,
                            max=1000.0)
    prediction_mode: str = _p("prediction_mode", "stego_kmeans", "Semantic prediction mode.", choices=_MODES)
    density_threshold_per_m: float = _p("density_threshold_per_m", SIGMA_THRESHOLD, "Grown density (1/m) above "
                                        f"which a voxel is occupied (SSCBench: {SIGMA_THRESHOLD:g}).", min=0.0,
                                        max=1000.0)
    # ---- grid (in the gravity-aligned grid frame: x forward, y left, z up)
    voxel_size_m: float = _p("grid.voxel_size_m", 0.2, "Voxel edge length (m).", min=0.01, max=10.0)
    grid_min_m: tuple[float, ...] = _p("grid.min_m", [0.0, -12.8, -0.4], "Grid box minimum corner [x, y, z] (m) "
                                       "in the grid frame (x forward, y left, z up).", lengths=(3,))
    grid_max_m: tuple[float, ...] = _p("grid.max_m", [25.6, 12.8, 3.6], "Grid box maximum corner [x, y, z] (m); "
                                       "max - min must be a multiple of grid.voxel_size_m.", lengths=(3,))
    # ---- bird's-eye view (nav_msgs/OccupancyGrid)
    occupancy_min_height_m: float = _p("occupancy.min_height_m", 0.2, "Lowest voxel centre z (m, grid frame) that "
                                       "counts for the 2D occupancy grid.", min=-100.0, max=100.0)
    occupancy_max_height_m: float = _p("occupancy.max_height_m", 2.0, "Highest voxel centre z (m, grid frame) that "
                                       "counts for the 2D occupancy grid.", min=-100.0, max=100.0)
    occupancy_ground_classes: tuple[str, ...] = _p("occupancy.ground_classes", ["road", "sidewalk", "terrain"],
                                                   "Traversable classes: never occupied in the 2D grid. "
                                                   f"Names from: {', '.join(_CLASS_NAMES[1:])}.", array_type=str)
    # ---- outputs
    class_colors_rgb: tuple[int, ...] = _p("class_colors_rgb", [], f"Class palette: {NUM_CLASSES} x [r, g, b] "
                                           "(0..255), flattened, in SSC label order; empty: the SSCBench palette.",
                                           lengths=(0, 3 * NUM_CLASSES), array_type=int)
    markers_max_voxels: int = _p("markers.max_voxels", 20000, "Cap on cubes in ~/voxels (MarkerArray); the "
                                 "PointCloud2 carries every voxel.", min=0, max=1_000_000)
    points_surface_only: bool = _p("points.surface_only", False, "~/semantic_points and ~/voxels carry only surface "
                                   "voxels (occupied, with a face neighbour that is not occupied: what a 3D view "
                                   "shows) instead of every occupied voxel; ~/voxel_grid keeps every voxel.")
    publish_depth: bool = _p("publish.depth", True, "Publish ~/depth (32FC1, m) rendered from the input view.")
    publish_semantics: bool = _p("publish.semantics", True, "Publish ~/semantics (rgb8 class colours).")
    publish_markers: bool = _p("publish.markers", True, "Publish ~/voxels (MarkerArray).")
    publish_voxel_grid: bool = _p("publish.voxel_grid", True, "Publish ~/voxel_grid (SemanticVoxelGrid).")
    render_stride_px: int = _p("render.stride_px", 2, "Render ~/depth and ~/semantics at every n-th pixel of the "
                               "model input.", min=1, max=64)
    # ---- input
    image_transport: str = _p("input.transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); "
                              "compressed: to '<image>/compressed' (sensor_msgs/CompressedImage, "
                              "the remapped image topic + /compressed).",
                              choices=("raw", "compressed"))
    reliability: str = _p("input.reliability", "auto", "QoS reliability of the image and camera_info "
                          "subscriptions (SensorData QoS otherwise). auto: reliable when every publisher of the "
                          "topic offers reliable, else best effort; re-checked every second.",
                          choices=("auto", "best_effort", "reliable"))
    queue_depth: int = _p("input.queue_depth", 2, "QoS depth of the input subscriptions.", min=1, max=100)
    rectified: bool = _p("input.rectified", False, "Images are rectified: intrinsics from CameraInfo P, else K.")
    max_megapixels: float = _p("input.max_megapixels", 40.0, "Reject larger input images.", min=0.01, max=1000.0)
    sync_max_stamp_diff_s: float = _p("sync.max_stamp_diff_s", 0.0, "Largest image/CameraInfo stamp difference "
                                      "(s) still paired (0: exact).", min=0.0, max=10.0)
    sync_queue_size: int = _p("sync.queue_size", 10, "Unpaired images/CameraInfos kept while waiting.", min=1,
                              max=1000)
    sync_use_latest_camera_info: bool = _p("sync.use_latest_camera_info", False, "Pair each image with the newest "
                                           "CameraInfo whatever its stamp.")
    # ---- frames
    target_frame: str = _p("target_frame", "", "Output and grid frame (gravity-aligned, e.g. base_link); empty: "
                           "outputs in the camera optical frame, grid placed by camera_pose.*.")
    use_tf: bool = _p("use_tf", True, "Look the camera pose in target_frame up in TF (when tf2_ros is available); "
                      "otherwise camera_pose.* is used.")
    tf_timeout_s: float = _p("tf_timeout_s", 0.05, "How long a TF lookup may wait (s).", min=0.0, max=5.0)
    camera_xyz_m: tuple[float, ...] = _p("camera_pose.xyz_m", [0.0, 0.0, 1.5], "Static camera position [x, y, z] "
                                         "(m) in the grid frame; z = height above the grid's z = 0.", lengths=(3,))
    camera_rpy_deg: tuple[float, ...] = _p("camera_pose.rpy_deg", [0.0, 0.0, 0.0], "Static camera roll, pitch, "
                                           "yaw (deg; pitch > 0 looks down).", lengths=(3,))
    camera_matrix: tuple[float, ...] = _p("camera_pose.matrix", [], "Static pose of the camera optical frame in "
                                          "the grid frame, 16 row-major values; overrides xyz_m/rpy_deg.",
                                          lengths=(0, 16), array_type=float)
    default_camera_frame: str = _p("default_camera_frame", "camera_optical_frame", "Frame id used when images "
                                   "arrive with an empty header.frame_id.")
    # ---- local semantic map (scenedino_core.mapping; ~/map/*)
    mapping_enabled: bool = _p("mapping.enabled", False, "Fuse every frame's prediction into a rolling semantic voxel "
                               "map in mapping.frame (camera pose from TF at the image stamp) and publish ~/map/*; "
                               "frames without a pose keep their per-frame outputs and are not fused.")
    mapping_frame: str = _p("mapping.frame", "odom", "Fixed, gravity-aligned (z up) frame the map is kept and "
                            "published in, e.g. odom or map.")
    mapping_publish_rate_hz: float = _p("mapping.publish_rate_hz", 1.0, "Publish ~/map/* at most this often, "
                                        "counted in image stamps (sensor time); 0: after every fused frame.",
                                        min=0.0, max=1000.0)
    mapping_pose_timeout_s: float = _p("mapping.pose_timeout_s", 0.1, "How long the worker waits for the camera "
                                       "pose at the image stamp to arrive in TF (s).", min=0.0, max=5.0)
    mapping_voxel_size_m: float = _p(
        "mapping.voxel_size_m", _MAP.voxel_size_m, "Map voxel edge (m); the lattice is fixed in mapping.frame.",
        min=0.01, max=10.0)
    mapping_size_m: tuple[float, ...] = _p(
        "mapping.size_m", list(_MAP.size_m), "Extent [x, y, z] (m) of the window the map keeps around the camera; "
        "multiples of mapping.voxel_size_m.", lengths=(3,))
    mapping_center_offset_m: tuple[float, ...] = _p(
        "mapping.center_offset_m", list(_MAP.center_offset_m), "Window centre relative to the camera, map axes (m); "
        "z 1.4 puts a 6.4 m window 1.8 m below and 4.6 m above the camera.", lengths=(3,))
    mapping_recenter_distance_m: tuple[float, ...] = _p(
        "mapping.recenter_distance_m", list(_MAP.recenter_distance_m), "The window moves once the camera is further "
        "than this from its centre along an axis (m); voxels leaving it are forgotten.", lengths=(3,))
    mapping_p_hit: float = _p(
        "mapping.p_hit", _MAP.p_hit, "Largest occupancy probability one frame can assert (OctoMap prob_hit 0.7).",
        min=0.0, max=1.0)
    mapping_p_miss: float = _p(
        "mapping.p_miss", _MAP.p_miss, "Smallest occupancy probability one frame can assert (OctoMap prob_miss "
        "0.4).", min=0.0, max=1.0)
    mapping_p_min: float = _p(
        "mapping.p_min", _MAP.p_min, "Lower clamp of the fused occupancy probability (OctoMap 0.1192).", min=0.0,
        max=1.0)
    mapping_p_max: float = _p(
        "mapping.p_max", _MAP.p_max, "Upper clamp of the fused occupancy probability (OctoMap 0.971).", min=0.0,
        max=1.0)
    mapping_occupied_probability: float = _p(
        "mapping.occupied_probability", _MAP.occupied_probability, "Fused probability above which a map voxel is "
        "occupied.", min=0.0, max=1.0)
    mapping_probability_gain: float = _p(
        "mapping.probability_gain", _MAP.probability_gain, "Slope of a frame's log-odds update around its "
        "occupied/empty cut-off (large: binary hit/miss).", min=0.001, max=1000.0)
    mapping_occluded_weight: float = _p(
        "mapping.occluded_weight", _MAP.occluded_weight, "Weight of voxels a frame completes behind the visible "
        "surface (rendered depth), relative to visible ones.", min=0.0, max=1.0)
    mapping_occlusion_margin_m: float = _p(
        "mapping.occlusion_margin_m", _MAP.occlusion_margin_m, "A voxel more than this behind the rendered depth (m) "
        "counts as completed (occluded).", min=0.0, max=100.0)
    mapping_free_in_front_of_depth: bool = _p(
        "mapping.free_in_front_of_depth", _MAP.free_in_front_of_depth, "Voxels more than occlusion_margin_m in front "
        "of the rendered depth count as free (the ray passed through them).")
    mapping_decay_s: float = _p(
        "mapping.decay_s", _MAP.decay_s, "A voxel not observed for this long (s, image stamps) returns to unknown "
        "(moving objects); 0: never.", min=0.0, max=1e6)
    mapping_save_dir: str = _p("mapping.save_dir", "", "Folder ~/map/save writes into; empty: "
                               "$ROS_HOME/scenedino_maps (ROS_HOME defaults to ~/.ros).")
    # ---- failures
    max_consecutive_failures: int = _p("max_consecutive_failures", 5, "Failed frames in a row (exceptions, out of "
                                       "memory) after which the node logs ERROR and its diagnostics level is ERROR.",
                                       min=1, max=1_000_000)
    max_frame_s: float = _p("max_frame_s", 30.0, "A frame still running after this long (s) is reported in the "
                            "diagnostics (ERROR) and the log while it runs.", min=0.01, max=86400.0)
    # ---- housekeeping
    diagnostics_period_s: float = _p("diagnostics.period_s", 1.0, "Period of /diagnostics (s).", min=0.1, max=60.0)
    log_throttle_s: float = _p("log_throttle_s", 5.0, "Repeat a per-frame warning at most this often (s).",
                               min=0.0, max=3600.0)
    debug_inference_delay_ms: float = _p("debug.inference_delay_ms", 0.0, "TEST/DEBUG ONLY: sleep this long per "
                                         "frame to emulate a slower model.", min=0.0, max=60000.0)

    @property
    def grid_dims(self) -> tuple[int, int, int]:
        """Voxels along x, y, z."""
        return tuple(int(round((hi - lo) / self.voxel_size_m))
                     for lo, hi in zip(self.grid_min_m, self.grid_max_m))  # type: ignore[return-value]


def specs() -> tuple[tuple[str, ParamSpec, Any], ...]:
    """(field name, spec, default) for every parameter, in declaration order."""
    return tuple((f.name, f.metadata["spec"], f.default) for f in dataclasses.fields(NodeParams))


def names() -> tuple[str, ...]:
    """ROS names of all parameters."""
    return tuple(spec.name for _, spec, _ in specs())


def _check_type(spec: ParamSpec, default: Any, value: Any) -> Any:
    """Coerce ``value`` to the type of ``default`` (ints accepted for floats), else ``ParameterError``."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
            raise ParameterError(spec.name, f"expected a list, got {value!r}")
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        elem = spec.array_type or (type(default[0]) if default else float)
        return tuple(_check_scalar(spec, elem, v, f"[{i}]") for i, v in enumerate(items))
    return _check_scalar(spec, type(default), value, "")


def _check_scalar(spec: ParamSpec, tp: type, value: Any, where: str) -> Any:
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}[tp]
    if not ok:
        raise ParameterError(spec.name + where, f"expected {tp.__name__}, got {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ParameterError(spec.name + where, f"must be finite, got {value}")
    if tp in (int, float) and ((spec.min is not None and value < spec.min)
                               or (spec.max is not None and value > spec.max)):
        raise ParameterError(spec.name + where, f"{value} is outside [{spec.min}, {spec.max}]")
    return value


def check_value(name: str, value: Any) -> Any:
    """``value`` of parameter ``name`` coerced to its type (tuples for arrays) and checked on its own.

    Raises:
        ParameterError: an unknown name, a wrong type, range, choice or array length.
    """
    known = {spec.name: (spec, default) for _, spec, default in specs()}
    if name not in known:
        raise _unknown(name)
    spec, default = known[name]
    value = _check_type(spec, default, value)
    if spec.choices and value not in spec.choices:
        raise ParameterError(name, f"{value!r} is not one of {list(spec.choices)}")
    if spec.lengths and len(value) not in spec.lengths:
        raise ParameterError(name, f"needs {' or '.join(map(str, spec.lengths))} values, got {len(value)}")
    return value


def from_values(values: Mapping[str, Any]) -> NodeParams:
    """Build ``NodeParams`` from ROS names -> values (missing names keep their defaults) and validate them.

    Raises:
        ParameterError: an unknown name, a wrong type or range, or an inconsistent combination.
    """
    fields = {spec.name: field for field, spec, _ in specs()}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise _unknown(unknown[0])
    params = NodeParams(**{fields[name]: check_value(name, value) for name, value in values.items()})
    validate(params)
    return params


def _unknown(name: str) -> ParameterError:
    known = names()
    close = difflib.get_close_matches(name, known, n=3)
    group = name.split(".")[0] + "." if "." in name else None
    close = [c for c in close if group and c.startswith(group)] or close  # grid.x: grid.* names first
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return ParameterError(name, f"unknown parameter; {hint}")


def validate(p: NodeParams) -> None:
    """Cross-parameter checks; raises ``ParameterError``."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", p.device):
        raise ParameterError("device", f"{p.device!r} is not cpu, cuda or cuda:N")
    for axis, lo, hi in zip("xyz", p.grid_min_m, p.grid_max_m):
        if not hi > lo:
            raise ParameterError("grid.max_m", f"{axis}: max {hi} must exceed min {lo}")
        n = (hi - lo) / p.voxel_size_m
        if abs(n - round(n)) > 1e-4:
            raise ParameterError("grid.max_m", f"{axis} extent {hi - lo:g} m is not a multiple of "
                                 f"grid.voxel_size_m = {p.voxel_size_m:g}")
    if math.prod(p.grid_dims) > MAX_GRID_VOXELS:
        raise ParameterError("grid.max_m", f"grid of {'x'.join(map(str, p.grid_dims))} voxels exceeds "
                             f"{MAX_GRID_VOXELS}; enlarge grid.voxel_size_m or shrink the box")
    if p.occupancy_max_height_m < p.occupancy_min_height_m:
        raise ParameterError("occupancy.max_height_m", f"{p.occupancy_max_height_m} is below "
                             f"occupancy.min_height_m = {p.occupancy_min_height_m}")
    z_lo, z_hi = p.grid_min_m[2], p.grid_max_m[2]
    if p.occupancy_max_height_m < z_lo + p.voxel_size_m / 2 or p.occupancy_min_height_m > z_hi - p.voxel_size_m / 2:
        raise ParameterError("occupancy.min_height_m", f"the height band [{p.occupancy_min_height_m}, "
                             f"{p.occupancy_max_height_m}] m contains no voxel centre of the grid (z {z_lo}..{z_hi} m)")
    for name in p.occupancy_ground_classes:
        if name not in _CLASS_NAMES[1:]:
            raise ParameterError("occupancy.ground_classes", f"unknown class {name!r}; choose from "
                                 f"{list(_CLASS_NAMES[1:])}")
    if any(not 0 <= c <= 255 for c in p.class_colors_rgb):
        raise ParameterError("class_colors_rgb", "values must lie in 0..255")
    _validate_mapping(p)
    if p.camera_matrix:
        from .frames import rigid_matrix

        try:
            rigid_matrix(p.camera_matrix, "camera_pose.matrix")
        except ValueError as exc:
            raise ParameterError("camera_pose.matrix", str(exc)) from None


#: Largest map window the node accepts (voxels): 50 M voxels hold about 1 GB of map state.
MAX_MAP_VOXELS = 50_000_000


def _validate_mapping(p: NodeParams) -> None:
    """The ``mapping.*`` parameters make a valid ``MapConfig`` (checked whether or not mapping is enabled)."""
    from .map_fusion import MAP_CONFIG_PARAMS, map_config

    if p.mapping_enabled and not p.mapping_frame.strip("/"):
        raise ParameterError("mapping.frame", "must name a frame when mapping.enabled is true")
    for axis, size in zip("xyz", p.mapping_size_m, strict=True):
        n = size / p.mapping_voxel_size_m
        if size <= 0 or abs(n - round(n)) > 1e-6 * max(1.0, n):
            raise ParameterError("mapping.size_m", f"{axis} = {size:g} m is not a positive multiple of "
                                 f"mapping.voxel_size_m = {p.mapping_voxel_size_m:g}")
    voxels = math.prod(round(s / p.mapping_voxel_size_m) for s in p.mapping_size_m)
    if voxels > MAX_MAP_VOXELS:
        raise ParameterError("mapping.size_m", f"a window of {voxels:,} voxels exceeds {MAX_MAP_VOXELS:,}; enlarge "
                             "mapping.voxel_size_m or shrink the window")
    if not p.mapping_p_miss < 0.5 < p.mapping_p_hit:
        raise ParameterError("mapping.p_hit", f"need mapping.p_miss < 0.5 < mapping.p_hit, got p_miss = "
                             f"{p.mapping_p_miss:g}, p_hit = {p.mapping_p_hit:g}")
    if not 0.0 < p.mapping_p_min < p.mapping_occupied_probability < p.mapping_p_max < 1.0:
        raise ParameterError("mapping.occupied_probability", "need 0 < mapping.p_min < mapping.occupied_probability "
                             f"< mapping.p_max < 1, got {p.mapping_p_min:g}, {p.mapping_occupied_probability:g}, "
                             f"{p.mapping_p_max:g}")
    try:
        map_config(p)
    except ValueError as exc:  # any other MapConfig rule: name the parameter its message starts with
        text = str(exc)
        field = next((f for f in sorted(MAP_CONFIG_PARAMS, key=len, reverse=True)
                      if re.match(rf"(need )?{f}\b", text)), None)
        raise ParameterError(MAP_CONFIG_PARAMS.get(field, "mapping.enabled"), text) from None


# ----------------------------------------------------------------------------- parameter files, without ROS


# ----------------------------------------------------------------------------- rclpy side

def descriptor(spec: ParamSpec, default: Any):
    """The ``rcl_interfaces/ParameterDescriptor`` of a parameter (read-only, with its range)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    d = ParameterDescriptor(name=spec.name, description=spec.description, read_only=True)
    if spec.choices:
        d.additional_constraints = f"one of: {', '.join(spec.choices)}"
    elif spec.lengths:
        d.additional_constraints = f"{' or '.join(map(str, spec.lengths))} values"
    if spec.min is not None and spec.max is not None and not isinstance(default, tuple):
        if isinstance(default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))]
        elif isinstance(default, int) and not isinstance(default, bool):
            d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return d


def _ros_default(spec: ParamSpec, default: Any) -> Any:
    """The value passed to ``declare_parameter``: lists for arrays, a ``Parameter.Type`` for empty arrays."""
    if isinstance(default, tuple):
        if default:
            return list(default)
        from rclpy.parameter import Parameter

        return {float: Parameter.Type.DOUBLE_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                str: Parameter.Type.STRING_ARRAY}[spec.array_type or float]
    return default


def declare(node: Any) -> None:
    """Declare every parameter on ``node`` (overrides from YAML / ``-p`` apply); ``ParameterError`` on bad ones."""
    for _, spec, default in specs():
        try:
            node.declare_parameter(spec.name, _ros_default(spec, default), descriptor(spec, default))
        except Exception as exc:  # rclpy's InvalidParameterValue/Type exceptions: re-raise naming the parameter
            raise ParameterError(spec.name, str(exc)) from None


def read(node: Any) -> NodeParams:
    """Read the declared parameters of ``node`` into a validated ``NodeParams``."""
    from rclpy.exceptions import ParameterUninitializedException

    values = {}
    for _, spec, _ in specs():
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:  # empty array parameters without an override
            continue
        if value is not None:
            values[spec.name] = value
    return from_values(values)


# ----------------------------------------------------------------------------- derived settings


