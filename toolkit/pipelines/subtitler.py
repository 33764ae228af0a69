"""Subtitles for audio or video of any length: VAD -> chunks -> batched recognition -> word times -> cues.

    subtitler = Subtitler.from_pretrained("exp/speech_quick/final")
    result = subtitler.subtitle("talk.mkv", progress=True)
    get_writer("srt").write_file(result.cues, "talk.srt")

Two streaming passes over the file, so memory does not grow with its length (`toolkit.media.speech_map`, the
same path `Transcriber.transcribe` takes for long input):
  1. the audio is decoded block by block and scored by the VAD; only the per-window speech probabilities are
     kept (112,500 floats per hour). They give the speech regions: unpadded ones mark where speech really starts
     and ends (the times cues are snapped to), padded ones are what the recogniser hears.
  2. the padded regions are planned into chunks of at most `max_chunk` seconds (close regions share one, long
     ones are cut at pauses), read back in one more pass and decoded in batches (`Transcriber.decode_chunks`).
Each chunk's final hypothesis is force-aligned on the model's CTC output (`toolkit.decode.align`), which puts
every word on the original timeline, and the words are snapped into the speech regions
(`toolkit.subtitles.words.snap_words`). Non-speech yields no region, so no chunk, so no cue: nothing can be
hallucinated over silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from toolkit.errors import ConfigError, ToolkitError
from toolkit.media import Chunk, Region, VadConfig, make_vad
from toolkit.media.speech_map import MAX_CHUNK, MERGE_GAP, map_speech, read_chunks
from toolkit.pipelines.transcriber import BATCH_SECONDS, Transcriber
from toolkit.subtitles.cues import Cue, CueRules, make_cues
from toolkit.subtitles.words import MAX_WORD, SNAP, snap_words
from toolkit.timing import Word


@dataclass
class SubtitleOptions:
    """How `Subtitler` finds speech, cuts it, decodes it and times the words (cue rules: `rules`)."""

    vad: VadConfig = field(default_factory=VadConfig)
    rules: CueRules = field(default_factory=CueRules)
    max_chunk: float = MAX_CHUNK  # seconds of audio decoded as one utterance
    merge_gap: float = MERGE_GAP  # regions closer than this share a chunk
    beam_size: int = 4
    batch_size: int = 8  # chunks decoded together, at most
    batch_seconds: float = BATCH_SECONDS  # and at most this much padded audio (chunks x longest): bounded memory
    ctc_weight: float | None = None  # None: the model's saved decoding setting
    lm_weight: float | None = None  # None: the transcriber's setting (only with a language model)
    length_bonus: float | None = None  # None: the transcriber's setting
    oov_penalty: float | None = None  # None: the transcriber's setting (only with an LM that has a lexicon)
    block_seconds: float = 30.0  # audio decoded at a time in the VAD pass
    max_word: float = MAX_WORD  # seconds; a longer aligned word is cut to this
    snap: float = SNAP  # seconds; a region's first / last word this close to its edge is moved onto it

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
        opt, t = self.options, self.transcriber
        speech = map_speech(path, make_vad(opt.vad), opt.vad, opt.block_seconds, progress)
        chunks = speech.chunks(opt.max_chunk, opt.merge_gap)
        options, lm = t.search_setup(opt.beam_size, opt.ctc_weight, lm_weight=opt.lm_weight,
                                     length_bonus=opt.length_bonus, oov_penalty=opt.oov_penalty)
        items = ((k, c, w) for k, (c, w) in enumerate(zip(chunks, read_chunks(path, chunks, opt.block_seconds))))
        decoded = [None] * len(chunks)
        with tqdm(total=len(chunks), desc="transcribing", unit="chunk", disable=not progress, leave=False) as bar:
            for k, segment in t.decode_chunks(items, options, lm, word_times=True, batch_size=opt.batch_size,
                                              batch_seconds=opt.batch_seconds):
                decoded[k] = segment
                bar.update()
        words = snap_words([w for s in decoded for w in s.words], speech.regions, opt.max_word, opt.snap)
        return SubtitleResult(str(path), speech.duration, make_cues(words, opt.rules), words, speech.regions, chunks,
                              [s.text for s in decoded])
