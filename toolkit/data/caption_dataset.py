"""Caption records -> a PyTorch dataset / loader of `(image, tokens)` batches, tolerant of a few bad images.

    good, bad = check_images(records)                  # before training: drop unreadable images, report them
    if bad: print(describe_bad_images(bad))
    ds = CaptionDataset(good, tokenizer, image_size=224, train=True, max_tokens=40)
    for batch in make_caption_loader(ds, batch_size=32, train=True, num_workers=4):
        if batch is None: continue                     # every image of the batch failed to load
        model.loss(batch["images"], None, batch["targets"], batch["target_lengths"])

Images are decoded lazily in `__getitem__` (nothing decoded is kept), so the dataset is cheap to build and to copy
into DataLoader worker processes. An image that fails to load at that moment yields `None` (dropped by
`collate_captions`) and is logged once per path and process on the "toolkit.data" logger.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from toolkit.data.captions import CaptionRecord, normalize_caption
from toolkit.data.images import ImageLoadError, load_image, load_image_tensor, verify_image
from toolkit.data.padding import add_targets
from toolkit.errors import ToolkitError
from toolkit.text.tokenizer import Tokenizer

log = logging.getLogger("toolkit.data")


def _check_one(path: str, decode: bool) -> str | None:
    try:
        load_image(path) if decode else verify_image(path)
    except ImageLoadError as e:
        return e.reason
    return None


def check_images(
    records: list[CaptionRecord], max_report: int = 5, decode: bool = False, num_threads: int = 8,
    source: str | os.PathLike[str] | None = None,
) -> tuple[list[CaptionRecord], list[tuple[str, str]]]:
    """Split `records` into those whose image opens and the `(path, reason)` of those whose image does not.

    The quick check reads headers only (`PIL.Image.verify`, `num_threads` at a time); `decode=True` decodes every
    image fully (slow, but also catches JPEGs truncated in their pixel data). When some are bad and some good, a
    one-line summary naming the first `max_report` (after `source`, e.g. the caption file) is logged as a warning;
    when none is good nothing is logged: the caller, left without data, says why in its error.
    """
    paths = [r.image for r in records]
    with ThreadPoolExecutor(max_workers=max(1, min(num_threads, len(paths) or 1))) as pool:
        reasons = list(pool.map(lambda p: _check_one(p, decode), paths))
    good = [r for r, why in zip(records, reasons) if why is None]
    bad = [(p, why) for p, why in zip(paths, reasons) if why is not None]
    if bad and good:
        prefix = f"{source}: " if source is not None else ""
        log.warning("%s%s", prefix, describe_bad_images(bad, max_report, total=len(records)))
    return good, bad


def describe_bad_images(bad: list[tuple[str, str]], max_report: int = 5, total: int | None = None) -> str:
    """One line: how many images are unreadable (of `total`, if given) and the first `max_report` with reasons."""
    if not bad:
        return "all images are readable"
    shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:max_report])
    more = f"; and {len(bad) - max_report} more" if len(bad) > max_report else ""
    of = f" of {total}" if total is not None else ""
    return " ".join(f"{len(bad)}{of} images cannot be read and are skipped: {shown}{more}".split())


class CaptionDataset(Dataset):
    """Images (+ tokenised captions in train mode) from `CaptionRecord`s, loaded lazily.

    train=True: one item per (image, caption) pair. Captions are `normalize_caption`-ed and encoded with
    `tokenizer` (no BOS/EOS; unknown tokens become unk); captions longer than `max_tokens` tokens are dropped
    (`self.skipped_long`), and so are captions empty after normalisation (`self.skipped_empty`).
    train=False: one item per image (captions unused).

    `ds[i]` is `{"image": (3, S, S) float32 in [0, 1], "tokens": (U,) int64 (train only), "index": record index}`,
    or None when the image cannot be loaded; `self.load_errors` maps path -> reason (in this process only).
    """

    def __init__(
        self,
        records: list[CaptionRecord],
        tokenizer: Tokenizer | None = None,
        image_size: int = 128,
        train: bool = False,
        max_tokens: int | None = None,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens!r}")
        self.records = list(records)
        self.paths = [r.image for r in self.records]
        self.image_size = image_size
        self.train = train
        self.max_tokens = max_tokens
        self.skipped_long = 0
        self.skipped_empty = 0
        self.load_errors: dict[str, str] = {}
        # Train pairs as flat arrays (no per-item Python objects: workers do not copy them page by page).
        self._pair_record = np.zeros(0, dtype=np.int64)
        self._offsets = np.zeros(1, dtype=np.int64)
        self._tokens = np.zeros(0, dtype=np.int64)
        if train:
            self._build_pairs(tokenizer)

    def _build_pairs(self, tokenizer: Tokenizer | None) -> None:
        if tokenizer is None:
            raise ValueError("CaptionDataset(train=True) needs a tokenizer")
        owners: list[int] = []
        lengths: list[int] = []
        ids: list[int] = []
        for index, record in enumerate(self.records):
            for caption in record.captions:
                text = normalize_caption(caption)
                if not text:
                    self.skipped_empty += 1
                    continue
                encoded = tokenizer.encode(text)
                if self.max_tokens is not None and len(encoded) > self.max_tokens:
                    self.skipped_long += 1
                    continue
                owners.append(index)
                lengths.append(len(encoded))
                ids.extend(encoded)
        if not owners and self.records:
            raise ToolkitError(
                f"no (image, caption) pair to train on: {len(self.records)} images, {self.skipped_long} captions "
                f"longer than max_tokens={self.max_tokens}, {self.skipped_empty} empty after normalisation"
            )
        self._pair_record = np.asarray(owners, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        self._tokens = np.asarray(ids, dtype=np.int64)

    @property
    def num_pairs(self) -> int:
        """Number of (image, caption) pairs (train mode; 0 in eval mode)."""
        return len(self._pair_record)

    def __len__(self) -> int:
        return self.num_pairs if self.train else len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} items")
        i = i % len(self)
        index = int(self._pair_record[i]) if self.train else i
        path = self.paths[index]
        try:
            image = load_image_tensor(path, self.image_size)
        except ImageLoadError as e:
            if path not in self.load_errors:
                self.load_errors[path] = e.reason
                log.warning("%s (pid %d; item skipped)", e, os.getpid())
            return None
        item: dict[str, Any] = {"image": image, "index": index}
        if self.train:
            start, end = int(self._offsets[i]), int(self._offsets[i + 1])
            item["tokens"] = torch.from_numpy(self._tokens[start:end].copy())
        return item


def collate_captions(items: list[dict[str, Any] | None]) -> dict[str, torch.Tensor] | None:
    """Batch dataset items, dropping None ones; None when all are None.

    Returns {"images": (B, 3, S, S), "indices": (B,) int64} and, when the items carry tokens,
    "targets": (B, U) int64 padded with 0 (pad id) and "target_lengths": (B,) int64.
    """
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    batch = {
        "images": torch.stack([item["image"] for item in kept]),
        "indices": torch.tensor([item["index"] for item in kept], dtype=torch.long),
    }
    return add_targets(batch, kept, "collate_captions")


def make_caption_loader(
    dataset: CaptionDataset,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """A DataLoader over `dataset` with `collate_captions`, persistent workers when `num_workers > 0`, and the last
    partial batch kept.

    train: a `DistributedSampler` deals out a permutation drawn from `seed + epoch` (call
    `loader.sampler.set_epoch(epoch)` each epoch; same seed and epoch, same order) to `num_replicas` ranks, this one
    being `rank`: rank r takes items r, r + R, ... of it, every rank gets the same number (the permutation is padded
    with its first items up to a multiple of R), and one rank with batch B sees, batch for batch, what R ranks with
    batch B / R see together (up to that padding). Not train: every item in order (one rank)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = None
    if train:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_captions,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )
