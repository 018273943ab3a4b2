"""Damaged bags read by ``scenedino_ros.bag.salvage`` and the work folder of ``scenedino_ros.bag.partial``, without ROS.

The bags are written here with rosbags (one MCAP chunk per ``commit``, so damage can be placed in a chosen chunk)
and then damaged the way they are in the field: a file cut short, a chunk whose data no longer matches its CRC or
does not decompress, the summary section lost, a storage file of a split bag missing, ``metadata.yaml`` missing.
Expected messages come from the undamaged bag read with rosbags.
"""
from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from scenedino_ros.bag.io import bag_writer, commit
from scenedino_ros.bag.partial import PartialBag, PartialBagError, partial_path, read_journal, recover
from scenedino_ros.bag.salvage import BagOpenError, McapScan, SalvagingReader, describe_losses, messages_lost

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
STRING = 'std_msgs/msg/String'
T0 = 1_700_000_000_000_000_000
CHUNKS = 5
PER_CHUNK = 4  # two topics, two messages each


def string(text: str) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(TYPESTORE.types[STRING](data=text), STRING))


def write_chunked(path: Path, storage: str = 'mcap', zstd: bool = False, chunks: int = CHUNKS,
                  first: int = 0) -> Path:
    """A bag with ``/a`` and ``/b`` (String), ``PER_CHUNK`` messages per chunk, one chunk per commit; message k
    (counted from ``first``) at T0 + k ms, text ``topic:k``. MCAP chunks are uncompressed unless ``zstd``."""
    writer = bag_writer(path, storage) if zstd else Writer(path, version=9, storage_plugin=StoragePlugin(
        {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[storage]))
    writer.open()
    a = writer.add_connection('/a', STRING, typestore=TYPESTORE)
    b = writer.add_connection('/b', STRING, typestore=TYPESTORE)
    k = first * PER_CHUNK
    for _ in range(chunks):
        for _ in range(PER_CHUNK // 2):
            writer.write(a, T0 + k * 1_000_000, string(f'/a:{k}'))
            writer.write(b, T0 + k * 1_000_000 + 1, string(f'/b:{k}'))
            k += 1
        commit(writer)
    writer.close()
    return path


def records(path: Path) -> list[tuple[int, int, int]]:
    """(opcode, offset, length) of the top-level records of an MCAP file, up to its data-end record."""
    data, pos, out = path.read_bytes(), 8, []
    while pos < len(data):
        op, length = data[pos], struct.unpack_from('<Q', data, pos + 1)[0]
        out.append((op, pos, length))
        if op == 0x0F:
            break
        pos += 9 + length
    return out


def chunk_data_offset(data: bytes, pos: int) -> tuple[int, int, str]:
    """(offset of the chunk's data, its length, its compression) for the chunk record at ``pos``."""
    at = pos + 9 + 28
    (n,) = struct.unpack_from('<I', data, at)
    compression = data[at + 4:at + 4 + n].decode()
    at += 4 + n
    (size,) = struct.unpack_from('<Q', data, at)
    return at + 8, size, compression


def add_chunk_crcs(path: Path) -> None:
    """Store the CRC of every chunk (rosbags writes 0, 'no CRC'; rosbag2's MCAP writer stores them)."""
    from backports import zstd

    data = bytearray(path.read_bytes())
    for op, pos, _ in records(path):
        if op == 0x06:
            start, size, compression = chunk_data_offset(bytes(data), pos)
            raw = bytes(data[start:start + size])
            raw = zstd.decompress(raw) if compression == 'zstd' else raw
            struct.pack_into('<I', data, pos + 9 + 24, zlib.crc32(raw))
    path.write_bytes(bytes(data))


def chunk_positions(path: Path) -> list[int]:
    return [pos for op, pos, _ in records(path) if op == 0x06]


def corrupt_chunk(path: Path, index: int, where: str = 'middle') -> None:
    """Flip one byte of chunk ``index``'s data: in its ``middle`` or at its ``start`` (a zstd frame header)."""
    data = bytearray(path.read_bytes())
    start, size, _ = chunk_data_offset(bytes(data), chunk_positions(path)[index])
    data[start + (size // 2 if where == 'middle' else 0)] ^= 0xFF
    path.write_bytes(bytes(data))


def all_messages(bag: Path) -> list[tuple[str, int, bytes]]:
    with Reader(bag) as reader:
        return [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]


def salvaged(bag: Path) -> tuple[list[tuple[str, int, bytes]], SalvagingReader]:
    reader = SalvagingReader(bag)
    with reader:
        out = [(c.topic, t, bytes(d)) for c, t, d in reader.messages()]
    return out, reader


def chunk_messages(k: int) -> set[str]:
    """Texts of chunk k."""
    return {f'{topic}:{i}' for i in range(k * PER_CHUNK // 2, (k + 1) * PER_CHUNK // 2) for topic in ('/a', '/b')}


def texts(msgs) -> list[str]:
    return [TYPESTORE.deserialize_cdr(d, STRING).data for _, _, d in msgs]


# ---------------------------------------------------------------------------------------------- MCAP damage

def test_healthy_bag_reads_like_rosbags(tmp_path):
    bag = write_chunked(tmp_path / 'bag', zstd=True)
    msgs, reader = salvaged(bag)
    assert msgs == all_messages(bag) and len(msgs) == CHUNKS * PER_CHUNK
    assert reader.damage == [] and {c.topic: c.msgcount for c in reader.connections} == {'/a': 10, '/b': 10}
    assert reader.connections[0].digest.startswith('RIHS01_')  # from metadata.yaml, as rosbags reads it


@pytest.mark.parametrize('zstd, where, problem', [(False, 'middle', 'CRC mismatch'), (True, 'middle', 'CRC mismatch'),
                                                    (True, 'start', 'does not decompress (zstd')],
                         ids=['crc', 'zstd-crc', 'zstd-frame'])
def test_bad_chunk_is_skipped_and_its_messages_counted(tmp_path, zstd, where, problem):
    """A chunk whose data was damaged (its CRC no longer matches, or its zstd frame is broken) in a bag whose index
    is intact: rosbags opens it and stops at the chunk; the rest is read on, nothing twice."""
    bag = write_chunked(tmp_path / 'bag', zstd=zstd)
    good = all_messages(bag)
    (mcap,) = bag.glob('*.mcap')
    add_chunk_crcs(mcap)
    assert all_messages(bag) == good  # the CRCs are right
    corrupt_chunk(mcap, 2, where)
    msgs, reader = salvaged(bag)
    assert texts(msgs) == [t for t in texts(good) if t not in chunk_messages(2)]
    bad = [d for d in reader.damage if d.problem.startswith('chunk')]
    assert len(bad) == 1 and bad[0].messages_lost == PER_CHUNK and bad[0].file == str(mcap)
    assert bad[0].problem.startswith(f'chunk at byte {chunk_positions(mcap)[2]}: {problem}')
    assert messages_lost(reader.damage) == PER_CHUNK and describe_losses(reader.damage) == '4 messages lost'
    assert any('rosbags stopped reading it' in d.problem for d in reader.damage)


@pytest.mark.parametrize('cut', ['mid-chunk', 'at-boundary'])
def test_truncated_mcap_in_a_bag_folder(tmp_path, cut):
    """The file ends early (a copy stopped short): everything before is read; metadata.yaml gives the loss."""
    bag = write_chunked(tmp_path / 'bag', zstd=True)
    good = all_messages(bag)
    (mcap,) = bag.glob('*.mcap')
    pos = chunk_positions(mcap)[3]
    data = mcap.read_bytes()
    mcap.write_bytes(data[:pos + 100] if cut == 'mid-chunk' else data[:pos])
    msgs, reader = salvaged(bag)
    assert msgs == good[:3 * PER_CHUNK]
    assert messages_lost(reader.damage) == 2 * PER_CHUNK  # 20 listed, 12 read
    problems = ' | '.join(d.problem for d in reader.damage)
    assert 'rosbags cannot open it' in problems
    assert ('ends inside a chunk record' if cut == 'mid-chunk' else 'without its data-end record') in problems
    with pytest.raises(Exception):  # noqa: B017 -- rosbags alone cannot (any of its errors)
        all_messages(bag)


def test_truncated_bare_mcap_has_an_unknown_loss(tmp_path):
    bag = write_chunked(tmp_path / 'bag', zstd=True)
    (mcap,) = bag.glob('*.mcap')
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(mcap.read_bytes()[:chunk_positions(mcap)[2] + 50])
    msgs, reader = salvaged(cut)
    assert len(msgs) == 2 * PER_CHUNK and messages_lost(reader.damage) is None
    assert describe_losses(reader.damage) == 'an unknown number of messages lost'


def test_lost_summary_section_loses_nothing(tmp_path):
    """Only the index and footer are gone (cut after the data-end record): every message is read."""
    bag = write_chunked(tmp_path / 'bag', zstd=True)
    good = all_messages(bag)
    (mcap,) = bag.glob('*.mcap')
    op, pos, length = records(mcap)[-1]
    assert op == 0x0F
    mcap.write_bytes(mcap.read_bytes()[:pos + 9 + length])
    msgs, reader = salvaged(bag)
    assert msgs == good and messages_lost(reader.damage) == 0
    assert 'rosbags cannot open it' in reader.damage[0].problem


def test_folder_without_metadata(tmp_path):
    bag = write_chunked(tmp_path / 'bag', zstd=True)
    good = all_messages(bag)
    (bag / 'metadata.yaml').unlink()
    msgs, reader = salvaged(bag)
    assert msgs == good and 'has no metadata.yaml' in reader.damage[0].problem
    assert messages_lost(reader.damage) == 0 and {c.msgcount for c in reader.connections} == {10}


def test_nothing_readable_names_every_problem(tmp_path):
    (tmp_path / 'junk.mcap').write_bytes(b'not an mcap file at all')
    with pytest.raises(BagOpenError, match=r'junk.mcap: nothing readable: cannot be read \(not an MCAP file'):
        SalvagingReader(tmp_path / 'junk.mcap').open()
    with pytest.raises(BagOpenError, match='no such bag'):
        SalvagingReader(tmp_path / 'nope').open()
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagOpenError, match='no metadata.yaml and no .mcap or .db3 file'):
        SalvagingReader(tmp_path / 'empty').open()


def test_scan_stops_at_a_limit(tmp_path):
    bag = write_chunked(tmp_path / 'bag')
    (mcap,) = bag.glob('*.mcap')
    ends = [pos + 9 + length for op, pos, length in records(mcap) if op == 0x07]  # after each chunk's indexes
    scan = McapScan(mcap, limit=ends[3])  # the end of chunk 1's message indexes (one per topic and chunk)
    assert texts([(0, 0, d) for _, _, d in scan.messages()]) == [f'{t}:{i}' for i in range(4) for t in ('/a', '/b')]
    assert scan.complete and not scan.damage


# --------------------------------------------------------------------------------------- split sqlite3 bag

def split_sqlite_bag(tmp_path: Path) -> Path:
    """A bag of two .db3 files (chunks 0-2 and 3-4), as ``ros2 bag record --max-bag-size`` splits one."""
    a = write_chunked(tmp_path / 'part_a', 'sqlite3', chunks=3)
    b = write_chunked(tmp_path / 'part_b', 'sqlite3', chunks=2, first=3)
    bag = tmp_path / 'split'
    bag.mkdir()
    shutil.move(a / 'part_a.db3', bag / 'split_0.db3')
    shutil.move(b / 'part_b.db3', bag / 'split_1.db3')
    ma = yaml.safe_load((a / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    mb = yaml.safe_load((b / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    ma['relative_file_paths'] = ['split_0.db3', 'split_1.db3']
    ma['files'] = [{**ma['files'][0], 'path': 'split_0.db3'}, {**mb['files'][0], 'path': 'split_1.db3'}]
    ma['message_count'] += mb['message_count']
    for ta, tb in zip(ma['topics_with_message_count'], mb['topics_with_message_count']):
        ta['message_count'] += tb['message_count']
    (bag / 'metadata.yaml').write_text(yaml.safe_dump({'rosbag2_bagfile_information': ma}))
    return bag


def test_split_sqlite_bag_reads_like_rosbags_and_a_missing_file_is_counted(tmp_path):
    bag = split_sqlite_bag(tmp_path)
    good = all_messages(bag)
    assert len(good) == CHUNKS * PER_CHUNK
    msgs, reader = salvaged(bag)
    assert msgs == good and reader.damage == []
    (bag / 'split_1.db3').unlink()
    msgs, reader = salvaged(bag)
    assert msgs == good[:3 * PER_CHUNK]
    (d,) = reader.damage
    assert d.file == str(bag / 'split_1.db3') and 'missing' in d.problem and d.messages_lost == 2 * PER_CHUNK
    assert {c.topic: c.msgcount for c in reader.connections} == {'/a': 10, '/b': 10}  # as listed
    (bag / 'split_0.db3').unlink()
    with pytest.raises(BagOpenError, match='nothing readable: .*split_0.db3: listed in metadata.yaml but missing'):
        SalvagingReader(bag).open()


# ---------------------------------------------------------------------------------------------- work folder

@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_partial_bag_commit_kill_and_resume_without_duplicates(tmp_path, storage):
    """Commits, then messages after the last commit (a kill); the resume copies only the committed ones."""
    out = tmp_path / 'out'

    def connect(writer):
        return writer.add_connection('/a', STRING, typestore=TYPESTORE)

    work = PartialBag.start(out, 'test-tool', storage, {'x': 1})
    writer = work.open_writer()
    conn = connect(writer)
    assert work.begin(writer) == []
    for k in range(3):
        writer.write(conn, T0 + k, string(f'/a:{k}'))
        work.commit(writer, {'k': k})
    writer.write(conn, T0 + 3, string('/a:3'))  # never committed
    if storage == 'mcap':
        commit(writer)  # even on disk, it is after the journal's last mark
    work.abandon(writer, keep=True)  # what a kill leaves (the file is not closed)
    assert not out.exists() and (partial_path(out) / 'out' / f'out.{"mcap" if storage == "mcap" else "db3"}').is_file()

    with pytest.raises(PartialBagError, match='holds an interrupted run: continue it with --resume'):
        PartialBag.start(out, 'test-tool', storage, {'x': 1})
    with pytest.raises(PartialBagError, match=r"other settings \(x: 1 then, 2 now\)"):
        PartialBag.start(out, 'test-tool', storage, {'x': 2}, resume=True)

    work = PartialBag.start(out, 'test-tool', storage, {'x': 1}, resume=True)
    writer = work.open_writer()
    conn = connect(writer)
    assert [d['k'] for d in work.begin(writer)] == [0, 1, 2]
    assert work.bag == partial_path(out) / 'resumed' / 'out' and not (partial_path(out) / 'out').exists()
    writer.write(conn, T0 + 3, string('/a:3'))
    work.commit(writer, {'k': 3})
    work.finish(writer)
    assert texts(all_messages(out)) == [f'/a:{k}' for k in range(4)] and not partial_path(out).exists()


def test_work_folder_without_a_commit_is_started_over(tmp_path):
    out = tmp_path / 'out'
    partial_path(out).mkdir()  # killed before its journal was written
    (partial_path(out) / 'out').mkdir()
    work = PartialBag.start(out, 'test-tool', 'mcap', {})
    writer = work.open_writer()
    work.begin(writer)
    work.abandon(writer, keep=True)  # journal header, no commit
    work = PartialBag.start(out, 'test-tool', 'mcap', {'other': 'settings'})
    assert not work.resuming and sorted(p.name for p in partial_path(out).iterdir()) == []


def test_journal_cut_by_a_kill_and_recover(tmp_path):
    out = tmp_path / 'out'
    work = PartialBag.start(out, 'test-tool', 'mcap', {})
    writer = work.open_writer()
    conn = writer.add_connection('/a', STRING, typestore=TYPESTORE)
    work.begin(writer, {'note': 'kept'})
    for k in range(2):
        writer.write(conn, T0 + k, string(f'/a:{k}'))
        work.commit(writer, {'k': k})
    work.abandon(writer, keep=True)
    journal = partial_path(out) / 'journal.jsonl'
    journal.write_text(journal.read_text() + '{"mark": 12')  # a line cut short
    assert len(read_journal(partial_path(out)).commits) == 2

    bag, j = recover(out)
    assert bag == partial_path(out) / 'resumed' / 'out' and (bag / 'metadata.yaml').is_file()
    assert texts(all_messages(bag)) == ['/a:0', '/a:1'] and j.header['info'] == {'note': 'kept'}
    assert recover(partial_path(out))[0] == bag  # closed already: left as it is
    header = json.loads(journal.read_text().splitlines()[0])
    assert header['home'] == 'resumed' and [c['topic'] for c in header['connections']] == ['/a']
    with pytest.raises(PartialBagError, match='no journal'):
        recover(tmp_path / 'elsewhere')


def test_file_compressed_bag_is_read_whole(tmp_path):
    from rosbags.rosbag2 import CompressionFormat, CompressionMode

    writer = Writer(tmp_path / 'bag', version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection('/a', STRING, typestore=TYPESTORE)
        for k in range(3):
            writer.write(conn, T0 + k, string(f'/a:{k}'))
    msgs, reader = salvaged(tmp_path / 'bag')
    assert msgs == all_messages(tmp_path / 'bag') and len(msgs) == 3 and reader.damage == []
