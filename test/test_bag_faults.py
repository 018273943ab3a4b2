"""The bag tools under faults: killed or stopped mid-run, then resumed; fed damaged bags.

* ``scenedino-process-bag`` and ``scenedino-kitti360-to-bag`` run as subprocesses that pause at a chosen frame
  (``SCENEDINO_BAG_TEST_PAUSE``, in the middle of a frame) and get SIGKILL, SIGINT or SIGTERM there. What they leave
  is read back (with the salvaging reader, rosbags after ``scenedino-bag-recover``), then ``--resume`` finishes the
  run and the result is compared with an uninterrupted run: same messages per topic, none twice.
* Damaged inputs (a chunk with a bad CRC, a truncated MCAP, a split sqlite3 bag with a file missing) are written here
  from the small synthetic frames of test_process_bag.py and the synthetic KITTI-360 drive; process-bag and replay
  must process what is readable and say how many messages were lost.

Run through scripts/test.sh (rclpy; DDS on loopback). Waits have generous timeouts that only a hang trips.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (scripts/setup.sh --ros-wheels)')
pytest.importorskip('scenedino_ros.msg', reason='scenedino_ros.msg is not generated (scripts/build_msgs.sh)')

from rclpy.node import Node  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_bag_salvage import add_chunk_crcs, chunk_positions, corrupt_chunk  # noqa: E402
from test_process_bag import (  # noqa: E402
    BASE_PARAMS,
    SMALL_GRID,
    TYPESTORE,
    assert_same,
    camera_info,
    raw_image,
    street,
    tiny_params,
)

from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360  # noqa: E402
from scenedino_ros.bag import kitti360 as k2b  # noqa: E402
from scenedino_ros.bag.io import commit  # noqa: E402
from scenedino_ros.bag.process import _message_class, process_bag  # noqa: E402
from scenedino_ros.bag.replay import Player, ReplayOptions  # noqa: E402
from scenedino_ros.bag.salvage import SalvagingReader  # noqa: E402
from scenedino_ros.bag.stopping import PAUSE_ENV  # noqa: E402
from scenedino_ros.cli import bag_recover  # noqa: E402
from scenedino_ros.cli import process_bag as process_bag_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 300.0  # start-up of a subprocess that imports torch on a loaded 2-core machine; only a hang trips it
STAMPS = [8_000_000_000_000 + i * 100_000_000 for i in range(6)]
OUT_TOPICS = ('depth', 'occupancy', 'semantic_points', 'semantics', 'voxel_grid', 'voxels')
SEQ = '2013_05_28_drive_0009_sync'


# ----------------------------------------------------------------------------------------------------- helpers

def camera_bag(path: Path, storage: str = 'mcap', corrupt_image: bool = True, chunk_per_frame: bool = False) -> Path:
    """Six frames (/cam/image_raw, /cam/camera_info) and a /note per frame; with ``corrupt_image`` an undecodable
    image between frames 0 and 1 (a skipped frame). ``chunk_per_frame``: one MCAP chunk (sqlite3: transaction) per
    frame."""
    writer = Writer(path, version=9, storage_plugin={'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[
        storage])
    writer.open()
    note = writer.add_connection('/note', 'std_msgs/msg/String', typestore=TYPESTORE)
    image = writer.add_connection('/cam/image_raw', 'sensor_msgs/msg/Image', typestore=TYPESTORE)
    info = writer.add_connection('/cam/camera_info', 'sensor_msgs/msg/CameraInfo', typestore=TYPESTORE)
    for i, s in enumerate(STAMPS):
        writer.write(note, s - 1000, serialize_message(String(data=f'frame {i}')))
        writer.write(image, s, serialize_message(raw_image(s, street(i))))
        writer.write(info, s, serialize_message(camera_info(s)))
        if i == 0 and corrupt_image:
            writer.write(image, s + 1000, b'\x00\x01\x00\x00 not a CDR image')
        if chunk_per_frame:
            commit(writer)
    writer.close()
    return path


def read_raw(bag: Path, salvage: bool = False) -> dict[str, list[tuple[int, bytes]]]:
    """topic -> [(bag time, CDR bytes)], sorted."""
    out = defaultdict(list)
    with (SalvagingReader(bag) if salvage else Reader(bag)) as reader:
        for conn, t, data in reader.messages():
            out[conn.topic].append((t, bytes(data)))
    return {k: sorted(v) for k, v in out.items()}


def output_stamps(raw: dict[str, list[tuple[int, bytes]]]) -> dict[str, list[int]]:
    return {t.rsplit('/', 1)[1]: [ns for ns, _ in v] for t, v in raw.items() if t.startswith('/scenedino/')}


def assert_same_bags(got_bag: Path, want_bag: Path) -> None:
    """Equal inputs byte for byte, equal outputs message for message (floats to 1e-5), nothing twice."""
    from rclpy.serialization import deserialize_message

    got, want = read_raw(got_bag), read_raw(want_bag)
    assert {t: len(v) for t, v in got.items()} == {t: len(v) for t, v in want.items()}
    with Reader(want_bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    for topic, msgs in want.items():
        assert [t for t, _ in got[topic]] == [t for t, _ in msgs], topic
        if not topic.startswith('/scenedino/'):
            assert got[topic] == msgs, topic
            continue
        cls = _message_class(types[topic])
        for (_, a), (_, b) in zip(got[topic], msgs):
            assert_same(deserialize_message(a, cls), deserialize_message(b, cls), topic)


def cli_args(bag: Path, out: Path, checkpoint: Path, storage: str) -> list[str]:
    args = [str(bag), str(out), '--params', str(BASE_PARAMS), '--checkpoint', str(checkpoint), '--include-inputs',
            '--storage', storage, '--no-progress']
    for g in SMALL_GRID:
        args += ['--param', g]
    return args


def start_paused(module: str, args: list[str], flag: Path, frames: int) -> subprocess.Popen:
    """``python -m module args`` that pauses in the middle of the frame after ``frames`` frames; returns once it
    has paused there."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED='1', **{PAUSE_ENV: f'{frames}:{flag}'})
    proc = subprocess.Popen([sys.executable, '-m', module, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    end = time.monotonic() + WAIT_S
    while not flag.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            pytest.fail(f'{module} did not pause (exit {proc.returncode}):\n{proc.communicate()[0][-3000:]}')
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen, sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        log, _ = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, log


# ------------------------------------------------------------------------------------- process-bag: faults

@pytest.mark.parametrize('sig, storage', [(signal.SIGKILL, 'mcap'), (signal.SIGKILL, 'sqlite3'),
                                          (signal.SIGINT, 'mcap')], ids=['kill-mcap', 'kill-sqlite3', 'int-mcap'])
def test_process_bag_stopped_mid_frame_then_resumed(tiny_checkpoint, tmp_path, sig, storage):
    """Paused in the middle of frame 4 (after inference, before writing): SIGKILL leaves frames 1-3 committed (and
    the skipped corrupt image); SIGINT finishes frame 4 and closes the bag. --resume then gives what an uninterrupted
    run gives, every input copied once. (SIGTERM takes the same path: see the kitti360-to-bag test.)"""
    bag = camera_bag(tmp_path / 'in')
    ref_out = tmp_path / 'ref'
    ref = process_bag(bag, ref_out, tiny_params(tiny_checkpoint), include_inputs=True, storage=storage,
                      progress=False)
    assert (ref.frames_processed, ref.frames_skipped) == (6, 1)

    out, flag = tmp_path / 'out', tmp_path / 'paused'
    args = cli_args(bag, out, tiny_checkpoint, storage)
    proc = start_paused('scenedino_ros.cli.process_bag', args, flag, frames=3)
    code, log = stop(proc, sig)
    work = tmp_path / 'out.partial'
    assert not out.exists() and work.is_dir()
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert not (work / 'out' / 'metadata.yaml').exists()
        if storage == 'mcap':  # readable as it is (sqlite3 needs the recovery: a killed writer leaves a journal)
            left = read_raw(work / 'out', salvage=True)
            assert output_stamps(left) == dict.fromkeys(OUT_TOPICS, STAMPS[:3])
            assert [t for t, _ in left['/cam/image_raw']] == [STAMPS[0], STAMPS[0] + 1000, *STAMPS[1:3]]
        assert bag_recover.main([str(out)]) == 0
        closed = work / 'resumed' / 'out'
        summary = json.loads((closed / 'summary.json').read_text())
        assert summary['interrupted'] == 'killed (recovered)'
        frames_before = 3
    else:
        assert code == 128 + sig, log[-3000:]
        assert f'interrupted: {work / "out"} holds the frames done' in log
        closed = work / 'out'
        summary = json.loads((closed / 'summary.json').read_text())
        assert summary['interrupted'] == sig.name
        frames_before = 4  # the frame in progress was finished
    left = read_raw(closed)  # rosbags reads it: a complete bag
    assert output_stamps(left) == dict.fromkeys(OUT_TOPICS, STAMPS[:frames_before])
    assert [t for t, _ in left['/note']] == [s - 1000 for s in STAMPS[:frames_before]]
    assert (summary['frames_processed'], summary['frames_skipped']) == (frames_before, 1)

    assert process_bag_cli.main(args + ['--resume']) == 0
    assert not work.exists()
    assert_same_bags(out, ref_out)
    resumed = json.loads((out / 'summary.json').read_text())
    assert (resumed['frames_processed'], resumed['frames_skipped'], resumed['frames_resumed']) == \
        (6, 1, frames_before + 1)
    assert resumed['messages_written'] == ref.messages_written and resumed['interrupted'] == ''
    assert resumed['occupied_voxels'] == pytest.approx(list(ref.occupied_voxels), abs=2)


def test_process_bag_refuses_a_foreign_partial_run(tiny_checkpoint, tmp_path):
    """An interrupted run (stopped in-process after two frames) is only resumed with the same settings."""
    bag = camera_bag(tmp_path / 'in', corrupt_image=False)
    stop_event, seen = threading.Event(), []

    def on_frame(frame):
        seen.append(frame.stamp_ns)
        if len(seen) == 2:
            stop_event.set()

    p = tiny_params(tiny_checkpoint)
    s = process_bag(bag, tmp_path / 'out', p, on_frame=on_frame, stop=stop_event, progress=False)
    assert s.interrupted == 'stop requested' and s.frames_processed == 2
    assert s.output_path == str(tmp_path / 'out.partial' / 'out')
    from scenedino_ros.bag.process import BagError
    with pytest.raises(BagError, match='holds an interrupted run: continue it with --resume'):
        process_bag(bag, tmp_path / 'out', p, progress=False)
    with pytest.raises(BagError, match="other settings.*params"):
        process_bag(bag, tmp_path / 'out', tiny_params(tiny_checkpoint, 'render.stride_px:=3'), resume=True,
                    progress=False)
    with pytest.raises(BagError, match="other settings.*include_inputs"):
        process_bag(bag, tmp_path / 'out', p, include_inputs=True, resume=True, progress=False)
    seen.clear()
    s = process_bag(bag, tmp_path / 'out', p, on_frame=on_frame, resume=True, progress=False)
    assert seen == STAMPS[2:] and s.frames_processed == 6 and s.frames_resumed == 2
    assert output_stamps(read_raw(tmp_path / 'out')) == dict.fromkeys(OUT_TOPICS, STAMPS)


# -------------------------------------------------------------------------------- kitti360-to-bag: faults

@pytest.fixture(scope='module')
def drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('kitti360')
    write_kitti360(StreetWorld.generate(3, StreetConfig(num_frames=5)), root, SEQ, range(5), full_size=(30, 96),
                   image_size=(16, 48), semantics=False, velodyne=True)
    return root


@pytest.mark.parametrize('sig, storage', [(signal.SIGKILL, 'mcap'), (signal.SIGTERM, 'sqlite3')],
                         ids=['kill-mcap', 'term-sqlite3'])
def test_kitti360_to_bag_stopped_mid_frame_then_resumed(drive, tmp_path, sig, storage):
    """Paused after the first message of frame 2: SIGKILL leaves frames 0-1 (nothing of frame 2), SIGTERM finishes
    frame 2 and closes the bag; never a complete-looking OUT. --resume gives the uninterrupted bag, byte for byte."""
    ref = k2b.convert(drive, SEQ, tmp_path / 'ref', storage=storage, velodyne=True, progress=False)
    out, flag = tmp_path / 'out', tmp_path / 'paused'
    args = [str(drive), '--sequence', SEQ, '--storage', storage, '--velodyne', '--no-progress', str(out)]
    proc = start_paused('scenedino_ros.cli.kitti360_to_bag', args, flag, frames=2)
    code, log = stop(proc, sig)
    work = tmp_path / 'out.partial'
    assert not out.exists() and work.is_dir()
    image = k2b.TOPICS.image('image_00')
    want = read_raw(tmp_path / 'ref')
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL and not (work / 'out' / 'metadata.yaml').exists()
        left = read_raw(work / 'out', salvage=True)
        assert left[image] == want[image][:2] and left[k2b.TOPICS.tf_static] == want[k2b.TOPICS.tf_static]
    else:
        assert code == 128 + sig, log[-3000:]
        assert f'interrupted ({sig.name})' in log and (work / 'out' / 'metadata.yaml').is_file()
        assert read_raw(work / 'out')[image] == want[image][:3]
    summary = k2b.convert(drive, SEQ, out, storage=storage, velodyne=True, progress=False, resume=True)
    assert summary.frames_written == ref.frames_written and summary.message_counts == ref.message_counts
    assert summary.frames_resumed == (2 if sig == signal.SIGKILL else 3)
    assert read_raw(out) == want and not work.exists()


class StopAfter(threading.Event):
    """A stop request that turns true at its (n + 1)-th look."""

    def __init__(self, n: int):
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > self.n


def test_kitti360_to_bag_refuses_an_interrupted_conversion_without_resume(drive, tmp_path):
    s = k2b.convert(drive, SEQ, tmp_path / 'out', cameras=('image_00',), stop=StopAfter(1), progress=False)
    assert s.interrupted == 'stop requested' and s.frames_written == (0,)
    assert s.path == tmp_path / 'out.partial' / 'out'
    with pytest.raises(Exception, match='holds an interrupted run'):
        k2b.convert(drive, SEQ, tmp_path / 'out', cameras=('image_00',), progress=False)
    with pytest.raises(Exception, match=r"other settings \(cameras"):
        k2b.convert(drive, SEQ, tmp_path / 'out', resume=True, progress=False)
    s = k2b.convert(drive, SEQ, tmp_path / 'out', cameras=('image_00',), overwrite=True, progress=False)
    assert s.frames_written == (0, 1, 2, 3, 4) and not (tmp_path / 'out.partial').exists()


# -------------------------------------------------------------------------------------- damaged input bags

def damaged_camera_bag(tmp_path: Path, damage: str) -> tuple[Path, list[int], int]:
    """(bag, stamps of the frames left readable, messages lost) for a six-frame bag with one chunk or file per
    frame (bad-crc: frame 3's chunk; truncated: cut inside frame 4's chunk; missing-file: frames 3-5's file)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if damage == 'missing-file':
        bag = _split_camera_bag(tmp_path, camera_bag(tmp_path / 'whole', 'sqlite3', corrupt_image=False))
        (bag / 'cam_1.db3').unlink()
        return bag, STAMPS[:3], 9
    bag = camera_bag(tmp_path / 'in', corrupt_image=False, chunk_per_frame=True)
    (mcap,) = bag.glob('*.mcap')
    if damage == 'bad-crc':
        add_chunk_crcs(mcap)
        corrupt_chunk(mcap, 3)
        return bag, [s for i, s in enumerate(STAMPS) if i != 3], 3
    data = mcap.read_bytes()
    mcap.write_bytes(data[:chunk_positions(mcap)[4] + 200])
    return bag, STAMPS[:4], 6


def _split_camera_bag(tmp_path: Path, whole: Path) -> Path:
    """``whole`` (sqlite3) rewritten as a bag of two files: frames 0-2 and 3-5."""
    parts = []
    with Reader(whole) as reader:
        conns = list(reader.connections)
        msgs = [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]
    for k, (lo, hi) in enumerate(((0, 3), (3, 6))):
        part = tmp_path / f'part{k}'
        with Writer(part, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
            out = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=TYPESTORE) for c in conns}
            for topic, t, d in msgs:
                if STAMPS[lo] - 1000 <= t < (STAMPS[hi] - 1000 if hi < 6 else 2**63):
                    writer.write(out[topic], t, d)
        parts.append(part)
    bag = tmp_path / 'cam'
    bag.mkdir()
    meta = [yaml.safe_load((p / 'metadata.yaml').read_text())['rosbag2_bagfile_information'] for p in parts]
    for k, p in enumerate(parts):
        shutil.move(p / f'{p.name}.db3', bag / f'cam_{k}.db3')
    m = meta[0]
    m['relative_file_paths'] = ['cam_0.db3', 'cam_1.db3']
    m['files'] = [{**meta[k]['files'][0], 'path': f'cam_{k}.db3'} for k in range(2)]
    m['message_count'] = sum(x['message_count'] for x in meta)
    for ta, tb in zip(m['topics_with_message_count'], meta[1]['topics_with_message_count']):
        ta['message_count'] += tb['message_count']
    (bag / 'metadata.yaml').write_text(yaml.safe_dump({'rosbag2_bagfile_information': m}))
    return bag


@pytest.mark.parametrize('damage', ['bad-crc', 'truncated', 'missing-file'])
def test_process_bag_on_a_damaged_bag(tiny_checkpoint, tmp_path, damage, capsys):
    bag, readable, lost = damaged_camera_bag(tmp_path, damage)
    p = tiny_params(tiny_checkpoint)
    s = process_bag(bag, tmp_path / 'out', p, include_inputs=True, progress=False)
    assert s.frames_processed == len(readable) and s.messages_lost == lost
    written = read_raw(tmp_path / 'out')
    assert output_stamps(written) == dict.fromkeys(OUT_TOPICS, readable)  # each readable frame once
    assert [t for t, _ in written['/cam/image_raw']] == readable
    problem = {'bad-crc': 'CRC mismatch', 'truncated': 'ends inside a chunk record',
               'missing-file': 'listed in metadata.yaml but missing'}[damage]
    assert any(problem in d.problem for d in s.input_damage)
    md = (tmp_path / 'out' / 'summary.md').read_text()
    assert f'**damaged input**: {lost} messages lost' in md and problem in md
    assert json.loads((tmp_path / 'out' / 'summary.json').read_text())['messages_lost'] == lost
    assert process_bag_cli.main([str(bag), str(tmp_path / 'out_cli'), '--params', str(BASE_PARAMS),
                                 '--checkpoint', str(tiny_checkpoint), '--no-progress',
                                 *[a for g in SMALL_GRID for a in ('--param', g)]]) == 1
    assert f'{lost} messages lost' in capsys.readouterr().out


def test_replay_plays_what_a_damaged_bag_holds(drive, ros_context, tmp_path):
    """A converted drive cut short inside frame 3 (one chunk per frame) and a split camera bag missing a file."""
    bag = tmp_path / 'drive_bag'
    k2b.convert(drive, SEQ, bag, cameras=('image_00',), progress=False)
    (mcap,) = bag.glob('*.mcap')
    chunks = chunk_positions(mcap)
    mcap.write_bytes(mcap.read_bytes()[:chunks[3] + 100])
    with SalvagingReader(bag) as reader:
        readable = sum(1 for c, _, _ in reader.messages() if c.topic == k2b.TOPICS.image('image_00'))
    assert readable == 3  # chunk 0: /tf_static + frame 0; chunks 1, 2: frames 1, 2

    node = Node('damaged_replay', context=ros_context)
    try:
        image, info = k2b.TOPICS.image('image_00'), k2b.TOPICS.camera_info('image_00')
        player = Player(node, bag, ReplayOptions(rate=100.0, clock_hz=0.0, topics=(image, info)))
        try:
            summary = player.play_once()
        finally:
            player.close()
        assert summary.messages == 2 * readable
        listed = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']['message_count']
        assert summary.messages_lost == listed - (3 * readable + 1) == 6  # per frame /tf, info, image; /tf_static
        assert any('ends inside a chunk record' in d.problem for d in summary.damage)
        assert 'damaged bag: 6 messages lost' in summary.describe()

        split, readable_stamps, lost = damaged_camera_bag(tmp_path / 'split', 'missing-file')
        player = Player(node, split, ReplayOptions(rate=100.0, clock_hz=0.0))
        try:
            summary = player.play_once()
        finally:
            player.close()
        assert summary.messages == 3 * len(readable_stamps) and summary.messages_lost == lost
    finally:
        node.destroy_node()
