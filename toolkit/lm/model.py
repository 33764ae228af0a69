"""Token-level language models for shallow fusion in search.

A language model here scores token sequences written with an ASR model's tokenizer: a sentence is
BOS + tokens + EOS with the toolkit's special ids (0 padding, 1 BOS, 2 EOS, 3 unknown), so that its
probabilities can be added to the decoder's token by token.

    lm = LstmLM(LstmLMConfig(vocab_size=tok.vocab_size, hidden_dim=512))
    logits = lm(tokens)                                    # tokens (B, L) -> logits (B, L, V): teacher forcing
    state = lm.init_state(batch_size=4, device=device)     # the empty prefix
    log_probs, state = lm.step(torch.full((4,), BOS_ID), state)   # (B, V) fp32: p(next | BOS)
    state = state.select(index)                            # beams reordered / pruned, like DecoderState.select

Every model implements the `LanguageModel` interface (`vocab_size`, `init_state`, `step`), which is all that a
search needs (`toolkit.decode.fusion`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from toolkit.lm.lexicon import TokenLexicon

__all__ = ["LanguageModel", "LMState", "LstmLM", "LstmLMConfig", "LstmState"]


class LMState(ABC):
    """What a language model carries from one `step` to the next, for a batch of B prefixes."""

    @abstractmethod
    def select(self, index: Tensor) -> "LMState":
        """Keep prefixes `index` `(B',)` (beam reordering and pruning; an index may repeat)."""


class LanguageModel(nn.Module, ABC):
    """The incremental interface searches use: `init_state` for B empty prefixes, then one `step` per token.
    lexicon: the words the model's bundle lists (`toolkit.lm.lexicon`), for the search's `oov_penalty`; None when
    it lists none."""

    vocab_size: int
    lexicon: "TokenLexicon | None" = None

    @abstractmethod
    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> LMState:
        """The state of `batch_size` empty prefixes (nothing read yet; feed BOS first)."""

    @abstractmethod
    def step(self, tokens: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """Read one token per prefix, `tokens` `(B,)`; return log p(next token | prefix) `(B, V)` in float32 and
        the state advanced by that token."""


@dataclass
class LstmLMConfig:
    """Shape of `LstmLM`. vocab_size: the tokenizer's (special ids included); set from it when training.
    tie_weights: the output layer reuses the embedding matrix (needs embed_dim == hidden_dim)."""

    vocab_size: int = 0
    embed_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 1
    dropout: float = 0.1
    tie_weights: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 0 or min(self.embed_dim, self.hidden_dim, self.num_layers) < 1:
            raise ValueError("LM sizes (embed_dim, hidden_dim, num_layers) must be positive, vocab_size >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embed_dim != self.hidden_dim:
            raise ValueError(f"tie_weights needs embed_dim == hidden_dim (got {self.embed_dim} and {self.hidden_dim})")


@dataclass
class LstmState(LMState):
    """h, c: `(num_layers, B, hidden_dim)` hidden and cell states of every layer."""

    h: Tensor
    c: Tensor

    def select(self, index: Tensor) -> "LstmState":
        return LstmState(self.h.index_select(1, index), self.c.index_select(1, index))


class LstmLM(LanguageModel):
    """Embedding -> dropout -> LSTM (num_layers) -> dropout -> Linear to the vocabulary.

    forward(tokens `(B, L)`) -> logits `(B, L, V)` in float32: position t predicts token t + 1 (teacher forcing).
    Right padding needs no mask: an LSTM reads left to right, so padded positions never reach earlier outputs.
    """

    def __init__(self, config: LstmLMConfig):
        super().__init__()
        if config.vocab_size < 5:
            raise ValueError(f"vocab_size must cover the 4 special ids and at least one token, got {config.vocab_size}")
        self.config = config
        self.vocab_size = config.vocab_size
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        inner_dropout = config.dropout if config.num_layers > 1 else 0.0
        self.lstm = nn.LSTM(config.embed_dim, config.hidden_dim, config.num_layers, batch_first=True,
                            dropout=inner_dropout)
        self.output = nn.Linear(config.hidden_dim, config.vocab_size)
        if config.tie_weights:
            self.output.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=config.embed_dim ** -0.5)

    def _logits(self, tokens: Tensor, state: LstmState | None) -> tuple[Tensor, LstmState]:
        x = self.dropout(self.embed(tokens))
        y, (h, c) = self.lstm(x, None if state is None else (state.h, state.c))
        return self.output(self.dropout(y)).float(), LstmState(h, c)

    def output_layers(self) -> list[nn.Module]:
        """The layer that maps to the vocabulary (`toolkit.train.optim` keeps it on AdamW)."""
        return [self.output]

    def forward(self, tokens: Tensor) -> Tensor:
        return self._logits(tokens, None)[0]

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> LstmState:
        cfg = self.config
        zeros = torch.zeros(cfg.num_layers, batch_size, cfg.hidden_dim, device=device)
        return LstmState(zeros, zeros.clone())

    def step(self, tokens: Tensor, state: LMState) -> tuple[Tensor, LstmState]:
        if not isinstance(state, LstmState):
            raise TypeError(f"LstmLM.step needs an LstmState, got {type(state).__name__}")
        logits, state = self._logits(tokens[:, None], state)
        return logits[:, 0].log_softmax(-1), state

    def extra_repr(self) -> str:
        return f"parameters={sum(p.numel() for p in self.parameters()):,}"

