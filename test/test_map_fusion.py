"""The node's map without a node: parameters -> MapConfig, poses, fusion, publication schedule, clear/save, messages.

Frames are hand-made dense predictions (a wall in front of the camera) on a small grid, so every expectation is
exact and nothing needs a model.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import pytest

from scenedino_core.mapping import MapConfig, SemanticMap
from scenedino_core.mapping.observation import FREE, OCCUPANCY_UNKNOWN, UNKNOWN
from scenedino_core.voxels import VoxelGrid
from scenedino_ros import params
from scenedino_ros.frames import camera_pose_from_rpy, invert
from scenedino_ros.map_fusion import CachedPoses, MapFusion, MapSettings, map_config
from scenedino_ros.params import ParameterError, from_values
from scenedino_ros.tf_cache import TransformCache, TransformLookupError

S = 1_000_000_000
#: Frame grid: 16 x 16 x 8 voxels of 0.5 m in front of the camera (x forward, y left, z up, ground at z = 0).
GRID = VoxelGrid(origin=(0.0, -4.0, -0.5), voxel_size=0.5, dims=(16, 16, 8))
#: A small map: 24 x 24 x 8 voxels of 0.5 m.
SMALL_MAP = {"mapping.enabled": True, "mapping.frame": "odom", "mapping.voxel_size_m": 0.5,
             "mapping.size_m": [12.0, 12.0, 4.0], "mapping.center_offset_m": [0.0, 0.0, 0.5],
             "mapping.recenter_distance_m": [1.0, 1.0, 1.0], "mapping.publish_rate_hz": 1.0,
             "grid.voxel_size_m": 0.5, "grid.min_m": [0.0, -4.0, -0.5], "grid.max_m": [8.0, 4.0, 3.5]}
#: The camera 1.5 m above the grid frame's origin, looking along +x.
GRID_FROM_CAMERA = camera_pose_from_rpy([0.0, 0.0, 1.5], [0.0, 0.0, 0.0])
CAM_FROM_GRID = invert(GRID_FROM_CAMERA)
WALL_CLASS = 11  # building


@dataclass(frozen=True)
class Result:
    """What the map reads from a pipeline ``FrameResult``."""

    grid: VoxelGrid
    voxel_labels: np.ndarray
    voxel_occupancy: np.ndarray
    depth: np.ndarray | None = None
    intrinsics: np.ndarray | None = None


def wall_frame(wall_x: int, seen_from_x: int = 0) -> Result:
    """Everything from ``seen_from_x`` on observed and free (probability 1 %), a wall of ``WALL_CLASS`` at voxel
    column ``wall_x`` (90 %) up to 2 m."""
    labels = np.full(GRID.dims, UNKNOWN, np.uint8)
    occupancy = np.full(GRID.dims, OCCUPANCY_UNKNOWN, np.uint8)
    labels[seen_from_x:], occupancy[seen_from_x:] = FREE, 1
    labels[wall_x, :, :5], occupancy[wall_x, :, :5] = WALL_CLASS, 90
    return Result(GRID, labels, occupancy)


def translation(x: float, y: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, 0.0)
    return T


def fusion(**overrides) -> MapFusion:
    p = from_values({**SMALL_MAP, **overrides})
    return MapFusion.from_params(p, GRID)


def pose_lookup(odom_from_grid: np.ndarray):
    """A lookup that knows ``odom <- camera`` for a grid at ``odom_from_grid``."""
    def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
        assert (target, source) == ("odom", "cam")
        return odom_from_grid @ GRID_FROM_CAMERA
    return lookup


def no_pose(target: str, source: str, stamp_ns: int) -> np.ndarray:
    raise TransformLookupError(f"frame {source!r} has not been received")


# ----------------------------------------------------------------------------- parameters

def test_parameters_map_onto_the_map_config():
    p = from_values({**SMALL_MAP, "mapping.p_hit": 0.8, "mapping.occluded_weight": 0.5, "mapping.decay_s": 3.0,
                     "density_threshold_per_m": 0.4})
    c = map_config(p)
    assert (c.voxel_size_m, c.size_m, c.dims) == (0.5, (12.0, 12.0, 4.0), (24, 24, 8))
    assert (c.p_hit, c.occluded_weight, c.decay_s) == (0.8, 0.5, 3.0)
    # one frame alone reproduces the per-frame occupancy: the same density cut-off at the grid's voxel size
    assert c.frame_threshold_probability == pytest.approx(1 - np.exp(-0.5 * 0.4))
    assert map_config(from_values({})).dims == (256, 256, 32)  # the defaults: the SSCBench-sized window
    s = MapSettings.from_params(p)
    assert (s.frame, s.publish_period_ns, s.ground_labels) == ("odom", S, (7, 8, 12))


@pytest.mark.parametrize("values, name, match", [
    ({"mapping.p_hit": 0.3}, "mapping.p_hit", r"p_miss < 0.5 < mapping.p_hit"),
    ({"mapping.p_hit": 1.5}, "mapping.p_hit", r"outside \[0.0, 1.0\]"),
    ({"mapping.p_max": 0.4}, "mapping.occupied_probability", r"mapping.p_min < mapping.occupied_probability"),
    ({"mapping.size_m": [51.3, 51.2, 6.4]}, "mapping.size_m", r"x = 51.3 m is not a positive multiple"),
    ({"mapping.size_m": [1.0, 2.0]}, "mapping.size_m", r"needs 3 values"),
    ({"mapping.voxel_size_m": 0.01}, "mapping.size_m", r"exceeds 50,000,000"),
    ({"mapping.recenter_distance_m": [-1.0, 2.0, 1.0]}, "mapping.recenter_distance_m", r"must be >= 0"),
    ({"mapping.enabled": True, "mapping.frame": ""}, "mapping.frame", r"must name a frame"),
    ({"mapping.publish_rate_hz": -1.0}, "mapping.publish_rate_hz", r"outside"),
    ({"mapping.enabled": "yes"}, "mapping.enabled", r"expected bool"),
    ({"mapping.voxel_sise_m": 0.2}, "mapping.voxel_sise_m", r"did you mean mapping.voxel_size_m"),
])
def test_invalid_values_name_the_parameter(values, name, match):
    with pytest.raises(ParameterError, match=match) as err:
        from_values(values)
    assert err.value.name == name


def test_every_map_config_field_has_a_parameter_or_a_fixed_value():
    from scenedino_ros.map_fusion import MAP_CONFIG_PARAMS

    assert set(MAP_CONFIG_PARAMS.values()) <= set(params.names())
    fixed = {"num_classes", "class_unit", "class_prior"}  # the 15 SSC classes, the core's evidence units
    assert set(map_config(from_values({})).to_dict()) == set(MAP_CONFIG_PARAMS) | fixed
    # the parameters' defaults are the core's: only the per-frame cut-off follows the node's density threshold
    defaults = map_config(from_values({}))
    assert dataclasses.replace(defaults, frame_threshold_probability=MapConfig().frame_threshold_probability) == \
        MapConfig()


# ----------------------------------------------------------------------------- fusion

def test_a_frame_without_a_pose_is_counted_and_not_fused():
    f = fusion()
    out = f.add_frame(1 * S, "cam", wall_frame(8), CAM_FROM_GRID, no_pose)
    assert not out.fused and not out.publish and "has not been received" in out.reason
    assert f.counters.frames_without_pose == 1 and f.counters.frames_fused == 0
    assert f.map.frames_integrated == 0 and not f.last_frame_fused
    out = f.add_frame(2 * S, "cam", wall_frame(8), CAM_FROM_GRID, pose_lookup(np.eye(4)))
    assert out.fused and f.last_frame_fused and f.statistics()["frames_without_pose"] == 1


def test_the_frame_lands_at_its_pose_in_the_map_frame():
    f = fusion()
    f.add_frame(1 * S, "cam", wall_frame(8), CAM_FROM_GRID, pose_lookup(translation(10.0, 2.0)))
    d = f.snapshot().dense
    centres = (np.asarray(d.origin_index) + np.argwhere(d.occupied) + 0.5) * d.voxel_size
    # wall voxel column 8 of the grid: x in [4, 4.5) m in the grid frame, + 10 m; of its 5 layers (z -0.5 .. 2 m)
    # the lowest lies below the window (camera at z 1.5 m + offset 0.5 m: window z 0 .. 4 m)
    assert len(centres) == 16 * 4
    np.testing.assert_allclose(np.unique(centres[:, 2]), [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(np.unique(centres[:, 0]), [14.25])
    assert centres[:, 1].min() == pytest.approx(-1.75) and centres[:, 1].max() == pytest.approx(5.75)
    assert set(np.unique(d.labels[d.occupied])) == {WALL_CLASS}


def test_the_map_of_two_frames_differs_from_either_frame_alone():
    """Two walls seen from two poses: the map holds both, each single-frame map only its own."""
    frames = [(1 * S, wall_frame(10), translation(0.0)), (2 * S, wall_frame(10, seen_from_x=4), translation(3.0))]

    def occupied_x(pairs) -> set[float]:
        f = fusion()
        for stamp, result, pose in pairs:
            assert f.add_frame(stamp, "cam", result, CAM_FROM_GRID, pose_lookup(pose)).fused
        d = f.snapshot().dense
        return set(((d.origin_index[0] + np.argwhere(d.occupied)[:, 0] + 0.5) * d.voxel_size).round(2).tolist())

    first, second, both = occupied_x(frames[:1]), occupied_x(frames[1:]), occupied_x(frames)
    assert first == {5.25} and second == {8.25}
    assert both == first | second
    # the second frame saw the first wall's place as free: its evidence lowered it, but one frame cannot clear
    # what another asserted with 90 % (a window that stays put, so both maps share their voxels)
    still = {"mapping.recenter_distance_m": [5.0, 5.0, 5.0]}
    f, single = fusion(**still), fusion(**still)
    for stamp, result, pose in frames:
        f.add_frame(stamp, "cam", result, CAM_FROM_GRID, pose_lookup(pose))
    stamp, result, pose = frames[0]
    single.add_frame(stamp, "cam", result, CAM_FROM_GRID, pose_lookup(pose))
    d2, d1 = f.snapshot().dense, single.snapshot().dense
    assert d2.origin_index == d1.origin_index
    wall = d1.occupied
    assert np.all(d2.log_odds[wall] < d1.log_odds[wall]) and np.all(d2.occupied[wall])
    assert np.all(d2.observations[wall] == 2)


def test_publication_follows_image_stamps():
    f = fusion(**{"mapping.publish_rate_hz": 1.0})
    lookup = pose_lookup(np.eye(4))
    due = [f.add_frame(int(t * S), "cam", wall_frame(8), CAM_FROM_GRID, lookup).publish
           for t in (10.0, 10.5, 11.0, 11.2, 12.1)]
    assert due == [True, False, True, False, True]
    out = f.add_frame(5 * S, "cam", wall_frame(8), CAM_FROM_GRID, lookup)  # a bag loop: reset, publish at once
    assert out.publish and out.stats.reset and f.counters.resets == 1 and f.map.frames_integrated == 1
    every = fusion(**{"mapping.publish_rate_hz": 0.0})
    assert all(every.add_frame(int((1 + 0.001 * i) * S), "cam", wall_frame(8), CAM_FROM_GRID, lookup).publish
               for i in range(3))


def test_time_jump_and_clear_forget_the_map():
    f = fusion()
    lookup = pose_lookup(np.eye(4))
    f.add_frame(3 * S, "cam", wall_frame(8), CAM_FROM_GRID, lookup)
    f.time_jump()
    assert f.map.frames_integrated == 0 and f.counters.resets == 1 and f.snapshot().stamp_ns == 0
    f.add_frame(1 * S, "cam", wall_frame(8), CAM_FROM_GRID, lookup)  # the earlier stamp is no second reset
    assert f.counters.resets == 1 and f.map.frames_integrated == 1
    assert f.clear() == "cleared the map of 1 frame(s)"
    snap = f.snapshot()
    assert snap.frames == 0 and not snap.dense.observed.any() and snap.stamp_ns == 1 * S
    out = f.add_frame(2 * S, "cam", wall_frame(8), CAM_FROM_GRID, lookup)
    assert out.publish and f.map.frames_integrated == 1


def test_save_writes_npz_and_ply_that_reload_to_the_same_map(tmp_path):
    f = fusion(**{"mapping.save_dir": str(tmp_path / "maps")})
    f.add_frame(1 * S + 5, "cam", wall_frame(8), CAM_FROM_GRID, pose_lookup(translation(1.0)))
    f.add_frame(2 * S, "cam", wall_frame(9), CAM_FROM_GRID, pose_lookup(translation(2.0)))
    npz, ply = f.save()
    assert npz == tmp_path / "maps" / "map_2.000000000.npz" and ply == npz.with_suffix(".ply")
    assert ply.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert sorted(p.name for p in npz.parent.iterdir()) == [npz.name, ply.name]  # no temporary files left
    loaded, now = SemanticMap.load(npz).dense(), f.snapshot().dense
    assert loaded.origin_index == now.origin_index
    for name in ("log_odds", "observations", "labels", "confidence"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(now, name), err_msg=name)
    assert f.counters.saves == 1
    other = f.save(tmp_path / "given.npz")
    assert other[0] == tmp_path / "given.npz"
    assert _ply_vertices(ply) == np.count_nonzero(now.occupied)


def _ply_vertices(path) -> int:
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    return int(next(line.split()[-1] for line in header.splitlines() if line.startswith("element vertex")))


def test_with_surface_only_the_ply_holds_the_surface_voxels(tmp_path):
    from scenedino_core.surface import exposed_voxels

    f = fusion(**{"points.surface_only": True})
    result = wall_frame(8)
    thick = result.voxel_labels.copy(), result.voxel_occupancy.copy()
    thick[0][6:11, :, :5], thick[1][6:11, :, :5] = WALL_CLASS, 90
    f.add_frame(1 * S, "cam", Result(GRID, *thick), CAM_FROM_GRID, pose_lookup(np.eye(4)))
    npz, ply = f.save(tmp_path / "m.npz")
    d = SemanticMap.load(npz).dense()
    assert _ply_vertices(ply) == np.count_nonzero(exposed_voxels(d.occupied)) < np.count_nonzero(d.occupied)


def test_save_copies_the_map_so_fusion_can_go_on(tmp_path, monkeypatch):
    """The file is written from a copy made under the lock: a frame fused while it is written is not in it."""
    f = fusion()
    lookup = pose_lookup(np.eye(4))
    f.add_frame(1 * S, "cam", wall_frame(8), CAM_FROM_GRID, lookup)
    writing, release = threading.Event(), threading.Event()
    original = SemanticMap.save

    def slow_save(self, path, palette=None):
        writing.set()
        assert release.wait(30)
        return original(self, path, palette)

    monkeypatch.setattr(SemanticMap, "save", slow_save)
    saver = threading.Thread(target=lambda: f.save(tmp_path / "m.npz"))
    saver.start()
    assert writing.wait(30)
    assert f.add_frame(2 * S, "cam", wall_frame(9), CAM_FROM_GRID, lookup).fused  # the lock is free meanwhile
    release.set()
    saver.join(30)
    assert SemanticMap.load(tmp_path / "m.npz").frames_integrated == 1 and f.map.frames_integrated == 2


def test_cached_poses_wait_for_a_late_transform_up_to_the_timeout():
    cache = TransformCache(cache_s=100.0)
    cache.set_transform("base_link", "cam", 0, GRID_FROM_CAMERA, static=True)
    poses = CachedPoses(cache, timeout_s=60.0, poll_s=0.001)
    arrived = threading.Timer(0.05, lambda: cache.set_transform("odom", "base_link", 5 * S, translation(2.0)))
    arrived.start()
    got = poses.lookup("odom", "cam", 5 * S)  # waits until the transform is there
    np.testing.assert_allclose(got, translation(2.0) @ GRID_FROM_CAMERA)
    with pytest.raises(TransformLookupError, match="extrapolation"):
        CachedPoses(cache, timeout_s=0.0).lookup("odom", "cam", 9 * S)
    poses.clear()
    with pytest.raises(TransformLookupError):
        CachedPoses(cache, timeout_s=0.0).lookup("odom", "cam", 5 * S)
    np.testing.assert_allclose(cache.lookup("base_link", "cam", 7 * S), GRID_FROM_CAMERA)  # statics stay


# ----------------------------------------------------------------------------- messages

def test_map_messages_are_in_the_map_frame_and_agree_with_each_other():
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    pytest.importorskip("scenedino_ros.msg", reason="scenedino_ros.msg is not generated (scripts/build_msgs.sh)")
    from scenedino_core.labels import class_table
    from scenedino_ros.map_outputs import MAP_OUTPUT_NAMES, map_messages
    from scenedino_ros.messages import CLOUD_DTYPE

    names, palette = class_table(())
    f = fusion()
    ground = translation(10.0)
    ground[2, 3] = 0.5  # the ground below the camera is 0.5 m above the map's z = 0
    f.add_frame(7 * S + 3, "cam", wall_frame(8), CAM_FROM_GRID, pose_lookup(ground))
    snap = f.snapshot()
    msgs = dict(map_messages(snap, f.settings, names, palette))
    assert list(msgs) == list(MAP_OUTPUT_NAMES)
    for msg in msgs.values():
        assert msg.header.frame_id == "odom" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 3)

    cloud = np.frombuffer(bytes(msgs["map/semantic_points"].data), CLOUD_DTYPE)
    d = snap.dense
    assert len(cloud) == np.count_nonzero(d.occupied) == 16 * 4
    np.testing.assert_allclose(np.unique(cloud["x"]), [14.25])
    assert set(cloud["label"].tolist()) == {WALL_CLASS} and np.all(cloud["confidence"] > 0.5)

    grid = msgs["map/voxel_grid"]
    assert (grid.size_x, grid.size_y, grid.size_z) == d.labels.shape and grid.resolution == 0.5
    assert grid.origin.position.x == pytest.approx(d.origin_index[0] * 0.5)
    labels = np.frombuffer(bytes(grid.labels), np.uint8).reshape(d.labels.shape[::-1]).transpose(2, 1, 0)
    np.testing.assert_array_equal(labels, d.labels)
    occupancy = np.frombuffer(bytes(grid.occupancy), np.uint8).reshape(d.labels.shape[::-1]).transpose(2, 1, 0)
    assert np.all((occupancy == OCCUPANCY_UNKNOWN) == ~d.observed) and np.all(occupancy[d.occupied] > 50)

    occ = msgs["map/occupancy"]
    bev = np.asarray(occ.data, np.int8).reshape(occ.info.height, occ.info.width)
    assert (occ.info.width, occ.info.height) == d.labels.shape[:2]
    assert occ.info.origin.position.z == pytest.approx(0.5)  # drawn at the ground below the camera
    # the band 0.2 .. 2.0 m above that ground: map z 0.7 .. 2.5 m, where the wall (map z 0.5 .. 2.5 m) is
    wall_cells = {tuple(c) for c in np.argwhere(bev.T == 100).tolist()}
    assert wall_cells == {tuple(c) for c in np.argwhere(d.occupied.any(axis=2)).tolist()}
    assert (bev == 0).any() and (bev == -1).any()


def test_surface_only_map_cloud_holds_the_exposed_voxels():
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    from scenedino_core.surface import exposed_voxels
    from scenedino_ros.map_outputs import occupied_points

    f = fusion()
    result = wall_frame(8)
    thick = result.voxel_labels.copy(), result.voxel_occupancy.copy()
    thick[0][6:11, :, :5], thick[1][6:11, :, :5] = WALL_CLASS, 90
    f.add_frame(1 * S, "cam", Result(GRID, *thick), CAM_FROM_GRID, pose_lookup(np.eye(4)))
    snap = f.snapshot()
    all_points = occupied_points(snap, surface_only=False)[0]
    surface = occupied_points(snap, surface_only=True)[0]
    assert len(surface) == np.count_nonzero(exposed_voxels(snap.dense.occupied)) < len(all_points)
