"""Local semantic map (``scenedino_core.mapping``): log-odds model, window, fusion rules, decay, reset, files."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scenedino_core.mapping import (
    FrameObservation,
    MapConfig,
    ObservationBuilder,
    PackedObservation,
    SemanticMap,
    occupancy,
    semantics,
)
from scenedino_core.mapping.config import logit
from scenedino_core.mapping.observation import FREE, UNKNOWN, VoxelProjection
from scenedino_core.mapping.window import RingWindow
from scenedino_core.voxels import VoxelGrid

#: A small frame grid: 8 x 8 x 4 voxels of 1 m, x forward from the camera, y left, z up.
GRID = VoxelGrid(origin=(0.0, -4.0, -1.0), voxel_size=1.0, dims=(8, 8, 4))
#: Grid frame -> camera optical frame (z forward = grid x, x right = -grid y, y down = -grid z), camera at the origin.
CAM_FROM_GRID = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
#: Map of 1 m voxels, 16 x 16 x 6 around the camera; the window follows the camera at every whole voxel.
CONFIG = MapConfig(voxel_size_m=1.0, size_m=(16.0, 16.0, 6.0), center_offset_m=(0.0, 0.0, 0.0),
                   recenter_distance_m=(0.0, 0.0, 0.0))


def pose(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = (x, y, z)
    return T


def random_frame(seed: int, grid: VoxelGrid = GRID, visible_share: float = 0.5) -> FrameObservation:
    rng = np.random.default_rng(seed)
    shape = grid.dims
    prob = rng.random(shape).astype(np.float32)
    observed = rng.random(shape) < 0.8
    visible = observed & (rng.random(shape) < visible_share)
    labels = np.where(prob >= CONFIG.frame_threshold_probability, rng.integers(1, 16, shape), 0).astype(np.uint8)
    return FrameObservation.from_masks(grid, prob, observed, visible, labels, CAM_FROM_GRID)


def single_voxel_frame(index: tuple[int, int, int], p: float, label: int = 3, visible: bool = True,
                       observe_all: bool = False) -> FrameObservation:
    shape = GRID.dims
    prob = np.zeros(shape, np.float32)
    prob[index] = p
    observed = np.ones(shape, bool) if observe_all else np.zeros(shape, bool)
    observed[index] = True
    vis = observed.copy()
    vis[index] = visible
    labels = np.zeros(shape, np.uint8)
    labels[index] = label if p >= CONFIG.frame_threshold_probability else 0
    return FrameObservation.from_masks(GRID, prob, observed, vis, labels, CAM_FROM_GRID)


def voxel_state(m: SemanticMap, map_index: tuple[int, int, int]):
    d = m.dense()
    i = tuple(int(a - o) for a, o in zip(map_index, d.origin_index))
    return d.log_odds[i], d.labels[i], d.observations[i]


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults_and_errors():
    c = MapConfig()
    assert c.dims == (256, 256, 32)
    assert c.bytes_per_voxel == 20 and MapConfig(decay_s=1.0).bytes_per_voxel == 24
    assert c.l_hit == pytest.approx(logit(0.7)) and c.l_min == pytest.approx(logit(0.12))
    assert MapConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="size_m x"):
        MapConfig(size_m=(51.3, 51.2, 6.4))
    with pytest.raises(ValueError, match="p_miss < 0.5 < p_hit"):
        MapConfig(p_hit=0.4)
    with pytest.raises(ValueError, match="occluded_weight"):
        MapConfig(occluded_weight=1.5)
    with pytest.raises(ValueError, match="unknown MapConfig keys: bogus"):
        MapConfig.from_dict({"bogus": 1})


# ------------------------------------------------------------------------------------------------ log-odds
def test_increment_table_maps_the_frame_threshold_to_zero_and_clips_to_hit_and_miss():
    table = occupancy.increment_table(CONFIG)
    assert table[0] == pytest.approx(CONFIG.l_miss) and table[-1] == pytest.approx(CONFIG.l_hit)
    p_thr = CONFIG.frame_threshold_probability
    inc = occupancy.frame_increments(CONFIG, np.array([p_thr, 0.045, 0.035], np.float32))
    assert abs(inc[0]) < 0.01
    assert inc[1] == pytest.approx(logit(0.045) - logit(p_thr), abs=0.01) and inc[1] > 0
    assert inc[2] == pytest.approx(logit(0.035) - logit(p_thr), abs=0.01) and inc[2] < 0
    steep = occupancy.frame_increments(dataclasses.replace(CONFIG, probability_gain=100.0),
                                       np.array([0.045, 0.035], np.float32))
    np.testing.assert_allclose(steep, [CONFIG.l_hit, CONFIG.l_miss], rtol=1e-6)


def test_log_odds_update_and_clamping():
    m = SemanticMap(CONFIG)
    hit, miss = single_voxel_frame((3, 4, 1), 0.9), single_voxel_frame((3, 4, 1), 0.0)
    voxel = (3, 0, 0)  # grid (3, 4, 1): centre (3.5, 0.5, 0.5) m in the grid frame = the map frame here
    m.integrate(0, pose(), hit)
    assert voxel_state(m, voxel)[0] == pytest.approx(CONFIG.l_hit)
    m.integrate(1, pose(), hit)
    assert voxel_state(m, voxel)[0] == pytest.approx(2 * CONFIG.l_hit)
    for t in range(2, 10):
        m.integrate(t, pose(), hit)
    assert voxel_state(m, voxel)[0] == pytest.approx(CONFIG.l_max)  # 0.97
    m.integrate(10, pose(), miss)
    assert voxel_state(m, voxel)[0] == pytest.approx(CONFIG.l_max + CONFIG.l_miss)
    for t in range(11, 40):
        m.integrate(t, pose(), miss)
    log_odds, label, seen = voxel_state(m, voxel)
    assert log_odds == pytest.approx(CONFIG.l_min)  # 0.12
    assert label == FREE and seen == 40


def test_one_frame_reproduces_the_frame_occupancy():
    obs = random_frame(0)
    m = SemanticMap(CONFIG)
    m.integrate(0, pose(), obs)
    d = m.dense()
    # the map window (origin -8, -8, -3) holds the frame grid at offset (8, 4, 2)
    sl = (slice(8, 16), slice(4, 12), slice(2, 6))
    assert d.origin_index == (-8, -8, -3)
    occupied = d.occupied[sl]
    expected = obs.observed & (obs.probability > CONFIG.frame_threshold_probability + 0.002)
    boundary = np.abs(obs.probability - CONFIG.frame_threshold_probability) <= 0.002
    np.testing.assert_array_equal(occupied[~boundary], expected[~boundary])
    np.testing.assert_array_equal(d.observed[sl], obs.observed)
    np.testing.assert_array_equal(d.labels[sl][expected], obs.labels[expected])
    assert d.observed.sum() == obs.observed.sum()  # nothing outside the frame grid


def test_static_scene_twice_equals_once_with_double_weight():
    obs = random_frame(1)
    twice, once = SemanticMap(CONFIG), SemanticMap(CONFIG)
    twice.integrate(0, pose(0.3, 0.2), obs)
    twice.integrate(1, pose(0.3, 0.2), obs)
    once.integrate(0, pose(0.3, 0.2), obs, weight=2.0)
    a, b = twice.dense(), once.dense()
    np.testing.assert_array_equal(a.log_odds, b.log_odds)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(twice._counts, once._counts)
    assert (a.observations[a.observed] == 2).all() and (b.observations[b.observed] == 1).all()


def test_occluded_voxels_update_with_the_smaller_weight():
    m = SemanticMap(dataclasses.replace(CONFIG, occluded_weight=0.25))
    shape = GRID.dims
    prob = np.full(shape, 0.9, np.float32)
    observed = np.ones(shape, bool)
    visible = np.zeros(shape, bool)
    visible[:4] = True  # the first 4 m are visible, the rest completed
    labels = np.full(shape, 5, np.uint8)
    m.integrate(0, pose(), FrameObservation.from_masks(GRID, prob, observed, visible, labels, CAM_FROM_GRID))
    d = m.dense()
    grid_part = d.log_odds[8:16, 4:12, 2:6]
    np.testing.assert_allclose(grid_part[:4], CONFIG.l_hit, rtol=1e-6)
    np.testing.assert_allclose(grid_part[4:], 0.25 * CONFIG.l_hit, rtol=1e-6)
    counts = m._canonical(m._counts)[8:16, 4:12, 2:6, 4]
    assert (counts[:4] == CONFIG.class_unit).all() and (counts[4:] == CONFIG.class_unit // 4).all()


def test_voxel_projection_tells_visible_from_completed():
    K = np.array([[4.0, 0.0, 4.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]])  # 8 x 4 image, 90 deg horizontal field
    proj = VoxelProjection.build(GRID, CAM_FROM_GRID, K, (4, 8), 1)
    depth = np.full((4, 8), 4.0, np.float32)
    depth[0, 0] = np.inf
    completed = proj.completed(depth, margin_m=0.3)
    centre_x = np.arange(8) + 0.5
    inside = proj.pixel < proj.num_pixels
    expected = inside & (centre_x[:, None, None] > 4.3)
    expected &= proj.pixel != 0  # the pixel without a finite depth completes nothing
    np.testing.assert_array_equal(completed, expected)
    # the voxel at x 6.5 m straight ahead (y 0.5, z 0.5 m) is behind the 4 m surface
    assert completed[6, 4, 1] and not completed[3, 4, 1]


@pytest.mark.parametrize("dense", [True, False])
def test_builder_uses_the_rendered_depth(dense):
    """Behind the depth: completed; in front of it: visible, and free with ``free_in_front_of_depth``."""
    K = np.array([[4.0, 0.0, 4.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]])
    depth = np.full((4, 8), 4.0, np.float32)
    occupied = np.ones(GRID.dims, bool)
    for carve in (False, True):
        builder = ObservationBuilder(GRID, dataclasses.replace(CONFIG, free_in_front_of_depth=carve))
        if dense:
            obs = builder.from_dense(np.full(GRID.dims, 9, np.uint8), np.full(GRID.dims, 90, np.uint8),
                                     CAM_FROM_GRID, depth=depth, intrinsics=K)
        else:
            obs = builder.from_arrays(np.full(GRID.dims, 0.9, np.float32), occupied,
                                      np.full(GRID.dims, 9, np.uint8), CAM_FROM_GRID, depth=depth, intrinsics=K)
        ahead = (slice(1, None), 4, 1)  # straight ahead, x = 1.5 .. 7.5 m (x = 0.5 m falls outside the image)
        x = np.arange(1, 8) + 0.5
        np.testing.assert_array_equal(obs.visible[ahead], x <= 4.4)
        front = x < 3.6
        expected_p = np.where(front & carve, 0.0, 0.9)
        np.testing.assert_allclose(obs.probability[ahead], expected_p, atol=1e-3)
        np.testing.assert_array_equal(obs.labels[ahead], np.where(front & carve, 0, 9))


def test_builder_from_dense_follows_the_pipeline_conventions():
    shape = GRID.dims
    labels = np.full(shape, UNKNOWN, np.uint8)
    percent = np.full(shape, 255, np.uint8)
    labels[2, 3, 1], percent[2, 3, 1] = 9, 80     # occupied building
    labels[2, 4, 1], percent[2, 4, 1] = FREE, 50  # density passes the cut-off but the head said sky: free
    labels[2, 5, 1], percent[2, 5, 1] = FREE, 1   # free
    obs = ObservationBuilder(GRID, CONFIG).from_dense(labels, percent, CAM_FROM_GRID)
    assert obs.observed.sum() == 3 and obs.visible.sum() == 3
    np.testing.assert_allclose(obs.probability[2, 3:6, 1], [0.8, 0.0, 0.01], atol=1e-3)
    assert obs.labels[2, 3, 1] == 9 and obs.labels.sum() == 9
    with pytest.raises(ValueError, match="uint8"):
        ObservationBuilder(GRID, CONFIG).from_dense(labels.astype(np.int32), percent, CAM_FROM_GRID)


def test_observation_rejects_bad_input():
    with pytest.raises(ValueError, match="grid's shape"):
        PackedObservation(GRID, np.zeros((2, 2, 2), np.uint16), None, CAM_FROM_GRID)
    with pytest.raises(ValueError, match="not a rigid transform"):
        PackedObservation(GRID, np.zeros(GRID.dims, np.uint16), None, 2 * CAM_FROM_GRID)
    with pytest.raises(ValueError, match="labels must lie in 0..15"):
        ObservationBuilder(GRID, CONFIG).from_arrays(np.zeros(GRID.dims, np.float32), np.ones(GRID.dims, bool),
                                                     np.full(GRID.dims, 16, np.uint8), CAM_FROM_GRID)
    with pytest.raises(ValueError, match="weight"):
        SemanticMap(CONFIG).integrate(0, pose(), random_frame(0), weight=0.0)


# ------------------------------------------------------------------------------------------------ semantics
def test_class_evidence_halves_before_overflow_and_reads_out_the_dirichlet_mean():
    counts = np.zeros((2, 4), np.uint8)
    counts[0] = (250, 10, 0, 3)
    halved = semantics.add_evidence_flat(counts, np.array([0, 1]), np.array([0, 2]), np.array([8, 8], np.uint8))
    assert halved == 1
    np.testing.assert_array_equal(counts, [[133, 5, 0, 1], [0, 0, 8, 0]])
    labels, conf = semantics.read_out(counts, class_unit=8, prior=0.5)
    np.testing.assert_array_equal(labels, [1, 3])
    assert conf[1] == pytest.approx((1 + 0.5) / (1 + 4 * 0.5))
    labels, conf = semantics.read_out(np.zeros((1, 4), np.uint8), 8, 0.5)
    assert labels[0] == 0 and conf[0] == 0


def test_fused_label_is_the_majority_with_its_confidence():
    m = SemanticMap(CONFIG)
    for t, label in enumerate((3, 3, 7, 3)):
        m.integrate(t, pose(), single_voxel_frame((3, 4, 1), 0.9, label=label))
    pts = m.occupied_voxels()
    assert len(pts.labels) == 1 and pts.labels[0] == 3
    assert pts.confidence[0] == pytest.approx((3 + 0.1) / (4 + 15 * 0.1))
    np.testing.assert_allclose(pts.points[0], (3.5, 0.5, 0.5))
    np.testing.assert_array_equal(pts.index[0], (3, 0, 0))


# ------------------------------------------------------------------------------------------------ window
def test_ring_window_blocks_and_moves():
    w = RingWindow((4, 4, 2), origin=(-2, 0, 0))
    blocks = list(w.blocks((-2, 0, 0), (2, 4, 2)))
    assert len(blocks) == 2  # -2, -1 are stored at 2, 3; 0, 1 at 0, 1
    assert sorted((b.lo[0], b.slices[0].start) for b in blocks) == [(-2, 2), (0, 0)]
    cleared = w.move((-1, 1, 0))
    assert w.origin == (-1, 1, 0)
    assert cleared == [(slice(2, 3), slice(None), slice(None)), (slice(None), slice(0, 1), slice(None))]
    np.testing.assert_array_equal(w.storage_to_map(np.array([[2, 0, 1], [3, 1, 0]])), [[2, 4, 1], [-1, 1, 0]])
    assert w.move((20, 1, 0)) == [(slice(None), slice(None), slice(None))]
    with pytest.raises(ValueError, match="not inside the window"):
        list(w.blocks((0, 0, 0), (30, 1, 1)))


def point_set(p, keep) -> list[tuple[float, ...]]:
    return sorted(map(tuple, np.column_stack([p.points[keep], p.labels[keep]]).tolist()))


@pytest.mark.parametrize("yaw_deg", [0.0, 30.0])
def test_window_shift_keeps_world_positions_and_content(yaw_deg):
    """A rolling window against a recomputation in a window large enough never to move.

    The camera drives backwards (it looks along +x and moves along -x, -y, +z) so that observed voxels leave the
    rolling window behind it, while every frame grid lies inside the rolling window: no evidence is dropped for
    being outside, and the rolling window must equal the big one wherever it is.
    """
    rolling = SemanticMap(dataclasses.replace(CONFIG, size_m=(24.0, 24.0, 8.0), recenter_distance_m=(1.5, 1.5, 1.0)))
    big = SemanticMap(dataclasses.replace(CONFIG, size_m=(64.0, 64.0, 16.0), recenter_distance_m=(100.0,) * 3))
    moves = evicted = 0
    for t in range(14):
        T = pose(-0.7 * t, -0.45 * t, 0.1 * t, yaw_deg=yaw_deg)
        obs = random_frame(10 + t)
        stats = rolling.integrate(t, T, obs)
        moves, evicted = moves + stats.window_moved, evicted + stats.voxels_evicted
        big.integrate(t, T, obs)
        a, b = rolling.dense(), big.dense()
        lo = np.subtract(a.origin_index, b.origin_index)
        sl = tuple(slice(o, o + n) for o, n in zip(lo, a.log_odds.shape))
        assert (lo >= 0).all(), "the big window must contain the rolling one"
        assert a.observed.sum() == b.observed[sl].sum() > 0
        np.testing.assert_array_equal(a.log_odds, b.log_odds[sl])
        np.testing.assert_array_equal(a.observations, b.observations[sl])
        np.testing.assert_array_equal(a.labels, b.labels[sl])
        np.testing.assert_array_equal(a.confidence, b.confidence[sl])
        pa, pb = rolling.occupied_voxels(), big.occupied_voxels()
        inside = np.all((pb.index >= a.origin_index) & (pb.index < np.add(a.origin_index, a.log_odds.shape)), axis=1)
        assert point_set(pa, slice(None)) == point_set(pb, inside)
    assert moves > 4 and evicted > 0
    assert (~inside).sum() > 0, "some occupied voxels must have left the rolling window"


def test_voxels_that_leave_the_window_are_forgotten():
    m = SemanticMap(CONFIG)
    m.integrate(0, pose(), single_voxel_frame((0, 4, 1), 0.9))  # map voxel (0, 0, 0)
    assert m.occupied_voxels().index.tolist() == [[0, 0, 0]]
    m.integrate(1, pose(x=9.0), single_voxel_frame((7, 0, 0), 0.0))  # window x from 1: voxel 0 left
    m.integrate(2, pose(x=0.0), single_voxel_frame((7, 0, 0), 0.0))  # back: voxel 0 is in the window again
    log_odds, label, seen = voxel_state(m, (0, 0, 0))
    assert log_odds == 0 and label == UNKNOWN and seen == 0


def tilted(yaw_deg: float, pitch_deg: float, t) -> np.ndarray:
    T = pose(*t, yaw_deg=yaw_deg)
    c, s = np.cos(np.radians(pitch_deg)), np.sin(np.radians(pitch_deg))
    R = np.eye(4)
    R[[0, 0, 2, 2], [0, 2, 0, 2]] = (c, s, -s, c)
    return T @ R


@pytest.mark.parametrize("kind, T", [
    ("aligned", pose(2.3, -1.4, 0.6)),
    ("columns", pose(2.3, -1.4, 0.6, yaw_deg=33.0)),
    ("flat", tilted(20.0, 12.0, (2.3, -1.4, 0.6))),
])
def test_fusion_matches_a_brute_force_nearest_neighbour_lookup(kind, T):
    """Every window voxel takes the frame voxel that contains its centre, whichever path the pose selects."""
    from scenedino_core.mapping.correspondence import correspond

    obs = random_frame(7, visible_share=0.5)
    m = SemanticMap(CONFIG)
    m.integrate(0, T, obs)
    corr = correspond(GRID, T, 1.0, m.window_origin, np.add(m.window_origin, CONFIG.dims))
    assert {"aligned": corr.offset, "columns": corr.columns, "flat": corr.flat}[kind] is not None
    d = m.dense()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in CONFIG.dims], indexing="ij"), axis=-1).reshape(-1, 3)
    centres = (idx + d.origin_index + 0.5) * CONFIG.voxel_size_m
    g = (centres - T[:3, 3]) @ T[:3, :3]  # grid-frame centres
    f = np.floor((g - np.asarray(GRID.origin)) / GRID.voxel_size).astype(int)
    inside = np.all((f >= 0) & (f < GRID.dims), axis=1)
    code = np.full(len(idx), 2 * occupancy.LEVELS)
    code[inside] = obs.code[tuple(f[inside].T)]
    weight = np.where(code < occupancy.LEVELS, 1.0, CONFIG.occluded_weight)
    table = occupancy.increment_table(CONFIG)
    expected = np.where(code < 2 * occupancy.LEVELS, table[code % occupancy.LEVELS] * weight,
                        0.0)
    np.testing.assert_allclose(d.log_odds.reshape(-1), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(d.observed.reshape(-1), code < 2 * occupancy.LEVELS)


def test_rotated_frame_grid_matches_the_same_content_unrotated():
    """Yaw 90 deg (general path: index arrays) equals the unrotated grid holding the rotated arrays (aligned path)."""
    grid = VoxelGrid(origin=(-4.0, -4.0, -1.0), voxel_size=1.0, dims=(8, 8, 4))
    obs = random_frame(3, grid)
    rotated = SemanticMap(CONFIG)
    rotated.integrate(0, pose(yaw_deg=90.0), obs)

    def turned(a):
        return None if a is None else np.rot90(a, k=1, axes=(0, 1)).copy()

    # map (x, y) = R90 (gx, gy) = (-gy, gx), and np.rot90 gives b[p, q] = a[q, 7 - p]: the same voxels
    same = PackedObservation(grid, turned(obs.code), turned(obs.labels),
                             CAM_FROM_GRID @ np.linalg.inv(pose(yaw_deg=90)))
    plain = SemanticMap(CONFIG)
    plain.integrate(0, pose(), same)
    np.testing.assert_array_equal(rotated.dense().log_odds, plain.dense().log_odds)
    np.testing.assert_array_equal(rotated.dense().labels, plain.dense().labels)


# ------------------------------------------------------------------------------------------------ time
def test_decay_returns_unobserved_voxels_to_unknown():
    m = SemanticMap(dataclasses.replace(CONFIG, decay_s=1.0))
    a, b = (3, 4, 1), (5, 4, 1)  # map voxels (3, 0, 0) and (5, 0, 0)
    m.integrate(0, pose(), single_voxel_frame(a, 0.9))
    m.integrate(500_000_000, pose(), single_voxel_frame(b, 0.9))
    assert {tuple(i) for i in m.occupied_voxels().index.tolist()} == {(3, 0, 0), (5, 0, 0)}
    stats = m.integrate(1_200_000_000, pose(), single_voxel_frame(b, 0.9))  # a last seen 1.2 s ago
    assert stats.voxels_decayed == 1
    assert m.occupied_voxels().index.tolist() == [[5, 0, 0]]
    assert voxel_state(m, (3, 0, 0))[1:] == (UNKNOWN, 0)
    off = SemanticMap(CONFIG)  # decay off (the default): nothing is forgotten
    off.integrate(0, pose(), single_voxel_frame(a, 0.9))
    off.integrate(10**12, pose(), single_voxel_frame(b, 0.9))
    assert len(off.occupied_voxels().labels) == 2


def test_backwards_stamp_resets_the_map():
    m = SemanticMap(CONFIG)
    m.integrate(10, pose(), single_voxel_frame((3, 4, 1), 0.9))
    assert not m.integrate(10, pose(), single_voxel_frame((5, 4, 1), 0.9)).reset  # equal stamps: no reset
    stats = m.integrate(5, pose(), single_voxel_frame((6, 4, 1), 0.9))
    assert stats.reset
    assert m.occupied_voxels().index.tolist() == [[6, 0, 0]]
    assert m.frames_integrated == 1 and m.last_stamp_ns == 5


# ------------------------------------------------------------------------------------------------ outputs
def test_bird_eye_view():
    m = SemanticMap(CONFIG)
    m.integrate(0, pose(), single_voxel_frame((3, 4, 1), 0.9, label=9, observe_all=True))  # building at z 0..1 m
    m.integrate(1, pose(), single_voxel_frame((5, 4, 1), 0.9, label=7, observe_all=True))  # road
    bev = m.bev(min_z_m=0.0, max_z_m=1.0)
    assert bev.data.shape == (16, 16) and bev.origin_xy_m == (-8.0, -8.0)
    assert bev.data[8, 8 + 3] == 100 and bev.data[8, 8 + 5] == 0  # ground labels never block
    assert bev.data[0, 0] == -1
    with pytest.raises(ValueError, match="no voxel centre"):
        m.bev(min_z_m=50.0, max_z_m=60.0)


def test_save_and_load_round_trip(tmp_path):
    m = SemanticMap(dataclasses.replace(CONFIG, decay_s=5.0))
    for t in range(3):
        m.integrate(t * 10**8, pose(1.2 * t, 0.5 * t, yaw_deg=10 * t), random_frame(20 + t))
    npz, ply = m.save(tmp_path / "map")
    assert npz.name == "map.npz" and ply.name == "map.ply"
    loaded = SemanticMap.load(npz)
    assert loaded.config == m.config and loaded.window_origin == m.window_origin
    a, b = m.dense(), loaded.dense()
    for name in ("log_odds", "observations", "labels", "confidence"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # the loaded map keeps fusing exactly like the original
    T, obs = pose(4.0, 1.5, yaw_deg=30), random_frame(30)
    m.integrate(3 * 10**8, T, obs)
    loaded.integrate(3 * 10**8, T, obs)
    np.testing.assert_array_equal(m.dense().log_odds, loaded.dense().log_odds)
    header, body = ply.read_bytes().split(b"end_header\n", 1)
    n = len(SemanticMap.load(npz).occupied_voxels().labels)
    assert n > 0 and f"element vertex {n}" in header.decode()
    assert "format binary_little_endian 1.0" in header.decode() and "property uchar label" in header.decode()
    assert len(body) == 24 * n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npz", "map.ply"]  # no temporary files left
    with pytest.raises(FileNotFoundError):
        SemanticMap.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(1))
    with pytest.raises(ValueError, match="not a semantic map file"):
        SemanticMap.load(tmp_path / "other.npz")


def test_mapping_imports_no_ros():
    import subprocess
    import sys

    code = ("import sys, scenedino_core.mapping; "
            "assert not any(m.startswith(('rclpy', 'sensor_msgs', 'scenedino_ros')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_is_fixed_by_the_window():
    m = SemanticMap(CONFIG)
    assert m.nbytes == CONFIG.num_voxels * CONFIG.bytes_per_voxel
    for t in range(5):
        m.integrate(t, pose(3.0 * t, yaw_deg=20 * t), random_frame(t))
    assert m.nbytes == CONFIG.num_voxels * CONFIG.bytes_per_voxel
