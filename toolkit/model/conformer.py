"""Conformer (Gulati et al. 2020, arXiv:2005.08100): convolution-augmented Transformer blocks.

    Conformer(d_model, num_layers, num_heads, ffn_dim, kernel_size, dropout)
    forward(x (B, T, D), lengths (B,)) -> (B, T, D), padded frames set to 0

Each block is pre-LayerNorm and macaron-style:
    x = x + 1/2 FFN(x);  x = x + MHSA(x);  x = x + Conv(x);  x = x + 1/2 FFN(x);  x = LayerNorm(x)

Padding never reaches a valid frame: attention masks padded keys, and the convolution module zeroes padded
frames before its depthwise convolution (torchaudio's module does not, so its real frames near the end of a
short item depend on how much padding the batch adds). With `conv_norm="batch_norm"` the statistics are
computed over valid frames only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.model.attention import attention
from toolkit.model.base import lengths_to_padding_mask

ConvNorm = Literal["layer_norm", "batch_norm"]


class FeedForward(nn.Module):
    """Pre-LN position-wise feed-forward with Swish: `(B, T, D) -> (B, T, D)`."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, ffn_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-LN multi-head self-attention with a key padding mask (`toolkit.model.attention`)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """x: `(B, T, D)`, attn_mask: `(B, 1, 1, T)` bool, True where a key may be attended -> `(B, T, D)`."""
        batch, frames, dim = x.shape
        q, k, v = self.qkv(self.norm(x)).view(batch, frames, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, attn_mask, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, frames, dim)
        return self.out_dropout(self.out(y))


class ConvolutionModule(nn.Module):
    """LN -> pointwise conv + GLU -> (zero padding) -> depthwise conv -> LN/BN -> Swish -> pointwise conv.

    `(B, T, D)` + padding mask `(B, T)` -> `(B, T, D)`; valid outputs depend on valid inputs only.
    """

    def __init__(self, d_model: int, kernel_size: int, dropout: float, norm: ConvNorm = "layer_norm"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if norm not in ("layer_norm", "batch_norm"):
            raise ValueError(f"conv norm must be 'layer_norm' or 'batch_norm', got {norm!r}")
        self.layer_norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.norm_kind = norm
        self.norm = nn.LayerNorm(d_model) if norm == "layer_norm" else nn.BatchNorm1d(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        # Computed in the (B, T, D) layout throughout: the pointwise convolutions are linear maps over D (their
        # (out, in, 1) kernels used as (out, in) matrices), and the depthwise one is a 2-D convolution over a
        # (B, D, 1, T) view whose memory is (B, T, D), which oneDNN runs channels-last: the same sums as `Conv1d`
        # over (B, D, T), without the transposed copies, and several times faster. It runs in fp32 whatever the
        # autocast: as fast as bf16 there, and oneDNN's bf16 kernel for this layout (torch 2.14) never returns on
        # 2 threads for some lengths (e.g. 64, 98, 100 frames).
        y = F.linear(self.layer_norm(x), self.pointwise_in.weight[..., 0], self.pointwise_in.bias)
        y = F.glu(y, dim=-1)  # (B, T, D)
        y = y.masked_fill(padding_mask[:, :, None], 0.0)  # padded frames must not enter the depthwise kernel
        dw = self.depthwise
        with torch.autocast(y.device.type, enabled=False):
            z = F.conv2d(y.float().transpose(1, 2)[:, :, None, :], dw.weight.float()[:, :, None, :],
                         dw.bias.float(), padding=(0, dw.padding[0]), groups=dw.groups)  # (B, D, 1, T)
        y = z[:, :, 0, :].transpose(1, 2).to(y.dtype)  # (B, T, D)
        if self.norm_kind == "layer_norm":
            y = self.norm(y)
        else:  # batch statistics from valid frames only
            valid = ~padding_mask
            frames = y[valid]  # (num_valid, D)
            if frames.size(0) > 0:
                y = y.masked_scatter(valid[:, :, None], self.norm(frames).to(y.dtype))
        y = F.linear(F.silu(y), self.pointwise_out.weight[..., 0], self.pointwise_out.bias)
        return self.dropout(y)


class ConformerBlock(nn.Module):
    """One Conformer block: `(B, T, D)` -> `(B, T, D)`."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, kernel_size: int = 31,
                 dropout: float = 0.1, conv_norm: ConvNorm = "layer_norm"):
        super().__init__()
        self.ffn1 = FeedForward(d_model, ffn_dim, dropout)
        self.attn = SelfAttention(d_model, num_heads, dropout)
        self.conv = ConvolutionModule(d_model, kernel_size, dropout, conv_norm)
        self.ffn2 = FeedForward(d_model, ffn_dim, dropout)
        self.final_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, padding_mask: Tensor, attn_mask: Tensor) -> Tensor:
        """x: `(B, T, D)`; padding_mask: `(B, T)` True at padding; attn_mask: `(B, 1, 1, T)` True = attend."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x, attn_mask)
        x = x + self.conv(x, padding_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class Conformer(nn.Module):
    """A stack of `num_layers` Conformer blocks over a padded batch."""

    def __init__(self, d_model: int, num_layers: int, num_heads: int, ffn_dim: int, kernel_size: int = 31,
                 dropout: float = 0.1, conv_norm: ConvNorm = "layer_norm"):
        super().__init__()
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, num_heads, ffn_dim, kernel_size, dropout, conv_norm) for _ in range(num_layers)
        )

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: `(B, T, D)`, lengths: `(B,)` valid frames -> `(B, T, D)` with padded frames set to 0."""
        padding_mask = lengths_to_padding_mask(lengths.to(x.device), x.size(1))
        # An empty item would mask every key (NaN softmax): let it attend everywhere; its output is zeroed.
        keep = ~padding_mask | (lengths.to(x.device) == 0)[:, None]
        attn_mask = keep[:, None, None, :]
        for block in self.blocks:
            x = block(x, padding_mask, attn_mask)
        return x.masked_fill(padding_mask[:, :, None], 0.0)
