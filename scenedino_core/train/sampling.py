"""Where training looks: token-aligned patch rays (stage 1) and balls around rendered surfaces (stage 2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class PatchSample:
    """P square patches of side ``size`` aligned with a (shifted) token grid; all fields (P,) int64."""

    frame: Tensor
    """Index of the loss frame each patch is taken from."""
    y0: Tensor
    """Top pixel row of the patch."""
    x0: Tensor
    """Left pixel column of the patch."""
    token_y: Tensor
    """Row of the teacher token (of the shifted image) that covers the patch."""
    token_x: Tensor
    """Column of that token."""
    size: int

    def pixel_grid(self) -> tuple[Tensor, Tensor]:
        """(P, size, size) row and column indices of every patch pixel."""
        r = torch.arange(self.size, device=self.y0.device)
        ys = self.y0[:, None, None] + r[None, :, None]
        xs = self.x0[:, None, None] + r[None, None, :]
        return ys.expand(-1, -1, self.size), xs.expand(-1, self.size, -1)


def random_shift(patch_size: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """Token-grid shift (s_y, s_x), each uniform in [-p/2, p/2 - 1]."""
    s = torch.randint(-(patch_size // 2), patch_size // 2, (2,), generator=generator)
    return int(s[0]), int(s[1])


def shift_images(images: Tensor, shift: tuple[int, int], patch_size: int) -> Tensor:
    """Images seen by the teacher: edge-padded by p and cropped at (p + s_y, p + s_x); (N, C, H, W) -> same shape.

    Pixel (y, x) of the result is pixel (y + s_y, x + s_x) of the input (clamped at the borders).
    """
    p = patch_size
    h, w = images.shape[-2:]
    padded = F.pad(images, (p, p, p, p), mode="replicate")
    return padded[..., p + shift[0]:p + shift[0] + h, p + shift[1]:p + shift[1] + w]


def sample_patches(n_patches: int, n_frames: int, image_size: tuple[int, int], patch_size: int,
                   shift: tuple[int, int], generator: torch.Generator | None = None) -> PatchSample:
    """Random token-aligned patches: patch (cy, cx) starts at pixel (s mod p + p cy, s mod p + p cx) and is covered
    by token (cy, cx) of the shifted image (+1 along an axis whose shift is negative); cy < H/p - 1, cx < W/p - 1.
    """
    h, w = image_size
    p = patch_size
    ny, nx = h // p - 1, w // p - 1
    if ny < 1 or nx < 1:
        raise ValueError(f"image {image_size} too small for {p}-pixel patches")
    frame = torch.randint(0, n_frames, (n_patches,), generator=generator)
    cy = torch.randint(0, ny, (n_patches,), generator=generator)
    cx = torch.randint(0, nx, (n_patches,), generator=generator)
    sy, sx = shift
    return PatchSample(frame=frame, y0=sy % p + p * cy, x0=sx % p + p * cx, token_y=cy + int(sy < 0),
                       token_x=cx + int(sx < 0), size=p)


def surface_points(depth: Tensor, origins: Tensor, directions: Tensor, n_bins: int = 5,
                   generator: torch.Generator | None = None, max_depth: float = 100.0) -> Tensor:
    """One random surface point per depth-quantile bin of an image's rendered depth (stage 2 crop centres).

    Args:
        depth: (R,) rendered distances of the image's rays.
        origins, directions: (R, 3) the rays.
        n_bins: number of quantile bins (quantiles 0, 1/n, ..., 1 of the depths below ``max_depth``).

    Returns:
        (M, 3) points, M <= n_bins (empty bins are skipped).
    """
    valid = depth < max_depth
    if not valid.any():
        return depth.new_zeros(0, 3)
    q = torch.quantile(depth[valid], torch.linspace(0, 1, n_bins + 1, device=depth.device))
    centres = []
    for lo, hi in zip(q[:-1], q[1:]):
        idx = (valid & (depth >= lo) & (depth <= hi)).nonzero().squeeze(1)
        if idx.numel():
            k = idx[torch.randint(0, idx.numel(), (1,), generator=generator)]
            centres.append(origins[k] + depth[k, None] * directions[k])
    return torch.cat(centres) if centres else depth.new_zeros(0, 3)


def ball_points(centres: Tensor, n: int, radius: float, generator: torch.Generator | None = None) -> Tensor:
    """n points uniform in a ball of ``radius`` around each centre: (M, 3) -> (M, n, 3)."""
    m = centres.shape[0]
    d = F.normalize(torch.randn(m, n, 3, generator=generator).to(centres), dim=-1)
    r = radius * torch.rand(m, n, 1, generator=generator).to(centres) ** (1.0 / 3.0)
    return centres[:, None, :] + r * d
