"""2D semantic segmentation datasets for the unsupervised 2D evaluation (``scenedino_core.eval2d``).

Each sample is one image at the model input size with its normalised intrinsics and trainId GT.

* KITTI-360 (``Kitti360Semantics2D``): ``data_2d_raw/<seq>/image_00/data_rect/<frame:010d>.png`` (1408 x 376) with
  ``data_2d_semantics/train/<seq>/image_00/semantic/<frame:010d>.png`` (uint8 label ids). The whole image is resized
  to the model size (``cv2.INTER_LINEAR``) with the normalised full-resolution intrinsics from
  ``calibration/perspective.txt`` (camera 00's built-in K when that folder is absent); labels are nearest-resized
  (``cv2.INTER_NEAREST``) and mapped to 19 trainIds. The reference evaluates its ``old_KITTI_360`` test split
  (seq 0009, frames with semantics for t and t+1); here every semantic frame of the sequence is used unless
  ``frames`` is given.
* Cityscapes format (``Cityscapes2D``): ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``; resized to the model width keeping the aspect
  (1024x2048 -> 320x640; images ``cv2.INTER_AREA`` (antialiased like the reference's PIL bilinear, not bit-identical),
  labels ``cv2.INTER_NEAREST_EXACT`` (= PIL nearest)), then centre-cropped to the model height (192); identity
  normalised intrinsics, as in the reference.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from scenedino_core import geometry, images
from scenedino_core.data.kitti360_calib import CAM00_INTRINSICS, CAM00_SIZE_HW, cam00_intrinsics, read_perspective
from scenedino_core.data.kitti360_labels import label_ids_to_trainids, read_label_ids
from scenedino_core.sscbench.dataset import parse_sequence

logger = logging.getLogger(__name__)

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
            missing = sorted({int(f) for f in frames} - set(available))
            if missing:
                raise FileNotFoundError(f"{len(missing)} requested frame(s) have no semantic GT, e.g. "
                                        f"{[str(self.gt_path(f)) for f in missing[:5]]}")
            available = sorted({int(f) for f in frames})
        self.frames: list[int] = _select(available, every, limit)
        if not self.frames:
            raise FileNotFoundError(f"no semantic GT frames in {self.gt_dir}")
        calib_dir = self.root / "calibration"
        if calib_dir.is_dir():
            persp = read_perspective(calib_dir / "perspective.txt")
            self.K_full, self.full_size_wh = persp.K, persp.image_size_wh
        else:
            logger.warning("%s not found: using the KITTI-360 camera 00 intrinsics %s", calib_dir,
                           list(CAM00_INTRINSICS))
            self.K_full, self.full_size_wh = cam00_intrinsics(), CAM00_SIZE_HW[::-1]

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


__all__ = ["Cityscapes2D", "Dataset2D", "Kitti360Semantics2D", "Sample2D", "cityscapes_preprocess"]
