"""One paired camera frame -> pipeline inputs -> result -> output messages, without a node.

The live node (``scenedino_ros.node``) and offline bag processing (``scenedino_ros.bag.process``) run exactly these
functions, so a bag processed offline gives the messages the node would have published:

* ``frame_input``: Image or CompressedImage + CameraInfo -> RGB array, intrinsics, stamp and camera frame;
* ``infer``: camera pose for the frame (``FrameResolver``), then ``Pipeline.process``;
* ``build_messages``: the ``FrameResult`` -> every enabled output message, keyed by the output's name relative to
  the node (published as ``~/<name>``);
* ``pipeline_config`` and ``static_camera_pose``: the settings the parameters describe.

Stamps of every output equal the input image's stamp; voxel outputs are in the resolved output frame, the rendered
images in the camera frame.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from scenedino_core.labels import SSC_CLASSES
from scenedino_core.pipeline import FrameResult, Pipeline, PipelineConfig
from scenedino_core.surface import point_surface
from scenedino_core.voxels import VoxelGrid

from . import messages
from .conversions import camera_info_to_intrinsics, compressed_to_rgb, image_to_rgb
from .frames import FrameResolver, camera_pose_from_rpy, rigid_matrix
from .params import NodeParams

#: Every output, by its name relative to the node (``~/<name>``), in publishing order.
OUTPUT_NAMES = ("semantic_points", "occupancy", "voxels", "voxel_grid", "depth", "semantics")
#: Outputs published latched (reliable, transient local, depth 1): late subscribers get the last one.
LATCHED_OUTPUTS = frozenset({"occupancy"})
#: History depth of the other (reliable, volatile) outputs.
OUTPUT_DEPTH = 2


def semantic_voxel_grid_type() -> type:
    """The generated ``scenedino_ros/SemanticVoxelGrid`` class; ``ImportError`` with a hint when it is not built."""
    try:
        from scenedino_ros.msg import SemanticVoxelGrid
    except ImportError as exc:
        raise ImportError(f"scenedino_ros.msg is not generated ({exc}); build the package with colcon or run "
                          "scripts/build_msgs.sh") from exc
    return SemanticVoxelGrid


def output_types(p: NodeParams, *, voxel_grid: bool = True) -> dict[str, type]:
    """Name (``~/<name>``) -> message type of every output ``p`` switches on, in publishing order.

    Args:
        p: node parameters (``publish.*``).
        voxel_grid: False leaves ``voxel_grid`` out whatever ``publish.voxel_grid`` says (message not generated).
    """
    types: dict[str, type] = {"semantic_points": PointCloud2, "occupancy": OccupancyGrid}
    if p.publish_markers:
        types["voxels"] = MarkerArray
    if p.publish_voxel_grid and voxel_grid:
        types["voxel_grid"] = semantic_voxel_grid_type()
    if p.publish_depth:
        types["depth"] = Image
    if p.publish_semantics:
        types["semantics"] = Image
    return types


@dataclass(frozen=True)
class FrameInput:
    """What the pipeline needs from one image + CameraInfo pair."""

    stamp: Any
    """``builtin_interfaces/Time`` of the image header (copied to every output)."""
    rgb: np.ndarray
    """(H, W, 3) uint8 RGB image."""
    intrinsics: np.ndarray
    """(3, 3) float64 pixel intrinsics of ``rgb``."""
    camera_frame: str
    """The image's ``header.frame_id``, or ``default_camera_frame`` when it is empty."""


def frame_input(image: Any, info: Any, p: NodeParams, intrinsics: np.ndarray | None = None) -> FrameInput:
    """Convert a paired image (``sensor_msgs/Image`` or ``CompressedImage``) and its CameraInfo.

    Args:
        image: the image message.
        info: its ``sensor_msgs/CameraInfo`` (intrinsics from K, or from P with ``input.rectified``).
        p: node parameters (``input.max_megapixels``, ``input.rectified``, ``default_camera_frame``).
        intrinsics: (3, 3) K already derived from ``info`` for this image's size (the node checks raw images when
            they are paired); None derives it here.

    Raises:
        scenedino_ros.conversions.ImageConversionError: bad encoding, size fields or data.
        scenedino_ros.conversions.CameraInfoError: unusable intrinsics, or a size that does not match the image.
    """
    if isinstance(image, CompressedImage):
        rgb = compressed_to_rgb(image, p.max_megapixels)
    else:
        rgb = image_to_rgb(image, p.max_megapixels)
    if intrinsics is None:
        intrinsics = camera_info_to_intrinsics(info, rgb.shape[:2], rectified=p.rectified)
    return FrameInput(image.header.stamp, rgb, intrinsics, image.header.frame_id or p.default_camera_frame)


def infer(pipeline: Pipeline, resolver: FrameResolver, frame: FrameInput,
          outputs: Collection[str] | None = None, *, mapping: bool = False) -> tuple[FrameResult, str]:
    """Resolve the camera pose of ``frame`` and run the model: (result, output frame id).

    Args:
        outputs: names of the outputs that will be built (default: all): the dense voxel grids are derived only
            for ``voxel_grid``, the input view is rendered only for ``depth`` or ``semantics``.
        mapping: the frame is also fused into the local map, which needs the dense grids and the rendered depth.

    Raises:
        scenedino_ros.frames.FrameError: the camera pose is not available (TF lookup failed).
    """
    wanted = set(OUTPUT_NAMES if outputs is None else outputs)
    fs = resolver.resolve(frame.camera_frame, frame.stamp)
    return pipeline.process(frame.rgb, frame.intrinsics, fs.cam_from_grid, fs.out_from_grid,
                            dense_grid=mapping or "voxel_grid" in wanted,
                            render=mapping or bool(wanted & {"depth", "semantics"})), fs.frame_id


def build_messages(r: FrameResult, stamp: Any, frame_id: str, camera_frame: str, p: NodeParams,
                   class_names: tuple[str, ...], palette: np.ndarray,
                   outputs: Collection[str] | None = None) -> list[tuple[str, Any]]:
    """Every output message of one frame, in publishing order.

    Args:
        r: the pipeline's result.
        stamp: ``builtin_interfaces/Time`` of the input image.
        frame_id: output frame of the voxel outputs (``infer``'s second value).
        camera_frame: frame of the rendered images (the input image's frame).
        p: node parameters (``publish.*``, ``markers.max_voxels``, ``points.surface_only``).
        class_names: (16,) SSC class names (``scenedino_core.labels.class_table``).
        palette: (16, 3) uint8 class colours.
        outputs: names to build (default: all); a name must also be switched on in ``p``.

    Returns:
        (name, message) pairs, names from ``OUTPUT_NAMES``; ``depth`` / ``semantics`` are left out when the result
        has none.
    """
    wanted = set(OUTPUT_NAMES if outputs is None else outputs)
    header = Header(stamp=stamp, frame_id=frame_id)
    grid = r.grid
    out: list[tuple[str, Any]] = []
    points, point_labels, point_confidence, point_index = r.points, r.point_labels, r.point_confidence, r.point_index
    if p.points_surface_only and wanted & {"semantic_points", "voxels"}:
        keep = point_surface(point_index, grid.dims)
        points, point_labels, point_confidence, point_index = (points[keep], point_labels[keep],
                                                               point_confidence[keep], point_index[keep])
    if "semantic_points" in wanted:
        packed = messages.pack_rgb(palette)  # one packed colour per class, then one lookup per point
        out.append(("semantic_points", messages.semantic_cloud(header, points, point_labels, packed[point_labels],
                                                               point_confidence)))
    if "occupancy" in wanted:
        map_origin = messages.translated(r.out_from_grid, (grid.origin[0], grid.origin[1], 0.0))
        out.append(("occupancy", messages.occupancy_grid(header, r.bev, grid.voxel_size, map_origin)))
    if "voxels" in wanted and p.publish_markers:
        centres = np.asarray(grid.origin) + (point_index + 0.5) * grid.voxel_size
        out.append(("voxels", messages.voxel_markers(header, centres, point_labels, palette, grid.voxel_size,
                                                     r.out_from_grid, p.markers_max_voxels)))
    if "voxel_grid" in wanted and p.publish_voxel_grid and r.voxel_labels is not None:
        out.append(("voxel_grid", messages.semantic_voxel_grid(
            header, messages.translated(r.out_from_grid, grid.origin), grid.voxel_size, r.voxel_labels,
            r.voxel_occupancy, class_names, palette)))
    image_header = Header(stamp=stamp, frame_id=camera_frame)
    if "depth" in wanted and p.publish_depth and r.depth is not None:
        out.append(("depth", messages.depth_image(image_header, r.depth)))
    if "semantics" in wanted and p.publish_semantics and r.semantics is not None:
        out.append(("semantics", messages.rgb_image(image_header, palette[r.semantics])))
    return out


def pipeline_config(p: NodeParams) -> PipelineConfig:
    """The ``PipelineConfig`` these parameters describe."""
    class_names = tuple(c.name for c in SSC_CLASSES)
    return PipelineConfig(
        grid=VoxelGrid(origin=tuple(p.grid_min_m), voxel_size=p.voxel_size_m, dims=p.grid_dims),
        checkpoint=p.checkpoint, model_config=p.model_config, allow_random_weights=p.allow_random_weights,
        device=p.device, precision=p.precision, compile=p.compile, mode=p.prediction_mode,
        density_threshold=p.density_threshold_per_m,
        bev_min_height_m=p.occupancy_min_height_m, bev_max_height_m=p.occupancy_max_height_m,
        ground_labels=tuple(class_names.index(n) for n in p.occupancy_ground_classes),
        render_depth=p.publish_depth or p.mapping_enabled,  # the map tells visible from completed voxels by it
        render_semantics=p.publish_semantics, render_stride=p.render_stride_px,
        debug_delay_ms=p.debug_inference_delay_ms)


def static_camera_pose(p: NodeParams) -> np.ndarray:
    """(4, 4) pose of the camera optical frame in the grid frame from ``camera_pose.*``."""
    if p.camera_matrix:
        return rigid_matrix(p.camera_matrix, "camera_pose.matrix")
    return camera_pose_from_rpy(p.camera_xyz_m, p.camera_rpy_deg)
