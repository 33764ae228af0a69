"""Rooms: speech played in a random shoebox room and picked up by a microphone somewhere else in it.

    room = sample_room(rng, RoomConfig())                        # Room(size, source, mic, rt60)
    h = room_impulse_response(room, 16000, rng)                  # (L,) from the direct path on
    y = reverberate(x, h)                                        # (N,) float32, the input's length and RMS

The impulse response has two parts: the image-source model of pyroomacoustics (`pra.ShoeBox`, absorption from
`pra.inverse_sabine` for the target RT60, every wall alike) up to `early_order` reflections, which gives the direct
path and the early reflections of that geometry exactly; and past the time where that order is complete, a
Gaussian noise tail decaying by 60 dB in RT60 seconds, its level matched to the image sources' energy just
before, cross-faded in. The tail keeps the decay at the target RT60 (the image-source model alone, at full order,
decays 10-40% slower than Sabine's formula says, and its cost grows with the cube of the order) and costs nothing;
its noise comes from `rng`, so the response is a function of the room and the seed (pyroomacoustics' own ray
tracer is not seeded, hence not used).

`reverberate` starts the response 1 ms before its direct-path peak, so the speech keeps its timing (no
propagation delay), cuts the reverberant tail that runs past the input's end, and restores the input's RMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from toolkit.augment import ranges
from toolkit.errors import ConfigError

SPEED_OF_SOUND = 343.0  # m/s
SABINE = 0.161  # s/m: RT60 = SABINE * volume / (surface * absorption)


@dataclass
class RoomConfig:
    """How often speech is put in a room (`prob`), and the ranges its rooms are drawn from: RT60 in seconds,
    sizes in metres (`length` x `width` x `height`), the source-microphone `distance` in metres; source and
    microphone stay `wall_distance` metres from every wall. `early_order`: the image-source order before the
    stochastic tail (higher: more exact early reflections, cost ~ order^3)."""

    prob: float = 0.3
    rt60: tuple[float, float] = (0.2, 0.8)
    length: tuple[float, float] = (3.0, 10.0)
    width: tuple[float, float] = (2.5, 8.0)
    height: tuple[float, float] = (2.4, 4.0)
    distance: tuple[float, float] = (0.3, 3.0)
    wall_distance: float = 0.3
    early_order: int = 20

    def __post_init__(self) -> None:
        where = "RoomConfig"
        ranges.check_prob(where, "prob", self.prob)
        ranges.check_range(where, "rt60", self.rt60, 0.05, 5.0)
        for name in ("length", "width", "height"):
            ranges.check_range(where, name, getattr(self, name), 1.0, 100.0)
        ranges.check_range(where, "distance", self.distance, 0.05, 100.0)
        if not 0.0 < self.wall_distance < min(self.length[0], self.width[0], self.height[0]) / 2:
            raise ConfigError(f"RoomConfig.wall_distance: must be > 0 and below half the smallest room side, got "
                              f"{self.wall_distance}")
        if not 1 <= self.early_order <= 60:
            raise ConfigError(f"RoomConfig.early_order: an integer in [1, 60], got {self.early_order}")


@dataclass(frozen=True)
class Room:
    """A shoebox room: `size` (length, width, height) in metres, `source` and `mic` positions in metres from the
    corner, the reverberation time `rt60` in seconds."""

    size: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60: float


def shortest_rt60(size: tuple[float, float, float]) -> float:
    """The shortest RT60 Sabine's formula allows in a room of `size` (every wall fully absorbing)."""
    length, width, height = size
    surface = 2 * (length * width + length * height + width * height)
    return SABINE * length * width * height / surface


def sample_room(rng: np.random.Generator, config: RoomConfig) -> Room:
    """A room drawn from `config`: size, RT60 (raised to 1.5 x the room's shortest possible one when below: near
    full absorption Sabine's formula, and so the target, loses its meaning), the source at mouth height (1.2-1.9 m
    when the room allows) and the microphone at a distance drawn from `config.distance`, both `wall_distance` from
    every wall (when the room has no such point, the microphone goes halfway to the farthest corner)."""
    size = tuple(round(ranges.uniform(rng, getattr(config, k)), 3) for k in ("length", "width", "height"))
    rt60 = max(ranges.uniform(rng, config.rt60), 1.5 * shortest_rt60(size))
    m = config.wall_distance
    lo, hi = np.full(3, m), np.asarray(size) - m
    source = rng.uniform(lo, hi)
    source[2] = rng.uniform(max(lo[2], min(1.2, hi[2])), max(lo[2], min(1.9, hi[2])))
    wanted = ranges.uniform(rng, config.distance)
    mic = source
    for _ in range(50):  # a direction whose point at the wanted distance is inside the margins
        direction = rng.standard_normal(3)
        direction[2] *= 0.3  # mostly horizontal
        candidate = source + wanted * direction / np.linalg.norm(direction)
        if np.all(candidate >= lo) and np.all(candidate <= hi):
            mic = candidate
            break
    else:  # the room is too small for that distance: the farthest corner of the margins' box, halfway there
        corner = np.where(source - lo > hi - source, lo, hi)
        mic = source + 0.5 * (corner - source)
    return Room(size, tuple(round(float(v), 3) for v in source), tuple(round(float(v), 3) for v in mic),
                round(rt60, 3))


def room_impulse_response(room: Room, sample_rate: int, rng: np.random.Generator, early_order: int = 20
                          ) -> np.ndarray:
    """The impulse response (L,) from `room.source` to `room.mic` (module docstring), starting 1 ms before the
    direct path's peak; L covers RT60 seconds after it. Float64."""
    import pyroomacoustics as pra

    absorption, full_order = pra.inverse_sabine(room.rt60, list(room.size))
    order = int(min(full_order, early_order))
    shoebox = pra.ShoeBox(list(room.size), fs=sample_rate, materials=pra.Material(float(absorption)),
                          max_order=order, air_absorption=False)
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(np.asarray(room.mic, dtype=np.float64)[:, None])
    shoebox.compute_rir()
    early = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(early)))
    early = early[max(0, peak - sample_rate // 1000):]
    peak = min(peak, sample_rate // 1000)
    # Every image of order `order + 1` lies at least ~0.55 * order shortest room sides away (reflections spread
    # over the three axes): until then the image-source part is complete; the tail fades in over the second half.
    complete = peak + int(0.55 * order * min(room.size) / SPEED_OF_SOUND * sample_rate)
    a, b = peak + max(1, (complete - peak) // 2), max(peak + 2, complete)
    n = max(b + 1, peak + int(room.rt60 * sample_rate) + 1)
    t = np.arange(n - peak) / sample_rate
    tail = np.zeros(n)
    tail[peak:] = rng.standard_normal(n - peak) * np.power(10.0, -3.0 * t / room.rt60)  # -60 dB at t = RT60
    early = np.pad(early, (0, max(0, n - len(early))))[:n]
    e_early, e_tail = float(np.sum(early[a:b] ** 2)), float(np.sum(tail[a:b] ** 2))
    tail *= math.sqrt(e_early / e_tail) if e_tail > 0 else 0.0
    fade = np.clip((np.arange(n) - a) / max(1, b - a), 0.0, 1.0)
    return early * np.cos(0.5 * np.pi * fade) + tail * np.sin(0.5 * np.pi * fade)


def reverberate(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """`x` (N,) convolved with the impulse response `h`, cut to N samples and scaled back to the input's RMS
    (float32)."""
    from scipy.signal import oaconvolve

    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return x.astype(np.float32)
    y = oaconvolve(x, h)[: len(x)]
    rms_in, rms_out = math.sqrt(float(np.mean(x**2))), math.sqrt(float(np.mean(y**2)))
    return (y * (rms_in / rms_out if rms_out > 0 else 0.0)).astype(np.float32)
