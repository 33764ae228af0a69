"""A CTC head that any encoder can carry: a linear layer over the memory, blank = token id 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.model.base import BLANK_ID, EncoderOutput


class CTCHead(nn.Module):
    """memory `(B, T, D)` -> log-probabilities `(B, T, V)`, always computed in fp32."""

    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, memory: Tensor) -> Tensor:
        logits = self.proj(self.dropout(memory))
        return logits.float().log_softmax(-1)

    def loss(self, enc_out: EncoderOutput, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """Sum of per-utterance CTC losses divided by the batch size, in fp32.

        targets: `(B, U)` token ids padded with anything past `target_lengths` `(B,)`.
        Utterances too short for their transcript give an infinite loss, which is zeroed (`zero_infinity`).
        """
        with torch.autocast(device_type=enc_out.memory.device.type, enabled=False):
            log_probs = self(enc_out.memory.float())
            loss = F.ctc_loss(
                log_probs.transpose(0, 1),
                targets,
                enc_out.lengths,
                target_lengths,
                blank=BLANK_ID,
                reduction="sum",
                zero_infinity=True,
            )
        return loss / targets.size(0)
