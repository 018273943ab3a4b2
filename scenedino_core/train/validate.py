"""Validation during training: rendered-depth error (stage 1) and Hungarian-matched cluster mIoU, whose
cluster -> class assignment is written into the model so the checkpoint carries it (stage 2)."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import hungarian_match, iou_per_class, relabel
from ..model import SceneDINO
from .config import TrainConfig
from .runner import collate


def _render(model: SceneDINO, item, stride: int, mode: str | None = None):
    batch = collate([item])
    volume = model.encode(batch.images[:, 0], batch.intrinsics[:, 0], normalized=True)
    o, d, (h, w) = model.image_rays(volume, stride)
    return model.render(volume, o, d, mode=mode, expand=mode is not None), (h, w)


def _grid(x: torch.Tensor, stride: int) -> torch.Tensor:
    return torch.as_tensor(x)[stride // 2::stride, stride // 2::stride]


@torch.no_grad()
def depth_metrics(model: SceneDINO, items, stride: int = 4, max_depth: float | None = None) -> dict[str, float]:
    """AbsRel / RMSE of rendered depth (distance along the ray) against items' ``depth`` (H, W) ground truth.

    Pixels count where 0 < GT < ``max_depth`` (default: the field's far plane ``model.config.field.z_far``).
    """
    if max_depth is None:
        max_depth = model.config.field.z_far
    was_training = model.training
    model.eval()
    abs_rel, sq, count = 0.0, 0.0, 0
    for item in items:
        rendered, (h, w) = _render(model, item, stride)
        gt = _grid(item.depth, stride).reshape(-1).float()
        pred = rendered.depth[0].cpu()
        ok = (gt > 0) & (gt < max_depth)
        abs_rel += float(((pred[ok] - gt[ok]).abs() / gt[ok]).sum())
        sq += float(((pred[ok] - gt[ok]) ** 2).sum())
        count += int(ok.sum())
    model.train(was_training)
    return {"val/abs_rel": abs_rel / max(count, 1), "val/rmse": (sq / max(count, 1)) ** 0.5}


def cluster_confusion(model: SceneDINO, items, mode: str, stride: int) -> np.ndarray:
    """(K, C) counts of raw cluster ids (rendered input view) against items' 2D trainId ``labels`` (-1 ignored)."""
    k = model.config.semantic.n_clusters
    c = model.config.semantic.n_classes
    conf = np.zeros((k, c), np.int64)
    for item in items:
        rendered, _ = _render(model, item, stride)
        feats = model.expansion(rendered.features[0])
        clusters = model.classify(feats, mode).clusters.cpu().numpy()
        labels = _grid(item.labels, stride).reshape(-1).numpy()
        ok = labels >= 0
        np.add.at(conf, (clusters[ok], labels[ok]), 1)
    return conf


def hungarian_miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Best one-to-one cluster -> class matching of a (K, C) confusion; returns mIoU and the assignment (K,).

    Clusters left unmatched (K > C) take their majority class. The mIoU averages the classes present in the
    labels (0.0 when there are none)."""
    assignment = hungarian_match(conf, unmatched="majority")
    mapped = relabel(conf, assignment, conf.shape[1])
    present = mapped.sum(0) > 0
    iou = iou_per_class(mapped)
    return float(iou[present].mean()) if present.any() else 0.0, assignment


@torch.no_grad()
def semantic_metrics(model: SceneDINO, items, stride: int = 4, write_assignment: bool = True) -> dict[str, float]:
    """Hungarian-matched mIoU of both cluster probes on the items; the matched assignment goes into the model."""
    was_training = model.head.training
    model.head.eval()
    out = {}
    for mode, probe in (("stego_kmeans", model.head.stego_clusters), ("direct_kmeans", model.head.direct_clusters)):
        miou, assignment = hungarian_miou(cluster_confusion(model, items, mode, stride))
        out[f"val/{mode}_miou"] = miou
        if write_assignment:
            probe.assignment.copy_(torch.as_tensor(assignment, device=probe.assignment.device))
    model.head.train(was_training)
    return out


def validate(model: SceneDINO, cfg: TrainConfig, items) -> dict[str, float]:
    """The runner's validator: depth metrics in stage 1, cluster mIoU (+ assignment) in stage 2."""
    key = "depth" if cfg.stage == 1 else "labels"
    usable = [it for it in items if getattr(it, key, None) is not None]
    if not usable:
        return {}
    return depth_metrics(model, usable) if cfg.stage == 1 else semantic_metrics(model, usable)
