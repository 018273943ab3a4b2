"""Readers for the SSCBench-KITTI-360 on-disk formats (as released by SSCBench and S4C).

Layouts::

    <vgt>/<seq>/<frame:06d>_1_1.npy                         S4C-corrected voxel GT, (256, 256, 32), ids 0..19 / 255
    <ssc>/data_2d_raw/<seq>/voxels/<frame:06d>.label        uint16, 2,097,152 raw SemanticKITTI-style ids
    <ssc>/data_2d_raw/<seq>/voxels/<frame:06d>.invalid      bit-packed, 262,144 bytes
    <ssc>/data_2d_raw/<seq>/voxels/<frame:06d>.bin          bit-packed occupancy, 262,144 bytes
    <ssc>/data_2d_raw/<seq>/image_00/data_rect/<frame:06d>.png
    <ssc>/calibration/perspective.txt, calibration/calib_cam_to_velo.txt

``<seq>`` is the KITTI-360 sequence directory, e.g. ``2013_05_28_drive_0009_sync`` (``kitti360_sequence_dir(9)``).

Assumption on flat arrays: all SemanticKITTI/SSCBench voxel files store the grid in C order of shape
(256, 256, 32) = [x, y, z] (z fastest), the same index order as the ``.npy`` GT; readers reshape accordingly.
Every reader raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for a file of
the wrong size, shape, dtype or content.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenedino_core import labels
from scenedino_core.data.kitti360_calib import read_cam_to_velo, read_perspective
from scenedino_core.files import require_file
from scenedino_core.sscbench.grid import GRID_DIMS

#: Largest valid SSCBench GT id (19 is an unused class the evaluation maps to empty).
MAX_GT_ID = 19
_GT_NAME = re.compile(r"^(\d+)_1_1\.npy$")


# --------------------------------------------------------------------------------------------------- paths
def kitti360_sequence_dir(seq: int | str) -> str:
    """KITTI-360 sequence directory name: 9 -> "2013_05_28_drive_0009_sync"; a string is returned unchanged."""
    if isinstance(seq, str):
        return seq
    if int(seq) < 0:
        raise ValueError(f"sequence number must be >= 0, got {seq}")
    return f"2013_05_28_drive_{int(seq):04d}_sync"


def voxel_gt_path(vgt_root: str | Path, seq: int | str, frame: int) -> Path:
    """``<vgt>/<seq>/<frame:06d>_1_1.npy``."""
    return Path(vgt_root) / kitti360_sequence_dir(seq) / f"{int(frame):06d}_1_1.npy"


def sscbench_voxel_path(root: str | Path, seq: int | str, frame: int, ext: str) -> Path:
    """``<ssc>/data_2d_raw/<seq>/voxels/<frame:06d>.<ext>`` with ext in {"bin", "label", "invalid"}."""
    ext = ext.lstrip(".")
    if ext not in ("bin", "label", "invalid"):
        raise ValueError(f"voxel file extension must be bin, label or invalid, got {ext!r}")
    return Path(root) / "data_2d_raw" / kitti360_sequence_dir(seq) / "voxels" / f"{int(frame):06d}.{ext}"


def sscbench_image_path(root: str | Path, seq: int | str, frame: int) -> Path:
    """``<ssc>/data_2d_raw/<seq>/image_00/data_rect/<frame:06d>.png`` (1408 x 376 RGB, SSCBench's 6-digit names)."""
    return Path(root) / "data_2d_raw" / kitti360_sequence_dir(seq) / "image_00" / "data_rect" / f"{int(frame):06d}.png"


def list_voxel_gt_frames(vgt_root: str | Path, seq: int | str) -> list[int]:
    """Sorted frame ids of all ``<frame>_1_1.npy`` files of a sequence."""
    d = Path(vgt_root) / kitti360_sequence_dir(seq)
    if not d.is_dir():
        raise FileNotFoundError(f"voxel GT sequence directory not found: {d}")
    frames = [int(m.group(1)) for p in d.iterdir() if (m := _GT_NAME.match(p.name)) and p.is_file()]
    return sorted(frames)


# ------------------------------------------------------------------------------------------------ readers
def read_voxel_gt(path: str | Path, dims: tuple[int, int, int] = GRID_DIMS) -> np.ndarray:
    """Read an S4C voxel GT ``.npy``: (256, 256, 32) float32 (or integer) ids 0..19 / 255 -> uint8 array."""
    path = require_file(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path}: expected a single array, got {type(arr).__name__}")
    if arr.shape != tuple(dims):
        raise ValueError(f"{path}: expected shape {tuple(dims)}, got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path}: expected a float or integer array, got dtype {arr.dtype}")
    valid = (((arr >= 0) & (arr <= MAX_GT_ID)) | (arr == labels.UNKNOWN)) & (arr == np.round(arr))
    if not np.all(valid):
        bad = np.unique(arr[~valid])[:10]
        raise ValueError(f"{path}: GT values must be integers 0..{MAX_GT_ID} or 255, got {bad.tolist()}")
    return arr.astype(np.uint8)


def _read_flat(path: str | Path, dtype: np.dtype, count: int, what: str) -> np.ndarray:
    path = require_file(path)
    size = path.stat().st_size
    itemsize = np.dtype(dtype).itemsize
    if size != count * itemsize:
        raise ValueError(
            f"{path}: {what} must be {count * itemsize} bytes ({count} x {np.dtype(dtype).name}), got {size} bytes"
        )
    return np.fromfile(path, dtype=dtype, count=count)


def read_label_raw(path: str | Path, dims: tuple[int, int, int] = GRID_DIMS) -> np.ndarray:
    """Read an SSCBench ``.label``: little-endian uint16 raw SemanticKITTI-style ids -> (256, 256, 32) uint16.

    The raw ids (10 car, 40 road, ...) are *not* the 0..19 evaluation ids; this package does not ship SSCBench's
    ``learning_map`` (``kitti_360_preprocess.yaml``), so remap with ``remap_labels(raw, learning_map)``.
    """
    return _read_flat(path, np.dtype("<u2"), int(np.prod(dims)), "a .label file").reshape(dims)


def remap_labels(raw: np.ndarray, learning_map: Mapping[int, int], unmapped: int | None = None) -> np.ndarray:
    """Map raw ids through ``learning_map`` (raw id -> 0..19 / 255) with a lookup table; returns uint8.

    Raw ids missing from the map become ``unmapped``; with ``unmapped=None`` they raise ``ValueError``.
    """
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"raw ids must lie in [0, 65535], got [{raw.min()}, {raw.max()}]")
    lut = np.full(np.iinfo(np.uint16).max + 1, -1, dtype=np.int32)
    for k, v in learning_map.items():
        if not 0 <= int(v) <= 255:
            raise ValueError(f"learning_map values must lie in 0..255, got {k} -> {v}")
        lut[int(k)] = int(v)
    out = lut[raw.astype(np.intp)]
    missing = out < 0
    if np.any(missing):
        if unmapped is None:
            raise ValueError(f"raw ids not in learning_map: {np.unique(raw[missing])[:10].tolist()}")
        out[missing] = unmapped
    return out.astype(np.uint8)


def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """(n,) uint8 bytes -> (8n,) uint8 in {0, 1}; 8 voxels per byte, most significant bit first."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise ValueError(f"packed must be a 1-D uint8 array, got {packed.dtype} with shape {packed.shape}")
    return np.unpackbits(packed)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Any-shape 0/1 (or bool) array, flattened in C order -> uint8 bytes, most significant bit first.

    The size must be a multiple of 8 (SemanticKITTI files never pad).
    """
    bits = np.asarray(bits)
    if bits.size % 8:
        raise ValueError(f"number of bits must be a multiple of 8, got {bits.size}")
    if bits.dtype != bool and np.any((bits != 0) & (bits != 1)):
        raise ValueError("bits must be 0 or 1")
    return np.packbits(bits.reshape(-1).astype(bool))


def read_bitpacked(path: str | Path, dims: tuple[int, int, int] = GRID_DIMS) -> np.ndarray:
    """Read a bit-packed voxel file (SemanticKITTI convention) -> (256, 256, 32) bool."""
    n = int(np.prod(dims))
    if n % 8:
        raise ValueError(f"grid {dims} has {n} voxels, not a multiple of 8")
    packed = _read_flat(path, np.dtype(np.uint8), n // 8, "a bit-packed voxel file")
    return unpack_bits(packed).reshape(dims).astype(bool)


def read_occupancy(path: str | Path, dims: tuple[int, int, int] = GRID_DIMS) -> np.ndarray:
    """``.bin``: bit-packed occupancy -> (256, 256, 32) bool."""
    return read_bitpacked(path, dims)


def read_invalid(path: str | Path, dims: tuple[int, int, int] = GRID_DIMS) -> np.ndarray:
    """``.invalid``: bit-packed invalid mask -> (256, 256, 32) bool.

    Note: S4C's reference reader loads ``.invalid`` as flat uint8 *without* unpacking (one byte per 8 voxels
    treated as 262,144 values); this reader follows the real SemanticKITTI/SSCBench format instead.
    The evaluation itself does not use ``.invalid`` (unknown voxels are 255 in the ``_1_1.npy`` GT).
    """
    return read_bitpacked(path, dims)


# ------------------------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class SSCBenchCalibration:
    """``K``: (3, 3) float64 of image_00; ``image_size_wh``: (width, height); ``cam_to_velo``: (4, 4) float64."""

    K: np.ndarray
    image_size_wh: tuple[int, int]
    cam_to_velo: np.ndarray

    @property
    def velo_to_cam(self) -> np.ndarray:
        return np.linalg.inv(self.cam_to_velo)


def read_sscbench_calibration(root: str | Path) -> SSCBenchCalibration:
    """Read ``<ssc>/calibration/perspective.txt`` and ``calib_cam_to_velo.txt``."""
    calib = Path(root) / "calibration"
    persp = read_perspective(calib / "perspective.txt")
    return SSCBenchCalibration(
        K=persp.K, image_size_wh=persp.image_size_wh, cam_to_velo=read_cam_to_velo(calib / "calib_cam_to_velo.txt")
    )
