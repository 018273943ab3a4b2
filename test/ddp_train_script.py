"""Run by test_train_runner under torchrun: trains the tiny config and records each rank's final weights."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenedino_core.train import runner  # noqa: E402
from train_helpers import random_views, tiny_train_config  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    captured = {}
    real_save = runner._save

    def keep(path, model, *args, **kwargs):
        captured["model"] = model
        return real_save(path, model, *args, **kwargs)

    runner._save = keep
    cfg = tiny_train_config(steps=3, checkpoint_every=10)
    model_holder = {}
    orig_build = runner.build_model

    def build(c):
        model_holder["m"] = orig_build(c)
        return model_holder["m"]

    runner.build_model = build
    runner.train(cfg, out, random_views, progress=False)
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model_holder["m"].parameters()))
    (out / f"rank{dist.get_rank()}.sha").write_text(digest.hexdigest())


if __name__ == "__main__":
    main()
