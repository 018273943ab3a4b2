"""Training losses as pure tensor functions: the photometric, DINO-feature and smoothness terms of stage 1; the STEGO
correlation and cluster-probe losses of stage 2."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import FieldConfig

#: Fixed 3x3 Gaussian window of the photometric SSIM.
SSIM_WINDOW = torch.tensor([[0.0947, 0.1183, 0.0947], [0.1183, 0.1478, 0.1183], [0.0947, 0.1183, 0.0947]])
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2

#: STEGO 3D correlation-loss weights and shifts of the released training (optuna outputs, kept verbatim).
STEGO_TERMS = {
    "self": (0.08146997886146659, 0.43610463774158115),
    "knn": (0.4156436438453117, 0.18458300726748128),
    "random": (0.6702352279261414, 0.8709334888837256),
}


def ssim_error(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel SSIM dissimilarity ``clamp(1 - SSIM, 0, 1) / 2`` with the fixed 3x3 window and zero padding.

    Args:
        a, b: (N, C, H, W) images in [0, 1].

    Returns:
        (N, C, H, W).
    """
    c = a.shape[1]
    w = SSIM_WINDOW.to(a).expand(c, 1, 3, 3)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, w, padding=1, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) *
                                                                  (var_a + var_b + SSIM_C2))
    return ((1 - ssim) / 2).clamp(0, 1)


def photometric_error(pred: Tensor, target: Tensor) -> Tensor:
    """(N, 3, H, W) x2 -> (N, H, W): 0.85 * channel-mean SSIM error + 0.15 * channel-mean L1."""
    return 0.85 * ssim_error(pred, target).mean(1) + 0.15 * (pred - target).abs().mean(1)


def photometric_loss(preds: Tensor, target: Tensor, invalid: Tensor | None = None) -> Tensor:
    """Minimum reconstruction error over render views, masked, averaged.

    Args:
        preds: (V, N, 3, p, p) colours rendered from V render views for N patches.
        target: (N, 3, p, p) ground-truth colours of the loss frame.
        invalid: (N, p, p) bool rays to ignore (e.g. outside every render view).
    """
    errors = torch.stack([photometric_error(p, target) for p in preds])  # (V, N, p, p)
    error = errors.min(dim=0).values
    if invalid is not None:
        error = error * (~invalid).to(error)
    return error.mean()


def dino_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean cosine distance between (N, D) predicted and target DINO tokens."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def edge_aware_smoothness(values: Tensor, image: Tensor, temperature: float = 1.0) -> Tensor:
    """Gradients of ``values`` damped where the image has edges.

    Args:
        values: (N, C, H, W) quantity to smooth (channel-mean absolute differences are used).
        image: (N, 3, H, W) guide image in [0, 1].
        temperature: edge sharpness, weights exp(-temperature * |dI|).
    """
    dvx = (values[..., :, 1:] - values[..., :, :-1]).abs().mean(1)
    dvy = (values[..., 1:, :] - values[..., :-1, :]).abs().mean(1)
    dix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1)
    diy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1)
    return (dvx * torch.exp(-temperature * dix)).mean() + (dvy * torch.exp(-temperature * diy)).mean()


def depth_smoothness(depth: Tensor, image: Tensor, z_far: float = FieldConfig.z_far) -> Tensor:
    """Edge-aware smoothness of patch-mean-normalised inverse depth. depth: (N, p, p); image: (N, 3, p, p)."""
    inv = 1.0 / depth.clamp(1e-3, z_far)
    inv = inv / inv.mean(dim=(1, 2), keepdim=True).clamp_min(1e-7)
    return edge_aware_smoothness(inv.unsqueeze(1), image)


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Cosine correlation of point sets: (N, P, D), (N, Q, D) -> (N, P, Q)."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2)


def stego_term(feats: Tensor, codes: Tensor, other_feats: Tensor, other_codes: Tensor, weight: float,
               shift: float) -> Tensor:
    """One STEGO correlation-distillation term: mean(-w * max(S, 0) * (F - b)).

    F is the DINO-feature correlation and S the code correlation between each crop and its partner crop.
    Shapes: feats/other_feats (N, P, D), codes/other_codes (N, P, d).
    """
    dino_corr = correlation(feats, other_feats)
    code_corr = correlation(codes, other_codes)
    return (-weight * code_corr.clamp_min(0) * (dino_corr - shift)).mean()


def cluster_loss(features: Tensor, centers: Tensor) -> Tensor:
    """Hard cosine k-means loss: -mean over points of the best cosine to a centre. (N, D), (K, D)."""
    sims = F.normalize(features, dim=-1) @ F.normalize(centers, dim=-1).T
    return -sims.max(dim=-1).values.mean()
