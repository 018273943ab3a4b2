"""The node's local semantic map with real rclpy: the node (tiny model, small grid and window) runs as a subprocess
started with the launch_ros command line; the test publishes camera frames and their poses on /tf and /tf_static
(as a robot or ``scenedino-replay`` does), receives ``~/map/*`` and ``/diagnostics`` and calls ``~/map/clear`` and
``~/map/save``.

Run through scripts/test.sh (loopback-only DDS, private network namespace). No wall-clock thresholds: timeouts only
catch hangs.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')
pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from scenedino_core.mapping import SemanticMap  # noqa: E402
from scenedino_core.mapping.observation import OCCUPANCY_UNKNOWN  # noqa: E402
from scenedino_ros.frames import camera_pose_from_rpy, matrix_to_xyz_quat  # noqa: E402
from scenedino_ros.messages import CLOUD_DTYPE  # noqa: E402
from scenedino_ros.msg import SemanticVoxelGrid  # noqa: E402
from test_ros_node import (  # noqa: E402
    CAMERA_FRAME,
    OUT,
    OUTPUT_TIMEOUT_S,
    SMALL_GRID,
    Harness,
    NodeProcess,
    launch_command,
    ros_time,
    stamp_of,
)

S = 1_000_000_000
#: A small map window: 32 x 32 x 8 voxels of 0.5 m, published after every fused frame.
SMALL_MAP = {'mapping.enabled': 'true', 'mapping.frame': 'odom', 'mapping.voxel_size_m': '0.5',
             'mapping.size_m': '[16.0,16.0,4.0]', 'mapping.center_offset_m': '[4.0,0.0,0.5]',
             'mapping.publish_rate_hz': '0.0'}
MAP_OUTPUTS = {'map/occupancy': OccupancyGrid, 'map/semantic_points': PointCloud2,
               'map/voxel_grid': SemanticVoxelGrid}
#: base_link -> camera optical frame: the camera 1.5 m up, looking forward (the node's default camera_pose.*).
BASE_FROM_CAMERA = camera_pose_from_rpy([0.0, 0.0, 1.5], [0.0, 0.0, 0.0])


def transform(parent: str, child: str, stamp_ns: int, T: np.ndarray) -> TransformStamped:
    (x, y, z), (qx, qy, qz, qw) = matrix_to_xyz_quat(T)
    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = ros_time(stamp_ns), parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = x, y, z
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = qx, qy, qz, qw
    return t


def odom_from_base(x_m: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x_m
    return T


class MapHarness(Harness):
    """The camera harness plus /tf and /tf_static publishers, map subscriptions and the map services."""

    def __init__(self, context, camera_ns: str):
        super().__init__(context, camera_ns)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_tf = self.node.create_publisher(TFMessage, '/tf', QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.pub_tf_static = self.node.create_publisher(TFMessage, '/tf_static', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        for name, msg_type in MAP_OUTPUTS.items():
            self.node.create_subscription(msg_type, f'{OUT}/{name}', self._store(name),
                                          latched if name == 'map/occupancy' else reliable)
        self.clear = self.node.create_client(Trigger, f'{OUT}/map/clear')
        self.save = self.node.create_client(Trigger, f'{OUT}/map/save')

    def publish_static(self) -> None:
        self.pub_tf_static.publish(TFMessage(transforms=[transform('base_link', CAMERA_FRAME, 0, BASE_FROM_CAMERA)]))

    def publish_pose(self, stamp_ns: int, x_m: float) -> None:
        self.pub_tf.publish(TFMessage(transforms=[transform('odom', 'base_link', stamp_ns, odom_from_base(x_m))]))

    def call(self, client, timeout: float = OUTPUT_TIMEOUT_S):
        assert client.wait_for_service(timeout), f'{client.srv_name} is not offered'
        future = client.call_async(Trigger.Request())
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        assert future.done(), f'{client.srv_name} did not answer'
        return future.result()

    def map_diagnostics(self, after: float = 0.0) -> dict[str, str]:
        with self._cond:
            msgs = [m for t, m in self.received['diagnostics'] if t >= after
                    and m.status and m.status[0].name == 'scenedino: map']
        assert msgs, 'no map diagnostics from the node'
        status = msgs[-1].status[0]
        return {'_level': status.level, '_message': status.message, **{kv.key: kv.value for kv in status.values}}

    def wait_map_diagnostics(self, key: str, value: str, timeout: float = OUTPUT_TIMEOUT_S) -> dict[str, str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                diag = self.map_diagnostics()
                if diag.get(key) == value:
                    return diag
            except AssertionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f'map diagnostics never had {key} = {value}')

    def count(self, name: str, stamp_ns: int) -> int:
        with self._cond:
            return sum(1 for _, m in self.received[name] if stamp_of(m) == stamp_ns)


@pytest.fixture
def start_map_node(tmp_path, ros_context, tiny_checkpoint):
    started = []

    def start(camera_ns: str, overrides: dict[str, str] | None = None, executable: str | None = None,
              connect: bool = True):
        settings = {**SMALL_GRID, **SMALL_MAP, 'input.reliability': 'reliable', 'diagnostics.period_s': '0.5',
                    'checkpoint': str(tiny_checkpoint), 'mapping.save_dir': str(tmp_path / 'maps'),
                    **(overrides or {})}
        harness = MapHarness(ros_context, camera_ns)
        cmd = launch_command(harness.image_topic, harness.info_topic, settings)
        if executable:
            cmd[0] = executable
        node = NodeProcess(cmd, tmp_path / f'map_node_{camera_ns.strip("/")}.log')
        started.append((node, harness))
        if connect:
            harness.wait_connected(node)
            end = time.monotonic() + OUTPUT_TIMEOUT_S
            while not all(harness.node.count_publishers(f'{OUT}/{n}') for n in MAP_OUTPUTS):
                assert time.monotonic() < end, f'no map publishers:\n{node.log()[-3000:]}'
                time.sleep(0.05)
            node.wait_for_log(r'map: fusing every frame into .odom.')
        return node, harness

    yield start
    for node, harness in started:
        node.stop()
        harness.close()


def _grid_arrays(msg: SemanticVoxelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels [x, y, z], occupancy [x, y, z], map index of voxel 0) of a map voxel grid."""
    shape = (msg.size_z, msg.size_y, msg.size_x)
    labels = np.frombuffer(bytes(msg.labels), np.uint8).reshape(shape).transpose(2, 1, 0)
    occupancy = np.frombuffer(bytes(msg.occupancy), np.uint8).reshape(shape).transpose(2, 1, 0)
    p = msg.origin.position
    origin = np.rint(np.array([p.x, p.y, p.z]) / msg.resolution).astype(np.int64)
    assert [msg.origin.orientation.w, msg.origin.orientation.x] == pytest.approx([1.0, 0.0])  # axis-aligned
    return labels, occupancy, origin


def _observed(msg: SemanticVoxelGrid) -> set[tuple[int, int, int]]:
    """Map indices of the observed voxels of a map voxel grid."""
    _, occupancy, origin = _grid_arrays(msg)
    return {tuple(v) for v in (np.argwhere(occupancy != OCCUPANCY_UNKNOWN) + origin).tolist()}


# ----------------------------------------------------------------------------- with poses

def test_map_topics_arrive_in_the_map_frame_and_two_frames_fuse(start_map_node):
    node, harness = start_map_node('/map_e2e')
    harness.publish_static()
    frames = [(3000 * S, 0.0), (3001 * S, 4.0)]
    grids, reach = [], []
    for stamp, x in frames:
        harness.publish_pose(stamp, x)
        time.sleep(0.2)  # the pose arrives before the image, as a robot's TF runs ahead of its camera
        harness.publish(stamp)
        per_frame = harness.wait_all(stamp)
        assert per_frame['semantic_points'].header.frame_id == CAMERA_FRAME  # the per-frame outputs are unchanged
        out = {name: harness.wait_for(name, stamp) for name in MAP_OUTPUTS}
        for name, msg in out.items():
            assert msg.header.frame_id == 'odom', name
        grids.append(out['map/voxel_grid'])

        # the cloud's points are the grid's occupied voxels, in the odom frame, with the same labels
        cloud = np.frombuffer(bytes(out['map/semantic_points'].data), CLOUD_DTYPE)
        labels, occupancy, origin = _grid_arrays(out['map/voxel_grid'])
        occupied = (labels != SemanticVoxelGrid.FREE) & (labels != SemanticVoxelGrid.UNKNOWN)
        assert len(cloud) == np.count_nonzero(occupied) > 0
        index = np.floor(np.stack([cloud['x'], cloud['y'], cloud['z']], 1) / 0.5).astype(np.int64) - origin
        np.testing.assert_array_equal(labels[tuple(index.T)], cloud['label'])
        assert np.all(cloud['x'] >= 0.0)  # in front of the first camera pose in odom (x forward)
        reach.append(float(cloud['x'].max()))
        grid_map = out['map/occupancy']
        assert (grid_map.info.width, grid_map.info.height) == (32, 32) and grid_map.info.resolution == 0.5
        assert grid_map.info.origin.position.x == pytest.approx(origin[0] * 0.5)

    assert reach[1] == reach[0] + 4.0  # the second camera, 4 m further along x, sees 4 m further
    # the map of both frames holds what each saw: more than either frame alone
    both = _observed(grids[1])
    first = _observed(grids[0])
    assert first < both
    harness.call(harness.clear)
    stamp = 3002 * S
    harness.publish_pose(stamp, 4.0)  # the second frame's pose again, into the cleared map
    time.sleep(0.2)
    harness.publish(stamp)
    second = _observed(harness.wait_for('map/voxel_grid', stamp))
    assert second < both and first != second

    diag = harness.wait_map_diagnostics('frames_fused', '3')
    assert diag['_level'] == DiagnosticStatus.OK and diag['frames_in_map'] == '1' and diag['map_clears'] == '1'
    assert diag['frames_without_pose'] == '0' and diag['map_frame'] == 'odom'
    assert '/tf and /tf_static' in diag['poses_from']  # no tf2_ros in the wheels: the node's TransformCache
    assert int(diag['occupied_voxels']) > 0 and int(diag['state_bytes']) == 32 * 32 * 8 * 20

    # a stamp jumping back (a bag played again) resets the map
    stamp = 2000 * S
    harness.publish_pose(stamp, 0.0)
    time.sleep(0.2)
    harness.publish(stamp)
    harness.wait_for('map/voxel_grid', stamp)
    node.wait_for_log(r'image stamps jumped back: the map was reset')
    diag = harness.wait_map_diagnostics('frames_fused', '4')
    assert diag['frames_in_map'] == '1' and int(diag['map_resets']) >= 1
    assert node.stop() == 0, node.log()[-2000:]


def test_clear_and_save_services(start_map_node, tmp_path):
    node, harness = start_map_node('/map_services')
    harness.publish_static()
    for stamp, x in [(4000 * S, 0.0), (4001 * S + 500_000_000, 2.0)]:
        harness.publish_pose(stamp, x)
        time.sleep(0.2)
        harness.publish(stamp)
        last = harness.wait_for('map/voxel_grid', stamp)

    reply = harness.call(harness.save)
    assert reply.success, reply.message
    m = re.search(r'to (\S+\.npz) and (\S+\.ply)$', reply.message)
    assert m and '2 frame(s)' in reply.message, reply.message
    npz, ply = Path(m.group(1)), Path(m.group(2))
    assert npz == tmp_path / 'maps' / 'map_4001.500000000.npz' and npz.is_file() and ply.is_file()
    assert ply.read_bytes().startswith(b'ply\n')
    saved = SemanticMap.load(npz)
    assert saved.frames_integrated == 2 and saved.last_stamp_ns == 4001 * S + 500_000_000
    d = saved.dense()
    labels, occupancy, origin = _grid_arrays(last)
    assert tuple(origin) == d.origin_index
    np.testing.assert_array_equal(labels, d.labels)  # the saved map is the one last published
    np.testing.assert_array_equal(occupancy, np.where(d.observed, np.rint(d.probability * 100), 255))

    reply = harness.call(harness.clear)
    assert reply.success and reply.message == 'cleared the map of 2 frame(s)'
    end = time.monotonic() + OUTPUT_TIMEOUT_S  # the cleared map is published at once, with the last stamp
    while harness.count('map/voxel_grid', 4001 * S + 500_000_000) < 2:
        assert time.monotonic() < end, 'the cleared map was not published'
        time.sleep(0.05)
    with harness._cond:
        cleared = [m for _, m in harness.received['map/voxel_grid']][-1]
    assert not _observed(cleared)
    reply = harness.call(harness.save)
    assert reply.success and '0 frame(s)' in reply.message
    assert SemanticMap.load(re.search(r'to (\S+\.npz)', reply.message).group(1)).frames_integrated == 0
    node.wait_for_log(r'~/map/save: saved the map')


# ----------------------------------------------------------------------------- without poses

def test_frames_without_a_pose_keep_their_outputs_and_are_counted(start_map_node):
    node, harness = start_map_node('/map_nopose', {'log_throttle_s': '60.0'})
    stamps = [5000 * S + i * 100_000_000 for i in range(3)]
    for i, stamp in enumerate(stamps):  # no /tf at all
        harness.publish(stamp)
        out = harness.wait_all(stamp)  # every per-frame output
        assert out['semantic_points'].width > 0
        diag = harness.wait_map_diagnostics('frames_without_pose', str(i + 1))  # the count rises frame by frame
    assert diag['_level'] == DiagnosticStatus.WARN and diag['frames_fused'] == '0'
    assert 'no pose in odom' in diag['_message'] and "'odom' has not been received" in diag['last_no_pose']
    assert not any(harness.count(name, s) for name in MAP_OUTPUTS for s in stamps)  # nothing fused, nothing published
    log = node.log()
    assert re.search(r'frame at 5000\.000 s is not in the map: no pose of front_camera_optical in odom at its '
                     r'stamp .*its per-frame outputs were published \[1 frame\(s\) without a pose\]', log)
    assert log.count('is not in the map') == 1  # throttled (log_throttle_s 60)

    # once the poses come, frames are fused
    harness.publish_static()
    stamp = 5001 * S
    harness.publish_pose(stamp, 1.0)
    time.sleep(0.2)
    harness.publish(stamp)
    assert harness.wait_for('map/voxel_grid', stamp).header.frame_id == 'odom'
    diag = harness.wait_map_diagnostics('frames_fused', '1')
    assert diag['frames_without_pose'] == '3'


# ----------------------------------------------------------------------------- the managed node

def test_lifecycle_transitions_create_and_remove_the_map_outputs(start_map_node):
    from lifecycle_msgs.msg import State, Transition
    from test_lifecycle_node import Lifecycle, lifecycle_executable

    node, harness = start_map_node('/map_managed', executable=lifecycle_executable(), connect=False)
    lifecycle = Lifecycle(harness)

    def map_publishers() -> int:
        return sum(harness.node.count_publishers(f'{OUT}/{n}') for n in MAP_OUTPUTS)

    def wait(predicate, what):
        end = time.monotonic() + OUTPUT_TIMEOUT_S
        while not predicate():
            assert time.monotonic() < end, f'timed out waiting for {what}:\n{node.log()[-3000:]}'
            time.sleep(0.05)

    assert lifecycle.set(Transition.TRANSITION_CONFIGURE)
    assert map_publishers() == 0 and not harness.clear.service_is_ready()
    assert lifecycle.set(Transition.TRANSITION_ACTIVATE)
    wait(lambda: map_publishers() == 3 and harness.clear.service_is_ready(), 'the map outputs and services')
    assert lifecycle.set(Transition.TRANSITION_DEACTIVATE)
    wait(lambda: map_publishers() == 0 and not harness.clear.service_is_ready(), 'the map outputs to go away')
    assert lifecycle.set(Transition.TRANSITION_CLEANUP)
    assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.proc.poll() is None
