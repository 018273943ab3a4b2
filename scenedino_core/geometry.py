"""Pure tensor geometry: intrinsics normalisation, projection, rays, grid coordinates.

Conventions (REP-103 optical frame, as in the original): camera x right, y down, z forward, metres.
"Normalised" image coordinates span [-1, 1] across the image (``grid_sample`` with ``align_corners=False``);
normalised intrinsics are ``fx' = 2 fx / W``, ``cx' = 2 cx / W - 1`` (same for y with H), the formula the
original training data used, so the released checkpoints see the same numbers here.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: Points with camera depth at or below this are "behind" the camera; also the projection's depth floor.
MIN_DEPTH = 1e-3


def _check_intrinsics(K: Tensor) -> None:
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must have shape (..., 3, 3), got {tuple(K.shape)}")


def normalize_intrinsics(K: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Pixel intrinsics -> normalised intrinsics (computed in float64, returned in the input dtype).

    Args:
        K: (..., 3, 3) pixel intrinsics of an image of ``image_size``.
        image_size: (H, W) of that image.

    Returns:
        (..., 3, 3) normalised intrinsics.
    """
    _check_intrinsics(K)
    h, w = image_size
    Kd = K.double()
    out = Kd.clone()
    out[..., 0, 0] = 2.0 * Kd[..., 0, 0] / w
    out[..., 0, 1] = 2.0 * Kd[..., 0, 1] / w
    out[..., 0, 2] = 2.0 * Kd[..., 0, 2] / w - 1.0
    out[..., 1, 1] = 2.0 * Kd[..., 1, 1] / h
    out[..., 1, 2] = 2.0 * Kd[..., 1, 2] / h - 1.0
    return out.to(K.dtype)


def denormalize_intrinsics(K_norm: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Inverse of ``normalize_intrinsics``: (..., 3, 3) normalised -> pixel intrinsics of an (H, W) image.

    In float64 both directions are exact for float32 inputs, so a float64 round trip reproduces normalised
    intrinsics bit for bit.
    """
    _check_intrinsics(K_norm)
    h, w = image_size
    Kd = K_norm.double()
    out = Kd.clone()
    out[..., 0, 0] = Kd[..., 0, 0] * w / 2.0
    out[..., 0, 1] = Kd[..., 0, 1] * w / 2.0
    out[..., 0, 2] = (Kd[..., 0, 2] + 1.0) * w / 2.0
    out[..., 1, 1] = Kd[..., 1, 1] * h / 2.0
    out[..., 1, 2] = (Kd[..., 1, 2] + 1.0) * h / 2.0
    return out.to(K_norm.dtype)


def project(points: Tensor, K_norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project camera-frame points with normalised intrinsics.

    Args:
        points: (B, N, 3) camera-frame points.
        K_norm: (B, 3, 3) normalised intrinsics.

    Returns:
        uv: (B, N, 2) normalised image coordinates (not clamped), ``p.xy / max(p.z, 1e-3)``.
        z: (B, N) camera depth.
        outside: (B, N) bool, True where the point is behind the camera (z <= 1e-3) or projects outside [-1, 1]^2.
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (B, N, 3), got {tuple(points.shape)}")
    _check_intrinsics(K_norm)
    # Written out (no matmul) so every product is rounded before the sum, as in the original's CPU numbers; a fused
    # multiply-add changes u, v by an ulp, which the sharp decoder features turn into 1e-3 feature differences.
    x, y, zc = points[..., 0], points[..., 1], points[..., 2]
    k = K_norm.unsqueeze(1)
    z = k[..., 2, 0] * x + k[..., 2, 1] * y + k[..., 2, 2] * zc
    depth = z.clamp_min(MIN_DEPTH)
    u = (k[..., 0, 0] * x + k[..., 0, 1] * y + k[..., 0, 2] * zc) / depth
    v = (k[..., 1, 0] * x + k[..., 1, 1] * y + k[..., 1, 2] * zc) / depth
    uv = torch.stack([u, v], dim=-1)
    outside = (z <= MIN_DEPTH) | (uv[..., 0] < -1) | (uv[..., 0] > 1) | (uv[..., 1] < -1) | (uv[..., 1] > 1)
    return uv, z, outside


def normalized_inverse_depth(z: Tensor, z_near: float, z_far: float) -> Tensor:
    """Map camera depth to [-1, 1] linearly in inverse depth (z_near -> +1, z_far -> -1); any shape."""
    inv = 1.0 / z.clamp_min(MIN_DEPTH)
    return 2.0 * ((inv - 1.0 / z_far) / (1.0 / z_near - 1.0 / z_far)) - 1.0


def pixel_centers(height: int, width: int, *, device: torch.device | None = None) -> Tensor:
    """(H, W, 2) normalised (x, y) coordinates of every pixel centre (-1 + (2i+1)/size)."""
    xs = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=device)
    ys = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def ray_directions(xy: Tensor, K_norm: Tensor) -> Tensor:
    """Unit ray directions through normalised image coordinates.

    Args:
        xy: (B, N, 2) normalised image coordinates.
        K_norm: (B, 3, 3) normalised intrinsics.

    Returns:
        (B, N, 3) unit directions in the camera frame.
    """
    _check_intrinsics(K_norm)
    fx, fy = K_norm[:, 0, 0, None], K_norm[:, 1, 1, None]
    cx, cy = K_norm[:, 0, 2, None], K_norm[:, 1, 2, None]
    d = torch.stack([(xy[..., 0] - cx) / fx, (xy[..., 1] - cy) / fy, torch.ones_like(xy[..., 0])], dim=-1)
    return d / d.norm(dim=-1, keepdim=True)


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply (B, 4, 4) rigid transforms to (B, N, 3) points."""
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"transform must have shape (B, 4, 4), got {tuple(T.shape)}")
    return points @ T[:, :3, :3].transpose(-1, -2) + T[:, None, :3, 3]


def resize_intrinsics(K: Tensor, scale_xy: tuple[float, float], crop_xy: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Pixel intrinsics after scaling an image by (sx, sy) and then cropping ``crop_xy`` pixels off the top-left.

    Uses the same convention as ``normalize_intrinsics`` (``cx -> cx * s``), so resizing the whole image leaves the
    normalised intrinsics unchanged, exactly as in the original data pipeline.
    """
    _check_intrinsics(K)
    sx, sy = scale_xy
    out = K.clone()
    out[..., 0, 0] = K[..., 0, 0] * sx
    out[..., 0, 1] = K[..., 0, 1] * sx
    out[..., 1, 1] = K[..., 1, 1] * sy
    out[..., 0, 2] = K[..., 0, 2] * sx - crop_xy[0]
    out[..., 1, 2] = K[..., 1, 2] * sy - crop_xy[1]
    return out
