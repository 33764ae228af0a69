"""How far a training run got: `TrainState`, saved whole in each checkpoint's `trainer_state.pt` next to the
optimizer and schedule state dicts, and restored whole by a resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.train.rng import RngState

STATE_VERSION = 2  # 1: rank 0's RNG states under "rng" / "epoch_rng", "rank_rng" only with several ranks


@dataclass
class TrainState:
    """The trainer's progress (counters over resumed runs) and, in a checkpoint, every rank's RNG states.

    `batches_in_epoch` counts the batches drawn by each of `world_size` ranks in the current pass (None and
    skipped ones included); `rank_rng[r]` is rank r's {"rng": its RNG states at the checkpoint, "epoch_rng": its
    RNG states when the pass's loader iterator was created (None before the first pass)}.
    """

    step: int = 0  # optimizer updates taken
    epoch: int = 0  # completed passes over the loader
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # of the last validation
    bad_batches: int = 0  # skipped: a non-finite loss or gradient norm
    empty_batches: int = 0  # skipped: None (the loader dropped every item)
    elapsed_s: float = 0.0  # training seconds up to the checkpoint (0 in a fresh run)
    world_size: int = 1
    batches_per_epoch: int | None = None  # of one rank's loader; None when it has no length
    rank_rng: list[dict[str, RngState | None]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what `torch.save` writes and `torch.load(weights_only=True)` reads)."""
        return {"version": STATE_VERSION, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def for_world(self, size: int, batches_per_epoch: int | None) -> TrainState:
        """This state continued by `size` ranks of `batches_per_epoch` batches each: on another number of ranks the
        position in the epoch is carried over as the same fraction of it."""
        position = self.batches_in_epoch
        if size != self.world_size:
            if self.batches_per_epoch and batches_per_epoch:
                position = round(position * batches_per_epoch / self.batches_per_epoch)
            else:
                position = position * self.world_size // size
        return dataclasses.replace(self, batches_in_epoch=position, world_size=size,
                                   batches_per_epoch=batches_per_epoch)

    @classmethod
    def from_state_dict(cls, saved: dict[str, Any], source: Path) -> TrainState:
        """The state `state_dict` returned (format version 2), or a version 1 one upgraded; other keys (the
        optimizer's, say) are ignored. A missing field or another version is a one-line error naming `source`."""
        version = saved.get("version")
        if version == 1:
            saved = {"world_size": 1, "batches_per_epoch": None, **saved}
            if "rank_rng" not in saved:
                saved["rank_rng"] = [{"rng": saved.get("rng"), "epoch_rng": saved.get("epoch_rng")}]
        elif version != STATE_VERSION:
            raise ToolkitError(f"{source}: trainer state format version {version!r}, this toolkit reads versions "
                               f"1 to {STATE_VERSION}: resume it with the toolkit that wrote it")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in saved]
        if missing:
            raise ToolkitError(f"{source}: not a complete trainer state (no {', '.join(missing)})")
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls)})
