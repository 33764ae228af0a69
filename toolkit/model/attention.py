"""`attention`: scaled dot-product attention for every model here, with the kernel chosen for the device.

On GPU, `F.scaled_dot_product_attention` (PyTorch's fused kernels are the fast ones there). On CPU, three plain
steps, each differentiated on its own: scores `q k^T / sqrt(Dh)` in the inputs' dtype (under bf16 autocast, a bf16
matrix product that accumulates in fp32), softmax in fp32, and the weights, rounded to the values' dtype, times the
values. PyTorch's fused CPU kernel has a costly backward for the short, many-headed sequences of speech and caption
batches, and its "math" kernel runs bf16 inputs entirely in fp32 and checks every row for full masking on each call;
these steps give the same result within bf16 rounding at about half the cost (`tests/benchmarks/attention_kernel.py`).

A query whose every key is masked (a decoder reading an empty memory) gets zero output, as PyTorch's kernels give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """Softmax attention: q `(B, H, U, Dh)`, k / v `(B, H, S, Dh)`, attn_mask broadcastable to `(B, H, U, S)` (bool,
    True = may attend), dropout on the weights -> `(B, H, U, Dh)`."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    scores = (q * q.size(-1) ** -0.5) @ k.transpose(-2, -1)  # (B, H, U, S)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    weights = scores.float().softmax(-1)
    if attn_mask is not None:
        has_key = attn_mask.any(-1, keepdim=True)
        if torch.compiler.is_exporting() or not bool(has_key.all()):  # an exported graph has no data-dependent branch
            weights = weights.masked_fill(~has_key, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights.to(v.dtype) @ v
