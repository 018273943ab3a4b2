"""Training datasets behind ``DataConfig.kind``: the procedural street world and KITTI-360.

Every item has ``images`` (V, 3, H, W) in [0, 1], normalised ``intrinsics`` (V, 3, 3), camera-to-world ``poses``
(V, 4, 4) relative to view 0, ``labels`` (H, W) int64 trainIds of view 0 (-1 = unknown) or None, and ``depth``
(H, W) ground-truth distance of view 0 (0 = unknown) or None. View order (KITTI-360 recipe): cam 00 at t, t+1,
cam 01 at t, t+1, cam 02 at t+o, t+o+1, cam 03 at t+o, t+o+1.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data import kitti360, synthetic
from .config import TrainConfig

STEREO_CAMERAS = ("image_00", "image_00", "image_01", "image_01")
SIDE_CAMERAS = ("image_02", "image_02", "image_03", "image_03")


@dataclass(frozen=True)
class TrainItem:
    images: Tensor
    intrinsics: Tensor
    poses: Tensor
    labels: Tensor | None = None
    depth: Tensor | None = None


class SyntheticViews(Dataset):
    """Multi-view items rendered from a ``StreetWorld`` (renders cached in memory)."""

    def __init__(self, world: synthetic.StreetWorld, num_items: int, image_size: tuple[int, int],
                 side_offsets: tuple[int, ...], side_views: bool, seed: int):
        max_offset = max(side_offsets) + 1 if side_views else 1
        if num_items + max_offset > world.config.num_frames:
            raise ValueError(f"a world of {world.config.num_frames} frames holds at most "
                             f"{world.config.num_frames - max_offset} items, {num_items} requested")
        self.world, self.num_items, self.image_size = world, num_items, image_size
        self.side_offsets, self.side_views, self.seed = side_offsets, side_views, seed
        self.K = torch.tensor(np.array(synthetic.K_NORM), dtype=torch.float32)

    def __len__(self) -> int:
        return self.num_items

    @functools.lru_cache(maxsize=4096)  # noqa: B019 -- datasets live for the whole run; a per-instance cache would not pickle
    def _view(self, frame: int, camera: str) -> synthetic.RenderedView:
        return self.world.render_camera(frame, camera, self.image_size)

    def __getitem__(self, index: int) -> TrainItem:
        if not 0 <= index < self.num_items:
            raise IndexError(f"item {index} out of range [0, {self.num_items})")
        t = int(index)
        frames = [t, t + 1, t, t + 1]
        cameras = list(STEREO_CAMERAS)
        if self.side_views:
            rng = np.random.default_rng((self.seed, t))
            o = int(rng.choice(self.side_offsets))
            frames += [t + o, t + o + 1, t + o, t + o + 1]
            cameras += list(SIDE_CAMERAS)
        views = [self._view(f, c) for f, c in zip(frames, cameras)]
        c2w = [self.world.camera_to_world(f, c) for f, c in zip(frames, cameras)]
        rel = np.linalg.inv(c2w[0]) @ np.stack(c2w)
        images = torch.from_numpy(np.stack([v.rgb for v in views])).permute(0, 3, 1, 2).float() / 255.0
        first = views[0]
        labels = torch.from_numpy(first.labels.astype(np.int64))
        labels[labels == 255] = -1
        depth = torch.from_numpy(np.where(np.isfinite(first.distance), first.distance, 0.0).astype(np.float32))
        return TrainItem(images, self.K.expand(len(views), 3, 3).clone(), torch.from_numpy(rel).float(), labels, depth)


class Kitti360Views(Dataset):
    """``Kitti360MultiView`` items in the training layout (labels of view 0 only; no depth ground truth)."""

    def __init__(self, dataset: kitti360.Kitti360MultiView):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> TrainItem:
        s = self.dataset[index]
        labels = None
        if s.labels is not None:
            labels = s.labels[0].long()
            labels[labels == 255] = -1
        return TrainItem(s.images, s.K, s.poses, labels)


def make_datasets(cfg: TrainConfig, split: str) -> Dataset:
    """The ``split`` ("train" or "val") dataset of a training run."""
    d = cfg.data
    if d.kind == "synthetic":
        n = d.num_items if split == "train" else d.num_val_items
        max_offset = max(d.side_offsets) + 2 if d.side_views else 2
        world = synthetic.StreetWorld.generate(d.seed if split == "train" else d.seed + 1000,
                                               synthetic.StreetConfig(num_frames=n + max_offset))
        return SyntheticViews(world, n, cfg.model.image_size, d.side_offsets, d.side_views, d.seed)
    if d.kind == "kitti360":
        if d.root is None:
            raise ValueError("data.root must name the KITTI-360 folder for data.kind kitti360")
        split_file = d.split_file if split == "train" else (d.split_file or "").replace("train_files", "test_files")
        config = kitti360.Kitti360Config(image_size=cfg.model.image_size, fisheye=d.side_views,
                                         semantics=cfg.stage == 2, poses_root=d.pose_file, seed=d.seed,
                                         fisheye_offsets=d.side_offsets if split == "train" else (10,))
        return Kitti360Views(kitti360.Kitti360MultiView(Path(d.root), split_file or None, config=config))
    raise ValueError(f"unknown data.kind {d.kind!r}; choose synthetic or kitti360")
