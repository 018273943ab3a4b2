"""SSCBench on-disk formats: write tiny datasets in the real formats, read them back, break them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scenedino_core.data import kitti360_calib as kc
from scenedino_core.sscbench import grid
from scenedino_core.sscbench import io as sio

SHAPE = (256, 256, 32)
N = 256 * 256 * 32
SEQ = "2013_05_28_drive_0009_sync"

PERSPECTIVE_TXT = """calib_time: 09-Jan-2013 15:40:53
S_00: 1.392000e+03 5.120000e+02
K_00: 7.880000e+02 0.000000e+00 6.870000e+02 0.000000e+00 7.860000e+02 3.170000e+02 0.000000e+00 0.000000e+00 1.000000e+00
R_rect_00: 0.999974 -0.007141 -0.000089 0.007141 0.999969 -0.003247 0.000112 0.003247 0.999995
P_rect_00: 5.525542e+02 0.000000e+00 6.820495e+02 0.000000e+00 0.000000e+00 5.525542e+02 2.387695e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_00: 1.408000e+03 3.760000e+02
P_rect_01: 5.525542e+02 0.000000e+00 6.820495e+02 -3.268890e+02 0.000000e+00 5.525542e+02 2.387695e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
"""


def _pack_msb_first(bits: np.ndarray) -> bytes:
    """Independent packer: byte i = sum_j bit[8i + j] << (7 - j)."""
    b = bits.reshape(-1, 8).astype(np.uint16)
    weights = np.array([128, 64, 32, 16, 8, 4, 2, 1], dtype=np.uint16)
    return (b * weights).sum(1).astype(np.uint8).tobytes()


def _cam_to_velo_line() -> str:
    return " ".join(repr(v) for v in grid.CAM_TO_VELO_3X4) + "\n"


# ---------------------------------------------------------------------------------------------- voxel GT
def test_voxel_gt_roundtrip_and_listing(tmp_path: Path):
    rng = np.random.default_rng(0)
    values = np.array(list(range(20)) + [255], dtype=np.float32)
    frames = {}
    for frame in (125, 5, 40):
        g = rng.choice(values, size=SHAPE)
        path = sio.voxel_gt_path(tmp_path, 9, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, g)  # S4C writes float32
        frames[frame] = g
    (tmp_path / SEQ / "000007.npy").write_bytes(b"x")  # not a *_1_1.npy: ignored
    (tmp_path / SEQ / "000008_1_2.npy").write_bytes(b"x")
    assert sio.voxel_gt_path(tmp_path, 9, 5) == tmp_path / SEQ / "000005_1_1.npy"
    assert sio.list_voxel_gt_frames(tmp_path, 9) == [5, 40, 125]
    assert sio.list_voxel_gt_frames(tmp_path, SEQ) == [5, 40, 125]
    for frame, g in frames.items():
        got = sio.read_voxel_gt(sio.voxel_gt_path(tmp_path, SEQ, frame))
        assert got.dtype == np.uint8 and got.shape == SHAPE
        np.testing.assert_array_equal(got, g.astype(np.uint8))
    np.save(tmp_path / "u8.npy", frames[5].astype(np.uint8))
    np.testing.assert_array_equal(sio.read_voxel_gt(tmp_path / "u8.npy"), frames[5].astype(np.uint8))


def test_voxel_gt_errors_name_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="000001_1_1.npy"):
        sio.read_voxel_gt(sio.voxel_gt_path(tmp_path, 9, 1))
    with pytest.raises(FileNotFoundError, match="drive_0003"):
        sio.list_voxel_gt_frames(tmp_path, 3)
    good = np.zeros(SHAPE, dtype=np.float32)
    path = tmp_path / "trunc_1_1.npy"
    np.save(path, good)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc_1_1.npy"):
        sio.read_voxel_gt(path)
    np.save(tmp_path / "shape_1_1.npy", np.zeros((256, 256, 16), np.float32))
    with pytest.raises(ValueError, match=r"shape_1_1\.npy.*\(256, 256, 16\)"):
        sio.read_voxel_gt(tmp_path / "shape_1_1.npy")
    for name, bad in (("big", 20.0), ("frac", 0.5), ("neg", -1.0), ("nan", np.nan)):
        g = good.copy()
        g[3, 4, 5] = bad
        np.save(tmp_path / f"{name}.npy", g)
        with pytest.raises(ValueError, match=f"{name}.npy"):
            sio.read_voxel_gt(tmp_path / f"{name}.npy")
    (tmp_path / "garbage.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="garbage.npy"):
        sio.read_voxel_gt(tmp_path / "garbage.npy")


# -------------------------------------------------------------------------------------- raw SSCBench voxels
def test_label_roundtrip_and_remap(tmp_path: Path):
    rng = np.random.default_rng(1)
    raw_ids = np.array([0, 10, 40, 48, 50, 70, 255], dtype=np.uint16)
    raw = rng.choice(raw_ids, size=SHAPE)
    path = sio.sscbench_voxel_path(tmp_path, 9, 250, "label")
    assert path == tmp_path / "data_2d_raw" / SEQ / "voxels" / "000250.label"
    path.parent.mkdir(parents=True)
    raw.astype("<u2").tofile(path)
    got = sio.read_label_raw(path)
    assert got.dtype == np.uint16 and got.shape == SHAPE
    np.testing.assert_array_equal(got, raw)
    lm = {0: 0, 10: 1, 40: 7, 48: 9, 50: 11, 70: 13, 255: 255}
    remapped = sio.remap_labels(got, lm)
    assert remapped.dtype == np.uint8
    np.testing.assert_array_equal(remapped, np.vectorize(lm.__getitem__)(raw))
    with pytest.raises(ValueError, match="70"):
        sio.remap_labels(got, {k: v for k, v in lm.items() if k != 70})
    assert np.all(sio.remap_labels(got, {k: v for k, v in lm.items() if k != 70}, unmapped=255)[raw == 70] == 255)


def test_label_truncated_or_missing(tmp_path: Path):
    path = tmp_path / "000001.label"
    np.zeros(N - 1, dtype="<u2").tofile(path)
    with pytest.raises(ValueError, match=r"000001\.label.*4194302 bytes"):
        sio.read_label_raw(path)
    with pytest.raises(FileNotFoundError, match="000002.label"):
        sio.read_label_raw(tmp_path / "000002.label")


def test_bitpacked_msb_first_and_roundtrip(tmp_path: Path):
    rng = np.random.default_rng(2)
    occ = rng.random(SHAPE) < 0.3
    inv = rng.random(SHAPE) < 0.1
    vox = tmp_path / "data_2d_raw" / SEQ / "voxels"
    vox.mkdir(parents=True)
    (vox / "000010.bin").write_bytes(_pack_msb_first(occ))
    (vox / "000010.invalid").write_bytes(_pack_msb_first(inv))
    np.testing.assert_array_equal(sio.read_occupancy(sio.sscbench_voxel_path(tmp_path, 9, 10, "bin")), occ)
    np.testing.assert_array_equal(sio.read_invalid(sio.sscbench_voxel_path(tmp_path, 9, 10, ".invalid")), inv)
    # MSB first, C order: first byte 0b1000_0001 -> voxels (0,0,0) and (0,0,7) set
    data = np.zeros(N // 8, dtype=np.uint8)
    data[0] = 0b1000_0001
    data[-1] = 0b0000_0010
    (tmp_path / "hand.bin").write_bytes(data.tobytes())
    got = sio.read_occupancy(tmp_path / "hand.bin")
    assert got.dtype == bool
    assert np.argwhere(got).tolist() == [[0, 0, 0], [0, 0, 7], [255, 255, 30]]
    # pack/unpack helpers
    np.testing.assert_array_equal(sio.unpack_bits(np.frombuffer(_pack_msb_first(occ), np.uint8)), occ.reshape(-1))
    assert sio.pack_bits(occ).tobytes() == _pack_msb_first(occ)
    np.testing.assert_array_equal(sio.unpack_bits(sio.pack_bits(inv)).reshape(SHAPE).astype(bool), inv)
    assert sio.pack_bits(np.array([1, 0, 0, 0, 0, 0, 1, 1])).tolist() == [0b1000_0011]


def test_bitpacked_errors(tmp_path: Path):
    (tmp_path / "short.invalid").write_bytes(b"\x00" * (N // 8 - 3))
    with pytest.raises(ValueError, match=r"short\.invalid.*262141 bytes"):
        sio.read_invalid(tmp_path / "short.invalid")
    # an unpacked (one byte per voxel) file is not mistaken for a packed one
    (tmp_path / "unpacked.bin").write_bytes(b"\x00" * N)
    with pytest.raises(ValueError, match="unpacked.bin"):
        sio.read_occupancy(tmp_path / "unpacked.bin")
    with pytest.raises(FileNotFoundError, match="none.bin"):
        sio.read_occupancy(tmp_path / "none.bin")
    with pytest.raises(ValueError, match="multiple of 8"):
        sio.pack_bits(np.ones(12, dtype=bool))
    with pytest.raises(ValueError, match="0 or 1"):
        sio.pack_bits(np.full(8, 2))
    with pytest.raises(ValueError, match="uint8"):
        sio.unpack_bits(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="extension"):
        sio.sscbench_voxel_path(tmp_path, 9, 1, "occluded")


def test_small_grid_dims(tmp_path: Path):
    dims = (4, 4, 8)
    occ = np.zeros(dims, dtype=bool)
    occ[1, 2, 3] = True
    (tmp_path / "s.bin").write_bytes(_pack_msb_first(occ))
    np.testing.assert_array_equal(sio.read_occupancy(tmp_path / "s.bin", dims=dims), occ)


# ------------------------------------------------------------------------------------------- calibration
def _write_calib(root: Path, perspective: str = PERSPECTIVE_TXT, cam_to_velo: str | None = None) -> None:
    (root / "calibration").mkdir(parents=True, exist_ok=True)
    (root / "calibration" / "perspective.txt").write_text(perspective)
    (root / "calibration" / "calib_cam_to_velo.txt").write_text(
        _cam_to_velo_line() if cam_to_velo is None else cam_to_velo
    )


def test_calibration_roundtrip(tmp_path: Path):
    _write_calib(tmp_path)
    entries = kc.parse_key_floats(tmp_path / "calibration" / "perspective.txt")
    assert "calib_time" not in entries and entries["R_rect_00"].shape == (9,)
    persp = kc.read_perspective(tmp_path / "calibration" / "perspective.txt")
    assert persp.image_size_wh == (1408, 376)
    assert persp.entries["P_rect_01"][3] == pytest.approx(-326.889)
    calib = sio.read_sscbench_calibration(tmp_path)
    np.testing.assert_allclose(calib.K, [[552.5542, 0, 682.0495], [0, 552.5542, 238.7695], [0, 0, 1]])
    assert calib.image_size_wh == grid.IMAGE_SIZE_WH
    np.testing.assert_array_equal(calib.cam_to_velo, grid.cam_to_velo_matrix())
    np.testing.assert_array_equal(calib.velo_to_cam, grid.velo_to_cam_matrix())
    # a key-prefixed cam->velo line is accepted too
    _write_calib(tmp_path, cam_to_velo="T: " + _cam_to_velo_line())
    np.testing.assert_array_equal(sio.read_sscbench_calibration(tmp_path).cam_to_velo, grid.cam_to_velo_matrix())


def test_calibration_fov_close_to_hardcoded(tmp_path: Path):
    _write_calib(tmp_path)
    calib = sio.read_sscbench_calibration(tmp_path)
    fov_file = grid.fov_mask(K=calib.K, image_size_wh=calib.image_size_wh, cam_from_velo=calib.velo_to_cam)
    fov_ref = grid.fov_mask()
    # the file's K is rounded to 7 digits: only voxels on the image border may flip
    assert np.count_nonzero(fov_file != fov_ref) < 1e-3 * fov_ref.sum()


def test_calibration_errors_name_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="perspective.txt"):
        sio.read_sscbench_calibration(tmp_path)
    _write_calib(tmp_path, perspective=PERSPECTIVE_TXT.replace("S_rect_00", "S_rect_XX"))
    with pytest.raises(ValueError, match=r"perspective\.txt.*S_rect_00"):
        sio.read_sscbench_calibration(tmp_path)
    _write_calib(tmp_path, perspective="P_rect_00: 1 2 3\nS_rect_00: 1408 376\n")
    with pytest.raises(ValueError, match=r"perspective\.txt.*P_rect_00.*12"):
        sio.read_sscbench_calibration(tmp_path)
    _write_calib(tmp_path, cam_to_velo=" ".join(["1.0"] * 11))
    with pytest.raises(ValueError, match=r"calib_cam_to_velo\.txt.*12 floats.*11"):
        sio.read_sscbench_calibration(tmp_path)
    _write_calib(tmp_path, cam_to_velo="oops 1 2")
    with pytest.raises(ValueError, match="calib_cam_to_velo.txt"):
        sio.read_sscbench_calibration(tmp_path)
    (tmp_path / "calibration" / "calib_cam_to_velo.txt").unlink()
    with pytest.raises(FileNotFoundError, match="calib_cam_to_velo.txt"):
        sio.read_sscbench_calibration(tmp_path)


def test_paths():
    assert sio.kitti360_sequence_dir(9) == SEQ
    assert sio.kitti360_sequence_dir("custom") == "custom"
    assert sio.sscbench_image_path("/d", 9, 42) == Path("/d/data_2d_raw") / SEQ / "image_00/data_rect/000042.png"
