"""The score terms a search adds to every next token besides the decoder's and CTC's: shallow fusion with an external
language model, a length bonus and a penalty for words outside the LM's lexicon (`DecodingOptions.lm_weight`,
`length_bonus`, `oov_penalty`).

    scorers = token_scorers(lm, options, vocab_size=V, rows=B * K, device=device)   # [] when every term is off
    while ...:
        extra = sum(s.scores(last) for s in scorers)   # (N, V): lm_weight * log p_lm(c | h) + length_bonus (c != EOS)
        ...                                            #         - oov_penalty * (c completes a word the lexicon lacks)
        for s in scorers:
            s.select(rows)                             # the surviving hypotheses, as DecoderState.select

A scorer advances exactly like the decoder: `scores(last)` reads each hypothesis's last token `(N,)` (BOS first) and
returns the float64 scores `(N, V)` of its possible next tokens; `select` then follows the beams' reordering and
pruning. The lexicon's word state (`toolkit.lm.lexicon.LexiconScorer`) is one of them.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from toolkit.decode.options import DecodingOptions
from toolkit.lm.model import LanguageModel
from toolkit.model.base import EOS_ID

__all__ = ["LMScorer", "LengthBonus", "TokenScorer", "token_scorers"]


class TokenScorer(Protocol):
    """A score term over the next token of N hypotheses that follows them through a search."""

    def scores(self, last: Tensor) -> Tensor:
        """Read the last token `(N,)` of each hypothesis; return `(N, V)` float64 scores of its next tokens."""
        ...

    def select(self, rows: Tensor) -> None:
        """Keep hypotheses `rows` `(N',)` (an index into the current N; may repeat)."""
        ...


class LMScorer:
    """Shallow fusion: `weight` * log p_lm(token | hypothesis), EOS included, for `rows` hypotheses that start empty."""

    def __init__(self, lm: LanguageModel, weight: float, rows: int, device: torch.device | str):
        self.lm, self.weight = lm, weight
        self.state = lm.init_state(rows, device)

    def scores(self, last: Tensor) -> Tensor:
        logp, self.state = self.lm.step(last, self.state)
        return self.weight * logp.double()

    def select(self, rows: Tensor) -> None:
        self.state = self.state.select(rows)


class LengthBonus:
    """`bonus` for every token but EOS, over a vocabulary of `vocab_size` tokens (stateless)."""

    def __init__(self, bonus: float, vocab_size: int, device: torch.device | str):
        self.row = torch.full((vocab_size,), bonus, dtype=torch.float64, device=device)
        self.row[EOS_ID] = 0.0

    def scores(self, last: Tensor) -> Tensor:
        return self.row.expand(last.size(0), -1)

    def select(self, rows: Tensor) -> None:
        pass


def token_scorers(
    lm: LanguageModel | None, options: DecodingOptions, vocab_size: int, rows: int, device: torch.device | str
) -> list[TokenScorer]:
    """The scorers `options` asks for, over `rows` hypotheses of a decoder with `vocab_size` tokens: the LM (when
    given and lm_weight > 0; not run otherwise), the length bonus, the OOV penalty (needs `lm.lexicon`). An empty
    list when every term is off: the search then runs exactly as without them."""
    scorers: list[TokenScorer] = []
    if lm is not None and options.lm_weight:
        if lm.vocab_size != vocab_size:
            raise ValueError(f"the language model has {lm.vocab_size} tokens and the decoder {vocab_size}")
        scorers.append(LMScorer(lm, options.lm_weight, rows, device))
    if options.length_bonus:
        scorers.append(LengthBonus(options.length_bonus, vocab_size, device))
    if options.oov_penalty:
        if lm is None or lm.lexicon is None:
            raise ValueError("oov_penalty needs a language model whose bundle has a lexicon (lexicon.txt)")
        if len(lm.lexicon.texts) != vocab_size:
            raise ValueError(f"the lexicon's tokenizer has {len(lm.lexicon.texts)} tokens and the decoder {vocab_size}")
        scorers.append(lm.lexicon.scorer(options.oov_penalty, rows))
    return scorers
