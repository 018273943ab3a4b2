"""rosbag2 files written by this project (``rosbags``, no ROS install needed): storages and the writer settings."""
from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

#: ``--storage`` choices.
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


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
