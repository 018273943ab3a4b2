"""Stage-1 multi-view geometry on the synthetic world: ground-truth depth reprojects into the other views with
the colours of the loss view, clearly better than a wrong depth scale (poses, intrinsics and rays agree)."""
from __future__ import annotations

from scenedino_core import geometry
from scenedino_core.train.batch import sample_views, view_rays
from scenedino_core.train.config import load_train_config
from scenedino_core.train.data import make_datasets
from scenedino_core.train.runner import collate


def test_ground_truth_depth_reprojects_best():
    cfg = load_train_config(None, ["model.image_size=[48, 160]", "data.num_items=4", "data.side_offsets=[3]"])
    item = make_datasets(cfg, "train")[2]
    b = collate([item])
    xy = geometry.pixel_centers(48, 160).reshape(1, -1, 2)
    o, d = view_rays(xy, b.intrinsics[:, 0], b.poses[:, 0])
    gt = item.depth.reshape(1, -1, 1)
    ok = ((gt > 3) & (gt < 60)).reshape(-1)
    target = b.images[0, 0].permute(1, 2, 0).reshape(-1, 3)
    errors = {}
    for scale in (0.5, 1.0, 2.0):
        colours, outside = sample_views(o + gt * scale * d, b.images[:, 1:4], b.intrinsics[:, 1:4], b.poses[:, 1:4])
        for v in range(3):
            valid = ok & ~outside[0, v]
            errors[scale, v] = float((colours[0, v][valid] - target[valid]).abs().mean())
    for v in range(3):
        assert errors[1.0, v] < 0.75 * min(errors[0.5, v], errors[2.0, v]), errors
