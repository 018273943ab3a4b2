"""The unified (MEI) fisheye camera model of KITTI-360's fisheye cameras 02/03, and the resampling of their images
to virtual pinhole cameras.

Projection of a camera-frame ray d (normalised to unit length): ``(x, y) = (d_x / (d_z + xi), d_y / (d_z + xi))``,
radial distortion ``1 + k1 r + k2 r^2`` with ``r = x^2 + y^2``, pixel ``(gamma1 x f + u0, gamma2 y f + v0)``
(OpenCV pixel coordinates: pixel centres at integers). The tangential terms p1/p2 are read but ignored, as in the
reference implementation.

Resampling to a virtual pinhole: each virtual pixel centre (``geometry.pixel_centers`` convention) gives a ray
``K^-1 (x, y, 1)``, rotated into the fisheye frame (e.g. ``rotation_x(-15)``: the virtual optical axis looks 15 deg
down), projected as above and sampled bilinearly with ``cv2.remap`` (black outside). Deviations from the reference,
all below one source pixel: pixel coordinates follow OpenCV throughout instead of mixing ``align_corners``
conventions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from scenedino_core import geometry
from scenedino_core.files import require_file


@dataclass(frozen=True)
class MEICalibration:
    """Unified (MEI) fisheye model of one KITTI-360 fisheye camera; pixel coordinates are OpenCV's."""

    xi: float
    k1: float
    k2: float
    gamma1: float
    gamma2: float
    u0: float
    v0: float
    width: int
    height: int
    p1: float = 0.0
    """Tangential terms are read but not used (the reference ignores them too)."""
    p2: float = 0.0

    def project(self, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) camera-frame rays -> (..., 2) float64 pixels and (...,) bool valid (``z + xi > 0``)."""
        d = np.asarray(rays, dtype=np.float64)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        den = d[..., 2] + self.xi
        valid = den > 1e-9
        den = np.where(valid, den, 1.0)
        x, y = d[..., 0] / den, d[..., 1] / den
        r = x * x + y * y
        f = 1.0 + self.k1 * r + self.k2 * r * r
        uv = np.stack([self.gamma1 * x * f + self.u0, self.gamma2 * y * f + self.v0], axis=-1)
        return uv, valid

    def unproject(self, uv: np.ndarray, iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """(..., 2) pixels -> (..., 3) unit rays and (...,) bool valid (inverse of ``project``; Newton undistortion)."""
        uv = np.asarray(uv, dtype=np.float64)
        xd = (uv[..., 0] - self.u0) / self.gamma1
        yd = (uv[..., 1] - self.v0) / self.gamma2
        rho_d = np.hypot(xd, yd)
        rho = rho_d.copy()
        for _ in range(iterations):  # solve rho (1 + k1 rho^2 + k2 rho^4) = rho_d
            r2 = rho * rho
            g = rho * (1.0 + self.k1 * r2 + self.k2 * r2 * r2) - rho_d
            rho = rho - g / (1.0 + 3.0 * self.k1 * r2 + 5.0 * self.k2 * r2 * r2)
        scale = np.where(rho_d > 0, rho / np.where(rho_d > 0, rho_d, 1.0), 1.0)
        x, y = xd * scale, yd * scale
        r2 = x * x + y * y
        disc = 1.0 + (1.0 - self.xi * self.xi) * r2
        valid = disc >= 0
        lam = (self.xi + np.sqrt(np.maximum(disc, 0.0))) / (1.0 + r2)
        rays = np.stack([lam * x, lam * y, lam - self.xi], axis=-1)
        rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
        return rays, valid

    def scaled(self, width: int, height: int) -> MEICalibration:
        """The same lens for an image resized to (width, height) (pixel centres kept: ``u -> (u + .5) s - .5``)."""
        sx, sy = width / self.width, height / self.height
        return MEICalibration(xi=self.xi, k1=self.k1, k2=self.k2, gamma1=self.gamma1 * sx, gamma2=self.gamma2 * sy,
                              u0=(self.u0 + 0.5) * sx - 0.5, v0=(self.v0 + 0.5) * sy - 0.5, width=int(width),
                              height=int(height), p1=self.p1, p2=self.p2)


def read_mei_yaml(path: str | Path) -> MEICalibration:
    """Read ``calibration/image_02.yaml`` / ``image_03.yaml`` (OpenCV YAML; a first ``%YAML`` line is skipped)."""
    path = require_file(path, "fisheye calibration")
    text = path.read_text(errors="replace")
    if text.lstrip().startswith("%YAML"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping, got {type(data).__name__}")

    def get(group: str | None, key: str) -> float:
        node = data if group is None else data.get(group)
        if not isinstance(node, dict) or key not in node:
            name = key if group is None else f"{group}.{key}"
            raise ValueError(f"{path}: missing entry '{name}'")
        try:
            return float(node[key])
        except (TypeError, ValueError):
            raise ValueError(f"{path}: entry '{key}' is not a number: {node[key]!r}") from None

    width, height = get(None, "image_width"), get(None, "image_height")
    if width <= 0 or height <= 0 or width != int(width) or height != int(height):
        raise ValueError(f"{path}: image_width/height must be positive integers, got {width} x {height}")
    calib = MEICalibration(
        xi=get("mirror_parameters", "xi"), k1=get("distortion_parameters", "k1"),
        k2=get("distortion_parameters", "k2"), p1=get("distortion_parameters", "p1"),
        p2=get("distortion_parameters", "p2"), gamma1=get("projection_parameters", "gamma1"),
        gamma2=get("projection_parameters", "gamma2"), u0=get("projection_parameters", "u0"),
        v0=get("projection_parameters", "v0"), width=int(width), height=int(height))
    if calib.gamma1 <= 0 or calib.gamma2 <= 0:
        raise ValueError(f"{path}: gamma1/gamma2 must be > 0, got {calib.gamma1}, {calib.gamma2}")
    return calib


def rotation_x(degrees: float) -> np.ndarray:
    """(4, 4) float64 rotation about the camera x axis; ``rotation_x(-15) @ (0, 0, 1)`` looks 15 deg down (+y)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    m = np.eye(4)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def fisheye_to_pinhole_maps(calib: MEICalibration, K_norm: np.ndarray, image_size: tuple[int, int],
                            virtual_to_fisheye: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (H, W) float32 of fisheye pixel coordinates for a virtual pinhole.

    ``K_norm``: (3, 3) normalised intrinsics of the virtual camera; ``virtual_to_fisheye``: (3, 3) or (4, 4) rotation
    (e.g. ``rotation_x(-15)``). Pixels whose ray the MEI model cannot project get -1 (sampled as black).
    """
    h, w = image_size
    xy = geometry.pixel_centers(h, w).double().reshape(1, -1, 2)
    rays = geometry.ray_directions(xy, torch.tensor(np.asarray(K_norm), dtype=torch.float64)[None])[0].numpy()
    R = np.asarray(virtual_to_fisheye, dtype=np.float64)[:3, :3]
    uv, valid = calib.project(np.einsum("rc,nc->nr", R, rays))
    uv[~valid] = -1.0
    uv = uv.reshape(h, w, 2).astype(np.float32)
    return np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])


def resample_fisheye(fisheye: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(Hf, Wf, C) fisheye image -> (H, W, C) virtual pinhole image (bilinear, black outside)."""
    return cv2.remap(fisheye, maps[0], maps[1], interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


__all__ = ["MEICalibration", "fisheye_to_pinhole_maps", "read_mei_yaml", "resample_fisheye", "rotation_x"]
