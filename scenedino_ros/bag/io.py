"""rosbag2 files written by this project (``rosbags``, no ROS install needed): storages and the writer settings."""
from __future__ import annotations

from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

#: ``--storage`` choices.
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: RMW_DURATION_INFINITE as ``ros2 bag record`` writes it into the metadata.
INFINITE = QosTime(sec=9223372036, nsec=854775807)


def reliable_qos(depth: int, durability: QosDurability) -> Qos:
    """An offered QoS profile as ``ros2 bag record`` stores it for a reliable keep-last publisher with rclpy's
    defaults resolved (automatic liveliness, infinite durations)."""
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE, durability=durability,
               deadline=INFINITE, lifespan=INFINITE, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=INFINITE, avoid_ros_namespace_conventions=False)


def check_storage(storage: str) -> StoragePlugin:
    """The storage plugin named ``storage``; ``ValueError`` listing the choices otherwise."""
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    return STORAGES[storage]


def bag_writer(path: str | Path, storage: str) -> Writer:
    """An unopened rosbag2 writer (metadata version 9, what Jazzy/Kilted ``ros2 bag`` reads) for ``path``.

    MCAP bags get zstd chunk compression inside the MCAP file (the rosbag2 MCAP plugin, Foxglove and the ``mcap``
    tools read it transparently; ``metadata.yaml`` then lists no bag-level compression), which shrinks images and
    voxel outputs several-fold.
    """
    writer = Writer(Path(path), version=9, storage_plugin=check_storage(storage))
    if storage == "mcap":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    return writer


def commit(writer: Writer) -> int:
    """Make everything written so far survive the process being killed, and return the position reached.

    MCAP: the pending chunk is closed (even a small one) and the file flushed; the position is the byte offset after
    the chunk and its message indexes. sqlite3: the transaction is committed; the position is the last message row
    id. Reaches into the rosbags storage writers (``Writer.storage``), checked against rosbags 0.11.
    """
    storage = writer.storage
    if isinstance(storage, McapWriter):
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        return storage.bio.tell()
    if isinstance(storage, Sqlite3Writer):
        storage.conn.commit()
        (last,) = storage.conn.execute("SELECT max(id) FROM messages").fetchone()
        return int(last or 0)
    raise TypeError(f"cannot commit a {type(storage).__name__} (writer not open?)")
