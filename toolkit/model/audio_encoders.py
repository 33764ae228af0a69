"""Speech encoders: waveform -> `EncoderOutput` (memory `(B, T', D)`, lengths `(B,)`).

    ConformerEncoder ("conformer"):
        waveform (B, N) -> LogMelFrontend (B, T, n_mels), normalised globally or per utterance (`feature_norm`)
        -> SpecAugment (training only)
        -> Conv2dSubsampling (B, T', D), T' = ((T - 1) // 2 - 1) // 2, one frame per 4 hops (40 ms at 16 kHz)
        -> sinusoidal positions -> Conformer -> memory, padded frames set to 0

Positions: absolute sinusoids added after subsampling as `x * sqrt(D) + pe` (ESPnet's abs_pos convention:
the scale keeps the subsampled features dominant over the unit-amplitude sinusoids), then dropout. They are
computed for any length, so there is no maximum input duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from toolkit.model.audio_frontend import NORMALIZATIONS, LogMelFrontend, SpecAugment
from toolkit.model.base import Encoder, EncoderOutput
from toolkit.model.conformer import Conformer
from toolkit.model.registry import register_encoder


class Conv2dSubsampling(nn.Module):
    """Two Conv2d(kernel 3, stride 2, no padding) + ReLU over (time, freq), then Linear to `d_model`.

    `(B, T, F)` + lengths `(B,)` -> `(B, T', D)` + lengths `(B,)`, T' = ((T - 1) // 2 - 1) // 2.
    Output frame t reads input frames 4t .. 4t + 6, so valid outputs read valid inputs only.
    """

    min_input_frames = 7

    def __init__(self, in_features: int, d_model: int, channels: int | None = None):
        super().__init__()
        channels = channels or d_model
        freq = ((in_features - 1) // 2 - 1) // 2
        if freq < 1:
            raise ValueError(f"Conv2dSubsampling needs at least 7 feature bins, got {in_features}")
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        self.out = nn.Linear(channels * freq, d_model)

    @staticmethod
    def output_lengths(lengths: Tensor) -> Tensor:
        """`(B,)` input frames -> `(B,)` int64 output frames (exact, 0 for fewer than 7 input frames)."""
        half = (torch.div(lengths.long() - 1, 2, rounding_mode="floor")).clamp(min=0)
        return (torch.div(half - 1, 2, rounding_mode="floor")).clamp(min=0)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if x.size(1) < self.min_input_frames:  # all items too short: pad so the convolutions run
            x = nn.functional.pad(x, (0, 0, 0, self.min_input_frames - x.size(1)))
        x = x.to(self.out.weight.dtype).unsqueeze(1)  # (B, 1, T, F)
        x = self.conv(x)  # (B, C, T', F')
        batch, channels, frames, freq = x.shape
        x = self.out(x.transpose(1, 2).reshape(batch, frames, channels * freq))
        return x, self.output_lengths(lengths)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """`(length, dim)` fp32 sinusoids (Vaswani et al. 2017): even columns sin, odd columns cos."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    return pe


class SinusoidalPositionalEncoding(nn.Module):
    """`(B, T, D) -> (B, T, D)`: `x * sqrt(D) + pe[:T]`, then dropout."""

    def __init__(self, d_model: int, dropout: float = 0.1):
        super().__init__()
        if d_model % 2 != 0:
            raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
        self.d_model = d_model
        self.scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        pe = sinusoidal_positions(x.size(1), self.d_model, x.device).to(x.dtype)
        return self.dropout(x * self.scale + pe)


@register_encoder("conformer")
class ConformerEncoder(Encoder):
    """Conformer speech encoder over raw 16 kHz waveforms.

    forward(x `(B, N)` waveform, lengths `(B,)` samples or None = all N)
        -> EncoderOutput(memory `(B, T', d_model)`, lengths `(B,)` int64), T' = `output_lengths(N)`.
    """

    @dataclass
    class Config:
        d_model: int = 256
        num_layers: int = 12
        num_heads: int = 4
        ffn_dim: int = 1024
        kernel_size: int = 31
        dropout: float = 0.1
        sample_rate: int = 16000
        n_fft: int = 400
        hop_length: int = 160
        n_mels: int = 80
        # "global": CMVN statistics fitted on training data (saved with the model); "utterance": each utterance
        # normalised by its own mean and std (level and channel invariant; `LogMelFrontend`)
        feature_norm: Literal["global", "utterance"] = "global"
        freq_masks: int = 2
        freq_mask_width: int = 27
        time_masks: int = 5
        time_mask_ratio: float = 0.05
        conv_norm: Literal["layer_norm", "batch_norm"] = "layer_norm"
        subsampling_channels: int | None = None  # channels of the Conv2d subsampling (None: d_model)

        def __post_init__(self) -> None:
            for name in ("d_model", "num_layers", "num_heads", "ffn_dim", "kernel_size", "sample_rate",
                         "n_fft", "hop_length", "n_mels"):
                if getattr(self, name) <= 0:
                    raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
            if self.d_model % self.num_heads != 0:
                raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
            if self.d_model % 2 != 0:
                raise ValueError(f"d_model must be even (sinusoidal positions), got {self.d_model}")
            if self.kernel_size % 2 != 1:
                raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
            if not 0.0 <= self.dropout < 1.0:
                raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
            if self.n_mels < 7:
                raise ValueError(f"n_mels must be at least 7 for the 4x subsampling, got {self.n_mels}")
            if min(self.freq_masks, self.freq_mask_width, self.time_masks) < 0:
                raise ValueError("freq_masks, freq_mask_width and time_masks must be >= 0")
            if not 0.0 <= self.time_mask_ratio <= 1.0:
                raise ValueError(f"time_mask_ratio must be in [0, 1], got {self.time_mask_ratio}")
            if self.subsampling_channels is not None and self.subsampling_channels < 1:
                raise ValueError(f"subsampling_channels must be positive, got {self.subsampling_channels}")
            if self.feature_norm not in NORMALIZATIONS:
                raise ValueError(f"feature_norm must be one of {', '.join(NORMALIZATIONS)}, got {self.feature_norm!r}")
            if self.conv_norm not in ("layer_norm", "batch_norm"):
                raise ValueError(f"conv_norm must be 'layer_norm' or 'batch_norm', got {self.conv_norm!r}")

    subsampling_factor = 4

    def __init__(self, config: Config | None = None):
        super().__init__()
        config = config if config is not None else self.Config()
        self.config = config
        self.d_model = config.d_model
        self.frontend = LogMelFrontend(config.sample_rate, config.n_fft, config.hop_length, config.n_mels,
                                       normalization=config.feature_norm)
        self.spec_augment = SpecAugment(config.freq_masks, config.freq_mask_width, config.time_masks,
                                        config.time_mask_ratio)
        self.subsampling = Conv2dSubsampling(config.n_mels, config.d_model, config.subsampling_channels)
        self.positions = SinusoidalPositionalEncoding(config.d_model, config.dropout)
        self.conformer = Conformer(config.d_model, config.num_layers, config.num_heads, config.ffn_dim,
                                   config.kernel_size, config.dropout, config.conv_norm)

    @property
    def sample_rate(self) -> int:
        """Hz of the waveforms it takes (`Config.sample_rate`)."""
        return self.config.sample_rate

    @property
    def frame_shift_seconds(self) -> float:
        """Seconds between consecutive memory frames (hop * 4 / sample_rate: 0.04 s by default)."""
        return self.config.hop_length * self.subsampling_factor / self.config.sample_rate

    def output_lengths(self, num_samples: Tensor) -> Tensor:
        """`(B,)` waveform lengths in samples -> `(B,)` int64 memory lengths."""
        return self.subsampling.output_lengths(self.frontend.output_lengths(num_samples))

    @property
    def min_input_samples(self) -> int:
        """The shortest waveform that gives one memory frame: n_fft + 6 hops (1360 samples, 85 ms at 16 kHz).
        A shorter input gives none, so there is nothing to transcribe or to align a transcript with."""
        return self.config.n_fft + (Conv2dSubsampling.min_input_frames - 1) * self.config.hop_length

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        if x.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, N), got shape {tuple(x.shape)}")
        if lengths is None:
            lengths = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        feats, feat_lengths = self.frontend(x, lengths)  # (B, T, n_mels) fp32
        feats = self.spec_augment(feats, feat_lengths)
        h, h_lengths = self.subsampling(feats, feat_lengths)  # (B, T', D)
        h = self.positions(h)
        memory = self.conformer(h, h_lengths)  # padded frames zeroed
        return EncoderOutput(memory=memory, lengths=h_lengths)
