"""A procedural street world with exact ground truth, rendered by the project's own (numpy) ray caster.

World frame: x along the street, y left, z up, ground plane z = 0. Content (each primitive has a Cityscapes trainId
from ``labels.TRAIN_CLASSES`` and a procedural, seed-deterministic texture so photometric losses have signal):
road (|y| < 5 m, lane markings), sidewalks (5..8 m, paving), terrain (grass beyond), building facades (boxes with
window grids, 6..22 m high, reaching 40 m deep so nothing is visible behind them), parked and oncoming cars (body +
cabin boxes), poles (cylinders) with traffic signs (thin boxes), trees (trunk cylinder + crown sphere), hedges and
fences (boxes), sky (direction-only gradient with clouds, label 10, distance inf). Lambertian shading with a fixed
sun, no shadows: appearance does not depend on the viewpoint.

Rig (KITTI-360-like, ``Rig.default()``): the vehicle drives straight along +x in the right lane (y = -1.75 m) at
``frame_step_m`` per frame (10 Hz). The pose (IMU) frame is x forward, y right, z down, 0.93 m above the ground; the
Velodyne frame is level (x forward, y left, z up) 1.73 m above the ground. Cam 00 = Velodyne @ the hard-coded
SSCBench ``calib_cam_to_velo`` (so the SSCBench grid of every frame is axis-aligned with the world), cam 01 = cam 00
shifted 0.6 m along its x axis (rectified stereo, R_rect = I), cams 02/03 look left/right (fisheye frames, unpitched).
All perspective views use KITTI-360's normalised cam 00 K.

Fisheye: the world renders cams 02/03 directly as the virtual pinholes the loader would produce (cam -> pose @
``rotation_x(-15)``, cam 00's normalised K), so ``write_kitti360`` stores them in the preprocessed layout
``image_0{2,3}/data_<H>x<W>_0x-15/`` and skips the fisheye stage; with ``fisheye_size`` it also renders true MEI
fisheye images (``data_rgb/``, exact MEI lift of every fisheye pixel) consistent with the written yaml.

Ground truth: per view RGB, distance along the ray, camera z depth and trainIds; per frame an SSCBench voxel grid
(256 x 256 x 32, 0.2 m, Velodyne frame, ``sscbench.grid`` conventions, GT id space 0..19 / 255) computed exactly from
the primitives: a voxel whose (closed) cube meets a primitive's boundary gets that primitive's id (ties: the
higher-priority class, poles/signs > cars > vegetation > fences > buildings > ground; the ground label is taken at the
voxel centre);
a voxel entirely inside one solid (below ground, or inside a building/car/crown; grounded primitives are extended
below ground so the union with the ground counts) is 255 (unknown, never observable); every other voxel is 0
(exactly empty, also where no camera could see it).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

from scenedino_core import geometry, images
from scenedino_core.data import kitti360 as k360
from scenedino_core.data.kitti360_labels import ID_TO_TRAINID
from scenedino_core.labels import UNKNOWN
from scenedino_core.sscbench import grid as sgrid
from scenedino_core.sscbench.io import kitti360_sequence_dir, sscbench_image_path, voxel_gt_path

#: trainIds used by the world (``labels.TRAIN_CLASSES``).
ROAD, SIDEWALK, BUILDING, FENCE, POLE, SIGN, VEGETATION, TERRAIN, SKY, CAR = 0, 1, 2, 4, 5, 7, 8, 9, 10, 13
#: trainId -> SSCBench GT id (road 7, sidewalk 9, building 11, fence 12, vegetation 13, terrain 14, pole 15, sign 16,
#: car 1, ...); through ``labels.SSCBENCH_GT_TO_SSC`` it gives ``labels.TRAINID_TO_SSC`` except rider (a person here).
TRAINID_TO_SSCBENCH_GT = np.array([7, 9, 11, 11, 12, 15, 18, 16, 13, 14, 0, 6, 6, 1, 4, 5, 5, 3, 2], dtype=np.uint8)
#: Voxel label priority per trainId (higher wins where several surfaces meet one voxel).
_PRIORITY = np.array([0, 0, 1, 1, 2, 5, 6, 6, 3, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4], dtype=np.int64)
#: KITTI-360 full-resolution rectified size (H, W) and the normalised K of cam 00 (shared by every synthetic view).
FULL_SIZE: tuple[int, int] = (images.KITTI360_IMAGE_SIZE[0], images.KITTI360_IMAGE_SIZE[1])
K_NORM: np.ndarray = geometry.normalize_intrinsics(torch.as_tensor(images.intrinsics_matrix(*images.KITTI360_CAM00)),
                                                   FULL_SIZE).numpy()
K_NORM.setflags(write=False)
STEREO_BASELINE_M = 0.6
#: KITTI-360's ``image_02.yaml`` lens (p1 = p2 = 0 so the written yaml describes the rendered images exactly).
KITTI360_MEI = k360.MEICalibration(xi=2.2134047507854890, k1=1.6798235660113681e-02, k2=1.6548773243373522,
                                   gamma1=1336.3220825849971, gamma2=1335.7883350012958, u0=716.94323510126321,
                                   v0=705.76498308221585, width=1400, height=1400)
FRAME_RATE_HZ = 10.0
_START_NS = 1369730762 * 10**9  # 2013-05-28 08:46:02 UTC, the start of KITTI-360 drive 0000
_TILE = 16
#: Contact tolerance of the voxel tests (m): faces on voxel planes up to float rounding count as touching.
_TOUCH_M = 1e-9
_LATTICE_SHIFT = np.array([0.3183, 0.5772, 0.7071])
_GROUND, _SKY = -1, -2


class Shape(IntEnum):
    BOX = 0
    CYLINDER = 1
    """Vertical (axis z), capped."""
    SPHERE = 2


class Material(IntEnum):
    ASPHALT = 0
    PAVING = 1
    GRASS = 2
    FACADE = 3
    CAR_BODY = 4
    CAR_CABIN = 5
    METAL = 6
    SIGN = 7
    FOLIAGE = 8
    BARK = 9
    HEDGE = 10
    FENCE = 11


# ------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class StreetConfig:
    """Street layout; lengths in metres."""

    num_frames: int = 200
    frame_step_m: float = 1.0
    road_half_width_m: float = 5.0
    sidewalk_width_m: float = 3.0
    ego_lateral_m: float = -1.75
    building_height_m: tuple[float, float] = (6.0, 22.0)
    building_width_m: tuple[float, float] = (8.0, 20.0)
    building_far_m: float = 40.0
    """|y| of the back of every building (deep boxes: nothing is visible behind a facade)."""
    parked_car_probability: float = 0.55
    oncoming_car_spacing_m: tuple[float, float] = (25.0, 60.0)
    pole_spacing_m: tuple[float, float] = (15.0, 30.0)
    tree_spacing_m: tuple[float, float] = (10.0, 25.0)
    lookahead_m: float = 150.0
    """Content beyond the last frame (fisheye offsets, the 51.2 m grid, far views)."""

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.frame_step_m <= 0:
            raise ValueError(f"num_frames must be >= 1 and frame_step_m > 0, got {self.num_frames}, "
                             f"{self.frame_step_m}")

    @property
    def sidewalk_outer_m(self) -> float:
        return self.road_half_width_m + self.sidewalk_width_m


@dataclass(frozen=True)
class Rig:
    """Camera rig: ``cam_to_pose`` (4, 4) float64 of the *physical* cameras (rectified 00/01, unpitched fisheye
    frames 02/03, as written to ``calib_cam_to_pose.txt``), ``velo_to_pose`` (4, 4), ``K_norm`` (3, 3)."""

    cam_to_pose: dict[str, np.ndarray]
    velo_to_pose: np.ndarray
    K_norm: np.ndarray
    pitch_deg: float = k360.FISHEYE_PITCH_DEG
    pose_height_m: float = 0.93

    @staticmethod
    def default() -> "Rig":
        velo_to_pose = np.diag([1.0, -1.0, -1.0, 1.0])
        velo_to_pose[:3, 3] = (0.8, 0.0, -0.8)
        cam00 = velo_to_pose @ sgrid.cam_to_velo_matrix()
        shift = np.eye(4)
        shift[0, 3] = STEREO_BASELINE_M
        fisheye = {}
        for cam, side in (("image_02", 1.0), ("image_03", -1.0)):
            m = np.eye(4)  # columns: camera x, y, z in the Velodyne frame; looks to +y (left) or -y (right)
            m[:3, :3] = np.array([[side, 0.0, 0.0], [0.0, 0.0, side], [0.0, -1.0, 0.0]])
            m[:3, 3] = (0.0, 0.5 * side, 0.0)
            fisheye[cam] = velo_to_pose @ m
        return Rig(cam_to_pose={"image_00": cam00, "image_01": cam00 @ shift, **fisheye}, velo_to_pose=velo_to_pose,
                   K_norm=K_NORM.copy())

    def view_to_pose(self, camera: str) -> np.ndarray:
        """(4, 4) camera -> pose of the rendered view (cams 02/03: the pitched virtual pinhole)."""
        if camera not in self.cam_to_pose:
            raise ValueError(f"unknown camera {camera!r}, expected one of {sorted(self.cam_to_pose)}")
        m = self.cam_to_pose[camera]
        return m @ k360.rotation_x(self.pitch_deg) if camera in k360.FISHEYE_CAMERAS else m


# ------------------------------------------------------------------------------------------- primitives
@dataclass(frozen=True, eq=False)
class Primitives:
    """M primitives: ``shape``/``material`` (M,) uint8, ``lo``/``hi`` (M, 3) float64 axis-aligned bounds (the solid
    itself for boxes), ``radius`` (M,) float64 (cylinders, spheres), ``train_id`` (M,) uint8, ``color`` (M, 3)."""

    shape: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    radius: np.ndarray
    train_id: np.ndarray
    material: np.ndarray
    color: np.ndarray

    def __len__(self) -> int:
        return int(self.shape.size)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.lo + self.hi)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N, M) bool: point strictly inside primitive m by more than ``margin``."""
        p = np.asarray(points, dtype=np.float64)[:, None, :]
        lo, hi, c, r = self.lo[None] + margin, self.hi[None] - margin, self.center[None], self.radius[None]
        box = np.all((p > lo) & (p < hi), axis=-1)
        cyl = (np.sum((p[..., :2] - c[..., :2]) ** 2, -1) < (r - margin) ** 2) & (p[..., 2] > lo[..., 2]) & (
            p[..., 2] < hi[..., 2])
        sph = np.sum((p - c) ** 2, -1) < (r - margin) ** 2
        return np.where(self.shape == Shape.BOX, box, np.where(self.shape == Shape.CYLINDER, cyl, sph))


class _Builder:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def box(self, lo, hi, train_id: int, material: Material, color) -> None:
        self.rows.append((Shape.BOX, lo, hi, 0.0, train_id, material, color))

    def cylinder(self, cx: float, cy: float, r: float, z0: float, z1: float, train_id: int, material: Material,
                 color) -> None:
        self.rows.append((Shape.CYLINDER, (cx - r, cy - r, z0), (cx + r, cy + r, z1), r, train_id, material, color))

    def sphere(self, c, r: float, train_id: int, material: Material, color) -> None:
        c = np.asarray(c, dtype=np.float64)
        self.rows.append((Shape.SPHERE, c - r, c + r, r, train_id, material, color))

    def build(self) -> Primitives:
        cols = list(zip(*self.rows))
        return Primitives(shape=np.array(cols[0], np.uint8), lo=np.array(cols[1], np.float64),
                          hi=np.array(cols[2], np.float64), radius=np.array(cols[3], np.float64),
                          train_id=np.array(cols[4], np.uint8), material=np.array(cols[5], np.uint8),
                          color=np.array(cols[6], np.float64))


_FACADE_COLORS = np.array([(0.72, 0.62, 0.50), (0.80, 0.76, 0.66), (0.60, 0.40, 0.32), (0.86, 0.83, 0.76),
                           (0.55, 0.57, 0.60), (0.70, 0.50, 0.40), (0.88, 0.80, 0.58), (0.45, 0.47, 0.52)])
_CAR_COLORS = np.array([(0.70, 0.10, 0.10), (0.10, 0.20, 0.60), (0.85, 0.85, 0.85), (0.15, 0.15, 0.15),
                        (0.50, 0.50, 0.55), (0.20, 0.45, 0.25), (0.90, 0.70, 0.10)])
_SIGN_COLORS = np.array([(0.10, 0.30, 0.80), (0.80, 0.10, 0.10), (0.95, 0.80, 0.10)])


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float = 0.05) -> np.ndarray:
    return np.clip(color + rng.uniform(-amount, amount, 3), 0.0, 1.0)


def _generate(rng: np.random.Generator, cfg: StreetConfig) -> Primitives:
    b = _Builder()
    x_min, x_max = -40.0, (cfg.num_frames - 1) * cfg.frame_step_m + cfg.lookahead_m
    road, walk = cfg.road_half_width_m, cfg.sidewalk_outer_m
    for side in (1.0, -1.0):
        x = x_min
        while x < x_max:  # buildings with optional front yard, hedge or fence
            width = rng.uniform(*cfg.building_width_m)
            setback = rng.uniform(1.5, 4.0) if rng.random() < 0.35 else 0.0
            y0, y1 = walk + setback, cfg.building_far_m
            ylo, yhi = (y0, y1) if side > 0 else (-y1, -y0)
            b.box((x, ylo, 0.0), (x + width, yhi, rng.uniform(*cfg.building_height_m)), BUILDING, Material.FACADE,
                  _jitter(rng, _FACADE_COLORS[rng.integers(len(_FACADE_COLORS))]))
            if setback > 0 and rng.random() < 0.7:
                fy = side * (walk + 0.3)
                if rng.random() < 0.5:
                    b.box((x + 0.5, min(fy, fy + side * 0.6), 0.0), (x + width - 0.5, max(fy, fy + side * 0.6),
                          rng.uniform(0.8, 1.3)), VEGETATION, Material.HEDGE, _jitter(rng, np.array([.18, .38, .14])))
                else:
                    b.box((x + 0.2, min(fy, fy + side * 0.08), 0.0), (x + width - 0.2, max(fy, fy + side * 0.08),
                          rng.uniform(1.0, 1.6)), FENCE, Material.FENCE, _jitter(rng, np.array([.55, .45, .35])))
            x += width + (rng.uniform(2.0, 6.0) if rng.random() < 0.3 else 0.0)
        poles: list[float] = []
        x = x_min + rng.uniform(0.0, 10.0)
        while x < x_max:  # poles, some with a traffic sign facing the traffic
            py = side * (road + 0.5)
            b.cylinder(x, py, 0.12, 0.0, rng.uniform(5.0, 8.0), POLE, Material.METAL, np.array([.55, .55, .58]))
            if rng.random() < 0.45:
                z0 = rng.uniform(2.0, 2.6)
                b.box((x - 0.16, py - 0.35, z0), (x - 0.13, py + 0.35, z0 + 0.7), SIGN, Material.SIGN,
                      _SIGN_COLORS[rng.integers(len(_SIGN_COLORS))])
            poles.append(x)
            x += rng.uniform(*cfg.pole_spacing_m)
        x = x_min + rng.uniform(0.0, 10.0)
        while x < x_max:  # trees on the outer sidewalk
            if all(abs(x - p) > 2.5 for p in poles):
                ty, trunk = side * (walk - 1.0), rng.uniform(2.5, 3.5)
                r = rng.uniform(1.6, 2.4)
                b.cylinder(x, ty, rng.uniform(0.15, 0.25), 0.0, trunk + 0.5 * r, VEGETATION, Material.BARK,
                           np.array([.38, .27, .17]))
                b.sphere((x, ty, trunk + 0.6 * r), r, VEGETATION, Material.FOLIAGE,
                         _jitter(rng, np.array([.22, .45, .16]), 0.06))
            x += rng.uniform(*cfg.tree_spacing_m)
        x = x_min
        while x < x_max:  # parked cars along the kerb
            length, width = rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9)
            if rng.random() < cfg.parked_car_probability:
                _car(b, rng, x, side * (road - 0.25 - width / 2), length, width)
            x += length + rng.uniform(0.8, 3.0)
        if side > 0:
            x = x_min + rng.uniform(*cfg.oncoming_car_spacing_m)
            while x < x_max:  # stopped cars in the oncoming lane
                _car(b, rng, x, -cfg.ego_lateral_m, rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9))
                x += rng.uniform(*cfg.oncoming_car_spacing_m)
    return b.build()


def _car(b: _Builder, rng: np.random.Generator, x: float, y: float, length: float, width: float) -> None:
    color = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 0.04)
    b.box((x, y - width / 2, 0.3), (x + length, y + width / 2, 1.0), CAR, Material.CAR_BODY, color)
    c0 = x + length * rng.uniform(0.2, 0.3)
    b.box((c0, y - width / 2 + 0.1, 1.0), (c0 + length * 0.5, y + width / 2 - 0.1, rng.uniform(1.4, 1.55)), CAR,
          Material.CAR_CABIN, color)


# ---------------------------------------------------------------------------------------------- ray casting
@dataclass(frozen=True)
class RayHits:
    """Nearest hits of N rays: ``distance`` (N,) float64 (inf = sky), ``primitive`` (N,) int64 (-1 ground, -2 sky),
    ``point``/``normal`` (N, 3) float64 world frame, ``train_id`` (N,) uint8."""

    distance: np.ndarray
    primitive: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    train_id: np.ndarray


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


@functools.lru_cache(maxsize=8)
def _camera_rays(h: int, w: int, K_norm: tuple[float, ...]) -> np.ndarray:
    """(H*W, 3) float64 unit camera-frame rays through the pixel centres (``geometry`` conventions); read-only."""
    xy = geometry.pixel_centers(h, w).double().reshape(1, -1, 2)
    K = torch.tensor(K_norm, dtype=torch.float64).reshape(1, 3, 3)
    rays = geometry.ray_directions(xy, K)[0].numpy()
    rays.setflags(write=False)
    return rays


def _rotate(T: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3) directions rotated by the 3x3 block of T (einsum: numpy's (N, 3) @ (3, 3) matmul is slow)."""
    return np.einsum("rc,nc->nr", np.asarray(T, dtype=np.float64)[:3, :3], v)


def _tiles(h: int, w: int) -> np.ndarray:
    """(T, 256) flat ray indices of 16x16 tiles of an (h, w) ray image (edge rays repeated as padding)."""
    rows = np.minimum(np.arange(-(-h // _TILE) * _TILE), h - 1)
    cols = np.minimum(np.arange(-(-w // _TILE) * _TILE), w - 1)
    idx = rows[:, None] * w + cols[None, :]
    th, tw = idx.shape[0] // _TILE, idx.shape[1] // _TILE
    return idx.reshape(th, _TILE, tw, _TILE).transpose(0, 2, 1, 3).reshape(th * tw, _TILE * _TILE)


def _hit_box(o: np.ndarray, d: np.ndarray, inv: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Slab test; ``d``/``inv``: (3, n) ray directions and their (finite) inverses -> (n,) distance or inf."""
    t1, t2 = (lo - o)[:, None] * inv, (hi - o)[:, None] * inv
    tn, tf = np.minimum(t1, t2), np.maximum(t1, t2)
    tmin = np.maximum(np.maximum(tn[0], tn[1]), tn[2])
    tmax = np.minimum(np.minimum(tf[0], tf[1]), tf[2])
    return np.where((tmax >= tmin) & (tmin > 1e-9), tmin, np.inf)


def _hit_cylinder(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, r: float) -> np.ndarray:
    """Capped vertical cylinder inside the bounds [lo, hi]; ``d``: (3, n) -> (n,) distance or inf."""
    ox, oy = o[0] - 0.5 * (lo[0] + hi[0]), o[1] - 0.5 * (lo[1] + hi[1])
    dx, dy, dz = d
    a = dx * dx + dy * dy
    bb = ox * dx + oy * dy
    disc = bb * bb - a * (ox * ox + oy * oy - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-bb - np.sqrt(np.maximum(disc, 0.0))) / a
    z = o[2] + t_side * dz
    out = np.where((disc >= 0) & (a > 1e-18) & (t_side > 1e-9) & (z >= lo[2]) & (z <= hi[2]), t_side, np.inf)
    for zc, sign in ((hi[2], -1.0), (lo[2], 1.0)):  # top cap seen from above, bottom cap from below
        if (o[2] - zc) * sign < 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (zc - o[2]) / dz
            ok = (t > 1e-9) & ((ox + t * dx) ** 2 + (oy + t * dy) ** 2 <= r * r)
            out = np.where(ok & (t < out), t, out)
    return out


def _hit_sphere(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    """``d``: (3, n) -> (n,) distance to the sphere or inf (origin outside)."""
    oc = o - c
    bb = oc[0] * d[0] + oc[1] * d[1] + oc[2] * d[2]
    disc = bb * bb - (oc @ oc - r * r)
    t = -bb - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc >= 0) & (t > 1e-9), t, np.inf)


def _normals(prims: Primitives, prim: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) outward unit normals at hit points (ground: +z, sky: 0)."""
    n = np.zeros_like(points)
    n[prim == _GROUND] = (0.0, 0.0, 1.0)
    shape = np.where(prim >= 0, prims.shape[prim.clip(0)], 255)
    for kind in (Shape.BOX, Shape.CYLINDER, Shape.SPHERE):
        sel = np.flatnonzero(shape == kind)
        if sel.size == 0:
            continue
        m, p = prim[sel], points[sel]
        lo, hi, r = prims.lo[m], prims.hi[m], prims.radius[m][:, None]
        if kind == Shape.BOX:
            face = np.concatenate([np.abs(p - lo), np.abs(p - hi)], axis=1).argmin(axis=1)
            out = np.zeros_like(p)
            out[np.arange(sel.size), face % 3] = np.where(face < 3, -1.0, 1.0)
        elif kind == Shape.CYLINDER:
            out = np.zeros_like(p)
            out[:, :2] = (p[:, :2] - 0.5 * (lo[:, :2] + hi[:, :2])) / r
            out[np.abs(p[:, 2] - hi[:, 2]) < 1e-6] = (0.0, 0.0, 1.0)
            out[np.abs(p[:, 2] - lo[:, 2]) < 1e-6] = (0.0, 0.0, -1.0)
        else:
            out = (p - 0.5 * (lo + hi)) / r
        n[sel] = out
    return n


# ------------------------------------------------------------------------------------------------ textures
def _hash01(cells: np.ndarray, salt: int) -> np.ndarray:
    """(N, 3) int64 cells -> (N,) float64 in [0, 1), a deterministic integer hash."""
    c = cells.astype(np.uint64)
    h = (c[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (c[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)) ^ (
        c[:, 2] * np.uint64(0x165667B19E3779F9)) ^ np.uint64(salt * 0x27D4EB2F165667C5 % (1 << 64))
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _noise(p: np.ndarray, cell: float | Sequence[float], salt: int) -> np.ndarray:
    # the lattice is shifted so that faces at round coordinates (y = 8.0 m) do not sit on cell boundaries
    return _hash01(np.floor(p / np.asarray(cell, dtype=np.float64) + _LATTICE_SHIFT).astype(np.int64), salt)


def _smooth(p: np.ndarray, scale: float) -> np.ndarray:
    """Band-limited deterministic variation in [-1, 1] (sum of three plane waves)."""
    k = np.array([[1.0, 0.3, 0.7], [-0.4, 1.1, 0.5], [0.6, -0.8, 1.2]]) / scale
    return np.sin(np.einsum("nc,kc->nk", p, k) + np.array([0.3, 1.7, 4.1])).mean(axis=1)


# ------------------------------------------------------------------------------------------------- world
@dataclass(frozen=True, eq=False)
class StreetWorld:
    """A generated street (see module doc). Build with ``StreetWorld.generate(seed, config)``."""

    config: StreetConfig
    seed: int
    primitives: Primitives
    rig: Rig = field(default_factory=Rig.default)
    sun: tuple[float, float, float] = (0.35, 0.45, 0.82)

    @staticmethod
    def generate(seed: int = 0, config: StreetConfig = StreetConfig()) -> "StreetWorld":
        """Deterministic in ``seed`` and ``config``."""
        return StreetWorld(config=config, seed=int(seed), primitives=_generate(np.random.default_rng(seed), config))

    # ----------------------------------------------------------------------------------------- poses
    def _check_frame(self, frame: int) -> int:
        if not 0 <= int(frame) < self.config.num_frames:
            raise ValueError(f"frame must lie in [0, {self.config.num_frames}), got {frame}")
        return int(frame)

    def pose(self, frame: int) -> np.ndarray:
        """(4, 4) float64 pose (IMU: x forward, y right, z down) -> world of ``frame``."""
        m = np.diag([1.0, -1.0, -1.0, 1.0])
        m[:3, 3] = (self._check_frame(frame) * self.config.frame_step_m, self.config.ego_lateral_m,
                    self.rig.pose_height_m)
        return m

    def camera_to_world(self, frame: int, camera: str) -> np.ndarray:
        """(4, 4) camera -> world of a rendered view (cams 02/03: pitched virtual pinholes)."""
        return self.pose(frame) @ self.rig.view_to_pose(camera)

    def velo_to_world(self, frame: int) -> np.ndarray:
        return self.pose(frame) @ self.rig.velo_to_pose

    def ground_train_id(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """trainId of the ground at world (x, y): road, sidewalk or terrain (any shape)."""
        ay = np.abs(np.asarray(y, dtype=np.float64))
        return np.where(ay < self.config.road_half_width_m, ROAD,
                        np.where(ay < self.config.sidewalk_outer_m, SIDEWALK, TERRAIN)).astype(np.uint8)

    # ------------------------------------------------------------------------------------------- casting
    def cast(self, origin: np.ndarray, directions: np.ndarray) -> RayHits:
        """Nearest hit of rays from one ``origin`` (3,) along unit ``directions`` (H, W, 3) or (N, 3) (world)."""
        o = np.asarray(origin, dtype=np.float64)
        d3 = np.asarray(directions, dtype=np.float64)
        h, w = d3.shape[:2] if d3.ndim == 3 else (1, d3.shape[0])
        d = d3.reshape(-1, 3)
        with np.errstate(divide="ignore"):
            t_ground = np.where(d[:, 2] < -1e-12, -o[2] / np.where(d[:, 2] < -1e-12, d[:, 2], -1.0), np.inf)
        best = t_ground if o[2] > 0 else np.full(d.shape[0], np.inf)
        prim = np.where(np.isfinite(best), _GROUND, _SKY).astype(np.int64)
        P = self.primitives
        tiles = _tiles(h, w)
        td = d[tiles]
        axis = td.mean(axis=1)
        axis /= np.linalg.norm(axis, axis=1, keepdims=True).clip(1e-12)
        alpha = np.arccos(np.clip(np.einsum("tkc,tc->tk", td, axis).min(axis=1), -1.0, 1.0))
        v = P.center - o
        dist = np.linalg.norm(v, axis=1)
        radius = np.where(P.shape == Shape.SPHERE, P.radius, 0.5 * np.linalg.norm(P.hi - P.lo, axis=1))
        beta = np.arcsin(np.clip(radius / dist.clip(1e-9), 0.0, 1.0))
        gamma = np.arccos(np.clip(axis @ (v / dist.clip(1e-9)[:, None]).T, -1.0, 1.0))
        overlap = (gamma <= alpha[:, None] + beta[None, :] + 1e-6) | (dist <= radius)[None, :]
        # nearest primitives first; a tile is skipped when all its rays already hit something nearer than the box
        near = np.linalg.norm(np.maximum(np.maximum(P.lo - o, o - P.hi), 0.0), axis=1)
        tile_far = best[tiles].max(axis=1)
        candidates = np.flatnonzero(overlap.any(axis=0))
        dT = np.ascontiguousarray(d.T)
        invT = 1.0 / np.where(np.abs(dT) < 1e-12, 1e-12, dT)
        for m in candidates[np.argsort(near[candidates], kind="stable")]:
            sel = np.flatnonzero(overlap[:, m] & (tile_far > near[m]))
            if sel.size == 0:
                continue
            idx = tiles[sel].ravel()
            dm = dT[:, idx]
            if P.shape[m] == Shape.BOX:
                t = _hit_box(o, dm, invT[:, idx], P.lo[m], P.hi[m])
            elif P.shape[m] == Shape.CYLINDER:
                t = _hit_cylinder(o, dm, P.lo[m], P.hi[m], P.radius[m])
            else:
                t = _hit_sphere(o, dm, P.center[m], P.radius[m])
            closer = t < best[idx]
            if closer.any():
                best[idx[closer]] = t[closer]
                prim[idx[closer]] = m
                tile_far[sel] = best[tiles[sel]].max(axis=1)
        finite = np.isfinite(best)
        point = np.where(finite[:, None], o + d * np.where(finite, best, 0.0)[:, None], 0.0)
        train = np.full(d.shape[0], SKY, np.uint8)
        g = prim == _GROUND
        train[g] = self.ground_train_id(point[g, 0], point[g, 1])
        train[prim >= 0] = P.train_id[prim[prim >= 0]]
        return RayHits(distance=best, primitive=prim, point=point, normal=_normals(P, prim, point), train_id=train)

    def shade(self, hits: RayHits, directions: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 colours of ``hits`` (procedural textures, Lambertian sun, sky by direction)."""
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        P = self.primitives
        p, n, prim = hits.point, hits.normal, hits.primitive
        rgb = np.zeros((d.shape[0], 3))
        g = prim == _GROUND
        mat = np.full(d.shape[0], -1, np.int64)
        tid = hits.train_id[g]
        mat[g] = np.where(tid == ROAD, Material.ASPHALT, np.where(tid == SIDEWALK, Material.PAVING, Material.GRASS))
        mat[prim >= 0] = P.material[prim[prim >= 0]]
        base = np.zeros((d.shape[0], 3))
        base[prim >= 0] = P.color[prim[prim >= 0]]
        for material in np.unique(mat[mat >= 0]):
            s = mat == material
            rgb[s] = self._texture(Material(int(material)), p[s], n[s], base[s], prim[s])
        sun = np.asarray(self.sun) / np.linalg.norm(self.sun)
        light = 0.55 + 0.45 * np.clip(np.einsum("nc,c->n", n, sun), 0.0, 1.0) + 0.08 * n[:, 2].clip(0.0, 1.0)
        rgb *= light[:, None]
        sky = prim == _SKY
        e = np.clip(d[sky, 2] * 2.5, 0.0, 1.0)[:, None]
        waves = np.sin(np.einsum("nc,c->n", d[sky], np.array([9.0, 23.0, 5.0])))
        clouds = np.clip(_smooth(d[sky] * 40.0, 1.0) * 0.6 + 0.2 * waves, 0.0, 1.0)
        rgb[sky] = (1 - e) * np.array([0.80, 0.86, 0.93]) + e * np.array([0.33, 0.53, 0.85]) + 0.12 * clouds[:, None]
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _texture(self, material: Material, p: np.ndarray, n: np.ndarray, base: np.ndarray,
                 prim: np.ndarray) -> np.ndarray:
        fine, smooth = _noise(p, 0.08, 1), _smooth(p, 1.5)
        if material == Material.ASPHALT:
            c = np.repeat((0.30 + 0.08 * (fine - 0.5) + 0.03 * smooth)[:, None], 3, axis=1)
            ay = np.abs(p[:, 1])
            lines = ((ay < 0.08) & (np.mod(p[:, 0], 6.0) < 3.0)) | (
                np.abs(ay - (self.config.road_half_width_m - 0.3)) < 0.1)
            c[lines] = 0.85
            return c
        if material == Material.PAVING:
            tile = _noise(p, (0.5, 0.5, 1.0), 2)
            grout = np.minimum(np.mod(p[:, 0], 0.5), np.mod(p[:, 1], 0.5)) < 0.04
            v = 0.6 + 0.12 * (tile - 0.5) + 0.05 * (fine - 0.5) - 0.15 * grout
            return v[:, None] * np.array([1.0, 0.97, 0.9])
        if material in (Material.GRASS, Material.FOLIAGE, Material.HEDGE):
            col = {Material.GRASS: np.array([0.33, 0.50, 0.20])}.get(material)
            col = base if col is None else np.broadcast_to(col, p.shape)
            v = 0.6 + 0.5 * _noise(p, 0.15, 3) + 0.2 * (fine - 0.5) + 0.15 * smooth
            return col * v[:, None]
        if material == Material.FACADE:
            vertical = np.abs(n[:, 2]) < 0.5
            u = np.where(np.abs(n[:, 1]) > np.abs(n[:, 0]), p[:, 0], p[:, 1])
            top = self.primitives.hi[prim, 2]
            window = vertical & (np.mod(u, 3.0) > 0.9) & (np.mod(u, 3.0) < 2.1) & (np.mod(p[:, 2], 3.2) > 1.0) & (
                np.mod(p[:, 2], 3.2) < 2.4) & (p[:, 2] > 1.0) & (p[:, 2] < top - 0.8)
            c = base * (0.9 + 0.2 * _noise(p, 0.25, 4))[:, None] + 0.04 * smooth[:, None]
            glass = np.array([0.14, 0.18, 0.26]) + 0.12 * _noise(p, (1.2, 1.2, 1.4), 5)[:, None]
            c[window] = glass[window]
            c[~vertical] *= 0.7
            return c
        if material == Material.CAR_BODY:
            c = base * (0.95 + 0.1 * fine)[:, None]
            c[p[:, 2] < 0.5] = 0.08
            return c
        if material == Material.CAR_CABIN:
            c = np.broadcast_to(np.array([0.12, 0.14, 0.19]), p.shape) * (0.9 + 0.4 * fine)[:, None]
            roof = n[:, 2] > 0.5
            return np.where(roof[:, None], base, c)
        if material == Material.SIGN:
            lo, hi = self.primitives.lo[prim], self.primitives.hi[prim]
            edge = np.minimum(np.minimum(p[:, 1] - lo[:, 1], hi[:, 1] - p[:, 1]),
                              np.minimum(p[:, 2] - lo[:, 2], hi[:, 2] - p[:, 2]))
            return np.where((edge < 0.07)[:, None], 0.95, base)
        if material == Material.FENCE:
            u = np.where(np.abs(n[:, 1]) > np.abs(n[:, 0]), p[:, 0], p[:, 1])
            return base * (0.7 + 0.3 * (np.mod(u, 0.15) < 0.1) + 0.1 * fine)[:, None]
        if material == Material.BARK:
            return base * (0.75 + 0.5 * _noise(p, (0.05, 0.05, 0.3), 6))[:, None]
        return base * (0.9 + 0.1 * fine)[:, None]  # METAL

    # -------------------------------------------------------------------------------------------- views
    def render(self, cam_to_world: np.ndarray, K_norm: np.ndarray, image_size: tuple[int, int]) -> RenderedView:
        """Render a pinhole view: ``cam_to_world`` (4, 4), ``K_norm`` (3, 3) normalised, ``image_size`` (H, W).

        Rays go through the pixel centres of ``geometry.pixel_centers`` (the model's convention).
        """
        h, w = int(image_size[0]), int(image_size[1])
        K = tuple(float(v) for v in np.asarray(K_norm, dtype=np.float64).ravel())
        return self._render_rays(np.asarray(cam_to_world, dtype=np.float64), _camera_rays(h, w, K), (h, w))

    def _render_rays(self, c2w: np.ndarray, d_cam: np.ndarray, size: tuple[int, int],
                     valid: np.ndarray | None = None) -> RenderedView:
        h, w = size
        d_world = _rotate(c2w, d_cam)
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

    def render_fisheye(self, frame: int, camera: str, calib: k360.MEICalibration) -> RenderedView:
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
        d_velo = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.broadcast_to(np.sin(el), (64, az.size))],
                          axis=-1)
        v2w = self.velo_to_world(frame)
        d_world = _rotate(v2w, d_velo.reshape(-1, 3))
        hits = self.cast(v2w[:3, 3], d_world.reshape(*d_velo.shape))
        keep = hits.distance < max_range_m
        refl = self.shade(hits, d_world)[keep].mean(axis=1) / 255.0
        pts = d_velo.reshape(-1, 3)[keep] * hits.distance[keep, None]
        return np.concatenate([pts, refl[:, None]], axis=1).astype(np.float32)

    # -------------------------------------------------------------------------------------------- voxels
    def voxel_gt(self, frame: int) -> np.ndarray:
        """(256, 256, 32) uint8 SSCBench GT ids of ``frame`` (0 empty, 255 inside solids; see module doc)."""
        v2w = self.velo_to_world(frame)
        if not np.allclose(v2w[:3, :3], np.eye(3), atol=1e-12):
            raise ValueError("the SSCBench grid must be axis-aligned with the world (straight drive)")
        g = sgrid.SSCBENCH_GRID
        edges = [g.origin[a] + v2w[a, 3] + g.voxel_size * np.arange(g.dims[a] + 1) for a in range(3)]
        vlo, vhi = [e[:-1] for e in edges], [e[1:] for e in edges]
        inside = np.zeros(g.dims, bool)
        inside[:, :, vhi[2] <= 0.0] = True
        label = np.zeros(g.dims, np.uint8)
        prio = np.full(g.dims, -1, np.int64)
        ground_layer = (vlo[2] < 0.0) & (vhi[2] > 0.0)
        if ground_layer.any():
            xc, yc = 0.5 * (vlo[0] + vhi[0]), 0.5 * (vlo[1] + vhi[1])
            gid = TRAINID_TO_SSCBENCH_GT[self.ground_train_id(*np.meshgrid(xc, yc, indexing="ij"))]
            label[:, :, ground_layer] = gid[:, :, None]
            prio[:, :, ground_layer] = 0
        P = self.primitives
        lo_in = np.where((P.lo[:, 2] <= 1e-9)[:, None], P.lo * [1, 1, 0] + [0, 0, -np.inf], P.lo)
        blocks = []
        for m in range(len(P)):  # pass 1: interiors (grounded primitives extended below the ground)
            sl = [slice(int(np.searchsorted(vhi[a], lo_in[m, a] - _TOUCH_M)),
                        int(np.searchsorted(vlo[a], P.hi[m, a] + _TOUCH_M, "right")))
                  for a in range(3)]
            if any(s.start >= s.stop for s in sl):
                continue
            ov, full = self._cube_tests(m, [x[s] for x, s in zip(vlo, sl)], [x[s] for x, s in zip(vhi, sl)],
                                        lo_in[m, 2])
            inside[tuple(sl)] |= full
            blocks.append((m, sl, ov))
        for m, sl, ov in blocks:  # pass 2: boundaries, by class priority
            block = tuple(sl)
            pr = _PRIORITY[P.train_id[m]] + 1
            surf = ov & ~inside[block] & (pr > prio[block])
            label[block][surf] = TRAINID_TO_SSCBENCH_GT[P.train_id[m]]
            prio[block][surf] = pr
        label[inside] = UNKNOWN
        return label

    def _cube_tests(self, m: int, lo: list[np.ndarray], hi: list[np.ndarray], z_in: float
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(meets, fully inside) of the closed voxel cubes [lo, hi] of a sub-block and primitive m.

        Closed cubes (with a 1 nm tolerance): a face lying exactly on a voxel plane (a car at the kerb, y = -4.75 m)
        still marks the voxel outside it, which is where its surface would be observed from.
        """
        P = self.primitives
        plo, phi, r = P.lo[m], P.hi[m], P.radius[m]
        tlo, thi, tr2 = plo - _TOUCH_M, phi + _TOUCH_M, (r + _TOUCH_M) ** 2
        c = 0.5 * (plo + phi)
        ov_z = (lo[2] <= thi[2]) & (hi[2] >= tlo[2])
        in_z = (lo[2] >= z_in) & (hi[2] <= phi[2])
        if P.shape[m] == Shape.BOX:
            ov = [(lo[a] <= thi[a]) & (hi[a] >= tlo[a]) for a in range(2)] + [ov_z]
            full = [(lo[a] >= plo[a]) & (hi[a] <= phi[a]) for a in range(2)] + [in_z]
            return (ov[0][:, None, None] & ov[1][None, :, None] & ov[2][None, None, :],
                    full[0][:, None, None] & full[1][None, :, None] & full[2][None, None, :])
        near = [np.maximum(np.maximum(lo[a] - c[a], c[a] - hi[a]), 0.0) ** 2 for a in range(3)]
        far = [np.maximum(np.abs(lo[a] - c[a]), np.abs(hi[a] - c[a])) ** 2 for a in range(3)]
        if P.shape[m] == Shape.CYLINDER:
            ov_xy = near[0][:, None] + near[1][None, :] <= tr2
            in_xy = far[0][:, None] + far[1][None, :] <= r * r
            return ov_xy[:, :, None] & ov_z[None, None, :], in_xy[:, :, None] & in_z[None, None, :]
        n3 = near[0][:, None, None] + near[1][None, :, None] + near[2][None, None, :]
        f3 = far[0][:, None, None] + far[1][None, :, None] + far[2][None, None, :]
        return n3 <= tr2, f3 <= r * r


# ------------------------------------------------------------------------------------------ on-disk trees
def _atomic_write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _write_label_png(path: Path, ids: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(ids, dtype=np.uint8))
    if not ok:
        raise ValueError(f"could not encode {path}")
    return _atomic_write(path, buf.tobytes())


def _floats(values: Iterable[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def _trainid_to_label_id() -> np.ndarray:
    """(256,) uint8 trainId -> the first KITTI-360 label id with that trainId (255 and unused -> 0 unlabeled)."""
    lut = np.zeros(256, np.uint8)
    for label_id, _, train_id in reversed(ID_TO_TRAINID):
        lut[train_id] = label_id
    return lut


def perspective_txt(K_norm: np.ndarray, full_size: tuple[int, int], baseline_m: float = STEREO_BASELINE_M) -> str:
    """``calibration/perspective.txt`` of a rectified stereo pair with normalised K at ``full_size`` (H, W)."""
    h, w = full_size
    K = geometry.denormalize_intrinsics(torch.as_tensor(np.asarray(K_norm, dtype=np.float64)), (h, w)).numpy()
    lines = ["calib_time: synthetic (scenedino_core.data.synthetic)"]
    for idx, tx in (("00", 0.0), ("01", -K[0, 0] * baseline_m)):
        P = np.concatenate([K, [[tx], [0.0], [0.0]]], axis=1)
        lines += [f"S_rect_{idx}: {w:.6e} {h:.6e}", f"R_rect_{idx}: {_floats(np.eye(3).ravel())}",
                  f"P_rect_{idx}: {_floats(P.ravel())}"]
    return "\n".join(lines) + "\n"


def mei_yaml(calib: k360.MEICalibration, camera: str) -> str:
    """OpenCV-style ``image_02.yaml`` text (``%YAML:1.0`` first line, as KITTI-360 ships it)."""
    return (f"%YAML:1.0\n---\nmodel_type: MEI\ncamera_name: {camera}\nimage_width: {calib.width}\n"
            f"image_height: {calib.height}\nmirror_parameters:\n   xi: {calib.xi!r}\ndistortion_parameters:\n"
            f"   k1: {calib.k1!r}\n   k2: {calib.k2!r}\n   p1: {calib.p1!r}\n   p2: {calib.p2!r}\n"
            f"projection_parameters:\n   gamma1: {calib.gamma1!r}\n   gamma2: {calib.gamma2!r}\n"
            f"   u0: {calib.u0!r}\n   v0: {calib.v0!r}\n")


def write_calibration(world: StreetWorld, folder: str | Path, full_size: tuple[int, int] = FULL_SIZE,
                      fisheye: k360.MEICalibration = KITTI360_MEI) -> Path:
    """``perspective.txt``, ``calib_cam_to_pose.txt``, ``calib_cam_to_velo.txt``, ``image_02/03.yaml``."""
    folder = Path(folder)
    rig = world.rig
    _atomic_write(folder / "perspective.txt", perspective_txt(rig.K_norm, full_size).encode())
    _atomic_write(folder / "calib_cam_to_pose.txt", "".join(
        f"{cam}: {_floats(rig.cam_to_pose[cam][:3].ravel())}\n" for cam in k360.CAMERAS).encode())
    _atomic_write(folder / "calib_cam_to_velo.txt", (_floats(sgrid.CAM_TO_VELO_3X4) + "\n").encode())
    for cam in k360.FISHEYE_CAMERAS:
        _atomic_write(folder / f"{cam}.yaml", mei_yaml(fisheye, cam).encode())
    return folder


def _timestamps(n: int) -> str:
    import datetime

    out = []
    for f in range(n):
        ns = _START_NS + round(f * 1e9 / FRAME_RATE_HZ)
        t = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc)
        out.append(f"{t:%Y-%m-%d %H:%M:%S}.{ns % 10**9:09d}\n")
    return "".join(out)


def _progress(items: Sequence[int], enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="frame")


def write_kitti360(world: StreetWorld, root: str | Path, sequence: str, frames: Sequence[int], *,
                   full_size: tuple[int, int] = FULL_SIZE, image_size: tuple[int, int] = k360.DEFAULT_IMAGE_SIZE,
                   fisheye_size: tuple[int, int] | None = None, semantics: bool = True, velodyne: bool = False,
                   progress: bool = False) -> Path:
    """Write ``frames`` of ``world`` as a KITTI-360 tree under ``root`` (read by ``kitti360.Kitti360MultiView``).

    Written: ``calibration/`` (see ``write_calibration``; ``S_rect`` = ``full_size``), ``data_poses/<seq>/poses.txt``
    (the frames given), ``data_2d_raw/<seq>/image_0{0,1}/data_rect/<frame:010d>.png`` at ``full_size`` (H, W),
    ``image_0{2,3}/data_<H>x<W>_0x-15/`` virtual pinholes at ``image_size`` (the preprocessed layout: the fisheye
    stage is skipped), ``image_0X/timestamps.txt`` (10 Hz, one line per frame id 0..max(frames)); optionally
    ``data_2d_semantics/train/<seq>/image_00/semantic/`` (uint8 KITTI-360 label ids), raw MEI fisheye images
    ``image_0{2,3}/data_rgb/`` at ``fisheye_size`` (H, W) (KITTI-360's lens scaled, p1 = p2 = 0; the yaml matches),
    and ``data_3d_raw/<seq>/velodyne_points/data/<frame:010d>.bin`` (float32 N x 4, Velodyne frame).
    """
    root = Path(root)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise ValueError("frames is empty")
    for f in frames:
        world._check_frame(f)
    mei = KITTI360_MEI if fisheye_size is None else KITTI360_MEI.scaled(fisheye_size[1], fisheye_size[0])
    write_calibration(world, root / "calibration", full_size, mei)
    _atomic_write(k360.poses_path(root / "data_poses", sequence), "".join(
        f"{f} {_floats(world.pose(f)[:3].ravel())}\n" for f in frames).encode())
    raw = root / "data_2d_raw" / sequence
    stamps = _timestamps(frames[-1] + 1).encode()
    for cam in k360.CAMERAS:
        _atomic_write(raw / cam / "timestamps.txt", stamps)
    label_ids = _trainid_to_label_id()
    for f in _progress(frames, progress, "synthetic KITTI-360"):
        for cam in k360.PERSPECTIVE_CAMERAS:
            view = world.render_camera(f, cam, full_size)
            images.write_rgb(k360.raw_image_path(root, sequence, cam, f), view.rgb)
            if semantics and cam == "image_00":
                _write_label_png(k360.semantic_path(root, sequence, f), label_ids[view.labels])
        for cam in k360.FISHEYE_CAMERAS:
            view = world.render_camera(f, cam, image_size)
            images.write_rgb(k360.cached_image_path(root, sequence, cam, f, image_size, world.rig.pitch_deg), view.rgb)
            if fisheye_size is not None:
                images.write_rgb(k360.raw_image_path(root, sequence, cam, f), world.render_fisheye(f, cam, mei).rgb)
        if velodyne:
            path = root / "data_3d_raw" / sequence / "velodyne_points" / "data" / f"{f:010d}.bin"
            _atomic_write(path, world.velodyne_scan(f).tobytes())
    if velodyne:
        _atomic_write(root / "data_3d_raw" / sequence / "velodyne_points" / "timestamps.txt", stamps)
    return root


def write_sscbench(world: StreetWorld, root: str | Path, vgt_root: str | Path, sequence: int | str,
                   frames: Sequence[int], *, progress: bool = False) -> None:
    """Write ``frames`` as an SSCBench-KITTI-360 tree (read by ``sscbench.dataset.SSCBenchKitti360``).

    ``<root>/calibration/`` (1408 x 376 K = the SSCBench constants, the hard-coded cam -> velo),
    ``<root>/data_2d_raw/<seq>/image_00/data_rect/<frame:06d>.png`` (1408 x 376) and the voxel GT
    ``<vgt_root>/<seq>/<frame:06d>_1_1.npy`` ((256, 256, 32) uint8 SSCBench ids; S4C stores float32, the reader
    accepts both). ``sequence``: 9 or a directory name.
    """
    seq = kitti360_sequence_dir(sequence)
    frames = sorted({int(f) for f in frames})
    if not frames:
        raise ValueError("frames is empty")
    write_calibration(world, Path(root) / "calibration", FULL_SIZE)
    for f in _progress(frames, progress, "synthetic SSCBench"):
        images.write_rgb(sscbench_image_path(root, seq, f), world.render_camera(f, "image_00", FULL_SIZE).rgb)
        path = voxel_gt_path(vgt_root, seq, f)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npy")
        np.save(tmp, world.voxel_gt(f))
        tmp.replace(path)


__all__ = ["FULL_SIZE", "K_NORM", "KITTI360_MEI", "Material", "Primitives", "RayHits", "RenderedView", "Rig", "Shape",
           "StreetConfig", "StreetWorld", "TRAINID_TO_SSCBENCH_GT", "mei_yaml", "perspective_txt", "write_calibration",
           "write_kitti360", "write_sscbench"]
