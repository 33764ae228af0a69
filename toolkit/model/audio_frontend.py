"""Speech front end: waveform -> normalised log-mel features, and SpecAugment on those features.

    LogMelFrontend: waveform (B, N) + lengths in samples (B,) -> log-mel (B, T, n_mels) + frame lengths (B,),
                    normalised with global statistics (CMVN fitted on training data) or per utterance
    SpecAugment:    features (B, T, F) + lengths (B,)          -> features (B, T, F), masked in training only
    FeatureStats:   running global mean / std over the valid frames of many batches

Frames are taken without centring (`center=False`), so a valid frame only reads samples of its own item:
T = (N - n_fft) // hop + 1 frames (0 when N < n_fft). Padded frames of every output are 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

from toolkit.model.base import lengths_to_padding_mask

NORMALIZATIONS = ("global", "utterance")


def frame_lengths(num_samples: Tensor, n_fft: int, hop_length: int) -> Tensor:
    """`(B,)` waveform lengths in samples -> `(B,)` int64 number of whole `n_fft` windows every `hop_length`."""
    frames = torch.div(num_samples.long() - n_fft, hop_length, rounding_mode="floor") + 1
    return frames.clamp(min=0)


class LogMelFrontend(nn.Module):
    """Log-mel filterbank features, mean / variance normalised, always computed in fp32.

    normalization "global": `(log_mel - mean) / std` with `(n_mels,)` buffers `mean` and `std` (identity until
    `set_normalization`; saved in the model's state dict). "utterance": each item's own mean and std per bin over
    its valid frames (std floored at `min_utterance_std`), so a recording's level and fixed channel colouring (a
    gain, a microphone's or a telephone line's frequency response: constants in the log-mel domain) are removed
    whatever the training data were. The buffers, the STFT window and the mel filterbank stay fp32 even after
    `model.half()`.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        eps: float = 1e-6,
        normalization: str = "global",
        min_utterance_std: float = 1e-2,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"feature normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        self.normalization = normalization
        self.min_utterance_std = min_utterance_std
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.eps = eps
        self.mel = MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop_length, n_mels=n_mels,
            center=False, power=2.0,
        )
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def output_lengths(self, num_samples: Tensor) -> Tensor:
        """`(B,)` waveform lengths in samples -> `(B,)` int64 number of frames (frames never read past the end)."""
        return frame_lengths(num_samples, self.n_fft, self.hop_length)

    @torch.no_grad()
    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Set the global statistics: features become `(log_mel - mean) / std`. Both `(n_mels,)`, std > 0."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (self.n_mels,) or std.shape != (self.n_mels,):
            raise ValueError(f"normalisation statistics must have shape ({self.n_mels},), "
                             f"got {tuple(mean.shape)} and {tuple(std.shape)}")
        if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise ValueError("normalisation statistics must be finite, with std > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: Tensor, lengths: Tensor, normalize: bool = True) -> tuple[Tensor, Tensor]:
        """x: `(B, N)` waveform, lengths: `(B,)` samples -> (`(B, T, n_mels)` fp32 features, `(B,)` int64 frames).

        `normalize=False` gives the raw log-mel (what `FeatureStats` should accumulate).
        """
        if x.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, N), got shape {tuple(x.shape)}")
        frame_lengths = self.output_lengths(lengths).to(x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if x.size(1) < self.n_fft:  # too short for one frame: pad so the STFT runs; every frame is invalid
                x = nn.functional.pad(x, (0, self.n_fft - x.size(1)))
            if torch.compiler.is_exporting():  # ONNX's DFT of a 400-point window is a slow direct sum: a Conv1d
                feats = self.mel.mel_scale(self._power_spectrum_by_conv(x)).transpose(1, 2)
            else:
                feats = self.mel(x).transpose(1, 2)  # (B, T, n_mels)
            feats = torch.log(feats + self.eps)
            mask = lengths_to_padding_mask(frame_lengths, feats.size(1))
            if normalize and self.normalization == "global":
                feats = (feats - self.mean) / self.std
            elif normalize:
                feats = self._per_utterance(feats, mask, frame_lengths)
            feats = feats.masked_fill(mask[:, :, None], 0.0)
        return feats, frame_lengths

    def _power_spectrum_by_conv(self, x: Tensor) -> Tensor:
        """`(B, N)` -> `(B, n_fft // 2 + 1, T)` power spectrum, as `self.mel`'s spectrogram computes it (periodic Hann
        window, no centring), by a Conv1d whose kernels are the windowed cosines and sines of every frequency bin:
        what an exported graph runs (a matrix product per hop, fast in any runtime for any n_fft)."""
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / self.n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2F, n_fft)
        spec = nn.functional.conv1d(x[:, None, :], basis.float()[:, None, :].to(x.device), stride=self.hop_length)
        real, imag = spec.chunk(2, dim=1)
        return real.square() + imag.square()

    def _per_utterance(self, feats: Tensor, mask: Tensor, frame_lengths: Tensor) -> Tensor:
        """`(B, T, F)` -> each item minus its mean, over its std, per bin, both over its valid frames."""
        count = frame_lengths.clamp(min=1).to(feats.dtype)[:, None, None]  # (B, 1, 1)
        valid = (~mask)[:, :, None]
        mean = feats.masked_fill(~valid, 0.0).sum(1, keepdim=True) / count  # (B, 1, F)
        centred = (feats - mean).masked_fill(~valid, 0.0)
        std = (centred.square().sum(1, keepdim=True) / count).sqrt().clamp(min=self.min_utterance_std)
        return centred / std

    def _apply(self, fn, recurse: bool = True):
        # Keep every floating buffer fp32 whatever the model's dtype: the features are always computed in fp32.
        super()._apply(fn, recurse)
        for module in self.modules():
            for name, buf in module._buffers.items():
                if buf is not None and buf.is_floating_point() and buf.dtype != torch.float32:
                    module._buffers[name] = buf.float()
        return self


class FeatureStats:
    """Accumulates per-bin mean and std over the valid frames of feature batches (float64 sums).

    stats = FeatureStats()
    for wav, n in loader:
        stats.update(*frontend(wav, n, normalize=False))
    frontend.set_normalization(*stats.mean_std())
    """

    def __init__(self) -> None:
        self.count = 0
        self.sum: Tensor | None = None
        self.sum_sq: Tensor | None = None

    @torch.no_grad()
    def update(self, feats: Tensor, lengths: Tensor) -> None:
        """feats: `(B, T, F)`, lengths: `(B,)` valid frames; padded frames are ignored."""
        valid = ~lengths_to_padding_mask(lengths.to(feats.device), feats.size(1))
        frames = feats[valid].double()  # (num_valid, F)
        if self.sum is None:
            self.sum = frames.new_zeros(feats.size(-1))
            self.sum_sq = frames.new_zeros(feats.size(-1))
        self.sum += frames.sum(0)
        self.sum_sq += frames.square().sum(0)
        self.count += frames.size(0)

    def mean_std(self, min_std: float = 1e-5) -> tuple[Tensor, Tensor]:
        """(`(F,)` mean, `(F,)` std) as fp32 CPU tensors; population std (ddof 0), floored at `min_std`."""
        if self.count == 0 or self.sum is None or self.sum_sq is None:
            raise ValueError("FeatureStats has seen no valid frames")
        mean = self.sum / self.count
        var = (self.sum_sq / self.count - mean.square()).clamp(min=0.0)
        std = var.sqrt().clamp(min=min_std)
        return mean.float().cpu(), std.float().cpu()


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019), per item, only in training mode (identity in eval).

    `freq_masks` bands of width U{0..freq_mask_width} bins and `time_masks` spans of width
    U{0..floor(time_mask_ratio * length)} frames, where `length` is each item's own valid length; time masks
    fall inside the valid frames only. Masked values are set to 0 (the mean of normalised features).
    Draws from torch's global CPU RNG, so `torch.manual_seed` makes it reproducible on any device.
    """

    def __init__(self, freq_masks: int = 2, freq_mask_width: int = 27, time_masks: int = 5,
                 time_mask_ratio: float = 0.05):
        super().__init__()
        if min(freq_masks, freq_mask_width, time_masks) < 0 or not 0.0 <= time_mask_ratio <= 1.0:
            raise ValueError("SpecAugment needs non-negative mask counts/widths and 0 <= time_mask_ratio <= 1")
        self.freq_masks = freq_masks
        self.freq_mask_width = freq_mask_width
        self.time_masks = time_masks
        self.time_mask_ratio = time_mask_ratio

    @staticmethod
    def _band_mask(size: int, max_width: Tensor, limit: Tensor, count: int) -> Tensor:
        """`(B,)` max widths and valid extents -> `(B, size)` bool union of `count` random bands in [0, limit)."""
        batch = limit.size(0)
        rand_w = torch.rand(batch, count, dtype=torch.float64).to(limit.device)
        rand_s = torch.rand(batch, count, dtype=torch.float64).to(limit.device)
        width = torch.minimum((rand_w * (max_width[:, None] + 1)).floor().long(), max_width[:, None])
        room = (limit[:, None] - width).clamp(min=0)  # last allowed start
        start = torch.minimum((rand_s * (room + 1)).floor().long(), room)
        pos = torch.arange(size, device=limit.device)[None, None, :]
        bands = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, count, size)
        return bands.any(dim=1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: `(B, T, F)`, lengths: `(B,)` valid frames -> `(B, T, F)` (lengths are unchanged)."""
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return x
        batch, frames, bins = x.shape
        lengths = lengths.to(x.device).long()
        mask = torch.zeros(batch, frames, bins, dtype=torch.bool, device=x.device)
        if self.freq_masks > 0:
            max_w = torch.full((batch,), min(self.freq_mask_width, bins), dtype=torch.long, device=x.device)
            limit = torch.full((batch,), bins, dtype=torch.long, device=x.device)
            mask |= self._band_mask(bins, max_w, limit, self.freq_masks)[:, None, :]
        if self.time_masks > 0:
            max_w = (lengths.double() * self.time_mask_ratio).floor().long()
            mask |= self._band_mask(frames, max_w, lengths, self.time_masks)[:, :, None]
        # Frequency bands would otherwise also cover padded frames: keep padding as it was.
        mask &= ~lengths_to_padding_mask(lengths, frames)[:, :, None]
        return x.masked_fill(mask, 0.0)
