"""scenedino-process-bag: the node's processing over a bag, offline.

The central test runs the real node in-process (real rclpy, DDS on loopback through scripts/test.sh), publishes the
Image + CameraInfo messages that the test also writes into a bag, and checks that ``process_bag`` writes the same
messages the node published: same topics, stamps, frame ids, layouts and values (integers exactly, floats to 1e-5).
The rest covers the summary, skipped frames, topic selection, copying inputs, the output bag format, the CLI and the
ROS-free parameter-file loader.
"""
from __future__ import annotations

import array
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')
pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')

from builtin_interfaces.msg import Time  # noqa: E402
from nav_msgs.msg import OccupancyGrid  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from ros_spin import spin_in_threads  # noqa: E402
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime  # noqa: E402
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from scenedino_core.images import synthetic_street_image  # noqa: E402
from scenedino_core.labels import SSC_CLASSES  # noqa: E402
from scenedino_ros import params, params_file  # noqa: E402
from scenedino_ros.bag.process import BagError, camera_info_sibling, process_bag  # noqa: E402
from scenedino_ros.cli.process_bag import main  # noqa: E402
from scenedino_ros.messages import CLOUD_DTYPE  # noqa: E402
from scenedino_ros.msg import SemanticVoxelGrid  # noqa: E402
from scenedino_ros.params import ParameterError  # noqa: E402
from scenedino_ros.params_file import ParamsFileError, load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE_PARAMS = REPO / 'config' / 'scenedino.yaml'
#: A small grid so the tiny model answers quickly: 24 x 24 x 7 voxels of 0.5 m.
SMALL_GRID = ['grid.voxel_size_m:=0.5', 'grid.min_m:=[0.0,-6.0,-0.5]', 'grid.max_m:=[12.0,6.0,3.0]']
H, W = 96, 128
CAMERA_FRAME = 'test_camera_optical'
OUTPUTS = {'semantic_points': PointCloud2, 'occupancy': OccupancyGrid, 'voxels': MarkerArray,
           'voxel_grid': SemanticVoxelGrid, 'depth': Image, 'semantics': Image}
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
TIMEOUT_S = 60.0


def ros_time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_of(msg) -> int:
    header = msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def camera_info(stamp_ns: int, width: int = W, height: int = H, k=None) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    f = 0.6 * width
    info.k = list(k) if k is not None else [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.p = [info.k[0], 0.0, info.k[2], 0.0, 0.0, info.k[4], info.k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.stamp, info.header.frame_id = ros_time(stamp_ns), CAMERA_FRAME
    return info


def street(i: int) -> np.ndarray:
    """A different picture per frame: the street scene shifted sideways."""
    return np.ascontiguousarray(np.roll(synthetic_street_image((H, W)), 7 * i, axis=1))


def raw_image(stamp_ns: int, rgb: np.ndarray, encoding: str = 'rgb8') -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3,
                data=rgb.tobytes())
    msg.header.stamp, msg.header.frame_id = ros_time(stamp_ns), CAMERA_FRAME
    return msg


def png_image(stamp_ns: int, rgb: np.ndarray) -> CompressedImage:
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format='png', data=png.tobytes())
    msg.header.stamp, msg.header.frame_id = ros_time(stamp_ns), CAMERA_FRAME
    return msg


def write_bag(path: Path, records, storage=StoragePlugin.MCAP, qos=None) -> Path:
    """records: (topic, msgtype, bag time ns, rclpy message or raw CDR bytes), in time order."""
    writer = Writer(path, version=9, storage_plugin=storage)
    writer.open()
    conns = {}
    for topic, msgtype, ns, msg in records:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                                 offered_qos_profiles=(qos or {}).get(topic, ()))
        writer.write(conns[topic], ns, msg if isinstance(msg, bytes) else serialize_message(msg))
    writer.close()
    return path


def camera_records(frames, image_topic='/cam/image_raw', info_topic='/cam/camera_info'):
    """(image msg, CameraInfo msg or None) pairs -> bag records, bag time = header stamp."""
    out = []
    for image, info in frames:
        ns = stamp_of(image)
        msgtype = 'sensor_msgs/msg/CompressedImage' if isinstance(image, CompressedImage) else 'sensor_msgs/msg/Image'
        out.append((image_topic, msgtype, ns, image))
        if info is not None:
            out.append((info_topic, 'sensor_msgs/msg/CameraInfo', stamp_of(info), info))
    return out


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(bag time, rclpy message)] of every message in a bag."""
    from scenedino_ros.bag.process import _message_class

    out = defaultdict(list)
    with Reader(path) as reader:
        for conn, ns, raw in reader.messages():
            out[conn.topic].append((ns, deserialize_message(bytes(raw), _message_class(conn.msgtype))))
    return out


def tiny_params(checkpoint: Path, *extra: str) -> params.NodeParams:
    return load_params([BASE_PARAMS], [f'checkpoint:={checkpoint}', *SMALL_GRID, *extra])


# ----------------------------------------------------------------------------- message comparison

def assert_same(a, b, where=''):
    """Equal rclpy messages: same types and integers, floats to 1e-5 (also inside PointCloud2 and 32FC1 data)."""
    if hasattr(a, 'get_fields_and_field_types'):
        assert type(a) is type(b), f'{where}: {type(a).__name__} != {type(b).__name__}'
    if isinstance(a, PointCloud2):
        assert_same_fields(a, b, where, skip={'data'})
        pa, pb = np.frombuffer(bytes(a.data), CLOUD_DTYPE), np.frombuffer(bytes(b.data), CLOUD_DTYPE)
        for name in ('rgb', 'label'):
            np.testing.assert_array_equal(pa[name], pb[name], err_msg=f'{where}.data[{name}]')
        for name in ('x', 'y', 'z', 'confidence'):
            np.testing.assert_allclose(pa[name], pb[name], rtol=1e-5, atol=1e-6, err_msg=f'{where}.data[{name}]')
    elif isinstance(a, Image) and a.encoding == '32FC1':
        assert_same_fields(a, b, where, skip={'data'})
        np.testing.assert_allclose(np.frombuffer(bytes(a.data), '<f4'), np.frombuffer(bytes(b.data), '<f4'),
                                   rtol=1e-5, atol=1e-6, err_msg=f'{where}.data')
    elif hasattr(a, 'get_fields_and_field_types'):
        assert_same_fields(a, b, where)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6), where
    elif isinstance(a, (list, tuple)) and a and hasattr(a[0], 'get_fields_and_field_types'):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, (list, tuple, array.array, np.ndarray, bytes)):
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape, where
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=where)
        else:
            np.testing.assert_array_equal(x, y, err_msg=where)
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


def assert_same_fields(a, b, where, skip=frozenset()):
    for field in a.get_fields_and_field_types():
        if field not in skip:
            assert_same(getattr(a, field), getattr(b, field), f'{where}.{field}')


# ----------------------------------------------------------------------------- the live node, in-process

class LiveNode:
    """SceneDinoNode spun in this process, started as launch_ros would (params files, -p overrides, remaps), and
    a tester node that publishes camera messages and records every output."""

    def __init__(self, context, ns: str, files: list[Path], overrides: list[str]):
        from scenedino_ros.node import SceneDinoNode

        args = ['--ros-args']
        for f in files:
            args += ['--params-file', str(f)]
        for o in overrides:
            args += ['-p', o]
        args += ['-r', f'image:={ns}/image_raw', '-r', f'camera_info:={ns}/camera_info']
        self.node = SceneDinoNode('scenedino', context=context, cli_args=args)
        self.tester = Node(f'tester_{ns.strip("/")}', context=context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.tester.create_publisher(Image, f'{ns}/image_raw', reliable)
        self.pub_compressed = self.tester.create_publisher(CompressedImage, f'{ns}/image_raw/compressed', reliable)
        self.pub_info = self.tester.create_publisher(CameraInfo, f'{ns}/camera_info', reliable)
        self.received: dict[str, list] = defaultdict(list)
        self._cond = threading.Condition()
        for name, msg_type in OUTPUTS.items():
            qos = reliable if name != 'occupancy' else QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.tester.create_subscription(msg_type, f'/scenedino/{name}', self._store(name), qos)
        self.executors = spin_in_threads(context, self.node, self.tester)

    def _store(self, name):
        def callback(msg):
            with self._cond:
                self.received[name].append(msg)
                self._cond.notify_all()
        return callback

    def wait_connected(self, compressed: bool):
        pub = self.pub_compressed if compressed else self.pub_image
        end = time.monotonic() + TIMEOUT_S
        while time.monotonic() < end:
            if (pub.get_subscription_count() and self.pub_info.get_subscription_count()
                    and all(self.tester.count_publishers(f'/scenedino/{n}') for n in OUTPUTS)
                    and all(self.node.count_subscribers(f'/scenedino/{n}') for n in OUTPUTS)):
                time.sleep(0.5)  # let the reliable endpoints finish matching
                return
            time.sleep(0.05)
        raise AssertionError('the node and the tester did not connect')

    def send(self, image, info) -> dict[str, object]:
        """Publish one frame and wait for all its outputs (one at a time: the node drops frames while busy)."""
        (self.pub_compressed if isinstance(image, CompressedImage) else self.pub_image).publish(image)
        self.pub_info.publish(info)
        stamp, end = stamp_of(image), time.monotonic() + TIMEOUT_S
        with self._cond:
            while True:
                got = {name: next((m for m in self.received[name] if stamp_of(m) == stamp), None) for name in OUTPUTS}
                if all(m is not None for m in got.values()):
                    return got
                left = end - time.monotonic()
                assert left > 0, f'outputs missing for stamp {stamp}: {[n for n, m in got.items() if m is None]}'
                self._cond.wait(min(left, 0.2))

    def close(self):
        for executor in self.executors:
            executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.tester.destroy_node()


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_outputs_equal_the_live_node(ros_context, tiny_checkpoint, tmp_path, transport):
    """Same frames through the live node and through process_bag: the same messages, one for one."""
    overrides = [f'checkpoint:={tiny_checkpoint}', *SMALL_GRID, 'input.reliability:=reliable',
                 f'input.transport:={transport}', 'target_frame:=base_link', 'use_tf:=false']
    stamps = [1_700_000_000_000_000_123 + i * 100_000_000 for i in range(3)]
    make = png_image if transport == 'compressed' else raw_image
    frames = [(make(s, street(i)), camera_info(s)) for i, s in enumerate(stamps)]

    live = LiveNode(ros_context, f'/eq_{transport}', [BASE_PARAMS], overrides)
    try:
        live.wait_connected(compressed=transport == 'compressed')
        node_outputs = [live.send(image, info) for image, info in frames]
        node_params = live.node.p
        hashes = {n: str(live.tester.get_publishers_info_by_topic(f'/scenedino/{n}')[0].topic_type_hash)
                  for n in OUTPUTS}
    finally:
        live.close()

    p = load_params([BASE_PARAMS], overrides)
    assert p == node_params  # the ROS-free loader reads what the node read
    seen = []
    bag = write_bag(tmp_path / 'in', camera_records(frames))
    summary = process_bag(bag, tmp_path / 'out', p, on_frame=seen.append, progress=False)
    assert summary.frames_processed == 3 and summary.frames_skipped == 0

    written = read_bag(tmp_path / 'out')
    assert set(written) == {f'/scenedino/{n}' for n in OUTPUTS}
    for stamp, live_msgs, frame in zip(stamps, node_outputs, seen):
        assert frame.stamp_ns == stamp
        assert [t for t, _ in frame.messages] == [f'/scenedino/{n}' for n in OUTPUTS]
        for topic, msg in frame.messages:
            name = topic.rsplit('/', 1)[1]
            (bag_ns, from_bag), = [(ns, m) for ns, m in written[topic] if stamp_of(m) == stamp]
            assert bag_ns == stamp
            assert_same(msg, from_bag, topic)  # the bag holds what on_frame saw
            assert_same(live_msgs[name], from_bag, name)
        cloud = live_msgs['semantic_points']
        assert cloud.header.frame_id == 'base_link' and cloud.width > 0  # a real comparison, not of empty clouds
        assert live_msgs['depth'].header.frame_id == CAMERA_FRAME

    assert yaml.safe_load((tmp_path / 'out' / 'metadata.yaml').read_text())['rosbag2_bagfile_information'][
        'version'] == 9
    with Reader(tmp_path / 'out') as reader:
        for conn in reader.connections:
            assert conn.digest == hashes[conn.topic.rsplit('/', 1)[1]]  # the type hashes of the live publishers
            qos = conn.ext.offered_qos_profiles[0]
            latched = conn.topic == '/scenedino/occupancy'
            assert qos.durability == (QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE)
            assert qos.reliability == QosReliability.RELIABLE and qos.depth == (1 if latched else 2)


# ----------------------------------------------------------------------------- summary, skipped frames, format

def test_summary_and_skipped_frames(tiny_checkpoint, tmp_path):
    """Good and bad frames mixed: each bad one is skipped with its reason; figures are consistent."""
    s = [2_000_000_000_000 + i * 50_000_000 for i in range(7)]
    rgb = street(0)
    bad_encoding = raw_image(s[2], rgb)
    bad_encoding.encoding = 'rgb9'
    records = camera_records([(raw_image(s[0], rgb), camera_info(s[0])),
                              (raw_image(s[1], street(1)), camera_info(s[1]))])
    records += [('/cam/image_raw', 'sensor_msgs/msg/Image', s[2] - 1, b'\x00\x01\x00\x00 not a CDR image')]
    records += camera_records([(bad_encoding, camera_info(s[2])),
                               (raw_image(s[3], rgb), camera_info(s[3], k=[0.0] * 9)),
                               (raw_image(s[4], rgb), None),  # no CameraInfo at all
                               (raw_image(s[5], rgb), camera_info(s[5], 2 * W, 2 * H)),
                               (raw_image(s[6], street(2)), camera_info(s[6]))])  # good again
    bag = write_bag(tmp_path / 'in', records)

    seen = []
    summary = process_bag(bag, tmp_path / 'out', tiny_params(tiny_checkpoint), on_frame=seen.append,
                          progress=False)
    good = [s[0], s[1], s[6]]
    assert summary.images == 8 and summary.frames_processed == 3 == len(seen)
    assert [f.stamp_ns for f in seen] == good
    reasons = {(sk.reason, sk.stamp_ns) for sk in summary.skipped}
    assert reasons == {('CorruptMessage', s[2] - 1), ('UnsupportedEncodingError', s[2]), ('CameraInfoError', s[3]),
                       ('NoCameraInfo', s[4]), ('CameraInfoError', s[5])}
    assert summary.skip_reasons == {'CameraInfoError': 2, 'CorruptMessage': 1, 'UnsupportedEncodingError': 1,
                                    'NoCameraInfo': 1}
    assert summary.frames_processed + summary.frames_skipped == summary.images
    assert 'all zeros' in next(sk.detail for sk in summary.skipped if sk.stamp_ns == s[3])

    # timing: the stages add up to the loop time; inference is a real share of it
    assert set(summary.stage_s) == {'decode', 'inference', 'build', 'write', 'other'}
    assert sum(summary.stage_share.values()) == pytest.approx(1.0, abs=1e-6)
    assert sum(summary.stage_s.values()) == pytest.approx(summary.wall_s, rel=1e-6)
    assert summary.stage_s['inference'] > 0 and summary.stage_s['write'] > 0 and summary.stage_s['decode'] > 0
    assert summary.mean_frame_ms == pytest.approx(summary.wall_s / 3 * 1e3)

    # occupancy statistics agree with the frames themselves
    counts = [len(f.result.points) for f in seen]
    assert summary.occupied_voxels == tuple(counts)
    assert summary.occupancy_stats() == {'mean': np.mean(counts), 'min': min(counts), 'max': max(counts)}
    hist = sum(np.bincount(f.result.point_labels, minlength=len(SSC_CLASSES)) for f in seen)
    assert summary.class_voxels == {c.name: int(n) for c, n in zip(SSC_CLASSES, hist)}
    assert sum(summary.class_voxels.values()) == sum(counts) > 0

    # summary files and the bag: rosbags reads it, metadata v9, stamps = bag times = input stamps
    saved = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert saved['frames_processed'] == 3 and saved['skip_reasons'] == summary.skip_reasons
    assert saved['stage_share'] == pytest.approx(summary.stage_share)
    md = (tmp_path / 'out' / 'summary.md').read_text()
    assert md == summary.to_markdown() and '| NoCameraInfo | 1 |' in md
    meta = yaml.safe_load((tmp_path / 'out' / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] == 9 and meta['storage_identifier'] == 'mcap'
    assert meta['relative_file_paths'] == ['out.mcap']
    written = read_bag(tmp_path / 'out')
    assert set(written) == {f'/scenedino/{n}' for n in OUTPUTS}
    for topic, msgs in written.items():
        assert [ns for ns, _ in msgs] == good == [stamp_of(m) for _, m in msgs], topic
    assert summary.messages_written == dict.fromkeys(written, 3)
    assert not list(tmp_path.glob('out.*'))  # no work folder left


def test_include_inputs_copies_every_topic_raw_with_its_qos(tiny_checkpoint, tmp_path):
    latched = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, QosTime(0, 0),
                  QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    TF = TYPESTORE.types['tf2_msgs/msg/TFMessage']
    TS = TYPESTORE.types['geometry_msgs/msg/TransformStamped']
    Header, Stamp = TYPESTORE.types['std_msgs/msg/Header'], TYPESTORE.types['builtin_interfaces/msg/Time']
    Transform = TYPESTORE.types['geometry_msgs/msg/Transform']
    V, Q = TYPESTORE.types['geometry_msgs/msg/Vector3'], TYPESTORE.types['geometry_msgs/msg/Quaternion']

    def tf(ns, parent, child):
        t = TS(Header(Stamp(ns // 10**9, ns % 10**9), parent), child,
               Transform(V(1.0, 2.0, 3.0), Q(0.0, 0.0, 0.0, 1.0)))
        return bytes(TYPESTORE.serialize_cdr(TF([t]), 'tf2_msgs/msg/TFMessage'))

    s = [3_000_000_000_000 + i * 100_000_000 for i in range(2)]
    records = [('/tf_static', 'tf2_msgs/msg/TFMessage', s[0] - 1, tf(s[0], 'base_link', CAMERA_FRAME))]
    for ns, (image, info) in zip(s, [(raw_image(x, street(i)), camera_info(x)) for i, x in enumerate(s)]):
        records += [('/tf', 'tf2_msgs/msg/TFMessage', ns, tf(ns, 'map', 'base_link'))]
        records += camera_records([(image, info)])
    bag = write_bag(tmp_path / 'in', records, qos={'/tf_static': [latched]})
    summary = process_bag(bag, tmp_path / 'out', tiny_params(tiny_checkpoint, 'publish.markers:=false'),
                          include_inputs=True, storage='sqlite3', progress=False)
    assert summary.frames_processed == 2

    with Reader(bag) as reader:
        original = {(c.topic, ns): bytes(raw) for c, ns, raw in reader.messages()}
        in_conns = {c.topic: c for c in reader.connections}
    meta = yaml.safe_load((tmp_path / 'out' / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == 'sqlite3' and meta['version'] == 9
    with Reader(tmp_path / 'out') as reader:
        out_conns = {c.topic: c for c in reader.connections}
        copied = {(c.topic, ns): bytes(raw) for c, ns, raw in reader.messages() if not c.topic.startswith('/scen')}
    assert copied == original
    for topic, conn in in_conns.items():
        assert out_conns[topic].msgtype == conn.msgtype and out_conns[topic].digest == conn.digest
        assert out_conns[topic].ext.offered_qos_profiles == conn.ext.offered_qos_profiles
    assert out_conns['/tf_static'].ext.offered_qos_profiles == [latched]
    assert '/scenedino/voxels' not in out_conns and '/scenedino/voxel_grid' in out_conns  # publish.* honoured


def test_topic_selection(tiny_checkpoint, tmp_path):
    s = 4_000_000_000_000
    frames = [(raw_image(s, street(0)), camera_info(s))]
    two = write_bag(tmp_path / 'two', camera_records(frames, '/front/image_rect', '/front/camera_info')
                    + camera_records([(png_image(s, street(0)), camera_info(s))], '/rear/image_rect/compressed',
                                     '/rear/camera_info'))
    p = tiny_params(tiny_checkpoint)
    with pytest.raises(BagError, match='2 image topics; choose one with --image-topic: /front/image_rect, '
                                       '/rear/image_rect/compressed'):
        process_bag(two, tmp_path / 'out', p, progress=False)
    assert not (tmp_path / 'out').exists()
    summary = process_bag(two, tmp_path / 'out', p, image_topic='/rear/image_rect/compressed', progress=False)
    assert (summary.image_topic, summary.camera_info_topic) == ('/rear/image_rect/compressed', '/rear/camera_info')
    assert summary.frames_processed == 1
    with pytest.raises(BagError, match=r'no CameraInfo topic /front/info in the bag \(CameraInfo topics: '
                                       r'/front/camera_info, /rear/camera_info\)'):
        process_bag(two, tmp_path / 'out2', p, image_topic='/front/image_rect', info_topic='/front/info')
    with pytest.raises(BagError, match='image topic /side/image is not in the bag'):
        process_bag(two, tmp_path / 'out2', p, image_topic='/side/image')
    with pytest.raises(BagError, match='exists already'):
        process_bag(two, tmp_path / 'out', p, image_topic='/front/image_rect')
    assert camera_info_sibling('/kitti360/image_00/image_rect/compressed') == '/kitti360/image_00/camera_info'


def test_failure_leaves_no_output(tiny_checkpoint, tmp_path):
    s = 5_000_000_000_000
    bag = write_bag(tmp_path / 'in', camera_records([(raw_image(s, street(0)), camera_info(s))]))

    def boom(frame):
        raise RuntimeError('consumer failed')

    with pytest.raises(RuntimeError, match='consumer failed'):
        process_bag(bag, tmp_path / 'out', tiny_params(tiny_checkpoint), on_frame=boom, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in', 'tiny.pt']


def test_read_error_midway_is_read_on_without_duplicates(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """A bag that opens but whose reader breaks after a frame and a half: the rest is read on from the last message
    read (record by record), each frame processed once; nothing was lost, so the CLI exits 0 and the summary names
    the problem. The input is given as the .mcap file itself. (Real damage: test_bag_faults.py.)"""
    from rosbags.rosbag2 import ReaderError

    s = [7_000_000_000_000 + i * 100_000_000 for i in range(3)]
    bag = write_bag(tmp_path / 'in', camera_records([(raw_image(x, street(i)), camera_info(x))
                                                     for i, x in enumerate(s)]))
    messages = Reader.messages

    def breaks_after_three_messages(self, *args, **kwargs):
        it = messages(self, *args, **kwargs)
        for _ in range(3):
            yield next(it)
        raise ReaderError('Truncated record at offset 1234')

    monkeypatch.setattr(Reader, 'messages', breaks_after_three_messages)
    seen = []
    summary = process_bag(bag / 'in.mcap', tmp_path / 'out', tiny_params(tiny_checkpoint), on_frame=seen.append,
                          progress=False)
    assert [f.stamp_ns for f in seen] == s and (summary.images, summary.frames_processed) == (3, 3)
    (note, *rest) = summary.input_damage
    assert 'rosbags stopped reading it (ReaderError: Truncated record at offset 1234)' in note.problem
    assert summary.messages_lost == 0 and not rest
    assert '**damaged input**: 0 messages lost' in (tmp_path / 'out' / 'summary.md').read_text()
    assert main([str(bag), str(tmp_path / 'out2'), '--params', str(BASE_PARAMS), '--checkpoint',
                 str(tiny_checkpoint), '--param', SMALL_GRID[0], '--param', SMALL_GRID[1], '--param', SMALL_GRID[2],
                 '--no-progress']) == 0
    assert '3 processed' in capsys.readouterr().out and (tmp_path / 'out2' / 'metadata.yaml').is_file()


def test_cli(tiny_checkpoint, tmp_path, capsys):
    s = 6_000_000_000_000
    bag = write_bag(tmp_path / 'in', camera_records([(raw_image(s, street(0)), camera_info(s))]))
    small = tmp_path / 'small.yaml'
    small.write_text(yaml.safe_dump({'scenedino': {'ros__parameters': {
        'grid': {'voxel_size_m': 0.5, 'min_m': [0.0, -6.0, -0.5], 'max_m': [12.0, 6.0, 3.0]}}}}))
    args = [str(bag), str(tmp_path / 'out'), '--params', str(BASE_PARAMS), str(small), '--no-progress']
    assert main(args + ['--checkpoint', str(tiny_checkpoint), '--param', 'publish.depth:=false']) == 0
    out = capsys.readouterr().out
    assert '1 processed, 0 skipped' in out and f'wrote {tmp_path / "out"}' in out
    assert '/scenedino/depth' not in read_bag(tmp_path / 'out')

    assert main(args) == 2
    assert '--checkpoint is required' in capsys.readouterr().err
    assert main([str(tmp_path / 'missing'), str(tmp_path / 'o2'), '--checkpoint', str(tiny_checkpoint)]) == 1
    assert f'cannot open input bag {tmp_path / "missing"}' in capsys.readouterr().err
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, bag')
    assert main([str(tmp_path / 'broken'), str(tmp_path / 'o2'), '--checkpoint', str(tiny_checkpoint)]) == 1
    assert f'cannot open input bag {tmp_path / "broken"}' in capsys.readouterr().err
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes((bag / 'in.mcap').read_bytes()[100:])
    assert main([str(junk), str(tmp_path / 'o2'), '--checkpoint', str(tiny_checkpoint)]) == 1
    assert f'cannot open input bag {junk}: nothing readable: cannot be read (not an MCAP file' in \
        capsys.readouterr().err
    assert main(args + ['--checkpoint', str(tiny_checkpoint), '--param', 'grid.voxel_size:=0.5']) == 1
    assert "parameter 'grid.voxel_size': unknown parameter; did you mean grid.voxel_size_m?" in capsys.readouterr().err


# ----------------------------------------------------------------------------- parameter files without ROS

def test_default_params_are_the_kitti360_drive():
    from scenedino_ros.params_file import default_params_files

    assert default_params_files() == [REPO / 'config' / 'scenedino.yaml', REPO / 'config' / 'kitti360.yaml']
    p = load_params(default_params_files())
    assert p.grid_dims == (256, 256, 32) and p.rectified and p.render_stride_px == 4


def test_params_files_layer_and_name_the_file(tmp_path):
    first = tmp_path / 'first.yaml'
    first.write_text('/**:\n  ros__parameters:\n    device: cuda\n    render: {stride_px: 3}\n'
                     'other_node:\n  ros__parameters:\n    device: cuda:7\n')
    second = tmp_path / 'second.yaml'
    second.write_text('scenedino:\n  ros__parameters:\n    render:\n      stride_px: 5\n'
                      '    occupancy:\n      ground_classes: [road]\n')
    p = load_params([BASE_PARAMS, first, second], ['precision:=bf16', 'camera_pose.xyz_m:=[1, 2, 3]'])
    assert (p.device, p.render_stride_px, p.precision) == ('cuda', 5, 'bf16')
    assert p.occupancy_ground_classes == ('road',) and p.camera_xyz_m == (1.0, 2.0, 3.0)
    ns = tmp_path / 'ns.yaml'
    ns.write_text('robot:\n  scenedino:\n    ros__parameters: {device: "cuda:1"}\n')
    assert params_file.read_params_file(ns, 'robot/scenedino') == {'device': 'cuda:1'}

    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**:\n  ros__parameters:\n    grid: {voxel_sise_m: 0.3}\n')
    with pytest.raises(ParameterError, match=rf"^parameter 'grid.voxel_sise_m': unknown parameter; did you mean "
                                             rf"grid.voxel_size_m\? \(in {bad}\)"):
        load_params([BASE_PARAMS, bad])
    bad.write_text('/**:\n  ros__parameters:\n    render: {stride_px: 2.5}\n')
    with pytest.raises(ParameterError, match=rf"'render.stride_px': expected int, got 2.5 \(in {bad}\)"):
        load_params([bad])
    with pytest.raises(ParamsFileError, match=rf"{ns}: no 'ros__parameters' for node /scenedino \(entries: "
                                              r"/robot/scenedino\)"):
        load_params([ns])
    bad.write_text('/**: [unclosed')
    with pytest.raises(ParamsFileError, match=rf'{bad}: not a readable YAML file'):
        load_params([bad])
    with pytest.raises(FileNotFoundError, match='parameters file not found: .*nope.yaml'):
        load_params([tmp_path / 'nope.yaml'])
    with pytest.raises(ValueError, match="'device=cuda' is not of the form name:=value"):
        load_params([], ['device=cuda'])
    with pytest.raises(ParameterError, match=r"'precision': 'fp16' is not one of .* \(in override 'precision:=fp16'\)"):
        load_params([], ['precision:=fp16'])
    with pytest.raises(ParameterError, match="'grid.max_m'.*must exceed min"):  # combined checks after layering
        load_params([BASE_PARAMS], ['grid.max_m:=[0.0, 12.8, 3.6]'])


def test_kitti360_drive_converted_to_a_bag(tiny_checkpoint, tmp_path):
    """A synthetic KITTI-360 drive through scenedino-kitti360-to-bag (PNG CompressedImage), then processed with the
    default (KITTI-360) parameters on a small grid."""
    k2b = pytest.importorskip('scenedino_ros.bag.kitti360', reason='scenedino_ros.bag.kitti360 not present')
    from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360
    from scenedino_ros.params_file import default_params_files

    seq = '2013_05_28_drive_0000_sync'
    write_kitti360(StreetWorld.generate(3, StreetConfig(num_frames=3)), tmp_path / 'kitti360', seq, [0, 1, 2],
                   full_size=(94, 352), image_size=(16, 48), semantics=False)
    bag = tmp_path / 'drive_bag'
    k2b.convert(tmp_path / 'kitti360', seq, bag, compressed='png', progress=False)
    p = load_params(default_params_files(), [f'checkpoint:={tiny_checkpoint}', *SMALL_GRID])
    assert p.rectified  # KITTI-360 images are rectified: intrinsics from P
    with pytest.raises(BagError, match='2 image topics; choose one with --image-topic: '
                                       '/kitti360/image_00/image_rect/compressed, /kitti360/image_01/image_rect/'):
        process_bag(bag, tmp_path / 'out', p, progress=False)
    seen = []
    summary = process_bag(bag, tmp_path / 'out', p, image_topic='/kitti360/image_00/image_rect/compressed',
                          include_inputs=True, on_frame=seen.append, progress=False)
    assert summary.camera_info_topic == '/kitti360/image_00/camera_info'
    assert (summary.images, summary.frames_processed, summary.frames_skipped) == (3, 3, 0)
    assert seen[0].rgb.shape == (94, 352, 3) and seen[0].camera_frame == 'camera_00_optical_frame'
    with Reader(tmp_path / 'out') as reader:
        conns = {c.topic: c for c in reader.connections}
    assert conns['/tf_static'].ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
    assert {'/tf', '/kitti360/image_01/camera_info', '/scenedino/semantic_points'} <= set(conns)
