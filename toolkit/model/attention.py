"""`attention`: scaled dot-product attention for every model here, with the kernel chosen for the device.

On CPU the plain "math" kernel (matmul, softmax, matmul, each differentiated on its own) is used: PyTorch's fused
(flash) kernel has a costly backward for the short, many-headed sequences of speech and caption batches, so the
math kernel gives faster training steps (`tests/benchmarks/attention_kernel.py`; figures in README.md). On GPU
the fused kernels are the fast ones and PyTorch's own choice stands.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0) -> Tensor:
    """`F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p)`: q `(B, H, U, Dh)`, k / v `(B, H, S, Dh)`,
    attn_mask broadcastable to `(B, H, U, S)` (bool, True = may attend) -> `(B, H, U, Dh)`."""
    with sdpa_kernel(SDPBackend.MATH) if q.device.type == "cpu" else nullcontext():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
