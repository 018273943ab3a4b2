"""Synthetic street world: exact depth, labels, voxel GT, written trees, determinism."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from scenedino_core import labels
from scenedino_core.data import kitti360 as k360
from scenedino_core.data.kitti360_labels import label_ids_to_trainids
from scenedino_core.data.synthetic import (
    CAR,
    FULL_SIZE,
    ROAD,
    SKY,
    TRAINID_TO_SSCBENCH_GT,
    Shape,
    StreetConfig,
    StreetWorld,
    camera_rays,
    write_kitti360,
    write_sscbench,
)
from scenedino_core.sscbench import grid as sgrid
from scenedino_core.sscbench import io as sio
from scenedino_core.sscbench import metrics as M
from scenedino_core.sscbench.dataset import SSCBenchKitti360

SIZE = (48, 160)
EPS = 1e-7
FRAME = 12


@pytest.fixture(scope="module")
def world() -> StreetWorld:
    return StreetWorld.generate(1, StreetConfig(num_frames=40))


@pytest.fixture(scope="module")
def gt(world) -> np.ndarray:
    return world.voxel_gt(FRAME)


def voxel_index(world: StreetWorld, frame: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points -> (N, 3) voxel indices of the frame's SSCBench grid and an in-grid mask."""
    velo = points - world.velo_to_world(frame)[:3, 3]
    idx = np.floor((velo - np.asarray(sgrid.GRID_ORIGIN_VELO)) / sgrid.VOXEL_SIZE).astype(np.int64)
    return idx, np.all((idx >= 0) & (idx < np.asarray(sgrid.GRID_DIMS)), axis=1)


# ----------------------------------------------------------------------------------------------- render
def test_road_pixels_have_the_analytic_distance(world):
    view = world.render_camera(FRAME, "image_00", SIZE)
    c2w = world.camera_to_world(FRAME, "image_00")
    d_cam = camera_rays(*SIZE, tuple(world.rig.K_norm.ravel()))
    d_world = d_cam @ c2w[:3, :3].T
    road = (view.labels.reshape(-1) == ROAD)
    assert road.mean() > 0.1
    t = -c2w[2, 3] / d_world[road, 2]  # ray meets the plane z = 0 at this distance
    np.testing.assert_allclose(view.distance.reshape(-1)[road], t, rtol=1e-6)
    np.testing.assert_allclose(view.depth.reshape(-1)[road], t * d_cam[road, 2], rtol=1e-6)
    assert c2w[2, 3] == pytest.approx(1.553, abs=1e-3)  # Velodyne 1.73 m up, cam 00 0.177 m below it
    sky = view.labels == SKY
    assert sky.any() and np.all(np.isinf(view.distance[sky])) and np.all(np.isfinite(view.distance[~sky]))


def test_hits_lie_on_the_boundary_of_the_labelled_primitive(world):
    c2w = world.camera_to_world(FRAME, "image_02")
    d = camera_rays(*SIZE, tuple(world.rig.K_norm.ravel())) @ c2w[:3, :3].T
    hits = world.cast(c2w[:3, 3], d.reshape(*SIZE, 3))
    P = world.primitives
    on = hits.primitive >= 0
    assert on.mean() > 0.3
    m, p = hits.primitive[on], hits.point[on]
    inside_grown = P.contains(p, margin=-1e-6)[np.arange(m.size), m]
    inside_shrunk = P.contains(p, margin=1e-6)[np.arange(m.size), m]
    assert inside_grown.all() and not inside_shrunk.any()
    np.testing.assert_array_equal(hits.train_id[on], P.train_id[m])
    assert not P.contains(p, margin=1e-6).any()  # nothing is in front of the hit inside another solid
    ground = hits.primitive == -1
    np.testing.assert_allclose(hits.point[ground, 2], 0.0, atol=1e-9)
    np.testing.assert_array_equal(hits.train_id[ground], world.ground_train_id(*hits.point[ground, :2].T))


def test_colours_are_view_independent_and_plausible(world):
    """A surface point seen by cam 00 and cam 01 gets the same colour (texture + Lambert depend on the point only)."""
    a = world.render_camera(FRAME, "image_00", SIZE)
    c00, c01 = world.camera_to_world(FRAME, "image_00"), world.camera_to_world(FRAME, "image_01")
    d = camera_rays(*SIZE, tuple(world.rig.K_norm.ravel())) @ c00[:3, :3].T
    h00 = world.cast(c00[:3, 3], d.reshape(*SIZE, 3))
    np.testing.assert_array_equal(world.shade(h00, d).reshape(*SIZE, 3), a.rgb)
    finite = np.isfinite(h00.distance)
    pts = h00.point[finite]
    to = pts - c01[:3, 3]
    dist = np.linalg.norm(to, axis=1)
    hits = world.cast(c01[:3, 3], to / dist[:, None])
    same = np.abs(hits.distance - dist) < 1e-6  # not occluded from cam 01
    assert same.mean() > 0.9
    rgb01 = world.shade(hits, to / dist[:, None])
    agree = np.all(rgb01[same] == a.rgb.reshape(-1, 3)[finite][same], axis=1)
    assert agree.mean() > 0.99
    rgb = a.rgb.reshape(-1, 3).astype(int)
    road = a.labels.reshape(-1) == ROAD
    assert np.median(rgb[road].max(1) - rgb[road].min(1)) < 25  # grey asphalt
    veg = a.labels.reshape(-1) == 8
    if veg.any():
        assert np.median(rgb[veg, 1] - rgb[veg, 0]) > 0  # green foliage


def test_rendering_is_deterministic_by_seed():
    cfg = StreetConfig(num_frames=10)
    a, b, c = StreetWorld.generate(5, cfg), StreetWorld.generate(5, cfg), StreetWorld.generate(6, cfg)
    np.testing.assert_array_equal(a.primitives.lo, b.primitives.lo)
    va, vb, vc = (w.render_camera(3, "image_00", SIZE) for w in (a, b, c))
    np.testing.assert_array_equal(va.rgb, vb.rgb)
    np.testing.assert_array_equal(va.labels, vb.labels)
    assert not np.array_equal(va.rgb, vc.rgb)


# ------------------------------------------------------------------------------------------------ voxels
def _surface_samples(world: StreetWorld, rng: np.random.Generator, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Points on every primitive's boundary and on the ground, with the trainId of their surface.

    Points are moved EPS outwards: a face lying exactly on a voxel plane is observed from the voxel outside it.
    """
    P = world.primitives
    pts, ids = [], []
    for m in range(len(P)):
        lo, hi, r = P.lo[m], P.hi[m], P.radius[m]
        c = 0.5 * (lo + hi)
        if P.shape[m] == Shape.BOX:
            p = rng.uniform(lo, hi, (n, 3))
            axis, side = rng.integers(3, size=n), rng.integers(2, size=n)
            p[np.arange(n), axis] = np.where(side, hi[axis] + EPS, lo[axis] - EPS)
        elif P.shape[m] == Shape.CYLINDER:
            a = rng.uniform(0, 2 * np.pi, n)
            p = np.stack([c[0] + (r + EPS) * np.cos(a), c[1] + (r + EPS) * np.sin(a), rng.uniform(lo[2], hi[2], n)], 1)
        else:
            v = rng.normal(size=(n, 3))
            p = c + (r + EPS) * v / np.linalg.norm(v, axis=1, keepdims=True)
        pts.append(p)
        ids.append(np.full(n, P.train_id[m]))
    origin = world.velo_to_world(FRAME)[:3, 3] + sgrid.GRID_ORIGIN_VELO
    g = rng.uniform(origin[:2], origin[:2] + 51.2, (4000, 2))
    pts.append(np.concatenate([g, np.full((len(g), 1), EPS)], axis=1))
    ids.append(world.ground_train_id(g[:, 0], g[:, 1]))
    return np.concatenate(pts), np.concatenate(ids)


def test_voxel_gt_occupancy_matches_primitive_surfaces(world, gt):
    assert gt.shape == sgrid.GRID_DIMS and gt.dtype == np.uint8
    pts, ids = _surface_samples(world, np.random.default_rng(0))
    idx, in_grid = voxel_index(world, FRAME, pts)
    P = world.primitives
    grounded = P.lo[:, 2] <= 1e-9
    hidden = P.contains(pts, margin=1e-6).any(axis=1)  # inside another solid
    # ground points under a footprint are inside the union of the ground and the primitive
    below = P.contains(pts + [0, 0, 1e-3], margin=0.0)[:, grounded].any(axis=1) & (pts[:, 2] < 1e-6)
    keep = in_grid & ~hidden & ~below
    assert keep.sum() > 3000
    values = gt[tuple(idx[keep].T)]
    assert np.mean((values != 0) & (values != 255)) > 0.995
    assert np.mean(values == TRAINID_TO_SSCBENCH_GT[ids[keep]]) > 0.95
    cars = ids[keep] == CAR
    assert cars.sum() > 50 and np.mean(values[cars] == 1) > 0.98


def test_voxel_gt_free_space_and_unknown(world, gt):
    view = world.render_camera(FRAME, "image_00", SIZE)
    c2w = world.camera_to_world(FRAME, "image_00")
    d = camera_rays(*SIZE, tuple(world.rig.K_norm.ravel())) @ c2w[:3, :3].T
    dist = np.where(np.isfinite(view.distance), view.distance, 60.0).reshape(-1).astype(np.float64)
    frac = np.random.default_rng(1).uniform(0.05, 1.0, (8, dist.size))
    free = c2w[:3, 3] + d[None] * (np.maximum(dist - 0.5, 0.0) * frac)[..., None]
    idx, in_grid = voxel_index(world, FRAME, free.reshape(-1, 3))
    values = gt[tuple(idx[in_grid].T)]
    assert in_grid.sum() > 20000 and np.mean(values == 0) > 0.97
    assert set(np.unique(gt).tolist()) <= {0, 255} | set(TRAINID_TO_SSCBENCH_GT.tolist())
    ground_z = int((0.0 - world.velo_to_world(FRAME)[2, 3] - sgrid.GRID_ORIGIN_VELO[2]) // sgrid.VOXEL_SIZE)
    assert np.all(gt[:, :, :ground_z] == 255)  # below the ground: inside a solid
    assert np.all(np.isin(gt[:, :, ground_z], [1, 7, 9, 11, 12, 13, 14, 15, 16, 255]))
    # the SSC label spaces agree: GT id -> SSC label == trainId -> SSC label for every class the world uses
    for train_id in np.unique(world.primitives.train_id).tolist() + [0, 1, 9]:
        assert labels.SSCBENCH_GT_TO_SSC[TRAINID_TO_SSCBENCH_GT[train_id]] == labels.TRAINID_TO_SSC[train_id]


# ----------------------------------------------------------------------------------------------- trees
def test_sscbench_tree_is_read_and_scored_by_the_evaluation(world, gt, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_sscbench(world, tmp_path / "ssc", tmp_path / "vgt", 9, [FRAME])
        ds = SSCBenchKitti360(tmp_path / "ssc", tmp_path / "vgt", "09")
    assert ds.frames == [FRAME] and ds.calibration.source == "files" and caplog.text == ""  # no mismatch warnings
    sample = ds.load(FRAME)
    assert sample.rgb.shape == (376, 1408, 3)
    np.testing.assert_array_equal(sample.gt, gt)
    np.testing.assert_array_equal(sio.read_voxel_gt(sio.voxel_gt_path(tmp_path / "vgt", 9, FRAME)), gt)
    # a perfect prediction scores IoU 1 with the real metric code
    gt_to_train = {int(g): t for t, g in enumerate(TRAINID_TO_SSCBENCH_GT) if t not in (3, 12, 15, 16)}
    occupied = (gt != 0) & (gt != 255)
    pred = np.zeros_like(gt)
    for g, t in gt_to_train.items():
        pred[gt == g] = t
    acc = M.accumulate_frame(gt, pred, occupied.astype(np.float32), sgrid.fov_mask(), sweep_thresholds=())
    counts = acc.ranges[M.size_key(51.2)]
    assert counts.tp > 10000 and counts.fp == 0 and counts.fn == 0


def test_kitti360_tree_formats(world, tmp_path):
    seq = "2013_05_28_drive_0000_sync"
    root = write_kitti360(world, tmp_path, seq, [3, 4], full_size=(94, 352), image_size=SIZE, velodyne=True)
    raw = root / "data_2d_raw" / seq
    assert (root / "calibration" / "image_02.yaml").read_text().startswith("%YAML:1.0\n")
    stamps = (raw / "image_00" / "timestamps.txt").read_text().splitlines()
    assert len(stamps) == 5 and stamps[0] == "2013-05-28 08:46:02.000000000" and stamps[4].endswith(":02.400000000")
    poses = k360.read_poses(k360.poses_path(root / "data_poses", seq))
    assert poses.frames.tolist() == [3, 4]
    np.testing.assert_allclose(poses.poses[1], world.pose(4), atol=1e-12)
    assert cv2.imread(str(k360.raw_image_path(root, seq, "image_01", 4))).shape == (94, 352, 3)
    assert (raw / "image_02" / "data_48x160_0x-15" / "0000000004.png").is_file()
    ids = k360.read_label_ids(k360.semantic_path(root, seq, 3))
    np.testing.assert_array_equal(label_ids_to_trainids(ids), world.render_camera(3, "image_00", (94, 352)).labels)
    pts = np.fromfile(root / "data_3d_raw" / seq / "velodyne_points" / "data" / "0000000003.bin", np.float32)
    pts = pts.reshape(-1, 4)
    assert len(pts) > 10000 and np.isfinite(pts).all()
    ground = pts[np.abs(pts[:, 2] + 1.73) < 1e-3]  # the Velodyne is 1.73 m above the road
    assert len(ground) > 0.3 * len(pts)
    np.testing.assert_allclose(k360.read_cam_to_pose(root / "calibration" / "calib_cam_to_pose.txt")["image_00"],
                               world.rig.cam_to_pose["image_00"], atol=1e-12)
    assert FULL_SIZE == (376, 1408)


def test_render_sizes_and_frame_range(world):
    assert world.render_camera(0, "image_03", (20, 30)).rgb.shape == (20, 30, 3)
    with pytest.raises(ValueError, match="frame must lie in"):
        world.pose(40)
    with pytest.raises(ValueError, match="unknown camera"):
        world.render_camera(0, "image_07")
