"""Raw KITTI-360 recording files: per-frame timestamps, rectified perspective camera models, images and Velodyne
scans, each with an error naming the file when it is missing or malformed.

Layout under the dataset root::

    calibration/perspective.txt                                 S_rect_0X (width height), P_rect_0X (3 x 4)
    data_2d_raw/<seq>/image_0X/data_rect/<frame:010d>.png       rectified perspective images
    data_2d_raw/<seq>/image_0X/timestamps.txt                   one UTC stamp per frame id, line = frame id
    data_3d_raw/<seq>/velodyne_points/data/<frame:010d>.bin     float32 N x 4 (x, y, z, reflectance)
    data_3d_raw/<seq>/velodyne_points/timestamps.txt
"""
from __future__ import annotations

import calendar
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .kitti360_calib import read_perspective


@dataclass(frozen=True)
class CameraCalibration:
    """Rectified camera model of one perspective camera: image (width, height) and (3, 4) float64 P."""

    width: int
    height: int
    P: np.ndarray

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics (P[:3, :3])."""
        return self.P[:, :3].copy()


# ------------------------------------------------------------------------------------------- reading files
def timestamps_path(root: str | Path, sequence: str, camera: str) -> Path:
    return Path(root) / "data_2d_raw" / sequence / camera / "timestamps.txt"


def velodyne_timestamps_path(root: str | Path, sequence: str) -> Path:
    return Path(root) / "data_3d_raw" / sequence / "velodyne_points" / "timestamps.txt"


def velodyne_scan_path(root: str | Path, sequence: str, frame: int) -> Path:
    return Path(root) / "data_3d_raw" / sequence / "velodyne_points" / "data" / f"{int(frame):010d}.bin"


def parse_timestamp(text: str) -> int:
    """``2013-05-28 08:46:02.880698602`` (UTC) -> int nanoseconds since the epoch, exact (no float on the way)."""
    seconds, _, fraction = text.strip().partition(".")
    if fraction and not (fraction.isascii() and fraction.isdigit() and len(fraction) <= 9):
        raise ValueError(f"bad fraction of a second in {text.strip()!r}")
    parsed = time.strptime(seconds, "%Y-%m-%d %H:%M:%S")
    return calendar.timegm(parsed) * 10**9 + int(fraction.ljust(9, "0") or 0)


def read_timestamps(path: str | Path) -> np.ndarray:
    """(N,) int64 UTC ns, line i = frame i; blank lines are allowed only at the end."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timestamps file not found: {path}")
    stamps = []
    for n, line in enumerate(path.read_text(errors="replace").rstrip().splitlines(), start=1):
        try:
            stamps.append(parse_timestamp(line))
        except ValueError:
            raise ValueError(f"{path}:{n}: expected 'YYYY-MM-DD HH:MM:SS.fffffffff', got {line.strip()[:60]!r}") \
                from None
    if not stamps:
        raise ValueError(f"{path}: no timestamps")
    return np.asarray(stamps, dtype=np.int64)


def read_camera_calibrations(path: str | Path, cameras: Sequence[str]) -> dict[str, CameraCalibration]:
    """``perspective.txt`` -> {camera: CameraCalibration} from ``S_rect_0X`` and ``P_rect_0X``."""
    path = Path(path)
    entries = read_perspective(path).entries
    out = {}
    for cam in cameras:
        idx = cam.removeprefix("image_")
        size, p = entries.get(f"S_rect_{idx}"), entries.get(f"P_rect_{idx}")
        if size is None or size.size != 2 or np.any(size <= 0) or np.any(size != np.round(size)):
            raise ValueError(f"{path}: S_rect_{idx} must be two positive integers, got "
                             f"{None if size is None else size.tolist()}")
        if p is None or p.size != 12:
            raise ValueError(f"{path}: P_rect_{idx} must have 12 values, got {0 if p is None else p.size}")
        out[cam] = CameraCalibration(width=int(size[0]), height=int(size[1]), P=p.reshape(3, 4))
    return out


def is_rgb8_png(data: bytes) -> bool:
    """PNG signature, IHDR with bit depth 8 and colour type 2 (RGB)."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[24] == 8 and data[25] == 2


def read_image(path: Path, calibration: CameraCalibration) -> tuple[np.ndarray, bytes]:
    """(H, W, 3) uint8 BGR image and the file's bytes; ``FileNotFoundError`` / ``ValueError`` naming the file when it
    is missing, undecodable or not the calibrated (``S_rect``) size."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = path.read_bytes()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path} is not a readable image (corrupt or unsupported format)")
    if bgr.shape[:2] != (calibration.height, calibration.width):
        raise ValueError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, calibration/perspective.txt (S_rect) says "
                         f"{calibration.width}x{calibration.height}")
    return bgr, data


def read_scan(path: Path) -> np.ndarray:
    """(N, 4) float32 Velodyne points; ``FileNotFoundError`` / ``ValueError`` (size not a multiple of 16 bytes)."""
    if not path.is_file():
        raise FileNotFoundError(f"Velodyne scan not found: {path}")
    data = path.read_bytes()
    if len(data) % 16:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of float32 x 4 points")
    return np.frombuffer(data, dtype="<f4").reshape(-1, 4)
