"""The encoder-decoder contract shared by every modality (Dive into Deep Learning §10.6).

    Encoder.forward(x, lengths)            -> EncoderOutput(memory (B, S, D), lengths (B,))
    Decoder.init_state(enc_out)            -> DecoderState of the B inputs
    Decoder.forward(tokens (B, U), state)  -> (logits (B, U, V), a new state advanced by U tokens)
    DecoderState.select(index (N,))        -> a new state of rows `index` (beam search reorders and prunes)
    Decoder.max_len                        -> most tokens, BOS and EOS included, one sequence may hold

Masks are explicit: `lengths` give the number of valid positions of each item, and
`lengths_to_padding_mask` turns them into a `(B, S)` bool mask that is True at padded positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.text.tokenizer import BLANK_ID, BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: F401 - the shared special ids

if TYPE_CHECKING:
    from toolkit.model.factory import ModelConfig


def lengths_to_padding_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """`(B,)` lengths -> `(B, T)` bool mask, True where a position is padding."""
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] >= lengths[:, None]


@dataclass
class EncoderOutput:
    """What every encoder returns.

    memory:  `(B, S, D)` encoded sequence (image positions or audio frames).
    lengths: `(B,)` int64 number of valid positions of each item; positions past it are padding.
    grid:    `(H', W')` of an image encoder's feature map, whose positions `memory` holds row-major
             (S = H'W'); None for sequences (audio).
    """

    memory: Tensor
    lengths: Tensor
    grid: tuple[int, int] | None = None

    @property
    def padding_mask(self) -> Tensor:
        """`(B, S)` bool, True at padded positions."""
        return lengths_to_padding_mask(self.lengths, self.memory.size(1))


class Encoder(nn.Module):
    """Base class of encoders: maps a padded input batch and its lengths to an `EncoderOutput`.

    Subclasses set `d_model` (width of `memory`) and implement `forward`.
    """

    d_model: int

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class DecoderState(ABC):
    """What a decoder carries from one `forward` to the next (a key/value cache, a recurrent state), for N
    hypotheses. Neither `forward` nor `select` changes a state: each returns a new one."""

    @abstractmethod
    def select(self, index: Tensor) -> "DecoderState":
        """The state of hypotheses `index` `(N',)`, rows of this one (beam reordering and pruning; may repeat)."""

    def select_beams(self, index: Tensor) -> "DecoderState":
        """`select` for an `index` that only moves rows among the copies of one input (the beams of an input): what
        the state holds per input (e.g. cross-attention keys and values) may then be kept as it is."""
        return self.select(index)


class Decoder(nn.Module, ABC):
    """Base class of autoregressive decoders conditioned on an encoder's output; searches rely on this alone.

    vocab_size: V, the width of the logits.
    search_threads: PyTorch threads for a search's own tensor ops over this decoder (None: as they are). A decoder
    whose networks run elsewhere (onnxruntime) sets 1: the search's small ops then leave the cores to the runtime
    instead of waking PyTorch's thread pool between its calls.
    """

    vocab_size: int
    search_threads: int | None = None

    @property
    @abstractmethod
    def max_len(self) -> int:
        """Most tokens one sequence may hold, BOS and EOS included: `forward` refuses to go past it."""

    @abstractmethod
    def init_state(self, enc_out: EncoderOutput) -> DecoderState:
        """The state of B empty sequences conditioned on `enc_out` (memory `(B, S, D)`, lengths `(B,)`)."""

    @abstractmethod
    def forward(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Read `tokens` `(B, U)` after what `state` has read; return the next-token logits `(B, U, V)` and a new
        state that has read them too (`state` itself is left as it was)."""


class EncoderDecoder(nn.Module):
    """An encoder, an optional attention decoder and an optional CTC head (icefall's AsrModel shape).

    config: the `ModelConfig` that describes the model (`build_model` passes the one it built from); bundles save
    it, searches read its `vocab_size`.
    forward(x, lengths, tokens) -> decoder logits `(B, U, V)`, exactly the seed's `EncoderDecoder.forward`.
    """

    def __init__(
        self, encoder: Encoder, decoder: Decoder | None = None, ctc_head: nn.Module | None = None, *,
        config: ModelConfig,
    ):
        super().__init__()
        if decoder is None and ctc_head is None:
            raise ValueError("an EncoderDecoder needs an attention decoder, a CTC head, or both")
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.ctc_head = ctc_head

    def encode(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        return self.encoder(x, lengths)

    def output_layers(self) -> list[nn.Module]:
        """The layers that map to the vocabulary (CTC head, untied decoder output), which optimizers treat like
        embeddings (`toolkit.train.optim`)."""
        return [m for m in (self.ctc_head, getattr(self.decoder, "output", None)) if m is not None]

    def forward(self, x: Tensor, lengths: Tensor | None, tokens: Tensor) -> Tensor:
        if self.decoder is None:
            raise RuntimeError("this model has no attention decoder; use encode() and ctc_head")
        enc_out = self.encoder(x, lengths)
        state = self.decoder.init_state(enc_out)
        return self.decoder(tokens, state)[0]

    def loss(
        self,
        x: Tensor,
        lengths: Tensor | None,
        targets: Tensor,
        target_lengths: Tensor,
        ctc_weight: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> dict[str, Tensor]:
        """Joint loss `ctc_weight * CTC + (1 - ctc_weight) * attention`, each summed over tokens / B.

        targets: `(B, U)` token ids without BOS/EOS, padded past `target_lengths` `(B,)`.
        Returns {"loss", "att_loss" (if decoder), "ctc_loss" (if CTC head)}; attention loss is computed
        from fp32 logits, CTC in fp32.
        """
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        enc_out = self.encoder(x, lengths)
        losses: dict[str, Tensor] = {}
        total = enc_out.memory.new_zeros((), dtype=torch.float32)
        if self.decoder is not None and ctc_weight < 1.0:
            tokens_in, tokens_out = add_bos_eos(targets, target_lengths)
            logits = self.decoder(tokens_in, self.decoder.init_state(enc_out))[0]
            att = F.cross_entropy(
                logits.transpose(1, 2), tokens_out, ignore_index=-100, label_smoothing=label_smoothing, reduction="sum"
            ) / targets.size(0)
            losses["att_loss"] = att
            total = total + (1.0 - ctc_weight) * att
        if self.ctc_head is not None and ctc_weight > 0.0:
            ctc = self.ctc_head.loss(enc_out, targets, target_lengths)
            losses["ctc_loss"] = ctc
            total = total + ctc_weight * ctc
        if not losses:
            raise ValueError("ctc_weight selects a head this model does not have")
        losses["loss"] = total
        return losses


def add_bos_eos(targets: Tensor, target_lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher-forcing pair from padded targets `(B, U)`.

    Returns decoder input `(B, U+1)` = [BOS, y...] (padding = PAD_ID) and output `(B, U+1)` = [y..., EOS]
    with -100 (ignored by cross-entropy) past each EOS.
    """
    b, u = targets.shape
    valid = ~lengths_to_padding_mask(target_lengths, u)
    y = targets.masked_fill(~valid, PAD_ID)
    tokens_in = torch.cat([y.new_full((b, 1), BOS_ID), y], dim=1)
    tokens_out = torch.cat([y.masked_fill(~valid, -100), y.new_full((b, 1), -100)], dim=1)
    tokens_out.scatter_(1, target_lengths[:, None].long(), EOS_ID)
    return tokens_in, tokens_out
