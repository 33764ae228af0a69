"""Transcribe speech with a saved model bundle.

    transcriber = Transcriber.from_pretrained("exp/speech_quick/final")
    for r in transcriber.transcribe(["a.wav", "b.flac", waveform_16k], beam_size=4):
        print(r.text, r.score)
    transcriber = Transcriber.from_pretrained("exp/speech_quick/final", lm="exp/lm/final", lm_weight=0.5)
    texts = [r.text for r in transcriber.transcribe(["a.wav"])]                 # + shallow fusion with the LM

A language model (`toolkit.lm`) must have been trained with the speech model's tokenizer; its weight defaults to
the one the speech model's bundle records (`info.decoding.lm_weight`, from its recipe's `decoding` section).

Audio shorter than the encoder's shortest input (`min_input_samples`: 1360 samples, 85 ms, for the default
Conformer) gives no encoder frame: its transcript is empty (score 0.0), never an error, and a warning names such
inputs. Training skips such utterances (`check_speech_records(min_duration=)`) and evaluation scores the empty
transcript, so a clip of one sample means the same thing everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from toolkit.bundle import load_model
from toolkit.data.audio import load_audio
from toolkit.decode import DecodingOptions, search
from toolkit.decode.ctc import ctc_greedy
from toolkit.errors import ToolkitError
from toolkit.lm import LMBundle, check_same_tokenizer, fusion_weights, load_lm
from toolkit.model import EncoderDecoder
from toolkit.text import Tokenizer

SAMPLE_RATE = 16000
log = logging.getLogger("toolkit.transcriber")


@dataclass
class TranscriptResult:
    """text: the transcript; tokens: its pieces; score: the search's score (0.0 for CTC greedy);
    source: the file path, or None for an array."""

    text: str
    tokens: list[str]
    score: float
    source: str | None = None


class Transcriber:
    """A speech recogniser and its tokenizer, ready to transcribe files or 16 kHz mono arrays.

    lm: a language model fused into the search (trained with `tokenizer`), with weight `lm_weight`,
    `length_bonus` per token and `oov_penalty` per word outside its lexicon (`DecodingOptions`); lm_weight None: not
    known yet, to be given with each call that uses an LM.
    """

    def __init__(self, model: EncoderDecoder, tokenizer: Tokenizer, ctc_weight: float = 0.3,
                 max_length_ratio: float | None = 1.0, lm: LMBundle | None = None, lm_weight: float | None = None,
                 length_bonus: float = 0.0, oov_penalty: float = 0.0):
        if not hasattr(model.encoder, "output_lengths"):
            raise ToolkitError(f"this model's encoder ({type(model.encoder).__name__}) is not an audio encoder")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ctc_weight = ctc_weight if model.ctc_head is not None else 0.0
        self.max_length_ratio = max_length_ratio
        self.lm = self._check_lm(lm, "lm") if lm is not None else None
        self.lm_weight = lm_weight
        self.length_bonus = length_bonus
        self.oov_penalty = oov_penalty

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu", lm: str | Path | None = None,
        lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
    ) -> "Transcriber":
        """The speech model bundle at `directory`, with its saved decoding defaults; `lm`: a language-model bundle
        directory to fuse (weights: the arguments, else the speech bundle's `decoding.lm_weight` / `length_bonus` /
        `oov_penalty`)."""
        bundle = load_model(directory, device)  # `info` entries are type-checked there
        if bundle.info.get("task") != "asr":
            raise ToolkitError(f"{directory}: a {bundle.info.get('task')!r} model, not a speech recognition model")
        saved = bundle.info.get("decoding", {})
        if lm is not None:
            lm_weight, length_bonus, oov_penalty = fusion_weights(saved, lm_weight, length_bonus, directory,
                                                                  oov_penalty)
        language_model = load_lm(lm, device, tokenizer=bundle.tokenizer) if lm is not None else None
        try:
            return cls(bundle.model, bundle.tokenizer, saved.get("ctc_weight", 0.3),
                       saved.get("max_length_ratio", 1.0), language_model,
                       saved.get("lm_weight") if lm_weight is None else lm_weight,
                       saved.get("length_bonus", 0.0) if length_bonus is None else length_bonus,
                       saved.get("oov_penalty", 0.0) if oov_penalty is None else oov_penalty)
        except ToolkitError as e:
            raise ToolkitError(f"{directory}: {e}") from None

    def _check_lm(self, lm: LMBundle, where: str | Path) -> LMBundle:
        if self.model.decoder is None:
            raise ToolkitError("this model has no attention decoder to fuse a language model with")
        check_same_tokenizer(lm.tokenizer, self.tokenizer, where)
        return lm

    def search_setup(
        self, beam_size: int = 4, ctc_weight: float | None = None, ctc_only: bool = False,
        lm: LMBundle | str | Path | None = None, lm_weight: float | None = None, length_bonus: float | None = None,
        oov_penalty: float | None = None,
    ) -> tuple[DecodingOptions, LMBundle | None]:
        """The search options and the language model (or None) for these arguments: each one not None, else the
        transcriber's setting. One-line ToolkitError for a combination that cannot work."""
        if self.model.ctc_head is None and (ctc_only or ctc_weight):
            raise ToolkitError("this model has no CTC head: it decodes with its attention decoder only "
                               "(no CTC-only decoding, ctc_weight 0)")
        if lm is not None and not isinstance(lm, LMBundle):
            lm = load_lm(lm, next(self.model.parameters()).device)
        if lm is not None:
            lm = self._check_lm(lm, "lm")
        if ctc_only and (lm is not None or lm_weight is not None):
            raise ToolkitError("CTC-only decoding has no search to fuse a language model into")
        lm = None if ctc_only else (lm or self.lm)
        if lm is not None:
            lm_weight = self.lm_weight if lm_weight is None else lm_weight
            if lm_weight is None:
                raise ToolkitError("no weight for the language model: the speech model's bundle records none; pass "
                                   "lm_weight (e.g. 0.3)")
            length_bonus = self.length_bonus if length_bonus is None else length_bonus
            oov_penalty = self.oov_penalty if oov_penalty is None else oov_penalty
            if oov_penalty and lm.model.lexicon is None:
                raise ToolkitError(f"the language model has no lexicon (lexicon.txt) for OOV penalty {oov_penalty:g}: "
                                   "give oov_penalty 0, or train the LM again")
        elif lm_weight:
            raise ToolkitError("lm_weight needs a language model (lm=)")
        elif oov_penalty:
            raise ToolkitError("oov_penalty needs a language model with a lexicon (lm=)")
        options = DecodingOptions(beam_size=beam_size, max_length=10_000, max_length_ratio=self.max_length_ratio,
                                  ctc_weight=self.ctc_weight if ctc_weight is None else ctc_weight,
                                  lm_weight=lm_weight or 0.0, length_bonus=length_bonus or 0.0,
                                  oov_penalty=(oov_penalty or 0.0) if lm is not None else 0.0)
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
    def transcribe(
        self, audio: Sequence[str | Path | np.ndarray], beam_size: int = 4, batch_size: int = 16,
        ctc_weight: float | None = None, ctc_only: bool = False, lm: LMBundle | str | Path | None = None,
        lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
    ) -> list[TranscriptResult]:
        """Transcribe files (any format soundfile or PyAV reads, any rate / channels) or float arrays at 16 kHz.

        Inputs are sorted by length and decoded `batch_size` at a time; results come back in input order.
        `ctc_only` (or a model without a decoder) uses CTC greedy decoding. An unreadable file is a one-line
        `AudioLoadError` naming it (nothing is decoded then); an input too short for one encoder frame gets an
        empty transcript (module docstring). `lm` (a loaded LM bundle or its directory; default: the
        transcriber's) is fused into the search with `lm_weight`, `length_bonus` and `oov_penalty` (default: the
        transcriber's).
        """
        if isinstance(audio, (str, Path)) or (isinstance(audio, np.ndarray) and audio.ndim == 1):
            audio = [audio]  # one input; a 2-D array is a batch of rows
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        options, lm = self.search_setup(beam_size, ctc_weight, ctc_only, lm, lm_weight, length_bonus, oov_penalty)
        waves = [load_audio(a, SAMPLE_RATE) if isinstance(a, (str, Path)) else _array(a, i)
                 for i, a in enumerate(audio)]
        sources = [str(a) if isinstance(a, (str, Path)) else None for a in audio]
        results: list[TranscriptResult | None] = [None] * len(waves)
        shortest = getattr(self.model.encoder, "min_input_samples", 1)
        too_short = [i for i, w in enumerate(waves) if len(w) < shortest]
        for i in too_short:
            results[i] = TranscriptResult("", [], 0.0, sources[i])
        if too_short:
            names = ", ".join(sources[i] or f"audio[{i}]" for i in too_short[:3])
            more = f" and {len(too_short) - 3} more" if len(too_short) > 3 else ""
            log.warning("%d inputs are shorter than the model's shortest input (%.3f s), so their transcripts are "
                        "empty: %s%s", len(too_short), shortest / SAMPLE_RATE, names, more)
        order = sorted((i for i in range(len(waves)) if results[i] is None), key=lambda i: len(waves[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for i, (tokens, score) in zip(idx, self.decode_batch([waves[i] for i in idx], options, lm, ctc_only)):
                results[i] = TranscriptResult(self.tokenizer.decode(tokens), self.tokenizer.pieces(tokens), score,
                                              sources[i])
        return results


def _array(a: np.ndarray, i: int) -> np.ndarray:
    """An in-memory waveform: 1-D, finite, float32 (16 kHz mono is the caller's promise)."""
    wave = np.asarray(a, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"audio[{i}]: expected a 1-D 16 kHz mono waveform, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError(f"audio[{i}]: the waveform holds NaN or infinite samples")
    return wave
