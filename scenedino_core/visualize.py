"""Pictures people would rather look at than read: depth, label maps, feature PCA, bird's-eye views."""
from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, near: float = 3.0, far: float = 80.0) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 RGB, inverse-depth colour map (near = bright)."""
    inv = (1.0 / np.clip(depth, near, far) - 1.0 / far) / (1.0 / near - 1.0 / far)
    bgr = cv2.applyColorMap(np.clip(inv * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colorize_labels(labels: np.ndarray, palette: np.ndarray, unknown_color=(0, 0, 0)) -> np.ndarray:
    """Integer labels (any shape) -> RGB via ``palette`` (K, 3); values outside [0, K) get ``unknown_color``."""
    labels = np.asarray(labels).astype(np.int64)
    out = np.empty((*labels.shape, 3), np.uint8)
    out[...] = unknown_color
    ok = (labels >= 0) & (labels < len(palette))
    out[ok] = palette[labels[ok]]
    return out


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """(..., C) features -> (..., 3) uint8 RGB from their first three principal components (robustly scaled)."""
    shape = features.shape[:-1]
    x = features.reshape(-1, features.shape[-1]).astype(np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x[:: max(1, len(x) // 20000)], full_matrices=False)
    proj = x @ vt[:3].T
    lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
    return (rgb.reshape(*shape, 3) * 255).astype(np.uint8)


def bev_labels(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) labels (0 = empty) -> (X, Y) label of the highest non-empty voxel per column (0 if none)."""
    occupied = labels > 0
    top = labels.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    bev = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    return np.where(occupied.any(axis=2), bev, 0)


def bev_image(labels: np.ndarray, palette: np.ndarray, in_view: np.ndarray | None = None,
              scale: int = 2) -> np.ndarray:
    """Bird's-eye RGB of an (X forward, Y left, Z up) label grid: forward is up, left is left.

    Columns never in view (``in_view`` (X, Y, Z) all False) are drawn dark grey, observed free columns white.
    """
    top = bev_labels(labels)
    rgb = colorize_labels(top, palette)
    rgb[top == 0] = (255, 255, 255)
    if in_view is not None:
        rgb[~in_view.any(axis=2)] = (60, 60, 60)
    img = rgb[::-1, ::-1]  # rows: far -> near (x), columns: left -> right (y decreasing)
    return np.ascontiguousarray(np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))


def side_by_side(*images: np.ndarray, height: int | None = None, gap: int = 4) -> np.ndarray:
    """Stack RGB images horizontally after resizing them to a common height."""
    height = height or max(im.shape[0] for im in images)
    resized = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height),
                          interpolation=cv2.INTER_NEAREST) for im in images]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    parts = []
    for im in resized:
        parts += [im, spacer]
    return np.concatenate(parts[:-1], axis=1)
