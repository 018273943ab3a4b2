"""``scenedino-preprocess-kitti360``: cache the images the KITTI-360 training loader reads.

For every sequence it writes, next to the originals,

* ``data_2d_raw/<seq>/image_0{0,1}/data_<H>x<W>/<frame:010d>.png``: rectified perspective images resized whole
  (``cv2.INTER_LINEAR``);
* ``data_2d_raw/<seq>/image_0{2,3}/data_<H>x<W>_0x<pitch>/<frame:010d>.png``: fisheye images resampled to virtual
  pinholes with cam 00's normalised K, pitched ``--pitch`` degrees (default -15: 15 deg down), MEI model.

``kitti360.Kitti360MultiView`` reads these files when they exist (same results as resampling on the fly). Existing
files are kept unless ``--overwrite``. Cameras without original images are skipped with a warning.
"""
from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from .. import images
from ..data import fisheye
from ..data import kitti360 as k360
from ._args import frame_range

_logger = logging.getLogger("scenedino-preprocess-kitti360")


def parse_size(text: str) -> tuple[int, int]:
    """"192x640" -> (192, 640)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 192x640 (HxW), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w




def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scenedino-preprocess-kitti360", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="KITTI-360 root (calibration/, data_2d_raw/)")
    p.add_argument("--sequences", nargs="+", help="sequence folders (default: every folder in data_2d_raw/)")
    p.add_argument("--size", type=parse_size, default=k360.DEFAULT_IMAGE_SIZE, help="output HxW (default 192x640)")
    p.add_argument("--pitch", type=float, default=k360.FISHEYE_PITCH_DEG, help="virtual fisheye pitch in degrees")
    p.add_argument("--cameras", nargs="+", default=list(k360.CAMERAS), choices=list(k360.CAMERAS))
    p.add_argument("--frames", type=frame_range, help="frame range A:B (end exclusive)")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing cache files")
    p.add_argument("--workers", type=int, default=1, help="parallel threads")
    return p


def _frames(folder: Path, frame_range: tuple[int, int] | None) -> list[int]:
    frames = sorted(int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit())
    if frame_range is not None:
        frames = [f for f in frames if frame_range[0] <= f < frame_range[1]]
    return frames


def run(args: argparse.Namespace) -> int:
    """Write the cache; returns the number of files written."""
    root = args.root
    raw_root = root / "data_2d_raw"
    if not raw_root.is_dir():
        raise FileNotFoundError(f"KITTI-360 image folder not found: {raw_root}")
    sequences = args.sequences or sorted(p.name for p in raw_root.iterdir() if p.is_dir())
    need_fisheye = any(c in k360.FISHEYE_CAMERAS for c in args.cameras)
    calib = k360.read_rig_calibration(root / "calibration", args.pitch, fisheye=need_fisheye)
    jobs = []
    for seq in sequences:
        for cam in args.cameras:
            folder = k360.raw_image_path(root, seq, cam, 0).parent
            if not folder.is_dir():
                _logger.warning("skipping %s: %s not found", cam, folder)
                continue
            for f in _frames(folder, args.frames):
                out = k360.cached_image_path(root, seq, cam, f, args.size, args.pitch)
                if args.overwrite or not out.is_file():
                    jobs.append((seq, cam, f, out))
    if not jobs:
        _logger.info("nothing to do (all cache files exist or no images found)")
        return 0
    maps = {cam: fisheye.fisheye_to_pinhole_maps(calib.fisheye[cam], calib.K_norm[cam], args.size,
                                                 fisheye.rotation_x(args.pitch))
            for cam in k360.FISHEYE_CAMERAS if cam in args.cameras}

    def work(job: tuple[str, str, int, Path]) -> Path:
        seq, cam, f, out = job
        src = k360.raw_image_path(root, seq, cam, f)
        if cam in k360.PERSPECTIVE_CAMERAS:
            img = k360.load_perspective(src, calib.full_size, args.size)
        else:
            img = k360.load_fisheye(src, calib.fisheye[cam], maps[cam])
        return images.write_rgb(out, img)

    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        for _ in tqdm(pool.map(work, jobs), total=len(jobs), desc="preprocess KITTI-360", unit="img"):
            pass
    return len(jobs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        n = run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"scenedino-preprocess-kitti360: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} cached images under {args.root / 'data_2d_raw'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
