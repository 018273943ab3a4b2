"""2D unsupervised semantic segmentation evaluation: rendered input-view semantics vs. 2D GT.

Datasets and their preprocessing (the reference's): ``scenedino_core.data.semantics2d``.

Metrics per prediction mode, from one confusion matrix over the whole set (rows = prediction, cols = GT trainId,
ignore pixels dropped), computed by ``scenedino_core.metrics``:

* ``direct``: the head's trainIds as predicted (k-means modes through the checkpoint's cluster assignment);
* ``hungarian``: a fresh one-to-one matching of raw head ids (cluster ids for k-means modes, trainIds for linear
  modes) to GT classes on the whole set (``scipy.optimize.linear_sum_assignment``, maximising matched pixels; ids
  left unmatched count as wrong).

Per-class IoU = TP / (TP + FP + FN); mIoU = mean over classes whose IoU is defined (STEGO convention: a class absent
from both GT and prediction is skipped); weighted mIoU uses ``labels.TRAIN_CLASS_WEIGHTS`` over the same classes;
pixel accuracy = matched pixels / labelled pixels.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scenedino_core import labels
from scenedino_core.data.semantics2d import Dataset2D, Sample2D
from scenedino_core.metrics import hungarian_match, segmentation_metrics
from scenedino_core.model import DEFAULT_CHUNK, SceneDINO
from scenedino_core.semantics import KMEANS_MODES, PredictionMode

NUM_CLASSES = labels.NUM_TRAIN_CLASSES
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in labels.TRAIN_CLASSES)
ALL_MODES: tuple[PredictionMode, ...] = tuple(PredictionMode)


def _metrics(confusion: np.ndarray, mapping: np.ndarray | None = None) -> dict[str, Any]:
    return segmentation_metrics(confusion, CLASS_NAMES, labels.TRAIN_CLASS_WEIGHTS, mapping)


# ----------------------------------------------------------------------------------------------- counts
class ConfusionAccumulator:
    """Per mode: raw-id confusion (for the Hungarian report) and trainId confusion (direct report)."""

    def __init__(self, modes: Sequence[PredictionMode], n_raw: dict[PredictionMode, int]):
        self.modes = tuple(modes)
        self.raw = {m: np.zeros((n_raw[m], NUM_CLASSES), np.int64) for m in self.modes}
        self.direct = {m: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64) for m in self.modes}
        self.n_images = 0

    def add(self, target: np.ndarray, predictions: dict[PredictionMode, tuple[np.ndarray, np.ndarray]]) -> None:
        """``target``: (h, w) trainIds / 255; per mode (raw ids (h, w), trainIds (h, w))."""
        valid = target != labels.UNKNOWN
        t = target[valid].astype(np.int64)
        if t.size and t.max() >= NUM_CLASSES:
            raise ValueError(f"target trainIds must be < {NUM_CLASSES} or 255, got {int(t.max())}")
        for m in self.modes:
            raw, direct = predictions[m]
            for name, pred, conf in (("raw", raw, self.raw[m]), ("direct", direct, self.direct[m])):
                if pred.shape != target.shape:
                    raise ValueError(f"{m.value} {name} prediction {pred.shape} != target {target.shape}")
                p = pred[valid].astype(np.int64)
                if p.size and (p.min() < 0 or p.max() >= conf.shape[0]):
                    raise ValueError(f"{m.value} {name} ids must lie in [0, {conf.shape[0] - 1}]")
                conf += np.bincount(p * NUM_CLASSES + t, minlength=conf.size).reshape(conf.shape)
        self.n_images += 1

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.modes:
            mapping = hungarian_match(self.raw[m])
            hung = _metrics(self.raw[m], mapping)
            hung["assignment"] = mapping.tolist()
            out[m.value] = {"direct": _metrics(self.direct[m]), "hungarian": hung,
                            "raw_ids": "cluster ids" if m in KMEANS_MODES else "trainIds",
                            "confusion_raw": self.raw[m].tolist(), "confusion_direct": self.direct[m].tolist()}
        return out


# ----------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Render2DOptions:
    """How the input view is rendered: every ``stride``-th pixel, ``ray_batch`` rays per render call."""

    stride: int = 1
    ray_batch: int = 8192
    chunk_size: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if self.stride < 1 or self.ray_batch < 1 or self.chunk_size < 1:
            raise ValueError(f"stride, ray_batch and chunk_size must be >= 1, got {self}")


def predict_view(model: SceneDINO, sample: Sample2D, modes: Sequence[PredictionMode],
                 options: Render2DOptions = Render2DOptions()) -> dict[PredictionMode, tuple[np.ndarray, np.ndarray]]:
    """Render the input view's semantics: per mode (raw ids (h, w), trainIds (h, w)) on the stride grid.

    Raw ids are cluster ids for k-means modes (``Classification.clusters``) and trainIds for linear modes.
    """
    device = next(model.parameters()).device
    with torch.no_grad():
        volume = model.encode(sample.image.to(device), sample.K_norm.to(device), normalized=True)
        origins, dirs, (gh, gw) = model.image_rays(volume, options.stride)
        raw = {m: [] for m in modes}
        direct = {m: [] for m in modes}
        for i in range(0, origins.shape[1], options.ray_batch):
            out = model.render(volume, origins[:, i:i + options.ray_batch], dirs[:, i:i + options.ray_batch],
                               expand=True, chunk_size=options.chunk_size)
            feats = out.expanded[0]
            for m in modes:
                cls = model.classify(feats, m)
                direct[m].append(cls.classes)
                raw[m].append(cls.clusters if cls.clusters is not None else cls.classes)
    return {m: (torch.cat(raw[m]).reshape(gh, gw).cpu().numpy(), torch.cat(direct[m]).reshape(gh, gw).cpu().numpy())
            for m in modes}


def stride_target(target: np.ndarray, stride: int) -> np.ndarray:
    """GT at the pixel centres ``image_rays`` renders for ``stride``: rows/cols stride//2, stride//2 + stride, ..."""
    return target[stride // 2::stride, stride // 2::stride]


Predictor = Callable[[Sample2D], dict[PredictionMode, tuple[np.ndarray, np.ndarray]]]


def evaluate(dataset: Dataset2D, predictor: Predictor, modes: Sequence[PredictionMode],
             n_raw: dict[PredictionMode, int], stride: int = 1, progress: bool = True) -> dict[str, Any]:
    """Confusions over the whole dataset, then both reports per mode (see module doc).

    ``predictor(sample)`` -> per mode (raw ids (h, w), trainIds (h, w)) on the ``stride`` grid of the sample;
    ``n_raw``: number of raw ids per mode (rows of its Hungarian confusion).
    """
    acc = ConfusionAccumulator(modes, n_raw)
    for i in tqdm(range(len(dataset)), desc=f"2D {dataset.name}", unit="img", disable=not progress):
        sample = dataset.load(i)
        acc.add(stride_target(sample.target, stride), predictor(sample))
    return {"n_images": acc.n_images, "modes": acc.report()}


def evaluate_model(model: SceneDINO, dataset: Dataset2D, modes: Sequence[PredictionMode | str] = ALL_MODES,
                   options: Render2DOptions = Render2DOptions(), progress: bool = True) -> dict[str, Any]:
    """``evaluate`` with the model's rendered semantics."""
    modes = tuple(PredictionMode.parse(m) for m in modes)
    sem = model.config.semantic
    n_raw = {m: (sem.n_clusters if m in KMEANS_MODES else sem.n_classes) for m in modes}
    if sem.n_classes != NUM_CLASSES:
        raise ValueError(f"the model predicts {sem.n_classes} classes, the 2D evaluation needs {NUM_CLASSES}")
    result = evaluate(dataset, lambda s: predict_view(model, s, modes, options), modes, n_raw, options.stride, progress)
    result["render"] = {"stride": options.stride, "n_samples": model.config.render.n_samples,
                        "jitter": model.config.render.jitter, "image_size": list(model.config.image_size)}
    return result


def results_markdown(result: dict[str, Any], title: str) -> str:
    """Summary table (mode x report: mIoU, weighted mIoU, accuracy) and per-class IoU tables (percent)."""
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    modes = list(result["modes"])
    lines = [f"# {title}", "", f"{result['n_images']} images.", "",
             "| Mode | Report | mIoU | weighted mIoU | Accuracy |", "|---|---|---|---|---|"]
    for m in modes:
        for r in ("direct", "hungarian"):
            x = result["modes"][m][r]
            lines.append(f"| {m} | {r} | {pct(x['miou'])} | {pct(x['weighted_miou'])} | {pct(x['accuracy'])} |")
    for r in ("direct", "hungarian"):
        lines += ["", f"## Per-class IoU (%), {r}", "", "| Class | " + " | ".join(modes) + " |",
                  "|---|" + "---|" * len(modes)]
        for c in CLASS_NAMES:
            lines.append(f"| {c} | " + " | ".join(pct(result["modes"][m][r]["per_class_iou"][c]) for m in modes)
                         + " |")
    lines += ["", "direct: trainIds as predicted (k-means modes via the checkpoint's cluster assignment). "
              "hungarian: fresh one-to-one matching of raw ids (cluster ids / linear trainIds) to classes on this "
              "whole set (the reference's 2D protocol for cluster heads). mIoU averages classes with defined IoU.",
              ""]
    return "\n".join(lines)


__all__ = ["ALL_MODES", "CLASS_NAMES", "ConfusionAccumulator", "Render2DOptions", "evaluate", "evaluate_model",
           "predict_view", "results_markdown", "stride_target"]
