"""``scenedino-download``: fetch a released SceneDINO checkpoint and its training_config.yaml."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..download import RELEASES, default_checkpoint_dir, download_checkpoint


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-download", description=__doc__)
    p.add_argument("name", choices=sorted(RELEASES), help="released checkpoint")
    p.add_argument("--dir", type=Path, default=None, help=f"destination root (default {default_checkpoint_dir()})")
    p.add_argument("--mirror", type=Path, default=None,
                   help="local folder laid out like the hub repository (no network is used)")
    p.add_argument("--cache-dir", type=Path, default=None, help="huggingface_hub cache folder")
    p.add_argument("--offline", action="store_true", help="only use the huggingface_hub cache")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        files = download_checkpoint(args.name, args.dir, mirror=args.mirror, cache_dir=args.cache_dir,
                                    offline=args.offline)
    except Exception as exc:  # CLI boundary: one clear line instead of a traceback
        print(f"scenedino-download: error: {exc}", file=sys.stderr)
        return 2
    for f in files:
        print(f"{f.path}  {f.size / 1e6:9.1f} MB  sha256 {f.sha256}")
    print(f"use it with: scenedino-infer --checkpoint {files[0].path} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
