"""CPU threads for the bookkeeping around the network.

Torch spreads every CPU operation over its intra-op (OpenMP) threads. The network's large operations gain from
that; the many small passes around them (selecting voxels, growing densities, deriving output arrays) gain little,
and when the cores are shared with other processes each parallel region's barrier waits for a thread the scheduler
has parked: measured on the project's 2-core machine under a load of about 4, a voxel query took 22 s on two threads
against 8 s on one. ``one_cpu_thread`` runs such bookkeeping on one thread; ``torch_threads`` gives the network's
calls inside it their threads back.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the enclosed torch CPU operations on ``n`` intra-op threads (restored afterwards)."""
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_cpu_thread(device: torch.device | str):
    """``torch_threads(1)`` on a CPU device; no change on other devices."""
    if torch.device(device).type != "cpu":
        return contextlib.nullcontext()
    return torch_threads(1)
