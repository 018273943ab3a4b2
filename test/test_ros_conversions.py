"""scenedino_ros.conversions: hand-built Image / CompressedImage / CameraInfo messages -> numpy (no node)."""
import math

import cv2
import numpy as np
import pytest

sensor_msgs = pytest.importorskip('sensor_msgs.msg', reason='sensor_msgs is not installed (ROS 2 wheels or a distro)')

from scenedino_ros.conversions import (  # noqa: E402
    SUPPORTED_ENCODINGS,
    CameraInfoError,
    ImageDataError,
    UnsupportedEncodingError,
    camera_info_to_intrinsics,
    check_image,
    compressed_to_rgb,
    has_distortion,
    image_to_rgb,
)

H, W = 6, 8
PAD = 5  # bytes of row padding in every test image


def _rgb(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, pad: int = PAD, bigendian: bool = False) -> 'sensor_msgs.Image':
    """An Image whose rows are ``pixels`` (h, row_bytes) uint8 followed by ``pad`` garbage bytes."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return sensor_msgs.Image(height=h, width=W if pixels.ndim < 3 else pixels.shape[1], encoding=encoding,
                             is_bigendian=bigendian, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize('encoding, make', [
    ('rgb8', lambda a: a),
    ('bgr8', lambda a: a[..., ::-1]),
    ('rgba8', lambda a: np.dstack([a, np.full(a.shape[:2], 7, np.uint8)])),
    ('bgra8', lambda a: np.dstack([a[..., ::-1], np.full(a.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_with_row_padding(encoding, make):
    rgb = _rgb()
    out = image_to_rgb(_image(np.ascontiguousarray(make(rgb)), encoding))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_mono8_becomes_grey_rgb():
    grey = _rgb()[..., 0]
    out = image_to_rgb(_image(grey, 'mono8'))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('encoding, channels', [('mono16', 1), ('rgb16', 3), ('bgr16', 3)])
def test_16_bit_encodings_honour_byte_order(encoding, channels, bigendian):
    rgb = _rgb()
    src = rgb[..., :channels] if encoding != 'bgr16' else rgb[..., ::-1]
    words = src.astype(np.uint16) * 256 + 77  # the low byte must be discarded
    data = words.astype('>u2' if bigendian else '<u2').view(np.uint8).reshape(H, -1)
    msg = _image(data, encoding, bigendian=bigendian)
    msg.width = W
    out = image_to_rgb(msg)
    expected = np.repeat(rgb[..., :1], 3, axis=2) if channels == 1 else rgb
    np.testing.assert_array_equal(out, expected)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer mosaic of ``rgb`` for a 2x2 pattern such as 'rggb' (row-major top-left block)."""
    idx = {'r': 0, 'g': 1, 'b': 2}
    out = np.zeros(rgb.shape[:2], np.uint8)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, idx[ch]]
    return out


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_patterns_demosaic_to_the_right_colours(pattern):
    colour = np.array([200, 120, 40], np.uint8)  # distinct R, G, B: a swapped pattern would swap R and B
    rgb = np.broadcast_to(colour, (16, 16, 3)).copy()
    msg = _image(_mosaic(rgb, pattern), f'bayer_{pattern}8')
    msg.width = 16
    out = image_to_rgb(msg)
    np.testing.assert_allclose(out[4:-4, 4:-4].reshape(-1, 3), np.broadcast_to(colour, (64, 3)), atol=2)


@pytest.mark.parametrize('encoding, code', [
    ('yuv422', cv2.COLOR_RGB2YUV_UYVY), ('uyvy', cv2.COLOR_RGB2YUV_UYVY),
    ('yuv422_yuy2', cv2.COLOR_RGB2YUV_YUY2), ('yuyv', cv2.COLOR_RGB2YUV_YUY2),
])
def test_yuv422_encodings(encoding, code):
    colour = np.array([180, 90, 30], np.uint8)
    rgb = np.broadcast_to(colour, (H, W, 3)).copy()
    packed = cv2.cvtColor(rgb, code)  # (H, W, 2)
    out = image_to_rgb(_image(packed.reshape(H, -1), encoding))
    np.testing.assert_allclose(out.reshape(-1, 3).astype(int), np.broadcast_to(colour, (H * W, 3)), atol=3)


def test_result_does_not_alias_the_message():
    msg = _image(_rgb(), 'rgb8', pad=0)
    out = image_to_rgb(msg)
    out[:] = 0
    assert np.frombuffer(msg.data, np.uint8).any()


def test_unsupported_encoding_names_it_and_lists_the_supported_ones():
    msg = _image(_rgb(), 'rgb8')
    msg.encoding = '32FC1'
    with pytest.raises(UnsupportedEncodingError, match=r"'32FC1'.*rgb8, bgr8"):
        image_to_rgb(msg)
    assert {'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'bayer_rggb8', 'yuv422'} <= set(SUPPORTED_ENCODINGS)


def test_zero_size_image():
    with pytest.raises(ImageDataError, match='empty image: 0x0'):
        check_image(sensor_msgs.Image(encoding='rgb8'))


def test_data_shorter_than_height_times_step():
    msg = _image(_rgb(), 'rgb8')
    msg.data = msg.data[:-1]
    with pytest.raises(ImageDataError, match=rf'expected height\*step = {H}\*{W * 3 + PAD}'):
        image_to_rgb(msg)


def test_step_smaller_than_a_row():
    msg = _image(_rgb(), 'rgb8', pad=0)
    msg.step = W * 3 - 1
    with pytest.raises(ImageDataError, match='step 23 is smaller than one row'):
        check_image(msg)


def test_odd_width_yuv422_and_megapixel_limit():
    msg = sensor_msgs.Image(height=2, width=3, encoding='yuyv', step=6, data=bytes(12))
    with pytest.raises(ImageDataError, match='even width'):
        check_image(msg)
    big = _image(_rgb(), 'rgb8')
    with pytest.raises(ImageDataError, match='exceeds input.max_megapixels'):
        check_image(big, max_megapixels=1e-6)
    assert check_image(big, max_megapixels=1.0).row_bytes == W * 3


@pytest.mark.parametrize('ext, exact', [('.png', True), ('.jpg', False)])
def test_compressed_images_decode_to_rgb(ext, exact):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (250, 10, 10)
    rgb[:, 16:32] = (10, 250, 10)
    rgb[:, 32:] = (10, 10, 250)
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = sensor_msgs.CompressedImage(format=ext[1:], data=buf.tobytes())
    out = compressed_to_rgb(msg)
    assert out.shape == rgb.shape
    if exact:
        np.testing.assert_array_equal(out, rgb)
    else:
        assert np.abs(out[4:-4, 4:12].astype(int) - rgb[4:-4, 4:12]).max() < 20


def test_compressed_errors():
    with pytest.raises(ImageDataError, match='could not decode CompressedImage'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg', data=b'not a jpeg at all'))
    with pytest.raises(ImageDataError, match='no data'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='jpeg'))
    with pytest.raises(UnsupportedEncodingError, match='depth'):
        compressed_to_rgb(sensor_msgs.CompressedImage(format='16UC1; compressedDepth', data=b'x'))


def _info(w=640, h=480, k=(500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0), p=None):
    info = sensor_msgs.CameraInfo(width=w, height=h)
    info.k = list(k)
    info.p = list(p) if p is not None else [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_intrinsics_from_k_or_p():
    info = _info(p=[400.0, 0.0, 300.0, -20.0, 0.0, 410.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(camera_info_to_intrinsics(info, (480, 640)),
                                  [[500, 0, 320], [0, 510, 240], [0, 0, 1]])
    np.testing.assert_array_equal(camera_info_to_intrinsics(info, (480, 640), rectified=True),
                                  [[400, 0, 300], [0, 410, 230], [0, 0, 1]])


def test_all_zero_k_is_uncalibrated():
    with pytest.raises(CameraInfoError, match='all zeros: the camera is uncalibrated'):
        camera_info_to_intrinsics(_info(k=[0.0] * 9), (480, 640))


def test_nan_k():
    k = [500.0, 0.0, float('nan'), 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(CameraInfoError, match='NaN or infinite'):
        camera_info_to_intrinsics(_info(k=k), (480, 640))


def test_negative_focal_length():
    with pytest.raises(CameraInfoError, match='fx, fy > 0'):
        camera_info_to_intrinsics(_info(k=[-5.0, 0.0, 1.0, 0.0, 5.0, 1.0, 0.0, 0.0, 1.0]), (480, 640))


def test_size_mismatch_with_the_image():
    with pytest.raises(CameraInfoError, match='CameraInfo is for 640x480 images but the image is 320x240'):
        camera_info_to_intrinsics(_info(), (240, 320))
    # a CameraInfo without a size is not checked
    K = camera_info_to_intrinsics(_info(w=0, h=0), (240, 320))
    assert K[0, 0] == 500


def test_binning_and_roi():
    info = _info()
    info.binning_x = info.binning_y = 2
    K = camera_info_to_intrinsics(info, (240, 320))
    np.testing.assert_allclose(K, [[250, 0, 160], [0, 255, 120], [0, 0, 1]])
    roi = _info()
    roi.roi.x_offset, roi.roi.y_offset, roi.roi.width, roi.roi.height = 100, 50, 200, 100
    K = camera_info_to_intrinsics(roi, (100, 200))
    np.testing.assert_allclose(K[:2, 2], [220, 190])


def test_distortion_flag():
    info = _info()
    assert not has_distortion(info)
    info.d = [0.0, 0.0, 0.0, 0.0, 0.0]
    assert not has_distortion(info)
    info.d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    assert has_distortion(info)


# ----------------------------------------------------------------------------- implausible CameraInfo corpus

def _binned(bx, by=None):
    info = _info()
    info.binning_x, info.binning_y = bx, bx if by is None else by
    return info


@pytest.mark.parametrize('info, kwargs, match', [
    (_info(k=(500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0)), {},
     r'CameraInfo K is not a camera matrix: its last row must be \[0, 0, 1\] \(K\[2\]\[2\] = 1\), '
     r'got \[0.0, 0.0, 0.0\]'),
    (_info(k=(1000.0, 0.0, 640.0, 0.0, 1020.0, 480.0, 0.0, 0.0, 2.0)), {},
     r'last row must be \[0, 0, 1\].*got \[0.0, 0.0, 2.0\]'),
    (_info(p=[400.0, 0.0, 300.0, 0.0, 0.0, 410.0, 230.0, 0.0, 0.0, 0.0, 0.0, 0.0]), {'rectified': True},
     r'CameraInfo P is not a camera matrix'),
    (_binned(1000), {'image_size': None}, r'binning 1000x1000 does not divide its 640x480 image size'),
    (_binned(3, 1), {'image_size': (480, 213)}, r'binning 3x1 does not divide its 640x480 image size'),
    (_info(k=(1e-9, 0.0, 320.0, 0.0, 1e-9, 240.0, 0.0, 0.0, 1.0)), {},
     r'horizontal field of view of 180 deg \(640 px, focal length 1e-09 px\), outside 1..170 deg'),
    (_info(k=(1e12, 0.0, 320.0, 0.0, 1e12, 240.0, 0.0, 0.0, 1.0)), {},
     r'horizontal field of view of 3.67e-08 deg .*outside 1..170 deg'),
    (_info(k=(1e-9, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0)), {},
     r'fx=1e-09 and fy=510: a pixel aspect ratio fx/fy = 1.96e-12 is beyond 1/5..5'),
    (_info(k=(500.0, 0.0, 1e6, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0)), {},
     r'principal point at \(1e\+06, 240\), far outside the 640x480 image'),
    (_info(k=(500.0, 0.0, 320.0, 0.0, 510.0, -1000.0, 0.0, 0.0, 1.0)), {},
     r'principal point at \(320, -1000\), far outside the 640x480 image'),
], ids=['k22_zero', 'k22_two', 'p22_zero', 'binning_1000', 'binning_3', 'fx_fy_1e-9', 'fx_fy_1e12', 'fx_1e-9_only',
        'cx_1e6', 'cy_far_above'])
def test_implausible_camera_info_is_rejected(info, kwargs, match):
    kwargs = {'image_size': (480, 640), **kwargs}
    with pytest.raises(CameraInfoError, match=match):
        camera_info_to_intrinsics(info, kwargs.pop('image_size'), **kwargs)


def test_plausible_edge_cases_pass():
    # a 150 deg wide-angle rectified image, a principal point just outside the image (a cropped ROI), binning 2
    wide = 640 / (2 * math.tan(math.radians(75)))
    camera_info_to_intrinsics(_info(k=(wide, 0.0, 320.0, 0.0, wide, 240.0, 0.0, 0.0, 1.0)), (480, 640))
    camera_info_to_intrinsics(_info(k=(500.0, 0.0, -100.0, 0.0, 510.0, 500.0, 0.0, 0.0, 1.0)), (480, 640))
    K = camera_info_to_intrinsics(_binned(2), (240, 320))
    assert K[0, 0] == 250
    # no size anywhere (CameraInfo without width/height, compressed image before decoding): size checks skipped
    K = camera_info_to_intrinsics(_info(w=0, h=0, k=(1e-3, 0.0, 1e6, 0.0, 1e-3, 0.0, 0.0, 0.0, 1.0)), None)
    assert K[0, 2] == 1e6
