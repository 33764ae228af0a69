"""Offline audio augmentation for the synthetic speech corpus (float mono signals at 16 kHz, numpy + torchaudio).

    add_noise       additive white, pink (1/f) or babble-like noise at an exact SNR (signal power over noise power
                    across the whole utterance); babble is several speech-shaped noise "talkers", each amplitude-
                    modulated at a syllabic rate (3-7 Hz), so it fluctuates like a crowd instead of hissing
    reverberate     convolution with a synthetic room impulse response: a direct path, then Gaussian noise with an
                    exponential decay reaching -60 dB at `rt60` seconds; the output keeps the input's length and RMS
    speed_perturb   speed (tempo and pitch together) changed by `factor` through resampling (1.1: 10% shorter)
    shift_voice     every frequency (pitch and formants) times `factor`, tempo kept: the same voice from a smaller
                    (> 1) or larger (< 1) speaker, like vocal tract length perturbation; a phase-vocoder stretch,
                    then resampling
    telephone       a 300-3400 Hz band-pass, a round trip through 8 kHz and 8-bit mu-law (G.711-like)

`sample_augmentation` draws which of these apply to one utterance (each with its configured probability) and their
parameters from a `random.Random`; `apply_augmentation` applies them (voice, speed, reverb, noise, telephone in
that order) with a numpy generator seeded per utterance, so the same seed gives the same samples.

Richer transforms (WORLD voice changes, simulated rooms, babble of other utterances, phone and codec channels), for
any corpus, offline (`toolkit augment`) or on the fly in the speech loader (`data.augment`), are in `toolkit.augment`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from toolkit.data.audio import SAMPLE_RATE
from toolkit.errors import ConfigError

NOISE_KINDS = ("white", "pink", "babble")


@dataclass
class AugmentConfig:
    """Probabilities that each augmentation applies to an utterance, and the ranges of their parameters."""

    noise_prob: float = 0.3
    snr_db: tuple[float, float] = (5.0, 25.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    reverb_prob: float = 0.2
    rt60: tuple[float, float] = (0.15, 0.6)
    speed_prob: float = 0.3
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    telephone_prob: float = 0.1
    # Off by default; at 0 nothing is drawn for it, so every other draw, and so the corpus, is the same as with no
    # voice shift setting at all. Factors whose multiple of 16 kHz shares a large divisor with it (0.85: 13,600 Hz)
    # resample fast.
    voice_prob: float = 0.0
    voice_factors: tuple[float, ...] = (0.85, 0.9, 1.1, 1.15)

    def __post_init__(self) -> None:
        for name in ("noise_prob", "reverb_prob", "speed_prob", "telephone_prob", "voice_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"AugmentConfig.{name}: a probability in [0, 1], got {getattr(self, name)}")
        for name in ("snr_db", "rt60"):
            lo, hi = getattr(self, name)
            if lo > hi or (name == "rt60" and lo <= 0):
                raise ConfigError(f"AugmentConfig.{name}: expected [low, high] with low <= high, got [{lo}, {hi}]")
        bad = [k for k in self.noise_kinds if k not in NOISE_KINDS] or ([] if self.noise_kinds else ["(none)"])
        if bad:
            raise ConfigError(f"AugmentConfig.noise_kinds: unknown {bad[0]!r} (choose from {', '.join(NOISE_KINDS)})")
        for name in ("speed_factors", "voice_factors"):
            factors = getattr(self, name)
            if not factors or any(f <= 0 for f in factors):
                raise ConfigError(f"AugmentConfig.{name}: need positive factors, got {list(factors)}")


def _shaped_noise(n: int, rng: np.random.Generator, exponent: float, band: tuple[float, float] | None = None,
                  sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (0 white, 1 pink), optionally band-limited."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    gain = np.ones_like(freqs)
    gain[1:] = freqs[1:] ** (-exponent / 2)
    gain[0] = 0.0
    if band is not None:
        gain[(freqs < band[0]) | (freqs > band[1])] = 0.0
    out = np.fft.irfft(spectrum * gain, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def make_noise(kind: str, n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`n` samples of unit-RMS noise of `kind` ("white", "pink" or "babble")."""
    if kind == "white":
        x = rng.standard_normal(n)
        return x / (np.sqrt(np.mean(x**2)) + 1e-12)
    if kind == "pink":
        return _shaped_noise(n, rng, 1.0, sample_rate=sample_rate)
    if kind == "babble":
        t = np.arange(n) / sample_rate
        total = np.zeros(n)
        for _ in range(6):  # talkers: speech-band noise under a random syllabic envelope
            talker = _shaped_noise(n, rng, 1.0, band=(120.0, 4000.0), sample_rate=sample_rate)
            rate = rng.uniform(3.0, 7.0)
            envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
            envelope *= 0.5 + np.clip(np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 6.3)), 0, None)
            total += talker * envelope
        return total / (np.sqrt(np.mean(total**2)) + 1e-12)
    raise ValueError(f"unknown noise kind {kind!r} (choose from {', '.join(NOISE_KINDS)})")


def add_noise(x: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """`x` plus `kind` noise scaled so that 10*log10(power(x) / power(noise)) == `snr_db`."""
    noise = make_noise(kind, len(x), rng)
    power = float(np.mean(np.asarray(x, dtype=np.float64) ** 2))
    scale = np.sqrt(power / 10 ** (snr_db / 10)) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    return (x + scale * noise).astype(np.float32)


def room_impulse_response(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic impulse response: a unit direct path, a 2-8 ms gap, then exponentially decaying Gaussian noise
    (-60 dB after `rt60` seconds) at a random direct-to-reverberant ratio."""
    n = max(2, int(rt60 * sample_rate))
    delay = int(rng.uniform(0.002, 0.008) * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    tail[:delay] = 0.0
    tail *= rng.uniform(0.3, 1.0) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    tail[0] = 1.0
    return tail


def reverberate(x: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """`x` convolved with `room_impulse_response(rt60)`, cut to `len(x)` and scaled back to the input's RMS."""
    h = room_impulse_response(rt60, rng)
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]
    rms_in, rms_out = np.sqrt(np.mean(np.square(x, dtype=np.float64))), np.sqrt(np.mean(y**2))
    return (y * (rms_in / (rms_out + 1e-12))).astype(np.float32)


def speed_perturb(x: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play `x` `factor` times faster (tempo and pitch both change): the length becomes len(x) / factor."""
    if factor == 1.0:
        return np.asarray(x, dtype=np.float32)
    orig = int(round(sample_rate * factor))
    return AF.resample(torch.as_tensor(x, dtype=torch.float32), orig, sample_rate).numpy()


def shift_voice(x: np.ndarray, factor: float, sample_rate: int = SAMPLE_RATE, n_fft: int = 512,
                hop_length: int = 128) -> np.ndarray:
    """Every frequency of `x` (pitch and formants) times `factor`, the length kept: a phase-vocoder stretch to
    `factor` times the length, then `speed_perturb` by `factor` back to about `len(x)` samples."""
    if factor == 1.0:
        return np.asarray(x, dtype=np.float32)
    window = torch.hann_window(n_fft)
    spec = torch.stft(torch.as_tensor(x, dtype=torch.float32), n_fft, hop_length, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop_length, spec.size(0))[:, None]  # expected phase step per bin
    stretched = AF.phase_vocoder(spec, 1.0 / factor, advance)
    y = torch.istft(stretched, n_fft, hop_length, window=window, length=int(round(len(x) * factor)))
    return speed_perturb(y.numpy(), factor, sample_rate)


def telephone(x: np.ndarray, sample_rate: int = SAMPLE_RATE, mu_law: bool = True) -> np.ndarray:
    """A telephone channel: 300-3400 Hz band-pass (FFT mask with 50 Hz cosine edges), 8 kHz round trip and,
    with `mu_law`, 8-bit mu-law quantisation on the way."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    mask = np.clip((freqs - 250.0) / 50.0, 0, 1) * np.clip((3450.0 - freqs) / 50.0, 0, 1)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    y = torch.from_numpy(np.fft.irfft(np.fft.rfft(x) * mask, n).astype(np.float32))
    y = AF.resample(y, sample_rate, 8000)
    if mu_law:
        peak = float(y.abs().max()) + 1e-9
        y = AF.mu_law_decoding(AF.mu_law_encoding(y / peak, 256), 256) * peak
    y = AF.resample(y, 8000, sample_rate)
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, len(y))] = y.numpy()[:n]
    return out


def sample_augmentation(rng: random.Random, config: AugmentConfig) -> dict:
    """The augmentations for one utterance, e.g. {"speed": 1.1, "noise": ["pink", 12.5]} ({} for none)."""
    aug: dict = {}
    if rng.random() < config.speed_prob:
        aug["speed"] = rng.choice(config.speed_factors)
    if rng.random() < config.reverb_prob:
        aug["reverb"] = round(rng.uniform(*config.rt60), 3)
    if rng.random() < config.noise_prob:
        aug["noise"] = [rng.choice(config.noise_kinds), round(rng.uniform(*config.snr_db), 2)]
    if rng.random() < config.telephone_prob:
        aug["telephone"] = True
    if config.voice_prob > 0 and rng.random() < config.voice_prob:
        aug["voice"] = rng.choice(config.voice_factors)
    return aug


def apply_augmentation(x: np.ndarray, aug: dict, seed: int) -> np.ndarray:
    """Apply `aug` (from `sample_augmentation`) to `x`: voice, speed, reverb, noise, telephone; random draws come
    from `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    if "voice" in aug:
        x = shift_voice(x, aug["voice"])
    if "speed" in aug:
        x = speed_perturb(x, aug["speed"])
    if "reverb" in aug:
        x = reverberate(x, aug["reverb"], rng)
    if "noise" in aug:
        kind, snr = aug["noise"]
        x = add_noise(x, snr, kind, rng)
    if aug.get("telephone"):
        x = telephone(x)
    return np.asarray(x, dtype=np.float32)


def describe(aug: dict) -> str:
    """A short label: "voice0.9,speed1.1,reverb0.31,noise:pink@12.5dB,telephone" ("" for none)."""
    parts = [f"voice{aug['voice']}"] if "voice" in aug else []
    if "speed" in aug:
        parts.append(f"speed{aug['speed']}")
    if "reverb" in aug:
        parts.append(f"reverb{aug['reverb']}")
    if "noise" in aug:
        parts.append(f"noise:{aug['noise'][0]}@{aug['noise'][1]}dB")
    if aug.get("telephone"):
        parts.append("telephone")
    return ",".join(parts)
