"""A tiny in-memory multi-view dataset and config for runner tests (random images, two views 0.5 m apart)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from conftest import tiny_config
from scenedino_core.train.config import TrainConfig
from scenedino_core.train.stage1 import Stage1Config


@dataclass(frozen=True)
class Item:
    images: torch.Tensor
    intrinsics: torch.Tensor
    poses: torch.Tensor
    labels: torch.Tensor | None = None


def random_views(cfg: TrainConfig, split: str) -> list[Item]:
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    poses = torch.eye(4).repeat(2, 1, 1)
    poses[1, 2, 3] = 0.5
    K = torch.tensor([[0.8, 0, 0], [0, 2.6, 0], [0, 0, 1.0]]).expand(2, 3, 3)
    return [Item(torch.rand(2, 3, 32, 64, generator=g), K, poses) for _ in range(8)]


def tiny_train_config(**overrides) -> TrainConfig:
    values = dict(model=tiny_config(artifact_field=True), steps=2, batch_size=2, checkpoint_every=1, log_every=1,
                  stage1=Stage1Config(patches_per_item=4, frame_pairs=((0, 1),)))
    values.update(overrides)
    return TrainConfig(**values)
