"""Validation metrics used during training: Hungarian cluster matching and the written assignment."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from conftest import tiny_model
from scenedino_core.train.validate import depth_metrics, hungarian_miou, semantic_metrics


def test_hungarian_recovers_permutation():
    rng = np.random.default_rng(0)
    perm = rng.permutation(5)
    conf = np.zeros((5, 5), np.int64)
    conf[np.arange(5), perm] = 100
    conf += rng.integers(0, 3, (5, 5))
    miou, assignment = hungarian_miou(conf)
    assert np.array_equal(assignment, perm) and miou > 0.9
    extra = np.vstack([conf, conf[:1] * 2])  # a sixth cluster: takes its majority class
    _, assignment = hungarian_miou(extra)
    assert assignment[5] == perm[0]


@dataclass
class Item:
    images: torch.Tensor
    intrinsics: torch.Tensor
    poses: torch.Tensor
    labels: torch.Tensor | None = None
    depth: torch.Tensor | None = None


def test_semantic_metrics_write_assignment_and_depth_metrics():
    model = tiny_model()
    K = torch.tensor([[0.8, 0, 0], [0, 2.6, 0], [0, 0, 1.0]])[None]
    g = torch.Generator().manual_seed(0)
    items = [Item(torch.rand(1, 3, 32, 64, generator=g), K, torch.eye(4)[None],
                  labels=torch.randint(0, 19, (32, 64), generator=g), depth=torch.full((32, 64), 10.0))
             for _ in range(2)]
    before = model.head.stego_clusters.assignment.clone()
    metrics = semantic_metrics(model, items, stride=4)
    assert set(metrics) == {"val/stego_kmeans_miou", "val/direct_kmeans_miou"}
    assert all(0 <= v <= 1 for v in metrics.values())
    after = model.head.stego_clusters.assignment
    assert after.shape == before.shape and int(after.max()) < 19
    d = depth_metrics(model, items, stride=4)
    assert d["val/abs_rel"] >= 0 and d["val/rmse"] == pytest.approx(d["val/rmse"])
