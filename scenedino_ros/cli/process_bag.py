"""``scenedino-process-bag``: run the node's processing over every image of a rosbag2 bag, offline, into a new bag.

    scenedino-process-bag IN OUT [--checkpoint CKPT] [--params a.yaml ...] [--param name:=value ...]
        [--image-topic T] [--camera-info-topic T] [--include-inputs] [--storage mcap|sqlite3] [--device DEV]

Parameters default to ``config/scenedino.yaml`` + ``config/kitti360.yaml`` (a KITTI-360 drive), found beside the
package (the repository's ``config/``, or ``share/scenedino_ros/config`` of an installed package). What is
written, and how damaged frames are handled: ``scenedino_ros.bag.process``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..bag.io import STORAGES
from ..bag.process import NODE_NAME, BagError, process_bag
from ..params_file import default_params_files, load_params


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scenedino-process-bag", description="Run the SceneDINO node's processing "
                                 "over every image of a rosbag2 bag, offline, into a new bag (topics /scenedino/*, "
                                 "as the live node publishes them). Put IN and OUT before --params.")
    ap.add_argument("input", type=Path, help="input rosbag2 bag (folder, .mcap or .db3)")
    ap.add_argument("output", type=Path, help="output bag folder (must not exist); gets summary.json/.md too")
    ap.add_argument("--checkpoint", help="SceneDINO checkpoint (sets the 'checkpoint' parameter); required unless "
                                         "--param allow_random_weights:=true")
    ap.add_argument("--params", nargs="+", type=Path, metavar="YAML",
                    help="node parameter files, layered in order (default: config/scenedino.yaml "
                         "config/kitti360.yaml, for a KITTI-360 drive)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="parameter override, as 'ros2 run ... -p' (repeatable)")
    ap.add_argument("--image-topic", help="Image or CompressedImage topic (default: the bag's only one)")
    ap.add_argument("--camera-info-topic", help="CameraInfo topic (default: camera_info beside the image topic)")
    ap.add_argument("--include-inputs", action="store_true", help="copy every input topic into the output bag")
    ap.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="output storage (default: mcap)")
    ap.add_argument("--device", help="torch device, cpu | cuda | cuda:N (sets the 'device' parameter)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.param)
    if args.checkpoint:
        overrides.append(f"checkpoint:={json.dumps(args.checkpoint)}")
    if args.device:
        overrides.append(f"device:={args.device}")
    try:
        files = args.params if args.params is not None else default_params_files()
        p = load_params(files, overrides, NODE_NAME)
        if not p.checkpoint and not p.allow_random_weights:
            print("scenedino-process-bag: error: --checkpoint is required (or --param allow_random_weights:=true "
                  "to run an untrained model for testing)", file=sys.stderr)
            return 2
        summary = process_bag(args.input, args.output, p, image_topic=args.image_topic,
                              info_topic=args.camera_info_topic, include_inputs=args.include_inputs,
                              storage=args.storage, progress=not args.no_progress)
    except (BagError, ValueError, OSError, RuntimeError) as exc:  # ParameterError, PipelineError, CheckpointError, ...
        print(f"scenedino-process-bag: error: {exc}", file=sys.stderr)
        return 1
    print(summary.to_markdown())
    print(f"wrote {args.output} (summary.json, summary.md inside)")
    return 1 if summary.read_error else 0


if __name__ == "__main__":
    sys.exit(main())
