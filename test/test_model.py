"""SceneDINO on a tiny configuration: shapes, statelessness, chunking, determinism, input validation."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_model

K = torch.tensor([[40.0, 0.0, 32.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def volume(model):
    with torch.no_grad():
        return model.encode(torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(1)), K)


def points(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, n, 3, generator=g) * torch.tensor([5.0, 2.0, 10.0]) + torch.tensor([0.0, 0.0, 15.0])


def test_encode_returns_values_and_sets_no_state(model, volume):
    before = dict(vars(model))
    assert volume.features.shape[:2] == (2, 16) and volume.intrinsics.shape == (2, 3, 3)
    assert dict(vars(model)).keys() == before.keys()


def test_query_shapes_and_chunking(model, volume):
    with torch.no_grad():
        full = model.query(volume, points(), expand=True, mode="stego_kmeans")
        chunked = model.query(volume, points(), expand=True, mode="stego_kmeans", chunk_size=7)
    assert full.sigma.shape == (2, 50) and full.features.shape == (2, 50, 8) and full.expanded.shape == (2, 50, 48)
    assert full.classes.shape == (2, 50) and full.outside.dtype == torch.bool and full.rgb.shape == (2, 50, 3)
    for name in ("sigma", "features", "expanded", "rgb"):
        torch.testing.assert_close(getattr(full, name), getattr(chunked, name))
    assert torch.equal(full.classes, chunked.classes)
    plain = model.query(volume, points())
    assert plain.expanded is None and plain.classes is None


def test_render_image_is_deterministic(model, volume):
    o, d, (h, w) = model.image_rays(volume, stride=4)
    assert (h, w) == (8, 16) and o.shape == d.shape == (2, 128, 3)
    with torch.no_grad():
        a = model.render(volume, o, d, mode="direct_kmeans", expand=True)
        b = model.render(volume, o, d, mode="direct_kmeans", expand=True, chunk_size=100)
    torch.testing.assert_close(a.depth, b.depth)
    assert a.depth.shape == (2, 128) and a.classes.shape == (2, 128) and a.weights.shape == (2, 128, 32)
    assert ((a.depth >= 3.0 - 1e-4) & (a.depth <= 80.0)).all()


def test_batch_items_are_independent(model, volume):
    with torch.no_grad():
        single = model.encode(volume.images[1:], K)
        a = model.query(volume, points()).sigma[1]
        b = model.query(single, points()[1:]).sigma[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("images, intrinsics, match", [
    (torch.rand(1, 3, 32, 60), K, r"images must have shape \(B, 3, 32, 64\)"),
    (torch.rand(1, 32, 64, 3), K, "images must have shape"),
    (torch.rand(1, 3, 32, 64) * 255, K, r"RGB in \[0, 1\]"),
    (torch.full((1, 3, 32, 64), float("nan")), K, "NaN"),
    (torch.rand(2, 3, 32, 64), torch.stack([K, K, K]), "intrinsics must have shape"),
    (torch.rand(1, 3, 32, 64), torch.eye(4), "intrinsics must have shape"),
    (torch.rand(1, 3, 32, 64), torch.zeros(3, 3), "fx, fy > 0"),
])
def test_bad_inputs(model, images, intrinsics, match):
    with pytest.raises(ValueError, match=match):
        model.encode(images, intrinsics)


def test_bad_points(model, volume):
    with pytest.raises(ValueError, match=r"points must have shape \(2, N, 3\)"):
        model.query(volume, torch.zeros(1, 5, 3))


def test_core_import_has_no_ros_and_no_side_effects():
    """Every module of scenedino_core imports without ROS (nothing from rclpy, *_msgs or scenedino_ros)."""
    import subprocess
    import sys

    code = ("import pkgutil, sys, scenedino_core\n"
            "names = [m.name for m in pkgutil.walk_packages(scenedino_core.__path__, 'scenedino_core.')]\n"
            "assert len(names) > 40 and 'scenedino_core.sscbench.metrics' in names, names\n"
            "for name in names:\n"
            "    __import__(name)\n"
            "ros = sorted(m for m in sys.modules\n"
            "             if m.startswith(('rclpy', 'sensor_msgs', 'std_msgs', 'scenedino_ros')))\n"
            "assert not ros, ros\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_surface_is_lazy():
    """``import scenedino_core`` loads no torch; its public names load on first use."""
    import subprocess
    import sys

    code = ("import sys, scenedino_core as sd\n"
            "assert 'torch' not in sys.modules\n"
            "assert sd.SceneDINO.__module__ == 'scenedino_core.model' and 'torch' in sys.modules\n"
            "from scenedino_core import FeatureVolume, SceneDINOConfig, VoxelPrediction, load_model, predict_voxels\n"
            "assert set(sd.__all__) <= set(dir(sd))\n"
            "try:\n"
            "    sd.no_such_name\n"
            "except AttributeError as e:\n"
            "    assert 'no_such_name' in str(e)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dense_query_path_equals_plain_query(model, volume):
    dense = model.for_dense_queries(volume)
    assert dense.projected.shape == (2, 16, *volume.features.shape[-2:])
    with torch.no_grad():
        a = model.query(volume, points(200), mode="stego_kmeans")
        b = model.query(dense, points(200), mode="stego_kmeans")
    torch.testing.assert_close(a.sigma, b.sigma, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.outside, b.outside) and (a.classes == b.classes).float().mean() > 0.99
    single = volume.item(1)
    assert single.batch_size == 1 and torch.equal(single.features[0], volume.features[1])
