"""Unsupervised semantic head: STEGO projection, cosine cluster probes and linear probes.

Four prediction modes, all ending in Cityscapes trainIds (see ``scenedino_core.labels``):
``stego_kmeans`` (default), ``direct_kmeans``, ``stego_linear``, ``direct_linear``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SemanticConfig
from .field import normalize_


class PredictionMode(str, enum.Enum):
    STEGO_KMEANS = "stego_kmeans"
    DIRECT_KMEANS = "direct_kmeans"
    STEGO_LINEAR = "stego_linear"
    DIRECT_LINEAR = "direct_linear"

    @classmethod
    def parse(cls, value: str | PredictionMode) -> PredictionMode:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown prediction mode {value!r}; choose one of {[m.value for m in cls]}") from None


#: The modes whose raw outputs are cluster ids (mapped to trainIds by a cluster -> class assignment).
KMEANS_MODES = (PredictionMode.STEGO_KMEANS, PredictionMode.DIRECT_KMEANS)


@dataclass(frozen=True)
class Classification:
    """Result of the semantic head for N features."""

    classes: Tensor
    """(N,) int64 trainIds."""
    scores: Tensor
    """(N, K) cosine similarities to the K cluster centres (k-means modes) or class logits (linear modes)."""
    clusters: Tensor | None
    """(N,) int64 raw cluster ids (k-means modes), else None."""


class StegoProjection(nn.Module):
    """x (unit, D) -> unit code: normalize(W_lin x + W2 relu(W1 x))."""

    def __init__(self, in_dim: int, code_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, code_dim)
        self.hidden = nn.Linear(in_dim, in_dim)
        self.out = nn.Linear(in_dim, code_dim)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(x, dim=-1, eps=1e-10)
        code = self.dropout(self.linear(x)) + self.dropout(self.out(F.relu(self.hidden(x))))
        return F.normalize(code, dim=-1)

    def forward_inplace(self, x: Tensor) -> Tensor:
        """``forward`` in eval mode without autograd: the same values; ``x`` is normalised in place."""
        x = normalize_(x, 1e-10)
        code = self.linear(x)
        code += self.out(self.hidden(x).relu_())
        return F.normalize(code, dim=-1)


class ClusterProbe(nn.Module):
    """Cosine k-means probe with a cluster -> trainId assignment."""

    def __init__(self, n_clusters: int, dim: int, n_classes: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(n_clusters, dim))
        self.register_buffer("assignment", torch.arange(n_clusters) % n_classes)

    def similarities(self, x: Tensor) -> Tensor:
        """(N, D) -> (N, K) cosine similarities."""
        return F.normalize(x, dim=-1) @ F.normalize(self.centers, dim=-1).T


class SemanticHead(nn.Module):
    """STEGO projection (D -> code) with cluster and linear probes on both the D-dim feature and the code."""

    def __init__(self, in_dim: int, config: SemanticConfig):
        super().__init__()
        self.stego = StegoProjection(in_dim, config.code_dim)
        self.direct_clusters = ClusterProbe(config.n_clusters, in_dim, config.n_classes)
        self.stego_clusters = ClusterProbe(config.n_clusters, config.code_dim, config.n_classes)
        self.direct_linear = nn.Linear(in_dim, config.n_classes)
        self.stego_linear = nn.Linear(config.code_dim, config.n_classes)

    def classify(self, features: Tensor, mode: PredictionMode | str = PredictionMode.STEGO_KMEANS, *,
                 inplace: bool = False) -> Classification:
        """features: (N, D) expanded features -> trainIds (N,) with scores.

        ``inplace`` (eval mode, no autograd): the same values, with ``features`` normalised in place and no copies of
        the D-wide activations beyond the STEGO hidden layer's (what keeps a block of rows in the CPU caches).
        """
        mode = PredictionMode.parse(mode)
        if inplace and (self.training or torch.is_grad_enabled()):
            raise ValueError("classify(inplace=True) needs eval mode and no autograd")
        x = normalize_(features, 1e-10) if inplace else F.normalize(features, dim=-1, eps=1e-10)
        if mode in (PredictionMode.STEGO_KMEANS, PredictionMode.STEGO_LINEAR):
            x = self.stego.forward_inplace(x) if inplace else self.stego(x)
        if mode is PredictionMode.STEGO_KMEANS or mode is PredictionMode.DIRECT_KMEANS:
            probe = self.stego_clusters if mode is PredictionMode.STEGO_KMEANS else self.direct_clusters
            scores = probe.similarities(x)
            clusters = scores.argmax(dim=-1)
            return Classification(probe.assignment[clusters], scores, clusters)
        linear = self.stego_linear if mode is PredictionMode.STEGO_LINEAR else self.direct_linear
        scores = linear(x)
        return Classification(scores.argmax(dim=-1), scores, None)
