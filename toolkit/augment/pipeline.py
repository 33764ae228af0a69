"""One config for every transform, and the sampler -> apply pipeline, deterministic from a seed.

    augmenter = SpeechAugmenter(SpeechAugmentConfig(), 16000, babble=FileBabble(paths, 16000))
    y, plan = augmenter(x, seed=(base_seed, epoch, i), index=i)      # same seed -> same plan, same samples
    plan.to_dict()   # {"voice": {"f0_ratio": 1.12, ...}, "noise": {"kind": "babble", "snr_db": 11.3, ...}}

Order: voice (WORLD) -> room -> noise -> channel (EQ, telephone or codec, gain, clipping): a speaker in a room
with noise around, recorded through a microphone and a line. Each part applies with its probability; a plan with
no part leaves the samples untouched.

Seeds: `seed` is an int or a sequence of ints (e.g. (base seed, epoch, item)); `numpy.random.SeedSequence(seed)`
spawns two streams per part, one for its parameters and one for the noise it makes when applied, so switching a
part off (or on, or changing its ranges) changes neither the other parts' parameters nor their noise. The plan is
drawn before anything is applied and records every parameter (`AugmentPlan.to_dict`), so a manifest can say what
was done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from toolkit.augment import ranges
from toolkit.augment.channel import ChannelChoice, ChannelConfig, apply_channel, sample_channel
from toolkit.augment.noise import BabbleSource, NoiseChoice, NoiseConfig, add_noise, sample_noise
from toolkit.augment.room import Room, RoomConfig, reverberate, room_impulse_response, sample_room
from toolkit.augment.voice import VoiceChange, VoiceConfig, change_voice, sample_voice
from toolkit.errors import ConfigError

Seed = int | Sequence[int]


@dataclass
class SpeechAugmentConfig:
    """Every transform's probability and parameter ranges (`VoiceConfig`, `RoomConfig`, `NoiseConfig`,
    `ChannelConfig`); in YAML, e.g. `data.augment: {voice: {prob: 0.5, rate: [0.9, 1.1]}, noise: {snr_db: [0,
    20]}}` (unset keys take the defaults). `SpeechAugmentConfig.off()` has every probability at 0."""

    voice: VoiceConfig = field(default_factory=VoiceConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)

    def __post_init__(self) -> None:
        for name, cls in (("voice", VoiceConfig), ("room", RoomConfig), ("noise", NoiseConfig),
                          ("channel", ChannelConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"SpeechAugmentConfig.{name}: expected a {cls.__name__}, got "
                                  f"{type(getattr(self, name)).__name__}")

    @classmethod
    def off(cls) -> SpeechAugmentConfig:
        """A config that changes nothing (every probability 0), to switch parts on one at a time."""
        return cls(VoiceConfig(prob=0.0), RoomConfig(prob=0.0), NoiseConfig(prob=0.0),
                   ChannelConfig(eq_prob=0.0, telephone_prob=0.0, compress_prob=0.0, gain_prob=0.0, clip_prob=0.0))


@dataclass(frozen=True)
class AugmentPlan:
    """What is done to one utterance (a part left None is not applied)."""

    voice: VoiceChange | None = None
    room: Room | None = None
    noise: NoiseChoice | None = None
    channel: ChannelChoice | None = None

    def to_dict(self) -> dict:
        """The parts applied, as plain JSON-able values ({} for none); a channel lists only what it does."""
        out = {}
        for name in ("voice", "room", "noise"):
            part = getattr(self, name)
            if part is not None:
                out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(part).items()
                             if name != "noise" or v not in (0.0, ())}  # a noise's mains (hum), talkers (babble)
        if self.channel is not None:
            out["channel"] = {k: (list(v) if isinstance(v, tuple) else v)  # eq: a list of band dicts
                              for k, v in asdict(self.channel).items() if v not in (None, ())}
        return out

    def describe(self) -> str:
        """A short label, e.g. "voice(f0x1.12,vtl0.93,rate1.05),room(rt60=0.41),noise(babble@11.3dB),channel(eq3,
        amr7400)" ("" for none)."""
        parts = []
        if self.voice is not None:
            v = self.voice
            parts.append(f"voice(f0x{v.f0_ratio},range{v.f0_range},vtl{v.vtl_alpha},breath{v.breathiness},"
                         f"rate{v.rate},jitter{v.jitter})")
        if self.room is not None:
            parts.append(f"room(rt60={self.room.rt60})")
        if self.noise is not None:
            parts.append(f"noise({self.noise.kind}@{self.noise.snr_db}dB)")
        if self.channel is not None:
            c = self.channel
            bits = ([f"eq{len(c.eq)}"] if c.eq else []) + [f"{codec}{c.bitrate or ''}" for codec in
                                                            (c.telephone, c.compress) if codec]
            bits += ([f"gain{c.gain_db}dB"] if c.gain_db is not None else []) + (
                [f"clip{c.clip}"] if c.clip is not None else [])
            parts.append(f"channel({','.join(bits)})")
        return ",".join(parts)


def _streams(seed: Seed) -> tuple[list[np.random.Generator], list[np.random.Generator]]:
    """(the voice, room, noise and channel generators of the plan's draws, the same four of their samples), all
    independent, from `seed`."""
    entropy = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if any(s < 0 for s in entropy):
        raise ValueError(f"augmentation seeds must be >= 0, got {entropy}")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(8)]
    return rngs[:4], rngs[4:]


def sample_plan(rngs: Sequence[np.random.Generator], config: SpeechAugmentConfig, sample_rate: int,
                babble_count: int = 0, exclude: int | None = None) -> AugmentPlan:
    """The plan of one utterance drawn from `config`, each part with its generator of `rngs` (voice, room, noise,
    channel); `babble_count`: utterances the babble source holds; `exclude`: this utterance's index in it, never
    its own babble."""
    voice_rng, room_rng, noise_rng, channel_rng = rngs
    voice = sample_voice(voice_rng, config.voice) if ranges.happens(voice_rng, config.voice.prob) else None
    room = sample_room(room_rng, config.room) if ranges.happens(room_rng, config.room.prob) else None
    noise = (sample_noise(noise_rng, config.noise, babble_count, exclude)
             if ranges.happens(noise_rng, config.noise.prob) else None)
    channel = sample_channel(channel_rng, config.channel, sample_rate)
    return AugmentPlan(voice, room, noise, None if channel == ChannelChoice() else channel)


def apply_plan(x: np.ndarray, plan: AugmentPlan, config: SpeechAugmentConfig, sample_rate: int,
               streams: Sequence[np.random.Generator], babble: BabbleSource | None = None) -> np.ndarray:
    """`x` (N,) float at `sample_rate` transformed by `plan` (voice, room, noise, channel), with the voice, room,
    noise and channel generators `streams`; (N',) float32, N' = N unless the voice changed the rate (an empty
    signal is returned as it is)."""
    y = np.asarray(x, dtype=np.float32)
    if not len(y):
        return y
    voice_rng, room_rng, noise_rng, _channel_rng = streams
    if plan.voice is not None:
        v = config.voice
        y = change_voice(y, sample_rate, plan.voice, voice_rng, v.f0_method, v.frame_period, v.jitter_interval)
    if plan.room is not None:
        y = reverberate(y, room_impulse_response(plan.room, sample_rate, room_rng, config.room.early_order))
    if plan.noise is not None:
        y = add_noise(y, plan.noise, sample_rate, noise_rng, babble, config.noise.hum_harmonics)
    if plan.channel is not None:
        y = apply_channel(y, sample_rate, plan.channel)
    if not np.all(np.isfinite(y)):  # no transform should give this; a training batch must never get it
        raise FloatingPointError(f"augmentation {plan.describe()} gave non-finite samples")
    return np.asarray(y, dtype=np.float32)


class SpeechAugmenter:
    """`config` applied to waveforms at `sample_rate`, babble drawn from `babble` (without a source, babble is
    never drawn; a config whose only noise is babble needs one)."""

    def __init__(self, config: SpeechAugmentConfig, sample_rate: int, babble: BabbleSource | None = None) -> None:
        if babble is None and config.noise.prob > 0 and tuple(config.noise.kinds) == ("babble",):
            raise ConfigError("NoiseConfig.kinds: babble is the only noise kind and no babble source (other "
                              "utterances) was given")
        self.config, self.sample_rate, self.babble = config, sample_rate, babble

    def plan(self, seed: Seed, index: int | None = None) -> AugmentPlan:
        """The plan `seed` draws (`index`: the utterance's own index in the babble source, if it is there)."""
        return self._plan(_streams(seed)[0], index)

    def _plan(self, rngs: Sequence[np.random.Generator], index: int | None) -> AugmentPlan:
        count = len(self.babble) if self.babble is not None else 0
        return sample_plan(rngs, self.config, self.sample_rate, count, index)

    def __call__(self, x: np.ndarray, seed: Seed, index: int | None = None) -> tuple[np.ndarray, AugmentPlan]:
        """(`x` transformed, the plan used): both a function of `x`, `seed` and `index` alone."""
        plan_rngs, sample_rngs = _streams(seed)
        plan = self._plan(plan_rngs, index)
        return apply_plan(x, plan, self.config, self.sample_rate, sample_rngs, self.babble), plan
