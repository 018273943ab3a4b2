"""Pure geometry functions: shapes, round trips, flags and input validation."""
from __future__ import annotations

import math

import pytest
import torch

from scenedino_core import geometry

K = torch.tensor([[250.0, 0.0, 320.0], [0.0, 250.0, 96.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_normalize_round_trip_and_values():
    Kn = geometry.normalize_intrinsics(K, (192, 640))
    assert Kn[0, 0] == pytest.approx(2 * 250 / 640) and Kn[0, 2] == pytest.approx(0.0)
    assert Kn[1, 1] == pytest.approx(2 * 250 / 192) and Kn[1, 2] == pytest.approx(0.0)
    torch.testing.assert_close(geometry.denormalize_intrinsics(Kn, (192, 640)), K)
    k32 = torch.tensor([[0.78488, 0, -0.03118], [0, 2.93912, 0.27005], [0, 0, 1]])
    back = geometry.normalize_intrinsics(geometry.denormalize_intrinsics(k32.double(), (192, 640)), (192, 640))
    assert torch.equal(back.float(), k32)


def test_project_flags_and_coordinates():
    Kn = geometry.normalize_intrinsics(K, (192, 640))[None].float()
    pts = torch.tensor([[[0.0, 0.0, 10.0], [100.0, 0.0, 10.0], [0.0, 0.0, -5.0], [0.0, 0.0, 0.0005]]])
    uv, z, outside = geometry.project(pts, Kn)
    assert uv.shape == (1, 4, 2) and z.shape == (1, 4) and outside.dtype == torch.bool
    assert outside.tolist() == [[False, True, True, True]]
    torch.testing.assert_close(uv[0, 0], torch.zeros(2))


def test_rays_point_back_at_their_pixels():
    Kn = geometry.normalize_intrinsics(K, (192, 640))[None].float()
    xy = geometry.pixel_centers(4, 6).reshape(1, -1, 2)
    d = geometry.ray_directions(xy, Kn)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(1, 24))
    uv, _, outside = geometry.project(d * 7.0, Kn)
    torch.testing.assert_close(uv, xy, atol=1e-6, rtol=0)
    assert not outside.any()


def test_pixel_centers_follow_grid_sample_convention():
    c = geometry.pixel_centers(2, 4)
    assert c.shape == (2, 4, 2)
    assert c[0, 0].tolist() == pytest.approx([-0.75, -0.5])
    assert c[-1, -1].tolist() == pytest.approx([0.75, 0.5])


def test_normalized_inverse_depth_range():
    z = torch.tensor([3.0, 80.0, 1e-6])
    zn = geometry.normalized_inverse_depth(z, 3.0, 80.0)
    assert zn[0].item() == pytest.approx(1.0) and zn[1].item() == pytest.approx(-1.0, abs=1e-6)
    assert zn[2].item() > 6000  # clamped at 1 mm, as in the original


def test_resize_keeps_normalized_intrinsics():
    K2 = geometry.resize_intrinsics(K, (0.5, 0.5))
    torch.testing.assert_close(geometry.normalize_intrinsics(K2, (96, 320)),
                               geometry.normalize_intrinsics(K, (192, 640)))


def test_transform_points():
    T = torch.eye(4)[None].clone()
    T[0, :3, :3] = torch.tensor([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0], [0, 0, 1]])
    T[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    p = torch.randn(1, 5, 3)
    q = geometry.transform_points(T, p)
    torch.testing.assert_close(q.norm(dim=-1), (p @ T[0, :3, :3].T + T[0, :3, 3]).norm(dim=-1))


@pytest.mark.parametrize("bad", [torch.eye(4), torch.zeros(3, 2)])
def test_bad_intrinsics_shape(bad):
    with pytest.raises(ValueError, match="intrinsics must have shape"):
        geometry.normalize_intrinsics(bad, (10, 10))


def test_bad_points_shape():
    with pytest.raises(ValueError, match=r"points must have shape \(B, N, 3\)"):
        geometry.project(torch.zeros(5, 3), torch.eye(3)[None])
