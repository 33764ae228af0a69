"""Subtitles for audio or video of any length: VAD -> chunks -> batched recognition -> word times -> cues.

    subtitler = Subtitler.from_pretrained("exp/speech_quick/final")
    result = subtitler.subtitle("talk.mkv", progress=True)
    get_writer("srt").write_file(result.cues, "talk.srt")

Two streaming passes over the file, so memory does not grow with its length:
  1. the audio is decoded block by block and scored by the VAD; only the per-window speech probabilities are
     kept (112,500 floats per hour). They give the speech regions: unpadded ones mark where speech really starts
     and ends (the times cues are snapped to), padded ones are what the recogniser hears.
  2. the padded regions are planned into chunks of at most `max_chunk` seconds (close regions share one, long
     ones are cut at pauses), read back in one more pass and decoded `batch_size` at a time.
Each chunk's final hypothesis is force-aligned on the model's CTC output (`toolkit.decode.align`), which puts
every word on the original timeline. A word is then snapped into the speech region it overlaps most: clamped to
the region, its duration capped at `max_word` seconds, and the first / last word of a region moved to the
region's start / end when it lies within `snap` seconds of it (a CTC spike comes a little after the sound it
stands for). Non-speech yields no region, so no chunk, so no cue: nothing can be hallucinated over silence.
"""

from __future__ import annotations

import bisect
import ctypes
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from toolkit.decode.align import align_words_batch
from toolkit.errors import ConfigError, ToolkitError
from toolkit.media import (
    Chunk,
    Region,
    VadConfig,
    make_vad,
    plan_chunks,
    probe_media,
    read_spans,
    speech_probabilities,
    speech_regions,
    stream_audio,
)
from toolkit.pipelines.transcriber import SAMPLE_RATE, Transcriber
from toolkit.subtitles.cues import Cue, CueRules, make_cues
from toolkit.subtitles.words import Word


@dataclass
class SubtitleOptions:
    """How `Subtitler` finds speech, cuts it, decodes it and times the words (cue rules: `rules`)."""

    vad: VadConfig = field(default_factory=VadConfig)
    rules: CueRules = field(default_factory=CueRules)
    max_chunk: float = 20.0  # seconds of audio decoded as one utterance
    merge_gap: float = 1.0  # regions closer than this share a chunk
    beam_size: int = 4
    batch_size: int = 8  # chunks decoded together, at most
    batch_seconds: float = 100.0  # and at most this much padded audio (chunks x the longest), so memory is bounded
    ctc_weight: float | None = None  # None: the model's saved decoding setting
    lm_weight: float | None = None  # None: the transcriber's setting (only with a language model)
    length_bonus: float | None = None  # None: the transcriber's setting
    oov_penalty: float | None = None  # None: the transcriber's setting (only with an LM that has a lexicon)
    block_seconds: float = 30.0  # audio decoded at a time in the VAD pass
    max_word: float = 1.5  # seconds; a longer aligned word is cut to this
    snap: float = 0.4  # seconds; a region's first / last word this close to its edge is moved onto it

    def __post_init__(self) -> None:
        for name in ("max_chunk", "block_seconds", "max_word", "batch_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"subtitle.{name}: must be > 0, got {getattr(self, name)}")
        for name in ("merge_gap", "snap"):
            if getattr(self, name) < 0:
                raise ConfigError(f"subtitle.{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("beam_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"subtitle.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass
class SubtitleResult:
    """cues: the subtitles; words: every timed word; regions: the unpadded speech regions; chunks: what was
    decoded (padded spans) and its transcript; duration: seconds of audio in the input."""

    source: str
    duration: float
    cues: list[Cue]
    words: list[Word]
    regions: list[Region]
    chunks: list[Chunk]
    transcripts: list[str]

    @property
    def text(self) -> str:
        return " ".join(t for t in self.transcripts if t)


class Subtitler:
    """A speech recogniser (a `Transcriber`, optionally with its language model) turned into a subtitler."""

    def __init__(self, transcriber: Transcriber, options: SubtitleOptions | None = None):
        if transcriber.model.ctc_head is None:
            raise ToolkitError("subtitles need word times from a CTC head: this model has none")
        self.transcriber = transcriber
        self.options = options or SubtitleOptions()

    @classmethod
    def from_pretrained(cls, directory: str | Path, options: SubtitleOptions | None = None,
                        lm: str | Path | None = None, device: str | torch.device = "cpu") -> "Subtitler":
        """The speech model bundle at `directory` (with a language-model bundle `lm` to fuse, if given)."""
        options = options or SubtitleOptions()
        transcriber = Transcriber.from_pretrained(directory, device=device, lm=lm, lm_weight=options.lm_weight,
                                                  length_bonus=options.length_bonus, oov_penalty=options.oov_penalty)
        return cls(transcriber, options)

    # ------------------------------------------------------------------------------------------ the job

    def subtitle(self, path: str | Path, progress: bool = False) -> SubtitleResult:
        """Subtitle the audio of `path` (any file PyAV reads: audio, or the first audio track of a video)."""
        opt = self.options
        info = probe_media(path)
        vad = make_vad(opt.vad)
        blocks = stream_audio(path, SAMPLE_RATE, opt.block_seconds)
        total = max(1, math.ceil(info.duration / opt.block_seconds))
        bar = tqdm(blocks, total=total, desc="finding speech", unit="block", disable=not progress, leave=False)
        probs = speech_probabilities(bar, vad)
        regions = speech_regions(probs, vad.window_seconds, replace(opt.vad, pad=0.0), info.duration)
        padded = speech_regions(probs, vad.window_seconds, opt.vad, info.duration)
        chunks = plan_chunks(padded, probs, vad.window_seconds, opt.max_chunk, opt.merge_gap)

        words: list[Word] = []
        transcripts: list[str] = []
        waves = read_spans(path, [(c.start, c.end) for c in chunks], SAMPLE_RATE)
        with tqdm(total=len(chunks), desc="transcribing", unit="chunk", disable=not progress, leave=False) as bar:
            for batch in _batches(zip(chunks, waves), opt.batch_size, opt.batch_seconds):
                for chunk_words, text in self._decode([c for c, _ in batch], [w for _, w in batch]):
                    words.extend(chunk_words)
                    transcripts.append(text)
                bar.update(len(batch))
                release_freed_memory()
        words = snap_words(words, regions, opt.max_word, opt.snap)
        return SubtitleResult(str(path), info.duration, make_cues(words, opt.rules), words, regions, chunks,
                              transcripts)

    @torch.no_grad()
    def _decode(self, chunks: Sequence[Chunk], waves: Sequence[np.ndarray]) -> list[tuple[list[Word], str]]:
        """Recognise one batch of chunks; (timed words, transcript) per chunk."""
        t, opt = self.transcriber, self.options
        shortest = getattr(t.model.encoder, "min_input_samples", 1)
        waves = [w if len(w) >= shortest else np.pad(w, (0, shortest - len(w))) for w in waves]
        options, lm = t.search_setup(opt.beam_size, opt.ctc_weight, lm_weight=opt.lm_weight,
                                     length_bonus=opt.length_bonus, oov_penalty=opt.oov_penalty)
        scored, enc_out = t.decode_batch(waves, options, lm, return_encoder=True)
        tokens = [tok for tok, _ in scored]
        timed = align_words_batch(t.model.ctc_head(enc_out.memory), enc_out.lengths, tokens, t.tokenizer,
                                  t.model.encoder.frame_shift_seconds, [c.start for c in chunks])
        return [(words, t.tokenizer.decode(tok)) for words, tok in zip(timed, tokens)]


def _batches(items: Iterator[tuple[Chunk, np.ndarray]], size: int, seconds: float) -> Iterator[list]:
    """Consecutive (chunk, wave) pairs in batches of at most `size` whose padded length (count x longest) stays
    within `seconds` of audio (a single longer chunk is a batch of its own)."""
    batch: list = []
    longest = 0.0
    for item in items:
        duration = len(item[1]) / SAMPLE_RATE
        if batch and (len(batch) == size or (len(batch) + 1) * max(longest, duration) > seconds):
            yield batch
            batch, longest = [], 0.0
        batch.append(item)
        longest = max(longest, duration)
    if batch:
        yield batch


def release_freed_memory() -> None:
    """Give the memory freed by the last batch back to the system (glibc's malloc_trim; a no-op elsewhere). The
    allocator otherwise keeps freed blocks of every batch shape it has seen, and the resident size of a run creeps
    up with the length of the input although nothing is kept."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def snap_words(words: Sequence[Word], regions: Sequence[Region], max_word: float, snap: float) -> list[Word]:
    """Put aligned words inside the speech regions (see the module docstring); words keep their order and never
    overlap. Without regions the words are only capped at `max_word`."""
    starts = [r.start for r in regions]
    out: list[Word] = []
    by_region: dict[int, list[int]] = {}
    for w in words:
        start, end = w.start, min(w.end, w.start + max_word)
        k = _region_of(start, end, regions, starts)
        if k is not None:
            r = regions[k]
            start = min(max(start, r.start), r.end)
            end = min(max(end, start), r.end)
            by_region.setdefault(k, []).append(len(out))
        out.append(Word(w.text, start, end))
    for k, idx in by_region.items():
        r = regions[k]
        first, last = out[idx[0]], out[idx[-1]]
        if first.start - r.start <= snap:
            out[idx[0]] = Word(first.text, r.start, max(first.end, r.start))
        last = out[idx[-1]]
        if r.end - last.end <= snap:
            out[idx[-1]] = Word(last.text, last.start, r.end)
    for i in range(1, len(out)):  # keep order, no overlap
        prev, w = out[i - 1], out[i]
        if w.start < prev.end:
            start = max(w.start, prev.start)
            out[i - 1] = Word(prev.text, prev.start, start)
            out[i] = Word(w.text, start, max(w.end, start))
    return out


def _region_of(start: float, end: float, regions: Sequence[Region], starts: list[float]) -> int | None:
    """Index of the region that overlaps [start, end] most, else the nearest one; None without regions."""
    if not regions:
        return None
    i = bisect.bisect_right(starts, end)
    best, best_key = None, None
    for k in range(max(0, i - 3), min(len(regions), i + 2)):
        r = regions[k]
        overlap = min(end, r.end) - max(start, r.start)
        distance = max(r.start - end, start - r.end, 0.0)
        key = (overlap if overlap > 0 else -distance)
        if best_key is None or key > best_key:
            best, best_key = k, key
    return best
