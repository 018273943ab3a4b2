"""``scenedino-eval-2d``: unsupervised 2D semantic segmentation of the rendered input view.

Writes ``results.json`` (per mode: direct and Hungarian reports with per-class IoU, the confusions and the matching)
and ``results.md`` to ``--out``. See ``scenedino_core.data.semantics2d`` for the datasets' preprocessing and
``scenedino_core.eval2d`` for the metrics.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import eval2d
from ..checkpoint import load_model
from ..data.semantics2d import Cityscapes2D, Dataset2D, Kitti360Semantics2D
from ..files import atomic_write_text, file_sha256
from ..semantics import PredictionMode
from ._args import frame_list

logger = logging.getLogger("scenedino-eval-2d")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-eval-2d", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, choices=("kitti360", "cityscapes"))
    p.add_argument("--root", type=Path, required=True,
                   help="KITTI-360 root (data_2d_raw/, data_2d_semantics/, calibration/) or Cityscapes root "
                        "(leftImg8bit/, gtFine/)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="official checkpoint.pt (training_config.yaml beside it) or a scenedino-ros checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--sequence", default="09", help="KITTI-360 sequence")
    p.add_argument("--frames", nargs="+", default=None, help="KITTI-360 frame ids / inclusive ranges")
    p.add_argument("--split", default="val", help="Cityscapes split")
    p.add_argument("--every", type=int, default=1, help="use every n-th image")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--modes", nargs="+", default=[m.value for m in PredictionMode],
                   choices=[m.value for m in PredictionMode])
    p.add_argument("--stride", type=int, default=1, help="render every n-th pixel (1 = the reference's full view)")
    p.add_argument("--ray-batch", type=int, default=8192, help="rays per render call (bounds memory)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--config", type=Path, default=None, help="training_config.yaml of an official checkpoint")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    sha = file_sha256(args.checkpoint, "checkpoint")
    model = load_model(args.checkpoint, device=device, config=args.config)
    size = model.config.image_size
    if args.dataset == "kitti360":
        ds: Dataset2D = Kitti360Semantics2D(args.root, size, args.sequence, frame_list(args.frames), every=args.every,
                                            limit=args.limit)
    else:
        ds = Cityscapes2D(args.root, size, args.split, every=args.every, limit=args.limit)
    options = eval2d.Render2DOptions(stride=args.stride, ray_batch=args.ray_batch)
    result = eval2d.evaluate_model(model, ds, args.modes, options)
    result.update({"dataset": args.dataset, "root": str(args.root), "checkpoint": str(args.checkpoint),
                   "checkpoint_sha256": sha,
                   "protocol": {"matching": "Hungarian (scipy linear_sum_assignment) on the whole evaluated set",
                                "miou": "mean over classes with defined IoU", "ignore": "trainId 255",
                                "sequence": getattr(ds, "sequence", None), "split": getattr(ds, "split", None),
                                "every": args.every, "limit": args.limit}})
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=1))
    title = f"2D unsupervised segmentation: {args.dataset}, {args.checkpoint}"
    atomic_write_text(args.out / "results.md", eval2d.results_markdown(result, title))
    logger.info("wrote %s and %s", args.out / "results.json", args.out / "results.md")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run(args)
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError and ConfigError are ValueErrors
        print(f"scenedino-eval-2d: error: {exc}", file=sys.stderr)
        return 2
    for mode, rep in result["modes"].items():
        logger.info("%-14s direct mIoU %.2f acc %.2f | hungarian mIoU %.2f acc %.2f", mode,
                    100 * (rep["direct"]["miou"] or 0), 100 * (rep["direct"]["accuracy"] or 0),
                    100 * (rep["hungarian"]["miou"] or 0), 100 * (rep["hungarian"]["accuracy"] or 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
