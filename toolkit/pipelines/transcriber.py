"""Transcribe speech with a saved model bundle.

    transcriber = Transcriber.from_pretrained("exp/speech_quick/final")
    for r in transcriber.transcribe(["a.wav", "b.flac", waveform_16k], beam_size=4):
        print(r.text, r.score)
"""

from __future__ import annotations

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
from toolkit.model import EncoderDecoder
from toolkit.text import Tokenizer

SAMPLE_RATE = 16000


@dataclass
class TranscriptResult:
    """text: the transcript; tokens: its pieces; score: the search's score (0.0 for CTC greedy);
    source: the file path, or None for an array."""

    text: str
    tokens: list[str]
    score: float
    source: str | None = None


class Transcriber:
    """A speech recogniser and its tokenizer, ready to transcribe files or 16 kHz mono arrays."""

    def __init__(self, model: EncoderDecoder, tokenizer: Tokenizer, ctc_weight: float = 0.3,
                 max_length_ratio: float | None = 1.0):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.ctc_weight = ctc_weight if model.ctc_head is not None else 0.0
        self.max_length_ratio = max_length_ratio

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Transcriber":
        bundle = load_model(directory, device)
        if bundle.info.get("task") != "asr":
            raise ToolkitError(f"{directory}: a {bundle.info.get('task')!r} model, not a speech recognition model")
        saved = bundle.info.get("decoding", {})
        return cls(bundle.model, bundle.tokenizer, saved.get("ctc_weight", 0.3), saved.get("max_length_ratio", 1.0))

    @torch.no_grad()
    def transcribe(
        self, audio: Sequence[str | Path | np.ndarray], beam_size: int = 4, batch_size: int = 16,
        ctc_weight: float | None = None, ctc_only: bool = False,
    ) -> list[TranscriptResult]:
        """Transcribe files (any format soundfile or PyAV reads, any rate / channels) or float arrays at 16 kHz.

        Inputs are sorted by length and decoded `batch_size` at a time; results come back in input order.
        `ctc_only` (or a model without a decoder) uses CTC greedy decoding.
        """
        waves = [load_audio(a, SAMPLE_RATE) if isinstance(a, (str, Path)) else np.asarray(a, np.float32)
                 for a in audio]
        sources = [str(a) if isinstance(a, (str, Path)) else None for a in audio]
        options = DecodingOptions(beam_size=beam_size, max_length=10_000, max_length_ratio=self.max_length_ratio,
                                  ctc_weight=self.ctc_weight if ctc_weight is None else ctc_weight)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        results: list[TranscriptResult | None] = [None] * len(waves)
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            lengths = torch.tensor([len(waves[i]) for i in idx])
            x = torch.zeros(len(idx), int(lengths.max()))
            for row, i in enumerate(idx):
                x[row, : len(waves[i])] = torch.from_numpy(waves[i])
            enc_out = self.model.encode(x.to(device), lengths.to(device))
            if ctc_only or self.model.decoder is None:
                token_lists = ctc_greedy(self.model.ctc_head(enc_out.memory), enc_out.lengths)
                scored = [(t, 0.0) for t in token_lists]
            else:
                scored = [(nbest[0].tokens, nbest[0].score) for nbest in search(self.model, enc_out, options)]
            for i, (tokens, score) in zip(idx, scored):
                results[i] = TranscriptResult(self.tokenizer.decode(tokens), self.tokenizer.pieces(tokens), score,
                                              sources[i])
        return results
