"""Speech encoder: log-mel front end, SpecAugment, Conv2d subsampling and the Conformer, on tiny configs."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.errors import ConfigError
from toolkit.model.audio_encoders import ConformerEncoder, Conv2dSubsampling
from toolkit.model.audio_frontend import FeatureStats, LogMelFrontend, SpecAugment
from toolkit.model.base import lengths_to_padding_mask
from toolkit.model.conformer import ConvolutionModule

SR = 16000


def tiny_encoder(**overrides) -> ConformerEncoder:
    cfg = dict(d_model=64, num_layers=2, num_heads=4, ffn_dim=128, kernel_size=31, dropout=0.0)
    cfg.update(overrides)
    return ConformerEncoder(ConformerEncoder.Config(**cfg))


def audio_batch(seconds: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded `(B, N)` batch of sines + noise, and `(B,)` lengths in samples."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * SR) for s in seconds])
    x = torch.zeros(len(seconds), int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        t = torch.arange(n) / SR
        freq = 200 + 600 * torch.rand((), generator=g)
        x[i, :n] = 0.5 * torch.sin(2 * math.pi * freq * t) + 0.05 * torch.randn(n, generator=g)
    return x, lengths


def closed_form_length(num_samples: int, n_fft: int = 400, hop: int = 160) -> int:
    frames = max((num_samples - n_fft) // hop + 1, 0)
    return max(((frames - 1) // 2 - 1) // 2, 0)


def test_shapes_and_lengths():
    torch.manual_seed(0)
    enc = tiny_encoder().eval()
    x, n = audio_batch([1.5, 0.5, 1.037])
    out = enc(x, n)
    expected = [closed_form_length(k) for k in n.tolist()]
    assert out.memory.shape == (3, max(expected), 64)
    assert out.lengths.dtype == torch.int64
    assert out.lengths.tolist() == expected == enc.output_lengths(n).tolist()
    assert enc.frame_shift_seconds == pytest.approx(0.04)
    assert out.grid is None  # a sequence, not an image grid
    assert (out.memory[out.padding_mask] == 0).all()
    # lengths=None means every item is full length
    assert enc(x[:1]).lengths.tolist() == [expected[0]]
    # subsampling lengths are exact for every input length, including the tiny ones
    frames = torch.arange(0, 40)
    sub = Conv2dSubsampling(80, 16)
    for t in frames.tolist():
        got = sub(torch.randn(1, max(t, 1), 80), torch.tensor([t]))
        want = max(((t - 1) // 2 - 1) // 2, 0)
        assert Conv2dSubsampling.output_lengths(torch.tensor([t])).item() == want
        if t >= 7:
            assert got[0].size(1) == want


@pytest.mark.parametrize("conv_norm", ["layer_norm", "batch_norm"])
def test_padded_batch_matches_items_alone(conv_norm):
    """The key test: padding (here 1 s = 25 memory frames) never changes an item's valid frames."""
    torch.manual_seed(0)
    enc = tiny_encoder(conv_norm=conv_norm)
    x, n = audio_batch([1.5, 0.5, 0.93], seed=1)
    if conv_norm == "batch_norm":  # give the running statistics non-trivial values
        with torch.no_grad():
            for _ in range(3):
                enc(x, n)
    enc.eval()
    with torch.no_grad():
        batch = enc(x, n)
        for i, k in enumerate(n.tolist()):
            alone = enc(x[i : i + 1, :k])
            length = int(alone.lengths[0])
            assert length == int(batch.lengths[i]) > 0
            torch.testing.assert_close(batch.memory[i, :length], alone.memory[0, :length], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["layer_norm", "batch_norm"])
def test_convolution_module_ignores_padding_content(norm):
    torch.manual_seed(0)
    conv = ConvolutionModule(32, kernel_size=7, dropout=0.0, norm=norm).train()
    lengths = torch.tensor([12, 5])
    mask = lengths_to_padding_mask(lengths, 12)
    x = torch.randn(2, 12, 32)
    garbage = x.masked_fill(mask[:, :, None], 1e3)
    valid = ~mask
    torch.testing.assert_close(conv(x, mask)[valid], conv(garbage, mask)[valid])


def test_spec_augment_eval_identity_and_train_masks():
    aug = SpecAugment(freq_masks=2, freq_mask_width=10, time_masks=4, time_mask_ratio=0.2)
    lengths = torch.tensor([100, 40, 0])
    x = torch.rand(3, 100, 40) + 1.0  # strictly positive, so a 0 is a mask
    pad = lengths_to_padding_mask(lengths, 100)
    x = x.masked_fill(pad[:, :, None], 0.0)
    aug.eval()
    assert torch.equal(aug(x, lengths), x)

    aug.train()
    torch.manual_seed(123)
    y = aug(x, lengths)
    torch.manual_seed(123)
    assert torch.equal(aug(x, lengths), y)  # reproducible with a seed
    assert (y[pad] == 0).all()  # padded frames untouched (zero)
    assert not torch.equal(y, x)
    masked = (y == 0) & ~pad[:, :, None]
    for i, k in enumerate(lengths.tolist()):
        m = masked[i, :k]
        if k == 0:
            continue
        time_masked = m.all(dim=1)  # whole frames masked
        freq_masked = m.all(dim=0)  # whole bins masked
        # every masked value lies in a masked frame or a masked bin, and no more than the limits allow
        assert torch.equal(m, time_masked[:, None] | freq_masked[None, :])
        assert int(time_masked.sum()) <= 4 * int(0.2 * k)
        assert int(freq_masked.sum()) <= 2 * 10
    # time masks scale with each item's own length: the 40-frame item has spans of at most 8 frames
    torch.manual_seed(0)
    spans = []
    for _ in range(50):
        only_time = SpecAugment(freq_masks=0, time_masks=1, time_mask_ratio=0.2).train()
        spans.append(int((only_time(x, lengths)[1, :40] == 0).all(dim=1).sum()))
    assert max(spans) <= 8 and max(spans) > 0


def test_frontend_fp32_under_autocast():
    torch.manual_seed(0)
    x, n = audio_batch([1.0, 0.6])
    frontend = LogMelFrontend()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, frames = frontend(x, n)
        assert feats.dtype == torch.float32
        enc = tiny_encoder().eval()
        out = enc(x, n)
    assert torch.isfinite(out.memory.float()).all()
    assert out.lengths.tolist() == enc.output_lengths(n).tolist()
    assert frames.tolist() == [(k - 400) // 160 + 1 for k in n.tolist()]
    # a bf16 model keeps an fp32 front end (window, filterbank, statistics)
    enc = enc.to(torch.bfloat16)
    assert all(b.dtype == torch.float32 for b in enc.frontend.buffers())
    assert enc(x, n).memory.dtype == torch.bfloat16


def test_global_normalisation_statistics():
    x, n = audio_batch([1.2, 0.5, 0.8], seed=3)
    frontend = LogMelFrontend(n_mels=40)
    feats, frames = frontend(x, n, normalize=False)
    stats = FeatureStats()
    stats.update(feats[:2], frames[:2])  # accumulates across batches
    stats.update(feats[2:], frames[2:])
    mean, std = stats.mean_std()
    valid = feats[~lengths_to_padding_mask(frames, feats.size(1))].double()
    torch.testing.assert_close(mean, valid.mean(0).float(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(std, valid.std(0, unbiased=False).float(), atol=1e-4, rtol=1e-5)

    frontend.set_normalization(mean, std)
    assert "mean" in frontend.state_dict() and "std" in frontend.state_dict()
    normed, _ = frontend(x, n)
    valid = normed[~lengths_to_padding_mask(frames, normed.size(1))]
    assert valid.mean(0).abs().max() < 1e-3
    assert (valid.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert (normed[lengths_to_padding_mask(frames, normed.size(1))] == 0).all()
    with pytest.raises(ValueError):
        frontend.set_normalization(mean, torch.zeros_like(std))


def test_per_utterance_normalisation():
    """Each item: zero mean and unit std per bin over its own valid frames, whatever the padding beside it; and
    invariant to the recording's gain (a constant in the log-mel domain), which global statistics are not."""
    x, n = audio_batch([1.2, 0.5, 0.8], seed=3)
    frontend = LogMelFrontend(n_mels=40, normalization="utterance")
    feats, frames = frontend(x, n)
    for b in range(3):
        valid = feats[b, : frames[b]].double()
        assert valid.mean(0).abs().max() < 1e-4
        assert (valid.std(0, unbiased=False) - 1).abs().max() < 1e-3
        assert (feats[b, frames[b]:] == 0).all()
        alone, _ = frontend(x[b : b + 1, : n[b]], n[b : b + 1])
        torch.testing.assert_close(alone[0], feats[b, : frames[b]], atol=1e-5, rtol=1e-5)
    louder, _ = frontend(x * 8.0, n)
    torch.testing.assert_close(louder, feats, atol=2e-3, rtol=1e-3)
    global_frontend = LogMelFrontend(n_mels=40)
    assert (global_frontend(x * 8.0, n)[0] - global_frontend(x, n)[0]).abs().max() > 1.0
    with pytest.raises(ValueError, match="normalization"):
        LogMelFrontend(normalization="per_speaker")


def test_config_validation():
    from toolkit.model.registry import create_encoder

    with pytest.raises(ConfigError, match="divisible"):
        create_encoder("conformer", d_model=65, num_heads=4)
    with pytest.raises(ConfigError, match="unknown key"):
        create_encoder("conformer", d_modle=64)
    with pytest.raises(ConfigError):
        create_encoder("conformer", conv_norm="group_norm")
    with pytest.raises(ConfigError, match="kernel_size"):
        create_encoder("conformer", kernel_size=30)
    enc = create_encoder("conformer", d_model=64, num_layers=1, num_heads=4, ffn_dim=64)
    assert isinstance(enc, ConformerEncoder) and enc.d_model == 64


def test_gradients_flow_with_padding():
    torch.manual_seed(0)
    enc = tiny_encoder(dropout=0.1).train()
    x, n = audio_batch([1.5, 0.5, 0.01])  # the last item is shorter than one frame: length 0
    out = enc(x, n)
    assert out.lengths[2] == 0
    loss = out.memory.pow(2).sum() / out.lengths.sum()
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
