"""Time and peak memory of one 256x256x32 SSC voxel query: occupied-only semantics vs every voxel through every head.

Both paths run in this process on the same encoded image; the table prints the ratio against the all-voxels
baseline and checks that the labels are identical inside the camera view.

Weights: the upstream fixture's synthetic ViT-B/8 weights when ../shared/reference is present (a realistic full-size
model whose field is dense: most voxels in view are occupied), else random full-size weights. A second scenario
lowers the density logit so that the occupied share resembles a real street scene; the protocol is unchanged.

    python benchmarks/ssc_query.py [--threads N] [--out benchmarks/results/ssc_query.md]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from report import emit, peak_rss_mb, peak_rss_reset, rss_mb  # noqa: E402

from scenedino_core import images  # noqa: E402
from scenedino_core.checkpoint import load_model  # noqa: E402
from scenedino_core.config import SceneDINOConfig  # noqa: E402
from scenedino_core.model import SceneDINO  # noqa: E402
from scenedino_core.sscbench import grid  # noqa: E402
from scenedino_core.voxels import predict_voxels  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "upstream_v1"


def build_model() -> tuple[SceneDINO, str]:
    if (REFERENCE / "manifest_v1.tsv").is_file():
        from fixture_weights import write_official_checkpoint

        tmp = Path(tempfile.mkdtemp())
        model = load_model(write_official_checkpoint(REFERENCE, tmp, verify=False))
        shutil.rmtree(tmp)
        return model, "upstream fixture weights (ViT-B/8)"
    torch.manual_seed(0)
    return SceneDINO(SceneDINOConfig()).eval(), "random weights (ViT-B/8; ../shared not found)"


def timed(fn):
    peak_rss_reset()
    base = rss_mb()
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, peak_rss_mb() - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="also write the table as markdown")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model, weights = build_model()
    image = images.to_tensor_image(images.synthetic_street_image((192, 640)))
    K = torch.from_numpy(images.kitti360_intrinsics((192, 640)))
    centres, fov = grid.voxel_centers_camera(), grid.fov_mask()
    everything = np.ones_like(fov)
    rows = []
    for scenario, logit_shift in (("dense field (weights as loaded)", 0.0), ("street-like occupancy", -2.5)):
        model.mlp.lin_out.bias[0] += logit_shift
        volume = model.encode(image, K)
        size = grid.VOXEL_SIZE
        predict_voxels(model, volume, centres[:32], size, semantic_mask=fov[:32])  # warm-up
        fast, t_fast, m_fast = timed(lambda volume=volume, size=size: predict_voxels(
            model, volume, centres, size, semantic_mask=fov))
        full, t_full, m_full = timed(lambda volume=volume, size=size: predict_voxels(
            model, volume, centres, size, semantic_mask=everything, occupied_only=False))
        model.mlp.lin_out.bias[0] -= logit_shift
        identical = bool(np.array_equal(fast.labels, np.where(fov, full.labels, 0)))
        share = float((fast.train_ids != 255).sum() / fov.sum())
        rows.append((scenario, share, t_fast, m_fast, t_full, m_full, identical))
    lines = [f"SSC query, 256x256x32 grid (2,097,152 voxels), {weights}, {args.threads} threads, torch "
             f"{torch.__version__}, CPU",
             "",
             "| scenario | voxels with semantics (share of in-view) | occupied-only s | peak MB | all-voxels s | "
             "peak MB | speed-up | labels identical |",
             "|---|---|---|---|---|---|---|---|"]
    for scenario, share, t_fast, m_fast, t_full, m_full, identical in rows:
        lines.append(f"| {scenario} | {share:.1%} | {t_fast:.1f} | {m_fast:.0f} | {t_full:.1f} | {m_full:.0f} | "
                     f"{t_full / t_fast:.1f}x | {'yes' if identical else 'NO'} |")
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
