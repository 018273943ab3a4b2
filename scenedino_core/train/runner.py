"""The training loop for both stages: one device or ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on CUDA).

Exact resume by construction: the items of step k and every random draw of step k (ray sampling, flips, dropout)
are functions of (seed, rank, k) only, so a run resumed from the checkpoint of step k continues with the same
batches and random numbers as an uninterrupted run; optimizer and scheduler states travel in the checkpoint.
Checkpoints are written atomically (temp file + rename) by rank 0: ``latest.pt`` and ``step_<k>.pt`` every
``checkpoint_every`` steps, ``best.pt`` on the best validation metric, ``final.pt`` at the end. SIGTERM/SIGINT finish
the current step, save ``latest.pt`` and exit.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader, Sampler

from ..checkpoint import load_model, read_checkpoint_file, save_checkpoint
from ..config import to_dict
from ..files import atomic_write_text
from ..model import SceneDINO
from .batch import ViewBatch
from .config import TrainConfig
from .stage1 import Teacher, stage1_losses, stage1_param_groups
from .stage2 import CropBuffer, freeze_for_stage2, stage2_losses, stage2_param_groups

_logger = logging.getLogger(__name__)

#: dataset(config, split) -> a sequence of items with ``images``, ``intrinsics``, ``poses`` and ``labels``.
DatasetFactory = Callable[[TrainConfig, str], Any]
#: validate(model, config, val_items) -> {"val/<name>": float}
Validator = Callable[[SceneDINO, TrainConfig, Any], dict[str, float]]


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Distributed:
    """Join the torchrun process group if launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 62)


def batch_indices(step: int, n_items: int, batch_size: int, seed: int, ctx: Distributed) -> list[int]:
    """Items of ``step`` on this rank: epoch-wise seeded permutations, split across ranks (no state to save)."""
    per_epoch = n_items // (batch_size * ctx.world_size)
    if per_epoch == 0:
        raise ValueError(f"{n_items} items are too few for batch size {batch_size} x {ctx.world_size} ranks")
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    start = (k * ctx.world_size + ctx.rank) * batch_size
    return order[start:start + batch_size]


class StepBatches(Sampler):
    """Batch sampler yielding ``batch_indices(step)`` for steps ``start .. stop - 1`` (a DataLoader then prefetches
    them in ``num_workers`` processes without changing which items a step sees)."""

    def __init__(self, n_items: int, batch_size: int, seed: int, ctx: Distributed, start: int, stop: int):
        self.args = (n_items, batch_size, seed, ctx)
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[list[int]]:
        return (batch_indices(step, *self.args) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def collate(items: list[Any]) -> ViewBatch:
    labels = [getattr(it, "labels", None) for it in items]
    return ViewBatch(
        images=torch.stack([torch.as_tensor(it.images) for it in items]).float(),
        intrinsics=torch.stack([torch.as_tensor(it.intrinsics) for it in items]).float(),
        poses=torch.stack([torch.as_tensor(it.poses) for it in items]).float(),
        labels=None if any(lb is None for lb in labels) else torch.stack([torch.as_tensor(lb) for lb in labels]).long(),
    )


def build_model(cfg: TrainConfig) -> SceneDINO:
    if cfg.init_checkpoint:
        return load_model(cfg.init_checkpoint)
    if cfg.stage == 2:
        raise ValueError("stage 2 needs init_checkpoint: the stage-1 checkpoint to start from")
    return SceneDINO(cfg.model)


def _average_gradients(params: list[torch.nn.Parameter], ctx: Distributed) -> None:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:  # noqa: ARG002
        _logger.warning("signal %s: saving a checkpoint after this step", signum)
        self.requested = True


def train(cfg: TrainConfig, out_dir: Path, datasets: DatasetFactory, validate: Validator | None = None,
          resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run into ``out_dir``; returns ``final.pt``, or ``latest.pt`` if stopped early."""
    ctx = init_distributed(cfg.device)
    device = torch.device(cfg.device if not cfg.device.startswith("cuda") or ctx.world_size == 1
                          else f"cuda:{ctx.rank}")
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    cfg = dataclasses.replace(cfg, model=model.config)  # an init_checkpoint brings its own model config
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    teacher = Teacher(copy.deepcopy(model.backbone)).to(device) if cfg.stage == 1 else None
    if cfg.stage == 1:
        model.train()
        model.head.requires_grad_(False)
        groups = stage1_param_groups(model, cfg.optim.lr)
    else:
        freeze_for_stage2(model)
        groups = stage2_param_groups(model, cfg.optim.lr)
    optimizer = torch.optim.Adam(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.optim.step_size, cfg.optim.gamma)
    params = [p for g in groups for p in g["params"]]
    if ctx.world_size > 1:
        for p in params:
            dist.broadcast(p.data, 0)
    step, best = 0, math.inf
    latest = out_dir / "latest.pt"
    if resume and latest.is_file():
        state = read_checkpoint_file(latest)
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["train"]["optimizer"])
        scheduler.load_state_dict(state["train"]["scheduler"])
        step, best = int(state["train"]["step"]), float(state["train"]["best"])
        _logger.info("resumed %s at step %d", latest, step)
    train_items, val_items = datasets(cfg, "train"), datasets(cfg, "val")
    buffer = CropBuffer(cfg.stage2.buffer_size)
    writer = _tensorboard(out_dir) if ctx.is_main else None
    stop = _StopFlag()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    bar = _progress(cfg.steps, step, progress and ctx.is_main)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")
    loader = DataLoader(train_items, batch_sampler=StepBatches(len(train_items), cfg.batch_size, cfg.seed, ctx, step,
                                                               cfg.steps),
                        collate_fn=collate, num_workers=cfg.num_workers)
    try:
        for batch in loader:
            seed = step_seed(cfg.seed, ctx.rank, step)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            batch = batch.to(device)
            with autocast:
                terms = (stage1_losses(model, teacher, batch, cfg.stage1, gen) if cfg.stage == 1
                         else stage2_losses(model, batch, buffer, cfg.stage2, gen))
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if ctx.world_size > 1:
                _average_gradients(params, ctx)
            optimizer.step()
            scheduler.step()
            step += 1
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"step {step}: non-finite loss {values}")
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.4f}")
            if ctx.is_main and (step % cfg.log_every == 0 or step == 1):
                with open(out_dir / "metrics.jsonl", "a") as log:
                    log.write(json.dumps({"step": step, **{f"train/{k}": v for k, v in values.items()}}) + "\n")
                if writer is not None:
                    for k, v in values.items():
                        writer.add_scalar(f"train/{k}", v, step)
            save_now = step % cfg.checkpoint_every == 0 or step == cfg.steps
            if validate is not None and (step % cfg.validate_every == 0 or step == cfg.steps):
                metrics = validate(model, cfg, val_items)
                if ctx.is_main:
                    with open(out_dir / "metrics.jsonl", "a") as log:
                        log.write(json.dumps({"step": step, **metrics}) + "\n")
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(k, v, step)
                score = metrics.get(cfg.best_metric)
                if score is not None:
                    score = -score if cfg.best_metric.endswith("miou") else score
                    if score < best and ctx.is_main:
                        best = score
                        _save(out_dir / "best.pt", model, optimizer, scheduler, step, best, cfg, metrics)
                if cfg.stage == 2:
                    save_now = True  # the assignment written by validation goes into the checkpoints
            stop_all = _all_ranks(stop.requested, ctx)
            if ctx.is_main and (save_now or stop_all):
                _save(latest, model, optimizer, scheduler, step, best, cfg)
                if step % cfg.checkpoint_every == 0:
                    _save(out_dir / f"step_{step:07d}.pt", model, optimizer, scheduler, step, best, cfg)
            if stop_all:
                _logger.warning("stopped at step %d; resume with --resume", step)
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        bar.close()
        if writer is not None:
            writer.close()
    finished = step >= cfg.steps
    final = out_dir / "final.pt" if finished else latest
    if ctx.is_main and finished:
        _save(final, model, optimizer, scheduler, step, best, cfg)
    if ctx.world_size > 1:
        dist.barrier()
    return final


def _all_ranks(flag: bool, ctx: Distributed) -> bool:
    if ctx.world_size == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _save(path: Path, model: SceneDINO, optimizer, scheduler, step: int, best: float, cfg: TrainConfig,
          metrics: dict[str, float] | None = None) -> None:
    train_state = {"step": step, "best": best, "optimizer": optimizer.state_dict(),
                   "scheduler": scheduler.state_dict(), "config": to_dict(cfg)}
    save_checkpoint(path, model, meta={"stage": cfg.stage, "step": step, "metrics": dict(metrics or {})},
                    extra={"train": tree_map(lambda x: x.detach().cpu() if torch.is_tensor(x) else x, train_state)})


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _logger.warning("tensorboard is not installed: no TensorBoard logs")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
