"""Throughput of ``scenedino-process-bag``: frames/s and where the time goes (decoding, inference, building, writing).

Input: a short synthetic KITTI-360 drive (``scenedino_core.data.synthetic``, 1408x376 images like KITTI-360's
rectified cameras) converted by ``scenedino-kitti360-to-bag`` into two bags, raw ``rgb8`` Images and PNG
``CompressedImage``s; or a bag given with ``--bag``. Every bag runs through ``process_bag`` in this process with the
node's KITTI-360 parameters (``config/scenedino.yaml`` + ``config/kitti360.yaml``: the 256x256x32 SSCBench grid) and
one shared pipeline, after a one-frame warm-up.

Weights: ``--checkpoint``, by default ``checkpoints/scenedino_synthetic_demo.pt`` when it exists; otherwise the tiny
random test model (a loud note says so: its encoder is tiny and its untrained field calls most voxels occupied, so
the split of the time is not a real model's).

    python benchmarks/bag_throughput.py [--checkpoint CKPT] [--frames N] [--bag BAG --image-topic T]
        [--device cpu] [--threads N] [--out benchmarks/results/bag_throughput.md]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from report import emit  # noqa: E402

from scenedino_core.checkpoint import save_checkpoint  # noqa: E402
from scenedino_core.data.synthetic import StreetConfig, StreetWorld, write_kitti360  # noqa: E402
from scenedino_core.pipeline import Pipeline  # noqa: E402
from scenedino_ros.bag import kitti360 as kitti360_to_bag  # noqa: E402
from scenedino_ros.bag.process import process_bag  # noqa: E402
from scenedino_ros.bag.summary import STAGES  # noqa: E402
from scenedino_ros.outputs import pipeline_config  # noqa: E402
from scenedino_ros.params_file import default_params_files, load_params  # noqa: E402

DEMO_CHECKPOINT = ROOT / "checkpoints" / "scenedino_synthetic_demo.pt"
SEQUENCE = "2013_05_28_drive_0000_sync"
FULL_SIZE = (376, 1408)
TINY_NOTE = ("NOTE: no checkpoint (checkpoints/scenedino_synthetic_demo.pt is missing and --checkpoint not given): "
             "the TINY RANDOM test model was used. Its encoder is far smaller than a real model's and its untrained "
             "field calls most voxels occupied, so the time split and output sizes are NOT those of a real model")


def synthetic_bags(work: Path, frames: int) -> dict[str, tuple[Path, str]]:
    """Scenario -> (bag, image topic): raw and PNG bags of a synthetic drive, plus a one-frame warm-up bag."""
    world = StreetWorld.generate(0, StreetConfig(num_frames=frames))
    root = work / "kitti360"
    write_kitti360(world, root, SEQUENCE, list(range(frames)), full_size=FULL_SIZE, image_size=(16, 48),
                   semantics=False)
    topic = kitti360_to_bag.TOPICS.image("image_00")
    bags = {}
    for name, compressed, frame_range in (("warm-up", None, (0, 1)), ("raw rgb8 Image", None, None),
                                          ("PNG CompressedImage", "png", None)):
        bag = work / f"bag_{len(bags)}"
        kitti360_to_bag.convert(root, SEQUENCE, bag, frames=frame_range, compressed=compressed, cameras=("image_00",),
                                progress=False)
        bags[name] = (bag, topic + "/compressed" if compressed else topic)
    return bags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None)
    parser.add_argument("--frames", type=int, default=10, help="frames of the synthetic drive")
    parser.add_argument("--bag", type=Path, help="benchmark this bag instead of a synthetic drive")
    parser.add_argument("--image-topic", help="image topic of --bag (default: its only one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="also write the tables as markdown")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bag_throughput."))
    try:
        text = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(text, args.out)


def run(args: argparse.Namespace, work: Path) -> str:
    """Build the bags, process them, return the tables."""
    checkpoint, note = args.checkpoint, ""
    if checkpoint is None:
        from conftest import tiny_model

        checkpoint, note = save_checkpoint(work / "tiny.pt", tiny_model()), TINY_NOTE
        print(note, file=sys.stderr)
    p = load_params(default_params_files(), [f"checkpoint:={checkpoint}", f"device:={args.device}"])
    pipeline = Pipeline(pipeline_config(p))
    bags = {"given bag": (args.bag, args.image_topic)} if args.bag else synthetic_bags(work, args.frames)

    rows, model_ms = [], {}
    for scenario, (bag, topic) in bags.items():
        timings: list[dict[str, float]] = []
        s = process_bag(bag, work / f"out_{len(rows)}_{scenario.split()[0]}", p, image_topic=topic, progress=False,
                        pipeline=pipeline, on_frame=lambda f, timings=timings: timings.append(f.result.timings_ms))
        if scenario == "warm-up":
            continue
        rows.append((scenario, s))
        model_ms[scenario] = {k: float(np.mean([t[k] for t in timings])) for k in timings[0]} if timings else {}

    g = pipeline.config.grid
    source = args.bag or f"synthetic KITTI-360 drive, {FULL_SIZE[1]}x{FULL_SIZE[0]}"
    lines = [f"process_bag throughput: {pipeline.describe()} on {pipeline.device}, {args.threads} threads, torch "
             f"{torch.__version__}; grid {'x'.join(map(str, g.dims))} voxels of {g.voxel_size:g} m; input {source}",
             "", "| input | frames | frames/s | ms/frame | " + " | ".join(STAGES) + " | occupied voxels/frame |",
             "|---|---|---|---|" + "---|" * len(STAGES) + "---|"]
    for scenario, s in rows:
        shares = " | ".join(f"{s.stage_share[k]:.1%}" for k in STAGES)
        lines.append(f"| {scenario} | {s.frames_processed} | {s.frames_per_s:.2f} | {s.mean_frame_ms:.0f} | {shares} | "
                     f"{s.occupancy_stats()['mean']:.0f} |")
    stages = list(dict.fromkeys(k for ms in model_ms.values() for k in ms))  # the pipeline's order
    lines += ["", "Inside inference (`Pipeline.process` stages, mean ms per frame):", "",
              "| input | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for scenario, ms in model_ms.items():
        lines.append(f"| {scenario} | " + " | ".join(f"{ms.get(k, 0.0):.0f}" for k in stages) + " |")
    if note:
        lines += ["", f"**{note}**"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
