"""Procedural textures and shading of the synthetic world.

Every material has a deterministic texture of the world position (integer-hash noise on a lattice, band-limited
plane waves, lane markings, paving tiles, window grids, ...), so photometric losses have signal. Shading is
Lambertian with a fixed sun and no shadows: appearance does not depend on the viewpoint. The sky is a gradient with
clouds that depends on the ray direction only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scenedino_core.data.synthetic.layout import ROAD, SIDEWALK, Material, Primitives
from scenedino_core.data.synthetic.raycast import HIT_GROUND, HIT_SKY, RayHits

_LATTICE_SHIFT = np.array([0.3183, 0.5772, 0.7071])


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


def shade(primitives: Primitives, hits: RayHits, directions: np.ndarray, sun: Sequence[float],
          road_half_width_m: float) -> np.ndarray:
    """(N, 3) uint8 colours of ``hits`` of rays along ``directions`` (N, 3) or (H, W, 3): procedural textures,
    Lambertian ``sun`` (direction, any length), sky by direction. ``road_half_width_m`` places the kerb marking."""
    d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
    P = primitives
    p, n, prim = hits.point, hits.normal, hits.primitive
    rgb = np.zeros((d.shape[0], 3))
    g = prim == HIT_GROUND
    mat = np.full(d.shape[0], -1, np.int64)
    tid = hits.train_id[g]
    mat[g] = np.where(tid == ROAD, Material.ASPHALT, np.where(tid == SIDEWALK, Material.PAVING, Material.GRASS))
    mat[prim >= 0] = P.material[prim[prim >= 0]]
    base = np.zeros((d.shape[0], 3))
    base[prim >= 0] = P.color[prim[prim >= 0]]
    for material in np.unique(mat[mat >= 0]):
        s = mat == material
        rgb[s] = _texture(P, road_half_width_m, Material(int(material)), p[s], n[s], base[s], prim[s])
    sun = np.asarray(sun) / np.linalg.norm(sun)
    light = 0.55 + 0.45 * np.clip(np.einsum("nc,c->n", n, sun), 0.0, 1.0) + 0.08 * n[:, 2].clip(0.0, 1.0)
    rgb *= light[:, None]
    sky = prim == HIT_SKY
    e = np.clip(d[sky, 2] * 2.5, 0.0, 1.0)[:, None]
    waves = np.sin(np.einsum("nc,c->n", d[sky], np.array([9.0, 23.0, 5.0])))
    clouds = np.clip(_smooth(d[sky] * 40.0, 1.0) * 0.6 + 0.2 * waves, 0.0, 1.0)
    rgb[sky] = (1 - e) * np.array([0.80, 0.86, 0.93]) + e * np.array([0.33, 0.53, 0.85]) + 0.12 * clouds[:, None]
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

def _texture(primitives: Primitives, road_half_width_m: float, material: Material, p: np.ndarray, n: np.ndarray,
             base: np.ndarray, prim: np.ndarray) -> np.ndarray:
    fine, smooth = _noise(p, 0.08, 1), _smooth(p, 1.5)
    if material == Material.ASPHALT:
        c = np.repeat((0.30 + 0.08 * (fine - 0.5) + 0.03 * smooth)[:, None], 3, axis=1)
        ay = np.abs(p[:, 1])
        lines = ((ay < 0.08) & (np.mod(p[:, 0], 6.0) < 3.0)) | (
            np.abs(ay - (road_half_width_m - 0.3)) < 0.1)
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
        top = primitives.hi[prim, 2]
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
        lo, hi = primitives.lo[prim], primitives.hi[prim]
        edge = np.minimum(np.minimum(p[:, 1] - lo[:, 1], hi[:, 1] - p[:, 1]),
                          np.minimum(p[:, 2] - lo[:, 2], hi[:, 2] - p[:, 2]))
        return np.where((edge < 0.07)[:, None], 0.95, base)
    if material == Material.FENCE:
        u = np.where(np.abs(n[:, 1]) > np.abs(n[:, 0]), p[:, 0], p[:, 1])
        return base * (0.7 + 0.3 * (np.mod(u, 0.15) < 0.1) + 0.1 * fine)[:, None]
    if material == Material.BARK:
        return base * (0.75 + 0.5 * _noise(p, (0.05, 0.05, 0.3), 6))[:, None]
    return base * (0.9 + 0.1 * fine)[:, None]  # METAL


__all__ = ["shade"]
