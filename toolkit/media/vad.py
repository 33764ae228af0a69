"""Voice activity detection over streamed audio: per-window speech probabilities, then speech regions.

    vad = make_vad(VadConfig())                                   # silero-vad, or the energy detector without it
    probs = speech_probabilities(stream_audio("talk.mkv"), vad)   # (W,) float32, one per 32 ms window
    regions = speech_regions(probs, vad.window_seconds, VadConfig(), duration=info.duration)

Both detectors take 16 kHz float32 mono blocks of any length and return one probability per complete 512-sample
window (32 ms); samples left over are carried into the next call, `flush()` scores them zero-padded at the end of
a file and `reset()` forgets everything between files. An hour of audio is 112,500 windows: the probabilities of a
whole file are kept, the audio is not.

`SileroVad` runs the silero-vad model shipped inside the `silero-vad` wheel (its weights are package data: nothing
is downloaded). The model is a per-window convolutional encoder followed by an LSTM cell whose state runs through
the file; the package calls it once per window. Here the encoder runs on all the windows of a block at once and
the recurrence on the whole block in one `torch.nn.LSTM` call holding the same weights, the state carried between
blocks, which gives the same probabilities (checked against the per-window call when the model is loaded; a model
of a different layout falls back to the per-window call).

`EnergyVad` needs nothing but numpy; see its docstring for what it can and cannot reject.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from toolkit.data.audio import SAMPLE_RATE  # the rate both detectors work at
from toolkit.errors import ConfigError
from toolkit.threads import torch_threads

__all__ = ["EnergyVad", "Region", "SileroVad", "VadConfig", "make_vad", "speech_probabilities", "speech_regions"]

log = logging.getLogger(__name__)

WINDOW_SAMPLES = 512  # one probability per 32 ms
WINDOW_SECONDS = WINDOW_SAMPLES / SAMPLE_RATE


@dataclass
class VadConfig:
    """How speech probabilities become speech regions (all durations in seconds).

    backend:        "silero" (falls back to "energy", with a warning, when silero-vad cannot be imported) or "energy"
    threshold:      a region starts at a window whose probability is >= threshold ...
    neg_threshold:  ... and ends once the probability stays below neg_threshold (default threshold - 0.15) for
                    `min_silence`; a dip that is shorter does not end it
    min_speech:     regions shorter than this (before padding) are dropped
    pad:            each region is widened by this much on both sides (clipped to the file), overlaps are merged
    """

    backend: Literal["silero", "energy"] = "silero"
    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech: float = 0.25
    min_silence: float = 0.3
    pad: float = 0.2

    def __post_init__(self) -> None:
        if self.backend not in ("silero", "energy"):
            raise ConfigError(f"vad.backend: expected 'silero' or 'energy', got {self.backend!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"vad.threshold: expected a probability in (0, 1), got {self.threshold!r}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ConfigError(f"vad.neg_threshold: expected 0 <= neg_threshold <= threshold ({self.threshold}), "
                              f"got {self.neg_threshold!r}")
        for name in ("min_speech", "min_silence", "pad"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"vad.{name}: expected seconds >= 0, got {value!r}")

    @property
    def exit_threshold(self) -> float:
        """The probability below which speech ends: `neg_threshold`, or `threshold - 0.15` (at least 0.01)."""
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class Region:
    """A stretch of speech, `[start, end)` in seconds from the start of the file."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


# ---------------------------------------------------------------------------------------------- detectors


class _WindowedVad:
    """Cuts a stream of blocks into 512-sample windows and scores them with `_score` (a subclass's)."""

    window_samples = WINDOW_SAMPLES
    window_seconds = WINDOW_SECONDS
    sample_rate = SAMPLE_RATE

    def __init__(self) -> None:
        self._leftover = np.zeros(0, np.float32)

    def reset(self) -> None:
        """Forget the carried samples and the detector's state: call between files."""
        self._leftover = np.zeros(0, np.float32)
        self._reset_state()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """`block` (N,) float32 at 16 kHz -> `(W,)` float32 speech probabilities, one per complete window of the
        carried samples followed by `block`; the incomplete rest is carried to the next call."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise ValueError(f"expected a (N,) mono block, got shape {block.shape}")
        scores = []
        if self._leftover.size:  # complete the carried window first, so that the block itself is never copied
            need = WINDOW_SAMPLES - self._leftover.size
            self._leftover = np.concatenate([self._leftover, block[:need]])
            block = block[need:]
            if self._leftover.size < WINDOW_SAMPLES:
                return np.zeros(0, np.float32)
            scores.append(self._score(self._leftover[None]))
        n_windows = block.size // WINDOW_SAMPLES
        self._leftover = block[n_windows * WINDOW_SAMPLES:].copy()
        if n_windows:
            scores.append(self._score(block[:n_windows * WINDOW_SAMPLES].reshape(n_windows, WINDOW_SAMPLES)))
        return np.concatenate(scores).astype(np.float32, copy=False) if scores else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """Score the carried samples zero-padded to one window: `(1,)` at the end of a file, `(0,)` if none."""
        if not self._leftover.size:
            return np.zeros(0, np.float32)
        frame = np.zeros((1, WINDOW_SAMPLES), np.float32)
        frame[0, :self._leftover.size] = self._leftover
        self._leftover = np.zeros(0, np.float32)
        return self._score(frame).astype(np.float32, copy=False)

    def _score(self, frames: np.ndarray) -> np.ndarray:  # (W, 512) -> (W,)
        raise NotImplementedError

    def _reset_state(self) -> None:
        raise NotImplementedError


def _load_silero_jit() -> torch.jit.ScriptModule:
    """The silero-vad JIT model from its wheel. Importing `silero_vad` calls `torch.set_num_threads(1)` for the
    whole process; the caller's setting is restored."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # torch.jit.load's and importlib.resources.path's deprecation notices
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=False)


class SileroVad(_WindowedVad):
    """Streaming silero-vad: `__call__(block (N,) float32 16 kHz) -> (W,)` probabilities; `reset()` between files.

    Each window is scored with the 64 samples before it as context (zeros at the start of a file), as the model was
    trained. `num_threads` torch threads are used while scoring (the caller's setting is restored after each call):
    the model's operations are small, so more threads add synchronisation cost and no speed (one thread is the
    default; README.md, "Subtitles"). None leaves torch's setting alone.
    Raises ImportError when silero-vad is not installed.
    """

    CONTEXT_SAMPLES = 64

    def __init__(self, num_threads: int | None = 1) -> None:
        super().__init__()
        self.num_threads = num_threads
        self._jit = _load_silero_jit()
        self._jit.eval()
        self._batched = self._build_batched()
        self._reset_state()

    def _build_batched(self) -> bool:
        """Set up the block-at-once path from the model's parts; False when the model is not laid out as expected
        or the block-at-once probabilities differ from the package's per-window call."""
        try:
            inner = self._jit._model
            self._stft, self._encoder = inner.stft, inner.encoder
            cell, head = inner.decoder.rnn, getattr(inner.decoder.decoder, "2")
            self._lstm = torch.nn.LSTM(cell.weight_ih.shape[1], cell.weight_hh.shape[1]).eval()
            self._head = torch.nn.Linear(head.weight.shape[1], 1).eval()
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(self._lstm, f"{name}_l0").copy_(getattr(cell, name))
                self._head.weight.copy_(head.weight[:, :, 0])
                self._head.bias.copy_(head.bias)
        except (AttributeError, IndexError, RuntimeError):
            return False
        t = np.arange(24 * WINDOW_SAMPLES) / SAMPLE_RATE
        probe = (0.3 * np.sin(2 * np.pi * 180 * t) * (t > 0.25)
                 + 0.02 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
        frames = probe.reshape(-1, WINDOW_SAMPLES)
        self._batched = True
        self._reset_state()
        batched = self._score(frames)
        self._batched = False
        self._reset_state()
        return bool(np.allclose(batched, self._score(frames), atol=1e-4))

    def _reset_state(self) -> None:
        hidden = self._lstm.hidden_size if self._batched else 0
        self._context = torch.zeros(self.CONTEXT_SAMPLES)
        self._state = (torch.zeros(1, 1, hidden), torch.zeros(1, 1, hidden))
        self._jit.reset_states()

    def _score(self, frames: np.ndarray) -> np.ndarray:
        with torch_threads(self.num_threads), torch.inference_mode():
            return self._score_frames(torch.from_numpy(frames))

    def _score_frames(self, x: torch.Tensor) -> np.ndarray:
        if not self._batched:  # the package's own call: one window at a time, state kept inside the model
            return np.array([self._jit(x[i:i + 1], SAMPLE_RATE).item() for i in range(len(x))], np.float32)
        context = torch.cat([self._context[None], x[:-1, -self.CONTEXT_SAMPLES:]])  # (W, 64)
        features = self._encoder(self._stft(torch.cat([context, x], dim=1)))  # (W, 128, 1)
        hidden, self._state = self._lstm(features[:, :, 0].unsqueeze(1), self._state)  # (W, 1, 128)
        self._context = x[-1, -self.CONTEXT_SAMPLES:].clone()
        return torch.sigmoid(self._head(torch.relu(hidden[:, 0]))).squeeze(1).numpy()


class EnergyVad(_WindowedVad):
    """A speech detector from loudness alone: the fallback when silero-vad is not available.

    For each 32 ms window, its level `e` in the speech band (dB re full scale: 10 log10 of the mean square of the
    Hann-windowed samples' content between `band_hz`, from the FFT) is compared with a noise floor: the lowest level
    of the last `floor_seconds` (this window included). The pseudo-probability is
    `sigmoid((e - floor - margin_db) / slope_db)`, 0.5 at `margin_db` above the floor, and 0 below `min_level_db`.
    Leaving out the rumble below the speech band matters: the level of pink noise, measured over all frequencies,
    swings by 12 dB and more from window to window, in 150-4000 Hz by about 5 dB.

    It rejects silence, anything quieter than `min_level_db`, and steady sounds at any level: stationary noise
    (white, pink, hum, fans) and sustained tones or held chords, because their level never rises far above its own
    recent minimum. It CANNOT tell speech from any other sound that rises `margin_db` above the floor: a burst of
    noise after a quieter passage (until it has lasted `floor_seconds` and become the floor), music with note onsets
    and decays, knocks, laughter, are all called speech; speech less than ~`margin_db` above steady noise is missed,
    and the middle of a stretch of speech longer than `floor_seconds` with no pause may drop out.
    """

    def __init__(self, floor_seconds: float = 3.0, margin_db: float = 12.0, slope_db: float = 2.0,
                 min_level_db: float = -55.0, band_hz: tuple[float, float] = (150.0, 4000.0)) -> None:
        super().__init__()
        if not floor_seconds > 0 or not slope_db > 0:
            raise ValueError(f"floor_seconds and slope_db must be > 0, got {floor_seconds!r}, {slope_db!r}")
        self.floor_windows = max(1, round(floor_seconds / WINDOW_SECONDS))
        self.margin_db, self.slope_db, self.min_level_db = margin_db, slope_db, min_level_db
        self._taper = np.hanning(WINDOW_SAMPLES).astype(np.float32)
        freqs = np.fft.rfftfreq(WINDOW_SAMPLES, 1.0 / SAMPLE_RATE)
        self._band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
        if not self._band.any():
            raise ValueError(f"band_hz {band_hz} holds no FFT bin of a {WINDOW_SAMPLES}-sample window")
        # one-sided band power -> mean square of the untapered signal: 2 |X_k|^2 / (N * sum(taper^2))
        self._scale = 2.0 / (WINDOW_SAMPLES * float(np.sum(self._taper ** 2)))
        self._reset_state()

    def _reset_state(self) -> None:
        # levels of the windows before this block that still count for the floor (inf: before the file started)
        self._history = np.full(self.floor_windows - 1, np.inf, np.float64)

    def _band_level(self, frames: np.ndarray, windows_per_step: int = 128) -> np.ndarray:
        """`(W, 512)` -> `(W,)` float64 speech-band level in dB re full scale, a few windows at a time so that the
        FFT's temporaries stay small next to the block."""
        power = np.empty(len(frames), np.float64)
        for i in range(0, len(frames), windows_per_step):
            spectrum = np.fft.rfft(frames[i:i + windows_per_step] * self._taper, axis=1)[:, self._band]
            power[i:i + windows_per_step] = self._scale * np.sum(np.abs(spectrum) ** 2, axis=1, dtype=np.float64)
        return 10.0 * np.log10(power + 1e-12)

    def _score(self, frames: np.ndarray) -> np.ndarray:
        level = self._band_level(frames)
        levels = np.concatenate([self._history, level])
        floor = np.lib.stride_tricks.sliding_window_view(levels, self.floor_windows).min(axis=1)  # (W,)
        self._history = levels[levels.size - (self.floor_windows - 1):]
        prob = 1.0 / (1.0 + np.exp(-(level - floor - self.margin_db) / self.slope_db))
        prob[level < self.min_level_db] = 0.0
        return prob.astype(np.float32)


def make_vad(config: VadConfig) -> SileroVad | EnergyVad:
    """The detector `config.backend` names; "silero" without an importable silero-vad gives `EnergyVad`, logged."""
    if config.backend == "silero":
        try:
            return SileroVad()
        except ImportError as e:
            log.warning("silero-vad cannot be imported (%s): using the energy-based detector instead", e)
    return EnergyVad()


# ---------------------------------------------------------------------------------------------- regions


def speech_probabilities(blocks: Iterable[np.ndarray], vad: SileroVad | EnergyVad) -> np.ndarray:
    """Run `vad` (reset first) over an iterable of `(N,)` float32 16 kHz blocks -> `(W,)` float32 probabilities,
    `W = ceil(total samples / 512)` (the last window zero-padded)."""
    vad.reset()
    probs = [vad(block) for block in blocks]
    probs.append(vad.flush())
    return np.concatenate(probs).astype(np.float32, copy=False)


def _runs(mask: np.ndarray) -> np.ndarray:
    """`(R, 2)` [first, last + 1) window indices of the runs of True in a boolean `(W,)` mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def speech_regions(probs: np.ndarray, window_seconds: float, config: VadConfig, duration: float) -> list[Region]:
    """Speech regions from `(W,)` per-window probabilities (window i covers `[i, i+1) * window_seconds`).

    Hysteresis: speech starts at a window >= `config.threshold` and continues through windows above
    `config.exit_threshold`; gaps shorter than `min_silence` are closed, regions shorter than `min_speech` dropped,
    the rest padded by `pad` on both sides, clipped to `[0, duration]` and merged where they overlap. Sorted, disjoint.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 1:
        raise ValueError(f"expected (W,) probabilities, got shape {probs.shape}")
    if probs.size == 0:
        return []
    # state per window: 1 at or above threshold, 0 below the exit threshold, else whatever the previous window was
    event = np.where(probs >= config.threshold, 1, np.where(probs < config.exit_threshold, 0, -1))
    last_event = np.maximum.accumulate(np.where(event >= 0, np.arange(event.size), -1))
    speaking = np.where(last_event >= 0, event[np.maximum(last_event, 0)], 0) == 1
    runs = _runs(speaking).astype(np.float64) * window_seconds  # (R, 2) seconds
    if not runs.size:
        return []
    opens = np.concatenate([[True], runs[1:, 0] - runs[:-1, 1] >= config.min_silence])  # a long enough gap before
    merged = np.stack([runs[opens, 0], np.maximum.reduceat(runs[:, 1], np.flatnonzero(opens))], axis=1)
    merged = merged[merged[:, 1] - merged[:, 0] >= config.min_speech]
    regions: list[Region] = []
    for start, end in merged:
        start, end = max(0.0, start - config.pad), min(duration, end + config.pad)
        if end <= start:
            continue
        if regions and start <= regions[-1].end:
            regions[-1] = Region(regions[-1].start, max(regions[-1].end, end))
        else:
            regions.append(Region(float(start), float(end)))
    return regions
