"""SSCBench-KITTI-360 evaluation frames: input image, calibration and voxel GT of one sequence.

Layout read::

    <ssc>/data_2d_raw/<seq>/image_00/data_rect/<frame:06d>.png   1408 x 376 RGB input image
    <ssc>/calibration/perspective.txt                            P_rect_00 (K of image_00), S_rect_00 (W H)
    <ssc>/calibration/calib_cam_to_velo.txt                      cam00 -> Velodyne (cross-checked only, see below)
    <vgt>/<seq>/<frame:06d>_1_1.npy                              S4C-corrected voxel GT (256, 256, 32)

The frame list of a sequence is every ``*_1_1.npy`` GT file in ``<vgt>/<seq>`` (the reference's rule), optionally
restricted to requested frames.

Model input, exactly as the reference's loaders produce it: the whole full-resolution image is resized to the
model's (H, W) with ``cv2.INTER_LINEAR`` (non-uniform, no crop) and the model receives the *normalised* intrinsics of
the full-resolution image, ``geometry.normalize_intrinsics(K_full, (376, 1408))``, which a whole-image resize leaves
unchanged.

Calibration choices (documented protocol):

* ``K_full`` comes from ``calibration/perspective.txt`` (``P_rect_00``), as in the reference. Only when the whole
  ``calibration/`` folder is absent does the reader fall back to the hard-coded SSCBench constants of
  ``sscbench.grid`` (with a warning; ``calibration_source == "builtin"``). A folder that exists but lacks a file,
  or holds a corrupt one, is an error naming the file.
* The voxel grid (query points) and the FOV mask are NOT taken from the files: the reference uses the hard-coded
  ``calib_cam_to_velo`` and the hard-coded full-resolution K for them (``sscbench.grid``), and the GT was voxelised
  in that frame. ``calib_cam_to_velo.txt`` is only compared against the hard-coded matrix (a warning if it differs).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenedino_core import geometry, images
from scenedino_core.sscbench import grid
from scenedino_core.sscbench import io as sio

logger = logging.getLogger(__name__)

#: Relative tolerance when cross-checking file calibration against the hard-coded SSCBench constants.
CALIBRATION_RTOL = 1e-4


@dataclass(frozen=True)
class FrameCalibration:
    """Calibration used for the model input.

    ``K``: (3, 3) float64 full-resolution intrinsics of image_00; ``image_size_wh``: (width, height) of the
    full-resolution image; ``cam_to_velo``: (4, 4) float64 (informational); ``source``: "files" or "builtin".
    """

    K: np.ndarray
    image_size_wh: tuple[int, int]
    cam_to_velo: np.ndarray
    source: str

    def to_dict(self) -> dict:
        return {"source": self.source, "K_full": self.K.tolist(), "image_size_wh": list(self.image_size_wh),
                "cam_to_velo": self.cam_to_velo.tolist()}


def builtin_calibration() -> FrameCalibration:
    """The hard-coded SSCBench-KITTI-360 calibration (``sscbench.grid`` constants)."""
    return FrameCalibration(K=grid.intrinsics_full(), image_size_wh=grid.IMAGE_SIZE_WH,
                            cam_to_velo=grid.cam_to_velo_matrix(), source="builtin")


def load_calibration(root: str | Path) -> FrameCalibration:
    """Calibration of ``<root>/calibration`` (see module doc); hard-coded constants only if that folder is absent."""
    folder = Path(root) / "calibration"
    if not folder.is_dir():
        K = grid.intrinsics_full()
        logger.warning("%s not found: using the hard-coded SSCBench-KITTI-360 calibration (K fx=fy=%.6f, cx=%.6f, "
                       "cy=%.6f, %dx%d)", folder, K[0, 0], K[0, 2], K[1, 2], *grid.IMAGE_SIZE_WH)
        return builtin_calibration()
    calib = sio.read_sscbench_calibration(root)
    builtin = builtin_calibration()
    if (not np.allclose(calib.K, builtin.K, rtol=CALIBRATION_RTOL, atol=0)
            or calib.image_size_wh != builtin.image_size_wh):
        logger.warning("%s: K %s / size %s differ from the SSCBench constants %s / %s; the model input uses the "
                       "file's values, the voxel grid and FOV mask keep the SSCBench constants",
                       folder / "perspective.txt", calib.K.tolist(), calib.image_size_wh, builtin.K.tolist(),
                       builtin.image_size_wh)
    if not np.allclose(calib.cam_to_velo, builtin.cam_to_velo, rtol=0, atol=1e-6):
        logger.warning("%s differs from the hard-coded SSCBench cam->velo matrix; like the reference, the voxel grid "
                       "uses the hard-coded matrix", folder / "calib_cam_to_velo.txt")
    return FrameCalibration(K=calib.K, image_size_wh=calib.image_size_wh, cam_to_velo=calib.cam_to_velo,
                            source="files")


def model_input(rgb: np.ndarray, K_full: np.ndarray, model_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-resolution image -> what ``SceneDINO.encode(image, K_norm, normalized=True)`` takes.

    Args:
        rgb: (H0, W0, 3) uint8 full-resolution image.
        K_full: (3, 3) pixel intrinsics of ``rgb``.
        model_size: the model's (H, W).

    Returns:
        image (1, 3, H, W) float32 in [0, 1] (whole image resized with ``cv2.INTER_LINEAR``) and
        K_norm (3, 3) float32 = ``normalize_intrinsics(K_full, (H0, W0))``.
    """
    resized = images.resize_whole_image(rgb, model_size)
    K = torch.as_tensor(np.asarray(K_full, dtype=np.float64))
    K_norm = geometry.normalize_intrinsics(K, tuple(rgb.shape[:2])).float()
    return images.to_tensor_image(resized), K_norm


def parse_sequence(seq: int | str) -> str:
    """"09", "9", 9 -> "2013_05_28_drive_0009_sync"; a full directory name is kept."""
    if isinstance(seq, str) and seq.strip().isdigit():
        seq = int(seq)
    return sio.kitti360_sequence_dir(seq)


@dataclass(frozen=True)
class SSCBenchSample:
    """One evaluation frame."""

    sequence: str
    frame: int
    rgb: np.ndarray
    """(376, 1408, 3) uint8 full-resolution input image."""
    gt: np.ndarray
    """(256, 256, 32) uint8 voxel GT in the SSCBench id space (0..19, 255)."""


class SSCBenchKitti360:
    """Frames of one SSCBench-KITTI-360 sequence with their voxel GT.

    Args:
        root: SSCBench root (``data_2d_raw/``, ``calibration/``).
        voxel_gt_root: S4C voxel GT root (``<seq>/<frame:06d>_1_1.npy``).
        sequence: 9, "09" or "2013_05_28_drive_0009_sync".
        frames: frame ids to keep (default: every GT file of the sequence); each must have a GT file.
    """

    def __init__(self, root: str | Path, voxel_gt_root: str | Path, sequence: int | str = 9,
                 frames: Sequence[int] | None = None):
        self.root = Path(root)
        self.voxel_gt_root = Path(voxel_gt_root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"SSCBench root not found: {self.root}")
        if not self.voxel_gt_root.is_dir():
            raise FileNotFoundError(f"voxel GT root not found: {self.voxel_gt_root}")
        self.sequence = parse_sequence(sequence)
        available = sio.list_voxel_gt_frames(self.voxel_gt_root, self.sequence)
        if frames is None:
            if not available:
                raise FileNotFoundError(f"no *_1_1.npy voxel GT files in {self.voxel_gt_root / self.sequence}")
            self.frames: list[int] = available
        else:
            wanted = sorted({int(f) for f in frames})
            missing = sorted(set(wanted) - set(available))
            if missing:
                paths = [str(sio.voxel_gt_path(self.voxel_gt_root, self.sequence, f)) for f in missing[:5]]
                raise FileNotFoundError(f"{len(missing)} requested frame(s) have no voxel GT file, e.g. {paths}")
            if not wanted:
                raise ValueError("the frame list is empty")
            self.frames = wanted
        self.calibration = load_calibration(self.root)

    def __len__(self) -> int:
        return len(self.frames)

    def image_path(self, frame: int) -> Path:
        return sio.sscbench_image_path(self.root, self.sequence, frame)

    def gt_path(self, frame: int) -> Path:
        return sio.voxel_gt_path(self.voxel_gt_root, self.sequence, frame)

    def check_files(self, frames: Sequence[int] | None = None) -> None:
        """Raise ``FileNotFoundError`` naming the missing input images of ``frames`` (default: all), before any work."""
        frames = self.frames if frames is None else frames
        missing = [p for p in (self.image_path(f) for f in frames) if not p.is_file()]
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise FileNotFoundError(f"{len(missing)} input image(s) missing: {[str(p) for p in missing[:5]]}{more}")

    def load(self, frame: int) -> SSCBenchSample:
        """Read the image and the GT of one frame; errors name the file that is missing, corrupt or mis-sized."""
        path = self.image_path(frame)
        rgb = images.read_rgb(path)
        w, h = self.calibration.image_size_wh
        if rgb.shape[:2] != (h, w):
            raise ValueError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the calibration says {w}x{h}")
        gt = sio.read_voxel_gt(self.gt_path(frame))
        return SSCBenchSample(sequence=self.sequence, frame=int(frame), rgb=rgb, gt=gt)

    def __iter__(self) -> Iterator[SSCBenchSample]:
        for f in self.frames:
            yield self.load(f)


__all__ = ["FrameCalibration", "SSCBenchKitti360", "SSCBenchSample", "builtin_calibration", "load_calibration",
           "model_input", "parse_sequence"]
