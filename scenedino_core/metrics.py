"""Hungarian matching and IoU of confusion matrices: the one implementation shared by the SSCBench evaluation, the
2D evaluation and validation during training. Pure numpy.

Conventions: a confusion holds integer counts; its rows are what is *mapped* (predicted ids, or GT labels for the
SSCBench report's row permutation), its columns are the classes they are matched to. Counts below 2**53 keep every
float64 sum exact, so results do not depend on the orientation or on the order of summation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

#: What ``hungarian_match`` gives rows left without a partner (more rows than columns).
Unmatched = Literal["none", "majority"]
#: How ``mean_iou`` treats classes whose IoU is undefined (absent from both truth and prediction).
Absent = Literal["zero", "skip"]


def hungarian_match(confusion: np.ndarray, unmatched: Unmatched = "none") -> np.ndarray:
    """One-to-one matching of rows to columns maximising the matched counts (``linear_sum_assignment``).

    ``confusion``: (P, C) counts. Returns (P,) int64: the column matched to each row. When P > C, the rows left
    unmatched get -1 (``unmatched="none"``: their counts then score as wrong) or the column of their largest count
    (``unmatched="majority"``, first column on ties).
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"confusion must be 2-D, got shape {c.shape}")
    if unmatched not in ("none", "majority"):
        raise ValueError(f"unmatched must be 'none' or 'majority', got {unmatched!r}")
    rows, cols = linear_sum_assignment(c, maximize=True)
    if unmatched == "majority":
        mapping = c.argmax(axis=1).astype(np.int64)
    else:
        mapping = np.full(c.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def relabel(confusion: np.ndarray, mapping: np.ndarray, n_classes: int) -> np.ndarray:
    """Sum the rows of a (P, C) confusion by ``mapping`` (P,) (class per row, -1 = none) -> (C + 1, C) int64.

    Row k < C of the result counts everything mapped to class k; the last row counts the rows mapped to none
    (``iou_per_class`` scores them as false negatives only).
    """
    conf = np.asarray(confusion, dtype=np.int64)
    mapping = np.asarray(mapping, dtype=np.int64)
    if conf.ndim != 2 or conf.shape[1] != n_classes:
        raise ValueError(f"confusion must be (P, {n_classes}), got shape {conf.shape}")
    if mapping.shape != (conf.shape[0],) or mapping.max(initial=-1) >= n_classes or mapping.min(initial=0) < -1:
        raise ValueError(f"mapping must be ({conf.shape[0]},) with values in -1..{n_classes - 1}")
    out = np.zeros((n_classes + 1, n_classes), dtype=np.int64)
    np.add.at(out, np.where(mapping >= 0, mapping, n_classes), conf)
    return out


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """(C,) float64 IoU = TP / (TP + FP + FN) per class of a (C, C) or (C + U, C) confusion; NaN where 0 / 0.

    Row k < C is "predicted class k", column k is "class k"; rows C.. (e.g. ``relabel``'s last row) hold counts
    predicted as no class, which are false negatives of their column only. A square confusion gives the same IoU in
    either orientation.
    """
    c = np.asarray(confusion, dtype=np.float64)
    n = c.shape[1] if c.ndim == 2 else -1
    if c.ndim != 2 or c.shape[0] < n:
        raise ValueError(f"confusion must be (C + U, C) with U >= 0, got shape {c.shape}")
    tp = np.diag(c[:n])
    union = c.sum(axis=0) + c[:n].sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / union


def mean_iou(iou: np.ndarray, absent: Absent, weights: np.ndarray | None = None) -> float | None:
    """Mean (or ``weights``-weighted mean) of per-class IoU with NaN for undefined classes.

    ``absent="zero"``: undefined classes count as 0 (SSCBench); ``absent="skip"``: they are left out, and the mean of
    no class is None (STEGO's 2D convention).
    """
    iou = np.asarray(iou, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and w.shape != iou.shape:
        raise ValueError(f"weights must have {iou.shape[0]} entries, got shape {w.shape}")
    if absent == "zero":
        v = np.nan_to_num(iou)
        return float(np.mean(v)) if w is None else float(np.sum(w * v) / np.sum(w))
    if absent != "skip":
        raise ValueError(f"absent must be 'zero' or 'skip', got {absent!r}")
    defined = ~np.isnan(iou)
    if not defined.any():
        return None
    return float(iou[defined].mean()) if w is None else float((w[defined] * iou[defined]).sum() / w[defined].sum())


def segmentation_metrics(confusion: np.ndarray, class_names: Sequence[str], weights: np.ndarray,
                         mapping: np.ndarray | None = None) -> dict[str, Any]:
    """mIoU, weighted mIoU, accuracy and per-class IoU of a (P, C) confusion (rows predicted ids, cols GT classes).

    ``mapping``: (P,) class per predicted id (-1 = none, counted as wrong); default identity (requires P == C).
    Classes with undefined IoU are skipped in the means and reported as None; accuracy = matched / all counts.
    """
    conf = np.asarray(confusion, dtype=np.int64)
    n_pred, n_cls = conf.shape
    if len(class_names) != n_cls:
        raise ValueError(f"{len(class_names)} class names for a confusion with {n_cls} classes")
    if mapping is None:
        if n_pred != n_cls:
            raise ValueError(f"an identity mapping needs a square confusion, got {conf.shape}")
        mapping = np.arange(n_cls)
    mapped = relabel(conf, mapping, n_cls)
    iou = iou_per_class(mapped)
    total = float(conf.sum())
    return {
        "miou": mean_iou(iou, "skip"),
        "weighted_miou": mean_iou(iou, "skip", weights),
        "accuracy": float(np.diag(mapped).astype(np.float64).sum() / total) if total else None,
        "per_class_iou": {name: (None if np.isnan(iou[k]) else float(iou[k])) for k, name in enumerate(class_names)},
        "n_pixels": int(total),
    }


__all__ = ["Absent", "Unmatched", "hungarian_match", "iou_per_class", "mean_iou", "relabel", "segmentation_metrics"]
