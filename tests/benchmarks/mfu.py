"""Model FLOPs utilisation for the training-speed benchmarks: FLOPs of one step over a measured matmul peak.

    flops = step_flops(step)                  # FLOPs of the matrix products and convolutions `step()` runs
    peak = matmul_peak(torch.bfloat16)        # FLOP/s of 1024 x 1024 matrix products on this device and threads
    mfu = flops / seconds_per_step / peak

`step_flops` counts with `torch.utils.flop_counter.FlopCounterMode` (matrix products, attention and convolutions,
forward and backward, and those the optimizer runs, e.g. Muon's Newton-Schulz iterations; elementwise work counts
zero). The peak is the best of a few rounds, so that a busy machine lowers it as little as possible.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def step_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of `step` (it runs once, counted, on one thread: under the counter some oneDNN
    convolutions fall back to a slow path that several threads make far slower still)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        torch.set_num_threads(threads)
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 1024, reps: int = 10,
                rounds: int = 3) -> float:
    """FLOP/s of `n x n` matrix products in `dtype` on `device` with torch's current threads (best round)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ a
    best = 0.0
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            a @ a
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best
