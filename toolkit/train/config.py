"""The training options of every recipe: one typed dataclass, read from YAML like every other config.

Limits: training stops at whichever of `max_steps` (optimizer updates), `max_epochs` (passes over the loader)
and `max_minutes` (wall-clock training time, summed over resumed runs) comes first; at least one is required.
All three count from the start of training, not from a resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TrainConfig:
    """Options of `toolkit.train.Trainer`.

    Learning rate: `lr` is the peak. The first `warmup_steps` updates ramp it up linearly from `lr / warmup_steps`,
    then `schedule` takes over:
      cosine:   decays to `min_lr_ratio * lr` at the horizon, then stays there. The horizon is
                `schedule_steps` if set, else `max_steps`, else `max_epochs` x updates per epoch (needs a loader
                with a length); with only `max_minutes` set, give `schedule_steps` (an estimate of the updates
                that fit in the time).
      noam:     `lr * min(n / warmup, sqrt(warmup / n))` at update n (1-based): inverse square-root decay after
                the peak (the Transformer schedule, normalised so that its peak is `lr`).
      constant: `lr` after warmup.

    Gradient accumulation: an update sums the gradients of `accum_steps` usable batches, each loss divided by
    `accum_steps`; with a per-item mean loss and equal batches this is the gradient of one batch
    `accum_steps` times larger. Accumulation runs across epoch boundaries.

    Non-finite losses (and non-finite gradient norms) skip the batch (the update) and are counted;
    `max_bad_steps` of them since the last good update stop training with an error.

    Validation (and a checkpoint in `out_dir/checkpoints/`) every `valid_every` updates and at the end; `metric`
    names a key of what the validation function returns, and the best value by `metric_mode` is saved as a
    model bundle in `out_dir/best/`. `keep_last` checkpoints are kept; `average_last` > 1 makes the final model
    the average of the weights of the last `average_last` checkpoints.

    `grad_clip` is the max global gradient norm (<= 0: no clipping; the norm is still checked for inf/NaN).

    Optimizer: `adamw` (weight decay on matrices and kernels only), or `muon`: Muon for the weights of the model's
    hidden linear layers at a peak learning rate of `muon_lr_ratio * lr` (its update RMS-matched to AdamW's), AdamW
    for the rest (`toolkit.train.optim`).

    `amp: bf16` runs forward and loss under bfloat16 autocast (CPU or GPU); weights, optimizer state and
    gradients stay fp32.
    """

    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None
    lr: float = 1e-3
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr_ratio: float = 3.0
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 500
    schedule: Literal["cosine", "noam", "constant"] = "cosine"
    schedule_steps: int | None = None
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0
    accum_steps: int = 1
    amp: Literal["none", "bf16"] = "none"
    valid_every: int = 500
    log_every: int = 10
    keep_last: int = 3
    average_last: int = 0
    max_bad_steps: int = 20
    seed: int = 0
    metric: str = "loss"
    metric_mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of max_steps, max_epochs, max_minutes")
        for name in ("max_steps", "max_epochs", "schedule_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.muon_lr_ratio <= 0:
            raise ValueError(f"muon_lr_ratio must be > 0, got {self.muon_lr_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        self.betas = [float(b) for b in self.betas]
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "noam" and self.warmup_steps < 1:
            raise ValueError("the noam schedule needs warmup_steps >= 1")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("accum_steps", "valid_every", "log_every", "keep_last", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.average_last < 0:
            raise ValueError(f"average_last must be >= 0, got {self.average_last}")
        if self.average_last > self.keep_last:
            raise ValueError(
                f"average_last={self.average_last} needs at least that many checkpoints kept "
                f"(keep_last={self.keep_last})"
            )
