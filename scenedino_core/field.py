"""The density/feature field: positional code of (u, v, inverse depth), the MLP, and the 64 -> D expansion."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FieldConfig


class PositionalEncoding(nn.Module):
    """NeRF code: the inputs, then per frequency f: sin(f x_i) for each input, then cos(f x_i) (as a phase shift).

    Output width: ``d_in * (1 + 2 * num_freqs)``.
    """

    def __init__(self, num_freqs: int, freq_factor: float, d_in: int = 3):
        super().__init__()
        self.d_in = d_in
        freqs = freq_factor * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("freqs", torch.repeat_interleave(freqs, 2).view(1, -1, 1))
        self.register_buffer("phases", torch.tensor([0.0, math.pi / 2] * num_freqs).view(1, -1, 1))

    @property
    def d_out(self) -> int:
        return self.d_in * (1 + self.freqs.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, d_in) -> (N, d_out)."""
        n = x.shape[0]
        embed = x.unsqueeze(1).expand(n, self.freqs.shape[1], self.d_in)
        embed = torch.sin(torch.addcmul(self.phases, embed, self.freqs))
        return torch.cat([x, embed.reshape(n, -1)], dim=-1)


class FieldMLP(nn.Module):
    """Linear -> ReLU -> Linear; output channel 0 is the density logit, the rest the reduced DINO feature."""

    def __init__(self, d_in: int, config: FieldConfig):
        super().__init__()
        self.lin_in = nn.Linear(d_in, config.hidden_dim)
        self.lin_out = nn.Linear(config.hidden_dim, 1 + config.feature_dim)
        for lin in (self.lin_in, self.lin_out):
            nn.init.kaiming_normal_(lin.weight, a=0, mode="fan_in")
            nn.init.zeros_(lin.bias)

    def forward(self, features: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """The MLP on the input ``[features | code]`` without materialising the concatenation.

        Args:
            features: (N, C) sampled image features.
            code: (N, d_in - C) positional code.

        Returns:
            sigma (N,) >= 0 (softplus) and reduced features (N, feature_dim).
        """
        c = features.shape[-1]
        w = self.lin_in.weight
        return self.head(torch.addmm(torch.addmm(self.lin_in.bias, features, w[:, :c].T), code, w[:, c:].T))

    def project_features(self, maps: Tensor) -> Tensor:
        """(B, C, H, W) feature maps -> (B, hidden, H, W): the first layer's feature part applied per pixel.

        Bilinear sampling is linear, so sampling these maps equals applying the layer to sampled features.
        """
        c = maps.shape[1]
        return F.conv2d(maps, self.lin_in.weight[:, :c, None, None])

    def forward_projected(self, projected: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """The MLP from sampled ``project_features`` values (N, hidden) and the code (N, d_in - C)."""
        c = self.lin_in.weight.shape[1] - code.shape[-1]
        return self.head(torch.addmm(projected + self.lin_in.bias, code, self.lin_in.weight[:, c:].T))

    def head(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """First-layer pre-activations (N, hidden) -> sigma (N,), reduced features (N, feature_dim)."""
        out = self.lin_out(F.relu(hidden))
        return F.softplus(out[:, 0]), out[:, 1:]


class FeatureExpansion(nn.Module):
    """Reduced feature (.., 64) -> unit-length DINO-space feature (.., D) through an MLP."""

    def __init__(self, feature_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.linear_in = nn.Linear(feature_dim, hidden_dim)
        self.linear_out = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear_out(F.relu(self.linear_in(x))), dim=-1)

    def forward_inplace(self, x: Tensor) -> Tensor:
        """``forward`` without autograd: the same values, activations rectified and normalised in place."""
        return normalize_(self.linear_out(self.linear_in(x).relu_()), 1e-12)


def normalize_(x: Tensor, eps: float) -> Tensor:
    """``F.normalize(x, dim=-1, eps=eps)`` in place (the same values; no autograd)."""
    return x.div_(x.norm(2, dim=-1, keepdim=True).clamp_min_(eps))
