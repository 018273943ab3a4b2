"""``scenedino-kitti360-to-bag``: write a KITTI-360 drive (raw files) into a rosbag2 (MCAP or sqlite3), without ROS.

What is written, and how bad input is handled: ``scenedino_ros.bag.kitti360``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from scenedino_core.cli.preprocess_kitti360 import parse_frames

from ..bag.io import STORAGES
from ..bag.kitti360 import CAMERAS, COMPRESSIONS, ConversionSummary, convert, frame_ranges

PROG = "scenedino-kitti360-to-bag"


# ------------------------------------------------------------------------------------------------------ CLI
def parse_cameras(text: str) -> tuple[str, ...]:
    """``"00,01"`` (or ``image_00,image_01``) -> ``("image_00", "image_01")``."""
    names = tuple(f"image_{t.strip().removeprefix('image_')}" for t in text.split(",") if t.strip())
    if not names or len(set(names)) != len(names) or not set(names) <= set(CAMERAS):
        raise argparse.ArgumentTypeError(f"cameras must be distinct ids from 00,01, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="KITTI-360 root (calibration/, data_2d_raw/, data_poses/, data_3d_raw/)")
    p.add_argument("out", type=Path, help="bag folder to create")
    p.add_argument("--sequence", required=True, help="drive folder, e.g. 2013_05_28_drive_0009_sync")
    p.add_argument("--frames", type=parse_frames, metavar="A:B", help="frame ids A..B-1 (either side may be empty)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="rosbag2 storage (default mcap)")
    p.add_argument("--compressed", nargs="?", const="png", choices=COMPRESSIONS,
                   help="write CompressedImage instead of raw rgb8 (png if no format is given; write "
                        "'--compressed png' when OUT follows directly)")
    p.add_argument("--cameras", type=parse_cameras, default=CAMERAS, help="camera ids, comma separated (default 00,01)")
    p.add_argument("--velodyne", action="store_true", help="also write the Velodyne scans")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def format_summary(s: ConversionSummary) -> str:
    """Human-readable lines for the CLI."""
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.start_ns // 10**9))
    lines = [f"wrote {s.path} ({s.storage}) in {s.elapsed_s:.1f} s: {len(s.frames_written)} frames, "
             f"{s.duration_s:.2f} s of data from {start}.{s.start_ns % 10**9:09d} UTC"]
    for what, frames in (("no pose", s.frames_without_pose), ("bad image", s.frames_with_bad_image)):
        if frames:
            lines.append(f"skipped {len(frames)} frames ({what}): {frame_ranges(frames)}")
    if s.scans_skipped:
        lines.append(f"{len(s.scans_skipped)} frames without a Velodyne scan: {frame_ranges(s.scans_skipped)}")
    width = max(len(t) for t in s.message_counts)
    lines += [f"  {topic:<{width}}  {n:>7d}" for topic, n in s.message_counts.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        with logging_redirect_tqdm():
            summary = convert(args.root, args.sequence, args.out, frames=args.frames, storage=args.storage,
                              compressed=args.compressed, cameras=args.cameras, velodyne=args.velodyne,
                              overwrite=args.overwrite, progress=not args.no_progress)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
