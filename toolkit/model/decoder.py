"""The one attention decoder that captioning and speech recognition share.

A pre-norm Transformer decoder (self-attention, cross-attention to the encoder's memory, feed-forward) with a
key/value cache: `init_state` projects the memory to cross-attention keys/values once, and every call to
`forward` returns a state with the new tokens' self-attention keys/values appended, so decoding step t costs
O(t), not O(t^2). Calling `forward` on a fresh state with a whole sequence is ordinary teacher forcing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.model.attention import attention
from toolkit.model.base import Decoder, DecoderState, EncoderOutput


@dataclass
class DecoderConfig:
    """Shape of the attention decoder; `d_model` and `vocab_size` come from the model config."""

    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_len: int = 256
    tie_embeddings: bool = True

    def __post_init__(self):
        if min(self.num_layers, self.num_heads, self.ffn_dim, self.max_len) < 1:
            raise ValueError("decoder sizes (num_layers, num_heads, ffn_dim, max_len) must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"decoder.dropout must be in [0, 1), got {self.dropout}")


KV = tuple[Tensor, Tensor]


@dataclass
class TransformerDecoderState(DecoderState):
    """Everything the Transformer decoder carries between calls, for B rows.

    memory_mask: `(B, S)` bool, True at padded memory positions.
    cross_kv:    per layer, cross-attention keys and values `(B, H, S, Dh)`, computed once from the memory.
    self_kv:     per layer, self-attention keys and values `(B, H, t, Dh)` of the t tokens decoded so far.
    offset:      t, the position of the next token.
    record_attention: when True, `attention` holds the last call's cross-attention weights `(B, U, S)`
                 averaged over heads and layers (for attention heatmaps); slower, so off by default.
    """

    memory_mask: Tensor
    cross_kv: list[KV]
    self_kv: list[KV] = field(default_factory=list)
    offset: int = 0
    record_attention: bool = False
    attention: Tensor | None = None

    def select(self, index: Tensor) -> "TransformerDecoderState":
        """Rows `index` `(B',)` of every cached tensor."""
        return replace(
            self.select_beams(index),
            memory_mask=self.memory_mask.index_select(0, index),
            cross_kv=[(k.index_select(0, index), v.index_select(0, index)) for k, v in self.cross_kv],
        )

    def select_beams(self, index: Tensor) -> "TransformerDecoderState":
        """Rows `index` `(B',)` of the self-attention cache (and recorded weights); the memory mask and the
        cross-attention cache, the same for every beam of an input, are shared with this state."""
        return replace(
            self,
            self_kv=[(k.index_select(0, index), v.index_select(0, index)) for k, v in self.self_kv],
            attention=None if self.attention is None else self.attention.index_select(0, index),
        )


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate projections, so keys/values can be cached by the caller."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def heads(self, x: Tensor) -> Tensor:
        """`(B, T, D)` -> `(B, H, T, D/H)`."""
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def project_kv(self, x: Tensor) -> KV:
        """`(B, T, D)` -> keys and values `(B, H, T, D/H)`."""
        return self.heads(self.k_proj(x)), self.heads(self.v_proj(x))

    def forward(
        self, x: Tensor, kv: KV, allowed: Tensor | None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x `(B, U, D)` attends to kv `(B, H, S, Dh)`; `allowed` broadcasts to `(B, H, U, S)`, True = may attend.

        Returns `(B, U, D)` and, if `need_weights`, the head-averaged weights `(B, U, S)`.
        """
        q = self.heads(self.q_proj(x))
        k, v = kv
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = scores.float().softmax(-1).to(q.dtype)
            out = F.dropout(weights, dropout, self.training) @ v
            avg = weights.mean(1)
        else:
            out = attention(q, k, v, allowed, dropout)
            avg = None
        b, h, u, dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, u, h * dh)), avg


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        self_kv: KV | None,
        causal: Tensor | None,
        cross_kv: KV,
        memory_allowed: Tensor,
        need_weights: bool,
    ) -> tuple[Tensor, KV, Tensor | None]:
        """x `(B, U, D)`; self_kv: cache of earlier tokens or None; returns x, the extended cache, weights."""
        h = self.self_attn_norm(x)
        k, v = self.self_attn.project_kv(h)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        x = x + self.dropout(self.self_attn(h, (k, v), causal)[0])
        h, weights = self.cross_attn(self.cross_attn_norm(x), cross_kv, memory_allowed, need_weights)
        x = x + self.dropout(h)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, (k, v), weights


class TransformerDecoder(Decoder):
    """Token embeddings + learned positions -> N decoder layers -> LayerNorm -> vocabulary logits.

    init_state(enc_out) -> TransformerDecoderState
    forward(tokens `(B, U)`, state) -> (logits `(B, U, V)` in fp32, a new state advanced by U tokens)
    """

    def __init__(self, vocab_size: int, d_model: int, config: DecoderConfig):
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.config = config
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.empty(config.max_len, d_model))
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        nn.init.normal_(self.pos, std=0.02)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, config.num_heads, config.ffn_dim, config.dropout) for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.output = None if config.tie_embeddings else nn.Linear(d_model, vocab_size, bias=False)

    @property
    def max_len(self) -> int:
        return self.config.max_len

    def init_state(self, enc_out: EncoderOutput, record_attention: bool = False) -> TransformerDecoderState:
        """Project the memory `(B, S, D)` to every layer's cross-attention keys/values, once."""
        mask = enc_out.padding_mask
        memory = enc_out.memory.masked_fill(mask[:, :, None], 0.0)  # a masked weight of 0 times NaN is NaN
        return TransformerDecoderState(
            memory_mask=mask,
            cross_kv=[layer.cross_attn.project_kv(memory) for layer in self.layers],
            record_attention=record_attention,
        )

    def forward(self, tokens: Tensor, state: TransformerDecoderState) -> tuple[Tensor, TransformerDecoderState]:
        b, u = tokens.shape
        start = state.offset
        if start + u > self.max_len:
            raise ValueError(f"decoder max_len {self.max_len} exceeded ({start + u} tokens)")
        x = self.dropout(self.embed(tokens) + self.pos[start : start + u])
        # Query i (absolute position start+i) may attend to keys 0..start+i; one new token needs no mask.
        causal = None
        if u > 1:
            q_pos = torch.arange(start, start + u, device=tokens.device)
            causal = torch.arange(start + u, device=tokens.device)[None, :] <= q_pos[:, None]
        memory_allowed = ~state.memory_mask[:, None, None, :]
        caches, weights = [], []
        for i, layer in enumerate(self.layers):
            self_kv = state.self_kv[i] if state.self_kv else None
            x, kv, w = layer(x, self_kv, causal, state.cross_kv[i], memory_allowed, state.record_attention)
            caches.append(kv)
            weights.append(w)
        x = self.norm(x)
        weight = self.embed.weight if self.output is None else self.output.weight
        logits = (x @ weight.to(x.dtype).T).float()
        attention = torch.stack(weights).mean(0) if state.record_attention else None
        return logits, replace(state, self_kv=caches, offset=start + u, attention=attention)
