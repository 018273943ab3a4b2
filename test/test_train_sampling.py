"""Token-grid patch sampling with shift, and stage-2 surface-ball sampling."""
from __future__ import annotations

import pytest
import torch

from scenedino_core.train.sampling import ball_points, random_shift, sample_patches, shift_images, surface_points


@pytest.mark.parametrize("shift", [(0, 0), (-4, 3), (2, -1), (-1, -4), (3, 3)])
def test_patches_are_covered_by_their_shifted_token(shift):
    p, h, w = 8, 48, 80
    g = torch.Generator().manual_seed(0)
    s = sample_patches(200, 3, (h, w), p, shift, g)
    # the token (ty, tx) of the shifted image covers input pixels [p*ty + s_y, p*ty + s_y + p)
    assert torch.equal(s.y0, p * s.token_y + shift[0]) and torch.equal(s.x0, p * s.token_x + shift[1])
    assert (s.y0 >= 0).all() and (s.y0 + p <= h).all() and (s.x0 >= 0).all() and (s.x0 + p <= w).all()
    assert (s.token_y < h // p).all() and (s.token_x < w // p).all() and (s.frame < 3).all()
    ys, xs = s.pixel_grid()
    assert ys.shape == (200, p, p) and torch.equal(ys[:, :, 0] - s.y0[:, None], torch.arange(p).expand(200, p))


def test_shifted_images_line_up_with_patches():
    img = torch.arange(48 * 80, dtype=torch.float32).reshape(1, 1, 48, 80)
    shift = (-3, 2)
    shifted = shift_images(img, shift, 8)
    s = sample_patches(50, 1, (48, 80), 8, shift, torch.Generator().manual_seed(1))
    for i in range(50):
        ty, tx = int(s.token_y[i]), int(s.token_x[i])
        token_pixels = shifted[0, 0, 8 * ty:8 * ty + 8, 8 * tx:8 * tx + 8]
        patch_pixels = img[0, 0, s.y0[i]:s.y0[i] + 8, s.x0[i]:s.x0[i] + 8]
        assert torch.equal(token_pixels, patch_pixels)


def test_random_shift_range():
    g = torch.Generator().manual_seed(0)
    shifts = {random_shift(8, g) for _ in range(500)}
    assert {s[0] for s in shifts} == set(range(-4, 4))


def test_surface_and_ball_points():
    g = torch.Generator().manual_seed(0)
    depth = torch.linspace(4, 60, 100)
    dirs = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    centres = surface_points(depth, torch.zeros(100, 3), dirs, generator=g)
    assert centres.shape == (5, 3)
    d = centres.norm(dim=-1)
    assert (d[1:] >= d[:-1] - 1e-4).all()  # one per ascending quantile bin
    balls = ball_points(centres, 576, 0.5, g)
    assert balls.shape == (5, 576, 3)
    assert ((balls - centres[:, None]).norm(dim=-1) <= 0.5 + 1e-6).all()
    assert surface_points(torch.full((10,), 500.0), torch.zeros(10, 3), dirs[:10]).shape == (0, 3)
