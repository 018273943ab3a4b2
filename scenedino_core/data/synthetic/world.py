"""The synthetic street world: a generated street with its rig, rendered views, Velodyne scans and voxel GT.

Rig and drive: the vehicle drives straight along +x in the right lane (y = ``StreetConfig.ego_lateral_m``) at
``frame_step_m`` per frame (10 Hz), the rig of ``rig.Rig.default()``. Views are rendered by the ray caster
(``raycast``) and shaded (``textures``); per view: RGB, distance along the ray, camera z depth and trainIds. Cams
02/03 render directly as the loader's virtual pinholes; ``render_fisheye`` gives true MEI fisheye images (exact MEI
lift of every fisheye pixel). Per frame, ``StreetWorld.voxel_gt`` gives the exact SSCBench voxel ground truth
(module ``voxel_gt``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenedino_core.data import kitti360 as k360
from scenedino_core.data.fisheye import MEICalibration
from scenedino_core.data.synthetic import raycast, textures
from scenedino_core.data.synthetic.layout import Primitives, StreetConfig, generate_primitives, ground_train_id
from scenedino_core.data.synthetic.raycast import RayHits, camera_rays, rotate
from scenedino_core.data.synthetic.rig import Rig
from scenedino_core.data.synthetic.voxel_gt import rasterize
from scenedino_core.labels import UNKNOWN


@dataclass(frozen=True)
class RenderedView:
    """One rendered camera view; all (H, W)."""

    rgb: np.ndarray
    """(H, W, 3) uint8."""
    distance: np.ndarray
    """float32 distance along the ray (m); inf for sky (and outside a fisheye's image circle)."""
    depth: np.ndarray
    """float32 camera z (m); inf for sky."""
    labels: np.ndarray
    """uint8 trainIds (10 = sky; 255 outside a fisheye's image circle)."""


@dataclass(frozen=True, eq=False)
class StreetWorld:
    """A generated street (see module doc). Build with ``StreetWorld.generate(seed, config)``."""

    config: StreetConfig
    seed: int
    primitives: Primitives
    rig: Rig = field(default_factory=Rig.default)
    sun: tuple[float, float, float] = (0.35, 0.45, 0.82)

    @staticmethod
    def generate(seed: int = 0, config: StreetConfig | None = None) -> StreetWorld:
        """Deterministic in ``seed`` and ``config`` (default: ``StreetConfig()``)."""
        config = StreetConfig() if config is None else config
        return StreetWorld(config=config, seed=int(seed),
                           primitives=generate_primitives(np.random.default_rng(seed), config))

    # ----------------------------------------------------------------------------------------- poses
    def check_frame(self, frame: int) -> int:
        """``frame`` as an int; ``ValueError`` unless 0 <= frame < ``config.num_frames``."""
        if not 0 <= int(frame) < self.config.num_frames:
            raise ValueError(f"frame must lie in [0, {self.config.num_frames}), got {frame}")
        return int(frame)

    def pose(self, frame: int) -> np.ndarray:
        """(4, 4) float64 pose (IMU: x forward, y right, z down) -> world of ``frame``."""
        m = np.diag([1.0, -1.0, -1.0, 1.0])
        m[:3, 3] = (self.check_frame(frame) * self.config.frame_step_m, self.config.ego_lateral_m,
                    self.rig.pose_height_m)
        return m

    def camera_to_world(self, frame: int, camera: str) -> np.ndarray:
        """(4, 4) camera -> world of a rendered view (cams 02/03: pitched virtual pinholes)."""
        return self.pose(frame) @ self.rig.view_to_pose(camera)

    def velo_to_world(self, frame: int) -> np.ndarray:
        return self.pose(frame) @ self.rig.velo_to_pose

    def ground_train_id(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """trainId of the ground at world (x, y): road, sidewalk or terrain (any shape)."""
        return ground_train_id(self.config, x, y)

    # ------------------------------------------------------------------------------------------- casting
    def cast(self, origin: np.ndarray, directions: np.ndarray) -> RayHits:
        """Nearest hit of rays from one ``origin`` (3,) along unit ``directions`` (H, W, 3) or (N, 3) (world)."""
        return raycast.cast(self.primitives, self.ground_train_id, origin, directions)

    def shade(self, hits: RayHits, directions: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 colours of ``hits`` (procedural textures, Lambertian sun, sky by direction)."""
        return textures.shade(self.primitives, hits, directions, self.sun, self.config.road_half_width_m)

    # -------------------------------------------------------------------------------------------- views
    def render(self, cam_to_world: np.ndarray, K_norm: np.ndarray, image_size: tuple[int, int]) -> RenderedView:
        """Render a pinhole view: ``cam_to_world`` (4, 4), ``K_norm`` (3, 3) normalised, ``image_size`` (H, W).

        Rays go through the pixel centres of ``geometry.pixel_centers`` (the model's convention).
        """
        h, w = int(image_size[0]), int(image_size[1])
        K = tuple(float(v) for v in np.asarray(K_norm, dtype=np.float64).ravel())
        return self._render_rays(np.asarray(cam_to_world, dtype=np.float64), camera_rays(h, w, K), (h, w))

    def _render_rays(self, c2w: np.ndarray, d_cam: np.ndarray, size: tuple[int, int],
                     valid: np.ndarray | None = None) -> RenderedView:
        h, w = size
        d_world = rotate(c2w, d_cam)
        hits = self.cast(c2w[:3, 3], d_world.reshape(h, w, 3))
        rgb = self.shade(hits, d_world)
        labels = hits.train_id.copy()
        dist = hits.distance.copy()
        if valid is not None:
            rgb[~valid], labels[~valid], dist[~valid] = 0, UNKNOWN, np.inf
        with np.errstate(invalid="ignore"):
            depth = np.where(np.isfinite(dist), dist * d_cam[:, 2], np.inf)
        return RenderedView(rgb=rgb.reshape(h, w, 3), distance=dist.reshape(h, w).astype(np.float32),
                            depth=depth.reshape(h, w).astype(np.float32), labels=labels.reshape(h, w))

    def render_camera(self, frame: int, camera: str, image_size: tuple[int, int] = k360.DEFAULT_IMAGE_SIZE
                      ) -> RenderedView:
        """View of ``camera`` (``image_00`` .. ``image_03``) at ``frame``; cams 02/03 are the virtual pinholes."""
        return self.render(self.camera_to_world(frame, camera), self.rig.K_norm, image_size)

    def render_fisheye(self, frame: int, camera: str, calib: MEICalibration) -> RenderedView:
        """True MEI fisheye image of cam 02/03 (unpitched fisheye frame); pixels the lens cannot see are black/255."""
        if camera not in k360.FISHEYE_CAMERAS:
            raise ValueError(f"fisheye camera must be one of {k360.FISHEYE_CAMERAS}, got {camera!r}")
        u, v = np.meshgrid(np.arange(calib.width, dtype=np.float64), np.arange(calib.height, dtype=np.float64))
        rays, valid = calib.unproject(np.stack([u, v], axis=-1).reshape(-1, 2))
        c2w = self.pose(frame) @ self.rig.cam_to_pose[camera]
        return self._render_rays(c2w, rays, (calib.height, calib.width), valid)

    def velodyne_scan(self, frame: int, azimuth_step_deg: float = 0.2, max_range_m: float = 120.0) -> np.ndarray:
        """(N, 4) float32 points (x, y, z, reflectance) in the Velodyne frame: 64 beams, +2 .. -24.9 deg."""
        el = np.deg2rad(np.linspace(2.0, -24.9, 64))[:, None]
        az = np.deg2rad(np.arange(0.0, 360.0, azimuth_step_deg))[None, :]
        d_velo = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                           np.broadcast_to(np.sin(el), (64, az.size))], axis=-1)
        v2w = self.velo_to_world(frame)
        d_world = rotate(v2w, d_velo.reshape(-1, 3))
        hits = self.cast(v2w[:3, 3], d_world.reshape(*d_velo.shape))
        keep = hits.distance < max_range_m
        refl = self.shade(hits, d_world)[keep].mean(axis=1) / 255.0
        pts = d_velo.reshape(-1, 3)[keep] * hits.distance[keep, None]
        return np.concatenate([pts, refl[:, None]], axis=1).astype(np.float32)

    # -------------------------------------------------------------------------------------------- voxels
    def voxel_gt(self, frame: int) -> np.ndarray:
        """(256, 256, 32) uint8 SSCBench GT ids of ``frame`` (0 empty, 255 inside solids; see ``voxel_gt``)."""
        return rasterize(self.primitives, self.velo_to_world(frame), self.ground_train_id)


__all__ = ["RenderedView", "StreetWorld"]
