"""Lossy codec round trips through FFmpeg (PyAV), in memory: encode into a container in an `io.BytesIO`, decode
back, resample to the input's rate, align, keep the length.

    y = codec_round_trip(x, 16000, "opus", bitrate=12000)      # (N,) float32, time-aligned with x

    codec   encoder (PyAV name)   container  rates the encoder takes       bitrates
    mulaw   pcm_mulaw             wav        any (8 kHz on a phone line)   64 kb/s at 8 kHz (G.711 mu-law)
    alaw    pcm_alaw              wav        any                           64 kb/s at 8 kHz (G.711 A-law)
    gsm     libgsm                gsm        8 kHz                         13 kb/s (GSM 06.10 full rate)
    amr     libopencore_amrnb     amr        8 kHz                         4750 ... 12200 b/s (AMR-NB, GSM/3G)
    mp3     libmp3lame            mp3        8 ... 48 kHz                  e.g. 8000 ... 64000 b/s
    opus    libopus               ogg        8, 12, 16, 24, 48 kHz         e.g. 6000 ... 32000 b/s

A signal at a rate its encoder does not take is resampled to the nearest rate it does (the telephone channel
resamples to 8 kHz itself, before). The samples reach the encoder as 16-bit PCM scaled to a peak of 0.9 full
scale, and are scaled back after decoding. The mp3 and ogg containers carry the encoder delay (LAME's gapless
header, Opus pre-skip), so their decoders give the samples back about in place; what delay is left (AMR: 5 ms;
Opus at low bitrates: a sample or two) is measured once per codec, rate and bitrate on a vowel-like probe, and
taken off. Which encoders exist depends on the
FFmpeg PyAV was built with (`available_codecs()`; PyPI's av wheels have all but libgsm).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

from toolkit.augment.resample import resample
from toolkit.errors import ToolkitError

CODECS = {  # name -> (PyAV encoder, container format)
    "mulaw": ("pcm_mulaw", "wav"),
    "alaw": ("pcm_alaw", "wav"),
    "gsm": ("libgsm", "gsm"),
    "amr": ("libopencore_amrnb", "amr"),
    "mp3": ("libmp3lame", "mp3"),
    "opus": ("libopus", "ogg"),
}
AMR_BITRATES = (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200)  # AMR-NB's modes, b/s
PEAK = 0.9  # the encoder sees the signal at this peak (of full scale)
MAX_DELAY = 0.1  # seconds: the most codec delay looked for


@lru_cache(maxsize=None)
def encoder_available(codec: str) -> bool:
    """True when this PyAV build can encode `codec` (a key of `CODECS`)."""
    import av

    try:
        av.Codec(CODECS[codec][0], "w")
    except Exception:  # av.codec.codec.UnknownCodecError, or no av at all
        return False
    return True


def available_codecs() -> tuple[str, ...]:
    """The `CODECS` this PyAV build can encode."""
    return tuple(c for c in CODECS if encoder_available(c))


def _encoder_rate(codec: str, rate: int) -> int:
    """`rate` when the encoder of `codec` takes it, else the nearest rate it does (the lowest above first)."""
    import av

    rates = av.Codec(CODECS[codec][0], "w").audio_rates
    if codec in ("gsm", "amr"):
        return 8000
    if not rates or rate in rates:
        return rate
    above = sorted(r for r in rates if r > rate)
    return above[0] if above else max(rates)


def _encode_decode(x: np.ndarray, rate: int, codec: str, bitrate: int | None) -> np.ndarray:
    """One round trip of `x` (float at `rate`, which the encoder takes) through `codec`, decoded to float32 mono at
    `rate`; the decoder's length (encoder delay and padding included where the container does not remove them)."""
    import av

    encoder, container = CODECS[codec]
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=rate, layout="mono")
        if bitrate:
            stream.bit_rate = int(bitrate)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks = []
    with av.open(buf, "r") as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for decoded in inp.decode(audio=0):
            chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(decoded))
        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _lag(reference: np.ndarray, delayed: np.ndarray, max_lag: int) -> int:
    """The shift (0..max_lag samples) at which `delayed` best matches `reference` (cross-correlation peak)."""
    n = len(reference) + len(delayed)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    return int(np.argmax(corr[: max_lag + 1]))


def _speech_like_probe(rate: int) -> np.ndarray:
    """1 s of a vowel-like sound that speech codecs code well (a pulse train gliding from 100 to 250 Hz through a
    resonance near 700 Hz, in 2.5 Hz syllables), whose cross-correlation with itself has a single peak."""
    from scipy.signal import lfilter

    t = np.arange(rate) / rate
    phase = 2 * np.pi * np.cumsum(100.0 + 150.0 * t) / rate
    pulses = (np.mod(phase, 2 * np.pi) < 0.3).astype(np.float64)
    r, theta = 0.9, 2 * np.pi * 700.0 / rate
    voiced = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], pulses - pulses.mean())
    voiced *= np.clip(np.sin(2 * np.pi * 2.5 * t), 0.0, None)
    return 0.5 * voiced / np.max(np.abs(voiced))


@lru_cache(maxsize=64)
def codec_delay(codec: str, rate: int, bitrate: int | None) -> int:
    """Samples (at `rate`) by which `codec`'s decoded output lags its input after the container's own trimming,
    measured on `_speech_like_probe` (0 for the PCM codecs; mp3 measures 0, opus 0 to 2 samples at 16 kHz)."""
    if codec in ("mulaw", "alaw"):
        return 0
    probe = _speech_like_probe(rate)
    return _lag(probe, _encode_decode(probe, rate, codec, bitrate)[: len(probe) + int(MAX_DELAY * rate)],
                int(MAX_DELAY * rate))


def codec_round_trip(x: np.ndarray, sample_rate: int, codec: str, bitrate: int | None = None) -> np.ndarray:
    """`x` (N,) float at `sample_rate` encoded with `codec` (`CODECS`; at `bitrate` b/s, or the encoder's default)
    and decoded: (N,) float32 at `sample_rate`, aligned with `x`."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r} (choose from {', '.join(CODECS)})")
    if not encoder_available(codec):
        raise ToolkitError(f"codec {codec!r}: this PyAV build has no {CODECS[codec][0]} encoder "
                           f"(available: {', '.join(available_codecs())})")
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak == 0.0:
        return np.zeros(n, dtype=np.float32)
    rate = _encoder_rate(codec, sample_rate)
    y = _encode_decode(resample(x * (PEAK / peak), sample_rate, rate), rate, codec, bitrate)
    delay = codec_delay(codec, rate, bitrate)
    y = resample(y[delay:], rate, sample_rate) * (peak / PEAK)
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)
