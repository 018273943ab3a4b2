"""Fetching the released SceneDINO checkpoints (Hugging Face hub ``jev-aleks/SceneDINO``) into a local folder."""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_path, file_sha256

_logger = logging.getLogger(__name__)

HUB_REPO = "jev-aleks/SceneDINO"
FILES = ("checkpoint.pt", "training_config.yaml")

#: Released checkpoints: project name -> folder in the hub repository.
RELEASES: dict[str, str] = {
    "ssc-kitti-360-dino": "seg-best-dino",
    "ssc-kitti-360-dino-orb-slam": "seg-best-dino-orb-slam",
    "ssc-kitti-360-dinov2": "seg-best-dinov2",
}


def default_checkpoint_dir() -> Path:
    """``$SCENEDINO_HOME/checkpoints`` (default ``~/.cache/scenedino-ros/checkpoints``)."""
    home = os.environ.get("SCENEDINO_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "scenedino-ros") / "checkpoints"


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    sha256: str


def _fetch(name: str, filename: str, mirror: Path | None, cache_dir: Path | None, offline: bool) -> Path:
    folder = RELEASES[name]
    if mirror is not None:
        src = mirror / folder / filename
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found in the mirror (expected the hub layout {folder}/{filename})")
        return src
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(HUB_REPO, f"{folder}/{filename}", cache_dir=cache_dir, local_files_only=offline))


def download_checkpoint(name: str, out_dir: Path | None = None, *, mirror: Path | None = None,
                        cache_dir: Path | None = None, offline: bool = False) -> list[DownloadedFile]:
    """Fetch ``checkpoint.pt`` and ``training_config.yaml`` of a release into ``out_dir/name/`` (atomically).

    Args:
        name: one of ``RELEASES``.
        out_dir: destination root (default ``default_checkpoint_dir()``).
        mirror: a local folder laid out like the hub repository (air-gapped sites); no network is used.
        cache_dir, offline: passed to ``huggingface_hub`` (``offline`` only uses its cache).
    """
    if name not in RELEASES:
        raise ValueError(f"unknown checkpoint {name!r}; available: {sorted(RELEASES)}")
    dest = (out_dir or default_checkpoint_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    result = []
    for filename in FILES:
        src = _fetch(name, filename, mirror, cache_dir, offline)
        target = dest / filename
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        result.append(DownloadedFile(target, target.stat().st_size, file_sha256(target)))
        _logger.info("%s: %s (%d bytes)", name, target, target.stat().st_size)
    return result


def find_downloaded_checkpoint(out_dir: Path | None = None) -> Path | None:
    """The first downloaded release (in ``RELEASES`` order) under ``out_dir``, or None."""
    root = out_dir or default_checkpoint_dir()
    for name in RELEASES:
        path = root / name / "checkpoint.pt"
        if path.is_file() and (root / name / "training_config.yaml").is_file():
            return path
    return None
