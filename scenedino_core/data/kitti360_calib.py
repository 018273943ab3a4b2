"""KITTI-360 calibration: the built-in camera 00 constants and the calibration text files.

Camera 00 (rectified perspective, left of the stereo pair) at full resolution has the intrinsics
``CAM00_INTRINSICS`` and the image size ``CAM00_SIZE_HW``; SSCBench-KITTI-360 evaluates with the same camera. They
serve where a dataset has no ``calibration/`` folder, and as the SSCBench constants (``sscbench.grid``).

File format of ``perspective.txt``, ``calib_cam_to_pose.txt``, ...: one entry per line, ``key: v1 v2 ...``, split at the
first colon; lines whose values are not all floats (e.g. ``calib_time: 09-Jan-2013 15:40:53``) and blank lines are
skipped. ``calib_cam_to_velo.txt`` is a single line of 12 floats without a key (3x4 row-major, cam00 -> velo).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: KITTI-360 rectified camera 00 at full resolution: (fx, fy, cx, cy) in pixels.
CAM00_INTRINSICS: tuple[float, float, float, float] = (552.554261, 552.554261, 682.049453, 238.769549)
#: KITTI-360 rectified camera 00 image size (height, width) in pixels.
CAM00_SIZE_HW: tuple[int, int] = (376, 1408)


def cam00_intrinsics() -> np.ndarray:
    """(3, 3) float64 pixel intrinsics of KITTI-360 camera 00 at ``CAM00_SIZE_HW``."""
    fx, fy, cx, cy = CAM00_INTRINSICS
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    try:
        return path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"calibration file {path} is not text: {e}") from e


def _floats(text: str) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError:
        return None


def parse_key_floats(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a ``key: floats`` file into {key: (n,) float64}; non-float and key-less lines are skipped."""
    out: dict[str, np.ndarray] = {}
    for line in _read_text(path).splitlines():
        if ":" not in line:
            continue
        key, values = line.split(":", 1)
        arr = _floats(values)
        if arr is None or arr.size == 0:
            continue
        out[key.strip()] = arr
    return out


def _entry(entries: dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    if key not in entries:
        raise ValueError(f"{path}: missing entry '{key}' (found {sorted(entries)})")
    v = entries[key]
    if v.size != size:
        raise ValueError(f"{path}: entry '{key}' must have {size} values, got {v.size}")
    return v


@dataclass(frozen=True)
class PerspectiveCalibration:
    """Rectified perspective calibration of image_00 (and every other entry of the file).

    ``p_rect_00``: (3, 4) float64 projection; ``image_size_wh``: (width, height) from ``S_rect_00``;
    ``entries``: all parsed ``key -> (n,)`` arrays (``P_rect_01``, ``R_rect_00``, ...).
    """

    p_rect_00: np.ndarray
    image_size_wh: tuple[int, int]
    entries: dict[str, np.ndarray] = field(repr=False)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsics of image_00 (left 3x3 block of ``P_rect_00``)."""
        return self.p_rect_00[:, :3].copy()


def read_perspective(path: str | Path) -> PerspectiveCalibration:
    """Read KITTI-360 ``calibration/perspective.txt`` (needs ``P_rect_00`` (12 floats) and ``S_rect_00`` (W H))."""
    path = Path(path)
    entries = parse_key_floats(path)
    p = _entry(entries, "P_rect_00", 12, path).reshape(3, 4)
    s = _entry(entries, "S_rect_00", 2, path)
    if np.any(s <= 0) or np.any(s != np.round(s)):
        raise ValueError(f"{path}: S_rect_00 must be two positive integers, got {s.tolist()}")
    return PerspectiveCalibration(p_rect_00=p, image_size_wh=(int(s[0]), int(s[1])), entries=entries)


def read_cam_to_velo(path: str | Path) -> np.ndarray:
    """Read KITTI-360 ``calibration/calib_cam_to_velo.txt``: (4, 4) float64 cam00 -> Velodyne.

    The file holds 12 floats (3x4 row-major), normally on one line without a key; a ``key:`` prefix is tolerated.
    """
    path = Path(path)
    values: list[float] = []
    for line in _read_text(path).splitlines():
        text = line.split(":", 1)[1] if ":" in line else line
        arr = _floats(text)
        if arr is None:
            raise ValueError(f"{path}: non-numeric line {line!r}")
        values.extend(arr.tolist())
    if len(values) != 12:
        raise ValueError(f"{path}: expected 12 floats (3x4 cam->velo), got {len(values)}")
    m = np.eye(4, dtype=np.float64)
    m[:3] = np.asarray(values, dtype=np.float64).reshape(3, 4)
    return m
