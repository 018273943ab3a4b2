"""The training loop: parameters change and checkpoints load, exact resume, torchrun (gloo), kill-safety."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from scenedino_core.checkpoint import load_model, read_checkpoint_file
from scenedino_core.train.runner import train
from train_helpers import random_views, tiny_train_config

HERE = Path(__file__).resolve().parent


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/total"] for r in rows if "train/total" in r}


def test_two_steps_change_parameters_and_checkpoint_loads(tmp_path):
    cfg = tiny_train_config()
    final = train(cfg, tmp_path / "run", random_views, progress=False)
    model = load_model(final)
    from scenedino_core.model import SceneDINO

    torch.manual_seed(cfg.seed)
    start = SceneDINO(cfg.model)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert any(k.startswith("mlp.") for k in changed) and any(k.startswith("backbone.") for k in changed)
    assert not any(k.startswith("head.") for k in changed)  # stage 1 does not train the semantic head
    state = read_checkpoint_file(final)
    assert state["train"]["step"] == 2 and state["meta"]["stage"] == 1
    assert (tmp_path / "run" / "config.yaml").is_file() and len(losses(tmp_path / "run")) == 2


def test_resume_continues_exactly(tmp_path):
    full = tmp_path / "full"
    train(tiny_train_config(steps=5), full, random_views, progress=False)
    part = tmp_path / "part"
    train(tiny_train_config(steps=2), part, random_views, progress=False)
    train(tiny_train_config(steps=5), part, random_views, resume=True, progress=False)
    a, b = losses(full), losses(part)
    for step in (3, 4, 5):
        assert a[step] == b[step], (step, a[step], b[step])
    ra, rb = read_checkpoint_file(full / "final.pt"), read_checkpoint_file(part / "final.pt")
    for k in ra["model"]:
        assert torch.equal(ra["model"][k], rb["model"][k]), k


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           "--master_port=29517", str(HERE / "ddp_train_script.py"), str(tmp_path / "ddp")]
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    digests = {(tmp_path / "ddp" / f"rank{r}.sha").read_text() for r in (0, 1)}
    assert len(digests) == 1
    assert load_model(tmp_path / "ddp" / "final.pt") is not None


def test_sigterm_saves_and_kill_never_corrupts_latest(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
              "from train_helpers import random_views, tiny_train_config\n"
              "from scenedino_core.train.runner import train\n"
              f"train(tiny_train_config(steps=10000), {str(tmp_path)!r}, random_views, progress=False)\n")
    latest = tmp_path / "latest.pt"
    for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM):
        before = latest.stat().st_mtime_ns if latest.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", script])
        deadline = time.time() + 120
        while (not latest.exists() or latest.stat().st_mtime_ns == before) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.7)  # checkpoints are written every step: the kill lands during or between writes
        proc.send_signal(sig)
        rc = proc.wait(timeout=120)
        state = read_checkpoint_file(tmp_path / "latest.pt")  # always a complete checkpoint
        assert state["train"]["step"] >= 1
        if sig == signal.SIGTERM:
            assert rc == 0
            assert load_model(tmp_path / "latest.pt") is not None
