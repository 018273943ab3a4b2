"""rosbag2 files written by this project (``rosbags``, no ROS install needed): storages and the writer settings."""
from __future__ import annotations

from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

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
