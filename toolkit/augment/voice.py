"""Voice transforms through the WORLD vocoder: the same words from a speaker with another pitch, pitch range,
vocal-tract length, breathiness and speaking rate.

    change = sample_voice(rng, VoiceConfig())          # VoiceChange(f0_ratio=1.12, vtl_alpha=0.93, ...)
    y = change_voice(x, 16000, change, rng)            # (N / rate,) float32, the input's RMS

One WORLD analysis (`world.analyze`), these edits of its parameters, one synthesis:
    f0_ratio     every voiced F0 times the ratio (the mean pitch moves, the intonation keeps its shape)
    f0_range     the log-F0 deviation around its mean (over voiced frames) times the factor: < 1 monotone, > 1
                 livelier intonation
    vtl_alpha    the spectral envelope's frequency axis stretched by alpha (envelope'(f) = envelope(f / alpha)):
                 > 1 moves the formants up (a shorter vocal tract: a child or a smaller adult), < 1 down
    breathiness  aperiodicity raised towards 1 (noise) by `amount` above ~4 kHz, fading to 0 at 0 Hz:
                 ap' = ap + amount * w(f) * (1 - ap), w(f) = min(1, f / 4 kHz)
    rate         the parameter frames re-sampled in time: `rate` 1.25 speaks 1.25 times faster (the output is
                 1 / 1.25 as long), with pitch and formants kept
    jitter       local speaking-rate wobble: the rate times exp(jitter * g(t)), g a standard normal value every
                 `jitter_interval` seconds, linearly interpolated; the total duration stays the one `rate` gives
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from toolkit.augment import ranges
from toolkit.augment.world import WorldParams, analyze, synthesize
from toolkit.errors import ConfigError

BREATHY_FULL_HZ = 4000.0  # breathiness reaches its full amount at and above this frequency


@dataclass
class VoiceConfig:
    """How often the voice is changed (`prob`) and the ranges its changes are drawn from (ratios log-uniformly,
    `breathiness` and `jitter` uniformly). `f0_method`: "dio" (fast, the default) or "harvest" (about 5x slower
    analysis, fewer voicing errors); `frame_period`: WORLD's frame step in ms."""

    prob: float = 0.5
    f0_ratio: tuple[float, float] = (0.8, 1.25)
    f0_range: tuple[float, float] = (0.7, 1.4)
    vtl_alpha: tuple[float, float] = (0.88, 1.15)
    breathiness: tuple[float, float] = (0.0, 0.4)
    rate: tuple[float, float] = (0.87, 1.15)
    jitter: tuple[float, float] = (0.0, 0.1)
    jitter_interval: float = 0.2
    f0_method: Literal["dio", "harvest"] = "dio"
    frame_period: float = 5.0

    def __post_init__(self) -> None:
        where = "VoiceConfig"
        ranges.check_prob(where, "prob", self.prob)
        ranges.check_range(where, "f0_ratio", self.f0_ratio, 0.25, 4.0)
        ranges.check_range(where, "f0_range", self.f0_range, 0.05, 4.0)
        ranges.check_range(where, "vtl_alpha", self.vtl_alpha, 0.5, 2.0)
        ranges.check_range(where, "breathiness", self.breathiness, 0.0, 1.0)
        ranges.check_range(where, "rate", self.rate, 0.25, 4.0)
        ranges.check_range(where, "jitter", self.jitter, 0.0, 1.0)
        if not 0.01 <= self.jitter_interval <= 10.0:
            raise ConfigError(f"{where}.jitter_interval: seconds in [0.01, 10], got {self.jitter_interval}")
        if not 1.0 <= self.frame_period <= 20.0:
            raise ConfigError(f"{where}.frame_period: milliseconds in [1, 20], got {self.frame_period}")
        if self.f0_method not in ("dio", "harvest"):
            raise ConfigError(f"{where}.f0_method: 'dio' or 'harvest', got {self.f0_method!r}")


@dataclass(frozen=True)
class VoiceChange:
    """One utterance's voice change (the identity: every factor 1, breathiness and jitter 0)."""

    f0_ratio: float = 1.0
    f0_range: float = 1.0
    vtl_alpha: float = 1.0
    breathiness: float = 0.0
    rate: float = 1.0
    jitter: float = 0.0


def sample_voice(rng: np.random.Generator, config: VoiceConfig) -> VoiceChange:
    """A voice change drawn from `config`'s ranges (rounded to 4 digits, as written in manifests)."""
    return VoiceChange(
        f0_ratio=round(ranges.log_uniform(rng, config.f0_ratio), 4),
        f0_range=round(ranges.log_uniform(rng, config.f0_range), 4),
        vtl_alpha=round(ranges.log_uniform(rng, config.vtl_alpha), 4),
        breathiness=round(ranges.uniform(rng, config.breathiness), 4),
        rate=round(ranges.log_uniform(rng, config.rate), 4),
        jitter=round(ranges.uniform(rng, config.jitter), 4),
    )


def scale_f0(f0: np.ndarray, ratio: float, range_factor: float) -> np.ndarray:
    """`f0` (T,) Hz with its voiced values (> 0) moved to exp(m + log(ratio) + range_factor * (log f0 - m)), m the
    mean log-F0 of the voiced frames; unvoiced frames stay 0. Results are kept within 40-1000 Hz."""
    out = np.array(f0, dtype=np.float64)
    voiced = out > 0
    if not voiced.any():
        return out
    log_f0 = np.log(out[voiced])
    mean = log_f0.mean()
    out[voiced] = np.clip(np.exp(mean + math.log(ratio) + range_factor * (log_f0 - mean)), 40.0, 1000.0)
    return out


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """The spectral envelope `sp` (T, F) with its frequency axis stretched by `alpha`: bin k takes the (log-
    linearly interpolated) value at k / alpha; bins past the last read the last one."""
    if alpha == 1.0:
        return sp
    n_bins = sp.shape[1]
    src = np.minimum(np.arange(n_bins) / alpha, n_bins - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_bins - 1)
    w = src - i0
    log_sp = np.log(np.maximum(sp, 1e-300))
    return np.exp(log_sp[:, i0] * (1 - w) + log_sp[:, i1] * w)


def add_breathiness(ap: np.ndarray, amount: float, sample_rate: int) -> np.ndarray:
    """The aperiodicity `ap` (T, F), in [0, 1], raised towards 1 by `amount` * min(1, f / 4 kHz)."""
    if amount <= 0:
        return ap
    freqs = np.linspace(0.0, sample_rate / 2, ap.shape[1])
    weight = amount * np.minimum(1.0, freqs / BREATHY_FULL_HZ)
    return np.clip(ap + weight * (1.0 - ap), 0.0, 1.0)


def time_map(n_frames: int, rate: float, jitter: float, interval_frames: int, rng: np.random.Generator
             ) -> np.ndarray:
    """Fractional source-frame positions (T',) of the output frames, from 0 to `n_frames - 1`, with
    T' - 1 = round((n_frames - 1) / rate): steps of `rate` times exp(jitter * g), g standard normal values every
    `interval_frames` output frames, linearly interpolated, the steps rescaled to end on the last frame."""
    n_steps = max(1, int(round((n_frames - 1) / rate)))
    steps = np.ones(n_steps)
    if jitter > 0:
        knots = rng.standard_normal(n_steps // interval_frames + 2)
        steps = np.exp(jitter * np.interp(np.arange(n_steps), np.arange(len(knots)) * interval_frames, knots))
    pos = np.concatenate([[0.0], np.cumsum(steps)])
    return pos * ((n_frames - 1) / pos[-1])


def resample_frames(params: WorldParams, pos: np.ndarray) -> WorldParams:
    """`params` read at the fractional frame positions `pos` (T',): envelopes interpolated in the log domain,
    aperiodicity linearly, F0 geometrically between two voiced frames and from the nearest frame otherwise."""
    n = len(params.f0)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0)[:, None]
    log_sp = np.log(np.maximum(params.sp, 1e-300))
    sp = np.exp(log_sp[i0] * (1 - w) + log_sp[i1] * w)
    ap = params.ap[i0] * (1 - w) + params.ap[i1] * w
    f_a, f_b, w1 = params.f0[i0], params.f0[i1], w[:, 0]
    both = (f_a > 0) & (f_b > 0)
    f0 = np.where(w1 < 0.5, f_a, f_b)
    f0[both] = np.exp(np.log(f_a[both]) * (1 - w1[both]) + np.log(f_b[both]) * w1[both])
    return WorldParams(f0, sp, ap, params.frame_period)


def change_voice(x: np.ndarray, sample_rate: int, change: VoiceChange, rng: np.random.Generator,
                 f0_method: Literal["dio", "harvest"] = "dio", frame_period: float = 5.0,
                 jitter_interval: float = 0.2) -> np.ndarray:
    """`x` (N,) spoken with `change` (module docstring): about N / change.rate samples of float32 at the input's
    RMS. A signal shorter than 4 frames or silent is returned as it is."""
    x = np.asarray(x, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if change == VoiceChange() or rms == 0.0 or len(x) < 4 * frame_period * sample_rate / 1000:
        return x
    params = analyze(x, sample_rate, f0_method, frame_period)
    params = replace(params, f0=scale_f0(params.f0, change.f0_ratio, change.f0_range),
                     sp=warp_envelope(params.sp, change.vtl_alpha),
                     ap=add_breathiness(params.ap, change.breathiness, sample_rate))
    if change.rate != 1.0 or change.jitter > 0:
        interval = max(1, int(round(jitter_interval * 1000 / frame_period)))
        params = resample_frames(params, time_map(len(params.f0), change.rate, change.jitter, interval, rng))
    y = synthesize(params, sample_rate)
    if change.rate == 1.0 and change.jitter == 0:
        y = np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]  # WORLD's length is the frames' span, +/- a frame
    y_rms = float(np.sqrt(np.mean(y**2))) if len(y) else 0.0
    if not np.isfinite(y_rms) or y_rms == 0.0:
        return x
    return (y * (rms / y_rms)).astype(np.float32)
