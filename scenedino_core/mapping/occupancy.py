"""Clamped log-odds occupancy: the frame's inverse sensor model and the per-voxel update.

A frame's occupancy probability ``p`` becomes a log-odds increment through a look-up table over ``p`` quantised to
``LEVELS`` steps (the 4096-level quantisation moves an increment by at most 0.01 near the default boundary), so the
per-frame cost is one gather instead of two logarithms per voxel.
"""
from __future__ import annotations

import numpy as np

from .config import MapConfig, logit

#: Quantisation levels of the frame probability (p -> round(p * (LEVELS - 1))).
LEVELS = 4096


def increment_table(config: MapConfig) -> np.ndarray:
    """(LEVELS,) float32 log-odds increment of a full-weight frame for each quantised probability.

    ``clip(gain * (logit(p) - logit(p_threshold)), logit(p_miss), logit(p_hit))``; p = 0 and p = 1 take the
    clip bounds.
    """
    p = np.linspace(0.0, 1.0, LEVELS, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lp = np.log(p) - np.log1p(-p)
    inc = config.probability_gain * (lp - logit(config.frame_threshold_probability))
    return np.clip(inc, config.l_miss, config.l_hit).astype(np.float32)


def quantize_probability(p: np.ndarray) -> np.ndarray:
    """Probabilities (any shape, clipped to [0, 1]) -> int32 table indices."""
    q = np.asarray(p, dtype=np.float32) * np.float32(LEVELS - 1) + np.float32(0.5)
    return np.clip(q, 0, LEVELS - 1).astype(np.int32)


def frame_increments(config: MapConfig, probability: np.ndarray, weight: np.ndarray | float = 1.0) -> np.ndarray:
    """Log-odds increments (float32, shape of ``probability``) of observed voxels times ``weight``."""
    inc = increment_table(config)[quantize_probability(probability)]
    return inc * np.float32(weight) if np.isscalar(weight) else inc * np.asarray(weight, dtype=np.float32)


def update(log_odds: np.ndarray, increment: np.ndarray, l_min: float, l_max: float) -> None:
    """``log_odds := clip(log_odds + increment, l_min, l_max)`` in place (any equal shapes, views allowed)."""
    np.add(log_odds, increment, out=log_odds)
    np.clip(log_odds, np.float32(l_min), np.float32(l_max), out=log_odds)


def probability(log_odds: np.ndarray) -> np.ndarray:
    """Occupancy probability (float32) of log-odds values."""
    return (1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=np.float32)))).astype(np.float32)
