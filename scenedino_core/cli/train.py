"""``scenedino-train CONFIG.yaml [key.sub=value ...] --out DIR [--resume]``: train stage 1 or 2 (one device, or
under ``torchrun --nproc_per_node=N``)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import ConfigError
from ..train.config import load_train_config
from ..train.data import make_datasets
from ..train.runner import train
from ..train.validate import validate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-train", description=__doc__)
    p.add_argument("config", help="training recipe (see training/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. steps=100 optim.lr=5e-4")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, config.yaml, TensorBoard)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/latest.pt")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_train_config(args.config, args.overrides)
        final = train(cfg, args.out, make_datasets, validate, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"scenedino-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"scenedino-train: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
