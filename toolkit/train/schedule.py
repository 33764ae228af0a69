"""Learning-rate schedules: linear warmup, then cosine decay, Noam (inverse square root) or constant.

Each is a multiplier of the peak `lr` as a function of the update index `s` (0-based: `s` is the number of
updates already taken, as `LambdaLR` counts), wrapped in a `torch.optim.lr_scheduler.LambdaLR` that the trainer
steps once per optimizer update.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from toolkit.errors import ToolkitError
from toolkit.train.config import TrainConfig


def warmup_cosine(warmup_steps: int, total_steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """Linear warmup to 1 over `warmup_steps` updates, cosine decay to `min_lr_ratio` at `total_steps`, then flat."""

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def noam(warmup_steps: int) -> Callable[[int], float]:
    """`min(n / warmup, sqrt(warmup / n))` with n = s + 1: the Transformer schedule scaled to peak at 1."""

    def factor(s: int) -> float:
        n = s + 1
        return min(n / warmup_steps, math.sqrt(warmup_steps / n))

    return factor


def warmup_constant(warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup to 1 over `warmup_steps` updates, then 1."""

    def factor(s: int) -> float:
        return min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


def lr_factor(config: TrainConfig, total_steps: int | None) -> Callable[[int], float]:
    """The multiplier of `config.lr` at each update; `total_steps` is the cosine horizon (unused otherwise)."""
    if config.schedule == "cosine":
        if total_steps is None:
            raise ValueError("the cosine schedule needs a horizon (schedule_steps or max_steps)")
        return warmup_cosine(config.warmup_steps, total_steps, config.min_lr_ratio)
    if config.schedule == "noam":
        return noam(config.warmup_steps)
    return warmup_constant(config.warmup_steps)


def horizon(config: TrainConfig, batches_per_epoch: int | None) -> int | None:
    """The cosine schedule's length in updates: `schedule_steps`, else `max_steps`, else `max_epochs` passes over a
    loader of `batches_per_epoch` batches (None: no length); None for the other schedules."""
    if config.schedule != "cosine":
        return None
    if config.schedule_steps is not None:
        return config.schedule_steps
    if config.max_steps is not None:
        return config.max_steps
    length = batches_per_epoch or 0
    if config.max_epochs is not None and length > 0:
        return max(1, config.max_epochs * length // config.accum_steps)
    raise ToolkitError(
        "the cosine schedule needs a horizon: set max_steps or schedule_steps "
        "(max_epochs alone works only with a loader that has a length)"
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` over every parameter group of `optimizer` (whose `lr` must be the peak, `config.lr`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total_steps))
