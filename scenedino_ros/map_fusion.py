"""The node's local semantic map, without ROS: every frame fused at its camera pose into one ``SemanticMap``.

What the node (``scenedino_ros.map_node``), ``scenedino-process-bag`` and the first run share:

* ``map_config(p)``: the ``scenedino_core.mapping.MapConfig`` the ``mapping.*`` parameters describe. Its per-frame
  occupied/empty cut-off is the node's ``density_threshold_per_m`` at the grid's voxel size, so one frame alone
  reproduces the per-frame occupancy.
* ``MapFusion``: one map behind a lock (the worker fuses while service callbacks clear, save or read it).
  ``add_frame`` looks the camera pose up at the image stamp (``map_from_camera``, any ``lookup(target, source,
  stamp_ns)``), fuses the frame's dense prediction with ``map_from_grid = map_from_camera @ cam_from_grid`` and says
  whether the map outputs are due (at most ``mapping.publish_rate_hz`` in image-stamp time, so a bag processed
  offline gets the map messages the live node would publish). A frame without a pose is counted and not fused. A
  stamp earlier than the previous frame's resets the map (``SemanticMap.integrate``; ``time_jump`` does it at once
  when the node's pairing sees the jump). ``snapshot`` copies the window for the output messages; ``clear``, ``save``
  (npz + coloured PLY, atomic) and ``statistics`` serve the services and diagnostics.
* ``CachedPoses``: poses from a ``TransformCache`` filled from ``/tf`` and ``/tf_static`` messages (setups without
  ``tf2_ros``, and bags), waiting up to a timeout for a transform that has not arrived yet.

Poses: ``map_from_camera`` maps camera optical frame coordinates into ``mapping.frame``; ``cam_from_grid`` is the
pose the pipeline used for the frame (``FrameResolver``), so the frame grid lands where the model put it.
"""
from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenedino_core.files import atomic_path
from scenedino_core.labels import ssc_palette
from scenedino_core.mapping import (
    DenseMap,
    IntegrationStats,
    MapConfig,
    ObservationBuilder,
    OccupiedVoxels,
    SemanticMap,
)
from scenedino_core.mapping.semantic_map import ply_bytes
from scenedino_core.surface import exposed_voxels
from scenedino_core.voxels import VoxelGrid

from .tf_cache import TransformCache

#: ``MapConfig`` field -> the node parameter that sets it.
MAP_CONFIG_PARAMS = {
    "voxel_size_m": "mapping.voxel_size_m", "size_m": "mapping.size_m", "center_offset_m": "mapping.center_offset_m",
    "recenter_distance_m": "mapping.recenter_distance_m", "p_hit": "mapping.p_hit", "p_miss": "mapping.p_miss",
    "p_min": "mapping.p_min", "p_max": "mapping.p_max", "occupied_probability": "mapping.occupied_probability",
    "probability_gain": "mapping.probability_gain", "occluded_weight": "mapping.occluded_weight",
    "occlusion_margin_m": "mapping.occlusion_margin_m", "free_in_front_of_depth": "mapping.free_in_front_of_depth",
    "decay_s": "mapping.decay_s", "frame_threshold_probability": "density_threshold_per_m",
}
#: Bounds of the per-frame cut-off probability handed to ``MapConfig`` (it must lie strictly inside (0, 1)).
_CUT_OFF_BOUNDS = (1e-6, 1.0 - 1e-6)


def map_config(p: Any) -> MapConfig:
    """The ``MapConfig`` of the node parameters ``p`` (``NodeParams``); ``ValueError`` naming the field when they
    do not make one (``params.validate`` turns it into a ``ParameterError`` naming the parameter)."""
    cut_off = 1.0 - math.exp(-p.voxel_size_m * p.density_threshold_per_m)
    return MapConfig(
        voxel_size_m=p.mapping_voxel_size_m, size_m=tuple(p.mapping_size_m),
        center_offset_m=tuple(p.mapping_center_offset_m), recenter_distance_m=tuple(p.mapping_recenter_distance_m),
        p_hit=p.mapping_p_hit, p_miss=p.mapping_p_miss, p_min=p.mapping_p_min, p_max=p.mapping_p_max,
        occupied_probability=p.mapping_occupied_probability,
        frame_threshold_probability=min(max(cut_off, _CUT_OFF_BOUNDS[0]), _CUT_OFF_BOUNDS[1]),
        probability_gain=p.mapping_probability_gain, occluded_weight=p.mapping_occluded_weight,
        occlusion_margin_m=p.mapping_occlusion_margin_m, free_in_front_of_depth=p.mapping_free_in_front_of_depth,
        decay_s=p.mapping_decay_s)


def default_save_dir(save_dir: str = "") -> Path:
    """``save_dir``, or ``$ROS_HOME/scenedino_maps`` (``ROS_HOME`` defaults to ``~/.ros``) when it is empty."""
    if save_dir:
        return Path(save_dir).expanduser()
    return Path(os.environ.get("ROS_HOME") or Path.home() / ".ros").expanduser() / "scenedino_maps"


@dataclass(frozen=True)
class MapSettings:
    """What the map needs besides its ``MapConfig``."""

    frame: str
    """The map frame (``mapping.frame``)."""
    publish_period_ns: int
    """Least stamp difference between two publications (0: after every fused frame)."""
    render_stride: int
    """Stride of the rendered depth (``render.stride_px``): visible vs completed voxels."""
    bev_min_height_m: float
    bev_max_height_m: float
    """Height band of the map's bird's-eye view, above the grid frame's z = 0 (the ground) of the latest frame."""
    ground_labels: tuple[int, ...]
    """Classes that never make a bird's-eye cell occupied (``occupancy.ground_classes``)."""
    surface_only: bool
    """``~/map/semantic_points`` carries only surface voxels (``points.surface_only``)."""
    save_dir: Path

    @staticmethod
    def from_params(p: Any) -> MapSettings:
        from scenedino_core.labels import SSC_CLASSES

        names = [c.name for c in SSC_CLASSES]
        rate = p.mapping_publish_rate_hz
        return MapSettings(frame=p.mapping_frame.strip("/"), publish_period_ns=int(round(1e9 / rate)) if rate > 0
                           else 0, render_stride=p.render_stride_px, bev_min_height_m=p.occupancy_min_height_m,
                           bev_max_height_m=p.occupancy_max_height_m,
                           ground_labels=tuple(names.index(n) for n in p.occupancy_ground_classes),
                           surface_only=p.points_surface_only, save_dir=default_save_dir(p.mapping_save_dir))


class NoPose(RuntimeError):
    """The camera pose in the map frame is not known at the image stamp."""


@dataclass(frozen=True)
class FrameOutcome:
    """What ``MapFusion.add_frame`` did with one frame."""

    stamp_ns: int
    fused: bool
    reason: str = ""
    """Why the frame was not fused (the pose lookup's error)."""
    stats: IntegrationStats | None = None
    publish: bool = False
    """The map outputs are due now (``mapping.publish_rate_hz``)."""


@dataclass(frozen=True)
class MapSnapshot:
    """A consistent copy of the map for its output messages."""

    stamp_ns: int
    """Stamp of the latest fused frame (after ``clear``: the one before it; 0 when none)."""
    frame: str
    dense: DenseMap
    ground_z_m: float
    """z (map frame) of the latest fused frame's grid z = 0 plane: the ground below the camera."""
    map_from_camera: np.ndarray | None
    """(4, 4) pose of the latest fused camera in the map frame, or None."""
    frames: int
    """Frames in the map (since the last reset)."""


@dataclass(frozen=True)
class LastFrame:
    """The poses the latest fused frame was fused with."""

    stamp_ns: int
    map_from_grid: np.ndarray
    cam_from_grid: np.ndarray


@dataclass
class MapCounters:
    """Running counts for the diagnostics and summaries."""

    frames_fused: int = 0
    frames_without_pose: int = 0
    resets: int = 0
    """Map resets by stamps jumping back (bag loops, clock resets)."""
    clears: int = 0
    saves: int = 0
    published: int = 0
    last_no_pose: str = ""
    """Why the latest frame without a pose had none."""
    last_frame_fused: bool = True
    last_fusion_ms: float = float("nan")
    """Wall time of the latest fusion (pose lookup excluded)."""
    fusion_ms: list[float] = field(default_factory=list)


Lookup = Callable[[str, str, int], np.ndarray]
"""``lookup(target_frame, source_frame, stamp_ns)`` -> (4, 4) ``target_from_source``; raises when unknown."""


class MapFusion:
    """One local semantic map, fed frame by frame (see the module docstring).

    Args:
        config: the map (``map_config``).
        settings: frame, publication rate, bird's-eye band, save folder (``MapSettings.from_params``).
        grid: the frames' voxel grid (the pipeline's ``PipelineConfig.grid``).
    """

    def __init__(self, config: MapConfig, settings: MapSettings, grid: VoxelGrid):
        self.config, self.settings, self.grid = config, settings, grid
        self.map = SemanticMap(config)
        self.builder = ObservationBuilder(grid, config)
        self.counters = MapCounters()
        self._lock = threading.Lock()
        self._last_publish_ns: int | None = None
        self._map_from_grid: np.ndarray | None = None
        self._map_from_camera: np.ndarray | None = None
        self._latest_ns: int | None = None
        self.last_frame: LastFrame | None = None
        """Poses of the latest fused frame."""
        """Stamp of the latest fused frame before a ``clear`` (the cleared map's outputs carry it)."""

    @staticmethod
    def from_params(p: Any, grid: VoxelGrid) -> MapFusion:
        return MapFusion(map_config(p), MapSettings.from_params(p), grid)

    # ------------------------------------------------------------------ frames
    def add_frame(self, stamp_ns: int, camera_frame: str, result: Any, cam_from_grid: np.ndarray,
                  lookup: Lookup) -> FrameOutcome:
        """Look the camera pose up at ``stamp_ns`` and fuse the frame, or count it as a frame without a pose.

        Args:
            stamp_ns: the image stamp.
            camera_frame: the image's frame (``header.frame_id``).
            result: the pipeline's ``FrameResult`` (dense labels and occupancy, rendered depth, intrinsics).
            cam_from_grid: (4, 4) grid frame -> camera optical frame, as the pipeline used it.
            lookup: the pose source (``CachedPoses.lookup``, a tf2 buffer wrapper).
        """
        try:
            map_from_camera = np.asarray(lookup(self.settings.frame, camera_frame, int(stamp_ns)), dtype=np.float64)
        except Exception as exc:  # tf2 and TransformCache errors share no base class
            return self.no_pose(stamp_ns, f"{type(exc).__name__}: {exc}")
        return self.fuse(stamp_ns, result, cam_from_grid, map_from_camera)

    def no_pose(self, stamp_ns: int, reason: str) -> FrameOutcome:
        """Count a frame that has no pose (it is not fused)."""
        with self._lock:
            self.counters.frames_without_pose += 1
            self.counters.last_no_pose = reason
            self.counters.last_frame_fused = False
        return FrameOutcome(int(stamp_ns), fused=False, reason=reason)

    def fuse(self, stamp_ns: int, result: Any, cam_from_grid: np.ndarray, map_from_camera: np.ndarray
             ) -> FrameOutcome:
        """Fuse one frame at a known camera pose (``map_from_grid = map_from_camera @ cam_from_grid``).

        Raises:
            ValueError: a pose that is not rigid, a result on another grid.
        """
        stamp_ns = int(stamp_ns)
        cam_from_grid = np.asarray(cam_from_grid, dtype=np.float64)
        map_from_grid = np.asarray(map_from_camera, dtype=np.float64) @ cam_from_grid
        t0 = time.perf_counter()
        observation = self.builder.from_result(result, cam_from_grid, self.settings.render_stride)
        with self._lock:
            stats = self.map.integrate(stamp_ns, map_from_grid, observation)
            c = self.counters
            c.frames_fused += 1
            c.last_frame_fused = True
            if stats.reset:
                c.resets += 1
                self._last_publish_ns = None
            self._map_from_grid, self._map_from_camera = map_from_grid, np.array(map_from_camera, dtype=np.float64)
            self.last_frame = LastFrame(stamp_ns, map_from_grid, cam_from_grid)
            last = self._last_publish_ns
            period = self.settings.publish_period_ns
            publish = last is None or stamp_ns < last or stamp_ns - last >= period
            if publish:
                self._last_publish_ns = stamp_ns
            c.last_fusion_ms = (time.perf_counter() - t0) * 1e3
            c.fusion_ms.append(c.last_fusion_ms)
            del c.fusion_ms[:-200]
        return FrameOutcome(stamp_ns, fused=True, stats=stats, publish=publish)

    def time_jump(self) -> None:
        """The stamps went back (bag loop, clock reset): forget the map now."""
        with self._lock:
            if self.map.frames_integrated:
                self.counters.resets += 1
            self.map.reset()
            self._last_publish_ns = self._latest_ns = self.last_frame = None
            self._map_from_grid = self._map_from_camera = None

    # ------------------------------------------------------------------ services
    def clear(self) -> str:
        """Forget the map (``~/map/clear``); returns what was cleared, in words."""
        with self._lock:
            n = self.map.frames_integrated
            self._latest_ns = self.map.last_stamp_ns or self._latest_ns
            self.map.reset()
            self._last_publish_ns = None
            self.counters.clears += 1
        return f"cleared the map of {n} frame(s)"

    def save(self, path: str | Path | None = None) -> tuple[Path, Path]:
        """Write the map atomically as ``.npz`` (``SemanticMap.load`` restores it) and a coloured ``.ply`` of its
        occupied voxels (only the surface ones with ``points.surface_only``); default path
        ``<save_dir>/map_<stamp s>.<ns>.npz`` (stamp of the latest fused frame).
        The map is copied under the lock and written outside it, so fusion goes on while the file is written.
        Returns (npz path, ply path)."""
        with self._lock:
            frozen = copy.deepcopy(self.map)
        if path is None:
            stamp = frozen.last_stamp_ns or 0
            path = self.settings.save_dir / f"map_{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}.npz"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        npz, ply = frozen.save(path)
        if self.settings.surface_only:  # the PLY holds what ~/map/semantic_points holds
            with atomic_path(ply) as tmp:
                tmp.write_bytes(ply_bytes(surface_voxels(frozen), ssc_palette()))
        with self._lock:
            self.counters.saves += 1
        return npz, ply

    # ------------------------------------------------------------------ outputs
    def snapshot(self) -> MapSnapshot:
        """A copy of the window and the latest pose, taken under the lock."""
        with self._lock:
            T, camera = self._map_from_grid, self._map_from_camera
            return MapSnapshot(stamp_ns=self.map.last_stamp_ns or self._latest_ns or 0, frame=self.settings.frame,
                               dense=self.map.dense(), ground_z_m=float(T[2, 3]) if T is not None else 0.0,
                               map_from_camera=None if camera is None else camera.copy(),
                               frames=self.map.frames_integrated)

    def mark_published(self) -> None:
        with self._lock:
            self.counters.published += 1

    def statistics(self) -> dict[str, Any]:
        """Map and fusion figures for ``/diagnostics`` and summaries."""
        with self._lock:
            s = self.map.statistics()
            c = self.counters
            ms = np.asarray(c.fusion_ms) if c.fusion_ms else np.asarray([np.nan])
            return {
                "map_frame": self.settings.frame, "frames_in_map": s["frames"], "frames_fused": c.frames_fused,
                "frames_without_pose": c.frames_without_pose, "last_no_pose": c.last_no_pose,
                "map_resets": c.resets, "map_clears": c.clears, "map_saves": c.saves, "maps_published": c.published,
                "observed_voxels": s["observed_voxels"], "occupied_voxels": s["occupied_voxels"],
                "window_voxels": "x".join(map(str, self.config.dims)), "voxel_size_m": self.config.voxel_size_m,
                "window_origin_x_m": s["window_origin_x_m"], "window_origin_y_m": s["window_origin_y_m"],
                "window_origin_z_m": s["window_origin_z_m"], "state_bytes": s["state_bytes"],
                "fusion_ms_last": c.last_fusion_ms, "fusion_ms_p50": float(np.nanpercentile(ms, 50))
                if np.isfinite(ms).any() else float("nan"),
            }

    @property
    def last_frame_fused(self) -> bool:
        return self.counters.last_frame_fused


def surface_voxels(m: SemanticMap) -> OccupiedVoxels:
    """The occupied voxels of ``m`` that have a face neighbour that is not occupied (``surface.exposed_voxels``)."""
    v = m.occupied_voxels()
    exposed = exposed_voxels(m.dense().occupied)
    keep = exposed[tuple((v.index - np.asarray(m.window_origin)).T)]
    return OccupiedVoxels(points=v.points[keep], index=v.index[keep], labels=v.labels[keep],
                          confidence=v.confidence[keep], probability=v.probability[keep])


class CachedPoses:
    """Camera poses from a ``TransformCache`` (``/tf`` and ``/tf_static`` messages), waiting for late transforms.

    Args:
        cache: the transforms.
        timeout_s: how long ``lookup`` waits for a transform that is not known yet (polling every ``poll_s``).
    """

    def __init__(self, cache: TransformCache, timeout_s: float = 0.0, poll_s: float = 0.005):
        self.cache, self.timeout_s, self.poll_s = cache, float(timeout_s), float(poll_s)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """(4, 4) ``target_from_source`` at ``stamp_ns``; ``TransformLookupError`` once ``timeout_s`` has passed."""
        end = time.monotonic() + self.timeout_s
        while True:
            try:
                return self.cache.lookup(target, source, stamp_ns)
            except LookupError:
                if time.monotonic() >= end:
                    raise
            time.sleep(self.poll_s)

    def clear(self) -> None:
        """Forget the dynamic transforms (after a jump back in time)."""
        self.cache.clear()
