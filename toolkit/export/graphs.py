"""The networks of a trained model as the graphs an exported folder holds: plain tensors in, plain tensors out.

Each wrapper reuses the model's own layers, so an exported graph computes what the PyTorch model does; what it
changes is the interface: no dataclasses, no Python-side state, and the decoder's caches as explicit inputs and
outputs, one tensor per layer (a stacked cache would be split and re-stacked, i.e. copied whole, at every step),
so that a runtime without PyTorch can drive a search.

    SpeechEncoderGraph   audio (B, N) float32, audio_lengths (B,) int64
                         -> memory (B, T, D), memory_lengths (B,) int64[, ctc_log_probs (B, T, V) float32]
    ImageEncoderGraph    images (B, 3, H, W) float32, normalised as the model's preprocessing does
                         -> memory (B, S, D), memory_lengths (B,) int64
    DecoderInitGraph     memory (B, S, D), memory_lengths (B,) -> cross_k_0, cross_v_0, ..., cross_k_{L-1},
                         cross_v_{L-1}, each (B, H, S, Dh)
    DecoderStepGraph     tokens (B, U) int64, memory_lengths (B,), then per layer l: self_k_l, self_v_l (B, H, t, Dh)
                         of the t tokens read so far, cross_k_l, cross_v_l -> logits (B, U, V) float32, then per
                         layer new_self_k_l, new_self_v_l (B, H, t+U, Dh)
    CTCHeadGraph         memory (B, T, D) -> ctc_log_probs (B, T, V) float32
    LstmLMStepGraph      tokens (B,) int64, h, c (L, B, H) -> log_probs (B, V) float32, h, c
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.lm.model import LstmLM, LstmState
from toolkit.model.base import EncoderDecoder, lengths_to_padding_mask
from toolkit.model.ctc import CTCHead
from toolkit.model.decoder import TransformerDecoder


class SpeechEncoderGraph(nn.Module):
    """Front end + encoder (+ CTC head): raw 16 kHz audio and its lengths -> memory, lengths (, CTC log-probs)."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.encoder = model.encoder
        self.ctc_head = model.ctc_head

    def forward(self, audio: Tensor, audio_lengths: Tensor) -> tuple[Tensor, ...]:
        out = self.encoder(audio, audio_lengths)
        if self.ctc_head is None:
            return out.memory, out.lengths
        return out.memory, out.lengths, self.ctc_head(out.memory)


class ImageEncoderGraph(nn.Module):
    """Image encoder: a normalised image batch -> memory and its (full) lengths."""

    def __init__(self, model: EncoderDecoder):
        super().__init__()
        self.encoder = model.encoder

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.encoder(images)
        return out.memory, out.lengths


class CTCHeadGraph(nn.Module):
    def __init__(self, ctc_head: CTCHead):
        super().__init__()
        self.ctc_head = ctc_head

    def forward(self, memory: Tensor) -> Tensor:
        return self.ctc_head(memory)


class DecoderInitGraph(nn.Module):
    """Every layer's cross-attention keys and values of the memory, computed once per input (`init_state`)."""

    def __init__(self, decoder: TransformerDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, memory: Tensor, memory_lengths: Tensor) -> tuple[Tensor, ...]:
        mask = lengths_to_padding_mask(memory_lengths, memory.size(1))
        memory = memory.masked_fill(mask[:, :, None], 0.0)
        return tuple(t for layer in self.decoder.layers for t in layer.cross_attn.project_kv(memory))


class DecoderStepGraph(nn.Module):
    """`TransformerDecoder.forward` with the caches as tensors: U new tokens after the t that the caches hold.
    `caches`: per layer self_k, self_v, cross_k, cross_v (4 L tensors, in that order)."""

    def __init__(self, decoder: TransformerDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: Tensor, memory_lengths: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        d = self.decoder
        u, t = tokens.size(1), caches[0].size(2)
        positions = torch.arange(u, device=tokens.device) + t
        x = d.embed(tokens) + d.pos.index_select(0, positions)
        causal = torch.arange(t + u, device=tokens.device)[None, :] <= positions[:, None]  # (U, t+U)
        memory_allowed = ~lengths_to_padding_mask(memory_lengths, caches[2].size(2))[:, None, None, :]
        new = []
        for i, layer in enumerate(d.layers):
            self_k, self_v, cross_k, cross_v = caches[4 * i : 4 * i + 4]
            x, kv, _ = layer(x, (self_k, self_v), causal, (cross_k, cross_v), memory_allowed, False)
            new += kv
        x = d.norm(x)
        weight = d.embed.weight if d.output is None else d.output.weight
        return ((x @ weight.T).float(), *new)


class LstmLMStepGraph(nn.Module):
    """`LstmLM.step` with its state as tensors."""

    def __init__(self, lm: LstmLM):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_probs, state = self.lm.step(tokens, LstmState(h, c))
        return log_probs, state.h, state.c
