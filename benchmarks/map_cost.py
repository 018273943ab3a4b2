"""What the local map costs per frame: fusion time against the model's frame time, state bytes, memory over a long run.

    python benchmarks/map_cost.py [--frames 300] [--model-frames 3] [--cache runs/map_frames]
        [--out benchmarks/results/map_cost.md]

Inputs are real predictions: the cached frames of ``map_frames.py`` (the demo checkpoint on the synthetic drive,
256 x 256 x 32 SSCBench grid, depth at stride 2), replayed in a loop along a long drive so that the window keeps
moving. Per frame the node's work is timed: ``ObservationBuilder.from_dense`` (the pipeline's dense arrays + rendered
depth -> observation) and ``SemanticMap.integrate`` (default ``MapConfig``: 256 x 256 x 32 window). Two drives:

* **straight**: the frame grids stay on the map lattice (a gravity-aligned grid frame that does not turn): the
  aligned path, plain slices;
* **turning**: the heading changes by 2 degrees per frame: every frame takes the general path (index arrays).

The model's time per frame is measured in the same process on ``--model-frames`` frames (encode + voxel query +
depth render, as the pipeline does). Times are wall clock and, because the machine may be shared, also the process's
CPU time (numpy runs the fusion on one thread, so on an idle machine its CPU time is its wall time). Memory: resident
set size after every frame of the straight drive; the map's state is allocated once, so it must stay flat. No
wall-clock figure is asserted anywhere.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from map_frames import DEMO_CHECKPOINT, GRID, ROOT, DriveSettings, drive_predictions, predict_frame  # noqa: E402
from map_quality import pipeline_arrays  # noqa: E402
from report import rss_mb  # noqa: E402

from scenedino_core.checkpoint import load_model  # noqa: E402
from scenedino_core.data.synthetic import StreetConfig, StreetWorld  # noqa: E402
from scenedino_core.files import atomic_write_text  # noqa: E402
from scenedino_core.mapping import MapConfig, ObservationBuilder, SemanticMap  # noqa: E402


def yaw_pose(x: float, y: float, yaw_deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = (x, y)
    return T


def run_drive(frames, n: int, turning: bool, stride: int) -> dict[str, np.ndarray]:
    """Fuse ``n`` frames (the cached ones in a loop); per-frame builder / integrate times (ms) and RSS (MB)."""
    config = MapConfig()
    fusion = SemanticMap(config)
    builder = ObservationBuilder(GRID, config)
    dense = [pipeline_arrays(f) for f in frames]
    t_obs, t_int, cpu, rss = [], [], [], []
    x = y = yaw = 0.0
    for i in range(n):
        f = frames[i % len(frames)]
        labels, occupancy = dense[i % len(frames)]
        if turning:
            yaw += 2.0
        x += np.cos(np.radians(yaw))
        y += np.sin(np.radians(yaw))
        pose = yaw_pose(x, y, yaw) if turning else yaw_pose(float(i), 0.0, 0.0)  # 1 m steps: on the lattice
        c0, t0 = time.process_time(), time.perf_counter()
        obs = builder.from_dense(labels, occupancy, f.cam_from_grid, depth=f.depth, intrinsics=f.intrinsics,
                                 render_stride=stride)
        t1 = time.perf_counter()
        fusion.integrate(i * 100_000_000, pose, obs)
        t2, c2 = time.perf_counter(), time.process_time()
        t_obs.append((t1 - t0) * 1e3)
        t_int.append((t2 - t1) * 1e3)
        cpu.append((c2 - c0) * 1e3)
        rss.append(rss_mb())
    return {"obs": np.array(t_obs), "int": np.array(t_int), "cpu": np.array(cpu), "rss": np.array(rss),
            "nbytes": fusion.nbytes}


def model_time_ms(n: int, seed: int, stride: int) -> tuple[float, float]:
    """Median (wall, CPU) ms of the model on ``n`` frames (encode + voxel query + depth render)."""
    model = load_model(DEMO_CHECKPOINT).eval()
    world = StreetWorld.generate(seed, StreetConfig(num_frames=max(n, 1)))
    wall, cpu = [], []
    for i in range(n):
        c0 = time.process_time()
        wall.append(predict_frame(model, world, i, stride).model_ms)
        cpu.append((time.process_time() - c0) * 1e3)  # includes rendering the image and the world's GT (small)
    return float(np.median(wall)), float(np.median(cpu))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per drive")
    ap.add_argument("--model-frames", type=int, default=3, help="frames the model runs on for its time (0: skip)")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "map_frames")
    ap.add_argument("--cached-frames", type=int, default=20, help="length of the cached drive to replay")
    ap.add_argument("--out", type=Path, help="also write the tables here (Markdown)")
    args = ap.parse_args(argv)
    settings = DriveSettings(frames=args.cached_frames)
    frames = drive_predictions(args.cache, settings)
    warm = 5
    load_before = f"{os.getloadavg()[0]:.1f}"
    drives = {name: run_drive(frames, args.frames, turning, settings.render_stride)
              for name, turning in (("straight (aligned lattice)", False), ("turning 2 deg/frame", True))}
    model_ms, model_cpu_ms = (model_time_ms(args.model_frames, settings.seed, settings.render_stride)
                              if args.model_frames else (float(np.median([f.model_ms for f in frames])), float("nan")))
    config = MapConfig()
    lines = [(f"Default window {config.dims[0]} x {config.dims[1]} x {config.dims[2]} ({config.num_voxels:,} voxels), "
              f"{config.bytes_per_voxel} state bytes per voxel ({config.bytes_per_voxel + 4} with decay): "
              f"{config.num_voxels * config.bytes_per_voxel / 2**20:.0f} MiB. Model frame time (median of "
              f"{args.model_frames or len(frames)} frames): {model_ms:.0f} ms wall, {model_cpu_ms:.0f} ms CPU "
              f"(torch threads {torch.get_num_threads()}); load average before / after: {load_before} / "
              f"{os.getloadavg()[0]:.1f}."), "",
             (f"| drive ({args.frames} frames, first {warm} not timed) | observation ms wall | integrate ms wall | "
              "fusion ms wall (median / p90) | fusion ms CPU (median / p90) | fusion / model frame time (wall) |"),
             "|---|---|---|---|---|---|"]
    for name, r in drives.items():
        total, cpu = r["obs"][warm:] + r["int"][warm:], r["cpu"][warm:]
        lines.append(f"| {name} | {np.median(r['obs'][warm:]):.1f} | {np.median(r['int'][warm:]):.1f} | "
                     f"{np.median(total):.1f} / {np.percentile(total, 90):.1f} | "
                     f"{np.median(cpu):.1f} / {np.percentile(cpu, 90):.1f} | "
                     f"{100 * np.median(total) / model_ms:.2f} % |")
    r = drives["straight (aligned lattice)"]["rss"]
    marks = sorted({min(len(r), k) - 1 for k in (warm, 50, 100, len(r))})
    lines += ["", "Resident set size of this process along the straight drive (MB): " +
              ", ".join(f"frame {k + 1}: {r[k]:.0f}" for k in marks) +
              f"; map state {drives['straight (aligned lattice)']['nbytes'] / 2**20:.0f} MiB."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, f"# map_cost.py --frames {args.frames}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
