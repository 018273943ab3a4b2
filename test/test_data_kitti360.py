"""KITTI-360 multi-view loader on small trees written in the real formats (synthetic world + hand-made edge cases)."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scenedino_core import geometry, images
from scenedino_core.cli import preprocess_kitti360
from scenedino_core.data import fisheye
from scenedino_core.data import kitti360 as k360
from scenedino_core.data.kitti360_calib import CAM00_INTRINSICS
from scenedino_core.data.kitti360_labels import label_ids_to_trainids
from scenedino_core.data.synthetic import (
    K_NORM,
    KITTI360_MEI,
    STEREO_BASELINE_M,
    StreetConfig,
    StreetWorld,
    mei_yaml,
    write_kitti360,
)

SEQ = "2013_05_28_drive_0000_sync"
SIZE = (48, 160)
FULL = (94, 352)
FRAMES = range(0, 14)
UNPOSED = (5, 6)
CFG = k360.Kitti360Config(image_size=SIZE, fisheye_offsets=(4,))


@pytest.fixture(scope="module")
def world() -> StreetWorld:
    return StreetWorld.generate(3, StreetConfig(num_frames=20))


@pytest.fixture(scope="module")
def tree(tmp_path_factory, world) -> Path:
    """Frames 0..13 with perspective originals, cached virtual fisheye views, semantics; frames 5, 6 unposed."""
    root = tmp_path_factory.mktemp("kitti360")
    write_kitti360(world, root, SEQ, FRAMES, full_size=FULL, image_size=SIZE)
    poses = k360.poses_path(root / "data_poses", SEQ)
    lines = [ln for ln in poses.read_text().splitlines() if int(ln.split()[0]) not in UNPOSED]
    poses.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tree_copy(tree, tmp_path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "copy"))


def c2w(world: StreetWorld, frame: int, cam: str) -> np.ndarray:
    return world.camera_to_world(frame, cam)


# ---------------------------------------------------------------------------------------------- items
def test_item_shapes_intrinsics_and_relative_poses(tree, world):
    ds = k360.Kitti360MultiView(tree, sequences=[SEQ], config=CFG)
    assert [it.entry.frame for it in ds.items] == [f for f in FRAMES if f not in UNPOSED]
    s = ds[0]
    assert s.images.shape == (8, 3, *SIZE) and s.images.dtype == torch.float32
    assert 0.0 <= float(s.images.min()) and float(s.images.max()) <= 1.0
    assert s.K.shape == (8, 3, 3) and s.poses.shape == (8, 4, 4) and s.labels is None
    assert s.cameras == ("image_00",) * 2 + ("image_01",) * 2 + ("image_02",) * 2 + ("image_03",) * 2
    assert s.frame_ids == (0, 1, 0, 1, 4, 7, 4, 7)  # t+o, t+o+1 count posed frames: 5 and 6 have no pose
    # normalised K: from P_rect_00 / S_rect_00, shared by every view (the virtual fisheye pinholes included)
    P = k360.read_perspective(tree / "calibration" / "perspective.txt")
    K_file = geometry.normalize_intrinsics(torch.as_tensor(P.K), (FULL[0], FULL[1]))
    torch.testing.assert_close(s.K, K_file.float().expand(8, 3, 3))
    np.testing.assert_allclose(K_file.numpy(), K_NORM, atol=1e-9)
    np.testing.assert_allclose(K_NORM[0, 0], 2 * CAM00_INTRINSICS[0] / 1408, rtol=1e-12)
    # poses: camera -> world relative to view 0 (identity), equal to the world's own camera poses
    torch.testing.assert_close(s.poses[0], torch.eye(4), atol=1e-6, rtol=0)
    ref0 = np.linalg.inv(c2w(world, 0, "image_00"))
    for v, (cam, f) in enumerate(zip(s.cameras, s.frame_ids)):
        np.testing.assert_allclose(s.poses[v].numpy(), ref0 @ c2w(world, f, cam), atol=2e-5)
    # stereo baseline recovered from calib_cam_to_pose.txt: cam 01 sits 0.6 m along cam 00's x axis
    np.testing.assert_allclose(s.poses[2, :3, 3].numpy(), [STEREO_BASELINE_M, 0, 0], atol=1e-6)
    np.testing.assert_allclose(s.poses[2, :3, :3].numpy(), np.eye(3), atol=1e-6)
    # the virtual fisheye pinholes look 15 deg below the horizontal: optical axis vs the world's up vector
    axis_world = c2w(world, 4, "image_02")[:3, 2]
    assert np.degrees(np.arcsin(-axis_world[2])) == pytest.approx(15.0, abs=1e-9)


def test_images_come_from_the_files(tree, world):
    s = k360.Kitti360MultiView(tree, sequences=[SEQ], config=CFG)[2]
    assert s.frame_ids[:2] == (2, 3)
    for v, (cam, f) in enumerate(zip(s.cameras, s.frame_ids)):
        got = (s.images[v].permute(1, 2, 0) * 255).round().byte().numpy()
        if cam in k360.PERSPECTIVE_CAMERAS:  # original resized whole, like the reference
            want = images.resize_whole_image(world.render_camera(f, cam, FULL).rgb, SIZE)
        else:  # cached virtual pinhole, exactly the world's render
            want = world.render_camera(f, cam, SIZE).rgb
        np.testing.assert_array_equal(got, want)


def test_unposed_frames_are_skipped_and_offsets_clamped(tree, caplog):
    entries = [k360.SplitEntry(SEQ, f, "l") for f in (4, 5, 13)]
    with caplog.at_level(logging.WARNING):
        ds = k360.Kitti360MultiView(tree, split=entries, config=CFG)
    assert "1 split entries skipped" in caplog.text
    assert [it.entry.frame for it in ds.items] == [4, 13]
    assert ds[0].frame_ids[:2] == (4, 7)  # t+1 = next posed frame
    assert ds[1].frame_ids == (13,) * 8  # clamped to the last posed frame


def test_split_file_right_side_swaps_cameras(tree, tmp_path):
    split = k360.write_split(tmp_path / "train_files.txt", [k360.SplitEntry(SEQ, 2, "r"), k360.SplitEntry(SEQ, 3, "l")])
    assert split.read_text().splitlines()[0] == f"{SEQ} 0000000002 r"
    ds = k360.Kitti360MultiView(tree, split=split, config=CFG)
    s = ds[0]
    assert s.cameras == ("image_01",) * 2 + ("image_00",) * 2 + ("image_03",) * 2 + ("image_02",) * 2
    np.testing.assert_allclose(s.poses[2, :3, 3].numpy(), [-STEREO_BASELINE_M, 0, 0], atol=1e-6)


def test_semantics_are_loaded_and_filtered(tree_copy, world):
    cfg = k360.Kitti360Config(image_size=SIZE, fisheye_offsets=(4,), semantics=True)
    k360.semantic_path(tree_copy, SEQ, 9).unlink()  # frames 8 (t+1 = 9) and 9 lose their items
    ds = k360.Kitti360MultiView(tree_copy, sequences=[SEQ], config=cfg)
    assert 8 not in [it.entry.frame for it in ds.items] and 9 not in [it.entry.frame for it in ds.items]
    s = ds[0]
    assert s.labels.shape == (8, *SIZE) and s.labels.dtype == torch.uint8
    full = world.render_camera(0, "image_00", FULL).labels
    want = cv2.resize(full, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(s.labels[0].numpy(), want)  # label ids -> trainIds round trip
    assert bool((s.labels[2:] == 255).all())  # views without 2D labels
    assert set(np.unique(want).tolist()) >= {0, 2, 10}  # road, building, sky


def test_orb_slam_poses_folder_gives_the_same_relative_poses(tree, tmp_path):
    """ORB-SLAM3 files have the same format in another world frame (first posed frame = identity)."""
    track = k360.read_poses(k360.poses_path(tree / "data_poses", SEQ))
    to_orb = np.linalg.inv(track.poses[0])
    lines = [f"{f} " + " ".join(repr(float(v)) for v in (to_orb @ P)[:3].ravel())
             for f, P in zip(track.frames, track.poses)]
    orb = k360.poses_path(tmp_path / "orb_slam_poses", SEQ)
    orb.parent.mkdir(parents=True)
    orb.write_text("\n".join(lines[::-1]) + "\n")  # row order does not matter
    a = k360.Kitti360MultiView(tree, sequences=[SEQ], config=CFG)[3]
    cfg = k360.Kitti360Config(image_size=SIZE, fisheye_offsets=(4,), poses_root=tmp_path / "orb_slam_poses")
    b = k360.Kitti360MultiView(tree, sequences=[SEQ], config=cfg)[3]
    assert a.frame_ids == b.frame_ids
    torch.testing.assert_close(a.poses, b.poses, atol=1e-5, rtol=0)


def test_fisheye_offsets_are_deterministic_per_seed_epoch_index(tree):
    cfg = k360.Kitti360Config(image_size=SIZE, fisheye_offsets=tuple(range(1, 8)), seed=7)
    a = k360.Kitti360MultiView(tree, sequences=[SEQ], config=cfg)
    b = k360.Kitti360MultiView(tree, sequences=[SEQ], config=cfg)
    offs = [a.fisheye_offset(i) for i in range(len(a))]
    assert offs == [b.fisheye_offset(i) for i in range(len(b))]
    assert len(set(offs)) > 1
    a.set_epoch(1)
    assert [a.fisheye_offset(i) for i in range(len(a))] != offs


def test_perspective_only(tree):
    ds = k360.Kitti360MultiView(tree, sequences=[SEQ], config=k360.Kitti360Config(image_size=SIZE, fisheye=False))
    a, b = ds[0], ds[1]
    assert a.images.shape == (4, 3, *SIZE) and a.poses.shape == (4, 4, 4) and a.labels is None
    assert (a.frame_ids, b.frame_ids) == ((0, 1, 0, 1), (1, 2, 1, 2))


# -------------------------------------------------------------------------------------------- fisheye
def _calib(size: int = 360) -> fisheye.MEICalibration:
    return KITTI360_MEI.scaled(size, size)


def test_mei_yaml_roundtrip_and_projection_inverse(tmp_path):
    calib = _calib()
    text = mei_yaml(calib, "image_02")
    assert text.splitlines()[0] == "%YAML:1.0"
    path = tmp_path / "image_02.yaml"
    path.write_text(text)
    assert fisheye.read_mei_yaml(path) == calib
    path.write_text(text.split("\n", 1)[1])  # also without the OpenCV directive
    assert fisheye.read_mei_yaml(path) == calib
    u, v = np.meshgrid(np.arange(0, calib.width, 3.0), np.arange(0, calib.height, 3.0))
    uv = np.stack([u, v], -1).reshape(-1, 2)
    rays, valid = calib.unproject(uv)
    back, ok = calib.project(rays)
    assert valid.mean() > 0.7 and np.all(ok[valid])
    np.testing.assert_allclose(back[valid], uv[valid], atol=1e-8)


def _checker(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return ((np.floor(x * 4) + np.floor(y * 2)) % 2).astype(np.uint8) * 255


def test_fisheye_resampling_roundtrips_a_checkerboard():
    """Fisheye painted through the inverse MEI model -> loader resampling -> the virtual pinhole's checkerboard."""
    calib, pitch, size = _calib(700), k360.FISHEYE_PITCH_DEG, (60, 200)
    R = fisheye.rotation_x(pitch)[:3, :3]  # virtual -> fisheye
    u, v = np.meshgrid(np.arange(calib.width, dtype=float), np.arange(calib.height, dtype=float))
    rays, valid = calib.unproject(np.stack([u, v], -1).reshape(-1, 2))
    r_virtual = rays @ R  # fisheye -> virtual frame (R^T applied to row vectors)
    front = valid & (r_virtual[:, 2] > 1e-3)
    z = np.where(front, r_virtual[:, 2], 1.0)
    xn = K_NORM[0, 0] * r_virtual[:, 0] / z + K_NORM[0, 2]
    yn = K_NORM[1, 1] * r_virtual[:, 1] / z + K_NORM[1, 2]
    painted = np.where(front, _checker(xn, yn), 128).reshape(calib.height, calib.width)
    painted = np.repeat(painted[..., None], 3, axis=2)
    maps = fisheye.fisheye_to_pinhole_maps(calib, K_NORM, size, fisheye.rotation_x(pitch))
    out = fisheye.resample_fisheye(painted, maps)[..., 0]
    centers = geometry.pixel_centers(*size).numpy()
    want = _checker(centers[..., 0], centers[..., 1])
    assert (np.abs(out.astype(int) - want) < 64).mean() > 0.99
    wrong = fisheye.resample_fisheye(painted, fisheye.fisheye_to_pinhole_maps(calib, K_NORM, size,
                                                                            fisheye.rotation_x(-14)))
    assert (np.abs(wrong[..., 0].astype(int) - want) < 64).mean() < 0.9  # 1 degree off is visible


def test_raw_fisheye_is_resampled_like_the_render_and_cached_by_the_cli(world, tmp_path):
    root = write_kitti360(world, tmp_path / "k", SEQ, [2], full_size=FULL, image_size=SIZE, fisheye_size=(240, 240),
                          semantics=False)
    for cam in k360.FISHEYE_CAMERAS:  # drop the synthetic cache: only the MEI originals remain
        shutil.rmtree(k360.cached_image_path(root, SEQ, cam, 2, SIZE).parent)
    cfg = k360.Kitti360Config(image_size=SIZE, fisheye_offsets=(0,))
    ds = k360.Kitti360MultiView(root, sequences=[SEQ], config=cfg)
    on_the_fly = {cam: ds.load_image(SEQ, cam, 2) for cam in k360.CAMERAS}
    for cam in k360.FISHEYE_CAMERAS:
        diff = np.abs(on_the_fly[cam].astype(float) - world.render_camera(2, cam, SIZE).rgb)
        assert np.median(diff) <= 3 and diff.mean() < 12, (cam, diff.mean())
    assert preprocess_kitti360.main([str(root), "--size", f"{SIZE[0]}x{SIZE[1]}"]) == 0
    for cam in k360.CAMERAS:
        path = k360.cached_image_path(root, SEQ, cam, 2, SIZE)
        assert path.parent.name == ("data_48x160" if cam in k360.PERSPECTIVE_CAMERAS else "data_48x160_0x-15")
        np.testing.assert_array_equal(images.read_rgb(path), on_the_fly[cam])
        k360.raw_image_path(root, SEQ, cam, 2).unlink()  # the loader now needs the cache
    np.testing.assert_array_equal(ds.load_image(SEQ, "image_03", 2), on_the_fly["image_03"])


# ---------------------------------------------------------------------------------------------- errors
def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BROKEN = {
    "no cam_to_pose": (lambda r: (r / "calibration" / "calib_cam_to_pose.txt").unlink(), FileNotFoundError,
                       "calib_cam_to_pose.txt"),
    "cam_to_pose entry": (lambda r: _edit(r / "calibration" / "calib_cam_to_pose.txt", "image_03:", "image_3:"),
                          ValueError, "calib_cam_to_pose.txt: missing entry 'image_03'"),
    "no P_rect_01": (lambda r: _edit(r / "calibration" / "perspective.txt", "P_rect_01", "P_rect_11"), ValueError,
                     "perspective.txt: entry 'P_rect_01'"),
    "no perspective": (lambda r: (r / "calibration" / "perspective.txt").unlink(), FileNotFoundError,
                       "perspective.txt"),
    "yaml key": (lambda r: _edit(r / "calibration" / "image_02.yaml", "   xi:", "   chi:"), ValueError,
                 "image_02.yaml: missing entry 'mirror_parameters.xi'"),
    "yaml syntax": (lambda r: _edit(r / "calibration" / "image_02.yaml", "---", "- : : ]["), ValueError,
                    "image_02.yaml"),
    "no yaml": (lambda r: (r / "calibration" / "image_03.yaml").unlink(), FileNotFoundError, "image_03.yaml"),
    "poses line": (lambda r: _edit(k360.poses_path(r / "data_poses", SEQ), "\n2 ", "\n2 x "), ValueError,
                   "poses.txt:3"),
    "poses count": (lambda r: _edit(k360.poses_path(r / "data_poses", SEQ), "\n2 ", "\n2 1.0 "), ValueError,
                    "poses.txt:3: expected a frame id and 12 floats"),
    "no poses": (lambda r: k360.poses_path(r / "data_poses", SEQ).unlink(), FileNotFoundError, "poses.txt"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_raise_errors_naming_the_file(tree_copy, case):
    breaker, exc, message = BROKEN[case]
    breaker(tree_copy)
    with pytest.raises(exc, match=re.escape(message)):
        k360.Kitti360MultiView(tree_copy, sequences=[SEQ], config=CFG)


def test_bad_split_line_names_the_file(tree, tmp_path):
    split = tmp_path / "split.txt"
    split.write_text(f"{SEQ} 0000000002 l\n{SEQ} 0000000003 middle\n")
    with pytest.raises(ValueError, match=r"split\.txt:2"):
        k360.Kitti360MultiView(tree, split=split, config=CFG)


def test_broken_images_raise_errors_naming_the_file(tree_copy):
    ds = k360.Kitti360MultiView(tree_copy, sequences=[SEQ], config=CFG)
    frames = [it.entry.frame for it in ds.items]
    missing = k360.raw_image_path(tree_copy, SEQ, "image_01", 1)
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ds[frames.index(0)]
    corrupt = k360.raw_image_path(tree_copy, SEQ, "image_00", 3)
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        ds[frames.index(2)]
    wrong = k360.raw_image_path(tree_copy, SEQ, "image_00", 12)
    images.write_rgb(wrong, np.zeros((FULL[0], FULL[1] + 2, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape(f"{wrong}: image is {FULL[1] + 2}x{FULL[0]}")):
        ds[frames.index(12)]
    stale = k360.cached_image_path(tree_copy, SEQ, "image_02", 10, SIZE)  # fisheye view of frame 4 (+4 posed)
    images.write_rgb(stale, np.zeros((SIZE[0] * 2, SIZE[1] * 2, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape(str(stale))):
        ds[frames.index(4)]
    assert label_ids_to_trainids(np.array([7, 26, 0])).tolist() == [0, 13, 255]
