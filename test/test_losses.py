"""Each loss is zero/minimal on identical inputs, positive otherwise, and has finite gradients."""
from __future__ import annotations

import pytest
import torch

from scenedino_core import losses


def _img(seed=0, n=4, p=8):
    return torch.rand(n, 3, p, p, generator=torch.Generator().manual_seed(seed))


def test_photometric_zero_on_identical_and_min_over_views():
    target = _img()
    assert losses.photometric_error(target, target).abs().max() < 1e-6
    other = _img(1).requires_grad_()
    loss_two_views = losses.photometric_loss(torch.stack([other, target]), target)
    assert loss_two_views.item() == pytest.approx(0.0, abs=1e-6)  # the perfect view wins everywhere
    loss = losses.photometric_loss(other[None], target)
    assert loss.item() > 0.05
    loss.backward()
    assert torch.isfinite(other.grad).all() and other.grad.abs().sum() > 0
    invalid = torch.ones(4, 8, 8, dtype=torch.bool)
    assert losses.photometric_loss(other[None], target, invalid).item() == 0.0


def test_ssim_error_range():
    e = losses.ssim_error(_img(), _img(2))
    assert e.shape == (4, 3, 8, 8) and (e >= 0).all() and (e <= 1).all()


def test_dino_loss():
    t = torch.nn.functional.normalize(torch.randn(10, 16), dim=-1)
    assert losses.dino_loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.dino_loss(-t, t).item() == pytest.approx(2.0, abs=1e-6)
    p = torch.randn(10, 16, requires_grad=True)
    losses.dino_loss(p, t).backward()
    assert torch.isfinite(p.grad).all()


def test_smoothness_terms():
    img = _img()
    flat = torch.ones(4, 1, 8, 8)
    assert losses.edge_aware_smoothness(flat, img).item() == 0.0
    depth = (torch.rand(4, 8, 8) * 20 + 3).requires_grad_()
    loss = losses.depth_smoothness(depth, img)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(depth.grad).all()
    assert losses.depth_smoothness(torch.full((4, 8, 8), 7.0), img).item() == pytest.approx(0.0, abs=1e-7)
    # an edge in the image damps the penalty of an edge in the values at the same place
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1
    assert losses.edge_aware_smoothness(step, step.expand(1, 3, 8, 8)) < losses.edge_aware_smoothness(
        step, torch.zeros(1, 3, 8, 8))


def test_stego_term_rewards_agreeing_correlations():
    f = torch.randn(3, 20, 32)
    g = f[..., :8].clone().requires_grad_()
    w, b = losses.STEGO_TERMS["self"]
    agree = losses.stego_term(f, g, f, g, w, b)
    agree.backward()
    assert torch.isfinite(g.grad).all()
    anti = losses.stego_term(f, torch.randn(3, 20, 8), f, torch.randn(3, 20, 8), w, b)
    assert agree < anti


def test_cluster_loss_minimal_at_centres():
    centres = torch.randn(5, 8)
    assert losses.cluster_loss(centres, centres).item() == pytest.approx(-1.0, abs=1e-6)
    x = torch.randn(40, 8, requires_grad=True)
    loss = losses.cluster_loss(x, centres)
    assert loss.item() > -1.0
    loss.backward()
    assert torch.isfinite(x.grad).all()
