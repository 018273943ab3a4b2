"""scenedino-replay (bag -> live topics + /clock) with real rclpy, the minimal tf2_msgs of scripts/build_msgs.sh, and
launch/kitti360_replay.launch.py against stub launch modules.

Bags come from a tiny synthetic KITTI-360 drive converted by ``scenedino_ros.bag.kitti360`` (what users replay)
and from small hand-written bags (sparse stamps for timing, a type nobody can import). Expected values are read back
from the bag files with rosbags, independently of the player. Run through scripts/test.sh (DDS on loopback).
Timing checks only compare runs with each other or with lower bounds that sleeping guarantees: no wall-clock upper
limits.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime  # noqa: E402
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402

from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360  # noqa: E402
from scenedino_ros.bag import kitti360 as k2b  # noqa: E402
from scenedino_ros.bag.replay import (  # noqa: E402
    Player,
    ReplayError,
    ReplayOptions,
    UnknownTypeError,
    message_class,
    parse_remap,
    plan_channels,
)
from scenedino_ros.cli.replay import main, split_ros_args  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEQ = '2013_05_28_drive_0009_sync'
FULL = (94, 352)  # (H, W) of the synthetic rectified images
FRAME_IDS = range(4)
IMAGE = '/kitti360/image_00/image_rect'
INFO = '/kitti360/image_00/camera_info'
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
WAIT_S = 60.0  # generous: only a hang trips it
#: The sparse bag: /chatter every 0.5 s over 2 s, /mystery (a type no Python package provides) in between.
SPARSE_T0 = 1_700_000_000_000_000_000
SPARSE_STEP_NS = 500_000_000
SPARSE_N = 5
MYSTERY = 'nonexistent_pkg/msg/Thing'


def replay_executable() -> str:
    exe = Path(sys.executable).parent / 'scenedino-replay'
    return str(exe) if exe.is_file() else shutil.which('scenedino-replay') or 'scenedino-replay'


def read_raw(bag: Path) -> tuple[dict[str, list[tuple[int, bytes]]], dict[str, str], int]:
    """topic -> [(receive time, CDR bytes)] in bag order, topic -> type, and the bag's start time (ns)."""
    messages: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    with Reader(bag) as reader:
        for conn, stamp, data in reader.messages():
            messages[conn.topic].append((stamp, bytes(data)))
        types_ = {c.topic: c.msgtype for c in reader.connections}
        start = reader.start_time
    return dict(messages), types_, start


def require_tf2_msgs():
    pytest.importorskip('tf2_msgs.msg', reason='tf2_msgs is not importable: run scripts/build_msgs.sh (it builds '
                        'tf2_msgs/TFMessage for the PyPI wheels) or source a ROS 2 distribution')


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('kitti360')
    world = StreetWorld.generate(3, StreetConfig(num_frames=len(FRAME_IDS)))
    write_kitti360(world, root, SEQ, FRAME_IDS, full_size=FULL, image_size=(16, 48), semantics=False)
    return root


@pytest.fixture(scope='module')
def kitti_bag(drive, tmp_path_factory):
    """storage -> the converted drive (both cameras, /tf, /tf_static), converted once per storage."""
    bags: dict[str, Path] = {}

    def get(storage: str = 'mcap') -> Path:
        if storage not in bags:
            out = tmp_path_factory.mktemp('bags') / f'drive_{storage}'
            k2b.convert(drive, SEQ, out, storage=storage, progress=False)
            bags[storage] = out
        return bags[storage]
    return get


@pytest.fixture(scope='module')
def sparse_bag(tmp_path_factory) -> Path:
    """/chatter (std_msgs/String) at 0.5 s steps over 2 s, /mystery (an unimportable type) three times."""
    ts = get_typestore(Stores.ROS2_KILTED)
    ts.register(get_types_from_msg('int32 value', MYSTERY))
    path = tmp_path_factory.mktemp('sparse') / 'sparse_bag'
    string, thing = ts.types['std_msgs/msg/String'], ts.types[MYSTERY]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts)
        mystery = writer.add_connection('/mystery', MYSTERY, typestore=ts)
        for k in range(SPARSE_N):
            t = SPARSE_T0 + k * SPARSE_STEP_NS
            writer.write(chatter, t, ts.serialize_cdr(string(data=f'hello {k}'), 'std_msgs/msg/String'))
            if k < 3:
                writer.write(mystery, t + 1000, ts.serialize_cdr(thing(value=k), MYSTERY))
    return path


class Sink:
    """Raw (CDR bytes) subscriptions on a spinning executor; thread-safe record of what arrived."""

    def __init__(self, context, name: str):
        self.node = Node(name, context=context)
        self.received: dict[str, list[bytes]] = defaultdict(list)
        self.cond = threading.Condition()
        self.subs = {}
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe(self, topic: str, msg_type: type, qos: QoSProfile | None = None, key: str | None = None):
        qos = qos or QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        key = key or topic

        def store(data):
            with self.cond:
                self.received[key].append(data)
                self.cond.notify_all()
        self.subs[key] = self.node.create_subscription(msg_type, topic, store, qos, raw=True)
        return self.subs[key]

    def wait_for_publishers(self, keys):
        end = time.monotonic() + WAIT_S
        while any(self.subs[k].get_publisher_count() == 0 for k in keys):
            missing = [k for k in keys if not self.subs[k].get_publisher_count()]
            assert time.monotonic() < end, f'no publisher on {missing}'
            time.sleep(0.05)

    def wait_until(self, done, what: str, timeout: float = WAIT_S):
        """Wait until ``done(received)`` is true (AssertionError naming ``what()`` after ``timeout``)."""
        end = time.monotonic() + timeout
        with self.cond:
            while not done(self.received):
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(what())
                self.cond.wait(min(left, 0.2))

    def wait_counts(self, counts: dict[str, int], timeout: float = WAIT_S):
        self.wait_until(lambda r: all(len(r[k]) >= n for k, n in counts.items()),
                        lambda: f'expected {counts}, received {({k: len(self.received[k]) for k in counts})}', timeout)

    def close(self):
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()


@pytest.fixture
def sink(ros_context):
    sinks = []

    def make(name: str) -> Sink:
        sinks.append(Sink(ros_context, name))
        return sinks[-1]
    yield make
    for s in sinks:
        s.close()


def run_replay(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([replay_executable(), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED='1'))


def loop_summaries(log: str) -> list[tuple[str, float, float]]:
    """(done|interrupted, bag seconds, wall seconds) of every summary line."""
    return [(m[1], float(m[2]), float(m[3])) for m in
            re.finditer(r'loop \d+ (done|interrupted): \d+ messages on \d+ topics, ([\d.]+) s of bag time in '
                        r'([\d.]+) s', log)]


# ----------------------------------------------------------------------------- pure parts

def test_parse_remap_and_ros_args():
    assert parse_remap('/a/b:=/c') == ('/a/b', '/c')
    for bad in ('/a', ':=/b', '/a:=', '/a:=/b:=/c'):
        with pytest.raises(ReplayError, match='expected FROM:=TO'):
            parse_remap(bad)
    own, ros = split_ros_args(['bag', '--remap', '/a:=/b', '--ros-args', '-r', '__node:=p', '--', '--loop'])
    assert own == ['bag', '--remap', '/a:=/b', '--loop'] and ros == ['--ros-args', '-r', '__node:=p']


@pytest.mark.parametrize('field, value, match', [
    ('rate', 0.0, '--rate must be a positive'), ('rate', float('nan'), '--rate'),
    ('clock_hz', -1.0, '--clock-hz'), ('wait_for_subscribers_s', -2.0, '--wait-for-subscribers')])
def test_options_are_validated(field, value, match):
    with pytest.raises(ReplayError, match=match):
        ReplayOptions(**{field: value})


def test_message_class():
    from sensor_msgs.msg import Image
    assert message_class('sensor_msgs/msg/Image') is Image and message_class('sensor_msgs/Image') is Image
    with pytest.raises(UnknownTypeError, match=r"'nonexistent_pkg\.msg' is not importable.*provides nonexistent_pkg"):
        message_class(MYSTERY)
    with pytest.raises(UnknownTypeError, match="sensor_msgs.msg has no message 'Nope'"):
        message_class('sensor_msgs/msg/Nope')
    with pytest.raises(UnknownTypeError, match='not a message type name'):
        message_class('sensor_msgs/srv/SetCameraInfo')


def test_plan_channels_qos_topics_and_remaps(kitti_bag):
    bag = kitti_bag('mcap')
    with Reader(bag) as reader:
        conns = list(reader.connections)
    channels = {c.bag_topic: c for c in plan_channels(conns, ReplayOptions(), bag)}
    assert set(channels) == {'/tf', '/tf_static', IMAGE, INFO, '/kitti360/image_01/image_rect',
                             '/kitti360/image_01/camera_info'}
    static, tf = channels['/tf_static'], channels['/tf']
    assert static.transient_local and static.reliable and static.message_count == 1
    assert not tf.transient_local and tf.reliable and tf.message_count == len(FRAME_IDS)
    assert channels[IMAGE].depth >= 10 and channels[IMAGE].msgtype == 'sensor_msgs/msg/Image'

    picked = plan_channels(conns, ReplayOptions(topics=(IMAGE, INFO), remaps=((IMAGE, '/cam/image'),)), bag)
    assert [(c.bag_topic, c.topic) for c in picked] == [(INFO, INFO), (IMAGE, '/cam/image')]
    with pytest.raises(ReplayError, match=rf'--topics /nope: no such topic in {re.escape(str(bag))} \(topics: .*/tf'):
        plan_channels(conns, ReplayOptions(topics=('/nope',)), bag)
    with pytest.raises(ReplayError, match='--remap /nope: no such topic'):
        plan_channels(conns, ReplayOptions(remaps=(('/nope', '/x'),)), bag)
    with pytest.raises(ReplayError, match='would both be published on /tf'):
        plan_channels(conns, ReplayOptions(remaps=(('/tf_static', '/tf'),)), bag)


def test_qos_of_offers_without_profiles_and_best_effort(tmp_path):
    never = QosTime(sec=0, nsec=0)

    def qos(reliability, durability, depth):
        return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=reliability, durability=durability,
                   deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
                   liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)
    bag = tmp_path / 'qos_bag'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection('/plain', 'std_msgs/msg/String', typestore=TYPESTORE)
        writer.add_connection('/sensor', 'std_msgs/msg/String', typestore=TYPESTORE, offered_qos_profiles=[
            qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 5)])
        writer.add_connection('/mixed', 'std_msgs/msg/String', typestore=TYPESTORE, offered_qos_profiles=[
            qos(QosReliability.BEST_EFFORT, QosDurability.TRANSIENT_LOCAL, 1),
            qos(QosReliability.RELIABLE, QosDurability.VOLATILE, 50)])
    with Reader(bag) as reader:
        ch = {c.topic: c for c in plan_channels(list(reader.connections), ReplayOptions(), bag)}
    assert (ch['/plain'].reliable, ch['/plain'].transient_local, ch['/plain'].depth) == (True, False, 10)
    assert (ch['/sensor'].reliable, ch['/sensor'].transient_local) == (False, False)
    assert (ch['/mixed'].reliable, ch['/mixed'].transient_local, ch['/mixed'].depth) == (True, False, 50)


def test_bad_bags_are_named(tmp_path, capsys):
    assert main([str(tmp_path / 'missing_bag')]) == 2
    assert f'{tmp_path / "missing_bag"}: no such bag' in capsys.readouterr().err
    broken = tmp_path / 'broken_bag'
    broken.mkdir()
    (broken / 'metadata.yaml').write_text('rosbag2_bagfile_information: [not, a, mapping')
    assert main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert f'{broken}: not a readable rosbag2' in err and 'metadata.yaml' in err
    assert main([str(broken), '--rate', '-1']) == 2
    assert '--rate must be a positive number' in capsys.readouterr().err


def test_tf2_msgs_is_the_real_tfmessage():
    """The TFMessage that /tf and /tf_static are published with serialises exactly as rosbags' Kilted definition."""
    require_tf2_msgs()
    from geometry_msgs.msg import TransformStamped
    from rclpy.serialization import serialize_message
    from tf2_msgs.msg import TFMessage
    t = TransformStamped(child_frame_id='camera_00_optical_frame')
    t.header.frame_id, t.header.stamp.sec, t.header.stamp.nanosec = 'base_link', 1369730762, 880698602
    t.transform.translation.x, t.transform.rotation.z, t.transform.rotation.w = 0.81, 0.6, 0.8
    data = serialize_message(TFMessage(transforms=[t, TransformStamped(child_frame_id='velodyne')]))
    ours = TYPESTORE.deserialize_cdr(data, 'tf2_msgs/msg/TFMessage')
    assert [x.child_frame_id for x in ours.transforms] == ['camera_00_optical_frame', 'velodyne']
    assert ours.transforms[0].header.stamp.nanosec == 880698602 and ours.transforms[0].transform.rotation.z == 0.6
    assert bytes(TYPESTORE.serialize_cdr(ours, 'tf2_msgs/msg/TFMessage')) == data


# ----------------------------------------------------------------------------- (a) every message, stamps, /clock

@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_replay_delivers_every_message(kitti_bag, storage, ros_context, sink):
    """Every message arrives byte for byte in bag order, header stamps = bag times, /clock follows the bag, a late
    transient-local subscriber still gets /tf_static, and /tf is published with tf2_msgs' real type hash."""
    require_tf2_msgs()
    bag = kitti_bag(storage)
    expected, msgtypes, start = read_raw(bag)
    s = sink(f'replay_sink_{storage}')
    for topic, msgtype in msgtypes.items():
        s.subscribe(topic, message_class(msgtype))
    s.subscribe('/clock', Clock)
    player_node = Node(f'replay_player_{storage}', context=ros_context)
    player = Player(player_node, bag, ReplayOptions(clock_hz=100.0))
    try:
        assert player.wait_for_subscribers(WAIT_S) == []
        s.wait_for_publishers(list(msgtypes) + ['/clock'])
        time.sleep(0.5)  # let the reliable endpoints finish matching on the subscriber side too
        summary = player.play_once()
        assert summary.messages == sum(len(v) for v in expected.values()) and summary.topics == len(expected)
        s.wait_counts({t: len(v) for t, v in expected.items()})
        for topic, msgs in expected.items():
            assert s.received[topic] == [data for _, data in msgs], topic  # content and order unchanged
        for topic in (IMAGE, INFO):
            cls = message_class(msgtypes[topic])
            stamps = [deserialize_message(d, cls).header.stamp for d in s.received[topic]]
            assert [st.sec * 1_000_000_000 + st.nanosec for st in stamps] == [t for t, _ in expected[topic]]

        # /clock: starts at the bag start, ends at the last message, never goes back, ticks in between
        def clock_values():
            return [c.clock.sec * 1_000_000_000 + c.clock.nanosec
                    for c in (deserialize_message(d, Clock) for d in s.received['/clock'])]
        last = max(t for v in expected.values() for t, _ in v)
        s.wait_until(lambda r: last in clock_values(), lambda: f'/clock never reached {last}: {clock_values()}')
        clocks = clock_values()
        assert clocks[0] == start and clocks[-1] == last
        assert clocks == sorted(clocks) and any(start < c < last for c in clocks)

        # /tf_static is latched: a subscriber joining after the replay still receives it
        from tf2_msgs.msg import TFMessage
        s.subscribe('/tf_static', TFMessage, QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL), 'late')
        s.wait_counts({'late': 1})
        assert s.received['late'] == [expected['/tf_static'][0][1]]

        # the published /tf type is tf2_msgs' (same RIHS01 hash as the Kilted definition in rosbags)
        infos = [i for i in player_node.get_publishers_info_by_topic('/tf')
                 if i.node_name == player_node.get_name()]
        assert infos and str(infos[0].topic_type_hash) == TYPESTORE.hash_rihs01('tf2_msgs/msg/TFMessage')
    finally:
        player.close()
        player_node.destroy_node()


# ----------------------------------------------------------------------------- (b) replay -> SceneDINO node

def test_replay_into_the_scenedino_node(kitti_bag, ros_context, tmp_path, tiny_checkpoint):
    """The KITTI-360 bag through scenedino-replay into the real node (tiny checkpoint, use_sim_time): outputs come
    for the replayed frames, stamped with their image stamps, in the camera's optical frame."""
    pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')
    from test_ros_node import SMALL_GRID, Harness, NodeProcess, launch_command, stamp_of
    bag = kitti_bag('mcap')
    expected, _, _ = read_raw(bag)
    image_stamps = [t for t, _ in expected[IMAGE]]
    # base + KITTI-360 files as in the launch file, then the test's settings as a last file with nested keys: rcl
    # (Kilted) lets neither -p nor a dotted key of a later file override a value that the second file sets
    settings: dict = {'checkpoint': str(tiny_checkpoint), 'use_sim_time': True, 'input': {'reliability': 'reliable'},
                      'grid': {}}
    for key, value in SMALL_GRID.items():
        settings['grid'][key.removeprefix('grid.')] = yaml.safe_load(value)
    overrides = tmp_path / 'overrides.yaml'
    overrides.write_text(yaml.safe_dump({'/**': {'ros__parameters': settings}}))
    cmd = launch_command(IMAGE, INFO, {}, params_files=(REPO / 'config' / 'scenedino.yaml',
                                                         REPO / 'config' / 'kitti360.yaml', overrides))
    node = NodeProcess(cmd, tmp_path / 'node.log')
    harness = Harness(ros_context, '/unused_camera')
    try:
        node.wait_for_log(r'ready: .* grid 24x24x7 voxels')  # the small grid overrides kitti360.yaml's
        replay = run_replay(str(bag), '--topics', IMAGE, INFO, '--wait-for-subscribers', str(WAIT_S))
        assert replay.returncode == 0, replay.stderr
        assert f'loop 1 done: {2 * len(FRAME_IDS)} messages on 2 topics' in replay.stderr
        # the newest frame always gets processed (the node drops only frames that a newer one replaced)
        for name in ('semantic_points', 'occupancy', 'voxel_grid', 'depth'):
            msg = harness.wait_for(name, image_stamps[-1])
            assert msg.header.frame_id == 'camera_00_optical_frame', name
        outputs = [stamp_of(m) for _, m in harness.received['semantic_points']]
        assert outputs and set(outputs) <= set(image_stamps) and outputs == sorted(outputs)
        assert node.proc.poll() is None
        assert node.stop() == 0, node.log()[-3000:]  # SIGINT: clean shutdown
    finally:
        harness.close()
        node.stop()


# ----------------------------------------------------------------------------- (c) rate, remap, loop; (d) unknown type

def test_rate_scales_playback_and_remap_renames(sparse_bag, sink):
    from std_msgs.msg import String
    s = sink('rate_sink')
    s.subscribe('/renamed', String)
    s.subscribe('/chatter', String)
    fast = run_replay(str(sparse_bag), '--rate', '4', '--remap', '/chatter:=/renamed', '--topics', '/chatter',
                      '--wait-for-subscribers', str(WAIT_S))
    assert fast.returncode == 0, fast.stderr
    s.wait_counts({'/renamed': SPARSE_N})
    assert [deserialize_message(d, String).data for d in s.received['/renamed']] == [
        f'hello {k}' for k in range(SPARSE_N)]
    assert s.received['/chatter'] == []
    real = run_replay(str(sparse_bag), '--topics', '/chatter')
    assert real.returncode == 0, real.stderr
    (what_f, bag_f, wall_f), = loop_summaries(fast.stderr)
    (what_r, bag_r, wall_r), = loop_summaries(real.stderr)
    span = (SPARSE_N - 1) * SPARSE_STEP_NS * 1e-9
    assert what_f == what_r == 'done' and bag_f == bag_r == pytest.approx(span)
    # sleeping until each due time bounds the wall time from below; 4x must beat 1x
    assert wall_r >= span - 0.01 and wall_f >= span / 4 - 0.01
    assert wall_f < wall_r


def test_loop_until_interrupted(sparse_bag, tmp_path):
    log = tmp_path / 'loop.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([replay_executable(), str(sparse_bag), '--loop', '--rate', '20', '--topics',
                                 '/chatter'], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, PYTHONUNBUFFERED='1'))
        try:
            end = time.monotonic() + WAIT_S
            while len(loop_summaries(log.read_text())) < 3 and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(15) == 0, log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    summaries = loop_summaries(log.read_text())
    assert len(summaries) >= 4 and summaries[-1][0] == 'interrupted'
    assert all(what == 'done' for what, _, _ in summaries[:-1]), log.read_text()[-2000:]


def test_unknown_type_is_reported_once_and_the_rest_plays(sparse_bag, sink):
    from std_msgs.msg import String
    s = sink('unknown_sink')
    s.subscribe('/chatter', String)
    proc = run_replay(str(sparse_bag), '--rate', '10', '--wait-for-subscribers', str(WAIT_S))
    assert proc.returncode == 0, proc.stderr
    report = re.findall(r'skipping /mystery \(nonexistent_pkg/msg/Thing, 3 messages\): .*', proc.stderr)
    assert len(report) == 1 and "'nonexistent_pkg.msg' is not importable" in report[0], proc.stderr
    assert 'loop 1 done: 5 messages on 1 topics' in proc.stderr
    s.wait_counts({'/chatter': SPARSE_N})


# ----------------------------------------------------------------------------- launch/kitti360_replay.launch.py

LAUNCH_FILE = REPO / 'launch' / 'kitti360_replay.launch.py'


@pytest.fixture
def launch_module(monkeypatch):
    """The launch file imported against the stubs of test_ros_launch plus ExecuteProcess."""
    from test_ros_launch import _Action, _stub_modules
    stubs = _stub_modules()
    stubs['launch.actions'].ExecuteProcess = type('ExecuteProcess', (_Action,), {})
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('kitti360_replay_launch_under_test', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_launch(module, **arguments):
    description = module.generate_launch_description()
    declared = [e for e in description.entities if type(e).__name__ == 'DeclareLaunchArgument']
    values = {e.args[0]: e.kwargs['default_value'] for e in declared if 'default_value' in e.kwargs}
    values.update(arguments)
    opaque, = [e for e in description.entities if type(e).__name__ == 'OpaqueFunction']
    return declared, opaque.kwargs['function'](types.SimpleNamespace(launch_configurations=values))


def test_launch_arguments(launch_module):
    declared, _ = _run_launch(launch_module, bag='/data/bag')
    assert [e.args[0] for e in declared] == ['bag', 'checkpoint', 'rate', 'rviz', 'use_sim_time', 'compressed']
    assert 'default_value' not in declared[0].kwargs  # bag is required
    defaults = {e.args[0]: e.kwargs.get('default_value') for e in declared}
    assert defaults['rate'] == '1.0' and defaults['rviz'] == 'true' and defaults['use_sim_time'] == 'true'
    assert all(e.kwargs['description'] for e in declared)


def test_launch_actions(launch_module):
    _, actions = _run_launch(launch_module, bag='/data/drive_bag', checkpoint='/data/model.pt', rate='0.5')
    play, node, rviz = actions
    assert type(play).__name__ == 'ExecuteProcess'
    assert play.kwargs['cmd'] == ['ros2', 'bag', 'play', '/data/drive_bag', '--clock', '--rate', '0.5']
    n = node.kwargs
    assert (n['package'], n['executable'], n['name']) == ('scenedino_ros', 'scenedino_node', 'scenedino')
    # the node's relative subscriptions -> camera 00 of the converter's bag
    assert n['remappings'] == [('image', k2b.TOPICS.image('image_00')), ('camera_info', k2b.TOPICS.camera_info(
        'image_00'))]
    base, spec, overrides = n['parameters']
    assert (Path(base).name, Path(spec).name) == ('scenedino.yaml', 'kitti360.yaml')
    assert Path(base).is_file() and Path(spec).is_file()
    assert overrides == {'use_sim_time': True, 'checkpoint': '/data/model.pt'}
    r = rviz.kwargs
    assert r['executable'] == 'rviz2' and r['arguments'][0] == '-d'
    assert Path(r['arguments'][1]) == REPO / 'config' / 'kitti360_replay.rviz'
    assert r['parameters'] == [{'use_sim_time': True}]

    _, actions = _run_launch(launch_module, bag='/b', rviz='false', use_sim_time='false', compressed='true')
    assert [type(a).__name__ for a in actions] == ['ExecuteProcess', 'Node']
    assert actions[1].kwargs['parameters'][2] == {'use_sim_time': False, 'input.transport': 'compressed'}
    for bad, match in ((dict(bag=''), 'bag:=... is required'), (dict(bag='/b', rate='fast'), 'rate must be'),
                       (dict(bag='/b', rviz='maybe'), 'expected true or false')):
        with pytest.raises(ValueError, match=match):
            _run_launch(launch_module, **bad)


def test_replay_rviz_layout():
    rviz = yaml.safe_load((REPO / 'config' / 'kitti360_replay.rviz').read_text())
    manager = rviz['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'map'
    topics = {d['Topic']['Value']: d['Class'] for d in manager['Displays'] if 'Topic' in d}
    assert topics['/scenedino/occupancy'] == 'rviz_default_plugins/Map'
    assert topics['/scenedino/semantic_points'] == 'rviz_default_plugins/PointCloud2'
    assert topics['/scenedino/voxels'] == 'rviz_default_plugins/MarkerArray'
    assert topics[IMAGE] == 'rviz_default_plugins/Image'
    assert any(d['Class'] == 'rviz_default_plugins/TF' for d in manager['Displays'])
