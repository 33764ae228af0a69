"""Word timestamps from CTC forced alignment: where in time each word of a hypothesis was spoken.

    words = align_words(log_probs, tokens, tokenizer, frame_shift=0.04)          # (T, V) of one utterance
    words = align_words_batch(log_probs, lengths, token_lists, tokenizer, 0.04)  # (B, T, V), one list per input
    spans = align_tokens(log_probs, tokens)            # per token (first frame, last frame + 1), or None

Given the CTC log-probabilities of an utterance and the final token sequence (from any search: CTC greedy, joint
CTC/attention beam, attention only), the Viterbi path through the CTC trellis of exactly that sequence
(`torchaudio.functional.forced_align`) assigns every frame to blank or to one token. A token's span is the run of
frames assigned to it; a word's span runs from the first frame of its first token to the last frame of its last
token, plus one (so a one-frame word lasts one frame shift). Frame f is at ``offset + f * frame_shift`` seconds.
Words are grouped by the tokenizer (`Tokenizer.word_boundaries`), so this works for char, word and sentencepiece
vocabularies alike; a word's text is its tokens decoded, and a word of unknown tokens only (which decodes to nothing,
as it does in the transcript) is left out.

The path is the same for logits and for log-softmax outputs (each path takes one entry per frame, so a per-frame
constant shifts every path equally). bf16 / fp16 / fp64 inputs are aligned in fp32. Log-probabilities of -inf are
raised to `LOG_FLOOR`, so a token the model gives zero probability still gets a (poor) place on the path.

When the sequence cannot fit the frames (CTC needs one frame per token plus one blank between two equal
consecutive tokens: T >= len(tokens) + repeats), there is no path. Rather than fail on one odd utterance of a long
file, the words are then spread over the frames in proportion to their number of tokens (`uniform_token_spans`):
times that keep order and cover the utterance, without claiming to be measured.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torchaudio.functional as AF
from torch import Tensor

from toolkit.decode.ctc import LOG_FLOOR
from toolkit.text.tokenizer import BLANK_ID, BOS_ID, EOS_ID, Tokenizer
from toolkit.timing import Word

__all__ = ["align_tokens", "align_words", "align_words_batch", "ctc_min_frames", "uniform_token_spans"]

TokenSpan = tuple[float, float]  # (first frame, last frame + 1) of a token; fractional for uniform spans


def ctc_min_frames(tokens: Sequence[int]) -> int:
    """Fewest frames a CTC path of `tokens` needs: one per token, plus a blank between equal neighbours."""
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    return len(tokens) + repeats


def _check_tokens(tokens: Sequence[int], vocab_size: int) -> list[int]:
    ids = [int(t) for t in tokens]
    for t in ids:
        if t in (BLANK_ID, BOS_ID, EOS_ID) or not 0 <= t < vocab_size:
            raise ValueError(f"token id {t} cannot be aligned: ids must be in [0, {vocab_size}) and not blank, "
                             f"BOS or EOS ({BLANK_ID}, {BOS_ID}, {EOS_ID})")
    return ids


def _prepare(log_probs: Tensor) -> Tensor:
    """(T, V) log-probs as contiguous fp32 without NaN, -inf raised to `LOG_FLOOR`."""
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, V) for one utterance, got shape {tuple(log_probs.shape)}")
    x = log_probs.detach().float()
    if torch.isnan(x).any():
        raise ValueError("log_probs contain NaN: the model's output is broken, there is nothing to align")
    return x.clamp(min=LOG_FLOOR).contiguous()


def align_tokens(log_probs: Tensor, tokens: Sequence[int]) -> list[TokenSpan] | None:
    """The frames of each token on the best CTC path of `tokens` through `log_probs` `(T, V)` (blank = 0).

    Returns one (first frame, last frame + 1) per token, in order, or None when the tokens cannot fit the T
    frames (`ctc_min_frames(tokens) > T`). An empty token list gives [].
    """
    x = _prepare(log_probs)
    ids = _check_tokens(tokens, x.size(1))
    if not ids:
        return []
    if ctc_min_frames(ids) > x.size(0):
        return None
    targets = torch.tensor([ids], dtype=torch.int32, device=x.device)
    with warnings.catch_warnings():
        # Some torchaudio releases (2.8) warn on every call that the function's home will move; 2.11 does not.
        warnings.filterwarnings("ignore", message=r"(?i).*deprecat", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        path, _ = AF.forced_align(x[None], targets, blank=BLANK_ID)
    labels = path[0].cpu()
    # A token starts where the path leaves blank or changes label; equal tokens are always split by a blank.
    prev = torch.cat([labels.new_full((1,), BLANK_ID), labels[:-1]])
    nxt = torch.cat([labels[1:], labels.new_full((1,), BLANK_ID)])
    starts = ((labels != BLANK_ID) & (labels != prev)).nonzero().flatten().tolist()
    ends = ((labels != BLANK_ID) & (labels != nxt)).nonzero().flatten().tolist()
    if len(starts) != len(ids) or labels[starts].tolist() != ids:
        return None  # cannot happen for a feasible sequence with finite scores; kept as a guard
    return [(float(s), float(e + 1)) for s, e in zip(starts, ends)]


def uniform_token_spans(num_tokens: int, num_frames: int) -> list[TokenSpan]:
    """`num_tokens` equal, back-to-back spans covering frames [0, `num_frames`) (the fallback without a path)."""
    step = num_frames / num_tokens if num_tokens else 0.0
    return [(k * step, (k + 1) * step) for k in range(num_tokens)]


def align_words(
    log_probs: Tensor, tokens: Sequence[int], tokenizer: Tokenizer, frame_shift: float, offset: float = 0.0
) -> list[Word]:
    """Timed words of one utterance (see the module docstring).

    log_probs:   `(T, V)` CTC log-probabilities of the utterance's valid frames (blank id 0), any float dtype.
    tokens:      the hypothesis, without BOS / EOS / blank.
    frame_shift: seconds between two frames of `log_probs` (the encoder's, e.g. 0.04).
    offset:      seconds added to every time (where the utterance starts in a longer recording).

    Returns the words in order, with start <= end and times that never decrease. Without a CTC path (too few
    frames) the words are spread over the frames in proportion to their tokens.
    """
    if frame_shift <= 0:
        raise ValueError(f"frame_shift must be positive, got {frame_shift}")
    ids = [int(t) for t in tokens]
    spans = align_tokens(log_probs, ids)
    if spans is None:
        spans = uniform_token_spans(len(ids), log_probs.size(0))
    words = []
    for first, last in tokenizer.word_boundaries(ids):
        text = tokenizer.decode(ids[first : last + 1]).strip()
        if text:
            start, end = spans[first][0], spans[last][1]
            words.append(Word(text, offset + start * frame_shift, offset + end * frame_shift))
    return words


def align_words_batch(
    log_probs: Tensor, lengths: Tensor | Sequence[int] | None, token_lists: Sequence[Sequence[int]],
    tokenizer: Tokenizer, frame_shift: float, offsets: Sequence[float] | None = None,
) -> list[list[Word]]:
    """`align_words` for a batch: log_probs `(B, T, V)`, the valid frames of each input `lengths` `(B,)` (None:
    all T), one hypothesis per input, and optionally where each input starts (`offsets` (B,), seconds)."""
    b, t, _ = log_probs.shape
    if len(token_lists) != b or (offsets is not None and len(offsets) != b):
        raise ValueError(f"{b} inputs but {len(token_lists)} token lists"
                         + ("" if offsets is None else f" and {len(offsets)} offsets"))
    frames = [t] * b if lengths is None else [min(int(n), t) for n in lengths]
    x = log_probs.detach().cpu()
    return [
        align_words(x[i, : frames[i]], token_lists[i], tokenizer, frame_shift, 0.0 if offsets is None else offsets[i])
        for i in range(b)
    ]
