"""Throughput of the semantic head (64 -> 768 expansion, STEGO projection with its 768 x 768 layer, cluster probe)
against the image encoder (ViT-B/8 + DPT decoder), in GFLOP/s, in this process.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the full-size model (random weights: the
weights do not change the work). The head runs on the reduced features of N voxels: as the modules (expansion, then
``SemanticHead.classify``: how the voxel query ran it before), and as ``SceneDINO.semantics`` (the same values with
the wide activations rectified and normalised in place) in one call and in blocks of rows (the voxel query uses
``scenedino_core.voxels.SEMANTIC_CHUNK``); the encoder runs on one 640 x 192 image. Medians of ``--repeats`` runs.

    python benchmarks/semantic_head.py [--threads N] [--rows N] [--repeats N] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from report import emit  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode

from scenedino_core.config import SceneDINOConfig
from scenedino_core.model import SceneDINO
from scenedino_core.voxels import SEMANTIC_CHUNK


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def timed(fn, repeats: int) -> float:
    """Median wall seconds of ``fn``."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rows", type=int, default=65536, help="voxels through the head")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", default=str(SEMANTIC_CHUNK), help="comma-separated block sizes to time as well")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as markdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    model = SceneDINO(SceneDINOConfig()).eval()
    h, w = model.config.image_size
    image = torch.rand(1, 3, h, w)
    features = torch.randn(args.rows, model.config.field.feature_dim)

    def head(rows: int):
        return lambda: [model.semantics(features[i:i + rows]) for i in range(0, args.rows, rows)]

    rows = []
    load = os.getloadavg()[0]
    model.image_features(image)  # warm-up
    cases = [(f"image encoder (ViT-B/8 + DPT, one {w}x{h} image)", lambda: model.image_features(image)),
             (f"semantic head as modules (expansion, classify), {args.rows} rows in one call",
              lambda: model.head.classify(model.expansion(features), "stego_kmeans").classes),
             (f"semantic head (`SceneDINO.semantics`), {args.rows} rows in one call", head(args.rows))]
    cases += [(f"semantic head (`SceneDINO.semantics`), {args.rows} rows in blocks of {b}", head(int(b)))
              for b in args.blocks.split(",")]
    for name, fn in cases:
        work = flops(fn)
        seconds = timed(fn, args.repeats)
        rows.append((name, work / 1e9, seconds * 1e3, work / seconds / 1e9))
    lines = [f"Semantic head vs encoder throughput: {args.threads} threads, torch {torch.__version__}, CPU; median of "
             f"{args.repeats}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", "",
             "| computation | GFLOP | ms | GFLOP/s |", "|---|---|---|---|"]
    lines += [f"| {name} | {g:.1f} | {ms:.0f} | {rate:.0f} |" for name, g, ms, rate in rows]
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
