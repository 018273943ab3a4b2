"""Per-voxel class evidence: Dirichlet counts in uint8, fused by addition, read out as arg-max and confidence.

Counts are in units of ``1 / class_unit`` full-weight observations. Before an addition would take a count above 255,
every count of that voxel is halved first: the ratios between classes are kept and the oldest evidence fades.
"""
from __future__ import annotations

import numpy as np


def evidence_units(class_unit: int, weight: np.ndarray | float, confidence: np.ndarray | float = 1.0) -> np.ndarray:
    """uint8 units of evidence for observations of the given weight and confidence: ``round(unit * w * c)``, at
    least 1 (every labelled observation counts) and at most 128."""
    units = np.rint(np.float32(class_unit) * np.asarray(weight, dtype=np.float32) *
                    np.asarray(confidence, dtype=np.float32))
    return np.clip(units, 1, 128).astype(np.uint8)


def add_evidence_flat(counts: np.ndarray, voxel: np.ndarray, classes: np.ndarray, units: np.ndarray) -> int:
    """Add ``units`` to class ``classes`` (0-based) of the voxels ``voxel``; returns how many voxels were halved.

    Args:
        counts: (V, C) uint8 counts (contiguous), updated in place.
        voxel: (N,) row of each observation; each row at most once.
        classes: (N,) 0-based class of each observation.
        units: (N,) uint8 evidence, at most 128.
    """
    flat = counts.reshape(-1)
    c = counts.shape[1]
    index = np.asarray(voxel, dtype=np.int64) * c + np.asarray(classes, dtype=np.int64)
    old = np.take(flat, index)
    new = old + units  # uint8: wraps around exactly where old + units > 255
    over = new < old
    halved = int(np.count_nonzero(over))
    if halved:
        rows = np.asarray(voxel)[over]
        counts[rows] >>= 1
        new[over] = np.take(flat, index[over]) + units[over]
    flat[index] = new
    return halved


def read_out(counts: np.ndarray, class_unit: int, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max label and its Dirichlet confidence of (..., C) counts.

    Returns:
        labels: (...) uint8, 1-based class (1..C), 0 where a voxel has no evidence.
        confidence: (...) float32, ``(n_max + prior) / (sum n + C * prior)`` with n in observations, 0 where no
        evidence.
    """
    c = counts.shape[-1]
    best = counts.argmax(axis=-1)
    n_best = np.take_along_axis(counts, best[..., None], axis=-1)[..., 0].astype(np.float32)
    total = counts.sum(axis=-1, dtype=np.float32)
    has = total > 0
    unit = np.float32(class_unit)
    conf = (n_best / unit + np.float32(prior)) / (total / unit + np.float32(c * prior))
    labels = np.where(has, best + 1, 0).astype(np.uint8)
    return labels, np.where(has, conf, 0.0).astype(np.float32)
