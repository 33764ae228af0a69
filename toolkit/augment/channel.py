"""Channels: what a microphone, a phone line or a lossy codec does to speech, then the gain and clipping of the
recording.

    choice = sample_channel(rng, ChannelConfig())          # ChannelChoice(eq=(...), telephone="amr", ...)
    y = apply_channel(x, 16000, choice)                    # (N,) float32

In this order, each part only when drawn:
    eq          a random microphone response: 1 to 4 peaking, low-shelf or high-shelf biquads (RBJ Audio EQ
                Cookbook), centre frequencies log-uniform in 100 Hz - 0.4 x the sample rate, gains in `eq_gain_db`,
                Q 0.5-3; the signal's RMS is kept (the response shapes the spectrum, `gain` sets the level)
    telephone   a narrowband phone line: resampled to 8 kHz, band-passed to 300-3400 Hz (4th-order Butterworth
                each side), coded with G.711 mu-law or A-law, GSM full rate or AMR-NB (`codec`), resampled back
                (nothing is left above 4 kHz)
    compress    an mp3 or opus round trip at a low bitrate (drawn only when the telephone was not)
    gain        the level times 10^(gain_db / 20)
    clip        hard clipping at `clip` times the signal's peak (the peak is then exactly that)
Like every part of this package it is a function of the choice: the same choice gives the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolkit.augment import ranges
from toolkit.augment.codec import AMR_BITRATES, available_codecs, codec_round_trip, encoder_available
from toolkit.augment.resample import resample
from toolkit.errors import ConfigError

TELEPHONE_CODECS = ("mulaw", "alaw", "gsm", "amr", "none")  # none: the band limit alone
COMPRESSION_CODECS = ("mp3", "opus")
EQ_KINDS = ("peak", "lowshelf", "highshelf")
PHONE_RATE = 8000
PHONE_BAND = (300.0, 3400.0)


@dataclass
class ChannelConfig:
    """How often each channel part applies (`*_prob`) and the ranges drawn from: EQ band count and gains (dB),
    telephone codecs (AMR at one of its modes, drawn), compression codecs with their bitrate ranges in kb/s (mp3
    at the nearest rate LAME has), gain (dB) and the clipping level (a fraction of the peak)."""

    eq_prob: float = 0.3
    eq_bands: tuple[int, int] = (1, 4)
    eq_gain_db: tuple[float, float] = (-12.0, 12.0)
    telephone_prob: float = 0.1
    telephone_codecs: tuple[str, ...] = ("mulaw", "alaw", "amr")
    compress_prob: float = 0.1
    compress_codecs: tuple[str, ...] = COMPRESSION_CODECS
    mp3_kbps: tuple[float, float] = (8.0, 32.0)
    opus_kbps: tuple[float, float] = (6.0, 24.0)
    gain_prob: float = 0.5
    gain_db: tuple[float, float] = (-10.0, 10.0)
    clip_prob: float = 0.05
    clip_level: tuple[float, float] = (0.3, 0.9)

    def __post_init__(self) -> None:
        where = "ChannelConfig"
        for name in ("eq_prob", "telephone_prob", "compress_prob", "gain_prob", "clip_prob"):
            ranges.check_prob(where, name, getattr(self, name))
        ranges.check_range(where, "eq_bands", self.eq_bands, 1, 10)
        ranges.check_range(where, "eq_gain_db", self.eq_gain_db, -40.0, 40.0)
        ranges.check_range(where, "mp3_kbps", self.mp3_kbps, 8.0, 320.0)
        ranges.check_range(where, "opus_kbps", self.opus_kbps, 6.0, 510.0)
        ranges.check_range(where, "gain_db", self.gain_db, -60.0, 60.0)
        ranges.check_range(where, "clip_level", self.clip_level, 0.01, 1.0)
        for name, known, prob in (("telephone_codecs", TELEPHONE_CODECS, self.telephone_prob),
                                  ("compress_codecs", COMPRESSION_CODECS, self.compress_prob)):
            ranges.check_choices(where, name, getattr(self, name), known)
            missing = [c for c in getattr(self, name) if c != "none" and not encoder_available(c)]
            if prob > 0 and missing:
                raise ConfigError(f"{where}.{name}: this PyAV build cannot encode {missing[0]!r} (it can: "
                                  f"{', '.join(available_codecs())}); leave it out")


@dataclass(frozen=True)
class EqBand:
    """One biquad of a microphone response: `kind` (peak, lowshelf, highshelf), centre / corner `freq` in Hz,
    `gain_db`, quality factor `q`."""

    kind: str
    freq: float
    gain_db: float
    q: float


@dataclass(frozen=True)
class ChannelChoice:
    """One utterance's channel (None / empty: that part is left out); bitrates in b/s."""

    eq: tuple[EqBand, ...] = ()
    telephone: str | None = None
    compress: str | None = None
    bitrate: int | None = None
    gain_db: float | None = None
    clip: float | None = None


def _mp3_bitrate(kbps: float) -> int:
    """The bitrate LAME has (MPEG-2 layer III at 16 / 22 / 24 kHz) nearest `kbps`, in b/s."""
    rates = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    return 1000 * min(rates, key=lambda r: abs(r - kbps))


def sample_channel(rng: np.random.Generator, config: ChannelConfig, sample_rate: int) -> ChannelChoice:
    """A channel drawn from `config` for audio at `sample_rate` (EQ frequencies stay below 0.4 x that)."""
    bands: list[EqBand] = []
    if ranges.happens(rng, config.eq_prob):
        for _ in range(ranges.integer(rng, config.eq_bands)):
            kind = EQ_KINDS[int(rng.integers(len(EQ_KINDS)))]
            freq = ranges.log_uniform(rng, (100.0, 0.4 * sample_rate))
            bands.append(EqBand(kind, round(freq, 1), round(ranges.uniform(rng, config.eq_gain_db), 2),
                                round(ranges.log_uniform(rng, (0.5, 3.0)), 3)))
    telephone = compress = bitrate = None
    if ranges.happens(rng, config.telephone_prob):
        telephone = config.telephone_codecs[int(rng.integers(len(config.telephone_codecs)))]
        if telephone == "amr":
            bitrate = AMR_BITRATES[int(rng.integers(len(AMR_BITRATES)))]
    elif ranges.happens(rng, config.compress_prob):
        compress = config.compress_codecs[int(rng.integers(len(config.compress_codecs)))]
        if compress == "mp3":
            bitrate = _mp3_bitrate(ranges.uniform(rng, config.mp3_kbps))
        else:
            bitrate = int(round(ranges.uniform(rng, config.opus_kbps) * 1000))
    gain = round(ranges.uniform(rng, config.gain_db), 2) if ranges.happens(rng, config.gain_prob) else None
    clip = round(ranges.uniform(rng, config.clip_level), 3) if ranges.happens(rng, config.clip_prob) else None
    return ChannelChoice(tuple(bands), telephone, compress, bitrate, gain, clip)


def biquad(band: EqBand, sample_rate: int) -> np.ndarray:
    """The second-order section (1, 6) of `band` (RBJ Audio EQ Cookbook; shelves with slope S = 1 when q is
    taken as the shelf's Q)."""
    a_gain = 10 ** (band.gain_db / 40)
    w0 = 2 * math.pi * min(band.freq, 0.49 * sample_rate) / sample_rate
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2 * band.q)
    if band.kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos_w, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos_w, 1 - alpha / a_gain]
    elif band.kind in ("lowshelf", "highshelf"):
        s = 1 if band.kind == "lowshelf" else -1  # the high shelf is the low shelf with cos(w0) negated
        root = 2 * math.sqrt(a_gain) * alpha
        b = [a_gain * ((a_gain + 1) - s * (a_gain - 1) * cos_w + root),
             s * 2 * a_gain * ((a_gain - 1) - s * (a_gain + 1) * cos_w),
             a_gain * ((a_gain + 1) - s * (a_gain - 1) * cos_w - root)]
        a = [(a_gain + 1) + s * (a_gain - 1) * cos_w + root,
             -s * 2 * ((a_gain - 1) + s * (a_gain + 1) * cos_w),
             (a_gain + 1) + s * (a_gain - 1) * cos_w - root]
    else:
        raise ValueError(f"unknown EQ kind {band.kind!r} (choose from {', '.join(EQ_KINDS)})")
    return np.asarray([[b[0] / a[0], b[1] / a[0], b[2] / a[0], 1.0, a[1] / a[0], a[2] / a[0]]])


def equalize(x: np.ndarray, bands: tuple[EqBand, ...], sample_rate: int) -> np.ndarray:
    """`x` (N,) through the biquads of `bands` in turn (float64)."""
    from scipy.signal import sosfilt

    x = np.asarray(x, dtype=np.float64)
    if not bands:
        return x
    return sosfilt(np.concatenate([biquad(b, sample_rate) for b in bands]), x)


def telephone(x: np.ndarray, sample_rate: int, codec: str = "mulaw", bitrate: int | None = None) -> np.ndarray:
    """`x` (N,) through a narrowband phone line (module docstring) with `codec` (`TELEPHONE_CODECS`): (N,)
    float32 at `sample_rate`."""
    from scipy.signal import butter, sosfilt

    n = len(x)
    narrow = resample(x, sample_rate, PHONE_RATE)
    band = butter(4, PHONE_BAND, btype="bandpass", fs=PHONE_RATE, output="sos")
    narrow = sosfilt(band, narrow)
    if codec != "none":
        narrow = codec_round_trip(narrow, PHONE_RATE, codec, bitrate)
    y = resample(narrow, PHONE_RATE, sample_rate)
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def clip(x: np.ndarray, level: float) -> np.ndarray:
    """`x` hard-clipped at `level` times its peak (float32)."""
    x = np.asarray(x, dtype=np.float64)
    limit = level * (float(np.max(np.abs(x))) if len(x) else 0.0)
    return np.clip(x, -limit, limit).astype(np.float32)


def apply_channel(x: np.ndarray, sample_rate: int, choice: ChannelChoice) -> np.ndarray:
    """`x` (N,) through the channel `choice` (module docstring): (N,) float32."""
    y = equalize(x, choice.eq, sample_rate)
    if choice.eq:
        rms_in, rms_out = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), float(np.sqrt(np.mean(y**2)))
        y = y * (rms_in / rms_out) if rms_out > 0 else y
    if choice.telephone is not None:
        y = telephone(y, sample_rate, choice.telephone, choice.bitrate)
    elif choice.compress is not None:
        y = codec_round_trip(y, sample_rate, choice.compress, choice.bitrate)
    if choice.gain_db is not None:
        y = np.asarray(y, dtype=np.float64) * 10 ** (choice.gain_db / 20)
    if choice.clip is not None:
        y = clip(y, choice.clip)
    return np.asarray(y, dtype=np.float32)
