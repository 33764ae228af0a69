"""Additive noise at a target signal-to-noise ratio: coloured noise, mains hum, and babble made of other
utterances.

    choice = sample_noise(rng, NoiseConfig(), babble_count=len(source), exclude=i)   # NoiseChoice or None
    y = add_noise(x, choice, 16000, rng, source)                                        # (N,) float32

Kinds:
    white, pink, brown   Gaussian noise whose power falls as 1/f^0, 1/f^1, 1/f^2 (flat below 20 Hz, no DC, so
                         that the power measured is audible power)
    hum                  mains hum: 50 or 60 Hz (+-0.2%) and its first `hum_harmonics` harmonics, the k-th at
                         1/k times a random -20..0 dB, random phases (a buzz rather than a pure tone)
    babble               `babble_talkers` OTHER utterances of a `BabbleSource` (the corpus being trained on, on
                         the fly), each looped or cut to the signal's length at a random start, at equal RMS, summed

The SNR is measured over the whole signal: 10 log10(mean(x^2) / mean(noise^2)) == snr_db. A silent signal is
returned as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from toolkit.augment import ranges
from toolkit.errors import ConfigError

NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")
COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
LOWEST_COLOURED_HZ = 20.0


class BabbleSource(Protocol):
    """Utterances to make babble of: `len(source)` of them, `source.utterance(j)` the j-th as float32 (N,) at the
    pipeline's sample rate, or None when it cannot be had (it is then left out)."""

    def __len__(self) -> int: ...

    def utterance(self, j: int) -> np.ndarray | None: ...


class ArrayBabble:
    """A `BabbleSource` over waveforms already in memory (each (N,) at the pipeline's sample rate)."""

    def __init__(self, waves: Sequence[np.ndarray]) -> None:
        self.waves = [np.asarray(w, dtype=np.float32) for w in waves]

    def __len__(self) -> int:
        return len(self.waves)

    def utterance(self, j: int) -> np.ndarray | None:
        return self.waves[j]


class FileBabble:
    """A `BabbleSource` over audio files (paths, or (path, offset, end) segments in seconds), read with
    `toolkit.data.audio.load_audio` at `sample_rate` when drawn; a file that fails to load is left out."""

    def __init__(self, items: Sequence[str | tuple[str, float, float | None]], sample_rate: int) -> None:
        self.items = [(item, 0.0, None) if isinstance(item, str) else tuple(item) for item in items]
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def utterance(self, j: int) -> np.ndarray | None:
        from toolkit.data.audio import AudioLoadError, load_audio

        path, offset, end = self.items[j]
        try:
            return load_audio(path, self.sample_rate, offset, end)
        except AudioLoadError:
            return None


@dataclass
class NoiseConfig:
    """How often noise is added (`prob`), its SNR range in dB, the kinds drawn from (uniformly), the mains
    frequencies of hum and its harmonic count, and the range of talkers in babble."""

    prob: float = 0.4
    snr_db: tuple[float, float] = (5.0, 30.0)
    kinds: tuple[str, ...] = NOISE_KINDS
    hum_frequencies: tuple[float, ...] = (50.0, 60.0)
    hum_harmonics: int = 8
    babble_talkers: tuple[int, int] = (3, 7)

    def __post_init__(self) -> None:
        where = "NoiseConfig"
        ranges.check_prob(where, "prob", self.prob)
        ranges.check_range(where, "snr_db", self.snr_db, -30.0, 100.0)
        ranges.check_choices(where, "kinds", self.kinds, NOISE_KINDS)
        if not self.hum_frequencies or any(not 20.0 <= f <= 1000.0 for f in self.hum_frequencies):
            raise ConfigError(f"{where}.hum_frequencies: need frequencies in [20, 1000] Hz, got "
                              f"{list(self.hum_frequencies)}")
        if not 1 <= self.hum_harmonics <= 50:
            raise ConfigError(f"{where}.hum_harmonics: an integer in [1, 50], got {self.hum_harmonics}")
        ranges.check_range(where, "babble_talkers", self.babble_talkers, 1, 50)


@dataclass(frozen=True)
class NoiseChoice:
    """One utterance's noise: its kind, the SNR in dB, the mains frequency (hum) and the source indices of the
    talkers (babble)."""

    kind: str
    snr_db: float
    mains_hz: float = 0.0
    talkers: tuple[int, ...] = ()


def sample_noise(rng: np.random.Generator, config: NoiseConfig, babble_count: int = 0,
                 exclude: int | None = None) -> NoiseChoice | None:
    """A noise drawn from `config` (babble only when the source has another utterance than `exclude`: the
    utterance itself is never its own babble); None when no configured kind can be made."""
    others = babble_count - (1 if exclude is not None and 0 <= exclude < babble_count else 0)
    kinds = [k for k in config.kinds if k != "babble" or others > 0]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    snr = round(ranges.uniform(rng, config.snr_db), 2)
    if kind == "hum":
        freqs = config.hum_frequencies
        return NoiseChoice(kind, snr, mains_hz=float(freqs[int(rng.integers(len(freqs)))]))
    if kind == "babble":
        wanted = min(ranges.integer(rng, config.babble_talkers), others)
        talkers: list[int] = []
        while len(talkers) < wanted:  # distinct indices, never `exclude` (cheap for a corpus of any size)
            j = int(rng.integers(babble_count))
            if j != exclude and j not in talkers:
                talkers.append(j)
        return NoiseChoice(kind, snr, talkers=tuple(talkers))
    return NoiseChoice(kind, snr)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """`n` samples of unit-RMS Gaussian noise with power ~ 1/f^exponent (flat below 20 Hz, no DC)."""
    if exponent == 0.0:
        x = rng.standard_normal(n)
    else:
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        gain = np.maximum(freqs, LOWEST_COLOURED_HZ) ** (-exponent / 2)
        gain[0] = 0.0
        x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * gain, n)
    return x / (math.sqrt(float(np.mean(x**2))) + 1e-12)


def hum(n: int, mains_hz: float, harmonics: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """`n` samples of unit-RMS mains hum at `mains_hz` (+-0.2%) with `harmonics` harmonics (module docstring);
    harmonics at or above the Nyquist frequency are left out."""
    t = np.arange(n) / sample_rate
    f0 = mains_hz * (1 + rng.uniform(-0.002, 0.002))
    x = np.zeros(n)
    for k in range(1, harmonics + 1):
        level = 10 ** (rng.uniform(-20.0, 0.0) / 20) / k
        phase = rng.uniform(0.0, 2 * np.pi)
        if k * f0 < sample_rate / 2:
            x += level * np.sin(2 * np.pi * k * f0 * t + phase)
    return x / (math.sqrt(float(np.mean(x**2))) + 1e-12)


def babble(n: int, talkers: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray | None:
    """`n` samples of unit-RMS babble: each talker (N_j,) looped (shorter) or cut (longer) to `n` samples from a
    random start, scaled to unit RMS, summed. None when no talker has sound."""
    total = np.zeros(n)
    used = 0
    for wave in talkers:
        wave = np.asarray(wave, dtype=np.float64)
        rms = math.sqrt(float(np.mean(wave**2))) if len(wave) else 0.0
        if rms == 0.0:
            continue
        start = int(rng.integers(len(wave)))
        total += np.resize(np.roll(wave, -start), n) / rms  # np.resize repeats the wave to fill n samples
        used += 1
    if not used:
        return None
    return total / (math.sqrt(float(np.mean(total**2))) + 1e-12)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`x` (N,) plus `noise` (N,) scaled so that 10 log10(mean(x^2) / mean(noise^2)) == `snr_db` (float32)."""
    x = np.asarray(x, dtype=np.float64)
    power, noise_power = float(np.mean(x**2)), float(np.mean(noise**2))
    if power == 0.0 or noise_power == 0.0:
        return x.astype(np.float32)
    return (x + noise * math.sqrt(power / (noise_power * 10 ** (snr_db / 10)))).astype(np.float32)


def add_noise(x: np.ndarray, choice: NoiseChoice, sample_rate: int, rng: np.random.Generator,
              source: BabbleSource | None = None, hum_harmonics: int = 8) -> np.ndarray:
    """`x` (N,) with the noise `choice` at its SNR (float32). Babble needs the `source` its talkers index; when
    none of them loads, `x` is returned as it is."""
    n = len(x)
    if choice.kind in COLOUR_EXPONENTS:
        noise = coloured_noise(n, COLOUR_EXPONENTS[choice.kind], rng, sample_rate)
    elif choice.kind == "hum":
        noise = hum(n, choice.mains_hz, hum_harmonics, rng, sample_rate)
    elif choice.kind == "babble":
        if source is None:
            raise ValueError("babble noise needs the BabbleSource its talkers were drawn from")
        waves = [source.utterance(j) for j in choice.talkers]
        noise = babble(n, [w for w in waves if w is not None], rng)
        if noise is None:
            return np.asarray(x, dtype=np.float32)
    else:
        raise ValueError(f"unknown noise kind {choice.kind!r} (choose from {', '.join(NOISE_KINDS)})")
    return mix_at_snr(x, noise, choice.snr_db)
