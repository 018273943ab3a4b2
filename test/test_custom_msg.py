"""scenedino_ros/msg/SemanticVoxelGrid: numpy fields, constants, layout and a CDR round trip."""
import numpy as np
import pytest

msg = pytest.importorskip(
    'scenedino_ros.msg',
    reason='scenedino_ros.msg is not generated: run scripts/build_msgs.sh (pip venv) or colcon build',
)
serialization = pytest.importorskip('rclpy.serialization', reason='rclpy is not installed')
std_msgs = pytest.importorskip('std_msgs.msg', reason='std_msgs is not installed')

SemanticVoxelGrid = msg.SemanticVoxelGrid
SIZE_X, SIZE_Y, SIZE_Z = 40, 24, 8


def _grid_arrays():
    """Labels and occupancy as numpy arrays of shape (size_z, size_y, size_x), C order."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(SIZE_Z, SIZE_Y, SIZE_X), dtype=np.uint8)
    labels[0, 0, :5] = SemanticVoxelGrid.FREE
    labels[-1, -1, -5:] = SemanticVoxelGrid.UNKNOWN
    occupancy = rng.integers(0, 101, size=labels.shape, dtype=np.uint8)
    occupancy[labels == SemanticVoxelGrid.UNKNOWN] = SemanticVoxelGrid.OCCUPANCY_UNKNOWN
    return labels, occupancy


def _make_msg(labels, occupancy):
    m = SemanticVoxelGrid()
    m.header.stamp.sec = 1_700_000_000
    m.header.stamp.nanosec = 123_456_789
    m.header.frame_id = 'camera_optical_frame'
    m.origin.position.x = -12.8
    m.origin.position.y = -1.0
    m.origin.position.z = 0.5
    m.origin.orientation.w = 1.0
    m.resolution = 0.2
    m.size_x, m.size_y, m.size_z = SIZE_X, SIZE_Y, SIZE_Z
    m.class_names = ['road', 'car', 'vegetation']
    m.class_colors = [
        std_msgs.ColorRGBA(r=0.5, g=0.25, b=0.5, a=1.0),
        std_msgs.ColorRGBA(r=0.0, g=0.0, b=0.55, a=1.0),
        std_msgs.ColorRGBA(r=0.42, g=0.55, b=0.14, a=1.0),
    ]
    m.labels = labels.ravel()
    m.occupancy = occupancy.ravel()
    return m


def test_constants():
    assert SemanticVoxelGrid.FREE == 254
    assert SemanticVoxelGrid.UNKNOWN == 255
    assert SemanticVoxelGrid.OCCUPANCY_UNKNOWN == 255


def test_numpy_fields_round_trip_through_cdr():
    labels, occupancy = _grid_arrays()
    sent = _make_msg(labels, occupancy)

    data = serialization.serialize_message(sent)
    assert len(data) > labels.size + occupancy.size
    got = serialization.deserialize_message(data, SemanticVoxelGrid)

    assert got.header.frame_id == 'camera_optical_frame'
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert (got.origin.position.x, got.origin.position.y, got.origin.position.z) == (-12.8, -1.0, 0.5)
    assert got.origin.orientation.w == 1.0
    assert got.resolution == pytest.approx(0.2)
    assert (got.size_x, got.size_y, got.size_z) == (SIZE_X, SIZE_Y, SIZE_Z)
    assert list(got.class_names) == ['road', 'car', 'vegetation']
    np.testing.assert_array_equal(  # float32 on the wire
        [(c.r, c.g, c.b, c.a) for c in got.class_colors],
        np.float32([(c.r, c.g, c.b, c.a) for c in sent.class_colors]),
    )
    got_labels = np.frombuffer(got.labels, dtype=np.uint8)
    got_occupancy = np.frombuffer(got.occupancy, dtype=np.uint8)
    np.testing.assert_array_equal(got_labels, labels.ravel())
    np.testing.assert_array_equal(got_occupancy, occupancy.ravel())


def test_layout_is_x_fastest():
    """index = x + size_x * (y + size_y * z), i.e. a C-order (z, y, x) numpy array."""
    labels = np.zeros((SIZE_Z, SIZE_Y, SIZE_X), dtype=np.uint8)
    x, y, z = 7, 3, 5
    labels[z, y, x] = 2
    m = _make_msg(labels, np.zeros_like(labels))
    got = serialization.deserialize_message(serialization.serialize_message(m), SemanticVoxelGrid)
    flat = np.frombuffer(got.labels, dtype=np.uint8)
    assert np.flatnonzero(flat).tolist() == [x + got.size_x * (y + got.size_y * z)]
    grid = flat.reshape(got.size_z, got.size_y, got.size_x)
    assert grid[z, y, x] == 2


def test_uint8_fields_reject_out_of_range_values():
    m = SemanticVoxelGrid()
    with pytest.raises((AssertionError, OverflowError)):
        m.labels = [256]
