"""Positional code layout, field MLP, expansion, compositing and the semantic head on small inputs."""
from __future__ import annotations

import math

import pytest
import torch

from scenedino_core.config import FieldConfig, SemanticConfig
from scenedino_core.field import FeatureExpansion, FieldMLP, PositionalEncoding
from scenedino_core.rendering import composite_weights, sample_distances
from scenedino_core.semantics import PredictionMode, SemanticHead


def test_positional_encoding_layout():
    enc = PositionalEncoding(num_freqs=2, freq_factor=1.5)
    x = torch.tensor([[0.1, -0.2, 0.3]])
    out = enc(x)
    assert out.shape == (1, 3 * (1 + 4)) == (1, enc.d_out)
    expected = [0.1, -0.2, 0.3]
    for f in (1.5, 3.0):
        expected += [math.sin(f * v) for v in (0.1, -0.2, 0.3)] + [math.cos(f * v) for v in (0.1, -0.2, 0.3)]
    torch.testing.assert_close(out[0], torch.tensor(expected), atol=1e-6, rtol=0)


def test_field_mlp_density_is_nonnegative():
    mlp = FieldMLP(7, FieldConfig(hidden_dim=8, feature_dim=5))
    x = torch.randn(100, 7) * 10
    sigma, feat = mlp(x[:, :4], x[:, 4:])
    assert sigma.shape == (100,) and feat.shape == (100, 5) and (sigma >= 0).all()
    out = mlp.lin_out(torch.relu(mlp.lin_in(x)))  # same as the plain MLP on the concatenated input
    torch.testing.assert_close(sigma, torch.nn.functional.softplus(out[:, 0]))
    torch.testing.assert_close(feat, out[:, 1:])


def test_expansion_is_unit_length():
    exp = FeatureExpansion(4, 8, 16)
    assert torch.allclose(exp(torch.randn(10, 4)).norm(dim=-1), torch.ones(10))


def test_samples_are_linear_in_disparity():
    z = sample_distances(torch.full((2, 1), 3.0), torch.full((2, 1), 80.0), 4)
    torch.testing.assert_close(1 / z[0], torch.tensor([1 / 3 * (1 - t) + 1 / 80 * t for t in (0, .25, .5, .75)]))
    jit = sample_distances(torch.full((2, 1), 3.0), torch.full((2, 1), 80.0), 4, jitter=True,
                           generator=torch.Generator().manual_seed(0))
    assert (jit >= z).all() and not torch.equal(jit, z)


def test_compositing_weights():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w, a = composite_weights(torch.zeros(1, 4), z)
    assert torch.all(w == 0) and torch.all(a == 0)
    w, _ = composite_weights(torch.tensor([[0.0, 1e6, 0.0, 0.0]]), z)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)
    w, _ = composite_weights(torch.full((1, 4), 0.3), z, hard_alpha_cap=True)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_semantic_head_modes():
    head = SemanticHead(16, SemanticConfig(n_clusters=5, n_classes=5, code_dim=4)).eval()
    x = torch.randn(20, 16)
    for mode in PredictionMode:
        out = head.classify(x, mode)
        assert out.classes.shape == (20,) and int(out.classes.max()) < 5
        assert (out.clusters is None) == mode.value.endswith("linear")
    # cluster assignment is applied: permuting it permutes the classes
    base = head.classify(x, "direct_kmeans")
    head.direct_clusters.assignment.copy_(torch.tensor([4, 3, 2, 1, 0]))
    assert torch.equal(head.classify(x, "direct_kmeans").classes, 4 - base.clusters)
    with pytest.raises(ValueError, match="unknown prediction mode"):
        head.classify(x, "kmeans")
