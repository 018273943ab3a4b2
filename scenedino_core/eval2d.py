"""2D unsupervised semantic segmentation evaluation (spec §6): rendered input-view semantics vs. 2D GT.

Datasets (the reference's preprocessing):

* KITTI-360 (``Kitti360Semantics2D``): ``data_2d_raw/<seq>/image_00/data_rect/<frame:010d>.png`` (1408 x 376) with
  ``data_2d_semantics/train/<seq>/image_00/semantic/<frame:010d>.png`` (uint8 label ids). The whole image is resized
  to the model size (``cv2.INTER_LINEAR``) with the normalised full-resolution intrinsics from
  ``calibration/perspective.txt``; labels are nearest-resized (``cv2.INTER_NEAREST``) and mapped to 19 trainIds.
  The reference evaluates its ``old_KITTI_360`` test split (seq 0009, frames with semantics for t and t+1); here every
  semantic frame of the sequence is used unless ``frames`` is given.
* Cityscapes format (``Cityscapes2D``): ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``; resized to the model width keeping the aspect
  (1024x2048 -> 320x640; images ``cv2.INTER_AREA`` (antialiased like the reference's PIL bilinear, not bit-identical),
  labels ``cv2.INTER_NEAREST_EXACT`` (= PIL nearest)), then centre-cropped to the model height (192); identity
  normalised intrinsics, as in the reference.

Metrics per prediction mode, from one confusion matrix over the whole set (rows = prediction, cols = GT trainId,
ignore pixels dropped):

* ``direct``: the head's trainIds as predicted (k-means modes through the checkpoint's cluster assignment);
* ``hungarian``: a fresh one-to-one matching of raw head ids (cluster ids for k-means modes, trainIds for linear
  modes) to GT classes on the whole set (``scipy.optimize.linear_sum_assignment``, maximising matched pixels).

Per-class IoU = TP / (TP + FP + FN); mIoU = mean over classes whose IoU is defined (STEGO convention: a class absent
from both GT and prediction is skipped); weighted mIoU uses ``labels.TRAIN_CLASS_WEIGHTS`` over the same classes;
pixel accuracy = matched pixels / labelled pixels.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from scenedino_core import geometry, images, labels
from scenedino_core.data.kitti360_calib import read_perspective
from scenedino_core.data.kitti360_labels import label_ids_to_trainids, read_label_ids
from scenedino_core.model import DEFAULT_CHUNK, SceneDINO
from scenedino_core.semantics import KMEANS_MODES, PredictionMode
from scenedino_core.sscbench.dataset import parse_sequence

logger = logging.getLogger(__name__)

NUM_CLASSES = labels.NUM_TRAIN_CLASSES
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in labels.TRAIN_CLASSES)
ALL_MODES: tuple[PredictionMode, ...] = tuple(PredictionMode)
#: KITTI-360 rectified camera 00 at 1408 x 376 (used only when the dataset has no calibration folder).
KITTI360_K_FULL = images.intrinsics_matrix(*images.KITTI360_CAM00)
_FRAME_PNG = re.compile(r"^(\d+)\.png$")


# ----------------------------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample2D:
    """One evaluation image at the model input size."""

    name: str
    image: torch.Tensor
    """(1, 3, H, W) float32 RGB in [0, 1]."""
    K_norm: torch.Tensor
    """(3, 3) float32 normalised intrinsics."""
    target: np.ndarray
    """(H, W) uint8 trainIds 0..18, 255 = ignore."""


class Dataset2D(Protocol):
    name: str

    def __len__(self) -> int: ...

    def load(self, index: int) -> Sample2D: ...


def _select(items: list, every: int, limit: int | None) -> list:
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    items = items[::every]
    return items[:limit] if limit is not None else items


class Kitti360Semantics2D:
    """KITTI-360 2D semantics of one sequence (see module doc).

    Args:
        root: KITTI-360 root (``data_2d_raw/``, ``data_2d_semantics/``, ``calibration/``).
        image_size: the model's (H, W).
        sequence: 9, "09" or the directory name.
        frames: frame ids (default: every semantic GT frame); ``every`` / ``limit`` subsample the list.
    """

    name = "kitti360"

    def __init__(self, root: str | Path, image_size: tuple[int, int], sequence: int | str = 9,
                 frames: Sequence[int] | None = None, every: int = 1, limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"KITTI-360 root not found: {self.root}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.sequence = parse_sequence(sequence)
        self.gt_dir = self.root / "data_2d_semantics" / "train" / self.sequence / "image_00" / "semantic"
        if not self.gt_dir.is_dir():
            raise FileNotFoundError(f"KITTI-360 semantics folder not found: {self.gt_dir}")
        available = sorted(int(m.group(1)) for p in self.gt_dir.iterdir() if (m := _FRAME_PNG.match(p.name)))
        if frames is not None:
            missing = sorted(set(int(f) for f in frames) - set(available))
            if missing:
                raise FileNotFoundError(f"{len(missing)} requested frame(s) have no semantic GT, e.g. "
                                        f"{[str(self.gt_path(f)) for f in missing[:5]]}")
            available = sorted(set(int(f) for f in frames))
        self.frames: list[int] = _select(available, every, limit)
        if not self.frames:
            raise FileNotFoundError(f"no semantic GT frames in {self.gt_dir}")
        calib_dir = self.root / "calibration"
        if calib_dir.is_dir():
            persp = read_perspective(calib_dir / "perspective.txt")
            self.K_full, self.full_size_wh = persp.K, persp.image_size
        else:
            logger.warning("%s not found: using the KITTI-360 camera 00 intrinsics %s", calib_dir,
                           list(images.KITTI360_CAM00))
            self.K_full, self.full_size_wh = KITTI360_K_FULL, (images.KITTI360_IMAGE_SIZE[1],
                                                               images.KITTI360_IMAGE_SIZE[0])

    def __len__(self) -> int:
        return len(self.frames)

    def image_path(self, frame: int) -> Path:
        return self.root / "data_2d_raw" / self.sequence / "image_00" / "data_rect" / f"{int(frame):010d}.png"

    def gt_path(self, frame: int) -> Path:
        return self.gt_dir / f"{int(frame):010d}.png"

    def load(self, index: int) -> Sample2D:
        frame = self.frames[index]
        path = self.image_path(frame)
        rgb = images.read_rgb(path)
        w, h = self.full_size_wh
        if rgb.shape[:2] != (h, w):
            raise ValueError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the calibration says {w}x{h}")
        gt_path = self.gt_path(frame)
        ids = read_label_ids(gt_path)
        if ids.shape != rgb.shape[:2]:
            raise ValueError(f"{gt_path}: label image is {ids.shape[1]}x{ids.shape[0]}, its image is {w}x{h}")
        H, W = self.image_size
        target = label_ids_to_trainids(cv2.resize(ids, (W, H), interpolation=cv2.INTER_NEAREST))
        image = images.to_tensor_image(images.resize_whole_image(rgb, self.image_size))
        K_norm = geometry.normalize_intrinsics(torch.as_tensor(self.K_full, dtype=torch.float64), (h, w)).float()
        return Sample2D(name=f"{self.sequence}/{frame:010d}", image=image, K_norm=K_norm, target=target)


def cityscapes_preprocess(rgb: np.ndarray, label_ids: np.ndarray, image_size: tuple[int, int]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Resize to the model width keeping the aspect, then centre-crop to the model height.

    ``rgb``: (h, w, 3) uint8; ``label_ids``: (h, w); ``image_size``: (H, W). Returns (H, W, 3) and (H, W).
    For 1024 x 2048 and (192, 640): resize to 320 x 640, keep rows 64..255.
    """
    H, W = image_size
    h, w = label_ids.shape[:2]
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"image {rgb.shape[:2]} and labels {label_ids.shape} differ in size")
    rh = int(round(h * W / w))
    if rh < H:
        raise ValueError(f"a {w}x{h} image resized to width {W} is {rh} rows high, less than the model height {H}")
    interp = cv2.INTER_AREA if W < w else cv2.INTER_LINEAR
    rgb_r = cv2.resize(rgb, (W, rh), interpolation=interp)
    lab_r = cv2.resize(label_ids, (W, rh), interpolation=cv2.INTER_NEAREST_EXACT)
    y0 = (rh - H) // 2
    return np.ascontiguousarray(rgb_r[y0:y0 + H]), np.ascontiguousarray(lab_r[y0:y0 + H])


class Cityscapes2D:
    """Cityscapes-format fine semantic split (see module doc); ``every`` / ``limit`` subsample the sorted list."""

    name = "cityscapes"

    def __init__(self, root: str | Path, image_size: tuple[int, int], split: str = "val", every: int = 1,
                 limit: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Cityscapes root not found: {self.root}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        gt_root = self.root / "gtFine" / split
        if not gt_root.is_dir():
            raise FileNotFoundError(f"Cityscapes gtFine split folder not found: {gt_root}")
        suffix = "_gtFine_labelIds.png"
        gts = sorted(p for p in gt_root.glob(f"*/*{suffix}") if p.is_file())
        self.items: list[tuple[Path, Path]] = []
        for gt in _select(gts, every, limit):
            stem = gt.name[: -len(suffix)]
            self.items.append((self.root / "leftImg8bit" / split / gt.parent.name / f"{stem}_leftImg8bit.png", gt))
        if not self.items:
            raise FileNotFoundError(f"no *{suffix} files in {gt_root}/<city>/")
        self.split = split

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample2D:
        img_path, gt_path = self.items[index]
        rgb = images.read_rgb(img_path)
        ids = read_label_ids(gt_path)
        if ids.shape != rgb.shape[:2]:
            raise ValueError(f"{gt_path}: label image is {ids.shape[1]}x{ids.shape[0]}, its image {img_path} is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        rgb_c, ids_c = cityscapes_preprocess(rgb, ids, self.image_size)
        return Sample2D(name=f"{gt_path.parent.name}/{img_path.name}", image=images.to_tensor_image(rgb_c),
                        K_norm=torch.eye(3), target=label_ids_to_trainids(ids_c))


# ----------------------------------------------------------------------------------------------- metrics
def hungarian_match(confusion: np.ndarray) -> np.ndarray:
    """One-to-one matching of predicted ids to GT classes maximising matched pixels.

    ``confusion``: (P, C) counts, rows = predicted ids, cols = GT classes. Returns (P,) int64: the GT class of
    each predicted id, -1 for ids left unmatched when P > C (their pixels then count as wrong).
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"confusion must be 2-D, got shape {c.shape}")
    rows, cols = linear_sum_assignment(c, maximize=True)
    mapping = np.full(c.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def segmentation_metrics(confusion: np.ndarray, mapping: np.ndarray | None = None,
                         weights: np.ndarray = labels.TRAIN_CLASS_WEIGHTS) -> dict[str, Any]:
    """mIoU, weighted mIoU, pixel accuracy and per-class IoU of a (P, C) confusion (rows prediction, cols GT).

    ``mapping``: (P,) GT class per predicted id (-1 = none); default identity (requires P == C).
    """
    conf = np.asarray(confusion, dtype=np.int64)
    n_pred, n_cls = conf.shape
    if mapping is None:
        if n_pred != n_cls:
            raise ValueError(f"an identity mapping needs a square confusion, got {conf.shape}")
        mapping = np.arange(n_cls)
    mapping = np.asarray(mapping, dtype=np.int64)
    if mapping.shape != (n_pred,) or mapping.max(initial=-1) >= n_cls or mapping.min(initial=0) < -1:
        raise ValueError(f"mapping must be ({n_pred},) with values in -1..{n_cls - 1}")
    mapped = np.zeros((n_cls, n_cls), dtype=np.int64)  # rows = mapped prediction, cols = GT
    ok = mapping >= 0
    np.add.at(mapped, mapping[ok], conf[ok])
    tp = np.diag(mapped).astype(np.float64)
    gt_count = conf.sum(axis=0).astype(np.float64)
    pred_count = mapped.sum(axis=1).astype(np.float64)
    denom = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / denom
    defined = denom > 0
    w = np.asarray(weights, dtype=np.float64)
    total = float(conf.sum())
    return {
        "miou": float(iou[defined].mean()) if defined.any() else None,
        "weighted_miou": float((w[defined] * iou[defined]).sum() / w[defined].sum()) if defined.any() else None,
        "accuracy": float(tp.sum() / total) if total else None,
        "per_class_iou": {name: (float(iou[k]) if defined[k] else None) for k, name in enumerate(CLASS_NAMES)},
        "n_pixels": int(total),
    }


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
            hung = segmentation_metrics(self.raw[m], mapping)
            hung["assignment"] = mapping.tolist()
            out[m.value] = {"direct": segmentation_metrics(self.direct[m]), "hungarian": hung,
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


def iter_samples(dataset: Dataset2D) -> Iterator[Sample2D]:
    for i in range(len(dataset)):
        yield dataset.load(i)


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


__all__ = ["ALL_MODES", "CLASS_NAMES", "Cityscapes2D", "ConfusionAccumulator", "Kitti360Semantics2D", "Render2DOptions",
           "Sample2D", "cityscapes_preprocess", "evaluate", "evaluate_model", "hungarian_match", "iter_samples",
           "predict_view", "results_markdown", "segmentation_metrics", "stride_target"]
