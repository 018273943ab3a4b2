"""Stage 1: the feature field learns geometry from multi-view photometric reconstruction and DINO features from a
frozen teacher, through the salience downsampler and the artifact field (SceneDINO's first training stage)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import losses
from ..backbone import DinoBackbone
from ..model import SceneDINO
from .batch import ViewBatch, sample_views, view_rays
from .sampling import random_shift, sample_patches, shift_images


@dataclass(frozen=True)
class Stage1Config:
    """Stage-1 sampling and loss settings (defaults: the released KITTI-360 recipe)."""

    patches_per_item: int = 32
    """8x8 patches per item (2048 rays for the released recipe)."""
    frame_pairs: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7))
    """Views paired by camera; per pair one view is a loss view, the other a render view (random, p = 1/2)."""
    flip_probability: float = 0.5
    invalid_weight_threshold: float = 0.9
    lambda_rgb: float = 1.0
    lambda_dino: float = 0.2
    lambda_depth_smooth: float = 0.001
    lambda_dino_smooth: float = 0.25
    dino_smooth_temperature: float = 25.0


class Teacher(nn.Module):
    """Frozen DINO ViT giving the stage-1 targets: final tokens, L2-normalised, (N, D, h, w)."""

    def __init__(self, backbone: DinoBackbone):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(images)[-1]


def split_frames(pairs: tuple[tuple[int, int], ...], num_views: int,
                 generator: torch.Generator | None = None) -> tuple[list[int], list[int]]:
    """Loss and render views: one of each pair each (pairs naming missing views are ignored)."""
    loss, render = [], []
    for a, b in pairs:
        if max(a, b) >= num_views:
            continue
        first = bool(torch.rand((), generator=generator) < 0.5)
        loss.append(a if first else b)
        render.append(b if first else a)
    if not loss:
        raise ValueError(f"no frame pair {pairs} fits {num_views} views")
    return loss, render


def stage1_losses(model: SceneDINO, teacher: Teacher, batch: ViewBatch, cfg: Stage1Config,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Loss terms of one stage-1 step; ``total`` is their weighted sum."""
    b, _, _, h, w = batch.images.shape
    p = model.backbone.spec.feature_stride
    flip = bool(torch.rand((), generator=generator) < cfg.flip_probability)
    volume = model.encode(batch.images[:, 0], batch.intrinsics[:, 0], normalized=True, flip=flip)
    loss_views, render_views = split_frames(cfg.frame_pairs, batch.num_views, generator)
    shift = random_shift(p, generator)
    loss_images = batch.images[:, loss_views]                                      # (B, L, 3, H, W)
    targets = teacher(shift_images(loss_images.flatten(0, 1), shift, p))           # (B*L, D, h/p, w/p)
    targets = targets.reshape(b, len(loss_views), *targets.shape[1:])

    patches = [sample_patches(cfg.patches_per_item, len(loss_views), (h, w), p, shift, generator) for _ in range(b)]
    ys = torch.stack([s.pixel_grid()[0] for s in patches]).to(batch.images.device)  # (B, P, p, p)
    xs = torch.stack([s.pixel_grid()[1] for s in patches]).to(batch.images.device)
    frame = torch.stack([s.frame for s in patches]).to(batch.images.device)        # (B, P)
    n_rays = ys[0].numel()
    xy = torch.stack([-1 + (2 * xs + 1) / w, -1 + (2 * ys + 1) / h], dim=-1).to(batch.images)
    view = torch.as_tensor(loss_views, device=frame.device)[frame]                 # (B, P)
    K = batch.intrinsics[torch.arange(b)[:, None], view]                           # (B, P, 3, 3)
    pose = batch.poses[torch.arange(b)[:, None], view]
    o, d = view_rays(xy.reshape(b * cfg.patches_per_item, -1, 2), K.flatten(0, 1), pose.flatten(0, 1))
    rendered = model.render(volume, o.reshape(b, n_rays, 3), d.reshape(b, n_rays, 3), generator=generator)

    s = rendered.distances.shape[-1]
    pts = (o.reshape(b, n_rays, 1, 3) + rendered.distances.unsqueeze(-1) * d.reshape(b, n_rays, 1, 3))
    colours, outside = sample_views(pts.reshape(b, -1, 3), batch.images[:, render_views],
                                    batch.intrinsics[:, render_views], batch.poses[:, render_views])
    r = len(render_views)
    weights = rendered.weights.unsqueeze(1)                                         # (B, 1, R, S)
    colour = (weights.unsqueeze(-1) * colours.reshape(b, r, n_rays, s, 3)).sum(3)   # (B, r, R, 3)
    bad = (outside.reshape(b, r, n_rays, s) | rendered.outside.unsqueeze(1)).to(weights)
    invalid = ((weights * bad).sum(-1) > cfg.invalid_weight_threshold).all(dim=1)   # (B, R)

    def patchify(x: Tensor) -> Tensor:  # (B, R, C) -> (B*P, C, p, p)
        return x.reshape(b * cfg.patches_per_item, p, p, -1).permute(0, 3, 1, 2)

    gt = loss_images[torch.arange(b)[:, None, None, None], frame[:, :, None, None], :, ys, xs]  # (B, P, p, p, 3)
    gt = gt.reshape(b * cfg.patches_per_item, p, p, 3).permute(0, 3, 1, 2)
    preds = torch.stack([patchify(colour[:, i]) for i in range(r)])
    rgb = losses.photometric_loss(preds, gt, invalid.reshape(-1, p, p))

    expanded = patchify(model.expansion(rendered.features))                        # (B*P, D, p, p)
    pred_tokens = model.downsampler(expanded)                                       # (B*P, D)
    ty = torch.stack([s_.token_y for s_ in patches]).flatten().to(frame.device)
    tx = torch.stack([s_.token_x for s_ in patches]).flatten().to(frame.device)
    if hasattr(model, "artifact_field"):
        pred_tokens = pred_tokens + model.artifact_field[:, ty, tx].T
    item = torch.arange(b, device=frame.device).repeat_interleave(cfg.patches_per_item)
    target = targets[item, frame.flatten(), :, ty, tx]
    dino = losses.dino_loss(pred_tokens, target)

    depth_smooth = losses.depth_smoothness(rendered.depth.reshape(-1, p, p), gt, model.config.field.z_far)
    dino_smooth = losses.edge_aware_smoothness(expanded, gt, cfg.dino_smooth_temperature)
    total = (cfg.lambda_rgb * rgb + cfg.lambda_dino * dino + cfg.lambda_depth_smooth * depth_smooth
             + cfg.lambda_dino_smooth * dino_smooth)
    return {"total": total, "rgb": rgb, "dino": dino, "depth_smooth": depth_smooth, "dino_smooth": dino_smooth}


def stage1_param_groups(model: SceneDINO, lr: float) -> list[dict]:
    """Adam groups: ViT at lr/10, everything else (decoder, field, expansion, downsampler, artifacts) at lr.
    The semantic head is not trained in stage 1."""
    vit = list(model.backbone.parameters())
    skip = {id(q) for q in vit} | {id(q) for q in model.head.parameters()}
    rest = [q for q in model.parameters() if id(q) not in skip]
    return [{"params": vit, "lr": lr / 10, "name": "vit"}, {"params": rest, "lr": lr, "name": "field"}]


