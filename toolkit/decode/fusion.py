"""The score terms a search adds to the attention decoder's log-probabilities besides CTC: shallow fusion with an
external language model, a length bonus and a penalty for words outside the LM's lexicon
(`DecodingOptions.lm_weight`, `length_bonus`, `oov_penalty`).

    fusion = ShallowFusion.create(lm, options, rows=B * K, device=device)   # None when every term is off
    while ...:
        logp = logp + fusion.scores(last, V)    # (N, V): lm_weight * log p_lm(c | h) + length_bonus (c != EOS)
                                                #         - oov_penalty * (c completes a word the lexicon lacks)
        ...
        fusion.select(rows)                     # the surviving hypotheses, as DecoderState.select

The LM advances exactly like the decoder: `scores(last, V)` reads each hypothesis's last token (BOS first) and
returns the scores of its possible next tokens; `select` then follows the beams' reordering and pruning. So does
the lexicon's word state (`toolkit.lm.lexicon.LexiconScorer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit.decode.options import DecodingOptions
from toolkit.lm.model import LanguageModel
from toolkit.model.base import EOS_ID


class ShallowFusion:
    """lm_weight * log p_lm(token | hypothesis) (EOS included) + length_bonus (EOS excluded) - oov_penalty per word
    outside the LM's lexicon, for N hypotheses.

    lm: a `LanguageModel` over the same token ids as the decoder (or None: the length bonus only); with
    oov_penalty > 0 it must carry a lexicon (`lm.lexicon`, from its bundle's lexicon.txt).
    """

    def __init__(self, lm: LanguageModel | None, lm_weight: float, length_bonus: float, rows: int,
                 device: torch.device | str, oov_penalty: float = 0.0):
        self.lm = lm if lm_weight else None
        self.lm_weight = lm_weight
        self.length_bonus = length_bonus
        self.state = self.lm.init_state(rows, device) if self.lm is not None else None
        self.lexicon = None
        if oov_penalty:
            if lm is None or lm.lexicon is None:
                raise ValueError("oov_penalty needs a language model whose bundle has a lexicon (lexicon.txt)")
            self.lexicon = lm.lexicon.scorer(oov_penalty, rows)

    @classmethod
    def create(cls, lm: LanguageModel | None, options: DecodingOptions, rows: int,
               device: torch.device | str) -> "ShallowFusion | None":
        """The fusion that `options` asks for with `lm`, over `rows` initial hypotheses; None when there is nothing
        to add (no LM or lm_weight 0, no length bonus, no OOV penalty): the search then runs exactly as without."""
        if (lm is None or not options.lm_weight) and not options.length_bonus and not options.oov_penalty:
            return None
        return cls(lm, options.lm_weight, options.length_bonus, rows, device, options.oov_penalty)

    @torch.no_grad()
    def scores(self, last: Tensor, vocab_size: int) -> Tensor:
        """`(N, V)` float64 scores of the V = `vocab_size` next tokens of N hypotheses whose last token is `last`
        `(N,)`; the LM (if any) reads `last`."""
        if self.lm is None:
            extra = torch.zeros(last.size(0), vocab_size, dtype=torch.float64, device=last.device)
        else:
            logp, self.state = self.lm.step(last, self.state)
            if logp.size(-1) != vocab_size:
                raise ValueError(f"the language model has {logp.size(-1)} tokens and the decoder {vocab_size}")
            extra = self.lm_weight * logp.double()
        if self.length_bonus:
            bonus = torch.full((vocab_size,), self.length_bonus, dtype=torch.float64, device=last.device)
            bonus[EOS_ID] = 0.0
            extra = extra + bonus
        if self.lexicon is not None:
            if len(self.lexicon.texts) != vocab_size:
                raise ValueError(f"the lexicon's tokenizer has {len(self.lexicon.texts)} tokens and the decoder "
                                 f"{vocab_size}")
            extra = extra + self.lexicon.scores(last)
        return extra

    def select(self, rows: Tensor) -> None:
        """Keep hypotheses `rows` `(N',)` (an index into the current N; may repeat)."""
        if self.state is not None:
            self.state = self.state.select(rows)
        if self.lexicon is not None:
            self.lexicon.select(rows)
