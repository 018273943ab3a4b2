"""Stage 2: the STEGO head learns unsupervised 3D semantics from the frozen stage-1 field (SceneDINO's second stage).

Crops of 3D points around rendered surfaces are distilled with the STEGO correlation loss against themselves, a
nearest neighbour and a random crop from a FIFO buffer; cluster probes (and linear probes where labels exist) train on
the rendered 2D features of the input view.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import losses
from ..model import SceneDINO
from .batch import ViewBatch
from .sampling import ball_points, surface_points


@dataclass(frozen=True)
class Stage2Config:
    """Stage-2 settings (defaults: the released KITTI-360 recipe)."""

    points_per_crop: int = 576
    crop_radius_m: float = 0.5
    crop_sigma_threshold: float = 0.5
    crops_per_image: int = 5
    buffer_size: int = 256
    knn: int = 4
    render_stride: int = 1
    """Render every n-th pixel of the input view for the probes (1 = full resolution)."""
    feature_dropout: float = 0.1


class CropBuffer:
    """FIFO of past crops (features and their mean-pooled unit 'GAP' vectors) for kNN and random partners."""

    def __init__(self, size: int):
        self.size = size
        self.crops: Tensor | None = None
        self.gaps: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.crops is None else self.crops.shape[0]

    def push(self, crops: Tensor) -> None:
        crops = crops.detach()
        gaps = F.normalize(crops.mean(1), dim=-1)
        self.crops = crops if self.crops is None else torch.cat([crops, self.crops])[: self.size]
        self.gaps = gaps if self.gaps is None else torch.cat([gaps, self.gaps])[: self.size]

    def partners(self, crops: Tensor, knn: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A nearest-neighbour crop (one of the ``knn`` closest after the best match, assumed self) and a random
        crop for each of the (N, P, D) ``crops``."""
        n = crops.shape[0]
        gaps = F.normalize(crops.mean(1), dim=-1)
        k = min(knn + 1, len(self))
        top = (gaps @ self.gaps.T).topk(k, dim=-1).indices
        pick = torch.randint(min(1, k - 1), k, (n,), generator=generator).to(top.device)
        nn_idx = top[torch.arange(n, device=top.device), pick]
        rand_idx = torch.randint(0, len(self), (n,), generator=generator).to(top.device)
        return self.crops[nn_idx], self.crops[rand_idx]


@torch.no_grad()
def field_crops(model: SceneDINO, volume, depth: Tensor, origins: Tensor, directions: Tensor, cfg: Stage2Config,
                generator: torch.Generator | None = None) -> Tensor:
    """(N, P, D) expanded features of dense 3D crops around rendered surfaces of a batch (frozen field)."""
    crops = []
    for i in range(depth.shape[0]):
        centres = surface_points(depth[i], origins[i], directions[i], cfg.crops_per_image, generator)
        if centres.shape[0] == 0:
            continue
        pts = ball_points(centres, 4 * cfg.points_per_crop, cfg.crop_radius_m, generator)
        vol_i = volume.item(i)
        out = model.query(vol_i, pts.reshape(1, -1, 3), expand=True)
        sigma = out.sigma.reshape(pts.shape[:2])
        feats = out.expanded.reshape(*pts.shape[:2], -1)
        for c in range(pts.shape[0]):
            keep = (sigma[c] > cfg.crop_sigma_threshold).nonzero().squeeze(1)
            if keep.numel() > cfg.points_per_crop:
                crops.append(feats[c, keep[: cfg.points_per_crop]])
    if not crops:
        return depth.new_zeros(0, cfg.points_per_crop, model.head.stego.hidden.in_features)
    return torch.stack(crops)


def stage2_losses(model: SceneDINO, batch: ViewBatch, buffer: CropBuffer, cfg: Stage2Config,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Loss terms of one stage-2 step (only ``model.head`` receives gradients); ``total`` is their sum."""
    head = model.head
    with torch.no_grad():
        volume = model.encode(batch.images[:, 0], batch.intrinsics[:, 0], normalized=True)
        o, d, (gh, gw) = model.image_rays(volume, cfg.render_stride)
        rendered = model.render(volume, o, d, expand=True)
    feats2d = rendered.expanded.flatten(0, 1)                                        # (B*R, D)
    terms: dict[str, Tensor] = {}
    crops = field_crops(model, volume, rendered.depth, o, d, cfg, generator)
    zero = feats2d.new_zeros(())
    if crops.shape[0]:
        crops = F.dropout1d(F.normalize(crops, dim=-1).transpose(1, 2), cfg.feature_dropout,
                            training=head.training).transpose(1, 2)
        buffer.push(crops)
        nn_crops, rand_crops = buffer.partners(crops, cfg.knn, generator)
        codes, nn_codes, rand_codes = head.stego(crops), head.stego(nn_crops), head.stego(rand_crops)
        for name, partner, partner_codes in (("self", crops, codes), ("knn", nn_crops, nn_codes),
                                             ("random", rand_crops, rand_codes)):
            w, b = losses.STEGO_TERMS[name]
            terms[f"stego_{name}"] = losses.stego_term(crops, codes, partner, partner_codes, w, b)
    else:
        terms.update(stego_self=zero, stego_knn=zero, stego_random=zero)
    direct_in = F.dropout(feats2d, 0.1, training=head.training)
    codes2d = head.stego(feats2d).detach()
    terms["cluster_direct"] = losses.cluster_loss(direct_in, head.direct_clusters.centers)
    terms["cluster_stego"] = losses.cluster_loss(codes2d, head.stego_clusters.centers)
    if batch.labels is not None:
        labels = batch.labels[:, cfg.render_stride // 2::cfg.render_stride, cfg.render_stride // 2::cfg.render_stride]
        labels = labels.reshape(-1).to(feats2d.device)
        terms["linear_direct"] = F.cross_entropy(head.direct_linear(feats2d), labels, ignore_index=-1)
        terms["linear_stego"] = F.cross_entropy(head.stego_linear(codes2d), labels, ignore_index=-1)
        if not (labels >= 0).any():
            terms["linear_direct"] = terms["linear_stego"] = zero
    terms["total"] = sum(terms.values())
    return terms


def stage2_param_groups(model: SceneDINO, lr: float) -> list[dict]:
    """STEGO projection at lr, cluster and linear probes at 10 x lr; nothing else trains."""
    head = model.head
    probes = [*head.direct_clusters.parameters(), *head.stego_clusters.parameters(), *head.direct_linear.parameters(),
              *head.stego_linear.parameters()]
    return [{"params": list(head.stego.parameters()), "lr": lr, "name": "stego"},
            {"params": probes, "lr": 10 * lr, "name": "probes"}]


def freeze_for_stage2(model: SceneDINO) -> None:
    """Everything but the semantic head is frozen and stays in eval mode."""
    model.requires_grad_(False).eval()
    model.head.requires_grad_(True).train()


