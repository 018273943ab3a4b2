"""scenedino_ros.messages: numpy -> ROS messages, cross-checked with independent readers (no node)."""
import time

import numpy as np
import pytest

pytest.importorskip('sensor_msgs.msg', reason='ROS 2 message packages are not installed')
pointcloud2 = pytest.importorskip('pointcloud2', reason='the independent PointCloud2 reader (pip pointcloud2)')

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from scenedino_ros import messages  # noqa: E402
from scenedino_ros.conversions import image_to_rgb  # noqa: E402
from scenedino_ros.frames import camera_pose_from_rpy  # noqa: E402


def _header(frame='base_link'):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = 1234, 5678
    return h


def _cloud_inputs(n=500, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)).astype(np.float32) * 10
    labels = rng.integers(1, 16, n).astype(np.uint8)
    colors = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    conf = rng.random(n).astype(np.float32)
    return pts, labels, colors, conf


def test_cloud_layout_is_4_byte_aligned_pcl_style():
    pts, labels, colors, conf = _cloud_inputs()
    msg = messages.semantic_cloud(_header(), pts, labels, colors, conf)
    fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert fields == [('x', 0, PointField.FLOAT32, 1), ('y', 4, PointField.FLOAT32, 1),
                      ('z', 8, PointField.FLOAT32, 1), ('rgb', 12, PointField.FLOAT32, 1),
                      ('label', 16, PointField.UINT32, 1), ('confidence', 20, PointField.FLOAT32, 1)]
    assert all(off % 4 == 0 for _, off, _, _ in fields)
    assert msg.point_step == 24 and msg.row_step == 24 * len(pts) and len(msg.data) == 24 * len(pts)
    assert (msg.height, msg.width, msg.is_bigendian, msg.is_dense) == (1, len(pts), False, True)
    assert msg.header.frame_id == 'base_link' and msg.header.stamp.sec == 1234


def test_cloud_matches_the_independent_pointcloud2_reader():
    pts, labels, colors, conf = _cloud_inputs()
    msg = messages.semantic_cloud(_header(), pts, labels, colors, conf)
    got = pointcloud2.read_points(msg)
    np.testing.assert_array_equal(np.stack([got['x'], got['y'], got['z']], axis=1), pts)
    np.testing.assert_array_equal(got['label'], labels.astype(np.uint32))
    np.testing.assert_array_equal(got['confidence'], conf)
    rgb_bits = np.ascontiguousarray(got['rgb']).view(np.uint32)  # PCL: packed 0x00RRGGBB in a float32 field
    np.testing.assert_array_equal(rgb_bits >> 16 & 0xFF, colors[:, 0])
    np.testing.assert_array_equal(rgb_bits >> 8 & 0xFF, colors[:, 1])
    np.testing.assert_array_equal(rgb_bits & 0xFF, colors[:, 2])


def test_cloud_matches_sensor_msgs_py_where_importable():
    point_cloud2 = pytest.importorskip('sensor_msgs_py.point_cloud2',
                                       reason='sensor_msgs_py is not on PyPI; runs with a ROS 2 distribution')
    pts, labels, colors, conf = _cloud_inputs()
    msg = messages.semantic_cloud(_header(), pts, labels, colors, conf)
    got = point_cloud2.read_points_numpy(msg, field_names=['x', 'y', 'z'])
    np.testing.assert_array_equal(got, pts)


def test_cloud_survives_cdr_serialisation():
    serialization = pytest.importorskip('rclpy.serialization', reason='rclpy is not installed')
    from sensor_msgs.msg import PointCloud2
    pts, labels, colors, conf = _cloud_inputs(50)
    msg = messages.semantic_cloud(_header(), pts, labels, colors, conf)
    back = serialization.deserialize_message(serialization.serialize_message(msg), PointCloud2)
    np.testing.assert_array_equal(pointcloud2.read_points(back)['label'], labels)


def test_empty_cloud_and_length_mismatch():
    msg = messages.semantic_cloud(_header(), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), np.zeros(0))
    assert msg.width == 0 and len(msg.data) == 0 and len(msg.fields) == 6
    with pytest.raises(ValueError, match='same length'):
        messages.semantic_cloud(_header(), np.zeros((2, 3)), np.zeros(1), np.zeros((2, 3)), np.zeros(2))


def test_occupancy_grid_layout_and_origin():
    bev = np.full((3, 5), -1, np.int8)  # rows = y, cols = x
    bev[1, 4] = 100
    bev[2, 0] = 0
    origin = camera_pose_from_rpy([1.0, 2.0, 3.0], [0.0, 0.0, 90.0])
    msg = messages.occupancy_grid(_header(), bev, 0.25, origin)
    assert (msg.info.width, msg.info.height, msg.info.resolution) == (5, 3, 0.25)
    data = np.asarray(msg.data, dtype=np.int8)
    assert data[4 + 1 * 5] == 100 and data[0 + 2 * 5] == 0 and (data == -1).sum() == 13
    assert msg.info.map_load_time == msg.header.stamp
    assert (msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.position.z) == (1.0, 2.0, 3.0)
    q = msg.info.origin.orientation
    assert np.isclose(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2, 1.0)
    with pytest.raises(ValueError, match='int8'):
        messages.occupancy_grid(_header(), bev.astype(np.int16), 0.25, origin)


def test_markers_one_cube_list_per_class_capped():
    rng = np.random.default_rng(1)
    centres = rng.random((1000, 3))
    labels = rng.integers(1, 4, 1000)
    palette = np.arange(48, dtype=np.uint8).reshape(16, 3) * 5
    arr = messages.voxel_markers(_header(), centres, labels, palette, 0.2, np.eye(4), max_voxels=300)
    assert arr.markers[0].action == Marker.DELETEALL
    cubes = arr.markers[1:]
    assert sorted(m.id for m in cubes) == [1, 2, 3]
    assert all(m.type == Marker.CUBE_LIST and m.scale.x == pytest.approx(0.2) for m in cubes)
    assert sum(len(m.points) for m in cubes) == 300
    m2 = next(m for m in cubes if m.id == 2)
    assert (m2.color.r, m2.color.g, m2.color.b) == pytest.approx(tuple(palette[2] / 255.0))
    assert messages.voxel_markers(_header(), centres, labels, palette, 0.2, np.eye(4), 0).markers[0].action == \
        Marker.DELETEALL


def test_images_round_trip():
    rgb = np.random.default_rng(2).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    msg = messages.rgb_image(_header('cam'), rgb)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ('rgb8', 27, 7, 9)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    depth = np.linspace(0.5, 80, 63, dtype=np.float32).reshape(7, 9)
    d = messages.depth_image(_header('cam'), depth)
    assert (d.encoding, d.step, d.is_bigendian) == ('32FC1', 36, False)
    np.testing.assert_array_equal(np.frombuffer(d.data, '<f4').reshape(7, 9), depth)


def test_semantic_voxel_grid_layout():
    msg_mod = pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated '
                                  '(scripts/build_msgs.sh or colcon build)')
    labels = np.full((4, 3, 2), msg_mod.SemanticVoxelGrid.FREE, np.uint8)  # (X, Y, Z)
    labels[3, 1, 1] = 9
    occ = np.zeros_like(labels)
    occ[3, 1, 1] = 87
    palette = np.zeros((16, 3), np.uint8)
    palette[9] = (255, 200, 0)
    msg = messages.semantic_voxel_grid(_header(), np.eye(4), 0.5, labels, occ, [f'c{i}' for i in range(16)], palette)
    assert (msg.size_x, msg.size_y, msg.size_z, msg.resolution) == (4, 3, 2, 0.5)
    flat = np.frombuffer(msg.labels, np.uint8)
    assert np.flatnonzero(flat != msg_mod.SemanticVoxelGrid.FREE).tolist() == [3 + 4 * (1 + 3 * 1)]
    assert np.frombuffer(msg.occupancy, np.uint8)[3 + 4 * (1 + 3 * 1)] == 87
    assert msg.class_colors[9].g == pytest.approx(200 / 255)


def test_diagnostic_array():
    stamp = _header().stamp
    msg = messages.diagnostic_array(stamp, 'scenedino: inference', 'cpu', 'warn', 'RANDOM WEIGHTS',
                                    {'a': 1.23456, 'b': True, 'c': 'x', 'd': 3})
    s = msg.status[0]
    assert s.level == DiagnosticStatus.WARN and s.hardware_id == 'cpu' and msg.header.stamp == stamp
    assert {kv.key: kv.value for kv in s.values} == {'a': '1.235', 'b': 'true', 'c': 'x', 'd': '3'}


def test_pose_msg_round_trip():
    T = camera_pose_from_rpy([0.5, -0.2, 1.6], [2.0, 7.0, -30.0])
    p = messages.pose_msg(T)
    from scipy.spatial.transform import Rotation
    R = Rotation.from_quat([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w]).as_matrix()
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-12)
    assert (p.position.x, p.position.y, p.position.z) == pytest.approx((0.5, -0.2, 1.6))
    np.testing.assert_allclose(messages.translated(T, (1, 0, 0))[:3, 3], T[:3, 3] + T[:3, 0])


def test_build_cost_of_large_messages_is_reported():
    """Not a threshold: prints build times so regressions are visible in the log (-s)."""
    pts, labels, colors, conf = _cloud_inputs(200_000)
    t = time.perf_counter()
    messages.semantic_cloud(_header(), pts, labels, colors, conf)
    cloud_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    messages.voxel_markers(_header(), pts, labels, np.zeros((16, 3), np.uint8), 0.2, np.eye(4), 20_000)
    markers_ms = (time.perf_counter() - t) * 1e3
    print(f'\nPointCloud2 200k points: {cloud_ms:.1f} ms; MarkerArray capped at 20k cubes: {markers_ms:.1f} ms')
