"""Cluster -> class assignment and Hungarian permutation chosen on a validation sequence (``--assign-on val``).

The val pass (``evaluate.val_assignment``) records, per frame, a confusion of raw head ids (cluster ids of a k-means
mode under an identity assignment, trainIds of a linear head) against the SSC labels. Summed over the val frames, it
gives the cluster -> class assignment (Hungarian matching of clusters to SSC labels) and the 16-way Hungarian
permutation of the ``hungarian`` report; both are then applied unchanged to the test frames. This module holds the
pure parts: the head-id confusion, its SSC confusion under an assignment, the matching, and the temporary assignment
of a model.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .. import labels
from ..metrics import hungarian_match
from ..model import SceneDINO
from ..semantics import KMEANS_MODES, PredictionMode
from ..voxels import SIGMA_THRESHOLD, VoxelPrediction
from . import metrics as M

#: Extra rows of a head-id confusion: voxels predicted empty (grown σ below the cut-off), and voxels whose α
#: underflows to 0 (the α-weighted argmax then yields trainId 0 whatever the head said).
ROW_EMPTY, ROW_ALPHA0 = 0, 1  # offsets after the head ids


def representative_trainids() -> np.ndarray:
    """(16,) the smallest trainId mapping to each SSC label (0 -> sky, 9 -> building, 5 -> bus, ...)."""
    rep = np.full(labels.NUM_SSC_CLASSES, -1, dtype=np.int64)
    for t in range(labels.NUM_TRAIN_CLASSES - 1, -1, -1):
        rep[labels.TRAINID_TO_SSC[t]] = t
    if np.any(rep < 0):  # pragma: no cover - the label table covers every SSC label
        raise RuntimeError(f"SSC labels without a trainId: {np.flatnonzero(rep < 0).tolist()}")
    return rep


def head_confusion(gt: np.ndarray, pred: VoxelPrediction, fov: np.ndarray, n_ids: int,
                   sigma_cutoff: float = SIGMA_THRESHOLD) -> np.ndarray:
    """(n_ids + 2, 16) int64 counts of raw head ids against mapped GT over the evaluated voxels of the full grid.

    ``gt``: (256, 256, 32) SSCBench ids; ``pred``: the voxel query with ``train_ids`` = raw head ids (cluster ids
    under an identity assignment, or trainIds of a linear head); ``fov``: (256, 256, 32) bool. Evaluated voxels and
    the empty rule are exactly those of ``accumulate_frame`` (additional invalids, σ < cut-off in σ's dtype), so
    ``ssc_confusion_from_heads`` reproduces its 51.2 m confusion for any head-id -> trainId map.
    """
    gt_ssc = labels.sscbench_gt_to_ssc(gt)
    gt_ssc[M.additional_invalid_mask(gt_ssc)] = labels.UNKNOWN
    evaluated = (gt_ssc != labels.UNKNOWN) & (np.asarray(fov) != 0)
    sigma_g = pred.sigma_grown
    occupied = ~(sigma_g < np.asarray(sigma_cutoff, dtype=sigma_g.dtype))
    alpha = 1.0 - torch.exp(-pred.voxel_size * torch.from_numpy(np.ascontiguousarray(pred.sigma)))
    alpha0 = (alpha == 0).numpy()
    ids = pred.train_ids.astype(np.int64)
    rows = np.where(occupied, np.where(alpha0, n_ids + ROW_ALPHA0, ids), n_ids + ROW_EMPTY)
    bad = evaluated & occupied & (ids == labels.UNKNOWN)
    if np.any(bad):
        raise RuntimeError(f"{int(bad.sum())} evaluated occupied voxels have no semantics; the semantic threshold "
                           "must not exceed the σ cut-off")
    if np.any(rows[evaluated] >= n_ids + 2):
        raise ValueError(f"head ids must lie in [0, {n_ids - 1}], got {int(ids[evaluated & occupied].max())}")
    n_lab = labels.NUM_SSC_CLASSES
    flat = rows[evaluated] * n_lab + gt_ssc[evaluated].astype(np.int64)
    return np.bincount(flat, minlength=(n_ids + 2) * n_lab).reshape(n_ids + 2, n_lab).astype(np.int64)


def ssc_confusion_from_heads(conf_heads: np.ndarray, head_to_trainid: np.ndarray) -> np.ndarray:
    """(16, 16) SSC confusion (rows GT, cols prediction) of a head-id confusion under a head-id -> trainId map."""
    conf_heads = np.asarray(conf_heads, dtype=np.int64)
    n_ids = conf_heads.shape[0] - 2
    head_to_trainid = np.asarray(head_to_trainid, dtype=np.int64)
    if head_to_trainid.shape != (n_ids,):
        raise ValueError(f"head_to_trainid must have {n_ids} entries, got shape {head_to_trainid.shape}")
    pred_label = np.concatenate([labels.TRAINID_TO_SSC[head_to_trainid].astype(np.int64),
                                 [0, int(labels.TRAINID_TO_SSC[0])]])
    onehot = np.zeros((n_ids + 2, labels.NUM_SSC_CLASSES), dtype=np.int64)
    onehot[np.arange(n_ids + 2), pred_label] = 1
    return conf_heads.T @ onehot


def assign_clusters(conf_clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cluster -> SSC label by Hungarian matching (maximising matched voxels), then -> trainId.

    ``conf_clusters``: (K, 16) counts, rows = cluster ids, cols = GT SSC labels (label 0 = empty included, as in
    the reference's 16-way Hungarian report). With K > 16 the unmatched clusters take their majority label
    (label 0 if they never hit an evaluated voxel). Returns (cluster_label (K,), cluster_trainid (K,)), the
    trainId being the smallest trainId of that SSC label (``representative_trainids``).
    """
    label = hungarian_match(conf_clusters, unmatched="majority")
    return label, representative_trainids()[label]


@contextmanager
def cluster_assignment(model: SceneDINO, mode: PredictionMode, assignment: np.ndarray | None) -> Iterator[None]:
    """Temporarily replace the cluster -> trainId assignment of a k-means mode (no-op for None)."""
    if assignment is None:
        yield
        return
    if mode not in KMEANS_MODES:
        raise ValueError(f"mode {mode.value} has no cluster assignment")
    probe = model.head.stego_clusters if mode is PredictionMode.STEGO_KMEANS else model.head.direct_clusters
    old = probe.assignment.clone()
    new = torch.as_tensor(np.asarray(assignment), dtype=old.dtype, device=old.device)
    if new.shape != old.shape:
        raise ValueError(f"assignment must have {old.numel()} entries, got {tuple(new.shape)}")
    probe.assignment.copy_(new)
    try:
        yield
    finally:
        probe.assignment.copy_(old)
