"""The cost of every speech augmentation (`toolkit.augment`), in milliseconds of one CPU thread per second of audio,
to budget on-the-fly augmentation against a training step (not a test).

    python tests/benchmarks/augment_cost.py [--seconds 6] [--repeats 3] [--plans 40] [--step-s 0.45]
    python tests/benchmarks/augment_cost.py --seconds 1 --repeats 1 --plans 4        # smoke run

Each transform runs on the same speech-like signal (`--seconds` of vowels with a gliding pitch and syllable
envelopes, 16 kHz), in interleaved rounds so that machine noise hits all alike; the best round counts. Then the
default `SpeechAugmentConfig()` (every part at its default probability) is applied with `--plans` seeds: its mean
cost per second of audio (best of `--repeats` passes over the same seeds) is what a DataLoader worker spends on
average. The last lines compare that with a training step that takes `--step-s` seconds per 60 s of audio (the
conformer quick recipe on one thread: ~0.45 s): `workers_needed` DataLoader workers keep up with it. Prints a
table, then a last line with every figure as key=value.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load: one thread, as a loader worker

import numpy as np
from scipy.signal import lfilter

from toolkit.augment import ArrayBabble, SpeechAugmentConfig, SpeechAugmenter
from toolkit.augment.channel import ChannelChoice, EqBand, apply_channel
from toolkit.augment.codec import available_codecs
from toolkit.augment.noise import NoiseChoice, add_noise
from toolkit.augment.room import RoomConfig, reverberate, room_impulse_response, sample_room
from toolkit.augment.voice import VoiceChange, change_voice

SR = 16000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Vowels: harmonics of a pitch gliding 100-180 Hz through two formant resonators, in 4 Hz syllables, with
    pauses every 1.5 s; peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.cos(k * phase) / k**0.5 for k in range(1, 40))
    for fc, bw in ((600 + 200 * rng.random(), 90.0), (1500 + 500 * rng.random(), 120.0)):
        r, theta = math.exp(-math.pi * bw / SR), 2 * math.pi * fc / SR
        y = lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], y)
    y *= np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.mod(t, 1.5) < 1.2)
    y = 0.5 * y / np.max(np.abs(y))
    return (y + 1e-3 * rng.standard_normal(len(y))).astype(np.float32)


def interleaved_best(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The best wall seconds of every case over `rounds` rounds, each round running every case once, in order."""
    best = {name: math.inf for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the test signal")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (the best counts)")
    ap.add_argument("--plans", type=int, default=40, help="seeds of the default pipeline")
    ap.add_argument("--step-s", type=float, default=0.45, help="training step seconds per 60 s of audio")
    args = ap.parse_args()

    x = speech_like(args.seconds)
    talkers = ArrayBabble([speech_like(3.0, seed=k) for k in range(1, 8)])
    rng = np.random.default_rng
    room_03 = sample_room(rng(0), RoomConfig(rt60=(0.3, 0.3)))
    room_08 = sample_room(rng(0), RoomConfig(rt60=(0.8, 0.8)))
    voice = VoiceChange(f0_ratio=1.15, f0_range=0.8, vtl_alpha=1.08, breathiness=0.2, rate=1.1, jitter=0.05)
    eq = (EqBand("lowshelf", 200.0, -6.0, 0.7), EqBand("peak", 2500.0, 6.0, 1.5), EqBand("highshelf", 5000.0, -8.0,
                                                                                       0.7))
    cases: dict[str, tuple[str, Callable[[], object]]] = {
        "voice_dio": ("voice: WORLD (DIO), every change", lambda: change_voice(x, SR, voice, rng(0), "dio")),
        "voice_harvest": ("voice: WORLD (Harvest), every change",
                          lambda: change_voice(x, SR, voice, rng(0), "harvest")),
        "voice_f0_only": ("voice: WORLD (DIO), F0 ratio only",
                          lambda: change_voice(x, SR, VoiceChange(f0_ratio=1.2), rng(0), "dio")),
        "room_rt60_0.3": ("room: RT60 0.3 s (RIR + convolution)",
                          lambda: reverberate(x, room_impulse_response(room_03, SR, rng(0)))),
        "room_rt60_0.8": ("room: RT60 0.8 s (RIR + convolution)",
                          lambda: reverberate(x, room_impulse_response(room_08, SR, rng(0)))),
    }
    for kind in ("white", "pink", "brown", "hum", "babble"):
        choice = NoiseChoice(kind, 10.0, mains_hz=50.0, talkers=(0, 1, 2, 3, 4) if kind == "babble" else ())
        label = f"noise: {kind}" + (" (5 talkers in memory)" if kind == "babble" else "")
        cases[f"noise_{kind}"] = (label, lambda c=choice: add_noise(x, c, SR, rng(0), talkers))
    channels = {"eq3": ("channel: 3-band microphone EQ", ChannelChoice(eq=eq)),
                "telephone_none": ("channel: telephone band only", ChannelChoice(telephone="none"))}
    for codec in ("mulaw", "alaw", "gsm", "amr"):
        if codec in available_codecs():
            channels[f"telephone_{codec}"] = (f"channel: telephone, {codec}",
                                              ChannelChoice(telephone=codec, bitrate=7400 if codec == "amr" else None))
    for codec, bitrate in (("mp3", 16000), ("opus", 12000)):
        if codec in available_codecs():
            channels[f"{codec}_{bitrate // 1000}k"] = (f"channel: {codec} {bitrate // 1000} kb/s round trip",
                                                       ChannelChoice(compress=codec, bitrate=bitrate))
    channels["gain_clip"] = ("channel: gain + clipping", ChannelChoice(gain_db=6.0, clip=0.5))
    for key, (label, choice) in channels.items():
        cases[key] = (label, lambda c=choice: apply_channel(x, SR, c))
    for _, fn in cases.values():  # warm-up: imports, codec delays, FFT plans
        fn()
    secs = interleaved_best({key: fn for key, (_, fn) in cases.items()}, args.repeats)
    ms_per_s = {key: 1000 * s / args.seconds for key, s in secs.items()}

    augmenter = SpeechAugmenter(SpeechAugmentConfig(), SR, talkers)
    augmenter(x, seed=(0, 0, 0))
    passes = []
    for _ in range(args.repeats):  # the best of `repeats` passes over the same seeds
        start = time.perf_counter()
        for seed in range(args.plans):
            augmenter(x, seed=(0, 0, seed))
        passes.append(time.perf_counter() - start)
    default_ms = 1000 * min(passes) / args.plans / args.seconds
    batch_s = default_ms * 60 / 1000  # seconds of augmentation per 60 s of audio
    workers = max(1, math.ceil(batch_s / args.step_s))

    print(f"augmentation cost on {os.cpu_count()} CPUs, one thread (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}), {args.seconds:g} s of 16 kHz speech-like audio; best of "
          f"{args.repeats} interleaved rounds")
    print(f"{'transform':<46} {'ms per s of audio':>18}")
    for key, (label, _) in cases.items():
        print(f"{label:<46} {ms_per_s[key]:>18.1f}")
    print(f"{'default SpeechAugmentConfig(), ' + str(args.plans) + ' seeds (mean)':<46} {default_ms:>18.1f}")
    print(f"per 60 s of audio: {batch_s:.2f} s of augmentation against a {args.step_s} s training step: "
          f"{workers} DataLoader worker(s) keep up")
    figures = [f"{key}_ms_per_s={v:.2f}" for key, v in ms_per_s.items()]
    figures += [f"default_ms_per_s={default_ms:.2f}", f"default_s_per_60s={batch_s:.3f}", f"workers_needed={workers}"]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
