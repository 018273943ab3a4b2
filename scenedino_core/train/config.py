"""Training configuration: frozen dataclasses with the defaults, YAML recipes override them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from ..config import ConfigError, SceneDINOConfig, from_dict
from .stage1 import Stage1Config
from .stage2 import Stage2Config


@dataclass(frozen=True)
class DataConfig:
    """Which dataset feeds training (see ``scenedino_core.train.data.DATASETS``)."""

    kind: str = "synthetic"
    """``synthetic`` (procedural world, no files needed) or ``kitti360``."""
    root: str | None = None
    """KITTI-360 root (``kitti360``)."""
    split_file: str | None = None
    """SSCBench-style split file (``kitti360``)."""
    pose_file: str | None = None
    """Alternative poses.txt-format file (e.g. ORB-SLAM3 poses) (``kitti360``)."""
    num_items: int = 2000
    """Number of training items (``synthetic``)."""
    num_val_items: int = 16
    """Held-out items for validation (``synthetic``: from a second, unseen street)."""
    seed: int = 0
    """World / scene seed (``synthetic``)."""
    side_offsets: tuple[int, ...] = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                     30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
    """Frame offsets o of the side (fisheye) views t+o, t+o+1, drawn per item."""
    side_views: bool = True
    """Use the side cameras 02/03 (8 views per item) or only the stereo pair (4 views)."""


@dataclass(frozen=True)
class OptimConfig:
    """Adam + StepLR."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    step_size: int = 50_000
    gamma: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """A training run of one stage."""

    stage: int = 1
    model: SceneDINOConfig = dataclasses.field(default_factory=lambda: SceneDINOConfig(artifact_field=True))
    init_checkpoint: str | None = None
    """Checkpoint to start from (required for stage 2: the stage-1 result)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    steps: int = 100_000
    batch_size: int = 4
    seed: int = 0
    log_every: int = 50
    validate_every: int = 5000
    checkpoint_every: int = 10_000
    best_metric: str = "val/total"
    """Validation metric selecting best.pt (lower is better unless it ends with ``miou``)."""
    device: str = "cpu"
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    num_workers: int = 0


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    keys = dotted.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_train_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """A recipe YAML (or the defaults when ``path`` is None) plus ``key.sub=value`` overrides (YAML values)."""
    tree: dict[str, Any] = {}
    if path is not None:
        with open(path) as f:
            tree = yaml.safe_load(f) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, value = item.split("=", 1)
        _set(tree, key, yaml.safe_load(value))
    try:
        return from_dict(TrainConfig, tree)
    except ConfigError as exc:
        raise ConfigError(f"{path or 'overrides'}: {exc}") from exc
