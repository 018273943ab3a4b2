"""Image I/O and fitting arbitrary images to the model's input size with matching intrinsics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .data.kitti360_calib import CAM00_INTRINSICS, CAM00_SIZE_HW
from .files import atomic_write_bytes


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 pixel intrinsics; raises ``ValueError`` for non-finite values or fx, fy <= 0."""
    vals = np.array([fx, fy, cx, cy], dtype=np.float64)
    if not np.all(np.isfinite(vals)) or fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics need finite values and fx, fy > 0, got fx={fx} fy={fy} cx={cx} cy={cy}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def kitti360_intrinsics(image_size: tuple[int, int]) -> np.ndarray:
    """KITTI-360 camera 00 intrinsics scaled to an (H, W) image (the default for images of unknown cameras)."""
    h, w = image_size
    fx, fy, cx, cy = CAM00_INTRINSICS
    sx, sy = w / CAM00_SIZE_HW[1], h / CAM00_SIZE_HW[0]
    return intrinsics_matrix(fx * sx, fy * sy, cx * sx, cy * sy)


def read_image(path: str | Path, flags: int = cv2.IMREAD_COLOR, what: str = "image") -> np.ndarray:
    """``cv2.imread(path, flags)``; ``FileNotFoundError`` ("{what} not found") / ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    arr = cv2.imread(str(path), flags)
    if arr is None:
        raise ValueError(f"{path} is not a readable image (corrupt or unsupported format)")
    return arr


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image from a file; ``FileNotFoundError``/``ValueError`` naming the file otherwise."""
    return cv2.cvtColor(read_image(path), cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image (PNG/JPEG by extension), atomically."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    return atomic_write_bytes(path, buf.tobytes())


@dataclass(frozen=True)
class FittedImage:
    """An image resized/cropped to the model input, with the intrinsics of the result."""

    rgb: np.ndarray
    """(H, W, 3) uint8."""
    intrinsics: np.ndarray
    """(3, 3) float64 pixel intrinsics of ``rgb``."""
    scale: float
    """Resize factor applied to the source image."""
    crop_xy: tuple[int, int]
    """Pixels cropped off the left and top after resizing."""


def fit_to_model(rgb: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]) -> FittedImage:
    """Scale so the image covers ``size`` = (H, W), then centre-crop; intrinsics follow (``cx -> cx * s - crop``).

    A source that already has the target size is returned unchanged.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics must be (3, 3), got {K.shape}")
    h, w = rgb.shape[:2]
    th, tw = size
    if min(h, w) == 0:
        raise ValueError(f"image is empty ({h}x{w})")
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    resized = rgb if (nh, nw) == (h, w) else cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR
                                                         if s >= 1 else cv2.INTER_AREA)
    x0, y0 = (nw - tw) // 2, (nh - th) // 2
    out = np.ascontiguousarray(resized[y0:y0 + th, x0:x0 + tw])
    Kf = K.copy()
    sx, sy = nw / w, nh / h
    Kf[0, 0], Kf[0, 1], Kf[0, 2] = K[0, 0] * sx, K[0, 1] * sx, K[0, 2] * sx - x0
    Kf[1, 1], Kf[1, 2] = K[1, 1] * sy, K[1, 2] * sy - y0
    return FittedImage(out, Kf, s, (x0, y0))


def to_tensor_image(rgb: np.ndarray):
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 torch tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def synthetic_street_image(size: tuple[int, int] = (192, 640), seed: int = 0) -> np.ndarray:
    """A procedural street-like RGB image (sky, buildings, road, sidewalk, trees), for demos without data."""
    h, w = size
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    horizon = int(h * 0.45)
    sky = np.linspace([120, 170, 230], [200, 220, 240], horizon).astype(np.uint8)
    img[:horizon] = sky[:, None, :]
    img[horizon:] = (95, 95, 100)
    cx = w // 2
    for y in range(horizon, h):
        t = (y - horizon) / max(1, h - horizon)
        half = int(w * (0.04 + 0.6 * t))
        img[y, max(0, cx - half - int(w * 0.15 * t)):max(0, cx - half)] = (170, 160, 150)
        img[y, min(w, cx + half):min(w, cx + half + int(w * 0.15 * t))] = (170, 160, 150)
    x = 0
    while x < w:
        bw = int(rng.integers(w // 14, w // 6))
        top = int(rng.integers(int(h * 0.05), horizon - 5))
        if abs(x + bw / 2 - cx) > w * 0.12:
            color = tuple(int(c) for c in rng.integers(90, 200, 3))
            img[top:horizon + 3, x:x + bw] = color
            for wy in range(top + 6, horizon - 4, 12):
                img[wy:wy + 5, x + 4:x + bw - 4:10] = (60, 70, 90)
        x += bw
    for tx in (int(w * 0.12), int(w * 0.88)):
        cv2.circle(img, (tx, horizon - 18), max(6, h // 9), (50, 110, 40), -1)
        img[horizon - 8:horizon + 12, tx - 2:tx + 2] = (80, 60, 40)
    cv2.rectangle(img, (cx + w // 10, horizon + 6), (cx + w // 10 + w // 12, horizon + 26), (150, 20, 20), -1)
    return img


def resize_whole_image(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a whole (H0, W0, 3) uint8 image to ``size`` = (H, W) with ``cv2.INTER_LINEAR``; no crop, aspect not kept.

    This is how the original KITTI-360 / SSCBench loaders feed the model (1408 x 376 -> 640 x 192). Such a resize
    leaves the *normalised* intrinsics unchanged, so pass ``geometry.normalize_intrinsics(K_full, (H0, W0))`` with
    ``normalized=True`` to ``SceneDINO.encode``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) == 0:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be (H, W) > 0, got {size}")
    if rgb.shape[:2] == (h, w):
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
