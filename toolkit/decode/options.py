"""What a search is asked to do (`DecodingOptions`), what it returns (`Hypothesis`), and the rules every
search applies to the next-token log-probabilities: minimum/maximum length, EOS handling and the guard
against repetition loops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from toolkit.model.base import BOS_ID, EOS_ID, PAD_ID


@dataclass
class DecodingOptions:
    """beam_size:          1 = greedy search.
    max_length:         most tokens generated (EOS not counted); also capped by the decoder's max_len.
    max_length_ratio:   if set, also cap each input at ceil(ratio * its memory length) tokens, so an
                        unconverged decoder cannot run on past what the input can hold (speech).
    min_length:         EOS is suppressed before this many tokens.
    length_penalty:     GNMT alpha: hypotheses are ranked by logprob / ((5 + len) / 6) ** alpha; 0 = plain sum.
    repetition_limit:   a hypothesis may repeat the same n-gram (n <= repetition_max_ngram) at most this
                        many times in a row; the token that would start one more copy is banned. 0 = off.
    nbest:              hypotheses returned per input by beam search (<= beam_size).
    ctc_weight:         lambda of joint CTC/attention decoding (`toolkit.decode.joint`): a token extends a
                        hypothesis by (1 - lambda) * attention logp + lambda * CTC prefix score gain. 0 = plain
                        attention search; used only with a model that has a CTC head.
    lm_weight:          beta of shallow fusion with an external language model (`search(..., lm=)`): a token's
                        score also gains beta * log p_lm(token | hypothesis), EOS included. 0 (or no LM) = off,
                        and the search is then exactly the one without an LM.
    length_bonus:       added to the score of every generated token except EOS (ESPnet's length bonus). A
                        language model prefers short outputs (every token costs log-probability), which shows as
                        deleted words; the bonus pays that back. Unlike `length_penalty` it acts on every step of
                        the pruning, not only on the final ranking. Tune it on validation data together with
                        lm_weight (recipes/synth_speech: lm_weight 0.8, length_bonus 1.5 for a char LSTM LM; joint
                        CTC/attention already curbs deletions there, so the bonus matters little).
    oov_penalty:        subtracted once for every word a hypothesis spells that the language model's lexicon does
                        not list (`toolkit.lm.lexicon`; the LM bundle's lexicon.txt), as soon as the word can no
                        longer become one it lists. 0 = off. Needs an LM with a lexicon.
    """

    beam_size: int = 1
    max_length: int = 100
    max_length_ratio: float | None = None
    min_length: int = 0
    length_penalty: float = 0.0
    repetition_limit: int = 4
    repetition_max_ngram: int = 8
    nbest: int = 1
    ctc_weight: float = 0.0
    lm_weight: float = 0.0
    length_bonus: float = 0.0
    oov_penalty: float = 0.0

    def __post_init__(self):
        if self.beam_size < 1 or self.max_length < 1 or self.nbest < 1:
            raise ValueError("beam_size, max_length and nbest must be at least 1")
        if self.nbest > self.beam_size:
            raise ValueError(f"nbest {self.nbest} exceeds beam_size {self.beam_size}")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length {self.min_length} must be in [0, max_length]")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight {self.ctc_weight} must be in [0, 1]")
        if not (math.isfinite(self.lm_weight) and self.lm_weight >= 0):
            raise ValueError(f"lm_weight {self.lm_weight} must be a finite number >= 0")
        if not (math.isfinite(self.oov_penalty) and self.oov_penalty >= 0):
            raise ValueError(f"oov_penalty {self.oov_penalty} must be a finite number >= 0")
        if not math.isfinite(self.length_bonus):
            raise ValueError(f"length_bonus {self.length_bonus} must be a finite number")


@dataclass
class Hypothesis:
    """tokens: generated ids without BOS/EOS; logprob: their total log-probability (EOS included when the
    hypothesis ended with one) as the search scores it, i.e. with the CTC, LM and length-bonus terms it adds;
    score: logprob under the length penalty, the quantity searches rank by."""

    tokens: list[int]
    logprob: float
    score: float


def start_results(lengths: Tensor) -> list[list[Hypothesis]]:
    """The n-best lists a search fills, one per input of memory `lengths` `(B,)`: an input of length 0 has no frame
    to attend to, so it is not searched and gets one empty hypothesis scored 0.0 (as a too-short input does)."""
    return [[Hypothesis([], 0.0, 0.0)] if n == 0 else [] for n in lengths.tolist()]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha; 1 when alpha is 0."""
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def length_caps(options: DecodingOptions, memory_lengths: Tensor, decoder_max_len: int) -> Tensor:
    """`(B,)` most tokens each input may generate (EOS excluded): max_length, the decoder's room after BOS
    and EOS, and max_length_ratio * memory length; at least 1."""
    cap = min(options.max_length, decoder_max_len - 2)
    caps = torch.full_like(memory_lengths, cap)
    if options.max_length_ratio is not None:
        by_input = (memory_lengths.double() * options.max_length_ratio).ceil().long()
        caps = torch.minimum(caps, by_input)
    return caps.clamp(min=1)


def apply_rules(logp: Tensor, generated: Tensor, caps: Tensor, options: DecodingOptions) -> Tensor:
    """Apply token, length and repetition rules to next-token log-probabilities.

    logp:      `(N, V)` log-probabilities of the next token for N hypotheses (modified in place).
    generated: `(N, t)` tokens generated so far (BOS excluded).
    caps:      `(N,)` length caps: a hypothesis that has reached its cap may only emit EOS.
    """
    t = generated.size(1)
    logp[:, [PAD_ID, BOS_ID]] = -math.inf  # padding/CTC blank and BOS are never generated
    eos = logp[:, EOS_ID].clone()
    if t < options.min_length:
        logp[:, EOS_ID] = -math.inf
    limit = options.repetition_limit
    if limit:
        rows = torch.arange(logp.size(0), device=logp.device)
        for n in range(1, options.repetition_max_ngram + 1):
            if n * limit > t:
                break
            tail = generated[:, t - n * limit :]
            # The tail is `limit` copies of one n-gram when it equals itself shifted by n.
            looping = (tail[:, n:] == tail[:, :-n]).all(dim=1)
            if looping.any():
                logp[rows[looping], generated[looping, t - n]] = -math.inf
    at_cap = caps <= t  # the cap wins over min_length
    if at_cap.any():
        logp[at_cap] = -math.inf
        logp[at_cap, EOS_ID] = eos[at_cap]
    return logp
