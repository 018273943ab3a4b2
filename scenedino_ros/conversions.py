"""Pure conversions from camera messages to numpy: sensor_msgs Image / CompressedImage -> RGB, CameraInfo -> K.

No node and no ``rclpy.init`` are needed: the functions read message attributes only (any object with the same
fields works). Each failure raises a specific exception whose message says what was received, so the node can log
it and skip the frame.

Encodings (names as in ``sensor_msgs/image_encodings.hpp``): ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``,
their 16-bit variants (scaled to 8 bit), ``bayer_{rggb,bggr,gbrg,grbg}{8,16}`` (demosaiced with OpenCV) and
``yuv422`` / ``uyvy`` (UYVY), ``yuv422_yuy2`` / ``yuyv`` (YUYV). Row padding (``step``) and ``is_bigendian`` (16-bit
data) are honoured. The PyPI ``cv_bridge`` is not used: it is broken with numpy 2.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message cannot be turned into an RGB array."""


class UnsupportedEncodingError(ImageConversionError):
    """The image encoding is not one this module converts."""


class ImageDataError(ImageConversionError):
    """The image's size fields and its data disagree, or the image is empty or undecodable."""


class CameraInfoError(ValueError):
    """A CameraInfo message cannot provide usable intrinsics for an image."""


#: Field of view (degrees, horizontal and vertical) a CameraInfo may describe; outside it no real pinhole camera
#: (or rectified image) exists, and the intrinsics are a unit or scale mistake (fx in mm, a missing binning, ...).
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0
#: Largest fx / fy ratio (either way) accepted: real pixels are close to square.
MAX_PIXEL_ASPECT = 5.0
#: How far the principal point may lie outside the image, in image widths / heights (cropped ROIs move it out).
MAX_PRINCIPAL_POINT_OUTSIDE = 1.0


def _bayer(code: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda raw: cv2.cvtColor(raw[..., 0], code)


def _yuv(code: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda raw: cv2.cvtColor(raw.reshape(raw.shape[0], -1, 2), code)


@dataclass(frozen=True)
class _Encoding:
    channels: int
    """Samples per pixel (bytes per pixel / bytes per sample), as stored in the message."""
    bits: int
    """8 or 16 bits per sample."""
    to_rgb: Callable[[np.ndarray], np.ndarray]
    """(H, W, channels) uint8 -> (H, W, 3) uint8 RGB."""


# OpenCV names Bayer patterns by their top-left 2x2 block in the *RGGB-style* aliases used here
# (COLOR_BayerRGGB2RGB: R at (0, 0), G at (0, 1), B at (1, 1)); tests check each against a synthetic mosaic.
ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, 8, lambda a: a),
    "bgr8": _Encoding(3, 8, lambda a: a[..., ::-1]),
    "rgba8": _Encoding(4, 8, lambda a: a[..., :3]),
    "bgra8": _Encoding(4, 8, lambda a: a[..., 2::-1]),
    "mono8": _Encoding(1, 8, lambda a: np.repeat(a, 3, axis=2)),
    "rgb16": _Encoding(3, 16, lambda a: a),
    "bgr16": _Encoding(3, 16, lambda a: a[..., ::-1]),
    "rgba16": _Encoding(4, 16, lambda a: a[..., :3]),
    "bgra16": _Encoding(4, 16, lambda a: a[..., 2::-1]),
    "mono16": _Encoding(1, 16, lambda a: np.repeat(a, 3, axis=2)),
    "bayer_rggb8": _Encoding(1, 8, _bayer(cv2.COLOR_BayerRGGB2RGB)),
    "bayer_bggr8": _Encoding(1, 8, _bayer(cv2.COLOR_BayerBGGR2RGB)),
    "bayer_gbrg8": _Encoding(1, 8, _bayer(cv2.COLOR_BayerGBRG2RGB)),
    "bayer_grbg8": _Encoding(1, 8, _bayer(cv2.COLOR_BayerGRBG2RGB)),
    "bayer_rggb16": _Encoding(1, 16, _bayer(cv2.COLOR_BayerRGGB2RGB)),
    "bayer_bggr16": _Encoding(1, 16, _bayer(cv2.COLOR_BayerBGGR2RGB)),
    "bayer_gbrg16": _Encoding(1, 16, _bayer(cv2.COLOR_BayerGBRG2RGB)),
    "bayer_grbg16": _Encoding(1, 16, _bayer(cv2.COLOR_BayerGRBG2RGB)),
    "yuv422": _Encoding(2, 8, _yuv(cv2.COLOR_YUV2RGB_UYVY)),
    "uyvy": _Encoding(2, 8, _yuv(cv2.COLOR_YUV2RGB_UYVY)),
    "yuv422_yuy2": _Encoding(2, 8, _yuv(cv2.COLOR_YUV2RGB_YUY2)),
    "yuyv": _Encoding(2, 8, _yuv(cv2.COLOR_YUV2RGB_YUY2)),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(ENCODINGS)


@dataclass(frozen=True)
class ImageLayout:
    """What ``check_image`` found out about an Image message without touching its pixels."""

    height: int
    width: int
    encoding: str
    row_bytes: int
    """Bytes of pixel data per row (``width * channels * bits / 8``), at most ``step``."""


def _encoding_of(msg: Any) -> _Encoding:
    enc = ENCODINGS.get(str(msg.encoding).lower())
    if enc is None:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    return enc


def check_image(msg: Any, max_megapixels: float | None = None) -> ImageLayout:
    """Validate an Image message's encoding and size fields against its data length, in O(1).

    Args:
        msg: a ``sensor_msgs/Image`` (or any object with ``height, width, encoding, step, data``).
        max_megapixels: reject larger images (None: no limit).

    Raises:
        UnsupportedEncodingError: unknown encoding.
        ImageDataError: empty image, ``step`` smaller than a row, data shorter than ``height * step``, odd width for
            YUV 4:2:2, or more than ``max_megapixels``.
    """
    enc = _encoding_of(msg)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageDataError(f"empty image: {w}x{h} ({msg.encoding})")
    if enc.channels == 2 and w % 2:
        raise ImageDataError(f"{msg.encoding} (YUV 4:2:2) needs an even width, got {w}")
    row_bytes = w * enc.channels * enc.bits // 8
    if step < row_bytes:
        raise ImageDataError(f"step {step} is smaller than one row of {w} {msg.encoding} pixels ({row_bytes} bytes)")
    if len(msg.data) < h * step:
        raise ImageDataError(f"image data has {len(msg.data)} bytes, expected height*step = {h}*{step} = {h * step} "
                             f"({w}x{h} {msg.encoding})")
    if max_megapixels is not None and h * w > max_megapixels * 1e6:
        raise ImageDataError(f"image {w}x{h} ({h * w / 1e6:.1f} MP) exceeds input.max_megapixels = {max_megapixels}")
    return ImageLayout(h, w, str(msg.encoding).lower(), row_bytes)


def image_to_rgb(msg: Any, max_megapixels: float | None = None) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an (H, W, 3) uint8 RGB array (a copy; the message is not referenced).

    16-bit data is read with the message's byte order and scaled to 8 bit (``>> 8``). Raises the errors of
    ``check_image``.
    """
    layout = check_image(msg, max_megapixels)
    enc = ENCODINGS[layout.encoding]
    h, w = layout.height, layout.width
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=h * int(msg.step)).reshape(h, int(msg.step))
    rows = buf[:, :layout.row_bytes]
    if enc.bits == 16:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        samples = np.ascontiguousarray(rows).view(dtype).reshape(h, w, enc.channels)
        pixels = (samples >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(h, w, enc.channels)
    return np.array(enc.to_rgb(pixels), dtype=np.uint8, order="C", copy=True)


def compressed_to_rgb(msg: Any, max_megapixels: float | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to an (H, W, 3) uint8 RGB array.

    Raises:
        UnsupportedEncodingError: ``compressedDepth`` images (depth, not colour).
        ImageDataError: empty or undecodable data, or more than ``max_megapixels``.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise UnsupportedEncodingError(f"CompressedImage format {fmt!r} is a depth image; a colour image is needed")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageDataError(f"CompressedImage (format {fmt!r}) has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageDataError(f"could not decode CompressedImage (format {fmt!r}, {data.size} bytes)")
    h, w = bgr.shape[:2]
    if max_megapixels is not None and h * w > max_megapixels * 1e6:
        raise ImageDataError(f"image {w}x{h} ({h * w / 1e6:.1f} MP) exceeds input.max_megapixels = {max_megapixels}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def camera_info_to_intrinsics(info: Any, image_size: tuple[int, int] | None = None, *,
                              rectified: bool = False) -> np.ndarray:
    """(3, 3) float64 pixel intrinsics of the image a ``sensor_msgs/CameraInfo`` describes.

    Args:
        info: the CameraInfo (fields ``k``, ``p``, ``width``, ``height``, ``binning_x/y``, ``roi``).
        image_size: (H, W) of the image it is paired with; checked against the CameraInfo's size (after binning and
            ROI) when the CameraInfo states one (width and height > 0).
        rectified: the images are rectified, so the intrinsics are the left 3x3 of P; otherwise K.

    Raises:
        CameraInfoError: K (or P) all zero ("uncalibrated"), non-finite, wrong length, or not a camera matrix (last
            row not [0, 0, 1], fx/fy <= 0 or far from square pixels); binning that does not divide the calibrated
            size; a size that does not match the image; a field of view outside ``MIN_FOV_DEG``..``MAX_FOV_DEG``;
            a principal point more than ``MAX_PRINCIPAL_POINT_OUTSIDE`` image sizes outside the image. Each
            message names the values.
    """
    name = "P" if rectified else "K"
    raw = np.asarray(info.p if rectified else info.k, dtype=np.float64)
    if raw.size != (12 if rectified else 9):
        raise CameraInfoError(f"CameraInfo.{name.lower()} has {raw.size} values, expected {12 if rectified else 9}")
    K = raw.reshape(3, 4)[:, :3].copy() if rectified else raw.reshape(3, 3).copy()
    if not np.all(np.isfinite(K)):
        raise CameraInfoError(f"CameraInfo {name} contains NaN or infinite values: {K.ravel().tolist()}")
    if not np.any(K):
        raise CameraInfoError(f"CameraInfo {name} is all zeros: the camera is uncalibrated")
    if K[2].tolist() != [0.0, 0.0, 1.0]:
        raise CameraInfoError(f"CameraInfo {name} is not a camera matrix: its last row must be [0, 0, 1] "
                              f"({name}[2][2] = 1), got {K[2].tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraInfoError(f"CameraInfo {name} needs fx, fy > 0, got fx={K[0, 0]} fy={K[1, 1]}")
    if not 1 / MAX_PIXEL_ASPECT <= K[0, 0] / K[1, 1] <= MAX_PIXEL_ASPECT:
        raise CameraInfoError(f"CameraInfo {name} has fx={K[0, 0]:g} and fy={K[1, 1]:g}: a pixel aspect ratio "
                              f"fx/fy = {K[0, 0] / K[1, 1]:.3g} is beyond 1/{MAX_PIXEL_ASPECT:g}..{MAX_PIXEL_ASPECT:g}")
    bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    roi = info.roi
    roi_w, roi_h = int(roi.width), int(roi.height)
    full = roi_w > 0 and roi_h > 0 and (roi_w, roi_h) != (int(info.width), int(info.height))
    if full:  # the image is a region of interest of the calibrated sensor
        K[0, 2] -= int(roi.x_offset)
        K[1, 2] -= int(roi.y_offset)
        expect_w, expect_h = roi_w, roi_h
    else:
        expect_w, expect_h = int(info.width), int(info.height)
    if bx > 1 or by > 1:
        if expect_w > 0 and expect_h > 0 and (expect_w % bx or expect_h % by):
            raise CameraInfoError(f"CameraInfo binning {bx}x{by} does not divide its {expect_w}x{expect_h} "
                                  f"{'region of interest' if full else 'image size'}")
        K[0, :] /= bx
        K[1, :] /= by
        expect_w, expect_h = expect_w // bx, expect_h // by
    if image_size is not None and expect_w > 0 and expect_h > 0:
        h, w = image_size
        if (expect_h, expect_w) != (h, w):
            raise CameraInfoError(f"CameraInfo is for {expect_w}x{expect_h} images but the image is {w}x{h}")
    h, w = image_size if image_size is not None else (expect_h, expect_w)
    if w > 0 and h > 0:
        _check_plausible(K, w, h, name)
    return K


def _check_plausible(K: np.ndarray, w: int, h: int, name: str) -> None:
    """Field of view and principal point of pixel intrinsics ``K`` for a ``w`` x ``h`` image."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    for axis, size, f in (("horizontal", w, fx), ("vertical", h, fy)):
        fov = math.degrees(2 * math.atan(size / (2 * f)))
        if not MIN_FOV_DEG <= fov <= MAX_FOV_DEG:
            raise CameraInfoError(f"CameraInfo {name} gives a {axis} field of view of {fov:.3g} deg ({size} px, "
                                  f"focal length {f:g} px), outside {MIN_FOV_DEG:g}..{MAX_FOV_DEG:g} deg: focal "
                                  "length in the wrong unit, or a wrong binning?")
    m = MAX_PRINCIPAL_POINT_OUTSIDE
    if not (-m * w <= cx <= (1 + m) * w and -m * h <= cy <= (1 + m) * h):
        raise CameraInfoError(f"CameraInfo {name} puts the principal point at ({cx:g}, {cy:g}), far outside the "
                              f"{w}x{h} image")


def has_distortion(info: Any) -> bool:
    """True when the CameraInfo's distortion coefficients are not all zero (or NaN)."""
    d = np.asarray(info.d, dtype=np.float64)
    return bool(d.size) and not all(v == 0.0 or math.isnan(v) for v in d.tolist())
