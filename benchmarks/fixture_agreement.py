"""SSC labels of the upstream fixture through the node's pipeline on a chosen device and precision, against fp32 on
the CPU and against the original implementation's labels.

The fixture (``upstream_v1``: its synthetic full-size ViT-B/8 weights, its 640 x 192 image and intrinsics, the
original code's SSC labels over the whole SSCBench grid) runs through ``Pipeline.encode_fitted`` and
``Pipeline.predict`` on the SSCBench grid with its camera mask, as ``test/test_realtime.py`` does on the CPU. Every
variant is compared over the in-view voxels with (a) this code's fp32 labels on the CPU and (b) the labels the
original implementation wrote into the fixture. The image is the fixture's float image rounded to 8 bits (what a
camera message carries), so (b) is not exactly 100 % even on the CPU.

Variants: ``cpu:fp32`` (the reference), then each ``--device`` x ``--precision`` (``fp32``, ``tf32``, ``bf16``:
``scenedino_core.pipeline.PRECISIONS``). ``--torch-defaults`` adds CUDA fp32 with PyTorch's own TF32 settings
(cuDNN convolutions in TF32, matrix products in fp32), what fp32 gave before the pipeline set them.

    python benchmarks/fixture_agreement.py [--device cuda] [--precision fp32,tf32,bf16] [--torch-defaults]
        [--reference DIR] [--out FILE]
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

from report import emit  # noqa: E402

from scenedino_core import geometry, images  # noqa: E402
from scenedino_core.checkpoint import load_model  # noqa: E402
from scenedino_core.pipeline import Pipeline, PipelineConfig  # noqa: E402
from scenedino_core.sscbench import grid  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "upstream_v1"


def labels_of(model, device: str, precision: str, rgb: np.ndarray, K: np.ndarray,
              torch_defaults: bool = False) -> tuple[np.ndarray, float]:
    """(SSC labels over the SSCBench grid, ms of the second of two runs) of one variant."""
    pipeline = Pipeline(PipelineConfig(grid=grid.SSCBENCH_GRID, device=device, precision=precision),
                        model=model.to(device))
    if torch_defaults:  # PyTorch's own defaults instead of what the pipeline set
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    centres, fov = grid.voxel_centers_camera(), grid.fov_mask()
    for _ in range(2):  # the first run pays for lazy initialisation
        start = time.perf_counter()
        frame = pipeline.encode_fitted(images.FittedImage(rgb, K, 1.0, (0, 0)))
        labels = pipeline.predict(frame, centres=centres, semantic_mask=fov).labels
        if pipeline.device.type == "cuda":
            torch.cuda.synchronize(pipeline.device)
        ms = (time.perf_counter() - start) * 1e3
    return labels, ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (cpu:fp32 always runs as the reference)")
    parser.add_argument("--precision", default="fp32,tf32,bf16", help="comma-separated: fp32, tf32, bf16")
    parser.add_argument("--torch-defaults", action="store_true",
                        help="CUDA: also fp32 with PyTorch's default TF32 settings (TF32 convolutions)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the upstream_v1 fixture folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as markdown")
    args = parser.parse_args()
    if not (args.reference / "manifest_v1.tsv").is_file():
        raise SystemExit(f"no upstream_v1 fixture at {args.reference} (give --reference)")
    from fixture_weights import write_official_checkpoint

    inputs = dict(np.load(args.reference / "inputs.npz"))
    expected = np.load(args.reference / "expected.npz")["ssc_label_full"]
    rgb = np.round((inputs["image_input"].transpose(1, 2, 0) / 2 + 0.5) * 255).astype(np.uint8)
    K = geometry.denormalize_intrinsics(torch.from_numpy(inputs["K"]).double(), (192, 640)).numpy()
    work = Path(tempfile.mkdtemp(prefix="fixture_agreement."))
    try:
        model = load_model(write_official_checkpoint(args.reference, work, verify=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cuda = args.device.startswith("cuda")
    variants = [("cpu", "fp32", False)]
    for precision in (s.strip() for s in args.precision.split(",") if s.strip()):
        if args.device != "cpu" or precision != "fp32":
            variants.append((args.device, precision, False))
    if cuda and args.torch_defaults:
        variants.append((args.device, "fp32", True))
    fov = grid.fov_mask()
    reference = None
    rows = []
    for device, precision, torch_defaults in variants:
        labels, ms = labels_of(model, device, precision, rgb, K, torch_defaults)
        if reference is None:
            reference = labels
        name = f"{device}:{precision}" + (" (PyTorch's TF32 defaults)" if torch_defaults else "")
        rows.append((name, float((labels[fov] == reference[fov]).mean()), float((labels[fov] == expected[fov]).mean()),
                     ms))
    device_name = torch.cuda.get_device_name(args.device) if cuda else "CPU"
    lines = [f"Fixture agreement: upstream_v1 weights and image, SSCBench grid ({int(fov.sum())} in-view voxels); "
             f"{device_name}, torch {torch.__version__}", "",
             "| variant | in-view labels = cpu:fp32 | in-view labels = original code | encode + voxel query ms |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {a:.4%} | {b:.4%} | {ms:.0f} |" for name, a, b, ms in rows]
    text = "\n".join(lines)
    emit(text, args.out)


if __name__ == "__main__":
    main()
