"""scenedino-process-bag with the local semantic map: a synthetic KITTI-360 drive converted to a bag (with its /tf and
/tf_static) is processed with the KITTI-360 parameters (mapping on, in ``map``); the map topics are written, the
map's camera poses are the world's, the final map is saved beside the bag; a bag without TF keeps its per-frame
outputs and counts the frames without a pose.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')
pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')

from rosbags.interfaces import QosDurability  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from test_process_bag import (  # noqa: E402
    SMALL_GRID,
    camera_info,
    camera_records,
    raw_image,
    read_bag,
    street,
    tiny_params,
    write_bag,
)

from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360  # noqa: E402
from scenedino_core.mapping import SemanticMap  # noqa: E402
from scenedino_ros.bag import kitti360  # noqa: E402
from scenedino_ros.bag.process import MAP_FILE, output_topic_types, process_bag  # noqa: E402
from scenedino_ros.msg import SemanticVoxelGrid  # noqa: E402
from scenedino_ros.params_file import default_params_files, load_params  # noqa: E402

SEQ = '2013_05_28_drive_0000_sync'
FRAMES = 4
#: A coarse map: 64 x 64 x 8 voxels of 0.8 m, written after every fused frame.
COARSE_MAP = ['mapping.voxel_size_m:=0.8', 'mapping.publish_rate_hz:=0.0']
MAP_TOPICS = ('/scenedino/map/occupancy', '/scenedino/map/semantic_points', '/scenedino/map/voxel_grid')


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    """(world, bag) of a 4-frame synthetic drive (camera 00 only, raw images)."""
    root = tmp_path_factory.mktemp('map_drive')
    world = StreetWorld.generate(3, StreetConfig(num_frames=FRAMES))
    write_kitti360(world, root / 'kitti360', SEQ, range(FRAMES), full_size=(94, 352), image_size=(16, 48),
                   semantics=False)
    bag = root / 'bag'
    kitti360.convert(root / 'kitti360', SEQ, bag, cameras=('image_00',), progress=False)
    return world, bag


def _grid(msg: SemanticVoxelGrid) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    shape = (msg.size_z, msg.size_y, msg.size_x)
    labels = np.frombuffer(bytes(msg.labels), np.uint8).reshape(shape).transpose(2, 1, 0)
    occupancy = np.frombuffer(bytes(msg.occupancy), np.uint8).reshape(shape).transpose(2, 1, 0)
    p = msg.origin.position
    return labels, occupancy, tuple(int(v) for v in np.rint(np.array([p.x, p.y, p.z]) / msg.resolution))


def test_a_converted_drive_is_fused_at_the_bags_tf_poses(drive, tiny_checkpoint, tmp_path):
    world, bag = drive
    p = load_params(default_params_files(), [f'checkpoint:={tiny_checkpoint}', *SMALL_GRID, *COARSE_MAP])
    assert p.mapping_enabled and p.mapping_frame == 'map'  # config/kitti360.yaml
    assert set(MAP_TOPICS) <= set(output_topic_types(p))  # what the live view advertises
    seen = []
    out = tmp_path / 'out'
    summary = process_bag(bag, out, p, on_frame=seen.append, progress=False)
    assert (summary.frames_processed, summary.frames_skipped) == (FRAMES, 0)
    m = summary.map_statistics
    assert (m['frames_fused'], m['frames_without_pose'], m['frames_in_map']) == (FRAMES, 0, FRAMES)
    assert m['files'] == ['map.npz', 'map.ply'] and m['map_frame'] == 'map'

    # the camera pose the map used is the world's camera 00 (the bag's map frame is the world frame)
    for frame in seen:
        assert frame.map_outcome.fused and frame.map is seen[0].map
    np.testing.assert_allclose(seen[-1].map.snapshot().map_from_camera, world.camera_to_world(FRAMES - 1, 'image_00'),
                               atol=1e-6)

    written = read_bag(out)
    stamps = [f.stamp_ns for f in seen]
    for topic in MAP_TOPICS:
        assert [ns for ns, _ in written[topic]] == stamps, topic  # after every fused frame (publish_rate_hz 0)
        assert all(msg.header.frame_id == 'map' and msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == ns
                   for ns, msg in written[topic])
    assert [t for t, _ in seen[0].messages][-3:] == list(MAP_TOPICS)  # the live view gets them with the frame
    with Reader(out) as reader:
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
    assert qos['/scenedino/map/occupancy'].durability == QosDurability.TRANSIENT_LOCAL
    assert qos['/scenedino/map/voxel_grid'].durability == QosDurability.VOLATILE

    # the map grows along the drive: each frame adds what it sees further down the street
    observed = []
    for _, msg in written['/scenedino/map/voxel_grid']:
        _, occupancy, origin = _grid(msg)
        observed.append({tuple(v) for v in (np.argwhere(occupancy != 255) + origin).tolist()})
    assert all(a < b for a, b in zip(observed, observed[1:], strict=False))

    # the saved map is the last one written, and reloads
    saved = SemanticMap.load(out / MAP_FILE)
    assert saved.frames_integrated == FRAMES and (out / 'map.ply').is_file()
    d = saved.dense()
    labels, _, origin = _grid(written['/scenedino/map/voxel_grid'][-1][1])
    assert origin == d.origin_index
    np.testing.assert_array_equal(labels, d.labels)
    assert json.loads((out / 'summary.json').read_text())['map_statistics']['frames_fused'] == FRAMES
    assert f'{FRAMES} frames fused, 0 without a pose' in (out / 'summary.md').read_text()


def test_a_bag_without_tf_keeps_its_per_frame_outputs(tiny_checkpoint, tmp_path, caplog):
    stamps = [1_700_000_000_000_000_000 + i * 100_000_000 for i in range(3)]
    bag = write_bag(tmp_path / 'in', camera_records([(raw_image(s, street(i)), camera_info(s))
                                                      for i, s in enumerate(stamps)]))
    p = tiny_params(tiny_checkpoint, 'mapping.enabled:=true', *COARSE_MAP)
    summary = process_bag(bag, tmp_path / 'out', p, progress=False)
    assert summary.frames_processed == 3
    m = summary.map_statistics
    assert (m['frames_fused'], m['frames_without_pose'], m['files']) == (0, 3, [])
    written = read_bag(tmp_path / 'out')
    assert len(written['/scenedino/semantic_points']) == 3 and not any(t in written for t in MAP_TOPICS)
    assert not (tmp_path / 'out' / MAP_FILE).exists()
    assert 'the bag has no /tf or /tf_static transforms' in caplog.text
    assert 'frame at 1700000000.000 s is not in the map: no pose of test_camera_optical in odom' in caplog.text


def test_mapping_off_writes_no_map(tiny_checkpoint, tmp_path):
    stamps = [1_700_000_000_000_000_000]
    bag = write_bag(tmp_path / 'in', camera_records([(raw_image(stamps[0], street(0)), camera_info(stamps[0]))]))
    summary = process_bag(bag, tmp_path / 'out', tiny_params(tiny_checkpoint), progress=False)
    assert summary.map_statistics == {}
    with Reader(tmp_path / 'out') as reader:
        assert not [c.topic for c in reader.connections if '/map/' in c.topic]
