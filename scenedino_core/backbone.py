"""DINO / DINOv2 ViT backbones from timm, returning the multi-layer patch maps the DPT decoder consumes."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .config import BackboneConfig

_logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """How the model feeds one timm ViT."""

    patch_size: int
    """ViT patch size in pixels of the ViT input."""
    feature_stride: int
    """Pixels of the *model input* image per token (differs from patch_size when the input is resized)."""
    embed_dim: int


#: The supported backbones. DINOv2 (patch 14) models see the image resized by 14/16, i.e. one token per 16 px.
BACKBONES: dict[str, BackboneSpec] = {
    "vit_base_patch8_224.dino": BackboneSpec(8, 8, 768),
    "vit_small_patch8_224.dino": BackboneSpec(8, 8, 384),
    "vit_base_patch16_224.dino": BackboneSpec(16, 16, 768),
    "vit_base_patch14_dinov2.lvd142m": BackboneSpec(14, 16, 768),
    "vit_base_patch14_reg4_dinov2.lvd142m": BackboneSpec(14, 16, 768),
    "tiny": BackboneSpec(8, 8, 48),
    "vit_small_scratch_patch8": BackboneSpec(8, 8, 192),
}

#: ViTs without pretrained weights, built directly (tests; the CPU demo model trained from scratch).
SCRATCH_VITS: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 48, "depth": 4, "num_heads": 2},
    "vit_small_scratch_patch8": {"embed_dim": 192, "depth": 6, "num_heads": 3},
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; supported: {sorted(BACKBONES)}") from None


def vit_input_size(name: str, image_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) the ViT sees for a model input of ``image_size`` (DINOv2: resized so each token covers 16 px)."""
    spec = backbone_spec(name)
    h, w = image_size
    if h % spec.feature_stride or w % spec.feature_stride:
        raise ValueError(f"image size {image_size} must be divisible by {spec.feature_stride} for backbone {name}")
    return h // spec.feature_stride * spec.patch_size, w // spec.feature_stride * spec.patch_size


def _create_vit(config: BackboneConfig, vit_size: tuple[int, int]) -> VisionTransformer:
    if config.name in SCRATCH_VITS:
        if config.pretrained:
            raise ValueError(f"backbone {config.name!r} has no pretrained weights")
        return VisionTransformer(img_size=vit_size, patch_size=BACKBONES[config.name].patch_size, num_classes=0,
                                 **SCRATCH_VITS[config.name])
    kwargs: dict = {"img_size": vit_size, "num_classes": 0, "pretrained": config.pretrained}
    if config.pretrained and config.weights_file:
        kwargs["pretrained_cfg_overlay"] = {"file": config.weights_file}
    if config.pretrained:
        _logger.info("loading pretrained %s weights (%s)", config.name, config.weights_file or "hub download")
    return timm.create_model(config.name, **kwargs)


class DinoBackbone(nn.Module):
    """A timm ViT returning ``len(intermediate_layers) + 1`` maps (B, D, h, w).

    The first maps are raw residual-stream outputs of the intermediate blocks; the last is the final LayerNorm
    output, L2-normalised per token. Prefix tokens (cls, registers) are dropped.
    """

    def __init__(self, config: BackboneConfig, image_size: tuple[int, int]):
        super().__init__()
        self.spec = backbone_spec(config.name)
        self.image_size = image_size
        self.vit_size = vit_input_size(config.name, image_size)
        self.vit = _create_vit(config, self.vit_size)
        depth = len(self.vit.blocks)
        if any(not 0 <= i < depth for i in config.intermediate_layers):
            raise ValueError(f"intermediate_layers {config.intermediate_layers} out of range for a {depth}-block ViT")
        self.layers = tuple(config.intermediate_layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    def forward(self, images: Tensor) -> list[Tensor]:
        """images: (B, 3, H, W) RGB in [0, 1] at ``image_size`` -> list of (B, D, H/s, W/s) maps."""
        x = (images - self.mean) / self.std
        if self.vit_size != tuple(images.shape[-2:]):
            x = F.interpolate(x, size=self.vit_size, mode="bilinear", align_corners=False, antialias=True)
        final, intermediates = self.vit.forward_intermediates(x, indices=list(self.layers), norm=False,
                                                              output_fmt="NCHW")
        b, _, h, w = intermediates[0].shape
        tokens = final[:, self.vit.num_prefix_tokens:]
        last = F.normalize(tokens, dim=-1).transpose(1, 2).reshape(b, -1, h, w)
        return [*intermediates, last]
