"""The fast CPU paths of the model (attention in three plain steps, the Conformer convolution module in the (B, T, D)
layout) against the plain eager ones they replace: PyTorch's `F.scaled_dot_product_attention` and `nn.Conv1d` over
(B, D, T). fp32: the same numbers to rounding; bf16 autocast: within bf16 tolerance, down to a training step's
loss and gradients."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from toolkit.config import load_config
from toolkit.model import build_model, conformer, decoder
from toolkit.model.attention import attention
from toolkit.model.conformer import ConvolutionModule
from toolkit.tasks.asr import AsrExperiment

QUICK = Path(__file__).resolve().parents[1] / "recipes/synth_speech/conf/quick.yaml"


def sdpa(q, k, v, attn_mask=None, dropout_p=0.0):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def conv1d_forward(m: ConvolutionModule, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """The module as plain `Conv1d` layers over (B, D, T), the textbook form."""
    y = m.layer_norm(x).transpose(1, 2)
    y = F.glu(m.pointwise_in(y), dim=1)
    y = y.masked_fill(padding_mask[:, None, :], 0.0)
    y = m.depthwise(y).transpose(1, 2)
    if m.norm_kind == "layer_norm":
        y = m.norm(y)
    else:
        valid = ~padding_mask
        y = y.masked_scatter(valid[:, :, None], m.norm(y[valid]).to(y.dtype))
    return m.dropout(m.pointwise_out(F.silu(y).transpose(1, 2)).transpose(1, 2))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def qkv_and_mask(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, 9, 16, generator=g).to(dtype).requires_grad_() for _ in range(3))
    mask = torch.ones(3, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False  # padded keys of the second item
    return q, k, v, mask


def test_attention_matches_sdpa_in_fp32():
    q, k, v, mask = qkv_and_mask(torch.float32)
    ours, ref = attention(q, k, v, mask), sdpa(q, k, v, mask)
    assert torch.allclose(ours, ref, atol=1e-6)
    for a, b in zip(torch.autograd.grad(ours.square().sum(), (q, k, v)),
                    torch.autograd.grad(ref.square().sum(), (q, k, v))):
        assert torch.allclose(a, b, atol=1e-5)


def test_attention_matches_sdpa_in_bf16_within_rounding():
    q, k, v, mask = qkv_and_mask(torch.bfloat16)
    exact = sdpa(*(t.detach().double() for t in (q, k, v)), mask)
    ours, ref = attention(q, k, v, mask), sdpa(q, k, v, mask)
    assert ours.dtype == torch.bfloat16
    assert rel_err(ours, exact) < 0.02 and rel_err(ref, exact) < 0.02  # a few bf16 roundings (eps 2**-8)
    assert rel_err(ours, ref) < 0.02
    gq = torch.autograd.grad(ours.float().square().sum(), q)[0]
    gq_ref = torch.autograd.grad(ref.float().square().sum(), q)[0]
    assert rel_err(gq, gq_ref) < 0.03


def test_attention_with_every_key_masked_gives_zeros_like_sdpa():
    q, k, v, mask = qkv_and_mask(torch.float32)
    mask = mask.clone()
    mask[2] = False  # the third item attends to nothing (a decoder reading an empty memory)
    ours, ref = attention(q, k, v, mask), sdpa(q, k, v, mask)
    assert torch.equal(ours[2], torch.zeros_like(ours[2]))
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("norm", ["layer_norm", "batch_norm"])
def test_convolution_module_matches_conv1d(norm):
    torch.manual_seed(0)
    m = ConvolutionModule(24, 7, dropout=0.0, norm=norm)
    x = torch.randn(3, 11, 24, requires_grad=True)
    lengths = torch.tensor([11, 8, 3])
    padding_mask = torch.arange(11)[None, :] >= lengths[:, None]
    ours, ref = m(x, padding_mask), conv1d_forward(m, x, padding_mask)
    assert torch.allclose(ours, ref, atol=1e-6)
    # fp32 rounding in another summation order; batch statistics' gradients cancel, so they keep ~1e-4 of it
    for a, b in zip(torch.autograd.grad(ours.square().sum(), [x, *m.parameters()]),
                    torch.autograd.grad(ref.square().sum(), [x, *m.parameters()])):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, ref = m(x, padding_mask), conv1d_forward(m, x, padding_mask)
    assert rel_err(ours, ref) < 0.02


def test_a_training_step_gives_the_plain_paths_loss_and_gradients(monkeypatch):
    """The quick speech config's model on one padded batch: the fast paths against SDPA + Conv1d give the same loss
    and gradients, to rounding in fp32, and under bf16 autocast (as it trains) as close to the fp32 result as the
    plain paths under bf16 are."""
    exp = load_config(AsrExperiment, QUICK, [])
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(exp.model, vocab_size=32)).train()
    g = torch.Generator().manual_seed(1)
    wavs = 0.1 * torch.randn(4, 24000, generator=g)
    lengths = torch.tensor([24000, 20000, 16000, 9000])
    targets = torch.randint(4, 32, (4, 20), generator=g)
    target_lengths = torch.tensor([20, 17, 12, 6])

    def loss_and_grads(bf16: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)  # the same dropout masks (the CTC head's) on both paths
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(wavs, lengths, targets, target_lengths, ctc_weight=0.5, label_smoothing=0.1)["loss"]
        loss.float().backward()
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()])

    fast32, fast_bf16 = loss_and_grads(False), loss_and_grads(True)
    monkeypatch.setattr(conformer, "attention", sdpa)
    monkeypatch.setattr(decoder, "attention", sdpa)
    monkeypatch.setattr(ConvolutionModule, "forward", conv1d_forward)
    plain32, plain_bf16 = loss_and_grads(False), loss_and_grads(True)
    assert abs(fast32[0] - plain32[0]) < 1e-5 * plain32[0] and rel_err(fast32[1], plain32[1]) < 1e-5
    assert abs(fast_bf16[0] - plain_bf16[0]) < 2e-3 * plain32[0]
    bf16_noise = rel_err(plain_bf16[1], plain32[1])  # what bf16 does to the plain paths' gradients (~0.01)
    assert rel_err(fast_bf16[1], plain32[1]) < 1.5 * bf16_noise + 1e-3
    assert rel_err(fast_bf16[1], plain_bf16[1]) < 2 * bf16_noise + 1e-3


def test_convolution_module_returns_on_two_threads_under_bf16():
    """oneDNN's bf16 depthwise kernel for the channels-last layout never returns on 2 threads for some lengths
    (torch 2.14: 64, 98, 100 frames); the module runs that convolution in fp32. Checked in a subprocess with a
    deadline, so a regression fails instead of hanging the suite."""
    code = (
        "import torch\n"
        "from toolkit.model.conformer import ConvolutionModule\n"
        "torch.set_num_threads(2)\n"
        "m = ConvolutionModule(144, 15, dropout=0.0)\n"
        "for frames in (64, 97, 98, 100):\n"
        "    x = torch.randn(15, frames, 144, requires_grad=True)\n"
        "    with torch.autocast('cpu', dtype=torch.bfloat16):\n"
        "        y = m(x, torch.zeros(15, frames, dtype=torch.bool))\n"
        "    y.float().sum().backward()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
