"""Volume rendering along unit rays: sample placement (linear in disparity) and alpha compositing."""
from __future__ import annotations

import torch
from torch import Tensor


def sample_distances(near: Tensor, far: Tensor, n_samples: int, *, jitter: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
    """Distances along the ray, uniform in inverse distance between ``near`` and ``far``.

    Args:
        near, far: (R, 1) per-ray bounds.
        n_samples: samples per ray.
        jitter: add U(0, 1/n) to each stratum position (training); off gives t_k = k / n exactly.

    Returns:
        (R, n_samples) distances, increasing.
    """
    step = 1.0 / n_samples
    t = torch.linspace(0.0, 1.0 - step, n_samples, device=near.device, dtype=near.dtype).expand(near.shape[0], -1)
    if jitter:
        t = t + torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype) * step
    return 1.0 / (1.0 / near * (1.0 - t) + 1.0 / far * t)


def composite_weights(sigma: Tensor, z: Tensor, *, hard_alpha_cap: bool = False) -> tuple[Tensor, Tensor]:
    """Alpha-compositing weights.

    Args:
        sigma: (R, S) densities (1/m).
        z: (R, S) sample distances.
        hard_alpha_cap: force the last alpha to 1 so the weights sum to 1.

    Returns:
        weights (R, S) and alphas (R, S).
    """
    deltas = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], 1e10)], dim=-1)
    alphas = 1.0 - torch.exp(-deltas.abs() * torch.relu(sigma))
    if hard_alpha_cap:
        alphas = torch.cat([alphas[:, :-1], torch.ones_like(alphas[:, -1:])], dim=-1)
    shifted = torch.cat([torch.ones_like(alphas[:, :1]), 1.0 - alphas + 1e-10], dim=-1)
    transmittance = torch.cumprod(shifted, dim=-1)[:, :-1]
    return alphas * transmittance, alphas
