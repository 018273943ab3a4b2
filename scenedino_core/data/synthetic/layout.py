"""The street layout of the synthetic world: configuration, the primitives (boxes, cylinders, spheres) and their
seed-deterministic generation.

World frame: x along the street, y left, z up, ground plane z = 0. Content (each primitive has a Cityscapes trainId
from ``labels.TRAIN_CLASSES`` and a material for its procedural texture): road (|y| < 5 m), sidewalks (5..8 m),
terrain (grass beyond), building facades (boxes 6..22 m high, reaching 40 m deep so nothing is visible behind them),
parked and oncoming cars (body + cabin boxes), poles (cylinders) with traffic signs (thin boxes), trees (trunk
cylinder + crown sphere), hedges and fences (boxes). The ground is not a primitive: ``ground_train_id`` labels it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

#: trainIds used by the world (``labels.TRAIN_CLASSES``).
ROAD, SIDEWALK, BUILDING, FENCE, POLE, SIGN, VEGETATION, TERRAIN, SKY, CAR = 0, 1, 2, 4, 5, 7, 8, 9, 10, 13


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


def ground_train_id(config: StreetConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """trainId of the ground at world (x, y): road, sidewalk or terrain (any shape); uint8."""
    ay = np.abs(np.asarray(y, dtype=np.float64))
    return np.where(ay < config.road_half_width_m, ROAD,
                    np.where(ay < config.sidewalk_outer_m, SIDEWALK, TERRAIN)).astype(np.uint8)


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


def generate_primitives(rng: np.random.Generator, cfg: StreetConfig) -> Primitives:
    """The primitives of a street, drawn from ``rng`` (deterministic in its seed and ``cfg``)."""
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


__all__ = ["BUILDING", "CAR", "FENCE", "Material", "POLE", "Primitives", "ROAD", "SIDEWALK", "SIGN", "SKY", "Shape",
           "StreetConfig", "TERRAIN", "VEGETATION", "generate_primitives", "ground_train_id"]
