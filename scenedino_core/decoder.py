"""DPT decoder: four ViT maps -> one dense feature map (2x the model input resolution for 8-px tokens)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import DecoderConfig


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds a refined skip connection (if any), refines, upsamples x2 (align_corners=True), projects 1x1."""

    def __init__(self, channels: int, with_skip: bool):
        super().__init__()
        self.res_conv_unit1 = ResidualUnit(channels) if with_skip else None
        self.res_conv_unit2 = ResidualUnit(channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.res_conv_unit1(skip)
        x = self.res_conv_unit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.project(x)


class DPTDecoder(nn.Module):
    """Reassemble (1x1 projection + resize x4, x2, x1, /2), 3x3 convs to ``out_dim``, 4 fusion blocks, head.

    The head is conv 3x3 -> transposed conv (x2) -> conv 3x3, without activations (as in the original).
    """

    def __init__(self, embed_dim: int, config: DecoderConfig):
        super().__init__()
        ch = [min(config.out_dim, c) for c in config.post_process_channels]
        d = config.out_dim
        self.projects = nn.ModuleList([nn.Conv2d(embed_dim, c, 1) for c in ch])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(ch[0], ch[0], 4, stride=4),
            nn.ConvTranspose2d(ch[1], ch[1], 2, stride=2),
            nn.Identity(),
            nn.Conv2d(ch[3], ch[3], 3, stride=2, padding=1),
        ])
        self.convs = nn.ModuleList([nn.Conv2d(c, d, 3, padding=1, bias=False) for c in ch])
        self.fusion_blocks = nn.ModuleList([FusionBlock(d, with_skip=i > 0) for i in range(4)])
        self.project = nn.Conv2d(d, d, 3, padding=1)
        self.output_head = nn.Sequential(
            nn.Conv2d(d, d, 3, padding=1),
            nn.ConvTranspose2d(d, d, 2, stride=2),
            nn.Conv2d(d, d, 3, padding=1),
        )

    def forward(self, maps: list[Tensor]) -> Tensor:
        """maps: 4 x (B, D, h, w) (finest-first order of the original: blocks 3, 6, 9, final)
        -> (B, out_dim, 16h, 16w)."""
        if len(maps) != 4:
            raise ValueError(f"the DPT decoder takes 4 maps, got {len(maps)}")
        levels = [conv(resize(proj(m))) for m, proj, resize, conv in
                  zip(maps, self.projects, self.resize_layers, self.convs)]
        out = self.fusion_blocks[0](levels[3])
        for i in range(1, 4):
            out = self.fusion_blocks[i](out, levels[3 - i])
        return self.output_head(self.project(out))
