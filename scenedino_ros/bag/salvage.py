"""Reading rosbag2 bags that may be damaged: everything readable is read, and every problem is named with the number
of messages it cost (``scenedino-process-bag``, ``scenedino-replay``).

Healthy bags are read with ``rosbags``, one storage file after the other (the order of rosbags' own reader). Where
rosbags cannot go on, ``SalvagingReader`` does:

* a storage file that ``metadata.yaml`` lists but that is missing is skipped; its messages are lost (the count is
  ``files[].message_count`` of the metadata);
* an MCAP file that rosbags cannot open (truncated: no summary or footer, as a recorder that was killed or a copy that
  stopped short leaves it) is read record by record (``McapScan``) up to its last complete record;
* an MCAP chunk that does not decompress or fails its CRC is skipped; its messages are counted from the message index
  records that follow it;
* an MCAP file that breaks while rosbags reads it (a damaged chunk in an otherwise intact file) is read on from the
  last message read, record by record;
* a bag folder without ``metadata.yaml`` is read from its ``.mcap`` and ``.db3`` files;
* a storage file that cannot be read at all (an sqlite3 file that does not open) is skipped whole.

Messages lost are exact where the bag says how many there were (message indexes, ``metadata.yaml``) and reported as
unknown otherwise. A bag of which nothing can be read raises ``BagOpenError``.
"""
from __future__ import annotations

import logging
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.metadata import parse_qos

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

_logger = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"
#: MCAP record opcodes read here.
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_MESSAGE_INDEX, OP_DATA_END = 0x02, 0x03, 0x04, 0x05, 0x06, \
    0x07, 0x0F
_RECORD_NAMES = {0x01: "header", 0x02: "footer", 0x03: "schema", 0x04: "channel", 0x05: "message", 0x06: "chunk",
                 0x07: "message index", 0x08: "chunk index", 0x09: "attachment", 0x0B: "statistics",
                 0x0C: "metadata", 0x0F: "data end"}
STORAGE_SUFFIXES = (".mcap", ".db3")


class BagOpenError(RuntimeError):
    """Nothing of the bag can be read; the message names the path and every problem found."""


@dataclass(frozen=True)
class Damage:
    """One problem found in a bag."""

    file: str
    """Storage file (or bag folder) concerned."""
    problem: str
    messages_lost: int | None
    """Messages of the bag that could not be read because of it; None: the bag does not say how many."""

    def describe(self) -> str:
        lost = "messages lost: unknown" if self.messages_lost is None else f"{self.messages_lost} messages lost"
        return f"{self.file}: {self.problem} ({lost})"


def describe_losses(damage: Iterable[Damage]) -> str:
    """``"3 messages lost"``, ``"at least 3 messages lost"`` (some counts unknown) or ``"an unknown number of
    messages lost"``."""
    damage = list(damage)
    known = sum(d.messages_lost for d in damage if d.messages_lost is not None)
    if all(d.messages_lost is not None for d in damage):
        return f"{known} messages lost"
    return f"at least {known} messages lost" if known else "an unknown number of messages lost"


def messages_lost(damage: Iterable[Damage]) -> int | None:
    """Sum of the messages lost; None when any count is unknown."""
    counts = [d.messages_lost for d in damage]
    return None if any(n is None for n in counts) else sum(counts)


# ----------------------------------------------------------------------------------------------------- MCAP scan

class _Fields:
    """Little-endian MCAP fields read one after the other from a record body."""

    def __init__(self, data: bytes | memoryview, offset: int = 0):
        self.data, self.at = memoryview(data), offset

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def u16(self) -> int:
        return self._take("<H")

    def u32(self) -> int:
        return self._take("<I")

    def u64(self) -> int:
        return self._take("<Q")

    def raw(self, size: int) -> memoryview:
        if self.at + size > len(self.data):
            raise ValueError(f"field of {size} bytes runs past the end of its record")
        out = self.data[self.at:self.at + size]
        self.at += size
        return out

    def string(self) -> str:
        return bytes(self.raw(self.u32())).decode("utf-8")

    def string_map(self) -> dict[str, str]:
        end = self.u32() + self.at
        out = {}
        while self.at < end:
            key = self.string()
            out[key] = self.string()
        return out


@dataclass(frozen=True)
class McapChannel:
    """A channel of an MCAP file, with its schema."""

    id: int
    topic: str
    msgtype: str
    """Schema name (``pkg/msg/Name``)."""
    encoding: str
    """Message encoding (``cdr``)."""
    msgdef: MessageDefinition
    metadata: dict[str, str]


def _decompress(compression: str, data: bytes | memoryview) -> bytes:
    """Chunk data compressed with ``compression`` ("", "zstd" or "lz4") -> its records."""
    if compression == "zstd":
        return zstd.decompress(bytes(data))
    if compression == "lz4":
        from lz4.frame import decompress as lz4_decompress  # a dependency of rosbags

        return lz4_decompress(bytes(data))
    return bytes(data)


class McapScan:
    """One pass over an MCAP file, record by record from its start, without its index (``messages``).

    Chunks are checked (decompression, size, CRC when the writer stored one) before any of their messages is
    yielded; a chunk that fails is skipped whole and recorded in ``damage`` with the number of messages that its
    message index records list. The pass ends at the data-end record, at ``limit`` (a record boundary), or where the
    file ends (``damage`` then says where; ``complete`` stays False).
    """

    def __init__(self, path: str | Path, limit: int | None = None):
        self.path, self.limit = Path(path), limit
        self.schemas: dict[int, tuple[str, str, str]] = {}
        """id -> (name, encoding, data)."""
        self.channels: dict[int, McapChannel] = {}
        self.damage: list[Damage] = []
        self.counts: Counter[int] = Counter()
        """Messages read per channel id."""
        self.complete = False
        """The pass reached the data-end record or ``limit``."""
        self.start_ns: int | None = None
        self.end_ns: int | None = None

    @property
    def messages_read(self) -> int:
        return sum(self.counts.values())

    def _schema(self, body: bytes | memoryview) -> None:
        f = _Fields(body)
        sid = f.u16()
        self.schemas[sid] = (f.string(), f.string(), bytes(f.raw(f.u32())).decode("utf-8"))

    def _channel(self, body: bytes | memoryview) -> None:
        f = _Fields(body)
        cid, sid = f.u16(), f.u16()
        topic, encoding = f.string(), f.string()
        metadata = f.string_map()
        name, schema_encoding, data = self.schemas.get(sid, ("", "", ""))
        fmt = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL}.get(
            schema_encoding, MessageDefinitionFormat.NONE)
        self.channels[cid] = McapChannel(cid, topic, name, encoding, MessageDefinition(fmt, data), metadata)

    def _chunk(self, body: bytes | memoryview) -> list[tuple[int, int, bytes]]:
        """The messages of a chunk record, sorted by log time; ``ValueError`` saying what is wrong with it."""
        f = _Fields(body)
        f.u64(), f.u64()
        size, crc = f.u64(), f.u32()
        compression = f.string()
        data = f.raw(f.u64())
        if compression not in ("", "zstd", "lz4"):
            raise ValueError(f"has an unsupported compression {compression!r}")
        try:
            raw = _decompress(compression, data)
        except Exception as exc:  # zstd / lz4 errors
            raise ValueError(f"does not decompress ({compression}: {exc})") from exc
        if len(raw) != size:
            raise ValueError(f"decompresses to {len(raw)} bytes instead of {size}")
        if crc and zlib.crc32(raw) != crc:
            raise ValueError(f"CRC mismatch (stored {crc:#010x}, computed {zlib.crc32(raw):#010x})")
        records, at, messages = memoryview(raw), 0, []
        schemas, channels = [], []
        while at < len(records):
            if at + 9 > len(records):
                raise ValueError(f"record header cut at chunk byte {at}")
            op, length = records[at], struct.unpack_from("<Q", records, at + 1)[0]
            rec = records[at + 9:at + 9 + length]
            if len(rec) != length:
                raise ValueError(f"record at chunk byte {at} runs past the chunk")
            if op == OP_MESSAGE:
                m = _Fields(rec)
                cid, _, log_time, _ = m.u16(), m.u32(), m.u64(), m.u64()
                messages.append((cid, log_time, bytes(rec[m.at:])))
            elif op == OP_SCHEMA:
                schemas.append(rec)
            elif op == OP_CHANNEL:
                channels.append(rec)
            at += 9 + length
        for rec in schemas:
            self._schema(rec)
        for rec in channels:
            self._channel(rec)
        messages.sort(key=lambda m: m[1])
        return messages

    def _read_record(self, f: BinaryIO, pos: int, size: int) -> tuple[int, bytes] | str:
        """(opcode, body) of the record at ``pos``, or why there is none (the file ends)."""
        head = f.read(9)
        if not head:
            return (f"ends at byte {pos} without its data-end record and summary (truncated, or its writer was "
                    "stopped)")
        if len(head) < 9:
            return f"ends inside a record header at byte {pos} (truncated)"
        op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
        if pos + 9 + length > size:
            return (f"ends inside a {_RECORD_NAMES.get(op, f'opcode {op:#04x}')} record at byte {pos} "
                    f"({size - pos} of {9 + length} bytes present; truncated)")
        return op, f.read(length)

    def messages(self) -> Iterator[tuple[int, int, bytes]]:
        """(channel id, log time ns, CDR bytes) of every readable message, in file order (sorted within chunks).

        Raises:
            BagOpenError: the file cannot be opened or is not an MCAP file.
        """
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise BagOpenError(f"{self.path}: cannot be opened: {exc.strerror or exc}") from exc
        with f:
            size = f.seek(0, 2) if self.limit is None else min(self.limit, f.seek(0, 2))
            f.seek(0)
            if f.read(8) != MCAP_MAGIC:
                raise BagOpenError(f"{self.path}: not an MCAP file (no MCAP magic at its start)")
            pos, bad = 8, None  # bad: [chunk offset, problem, indexed messages, has index]
            while True:
                if self.limit is not None and pos >= size:
                    record: tuple[int, bytes] | str = (OP_DATA_END, b"")
                else:
                    record = self._read_record(f, pos, size)
                if bad is not None and not (isinstance(record, tuple) and record[0] == OP_MESSAGE_INDEX):
                    self.damage.append(Damage(str(self.path), f"chunk at byte {bad[0]}: {bad[1]}; skipped",
                                              bad[2] if bad[3] else None))
                    bad = None
                if isinstance(record, str):
                    self.damage.append(Damage(str(self.path), record, None))
                    return
                op, body = record
                if op in (OP_DATA_END, OP_FOOTER):
                    self.complete = True
                    return
                try:
                    if op == OP_CHUNK:
                        try:
                            found = self._chunk(body)
                        except (ValueError, struct.error, UnicodeDecodeError) as exc:
                            bad = [pos, str(exc), 0, False]
                            found = []
                        for cid, log_time, data in found:
                            self._count(cid, log_time)
                            yield cid, log_time, data
                    elif op == OP_MESSAGE_INDEX and bad is not None:
                        m = _Fields(body)
                        m.u16()
                        bad[2] += m.u32() // 16
                        bad[3] = True
                    elif op == OP_SCHEMA:
                        self._schema(body)
                    elif op == OP_CHANNEL:
                        self._channel(body)
                    elif op == OP_MESSAGE:
                        m = _Fields(body)
                        cid, _, log_time, _ = m.u16(), m.u32(), m.u64(), m.u64()
                        self._count(cid, log_time)
                        yield cid, log_time, bytes(body[m.at:])
                except (ValueError, struct.error, UnicodeDecodeError) as exc:
                    self.damage.append(Damage(str(self.path), f"malformed {_RECORD_NAMES.get(op, 'record')} record at "
                                              f"byte {pos} ({exc}); skipped", 1 if op == OP_MESSAGE else 0))
                pos += 9 + len(body)

    def _count(self, cid: int, log_time: int) -> None:
        self.counts[cid] += 1
        self.start_ns = log_time if self.start_ns is None else min(self.start_ns, log_time)
        self.end_ns = log_time if self.end_ns is None else max(self.end_ns, log_time)

    def run(self) -> McapScan:
        """Read the whole file once (channels, counts, damage) without keeping the messages; returns self."""
        for _ in self.messages():
            pass
        return self


# ------------------------------------------------------------------------------------------------ the reader

@dataclass
class _File:
    """One storage file of the bag and how it is read."""

    path: Path
    expected: int | None
    """Messages the bag's metadata says the file holds; None: not stated."""
    reader: Reader | None = None
    """rosbags reader of a healthy file."""
    scan: McapScan | None = None
    """Pre-scan of an MCAP file that rosbags could not open (read with ``McapScan`` instead)."""
    conns: dict[int, Connection] | None = None
    """File connection id (MCAP channel id, sqlite3 topic id) -> the bag's connection."""


def _load_metadata(folder: Path) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` of ``folder/metadata.yaml``; ``BagOpenError`` if it is unreadable."""
    path = folder / "metadata.yaml"
    try:
        info = yaml.safe_load(path.read_text())["rosbag2_bagfile_information"]
        if not isinstance(info.get("relative_file_paths"), list):
            raise KeyError("relative_file_paths")
        return info
    except Exception as exc:  # OSError, YAML errors, a missing key, a document of the wrong shape
        raise BagOpenError(f"{path}: not a readable rosbag2 metadata file ({type(exc).__name__}: {exc})") from exc


def _expected_counts(info: dict[str, Any], paths: list[Path]) -> list[int | None]:
    """Messages per storage file from the metadata (``files``, or ``message_count`` for a one-file bag)."""
    per_file = {Path(str(f.get("path", ""))).name: f.get("message_count") for f in info.get("files") or []
                if isinstance(f, dict)}
    out = []
    for p in paths:
        n = per_file.get(p.name)
        if n is None and len(paths) == 1:
            n = info.get("message_count")
        out.append(int(n) if isinstance(n, int) else None)
    return out


def _metadata_connections(info: dict[str, Any], owner: object) -> list[Connection]:
    """The bag's connections as ``metadata.yaml`` lists them."""
    out = []
    for i, entry in enumerate(info.get("topics_with_message_count") or []):
        t = entry["topic_metadata"]
        out.append(Connection(i + 1, t["name"], t["type"], MessageDefinition(MessageDefinitionFormat.NONE, ""),
                              t.get("type_description_hash", ""), int(entry.get("message_count", 0)),
                              ConnectionExtRosbag2(t.get("serialization_format", "cdr"),
                                                   parse_qos(t.get("offered_qos_profiles", []))), owner))
    return out


class SalvagingReader:
    """A rosbag2 bag (folder, ``.mcap`` or ``.db3`` file) read as far as it can be; see the module docstring.

    Like rosbags' ``Reader``: ``open``/``close`` (or a ``with`` block), ``connections``, ``start_time``,
    ``duration``, ``messages(connections)``. ``damage`` lists the problems found so far: at ``open`` and during the
    latest pass of ``messages``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.connections: list[Connection] = []
        self._files: list[_File] = []
        self._open_damage: list[Damage] = []
        self._pass_damage: list[Damage] = []
        self._message_compression = False
        self._start: int | None = None
        self._end: int | None = None

    # ------------------------------------------------------------------------------------------- open
    def __enter__(self) -> SalvagingReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def damage(self) -> list[Damage]:
        return self._open_damage + self._pass_damage

    @property
    def storage_files(self) -> list[Path]:
        """The storage files being read."""
        return [f.path for f in self._files]

    @property
    def start_time(self) -> int:
        """Time of the earliest message (ns)."""
        return self._start if self._start is not None else 0

    @property
    def end_time(self) -> int:
        """Time just after the latest message (ns)."""
        return self._end if self._end is not None else 0

    @property
    def duration(self) -> int:
        return max(self.end_time - self.start_time, 0)

    def open(self) -> None:
        """Find the storage files and open each (rosbags, or a pre-scan); ``BagOpenError`` if none is readable."""
        if not self.path.exists():
            raise BagOpenError(f"{self.path}: no such bag (file or folder)")
        known: list[Connection] | None = None
        if self.path.is_dir():
            paths, expected, known = self._open_folder()
            if not paths:
                self._open_whole()
                return
        elif self.path.suffix in STORAGE_SUFFIXES:
            paths, expected = [self.path], [None]
        else:
            raise BagOpenError(f"{self.path}: not a rosbag2 bag (a folder, or a {' or '.join(STORAGE_SUFFIXES)} "
                               f"file)")
        for path, n in zip(paths, expected):
            if not path.is_file():
                self._open_damage.append(Damage(str(path), "listed in metadata.yaml but missing; skipped", n))
                continue
            self._open_file(_File(path, n))
        if not self._files:
            problems = "; ".join(d.problem if d.file == str(self.path) else d.describe() for d in self._open_damage)
            raise BagOpenError(f"{self.path}: nothing readable: {problems or 'no storage file'}")
        self._unify(known)
        for d in self._open_damage:
            _logger.warning("damaged bag: %s", d.describe())

    def _open_whole(self) -> None:
        """A bag of file-compressed storage files, read whole by rosbags (which unpacks them first)."""
        reader = Reader(self.path)
        try:
            reader.open()
        except Exception as exc:  # rosbags: ReaderError, zstd and plugin errors
            raise BagOpenError(f"{self.path}: cannot be read ({type(exc).__name__}: {exc})") from exc
        self._files.append(_File(self.path, None, reader=reader))
        if reader.message_count:
            self._span(reader.start_time, reader.end_time)
        self._unify(list(reader.connections))

    def _open_folder(self) -> tuple[list[Path], list[int | None], list[Connection] | None]:
        if not (self.path / "metadata.yaml").is_file():
            paths = sorted(p for p in self.path.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())
            if not paths:
                raise BagOpenError(f"{self.path}: no metadata.yaml and no {' or '.join(STORAGE_SUFFIXES)} file")
            self._open_damage.append(Damage(str(self.path), "has no metadata.yaml (its writer did not finish?): "
                                            f"reading {', '.join(p.name for p in paths)} directly", 0))
            return paths, [None] * len(paths), None
        info = _load_metadata(self.path)
        mode = str(info.get("compression_mode") or "").lower()
        if mode == "file":  # whole files compressed: rosbags unpacks them; no salvaging
            return [], [], None
        self._message_compression = mode == "message"
        paths = [self.path / Path(str(p)).name for p in info["relative_file_paths"]]
        known = None
        try:
            with Reader(self.path) as whole:  # the metadata's connections: type hashes and QoS as recorded
                known = list(whole.connections)
        except Exception:  # missing or unreadable files: the connections come from metadata.yaml
            try:
                known = _metadata_connections(info, self)
            except (KeyError, TypeError, ValueError) as exc:
                raise BagOpenError(f"{self.path / 'metadata.yaml'}: topics_with_message_count is malformed "
                                   f"({type(exc).__name__}: {exc})") from exc
        return paths, _expected_counts(info, paths), known

    def _open_file(self, f: _File) -> None:
        try:
            reader = Reader(f.path)
            reader.open()
            f.reader = reader
            self._files.append(f)
            self._span(reader.start_time if reader.message_count else None,
                       reader.end_time if reader.message_count else None)
            return
        except Exception as exc:  # rosbags: ReaderError and plugin errors
            reason = f"{type(exc).__name__}: {exc}"
        if f.path.suffix != ".mcap":
            self._open_damage.append(Damage(str(f.path), f"cannot be read ({reason}); skipped", f.expected))
            return
        scan = McapScan(f.path)
        try:
            scan.run()
        except BagOpenError as exc:
            reason = str(exc).removeprefix(f"{f.path}: ")
            self._open_damage.append(Damage(str(f.path), f"cannot be read ({reason}); skipped", f.expected))
            return
        f.scan = scan
        self._files.append(f)
        self._span(scan.start_ns, None if scan.end_ns is None else scan.end_ns + 1)
        self._open_damage.extend(self._account(f, scan, f"rosbags cannot open it ({reason}); read record by record"))

    def _account(self, f: _File, scan: McapScan, how: str) -> list[Damage]:
        """The damage of a scanned file, headed by ``how`` it was read; where the metadata states the file's message
        count, the messages that no other entry accounts for are given to the one entry of unknown loss (truncation)
        or to an entry of their own."""
        found = list(scan.damage)
        if f.expected is not None:
            rest = f.expected - scan.messages_read - sum(d.messages_lost for d in found if d.messages_lost is not None)
            unknown = [i for i, d in enumerate(found) if d.messages_lost is None]
            if len(unknown) == 1:
                d = found[unknown[0]]
                found[unknown[0]] = Damage(d.file, d.problem, max(rest, 0))
            elif not unknown and rest > 0:
                found.append(Damage(str(f.path), f"holds {scan.messages_read} of the {f.expected} messages that "
                                    "metadata.yaml lists", rest))
        return [Damage(str(f.path), how, 0)] + found

    def _span(self, start: int | None, end: int | None) -> None:
        if start is not None:
            self._start = start if self._start is None else min(self._start, start)
        if end is not None:
            self._end = end if self._end is None else max(self._end, end)

    def _unify(self, known: list[Connection] | None) -> None:
        """One connection list for the bag; each file's connections mapped onto it by topic and type."""
        unified: list[Connection] = list(known or [])
        counts: Counter[int] = Counter()
        for f in self._files:
            f.conns = {}
            for fc in self._file_connections(f):
                match = next((c for c in unified if c.topic == fc.topic and c.msgtype == fc.msgtype), None)
                if match is None:
                    match = fc._replace(id=len(unified) + 1, owner=self)
                    unified.append(match)
                if match.msgdef.format == MessageDefinitionFormat.NONE and fc.msgdef.format != \
                        MessageDefinitionFormat.NONE:
                    match = match._replace(msgdef=fc.msgdef)
                    unified[match.id - 1] = match
                f.conns[fc.id] = match
                counts[match.id] += fc.msgcount
        if known is None:  # no metadata: counts are what the files hold
            unified = [c._replace(msgcount=counts[c.id]) for c in unified]
        self.connections = unified
        for f in self._files:
            f.conns = {k: unified[c.id - 1] for k, c in f.conns.items()}

    def _file_connections(self, f: _File) -> list[Connection]:
        if f.reader is not None:
            return list(f.reader.connections)
        assert f.scan is not None
        out = []
        for ch in f.scan.channels.values():
            qos = parse_qos(ch.metadata.get("offered_qos_profiles", ""))
            out.append(Connection(ch.id, ch.topic, ch.msgtype, ch.msgdef, ch.metadata.get("type_description_hash", ""),
                                  f.scan.counts[ch.id], ConnectionExtRosbag2(ch.encoding, qos), self))
        return out

    def close(self) -> None:
        for f in self._files:
            if f.reader is not None and f.reader.is_open:
                f.reader.close()
        self._files.clear()

    # --------------------------------------------------------------------------------------- messages
    def messages(self, connections: Iterable[Connection] = ()) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, receive time ns, CDR bytes) of every readable message on ``connections`` (all if empty),
        file after file; problems met on the way are added to ``damage`` (reset at each call)."""
        wanted = {c.id for c in connections} or {c.id for c in self.connections}
        self._pass_damage = []
        for f in self._files:
            assert f.conns is not None
            ids = {k for k, c in f.conns.items() if c.id in wanted}
            if not ids:
                continue
            if f.reader is not None:
                yield from self._read_healthy(f, ids)
            else:
                for cid, t, data in McapScan(f.path).messages():
                    if cid in ids:
                        yield f.conns[cid], t, data

    def _read_healthy(self, f: _File, ids: set[int]) -> Iterator[tuple[Connection, int, bytes]]:
        assert f.reader is not None and f.conns is not None
        last: int | None = None
        seen: Counter[tuple[int, int]] = Counter()  # (connection, size) of the messages read at time ``last``
        try:
            for fc, t, data in f.reader.messages(connections=[c for c in f.reader.connections if c.id in ids]):
                if t != last:
                    last, seen = t, Counter()
                seen[fc.id, len(data)] += 1
                yield f.conns[fc.id], t, (zstd.decompress(data) if self._message_compression else data)
            return
        except Exception as exc:  # rosbags: ReaderError (bad chunk), sqlite errors
            reason = f"{type(exc).__name__}: {exc}"
        if f.path.suffix != ".mcap" or self._message_compression:
            d = Damage(str(f.path), f"reading stopped ({reason}); the rest of the file is skipped", None)
            self._pass_damage.append(d)
            _logger.warning("damaged bag: %s", d.describe())
            return
        scan = McapScan(f.path)
        for cid, t, data in scan.messages():  # time order up to ``last``, so everything before it was read
            if cid not in ids or (last is not None and t < last):
                continue
            if t == last and seen[cid, len(data)] > 0:
                seen[cid, len(data)] -= 1
                continue
            yield f.conns[cid], t, data
        found = self._account(f, scan, f"rosbags stopped reading it ({reason}); read on record by record from "
                              f"the last message read")
        self._pass_damage.extend(found)
        for d in found:
            _logger.warning("damaged bag: %s", d.describe())
