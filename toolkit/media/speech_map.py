"""Where the speech is in an input of any length, and the chunks a recogniser decodes: the voice-activity pass and
chunk planning that `Transcriber` and `Subtitler` share.

    vad = make_vad(VadConfig())
    speech = map_speech("talk.mkv", vad, VadConfig())     # one streaming pass: probabilities -> regions
    chunks = speech.chunks(max_chunk=20.0, merge_gap=1.0)
    for chunk, wave in zip(chunks, read_chunks("talk.mkv", chunks)):
        ...

A source is a media file (any file PyAV reads, streamed block by block: memory O(block), whatever its length) or a
1-D float32 waveform at 16 kHz already in memory. Non-speech (silence, noise, hum, music) gives no region, so no
chunk: nothing is ever decoded from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from toolkit.data.audio import SAMPLE_RATE
from toolkit.media.chunks import Chunk, plan_chunks
from toolkit.media.stream import probe_media, read_spans, stream_audio
from toolkit.media.vad import EnergyVad, Region, SileroVad, VadConfig, speech_probabilities, speech_regions

__all__ = ["MAX_CHUNK", "MERGE_GAP", "SpeechMap", "map_speech", "read_chunks"]

MAX_CHUNK = 20.0  # seconds: the longest stretch of audio decoded as one utterance
MERGE_GAP = 1.0  # seconds: speech regions closer than this share a chunk

Source = str | Path | np.ndarray  # a media file, or a (N,) float32 waveform at 16 kHz


@dataclass
class SpeechMap:
    """The speech in one input.

    duration:        seconds of audio
    probs:           `(W,)` float32 speech probability per VAD window (window i covers `[i, i+1) * window_seconds`)
    regions:         where speech really starts and ends (unpadded), sorted and disjoint
    padded:          the same widened by the VAD config's `pad` and merged: what the recogniser hears
    """

    duration: float
    probs: np.ndarray
    window_seconds: float
    regions: list[Region]
    padded: list[Region]

    def chunks(self, max_chunk: float = MAX_CHUNK, merge_gap: float = MERGE_GAP) -> list[Chunk]:
        """The padded regions planned into chunks of at most `max_chunk` seconds (`plan_chunks`)."""
        return plan_chunks(self.padded, self.probs, self.window_seconds, max_chunk, merge_gap)


def _blocks(source: Source, block_seconds: float) -> tuple[Iterator[np.ndarray], float]:
    """`(N,)` float32 16 kHz blocks of `source` and its duration in seconds."""
    if isinstance(source, np.ndarray):
        step = max(1, round(block_seconds * SAMPLE_RATE))
        return (source[i:i + step] for i in range(0, source.size, step)), source.size / SAMPLE_RATE
    return stream_audio(source, SAMPLE_RATE, block_seconds), probe_media(source).duration


def map_speech(source: Source, vad: SileroVad | EnergyVad, config: VadConfig, block_seconds: float = 30.0,
               progress: bool = False) -> SpeechMap:
    """Score `source` with `vad` block by block and find its speech regions (`speech_regions` with `config`, and
    with `config.pad` for the padded ones). A file that cannot be read is an `AudioLoadError` naming it."""
    blocks, duration = _blocks(source, block_seconds)
    total = max(1, math.ceil(duration / block_seconds))
    bar = tqdm(blocks, total=total, desc="finding speech", unit="block", disable=not progress, leave=False)
    probs = speech_probabilities(bar, vad)
    regions = speech_regions(probs, vad.window_seconds, replace(config, pad=0.0), duration)
    padded = speech_regions(probs, vad.window_seconds, config, duration)
    return SpeechMap(duration, probs, vad.window_seconds, regions, padded)


def read_chunks(source: Source, chunks: Sequence[Chunk], block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """The `(n,)` float32 16 kHz samples of each chunk, in order: sliced from a waveform, or read from a file in one
    more streaming pass (`read_spans`)."""
    if isinstance(source, np.ndarray):
        for c in chunks:
            start = round(c.start * SAMPLE_RATE)
            yield source[start:max(round(c.end * SAMPLE_RATE), start + 1)]
        return
    yield from read_spans(source, [(c.start, c.end) for c in chunks], SAMPLE_RATE, block_seconds)
