"""A numpy ray caster for the synthetic world's primitives and ground plane.

Rays are cast from one origin; the nearest hit over the ground plane z = 0 and every primitive wins. Primitives are
culled per 16x16 tile of rays by a cone test and visited nearest first, skipping tiles whose rays all hit something
nearer already. Ray-primitive tests are analytic (slab test for boxes, capped vertical cylinders, spheres).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scenedino_core import geometry
from scenedino_core.data.synthetic.layout import SKY, Primitives, Shape

#: ``RayHits.primitive`` of rays that hit the ground plane, and of rays that hit nothing (sky).
HIT_GROUND, HIT_SKY = -1, -2
_TILE = 16


@dataclass(frozen=True)
class RayHits:
    """Nearest hits of N rays: ``distance`` (N,) float64 (inf = sky), ``primitive`` (N,) int64 (-1 ground, -2 sky),
    ``point``/``normal`` (N, 3) float64 world frame, ``train_id`` (N,) uint8."""

    distance: np.ndarray
    primitive: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    train_id: np.ndarray


@functools.lru_cache(maxsize=8)
def camera_rays(h: int, w: int, K_norm: tuple[float, ...]) -> np.ndarray:
    """(H*W, 3) float64 unit camera-frame rays through the pixel centres (``geometry`` conventions); read-only."""
    xy = geometry.pixel_centers(h, w).double().reshape(1, -1, 2)
    K = torch.tensor(K_norm, dtype=torch.float64).reshape(1, 3, 3)
    rays = geometry.ray_directions(xy, K)[0].numpy()
    rays.setflags(write=False)
    return rays


def rotate(T: np.ndarray, v: np.ndarray) -> np.ndarray:
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
    n[prim == HIT_GROUND] = (0.0, 0.0, 1.0)
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


def cast(primitives: Primitives, ground_train_id: Callable[[np.ndarray, np.ndarray], np.ndarray], origin: np.ndarray,
         directions: np.ndarray) -> RayHits:
    """Nearest hit of rays from one ``origin`` (3,) along unit ``directions`` (H, W, 3) or (N, 3) (world frame).

    ``ground_train_id(x, y)`` labels ground hits; rays that hit nothing get trainId ``SKY`` and distance inf.
    """
    o = np.asarray(origin, dtype=np.float64)
    d3 = np.asarray(directions, dtype=np.float64)
    h, w = d3.shape[:2] if d3.ndim == 3 else (1, d3.shape[0])
    d = d3.reshape(-1, 3)
    with np.errstate(divide="ignore"):
        t_ground = np.where(d[:, 2] < -1e-12, -o[2] / np.where(d[:, 2] < -1e-12, d[:, 2], -1.0), np.inf)
    best = t_ground if o[2] > 0 else np.full(d.shape[0], np.inf)
    prim = np.where(np.isfinite(best), HIT_GROUND, HIT_SKY).astype(np.int64)
    P = primitives
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
    g = prim == HIT_GROUND
    train[g] = ground_train_id(point[g, 0], point[g, 1])
    train[prim >= 0] = P.train_id[prim[prim >= 0]]
    return RayHits(distance=best, primitive=prim, point=point, normal=_normals(P, prim, point), train_id=train)


__all__ = ["HIT_GROUND", "HIT_SKY", "RayHits", "camera_rays", "cast", "rotate"]
