"""KITTI-360 / Cityscapes label ids -> the 19 Cityscapes trainIds (the 2D semantic GT of training and 2D evaluation).

KITTI-360's ``data_2d_semantics/.../semantic/*.png`` and Cityscapes' ``*_gtFine_labelIds.png`` store the same label
ids 0..33 (KITTI-360 adds 34..44). The table follows ``kitti360scripts/helpers/labels.py`` as used by the reference's
``datasets/kitti_360/labels.py``: garage -> building, gate -> fence, smallpole -> pole are mapped; every id whose
trainId is 255 (void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, stop, lamp, ...)
is ignored (``labels.UNKNOWN``). trainIds index ``labels.TRAIN_CLASSES``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from scenedino_core.images import read_image
from scenedino_core.labels import UNKNOWN

#: (label id, name, trainId) of every KITTI-360 label with a trainId; all other ids 0..255 are ignored.
ID_TO_TRAINID: tuple[tuple[int, str, int], ...] = (
    (7, "road", 0),
    (8, "sidewalk", 1),
    (11, "building", 2),
    (12, "wall", 3),
    (13, "fence", 4),
    (17, "pole", 5),
    (19, "traffic light", 6),
    (20, "traffic sign", 7),
    (21, "vegetation", 8),
    (22, "terrain", 9),
    (23, "sky", 10),
    (24, "person", 11),
    (25, "rider", 12),
    (26, "car", 13),
    (27, "truck", 14),
    (28, "bus", 15),
    (31, "train", 16),
    (32, "motorcycle", 17),
    (33, "bicycle", 18),
    (34, "garage", 2),
    (35, "gate", 4),
    (37, "smallpole", 5),
)


def _lut() -> np.ndarray:
    lut = np.full(256, UNKNOWN, dtype=np.uint8)
    for label_id, _, train_id in ID_TO_TRAINID:
        lut[label_id] = train_id
    return lut


#: (256,) uint8 lookup table label id -> trainId (255 = ignore).
LABEL_ID_TO_TRAINID: np.ndarray = _lut()
LABEL_ID_TO_TRAINID.setflags(write=False)


def label_ids_to_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Map KITTI-360 / Cityscapes label ids (any shape, integers 0..255) to trainIds (uint8, 255 = ignore)."""
    label_ids = np.asarray(label_ids)
    if not np.issubdtype(label_ids.dtype, np.integer):
        raise ValueError(f"label ids must be integers, got dtype {label_ids.dtype}")
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
        raise ValueError(f"label ids must lie in 0..255, got [{label_ids.min()}, {label_ids.max()}]")
    return LABEL_ID_TO_TRAINID[label_ids.astype(np.intp)]


def read_label_ids(path: str | Path) -> np.ndarray:
    """(H, W) single-channel label-id PNG (KITTI-360 / Cityscapes ``labelIds``) -> uint8/uint16 array; errors name
    the file."""
    arr = read_image(path, cv2.IMREAD_UNCHANGED, what="label image")
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel label-id image, got shape {arr.shape} "
                         "(a colour *_rgb / *_color file?)")
    return arr


__all__ = ["ID_TO_TRAINID", "LABEL_ID_TO_TRAINID", "label_ids_to_trainids", "read_label_ids"]
