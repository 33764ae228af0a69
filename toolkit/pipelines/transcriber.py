"""Transcribe speech of any length with a saved model bundle.

    transcriber = Transcriber.from_pretrained("exp/speech_quick/final")
    for r in transcriber.transcribe(["a.wav", "talk.mkv", waveform_16k], beam_size=4):
        print(r.text, [(s.start, s.end, s.text) for s in r.segments])
    transcriber = Transcriber.from_pretrained("exp/speech_quick/final", lm="exp/lm/final", lm_weight=0.5)
    texts = [r.text for r in transcriber.transcribe(["a.wav"])]                 # + shallow fusion with the LM

Every input is gated by a voice activity detector (`toolkit.media.speech_map`, the same pass `Subtitler` makes):
silence, noise, hum and music give no speech region and so an empty transcript, never words. An input up to
`max_chunk` seconds (20 s) long is decoded as one segment from its first speech to its last; a longer one is
streamed from its file (memory does not grow with its length) and cut into chunks of at most `max_chunk` seconds at
pauses, decoded in batches, and its transcript is the chunks' transcripts joined, each a `Segment` with its times.

A language model (`toolkit.lm`) must have been trained with the speech model's tokenizer; its weight defaults to
the one the speech model's bundle records (`info.decoding.lm_weight`, from its recipe's `decoding` section).

Audio shorter than the encoder's shortest input (`min_input_samples`: 1360 samples, 85 ms, for the default
Conformer) gives no encoder frame: its transcript is empty (score 0.0), never an error, and a warning names such
inputs. Training skips such utterances (`check_speech_records(min_duration=)`) and evaluation scores the empty
transcript, so a clip of one sample means the same thing everywhere.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from toolkit.bundle import load_model
from toolkit.data.audio import SAMPLE_RATE, audio_duration, load_audio
from toolkit.decode import DecodingOptions, resolve_decoding, search
from toolkit.decode.align import align_words_batch
from toolkit.decode.ctc import ctc_greedy
from toolkit.errors import ToolkitError
from toolkit.lm import LMBundle, check_same_tokenizer, load_lm
from toolkit.media import Chunk, EnergyVad, Region, SileroVad, VadConfig, make_vad, probe_media
from toolkit.media.speech_map import MAX_CHUNK, MERGE_GAP, map_speech, read_chunks
from toolkit.model import EncoderDecoder
from toolkit.subtitles.words import snap_words
from toolkit.text import Tokenizer
from toolkit.timing import Word

BATCH_SECONDS = 100.0  # padded audio decoded in one batch, at most (batch size x its longest chunk)
POOL_BATCHES = 8  # chunks are sorted by length within a pool of this many batches' worth of audio
DEFAULT_VAD = VadConfig()
log = logging.getLogger("toolkit.transcriber")
K = TypeVar("K")


@dataclass
class Segment:
    """One stretch of an input decoded as one utterance: `[start, end)` in seconds on the input's timeline (its
    speech), its text, tokens (pieces) and search score; `words` with their times when asked for, else None."""

    start: float
    end: float
    text: str
    tokens: list[str]
    score: float
    words: list[Word] | None = None


@dataclass
class TranscriptResult:
    """text: the transcript (the segments' texts joined); tokens: its pieces; score: the search's score summed over
    the segments (0.0 for CTC greedy); source: the file path, or None for an array; segments: what was decoded, in
    time order ([] when the input holds no speech); duration: seconds of audio in the input."""

    text: str
    tokens: list[str]
    score: float
    source: str | None = None
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0


class Transcriber:
    """A speech recogniser and its tokenizer, ready to transcribe files or 16 kHz mono arrays.

    decoding: the search's defaults, as a bundle saves them (`info["decoding"]`: ctc_weight, max_length_ratio, and
    for a language model lm_weight, length_bonus and oov_penalty); each call may override them
    (`toolkit.decode.resolve_decoding`). lm: a language model fused into every search (trained with `tokenizer`).
    """

    def __init__(self, model: EncoderDecoder, tokenizer: Tokenizer, decoding: Mapping[str, Any] | None = None,
                 lm: LMBundle | None = None):
        if not hasattr(model.encoder, "output_lengths"):
            raise ToolkitError(f"this model's encoder ({type(model.encoder).__name__}) is not an audio encoder")
        if model.encoder.sample_rate != SAMPLE_RATE:
            raise ToolkitError(f"this model takes {model.encoder.sample_rate} Hz audio; transcription reads audio and "
                               f"detects speech at {SAMPLE_RATE} Hz")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.decoding = dict(decoding or {})
        self.lm = self._check_lm(lm, "lm") if lm is not None else None
        self._detectors: dict[str, SileroVad | EnergyVad] = {}

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu", lm: str | Path | None = None,
        lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
    ) -> "Transcriber":
        """The speech model bundle at `directory`, with its saved decoding defaults; `lm`: a language-model bundle
        directory to fuse. `lm_weight`, `length_bonus`, `oov_penalty` replace the saved defaults; a setting that
        cannot work with this model and LM is a one-line error now, not at the first call."""
        bundle = load_model(directory, device)  # `info` entries are type-checked there
        if bundle.info.get("task") != "asr":
            raise ToolkitError(f"{directory}: a {bundle.info.get('task')!r} model, not a speech recognition model")
        given = {"lm_weight": lm_weight, "length_bonus": length_bonus, "oov_penalty": oov_penalty}
        decoding = {**bundle.info.get("decoding", {}), **{k: v for k, v in given.items() if v is not None}}
        language_model = load_lm(lm, device, tokenizer=bundle.tokenizer) if lm is not None else None
        try:
            transcriber = cls(bundle.model, bundle.tokenizer, decoding, language_model)
            transcriber.search_setup(**given)
        except ToolkitError as e:
            raise ToolkitError(f"{directory}: {e}") from None
        return transcriber

    def _check_lm(self, lm: LMBundle, where: str | Path) -> LMBundle:
        check_same_tokenizer(lm.tokenizer, self.tokenizer, where)
        return lm

    def search_setup(
        self, beam_size: int = 4, ctc_weight: float | None = None, ctc_only: bool = False,
        lm: LMBundle | str | Path | None = None, lm_weight: float | None = None, length_bonus: float | None = None,
        oov_penalty: float | None = None,
    ) -> tuple[DecodingOptions, LMBundle | None]:
        """The search options and the language model (or None) for these arguments: each one not None, else the
        transcriber's setting (`resolve_decoding`). One-line ToolkitError for a combination that cannot work."""
        if lm is not None and not isinstance(lm, LMBundle):
            lm = load_lm(lm, next(self.model.parameters()).device)
        if lm is not None:
            lm = self._check_lm(lm, "lm")
        elif not ctc_only:  # CTC-only decoding leaves the transcriber's LM out
            lm = self.lm
        options = resolve_decoding(self.decoding, beam_size=beam_size, ctc_weight=ctc_weight, lm_weight=lm_weight,
                                   length_bonus=length_bonus, oov_penalty=oov_penalty,
                                   has_ctc=self.model.ctc_head is not None, has_decoder=self.model.decoder is not None,
                                   has_lm=lm is not None, has_lexicon=lm is not None and lm.model.lexicon is not None,
                                   ctc_only=ctc_only)
        return options, lm

    @torch.no_grad()
    def decode_batch(
        self, waves: Sequence[np.ndarray], options: DecodingOptions, lm: LMBundle | None = None,
        ctc_only: bool = False, return_encoder: bool = False,
    ):
        """Decode 16 kHz mono waveforms (each at least `min_input_samples` long) as one batch: a list of
        (token ids, score); with `return_encoder`, also the `EncoderOutput` (for alignment on the CTC head)."""
        device = next(self.model.parameters()).device
        lengths = torch.tensor([len(w) for w in waves])
        x = torch.zeros(len(waves), int(lengths.max()))
        for row, w in enumerate(waves):
            x[row, : len(w)] = torch.from_numpy(w)
        enc_out = self.model.encode(x.to(device), lengths.to(device))
        if ctc_only or self.model.decoder is None:
            scored = [(t, 0.0) for t in ctc_greedy(self.model.ctc_head(enc_out.memory), enc_out.lengths)]
        else:
            nbests = search(self.model, enc_out, options, lm.model if lm is not None else None)
            scored = [(nbest[0].tokens, nbest[0].score) if nbest else ([], 0.0) for nbest in nbests]
        return (scored, enc_out) if return_encoder else scored

    @torch.no_grad()
    def decode_chunks(
        self, items: Iterable[tuple[K, Chunk, np.ndarray]], options: DecodingOptions, lm: LMBundle | None = None,
        ctc_only: bool = False, word_times: bool = False, batch_size: int = 16,
        batch_seconds: float = BATCH_SECONDS, progress: tqdm | None = None,
    ) -> Iterator[tuple[K, Segment]]:
        """Decode `(key, chunk, 16 kHz wave)` items in batches; yields `(key, Segment)` as batches finish, not in
        input order.

        Items are gathered into a pool of up to `POOL_BATCHES` batches' worth of audio, sorted there by length and
        decoded `batch_size` at a time with at most `batch_seconds` of padded audio per batch, so memory stays
        bounded however many items come. Segments span their chunk; `word_times` adds each word's time on the
        input's timeline (CTC forced alignment; needs a CTC head). `progress` is advanced by the seconds decoded.
        """
        if word_times and self.model.ctc_head is None:
            raise ToolkitError("word times come from a CTC head: this model has none")
        pool: list[tuple[K, Chunk, np.ndarray]] = []
        pooled = 0.0
        for item in items:
            pool.append(item)
            pooled += item[1].duration
            if pooled >= POOL_BATCHES * batch_seconds:
                yield from self._decode_pool(pool, options, lm, ctc_only, word_times, batch_size, batch_seconds,
                                             progress)
                pool, pooled = [], 0.0
        yield from self._decode_pool(pool, options, lm, ctc_only, word_times, batch_size, batch_seconds, progress)

    def _decode_pool(
        self, pool: list[tuple[K, Chunk, np.ndarray]], options: DecodingOptions, lm: LMBundle | None, ctc_only: bool,
        word_times: bool, batch_size: int, batch_seconds: float, progress: tqdm | None,
    ) -> Iterator[tuple[K, Segment]]:
        """`decode_chunks` for one pool: sorted by length, then decoded in `length_batches`."""
        pool = sorted(pool, key=lambda item: len(item[2]))
        shortest = getattr(self.model.encoder, "min_input_samples", 1)
        for batch in length_batches(pool, batch_size, batch_seconds):
            chunks = [c for _, c, _ in batch]
            waves = [w if len(w) >= shortest else np.pad(w, (0, shortest - len(w))) for _, _, w in batch]
            out = self.decode_batch(waves, options, lm, ctc_only, return_encoder=word_times)
            scored, enc_out = out if word_times else (out, None)
            timed = [None] * len(batch)
            if word_times:
                timed = align_words_batch(self.model.ctc_head(enc_out.memory), enc_out.lengths,
                                          [tokens for tokens, _ in scored], self.tokenizer,
                                          self.model.encoder.frame_shift_seconds, [c.start for c in chunks])
            for (key, chunk, _), (tokens, score), words in zip(batch, scored, timed):
                yield key, Segment(chunk.start, chunk.end, self.tokenizer.decode(tokens),
                                   self.tokenizer.pieces(tokens), score, words)
            if progress is not None:
                progress.update(sum(c.duration for c in chunks))
            release_freed_memory()

    @torch.no_grad()
    def transcribe(
        self, audio: Sequence[str | Path | np.ndarray], beam_size: int = 4, batch_size: int = 16,
        ctc_weight: float | None = None, ctc_only: bool = False, lm: LMBundle | str | Path | None = None,
        lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
        vad: VadConfig | None = DEFAULT_VAD, max_chunk: float = MAX_CHUNK, word_times: bool = False,
        progress: bool = False,
    ) -> list[TranscriptResult]:
        """Transcribe files (any format soundfile or PyAV reads, any rate / channels, any length) or float arrays
        at 16 kHz; results come back in input order.

        Every input goes through the voice activity detector `vad` first (module docstring): one without speech
        gets an empty transcript and no segments. An input up to `max_chunk` seconds long is decoded as one
        segment, from its first speech to its last; a longer one is streamed from its file and cut into chunks of
        at most `max_chunk` seconds, as `Subtitler` cuts it, whose transcripts are joined. `vad=None` decodes every
        input whole, as it is (for audio already cut into utterances). Chunks are decoded `batch_size` at a time,
        sorted by length. `ctc_only` (or a model without a decoder) uses CTC greedy decoding; `word_times` adds the
        time of every word (CTC forced alignment, snapped into the speech regions). Every file is read once before
        anything is decoded, so an unreadable one is a one-line `AudioLoadError` naming it, before any work; an
        input too short for one encoder frame gets an empty transcript. `lm` (a loaded LM bundle or its directory;
        default: the transcriber's) is fused into the search with `lm_weight`, `length_bonus` and `oov_penalty`
        (default: the transcriber's). `progress` shows bars on stderr.
        """
        if isinstance(audio, (str, Path)) or (isinstance(audio, np.ndarray) and audio.ndim == 1):
            audio = [audio]  # one input; a 2-D array is a batch of rows
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not max_chunk > 0:
            raise ValueError(f"max_chunk must be > 0 seconds, got {max_chunk}")
        if word_times and self.model.ctc_head is None:
            raise ToolkitError("word times come from a CTC head: this model has none")
        options, lm = self.search_setup(beam_size, ctc_weight, ctc_only, lm, lm_weight, length_bonus, oov_penalty)
        sources = [str(a) if isinstance(a, (str, Path)) else None for a in audio]
        names = [s or f"audio[{i}]" for i, s in enumerate(sources)]
        inputs = [self._read(a, i, whole=vad is None, max_chunk=max_chunk) for i, a in enumerate(audio)]
        durations = [x.size / SAMPLE_RATE if isinstance(x, np.ndarray) else None for x in inputs]

        shortest = getattr(self.model.encoder, "min_input_samples", 1)
        too_short = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.size < shortest]
        limit = f"the model's shortest input ({shortest / SAMPLE_RATE:.3f} s)"
        _warn_empty(too_short, names, (f"is shorter than {limit}, so its transcript is empty",
                                       f"are shorter than {limit}, so their transcripts are empty"))
        plans: dict[int, tuple[list[Chunk], list[Region]]] = {}
        detector = self._detector(vad) if vad is not None else None
        for i, x in enumerate(inputs):
            if i in too_short:
                continue
            if detector is None:
                plans[i] = [Chunk(0.0, durations[i], [Region(0.0, durations[i])])], []
                continue
            speech = map_speech(x, detector, vad, progress=progress and durations[i] is None)
            durations[i] = speech.duration
            merge_gap = math.inf if speech.duration <= max_chunk else MERGE_GAP  # a short input: one segment
            plans[i] = speech.chunks(max_chunk, merge_gap), speech.regions
        _warn_empty([i for i, (chunks, _) in plans.items() if not chunks], names,
                    ("holds no speech (the voice activity detector found none), so its transcript is empty",
                     "hold no speech (the voice activity detector found none), so their transcripts are empty"))

        segments: dict[int, list[Segment]] = {i: [] for i in range(len(inputs))}
        items = ((i, c, w) for i, (chunks, _) in plans.items() for c, w in zip(chunks, read_chunks(inputs[i], chunks)))
        total = sum(c.duration for chunks, _ in plans.values() for c in chunks)
        with tqdm(total=round(total, 1), desc="transcribing", unit="s", disable=not progress, leave=False) as bar:
            for i, segment in self.decode_chunks(items, options, lm, ctc_only, word_times, batch_size,
                                                 progress=bar):
                segments[i].append(segment)
        results = []
        for i, found in segments.items():
            found.sort(key=lambda s: s.start)
            regions = plans[i][1] if i in plans else []
            for s in found:
                s.start, s.end = _speech_extent(s.start, s.end, regions)
            if word_times:
                _snap_segment_words(found, regions)
            results.append(TranscriptResult(" ".join(s.text for s in found if s.text),
                                            [p for s in found for p in s.tokens], sum(s.score for s in found),
                                            sources[i], found, durations[i] or 0.0))
        return results

    def _read(self, a: str | Path | np.ndarray, i: int, whole: bool, max_chunk: float) -> np.ndarray | Path:
        """An input ready to plan: a waveform in memory (arrays, and files up to `max_chunk` seconds long or read
        `whole`), or the path of a longer file, which is streamed."""
        if not isinstance(a, (str, Path)):
            return _array(a, i)
        if whole or audio_duration(a) <= max_chunk:
            return load_audio(a, SAMPLE_RATE)
        probe_media(a)  # a file PyAV cannot stream is refused now, before anything is decoded
        return Path(a)

    def _detector(self, vad: VadConfig) -> SileroVad | EnergyVad:
        """The voice activity detector `vad.backend` names, made once per transcriber."""
        if vad.backend not in self._detectors:
            self._detectors[vad.backend] = make_vad(vad)
        return self._detectors[vad.backend]


def length_batches(items: Sequence[tuple], size: int, seconds: float) -> Iterator[list]:
    """Consecutive `(key, chunk, wave)` items in batches of at most `size` whose padded length (count x longest wave)
    stays within `seconds` of audio (a single longer item is a batch of its own)."""
    batch: list = []
    longest = 0.0
    for item in items:
        duration = len(item[2]) / SAMPLE_RATE
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


def _speech_extent(start: float, end: float, regions: Sequence[Region]) -> tuple[float, float]:
    """The part of `[start, end)` (a padded chunk) from the first to the last unpadded speech region inside it; the
    span itself when no region lies inside."""
    inside = [r for r in regions if r.end > start and r.start < end]
    if not inside:
        return start, end
    return max(start, inside[0].start), min(end, inside[-1].end)


def _snap_segment_words(segments: Sequence[Segment], regions: Sequence[Region]) -> None:
    """Snap the words of an input's segments (in time order) into its speech regions (`snap_words`), in place."""
    snapped = iter(snap_words([w for s in segments for w in s.words], regions))
    for s in segments:
        s.words = [next(snapped) for _ in s.words]


def _warn_empty(indices: Sequence[int], names: Sequence[str], why: tuple[str, str]) -> None:
    """One warning naming the first few inputs of `indices`; `why`: what is wrong with one input, with several."""
    if indices:
        n = len(indices)
        more = f" and {n - 3} more" if n > 3 else ""
        log.warning("%d input%s %s: %s%s", n, "s"[:n != 1], why[n != 1], ", ".join(names[i] for i in indices[:3]),
                    more)


def _array(a: np.ndarray, i: int) -> np.ndarray:
    """An in-memory waveform: 1-D, finite, float32 (16 kHz mono is the caller's promise)."""
    wave = np.asarray(a, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"audio[{i}]: expected a 1-D 16 kHz mono waveform, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError(f"audio[{i}]: the waveform holds NaN or infinite samples")
    return wave
