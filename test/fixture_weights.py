"""The deterministic synthetic weights of the upstream reference fixtures (shared/reference/upstream_v1/README.md §1).

The formula is re-implemented here and checked key by key against the manifest's SHA-256 digests.
"""
from __future__ import annotations

import hashlib
import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PRIME = 10007
FREQS = [1.5, 1.5, 3, 3, 6, 6, 12, 12, 24, 24, 48, 48]


@dataclass(frozen=True)
class ManifestRow:
    key: str
    shape: tuple[int, ...]
    dtype: str
    rule: str
    used_in_inference: bool
    sum_float64: float
    sha256_16: str


def read_manifest(path: Path) -> list[ManifestRow]:
    rows = []
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        rec = dict(zip(header, line.split("\t")))
        shape = () if rec["shape"] == "scalar" else tuple(int(s) for s in rec["shape"].split("x"))
        rows.append(ManifestRow(rec["key"], shape, rec["dtype"], rec["synthetic_rule"],
                                rec["used_in_inference"] == "yes", float(rec["sum_float64"]), rec["sha256_16"]))
    return rows


def _base(key: str, shape: tuple[int, ...]) -> np.ndarray:
    m = int(np.prod(shape)) if shape else 1
    phase = (zlib.crc32(key.encode("utf-8")) % PRIME) * 0.001
    table = np.sin(0.7311 * np.arange(PRIME, dtype=np.float64) + phase)
    i = np.arange(m, dtype=np.int64) % PRIME
    return table[(i * i) % PRIME].reshape(shape)


def synthetic_tensor(row: ManifestRow, rows_by_key: dict[str, ManifestRow]) -> torch.Tensor:
    rule, shape = row.rule, row.shape
    if rule == "keep":
        if row.key.endswith("_freqs"):
            return torch.tensor(FREQS, dtype=torch.float32).view(shape)
        if row.key.endswith("_phases"):
            return torch.tensor([0.0, math.pi / 2] * 6, dtype=torch.float32).view(shape)
        if row.key.endswith(("iter_idx", "last_sched")):
            return torch.zeros(shape, dtype=torch.int64)
        if row.key == "lpips.scaling_layer.shift":
            return torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float32).view(shape)
        if row.key == "lpips.scaling_layer.scale":
            return torch.tensor([0.458, 0.448, 0.450], dtype=torch.float32).view(shape)
        raise KeyError(row.key)
    if rule == "permutation":
        return torch.tensor([(7 * k) % 19 for k in range(19)], dtype=torch.int64)
    if rule.startswith("alias:"):
        return synthetic_tensor(rows_by_key[rule.split(":", 1)[1]], rows_by_key)
    base = _base(row.key, shape)
    m = base.size
    if rule == "weight_nd":
        value = base * 1.5 / math.sqrt(m / shape[0])
    elif rule == "weight_1d":
        value = 1 + 0.1 * base
    elif rule in ("bias", "bias+sigma_offset"):
        value = 0.01 * base
    elif rule == "other":
        value = 0.02 * base
    else:
        raise ValueError(f"unknown rule {rule} for {row.key}")
    value = value.astype(np.float32)
    if rule == "bias+sigma_offset":
        value[0] = np.float32(np.float64(value[0]) - 4.0)
    return torch.from_numpy(np.ascontiguousarray(value))


def sha256_16(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def synthetic_state_dict(manifest: Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """All tensors of the manifest; with ``verify``, each one's SHA-256 prefix must match (AssertionError if not)."""
    rows = read_manifest(manifest)
    by_key = {r.key: r for r in rows}
    state = {}
    for row in rows:
        t = synthetic_tensor(row, by_key)
        if verify:
            assert tuple(t.shape) == row.shape, f"{row.key}: shape {tuple(t.shape)} != {row.shape}"
            assert sha256_16(t) == row.sha256_16, f"{row.key}: synthetic tensor does not match the manifest digest"
        state[row.key] = t
    return state


def write_official_checkpoint(reference: Path, folder: Path, verify: bool = True) -> Path:
    """The upstream fixture's weights (``reference``/manifest_v1.tsv) as an official-layout checkpoint in ``folder``,
    with the fixture's training_config.yaml beside it (what ``load_model`` reads for official checkpoints)."""
    checkpoint = folder / "checkpoint.pt"
    torch.save(synthetic_state_dict(reference / "manifest_v1.tsv", verify=verify), checkpoint)
    shutil.copy(reference / "training_config.yaml", folder / "training_config.yaml")
    return checkpoint
