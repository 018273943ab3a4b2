"""Modules used only by stage-1 training, built into the model so checkpoints round-trip."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SalienceDownsampler(nn.Module):
    """Pools p x p rendered features to one DINO-token prediction with a learned, position-aware salience softmax."""

    def __init__(self, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.conv = nn.Conv2d(dim, 1, 1)
        nn.init.kaiming_normal_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.patch_weight = nn.Parameter(1.0 + 0.01 * torch.randn(patch_size, patch_size))
        self.patch_bias = nn.Parameter(0.01 * torch.randn(patch_size, patch_size))

    def forward(self, patches: Tensor) -> Tensor:
        """patches: (N, D, p, p) unit features -> (N, D) unit token predictions."""
        n, d, p, _ = patches.shape
        if p != self.patch_size:
            raise ValueError(f"expected {self.patch_size}x{self.patch_size} patches, got {p}x{p}")
        logits = self.conv(patches)[:, 0] * self.patch_weight + self.patch_bias
        weights = torch.softmax(logits.reshape(n, -1), dim=-1)
        pooled = torch.einsum("ndk,nk->nd", patches.reshape(n, d, -1), weights)
        return F.normalize(pooled, dim=-1)
