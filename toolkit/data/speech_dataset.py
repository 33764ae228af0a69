"""Speech records -> a PyTorch dataset / loader of `(waveform, tokens)` batches in length-bucketed dynamic batches.

    good, report = check_speech_records(read_speech("data/train"), max_duration=20.0, charset=chars)
    ds = SpeechDataset(good, tokenizer, transform=speed_perturb)       # audio decoded lazily, per item
    loader = make_speech_loader(ds, ds.durations, max_batch_seconds=200.0, train=True, num_workers=4)
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)                          # a new batch order each epoch
        for batch in loader:
            if batch is None: continue                                 # every file of the batch failed to load
            model.loss(batch["audio"], batch["audio_lengths"], batch["targets"], batch["target_lengths"])

Audio is decoded in `__getitem__` (nothing decoded is kept), so the dataset is cheap to build and to copy into
DataLoader workers. A file that fails to load at that moment yields None (dropped by `collate_speech`), logged once
per path and process on the "toolkit.data" logger. Transcripts are encoded as written (normalise them before).

On-the-fly augmentation (`augment`: a `toolkit.augment.SpeechAugmentConfig`; voices, rooms, noise, channels, with
babble drawn from the dataset's other utterances): item i of epoch e is transformed with the seed
`(augment_seed, e, i)`, so every epoch hears a new variant of every utterance and a re-run (or a resumed run)
hears the same ones. The epoch reaches DataLoader workers with the indices: the loader's `BucketBatchSampler`
(`tag_epoch`) yields `(epoch, i)` keys, set in the main process by `set_epoch`, so persistent workers never hold a
stale epoch. `ds[i]` with a plain index uses `ds.epoch` (`ds.set_epoch`). Augmented audio may be longer or shorter
than the record's duration (speaking rate), which batches are cut by.

`BucketBatchSampler` policy (documented choices):
  * batches: utterances sorted by duration (ties by index) fill a batch while `len(batch) * longest <=
    max_batch_seconds` (the padded cost) and `len(batch) <= max_batch_size`; consecutive sorted utterances make
    each batch a bucket of similar lengths, so padding stays small. The batches are fixed at construction (so
    `len()` is the same every epoch); each epoch only their order is shuffled, with `seed + epoch`.
  * an utterance longer than `max_batch_seconds` is NOT dropped: it forms a batch of its own (over the cap),
    counted in `num_oversized` and logged once (filter such utterances with `check_speech_records(max_duration=)`).
  * `num_replicas` > 1: the largest batches are split in two until the batch count is a multiple of
    `num_replicas`, so every rank gets the same number of disjoint batches and every utterance is seen exactly
    once per epoch across ranks (rank r takes batches r, r + R, ... of the epoch's order). Only with fewer
    utterances than replicas are batches repeated (cyclically) to give every rank one.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from toolkit.data.audio import SAMPLE_RATE, AudioLoadError, load_audio
from toolkit.data.padding import add_targets, pad_sequences
from toolkit.data.speech import SpeechRecord
from toolkit.errors import ToolkitError
from toolkit.text.tokenizer import Tokenizer

if TYPE_CHECKING:
    from toolkit.augment import SpeechAugmentConfig

log = logging.getLogger("toolkit.data")


class SpeechDataset(Dataset):
    """Waveforms (+ token ids when a tokenizer is given) of `SpeechRecord`s, loaded lazily.

    `ds[i]` is `{"audio": (N,) float32 at `sample_rate`, "tokens": (U,) int64 (with a tokenizer), "index": i}`, or
    None when the audio cannot be loaded; `self.load_errors` maps path -> reason (in this process only).
    `transform` (training-time augmentation) maps the `(N,)` float tensor to a `(N',)` float tensor; it runs after
    `augment` (module docstring), whose variant of item i in epoch e is drawn from `(augment_seed, e, i)`; `ds[(e,
    i)]` asks for epoch e explicitly.
    """

    def __init__(
        self,
        records: Sequence[SpeechRecord],
        tokenizer: Tokenizer | None = None,
        sample_rate: int = SAMPLE_RATE,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment: SpeechAugmentConfig | None = None,
        augment_seed: int = 0,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.records = list(records)
        self.sample_rate = sample_rate
        self.transform = transform
        self.epoch, self.augment_seed = 0, int(augment_seed)
        self.augmenter = None
        if augment is not None:
            from toolkit.augment import FileBabble, SpeechAugmenter

            babble = FileBabble([(r.audio, r.offset, r.end) for r in self.records], sample_rate)
            self.augmenter = SpeechAugmenter(augment, sample_rate, babble)
        self.load_errors: dict[str, str] = {}
        self.has_tokens = tokenizer is not None
        # Token ids as flat arrays (no per-item Python lists for workers to copy page by page).
        encoded = [tokenizer.encode(r.text) for r in self.records] if tokenizer is not None else []
        self._offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded], dtype=np.int64)]).astype(np.int64)
        self._tokens = np.asarray([t for e in encoded for t in e], dtype=np.int64)

    @property
    def durations(self) -> list[float]:
        """Every record's duration in seconds (for `BucketBatchSampler`); an unknown one is an error."""
        missing = [r.id for r in self.records if r.duration is None]
        if missing:
            raise ToolkitError(f"{len(missing)} utterances have no duration (first: {', '.join(missing[:3])}): run "
                               "check_speech_records, which reads them from the audio headers")
        return [float(r.duration) for r in self.records]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation `ds[i]` (a plain index) gives."""
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        epoch, i = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, key)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} items")
        i = i % len(self)
        record = self.records[i]
        try:
            wave = load_audio(record.audio, self.sample_rate, record.offset, record.end)
        except AudioLoadError as e:
            if record.audio not in self.load_errors:
                self.load_errors[record.audio] = e.reason
                log.warning("%s (pid %d; item skipped)", e, os.getpid())
            return None
        if self.augmenter is not None:
            wave, _ = self.augmenter(wave, seed=(self.augment_seed, epoch, i), index=i)
        audio = torch.from_numpy(wave)
        if self.transform is not None:
            audio = self.transform(audio)
            if not isinstance(audio, torch.Tensor) or audio.dim() != 1 or not audio.is_floating_point():
                raise ValueError(f"transform must return a 1-D float tensor, got {type(audio).__name__} "
                                 f"{tuple(getattr(audio, 'shape', ()))}")
        item: dict[str, Any] = {"audio": audio, "index": i}
        if self.has_tokens:
            item["tokens"] = torch.from_numpy(self._tokens[self._offsets[i]: self._offsets[i + 1]].copy())
        return item


def collate_speech(items: list[dict[str, Any] | None]) -> dict[str, torch.Tensor] | None:
    """Batch dataset items, dropping None ones; None when all are None.

    Returns {"audio": (B, N) float32 zero-padded, "audio_lengths": (B,) int64 samples, "indices": (B,) int64} and,
    when the items carry tokens, "targets": (B, U) int64 padded with 0 (pad id) and "target_lengths": (B,) int64.
    """
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    audio, audio_lengths = pad_sequences([item["audio"] for item in kept], 0.0, torch.float32)
    batch = {
        "audio": audio,
        "audio_lengths": audio_lengths,
        "indices": torch.tensor([item["index"] for item in kept], dtype=torch.long),
    }
    return add_targets(batch, kept, "collate_speech")


def _split_until_multiple(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Split the largest batches in two (halves keep their sorted order) until `len(batches) % multiple == 0`;
    with too few utterances to split, repeat batches cyclically instead."""
    batches = [list(b) for b in batches]
    while batches and len(batches) % multiple:
        j = max(range(len(batches)), key=lambda k: (len(batches[k]), -k))
        if len(batches[j]) < 2:
            need = -len(batches) % multiple
            return batches + [batches[k % len(batches)] for k in range(need)]
        half = len(batches[j]) // 2
        batches[j: j + 1] = [batches[j][:half], batches[j][half:]]
    return batches


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketed dynamic batches of dataset indices, capped by padded audio seconds (module docstring).

    `durations[i]` is item i's length in seconds. Each epoch (`set_epoch`) yields this rank's batches, in an order
    drawn from `seed + epoch` when `shuffle` (the same on every rank and every run), else from shortest to longest.
    `len()` is the exact number of batches this rank yields, the same every epoch. `tag_epoch`: a batch is a list of
    `(epoch, index)` keys instead of indices (for a dataset whose items depend on the epoch: on-the-fly
    augmentation), so that DataLoader workers are told the epoch by the main process.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        tag_epoch: bool = False,
    ) -> None:
        if not (isinstance(max_batch_seconds, (int, float)) and math.isfinite(max_batch_seconds)
                and max_batch_seconds > 0):
            raise ValueError(f"max_batch_seconds must be a positive number, got {max_batch_seconds!r}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size!r}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        for i, d in enumerate(durations):
            if isinstance(d, bool) or not isinstance(d, numbers.Real) or not math.isfinite(d) or d < 0:
                raise ValueError(f"durations[{i}] must be a finite number of seconds >= 0, got {d!r}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = float(max_batch_seconds)
        self.max_batch_size = max_batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_replicas, self.rank, self.tag_epoch = num_replicas, rank, tag_epoch
        order = np.lexsort((np.arange(len(self.durations)), self.durations))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order.tolist():
            d = self.durations[i]
            full = max_batch_size is not None and len(current) >= max_batch_size
            if current and (full or (len(current) + 1) * d > self.max_batch_seconds):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        self.num_oversized = int(np.count_nonzero(self.durations > self.max_batch_seconds))
        if self.num_oversized:
            log.warning("%d utterances are longer than max_batch_seconds=%g and each form a batch of their own "
                        "(longest %.1f s)", self.num_oversized, self.max_batch_seconds, self.durations.max())
        self.batches = _split_until_multiple(batches, num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Use the batch order of `epoch` (call before each epoch, with the same value on every rank)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]] | Iterator[list[tuple[int, int]]]:
        order = np.arange(len(self.batches))
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.batches))
        for j in order[self.rank:: self.num_replicas].tolist():
            yield [(self.epoch, i) for i in self.batches[j]] if self.tag_epoch else list(self.batches[j])

    def __len__(self) -> int:
        return len(self.batches) // self.num_replicas


def make_speech_loader(
    dataset: SpeechDataset,
    durations: Sequence[float] | None,
    max_batch_seconds: float,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    max_batch_size: int | None = None,
) -> DataLoader:
    """A DataLoader over `dataset` with a `BucketBatchSampler` (shuffled batch order when `train`; call
    `loader.batch_sampler.set_epoch(epoch)` each epoch: with on-the-fly augmentation it also picks the epoch's
    variants) and `collate_speech`; persistent workers when `num_workers > 0`. `durations` None takes
    `dataset.durations`."""
    durations = dataset.durations if durations is None else durations
    if len(durations) != len(dataset):
        raise ValueError(f"{len(durations)} durations for a dataset of {len(dataset)} items")
    sampler = BucketBatchSampler(durations, max_batch_seconds, max_batch_size, shuffle=train, seed=seed,
                                 num_replicas=num_replicas, rank=rank,
                                 tag_epoch=getattr(dataset, "augmenter", None) is not None)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_speech,
                      persistent_workers=num_workers > 0)
