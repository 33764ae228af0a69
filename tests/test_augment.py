"""Speech augmentation (`toolkit.augment`): each transform measured on short synthetic signals (pitch, pitch range,
formants, breathiness, rate, RT60, SNR, telephone band, codecs, clipping), the seeded pipeline, the config errors
and the on-the-fly augmentation of the speech loader."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, lfilter, sosfilt

from toolkit.augment import (ArrayBabble, ChannelConfig, NoiseConfig, RoomConfig, SpeechAugmentConfig,
                             SpeechAugmenter, VoiceConfig)
from toolkit.augment.channel import (ChannelChoice, EqBand, TELEPHONE_CODECS, apply_channel, equalize,
                                     sample_channel, telephone)
from toolkit.augment.codec import available_codecs, codec_round_trip
from toolkit.augment.noise import NOISE_KINDS, NoiseChoice, add_noise, sample_noise
from toolkit.augment.room import reverberate, room_impulse_response, sample_room
from toolkit.augment.voice import VoiceChange, change_voice
from toolkit.augment.world import pyworld
from toolkit.config import from_dict
from toolkit.errors import ConfigError

SR = 16000
FORMANTS = ((700.0, 80.0), (1200.0, 90.0), (2600.0, 120.0), (3500.0, 150.0), (4500.0, 200.0))  # Hz, bandwidth


def vowel(seconds: float = 1.0, f0: float = 150.0, vibrato: float = 0.0, seed: int = 0) -> np.ndarray:
    """A sustained vowel: harmonics of `f0` (times 1 + vibrato * sin(2 pi 1.5 t)) up to ~7.9 kHz through five
    formant resonators, peak 0.5, with a trace of noise."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + vibrato * np.sin(2 * np.pi * 1.5 * t))) / SR
    y = sum(np.cos(k * phase) for k in range(1, int(7900 / (f0 * (1 + vibrato)))))
    for fc, bw in FORMANTS:
        r, theta = math.exp(-math.pi * bw / SR), 2 * math.pi * fc / SR
        y = lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], y)
    y = 0.5 * y / np.max(np.abs(y))
    return (y + 1e-4 * np.random.default_rng(seed).standard_normal(len(y))).astype(np.float32)


def harvest_f0(y: np.ndarray) -> np.ndarray:
    f0, _ = pyworld().harvest(np.asarray(y, dtype=np.float64), SR, frame_period=5.0)
    return f0[f0 > 0]


def power_share(y: np.ndarray, low: float, high: float = SR / 2) -> float:
    power, freqs = np.abs(np.fft.rfft(y)) ** 2, np.fft.rfftfreq(len(y), 1 / SR)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean = clean.astype(np.float64)
    return 10 * math.log10(np.mean(clean**2) / np.mean((noisy.astype(np.float64) - clean) ** 2))


RNG = np.random.default_rng  # a fresh generator per call: tests do not depend on each other's draws


# ------------------------------------------------------------------------------------------------ voice


@pytest.mark.parametrize("ratio", [0.8, 1.25])
def test_f0_ratio_moves_the_median_f0_by_the_ratio(ratio):
    x = vowel(vibrato=0.05)
    y = change_voice(x, SR, VoiceChange(f0_ratio=ratio), RNG(0))
    assert len(y) == len(x)
    assert np.median(harvest_f0(y)) / np.median(harvest_f0(x)) == pytest.approx(ratio, rel=0.03)


def test_f0_range_compresses_and_expands_the_intonation():
    x = vowel(vibrato=0.1)
    spread = {r: np.std(np.log(harvest_f0(change_voice(x, SR, VoiceChange(f0_range=r), RNG(0)))))
              for r in (0.5, 1.0001, 1.5)}
    assert spread[0.5] < 0.7 * spread[1.0001] < 0.7 * spread[1.5] / 1.2
    median_in = np.median(harvest_f0(x))  # the mean pitch stays where it was
    assert np.median(harvest_f0(change_voice(x, SR, VoiceChange(f0_range=0.5), RNG(0)))) == pytest.approx(
        median_in, rel=0.03)


def first_formant(y: np.ndarray) -> float:
    """The peak frequency of the mean CheapTrick envelope between 400 and 1100 Hz."""
    pw = pyworld()
    y = np.asarray(y, dtype=np.float64)
    f0, times = pw.harvest(y, SR, frame_period=5.0)
    envelope = pw.cheaptrick(y, f0, times, SR)[f0 > 0].mean(axis=0)
    freqs = np.linspace(0, SR / 2, len(envelope))
    band = (freqs > 400) & (freqs < 1100)
    return float(freqs[band][np.argmax(envelope[band])])


@pytest.mark.parametrize("alpha", [0.85, 1.2])
def test_vocal_tract_warp_moves_the_formants_and_the_centroid(alpha):
    x = vowel(f0=120.0)
    same = change_voice(x, SR, VoiceChange(f0_ratio=1.0001), RNG(0))  # through WORLD, unwarped
    warped = change_voice(x, SR, VoiceChange(vtl_alpha=alpha), RNG(0))

    def centroid(y):
        power, freqs = np.abs(np.fft.rfft(y)) ** 2, np.fft.rfftfreq(len(y), 1 / SR)
        return float((power * freqs).sum() / power.sum())

    assert first_formant(same) == pytest.approx(700, rel=0.08)
    assert first_formant(warped) == pytest.approx(700 * alpha, rel=0.08)
    assert (centroid(warped) - centroid(same)) * (alpha - 1) > 0
    assert abs(centroid(warped) / centroid(same) - 1) > 0.1


def periodicity(y: np.ndarray, f0: float = 150.0, band: tuple[float, float] = (4000.0, 7000.0)) -> float:
    """The mean over 40 ms frames of the best normalised autocorrelation near the pitch period of `y`'s 4-7 kHz
    band: ~1 for harmonics, ~0 for noise."""
    z = sosfilt(butter(6, band, btype="bandpass", fs=SR, output="sos"), np.asarray(y, dtype=np.float64))
    n, period, values = 640, SR / f0, []
    for s in range(1600, len(z) - n - 200, n):
        a = z[s: s + n]
        values.append(max(np.dot(a, z[s + lag: s + lag + n]) / math.sqrt(
            np.dot(a, a) * np.dot(z[s + lag: s + lag + n], z[s + lag: s + lag + n]) + 1e-20)
            for lag in range(int(period) - 3, int(period) + 4)))
    return float(np.mean(values))


def test_breathiness_raises_the_high_frequency_noise():
    x = vowel()
    plain = periodicity(change_voice(x, SR, VoiceChange(f0_ratio=1.0001), RNG(0)))
    breathy = periodicity(change_voice(x, SR, VoiceChange(breathiness=0.5), RNG(0)))
    assert plain > 0.8 and breathy < plain - 0.12
    low_band = periodicity(change_voice(x, SR, VoiceChange(breathiness=0.5), RNG(0)), band=(200.0, 1000.0))
    assert low_band > 0.8  # the low harmonics, which carry the pitch, stay


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_rate_scales_the_duration_and_keeps_the_pitch(rate):
    x = vowel(seconds=1.2)
    y = change_voice(x, SR, VoiceChange(rate=rate), RNG(0))
    assert len(y) / len(x) == pytest.approx(1 / rate, rel=0.02)
    assert np.median(harvest_f0(y)) == pytest.approx(np.median(harvest_f0(x)), rel=0.03)
    jittered = change_voice(x, SR, VoiceChange(rate=rate, jitter=0.2), RNG(0))
    assert abs(len(jittered) - len(y)) <= 0.005 * SR and not np.allclose(jittered[: len(y)], y[: len(jittered)])


def test_voice_change_keeps_the_level_and_leaves_silence_alone():
    x = vowel()
    y = change_voice(x, SR, VoiceChange(f0_ratio=1.1, vtl_alpha=0.9, breathiness=0.3), RNG(0))
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-4)
    silent = np.zeros(SR, dtype=np.float32)
    assert np.array_equal(change_voice(silent, SR, VoiceChange(f0_ratio=1.2), RNG(0)), silent)


# ------------------------------------------------------------------------------------------------- room


def schroeder_rt60(h: np.ndarray, decay_db: float = 30.0) -> float:
    """RT60 from the Schroeder backward integral: the time from -5 dB to -(5 + decay_db) dB, times 60 / decay_db."""
    energy = np.cumsum((h**2)[::-1])[::-1]
    curve = 10 * np.log10(energy / energy[0] + 1e-30)
    start, stop = np.argmax(curve <= -5.0), np.argmax(curve <= -5.0 - decay_db)
    return (stop - start) / SR * 60.0 / decay_db


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_room_impulse_response_has_the_target_rt60(rt60):
    for seed in range(3):
        room = sample_room(RNG(seed), RoomConfig(rt60=(rt60, rt60), length=(5.0, 8.0), width=(4.0, 6.0)))
        assert room.rt60 == rt60
        h = room_impulse_response(room, SR, RNG(seed))
        assert schroeder_rt60(h) == pytest.approx(rt60, rel=0.25)
        assert np.argmax(np.abs(h)) == SR // 1000  # the direct path, 1 ms in


def test_room_keeps_length_and_level_and_is_seeded():
    x = vowel()
    room = sample_room(RNG(1), RoomConfig())
    size, lo = np.asarray(room.size), 0.3
    for position in (room.source, room.mic):
        assert np.all(np.asarray(position) >= lo - 1e-6) and np.all(np.asarray(position) <= size - lo + 1e-6)
    y = reverberate(x, room_impulse_response(room, SR, RNG(2)))
    assert len(y) == len(x) and not np.allclose(y, x, atol=1e-3)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-4)
    assert np.array_equal(room_impulse_response(room, SR, RNG(2)), room_impulse_response(room, SR, RNG(2)))
    assert sample_room(RNG(1), RoomConfig()) == room


# ------------------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_noise_is_added_at_the_requested_snr(kind, snr):
    x = vowel(seconds=0.5)
    talkers = ArrayBabble([vowel(0.3, f0=100 + 20 * k, seed=k) for k in range(4)])
    choice = NoiseChoice(kind, snr, mains_hz=50.0, talkers=(0, 2, 3) if kind == "babble" else ())
    y = add_noise(x, choice, SR, RNG(0), talkers)
    assert len(y) == len(x)
    assert snr_db(x, y) == pytest.approx(snr, abs=0.5)


def test_noise_kinds_have_their_spectra():
    x = np.zeros(SR, dtype=np.float32)
    x[::400] = 1.0  # a click train: the noise's own spectrum dominates the difference
    noise = {k: add_noise(x, NoiseChoice(k, 0.0, mains_hz=60.0), SR, RNG(0)) - x for k in ("white", "pink",
                                                                                          "brown", "hum")}
    low = {k: power_share(n, 20, 500) for k, n in noise.items()}
    assert low["white"] < 0.1 < low["pink"] < low["brown"]
    hum = np.abs(np.fft.rfft(noise["hum"])) ** 2
    harmonics = sum(hum[k * 60 - 2: k * 60 + 3].sum() for k in range(1, 9))  # 1 Hz bins
    assert harmonics / hum.sum() > 0.99


def test_babble_uses_other_utterances_never_the_utterance_itself():
    config = NoiseConfig(kinds=("babble",), babble_talkers=(3, 3))
    for seed in range(20):
        choice = sample_noise(RNG(seed), config, babble_count=5, exclude=2)
        assert len(choice.talkers) == 3 and 2 not in choice.talkers and len(set(choice.talkers)) == 3
    assert sample_noise(RNG(0), config, babble_count=1, exclude=0) is None  # nobody else to babble
    assert sample_noise(RNG(0), replace(config, kinds=("babble", "pink")), 1, 0).kind == "pink"
    with pytest.raises(ConfigError, match="babble is the only noise kind"):
        SpeechAugmenter(SpeechAugmentConfig(noise=config), SR)


# ---------------------------------------------------------------------------------------------- channel


@pytest.mark.parametrize("codec", [c for c in TELEPHONE_CODECS if c == "none" or c in available_codecs()])
def test_telephone_removes_what_a_phone_line_cannot_carry(codec):
    x = np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32)
    y = telephone(x, SR, codec, 7400 if codec == "amr" else None)
    assert len(y) == len(x)
    assert power_share(x, 4000) > 0.4
    assert power_share(y, 4000) < 1e-4  # < -40 dB relative
    assert power_share(y, 0, 150) < 1e-2


@pytest.mark.parametrize("codec, bitrate", [("mp3", 16000), ("mp3", 32000), ("opus", 8000), ("opus", 16000)])
def test_codec_round_trip_keeps_length_and_waveform(codec, bitrate):
    x = sosfilt(butter(4, 3800, fs=SR, output="sos"), vowel(vibrato=0.05)).astype(np.float32)  # in the coded band
    y = codec_round_trip(x, SR, codec, bitrate)
    assert len(y) == len(x) and y.dtype == np.float32
    assert np.corrcoef(x, y)[0, 1] > 0.9
    assert not np.array_equal(x, y)


def test_codec_delay_is_taken_off():
    if "amr" not in available_codecs():
        pytest.skip("no AMR-NB encoder in this PyAV build")
    x = sosfilt(butter(4, (200, 3400), btype="bandpass", fs=8000, output="sos"),
                vowel(seconds=1.0, vibrato=0.1)[::2]).astype(np.float32)
    y = codec_round_trip(x, 8000, "amr", 12200)
    assert len(y) == len(x) and np.corrcoef(x, y)[0, 1] > 0.7


def test_eq_gain_and_clipping():
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    boosted = equalize(tone, (EqBand("peak", 1000.0, 12.0, 1.0),), SR)
    assert 20 * math.log10(np.abs(boosted[SR // 2:]).max()) == pytest.approx(12.0, abs=0.1)
    shelved = equalize(tone, (EqBand("highshelf", 100.0, -6.0, 0.7),), SR)
    assert 20 * math.log10(np.abs(shelved[SR // 2:]).max()) == pytest.approx(-6.0, abs=0.2)
    x = vowel()
    shaped = apply_channel(x, SR, ChannelChoice(eq=(EqBand("highshelf", 2000.0, 12.0, 0.7),)))
    assert np.sqrt(np.mean(shaped**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-4)  # the level is gain's
    assert power_share(shaped, 2500) > 5 * power_share(x, 2500)
    y = apply_channel(x, SR, ChannelChoice(gain_db=6.0, clip=0.4))
    peak = 0.5 * 10 ** (6 / 20)
    assert np.max(np.abs(y)) == pytest.approx(0.4 * peak, rel=1e-3)
    assert np.mean(np.abs(y) >= 0.4 * peak * 0.999) > 0.05  # clipped samples sit at the bound


def test_channel_draws_follow_the_config():
    assert sample_channel(RNG(0), replace(SpeechAugmentConfig.off().channel), SR) == ChannelChoice()
    always = ChannelConfig(eq_prob=1, telephone_prob=1, telephone_codecs=("amr",) if "amr" in available_codecs()
                           else ("mulaw",), gain_prob=1, clip_prob=1)
    choice = sample_channel(RNG(0), always, SR)
    assert 1 <= len(choice.eq) <= 4 and choice.telephone and choice.compress is None
    assert choice.gain_db is not None and 0.3 <= choice.clip <= 0.9
    compressed = sample_channel(RNG(0), replace(always, telephone_prob=0, compress_prob=1, compress_codecs=("mp3",)),
                                SR)
    assert compressed.compress == "mp3" and compressed.bitrate in {8000, 16000, 24000, 32000}


# --------------------------------------------------------------------------------------------- pipeline


def everything_on() -> SpeechAugmentConfig:
    off = SpeechAugmentConfig.off()
    return SpeechAugmentConfig(replace(off.voice, prob=1.0), replace(off.room, prob=1.0),
                               replace(off.noise, prob=1.0), replace(off.channel, eq_prob=1.0, compress_prob=1.0,
                                                                     gain_prob=1.0, clip_prob=1.0))


def test_pipeline_is_deterministic_from_the_seed():
    x = vowel(0.6)
    babble = ArrayBabble([vowel(0.4, f0=110 + 10 * k, seed=k) for k in range(3)])
    augmenter = SpeechAugmenter(everything_on(), SR, babble)
    y1, plan1 = augmenter(x, seed=(7, 0, 1), index=1)
    y2, plan2 = augmenter(x, seed=(7, 0, 1), index=1)
    assert plan1 == plan2 and np.array_equal(y1, y2)
    assert plan1.voice and plan1.room and plan1.noise and plan1.channel and plan1.channel.compress
    assert augmenter.plan((7, 0, 1), index=1) == plan1
    y3, plan3 = augmenter(x, seed=(7, 1, 1), index=1)
    assert plan3 != plan1 and not np.array_equal(y1[: len(y3)], y3[: len(y1)])
    assert plan1.to_dict()["voice"]["rate"] == plan1.voice.rate and "noise(" in plan1.describe()
    off_y, off_plan = SpeechAugmenter(SpeechAugmentConfig.off(), SR)(x, seed=3)
    assert off_plan.to_dict() == {} and np.array_equal(off_y, x)


def test_switching_a_part_off_leaves_the_others_draws():
    on = everything_on()
    without_room = replace(on, room=replace(on.room, prob=0.0))
    a = SpeechAugmenter(on, SR, ArrayBabble([vowel(0.3)] * 3)).plan((1, 2, 3), index=0)
    b = SpeechAugmenter(without_room, SR, ArrayBabble([vowel(0.3)] * 3)).plan((1, 2, 3), index=0)
    assert b.room is None and (a.voice, a.noise, a.channel) == (b.voice, b.noise, b.channel)


def test_bad_configs_are_one_line_errors_naming_the_field():
    cases = [
        (dict(voice={"prob": 1.5}), r"data.augment.voice.prob: a probability in \[0, 1\], got 1.5"),
        (dict(voice={"rate": [1.2, 0.9]}), r"data.augment.voice.rate: expected \[low, high\] with low <= high"),
        (dict(voice={"vtl_alpha": [0.1, 1.0]}), r"data.augment.voice.vtl_alpha: values must be in \[0.5, 2.0\]"),
        (dict(room={"rt60": [0.2]}), r"data.augment.room.rt60: expected \[low, high\], got \[0.2\]"),
        (dict(room={"early_order": 0}), r"data.augment.room.early_order: an integer in \[1, 60\]"),
        (dict(noise={"kinds": ["pink", "rain"]}), r"data.augment.noise.kinds: unknown 'rain'"),
        (dict(noise={"kinds": []}), r"data.augment.noise.kinds: choose at least one of"),
        (dict(channel={"compress_codecs": ["aac"]}), r"data.augment.channel.compress_codecs: unknown 'aac'"),
        (dict(channel={"clip_level": [0.0, 0.5]}), r"data.augment.channel.clip_level: values must be in"),
        (dict(reverb={}), r"data.augment: unknown key 'reverb' for SpeechAugmentConfig"),
    ]
    for data, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as e:
            from_dict(SpeechAugmentConfig, data, "conf.yaml: data.augment")
        assert "\n" not in str(e.value) and str(e.value).startswith("conf.yaml: data.augment")
    with pytest.raises(ConfigError, match=r"^VoiceConfig.f0_method: 'dio' or 'harvest', got 'yin'$"):
        VoiceConfig(f0_method="yin")  # type: ignore[arg-type]
    if "gsm" not in available_codecs():
        with pytest.raises(ConfigError, match=r"ChannelConfig.telephone_codecs: this PyAV build cannot encode 'gsm'"):
            ChannelConfig(telephone_codecs=("gsm",))
        ChannelConfig(telephone_prob=0.0, telephone_codecs=("gsm",))  # never drawn: accepted


# --------------------------------------------------------------------------------------- on-the-fly loader


def make_records(tmp_path, n: int = 6):
    from toolkit.data.speech import SpeechRecord

    records = []
    for i in range(n):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, vowel(0.4 + 0.05 * i, f0=110 + 15 * i, seed=i), SR, subtype="PCM_16")
        records.append(SpeechRecord(f"u{i}", str(path), "ab", duration=0.4 + 0.05 * i))
    return records


def cheap_config() -> SpeechAugmentConfig:
    """Voice, noise (babble included) and channel parts, each at probability 0.5 or 1."""
    off = SpeechAugmentConfig.off()
    return replace(off, voice=replace(off.voice, prob=0.5), noise=NoiseConfig(prob=1.0, snr_db=(5.0, 20.0)),
                   channel=replace(off.channel, eq_prob=0.5, gain_prob=1.0))


def test_dataset_gives_each_epoch_its_own_variant_reproducibly(tmp_path):
    from toolkit.data.speech_dataset import SpeechDataset

    records = make_records(tmp_path)
    ds = SpeechDataset(records, augment=cheap_config(), augment_seed=5)
    clean = SpeechDataset(records)[2]["audio"].numpy()
    e0, e1 = ds[(0, 2)]["audio"].numpy(), ds[(1, 2)]["audio"].numpy()
    assert not np.array_equal(e0, clean) and not (len(e0) == len(e1) and np.array_equal(e0, e1))
    again = SpeechDataset(records, augment=cheap_config(), augment_seed=5)
    assert np.array_equal(again[(1, 2)]["audio"].numpy(), e1)
    again.set_epoch(1)
    assert np.array_equal(again[2]["audio"].numpy(), e1)
    other_seed = SpeechDataset(records, augment=cheap_config(), augment_seed=6)[(1, 2)]["audio"].numpy()
    assert not (len(other_seed) == len(e1) and np.array_equal(other_seed, e1))


def test_loader_workers_follow_the_epoch(tmp_path):
    """Persistent DataLoader workers get each epoch from the sampler's keys: epochs 0 and 1 differ, and a new
    loader (a re-run, or a resume at epoch 1) gives the same audio for the same epoch."""
    from toolkit.data.speech_dataset import SpeechDataset, make_speech_loader
    from toolkit.train.batches import set_epoch

    records = make_records(tmp_path)

    def audio_by_item(loader, epoch):
        set_epoch(loader, epoch)
        out = {}
        for batch in loader:
            for row, (i, n) in enumerate(zip(batch["indices"].tolist(), batch["audio_lengths"].tolist())):
                out[i] = batch["audio"][row, :n].numpy().copy()
        return out

    def loader():
        ds = SpeechDataset(records, augment=cheap_config(), augment_seed=1)
        return make_speech_loader(ds, None, max_batch_seconds=1.2, train=True, num_workers=2, seed=0)

    first = loader()
    epoch0, epoch1 = audio_by_item(first, 0), audio_by_item(first, 1)
    assert sorted(epoch0) == sorted(epoch1) == list(range(len(records)))
    assert all(not (len(epoch0[i]) == len(epoch1[i]) and np.array_equal(epoch0[i], epoch1[i])) for i in epoch0)
    resumed = audio_by_item(loader(), 1)
    assert all(np.array_equal(resumed[i], epoch1[i]) for i in epoch1)
    plain = make_speech_loader(SpeechDataset(records), None, max_batch_seconds=1.2, train=True)
    assert isinstance(next(iter(plain.batch_sampler))[0], int)  # no augmentation: plain indices, as before


def test_asr_config_takes_augment_and_defaults_to_off():
    from toolkit.tasks.asr import SpeechDataConfig

    assert from_dict(SpeechDataConfig, {"train": "a", "valid": "b"}).augment is None
    data = from_dict(SpeechDataConfig, {"train": "a", "valid": "b", "augment": {"voice": {"prob": 0.2},
                                                                               "room": {"rt60": [0.3, 0.5]}}})
    assert data.augment.voice.prob == 0.2 and data.augment.room.rt60 == (0.3, 0.5)
    assert data.augment.noise == NoiseConfig()  # unset parts take their defaults


@pytest.mark.slow
def test_asr_training_augments_each_epoch_on_the_fly(tmp_path, monkeypatch):
    """A tiny ASR run with `data.augment`: every training item goes through the augmenter with the epoch the
    trainer is in, validation audio never does, and training ends with a model."""
    from test_asr_recipes import TINY_MODEL, write_tiny_librispeech

    from toolkit.config import load_config
    from toolkit.tasks.asr import AsrExperiment, train_asr

    write_tiny_librispeech(tmp_path / "LibriSpeech")
    seeds = []
    original = SpeechAugmenter.__call__

    def recording(self, x, seed, index=None):
        seeds.append(tuple(seed))
        return original(self, x, seed, index)

    monkeypatch.setattr(SpeechAugmenter, "__call__", recording)
    root = tmp_path / "LibriSpeech"
    exp = load_config(AsrExperiment, "recipes/librispeech/conf/conformer_bpe.yaml", TINY_MODEL + [
        f"data.train={root}", f"data.valid={root}", "data.train_subsets=[train-clean-100]",
        "data.valid_subsets=[dev-clean]", "tokenizer.kind=char", "model.decoder.max_len=64", "train.amp=none",
        "train.seed=4", "data.augment={voice: {prob: 0.5}, noise: {prob: 1.0, kinds: [babble, pink]}, "
                        "channel: {telephone_prob: 0.5}}"])
    assert exp.data.augment.noise.kinds == ("babble", "pink")
    result = train_asr(exp, tmp_path / "exp")
    assert (tmp_path / "exp/final/model.safetensors").is_file() and result.epochs >= 2
    cmvn = exp.data.cmvn_utterances
    training = seeds[cmvn:]  # after the feature statistics (epoch-0 variants of the first utterances)
    assert {s[0] for s in seeds} == {4} and all(s[1] == 0 for s in seeds[:cmvn])
    epochs = {s[1] for s in training}
    assert {0, 1} <= epochs
    for epoch in sorted(epochs)[:-1]:  # each whole epoch augments every training utterance once (8 of them)
        assert sorted(s[2] for s in training if s[1] == epoch) == list(range(8))


# ------------------------------------------------------------------------------------------------ offline


def test_offline_copies_are_the_on_the_fly_variants(tmp_path):
    """Copy c of utterance i on disk is what the loader gives in epoch c with the same seed (to 16-bit
    precision); the manifest records the plan; a re-run keeps the files and another config is refused."""
    from toolkit.augment.offline import augment_corpus
    from toolkit.data.speech import read_speech
    from toolkit.data.speech_dataset import SpeechDataset
    from toolkit.errors import ToolkitError

    records = make_records(tmp_path, n=4)
    config = replace(cheap_config(), channel=replace(cheap_config().channel, gain_db=(-14.0, -10.0)))  # < full scale
    manifest = augment_corpus(records, tmp_path / "aug", config, seed=3, copies=2, keep_clean=True, progress=False)
    rows = read_speech(manifest)
    assert [r.id for r in rows] == [r.id for r in records] + [f"u{i}-aug{c}" for c in range(2) for i in range(4)]
    online = SpeechDataset(records, augment=config, augment_seed=3)
    for row in rows[4:]:
        i, c = int(row.id[1]), int(row.id[-1])
        expected = online[(c, i)]["audio"].numpy()
        written, rate = sf.read(row.audio, dtype="float32")
        assert rate == SR and len(written) == len(expected) and row.duration == round(len(expected) / SR, 4)
        assert np.max(np.abs(written - expected)) < 2 / 32768
        assert row.extra["transforms"] == SpeechAugmenter(config, SR, ArrayBabble([np.zeros(1)] * 4)).plan(
            (3, c, i), index=i).to_dict()
    stamp = (tmp_path / "aug/wav/u0-aug1.wav").stat().st_mtime_ns
    augment_corpus(records, tmp_path / "aug", config, seed=3, copies=2, keep_clean=True, progress=False)
    assert (tmp_path / "aug/wav/u0-aug1.wav").stat().st_mtime_ns == stamp
    with pytest.raises(ToolkitError, match="made with another augmentation config"):
        augment_corpus(records, tmp_path / "aug", config, seed=4, copies=2, progress=False)


def test_augment_command(tmp_path, capsys):
    from toolkit.cli import main
    from toolkit.data.speech import read_speech, write_jsonl_manifest

    write_jsonl_manifest(make_records(tmp_path, n=3), tmp_path / "train.jsonl")
    (tmp_path / "aug.yaml").write_text("voice: {prob: 0.0}\nroom: {prob: 1.0, rt60: [0.3, 0.4]}\n")
    assert main(["augment", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "out"), "--config",
                 str(tmp_path / "aug.yaml"), "--workers", "1", "noise.prob=0"]) == 0
    rows = read_speech(tmp_path / "out/train.jsonl")
    assert len(rows) == 3 and all(set(r.extra["transforms"]) >= {"room"} and "noise" not in r.extra["transforms"]
                                  for r in rows)
    assert 0.3 <= rows[0].extra["transforms"]["room"]["rt60"] <= 0.4
    assert main(["augment", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "bad"), "room.rt60=[0.5]"]) == 2
    assert "room.rt60: expected [low, high], got [0.5]" in capsys.readouterr().err
