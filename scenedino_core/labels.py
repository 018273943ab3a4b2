"""The one table of label spaces: Cityscapes trainIds, SSCBench-KITTI-360 labels and the maps between them.

Every module that names a class, colours one or converts between label spaces reads it from here. There is one
palette: the SSCBench colours of the SSC labels. A trainId is drawn in the colour of the SSC label it maps to
(``train_palette``), so a class has the same colour in every picture and message.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Label written for voxels/pixels that are unknown or must be ignored (SSCBench GT convention).
UNKNOWN = 255


@dataclass(frozen=True)
class LabelClass:
    """One class of a label space."""

    id: int
    name: str
    color: tuple[int, int, int] | None = None
    """RGB of the class; None for trainIds, which take the colour of their SSC label (``train_palette``)."""


#: The 19 Cityscapes trainIds predicted by the semantic head (cluster ids map onto these).
TRAIN_CLASSES: tuple[LabelClass, ...] = (
    LabelClass(0, "road"),
    LabelClass(1, "sidewalk"),
    LabelClass(2, "building"),
    LabelClass(3, "wall"),
    LabelClass(4, "fence"),
    LabelClass(5, "pole"),
    LabelClass(6, "traffic light"),
    LabelClass(7, "traffic sign"),
    LabelClass(8, "vegetation"),
    LabelClass(9, "terrain"),
    LabelClass(10, "sky"),
    LabelClass(11, "person"),
    LabelClass(12, "rider"),
    LabelClass(13, "car"),
    LabelClass(14, "truck"),
    LabelClass(15, "bus"),
    LabelClass(16, "train"),
    LabelClass(17, "motorcycle"),
    LabelClass(18, "bicycle"),
)

#: The 16 SSCBench-KITTI-360 evaluation labels (0 = empty).
SSC_CLASSES: tuple[LabelClass, ...] = (
    LabelClass(0, "empty", (0, 0, 0)),
    LabelClass(1, "car", (100, 150, 245)),
    LabelClass(2, "bicycle", (100, 230, 245)),
    LabelClass(3, "motorcycle", (30, 60, 150)),
    LabelClass(4, "truck", (80, 30, 180)),
    LabelClass(5, "other-vehicle", (0, 0, 255)),
    LabelClass(6, "person", (255, 30, 30)),
    LabelClass(7, "road", (255, 0, 255)),
    LabelClass(8, "sidewalk", (75, 0, 75)),
    LabelClass(9, "building", (255, 200, 0)),
    LabelClass(10, "fence", (255, 120, 50)),
    LabelClass(11, "vegetation", (0, 175, 0)),
    LabelClass(12, "terrain", (150, 240, 80)),
    LabelClass(13, "pole", (255, 240, 150)),
    LabelClass(14, "traffic-sign", (255, 0, 0)),
    LabelClass(15, "other-object", (50, 255, 255)),
)

NUM_TRAIN_CLASSES = len(TRAIN_CLASSES)
NUM_SSC_CLASSES = len(SSC_CLASSES)

#: trainId (0..18) -> SSC label. Sky and rider become empty (0), as in the reference evaluation.
TRAINID_TO_SSC = np.array([7, 8, 9, 9, 10, 13, 15, 14, 11, 12, 0, 6, 0, 1, 4, 5, 5, 3, 2], dtype=np.uint8)

#: SSCBench GT id (0..19, S4C-corrected id space) -> SSC label; 255 stays 255 (see ``sscbench_gt_to_ssc``).
SSCBENCH_GT_TO_SSC = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 12, 9, 10, 11, 12, 13, 14, 9, 15, 0], dtype=np.uint8)

#: SSCBench class frequencies (%) of labels 1..15, the weights of the "weighted mIoU".
SSC_CLASS_WEIGHTS = np.array(
    [2.85, 0.01, 0.01, 0.16, 5.75, 0.02, 14.98, 6.43, 20.00, 0.96, 41.99, 9.15, 0.22, 0.06, 0.28], dtype=np.float64
)

#: Per-trainId weights of the reference 2D "weighted mIoU" (normalised to mean 1 where used).
TRAIN_CLASS_WEIGHTS = np.array([4, 2, 2, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1], dtype=np.float64)


def train_palette() -> np.ndarray:
    """(19, 3) uint8 colours of the trainIds: the SSCBench colour of the SSC label each maps to (``TRAINID_TO_SSC``;
    sky and rider, which have none, take the colour of "empty")."""
    return ssc_palette()[TRAINID_TO_SSC]


def ssc_palette() -> np.ndarray:
    """(16, 3) uint8 colours of the SSC labels."""
    return np.array([c.color for c in SSC_CLASSES], dtype=np.uint8)


def trainid_to_ssc(train_ids: np.ndarray) -> np.ndarray:
    """Map predicted trainIds (any shape, values 0..18) to SSC labels (uint8, same shape)."""
    train_ids = np.asarray(train_ids)
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= NUM_TRAIN_CLASSES):
        raise ValueError(f"trainIds must lie in [0, {NUM_TRAIN_CLASSES - 1}], "
                         f"got [{train_ids.min()}, {train_ids.max()}]")
    return TRAINID_TO_SSC[train_ids]


def sscbench_gt_to_ssc(gt: np.ndarray) -> np.ndarray:
    """Map SSCBench GT ids (0..19 or 255, any shape) to SSC labels (uint8); 255 (unknown) is kept."""
    gt = np.asarray(gt).astype(np.int64)
    known = gt != UNKNOWN
    if np.any((gt[known] < 0) | (gt[known] >= len(SSCBENCH_GT_TO_SSC))):
        bad = np.unique(gt[known & ((gt < 0) | (gt >= len(SSCBENCH_GT_TO_SSC)))])
        raise ValueError(f"SSCBench GT ids must be 0..19 or 255, got {bad[:10].tolist()}")
    out = np.full(gt.shape, UNKNOWN, dtype=np.uint8)
    out[known] = SSCBENCH_GT_TO_SSC[gt[known]]
    return out


def class_table(colors_rgb: tuple[int, ...] = ()) -> tuple[tuple[str, ...], np.ndarray]:
    """SSC class names and (16, 3) uint8 colours (``colors_rgb``: 48 values overriding the SSCBench palette)."""
    names = tuple(c.name for c in SSC_CLASSES)
    palette = ssc_palette() if not colors_rgb else np.asarray(colors_rgb, dtype=np.uint8).reshape(len(names), 3)
    return names, palette
