"""``scenedino-eval-sscbench``: SSCBench-KITTI-360 semantic scene completion evaluation.

The command line of ``scenedino_core.sscbench.evaluate.evaluate_sscbench``; the module doc there describes the
protocol. Rerun with the same ``--out`` to resume an interrupted run.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..model import DEFAULT_CHUNK
from ..semantics import PredictionMode
from ..sscbench import metrics as M
from ..sscbench.evaluate import ASSIGN_CHOICES, EvalOptions, evaluate_sscbench
from ..sscbench.report_files import pct
from ._args import frame_list

logger = logging.getLogger("scenedino-eval-sscbench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-eval-sscbench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sscbench", type=Path, required=True, help="SSCBench-KITTI-360 root (data_2d_raw/, calibration/)")
    p.add_argument("--voxel-gt", type=Path, required=True, help="S4C voxel GT root (<seq>/<frame:06d>_1_1.npy)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="official checkpoint.pt (training_config.yaml beside it) or a scenedino-ros checkpoint")
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun with the same folder to resume)")
    p.add_argument("--sequence", default="09", help="test sequence number or directory name")
    p.add_argument("--frames", nargs="+", default=None, help="frame ids / inclusive ranges (default: all GT frames)")
    p.add_argument("--mode", default=PredictionMode.STEGO_KMEANS.value, choices=[m.value for m in PredictionMode])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--assign-on", default="test", choices=ASSIGN_CHOICES,
                   help="where the cluster->class assignment and the Hungarian permutation are chosen: 'test' = "
                        "the reference protocol (checkpoint assignment, permutation on the test frames), 'val' = "
                        "both re-derived on the validation sequence")
    p.add_argument("--val-sequence", default="06", help="validation sequence for --assign-on val")
    p.add_argument("--val-frames", nargs="+", default=None, help="val frame ids / ranges (default: all val GT)")
    p.add_argument("--val-voxel-gt", type=Path, default=None, help="voxel GT root of the val sequence "
                                                                   "(default: --voxel-gt)")
    p.add_argument("--config", type=Path, default=None, help="training_config.yaml of an official checkpoint "
                                                             "(default: beside the checkpoint)")
    p.add_argument("--fast-sweep", action="store_true",
                   help="compute semantics only above the 0.2 cut-off (range metrics unchanged; sweep points below "
                        "0.2 then ignore predicted sky/rider)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="points per model call")
    p.add_argument("--name", default=None, help="run name in the tables (default: checkpoint folder name)")
    return p


def options_from_args(argv: Sequence[str] | None = None) -> EvalOptions:
    a = build_parser().parse_args(argv)
    return EvalOptions(sscbench=a.sscbench, voxel_gt=a.voxel_gt, checkpoint=a.checkpoint, out=a.out,
                       sequence=a.sequence, frames=frame_list(a.frames), mode=a.mode, device=a.device,
                       assign_on=a.assign_on, val_sequence=a.val_sequence, val_frames=frame_list(a.val_frames),
                       val_voxel_gt=a.val_voxel_gt, config=a.config, fast_sweep=a.fast_sweep,
                       chunk_size=a.chunk_size, name=a.name)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        opts = options_from_args(argv)
        summary = evaluate_sscbench(opts)
    except KeyboardInterrupt:
        logger.error("interrupted: finished frames are cached; rerun the same command to resume")
        return 130
    except (FileNotFoundError, ValueError) as exc:  # CheckpointError and ConfigError are ValueErrors
        print(f"scenedino-eval-sscbench: error: {exc}", file=sys.stderr)
        return 2
    rep = summary["report"]
    for r in M.MODES:
        logger.info("%-9s mIoU %s", r, "  ".join(f"{k} m: {pct(rep[r][k]['miou'])}" for k in M.range_keys(rep[r])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
