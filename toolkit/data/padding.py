"""Padding of variable-length items into batches, shared by the caption and speech collate functions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from toolkit.text.tokenizer import PAD_ID


def pad_sequences(seqs: list[Tensor], value: float = 0, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """1-D tensors of lengths L_i -> `(B, max L)` padded with `value`, and the lengths `(B,)` int64."""
    lengths = [len(s) for s in seqs]
    out = torch.full((len(seqs), max(lengths)), value, dtype=dtype or seqs[0].dtype)
    for row, s in enumerate(seqs):
        out[row, : lengths[row]] = s
    return out, torch.tensor(lengths, dtype=torch.long)


def add_targets(batch: dict[str, Tensor], items: list[dict[str, Any]], who: str) -> dict[str, Tensor]:
    """Add "targets" `(B, U)` padded with PAD_ID and "target_lengths" `(B,)` when the items carry "tokens"
    (all of them or none: a mix is a bug in the dataset)."""
    with_tokens = sum("tokens" in item for item in items)
    if with_tokens not in (0, len(items)):
        raise ValueError(f"{who}: some items carry tokens and some do not")
    if with_tokens:
        batch["targets"], batch["target_lengths"] = pad_sequences(
            [item["tokens"] for item in items], PAD_ID, torch.long)
    return batch
