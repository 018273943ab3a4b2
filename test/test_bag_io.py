"""Bags written by the project: MCAP chunks are zstd-compressed and read back by rosbags and the mcap reader."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from scenedino_ros.bag.io import bag_writer, check_storage

TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def _write(path: Path, storage: str, payload: np.ndarray) -> None:
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    Image = TYPESTORE.types["sensor_msgs/msg/Image"]
    with bag_writer(path, storage) as writer:
        conn = writer.add_connection("/image", Image.__msgtype__, typestore=TYPESTORE)
        for i in range(3):
            msg = Image(header=Header(stamp=Time(sec=i, nanosec=0), frame_id="cam"), height=64, width=64,
                        encoding="mono8", is_bigendian=0, step=64, data=payload)
            writer.write(conn, i * 10**9, TYPESTORE.serialize_cdr(msg, Image.__msgtype__))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bags_round_trip(tmp_path, storage):
    payload = np.zeros(64 * 64, np.uint8)  # compressible
    _write(tmp_path / "bag", storage, payload)
    with Reader(tmp_path / "bag") as reader:
        msgs = [TYPESTORE.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert [m.header.stamp.sec for m in msgs] == [0, 1, 2]
    assert all(np.array_equal(m.data, payload) for m in msgs)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == storage and meta["compression_mode"] == ""


def test_mcap_chunks_are_zstd_compressed(tmp_path):
    payload = np.zeros(64 * 64, np.uint8)
    _write(tmp_path / "bag", "mcap", payload)
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    with mcap_file.open("rb") as f:
        stats = make_reader(f).get_summary()
    assert stats.chunk_indexes and {c.compression for c in stats.chunk_indexes} == {"zstd"}
    assert mcap_file.stat().st_size < 3 * payload.size  # three 4 KiB images, compressed


def test_unknown_storage_is_named():
    with pytest.raises(ValueError, match="'rosbag1'"):
        check_storage("rosbag1")
