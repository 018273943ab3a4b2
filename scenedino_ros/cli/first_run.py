"""``scenedino-first-run``: the project end to end on a synthetic drive, with pictures and an optional live view.

What it does, step by step: ``scenedino_ros.demo.first_run``.
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from pathlib import Path

from scenedino_core.data.synthetic import FULL_SIZE
from scenedino_core.pipeline import PipelineError

from ..bag.process import BagError
from ..demo import first_run
from ..demo.first_run import DEMO_CHECKPOINT, DRIVE_SEED, INPUT_BAG, RunSummary, choose_checkpoint, run
from ..demo.foxglove_view import DEFAULT_PORT, FoxgloveView
from ..demo.live_view import LiveStream
from ..demo.pictures import RANDOM_WARNING

PROG = "scenedino-first-run"


RANDOM_BANNER = f"""
{'#' * 88}
#  {RANDOM_WARNING + ' (--allow-random-weights).':<84}#
#  {'They only show that the whole chain runs. Real weights: --checkpoint PATH.':<84}#
{'#' * 88}"""


def _image_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or int(m.group(1)) < 8 or int(m.group(2)) < 8:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 376x1408), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="SceneDINO end to end on a short synthetic KITTI-360 drive: a rosbag2 of the drive, "
        "the node's processing into an MCAP with the outputs, pictures and a summary (see OUT/summary.json).",
        epilog="Written into OUT: kitti360/ (the drive, reused by later runs), drive/ (its bag), scenedino_outputs/ "
        "(MCAP: inputs + /scenedino/* outputs), pictures/, summary.json. Everything stays on this machine; --viz "
        "listens on 127.0.0.1 only.")
    ap.add_argument("--out", type=Path, default=Path("outputs/first_run"), help="output folder "
                    "(default: outputs/first_run)")
    ap.add_argument("--frames", type=_positive, default=20, help="frames of the synthetic drive (default: 20)")
    ap.add_argument("--checkpoint", type=Path, help=f"SceneDINO checkpoint (default: {DEMO_CHECKPOINT.name} "
                    "in checkpoints/)")
    ap.add_argument("--allow-random-weights", action="store_true", help="without a checkpoint, run an untrained "
                    "model (the outputs are meaningless; announced everywhere)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N (default: cpu)")
    ap.add_argument("--viz", action="store_true", help="stream the outputs live to a Foxglove WebSocket server on "
                    "127.0.0.1 (open it in the Foxglove app or Lichtblick: Open connection -> Foxglove WebSocket; "
                    "both subprotocol names, foxglove.sdk.v1 and foxglove.websocket.v1, are served); the server "
                    "stops when the run ends")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"--viz port (default: {DEFAULT_PORT})")
    ap.add_argument("--viz-hold", action="store_true", help="with --viz: keep the server up after the run, "
                    "re-sending the last frame every second, until Ctrl-C")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="node parameter override, as 'ros2 run ... -p' (repeatable), e.g. grid.voxel_size_m:=0.4")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--image-size", type=_image_size, default=FULL_SIZE, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=DRIVE_SEED, help=argparse.SUPPRESS)
    return ap


def megabytes(n: float) -> str:
    """``n`` bytes as "12.3 MB"."""
    return f"{n / 1e6:.1f} MB"


def size_lines(s: RunSummary, largest: int = 4) -> list[str]:
    """How big the output is and why: bytes per folder, the ``largest`` output topics per message (before the
    MCAP's zstd compression), and what makes them that size."""
    if not s.folder_bytes:
        return []
    folders = ", ".join(f"{name} {megabytes(n)}" for name, n in sorted(s.folder_bytes.items(), key=lambda kv: -kv[1]))
    lines = [f"  size       {megabytes(sum(s.folder_bytes.values()))} in {s.out}: {folders}"]
    top = [f"{topic} {megabytes(n / max(s.topic_messages.get(topic, 1), 1))}"
           for topic, n in list(s.topic_bytes.items())[:largest]]
    if top:
        lines.append(f"             per message before compression: {', '.join(top)}")
    if s.mean_cloud_points == s.mean_cloud_points:  # not NaN: a cloud was written
        which = "surface voxels" if s.surface_only else "voxels"
        why = " (points.surface_only: the ones a 3D view shows; ~/voxel_grid has every voxel)" if s.surface_only else ""
        lines.append(f"             the cloud holds {s.mean_cloud_points:,.0f} {which} of "
                     f"{s.mean_occupied_voxels:,.0f} occupied per frame, 24 bytes each{why}")
    lines.append("             the output bag also holds the inputs (image, Velodyne, TF) so it plays on its own; "
                 f"{first_run.DRIVE_DIR}/ and {first_run.INPUT_BAG}/ are kept for the next run")
    return lines


def map_lines(s: RunSummary) -> list[str]:
    """Where the map pictures and file are and what they show (nothing when mapping was off)."""
    if not s.map_pictures:
        return []
    iou = s.map_iou
    return [f"  map        {s.map_pictures[0]} + {', '.join(p.name for p in s.map_pictures[1:])}: the map fused over "
            f"{s.map_frames} frames next to the last frame alone and the world's exact geometry",
            f"             occupancy IoU with the exact geometry (the last frame's observed voxels): last frame "
            f"{iou.get('single_frame', float('nan')):.2f}, fused map {iou.get('fused_map', float('nan')):.2f}"
            + (f"; map file {s.map_file} (+ .ply)" if s.map_file else "")]


def format_summary(s: RunSummary) -> str:
    """The text printed at the end of a run."""
    t = s.mean_model_ms
    model_line = (f"{t.get('total', float('nan')):.0f} ms in the model pipeline (encode {t.get('encode', 0):.0f}, "
                  f"voxels {t.get('voxels', 0):.0f}, render {t.get('render', 0):.0f})")
    n_more = len(s.pictures)
    lines = [
        f"{PROG}: done" + (f"  --  {RANDOM_WARNING}" if s.random_weights else ""),
        f"  model      {s.model} on {s.device}",
        f"  drive      {s.drive}  (synthetic KITTI-360, {'reused' if s.drive_reused else 'written'})",
        f"  input bag  {s.input_bag}",
        f"  outputs    {s.output_mcap or s.output_bag}  (inputs + /scenedino/* outputs; summary.md beside it)",
        f"  frames     {s.frames_processed} processed, {s.frames_skipped} skipped; {s.mean_frame_ms:.0f} ms per frame "
        f"({model_line})",
        f"  pictures   {s.overview or '(none)'}" + (f" + {n_more} per-frame pictures in "
                                                     f"{s.overview.parent if s.overview else s.out}" if n_more else ""),
        *map_lines(s),
        *size_lines(s),
        f"  summary    {s.summary_json}",
        "Look at it:",
        f"  Foxglove app (or Lichtblick): open the file {s.output_mcap or s.output_bag}",
        f"  ROS 2: ros2 bag play {s.output_bag}   (topics /scenedino/*, /tf, /tf_static, /kitti360/*)",
        f"  live:  {PROG} --viz [--viz-hold], then in Foxglove or Lichtblick: Open connection -> "
        f"ws://127.0.0.1:{DEFAULT_PORT}",
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.viz_hold and not args.viz:
        print(f"{PROG}: error: --viz-hold needs --viz", file=sys.stderr)
        return 2
    view: FoxgloveView | None = None
    try:
        checkpoint = choose_checkpoint(args.checkpoint, args.allow_random_weights)
        if checkpoint is None:
            print(RANDOM_BANNER, flush=True)
        live = None
        if args.viz:
            view = FoxgloveView(args.port)
            live = LiveStream(view, args.out / INPUT_BAG)
            print(f"{PROG}: live view on {view.url} (Foxglove app: Open connection -> Foxglove WebSocket -> "
                  f"{view.url})", flush=True)
        summary = run(args.out, args.frames, checkpoint, allow_random_weights=args.allow_random_weights,
                      device=args.device, image_size=args.image_size, seed=args.seed, overrides=tuple(args.param),
                      progress=not args.no_progress, on_start=live.start if live else None, on_frame=live)
        print(format_summary(summary), flush=True)
        if live is not None and args.viz_hold:
            print(f"{PROG}: holding the live view on {live.view.url}, re-sending the last frame every second; "
                  "Ctrl-C to stop", flush=True)
            signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly on SIGTERM (kill, docker stop)
            live.hold()
    except (FileNotFoundError, FileExistsError, ValueError, BagError, PipelineError, RuntimeError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if view is not None:
            view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
