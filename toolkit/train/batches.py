"""Batches as the trainer sees them (any nesting of tensors in dicts, lists, tuples, named tuples and dataclasses),
and the loaders that yield them."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import torch
from torch import Tensor

from toolkit.errors import ToolkitError


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, dict):
        values: Iterable = x.values()
    elif isinstance(x, (list, tuple)):
        values = x
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        values = (getattr(x, f.name) for f in dataclasses.fields(x))
    else:
        return None
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def first_tensor_len(batch: Any) -> int:
    """The default batch size: the length of the first tensor in the batch (depth-first); 1 for a scalar."""
    t = _first_tensor(batch)
    if t is None:
        raise ToolkitError("cannot tell the batch size: the batch holds no tensor; pass batch_size_fn to the Trainer")
    return int(t.shape[0]) if t.dim() else 1


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors in (nested) dicts, lists, tuples, named tuples and dataclasses moved to `device`; the rest as is."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        fields = {f.name: move_to(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **fields)
    return batch


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Tell the loader, its sampler and its batch sampler (those with a `set_epoch`, each once) the pass number,
    which seeds their order (e.g. `DistributedSampler`)."""
    seen: set[int] = set()
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if obj is not None and id(obj) not in seen and callable(getattr(obj, "set_epoch", None)):
            seen.add(id(obj))
            obj.set_epoch(epoch)
