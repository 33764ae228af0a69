"""The synthetic speech corpus: text normalisation, text sources, voices, augmentation, splits, reproducibility."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.synth import augment, text_corpus, voices
from toolkit.synth.speech import (ENGINE_SHARES, EVAL_SPLITS, LM_TEXT, SPLITS, SpeechSynthConfig, lm_sentences,
                                  make_speech_corpus, plan_corpus, split_voices)
from toolkit.synth.text_normalize import (is_clean_transcript, normalize_transcript, number_to_words,
                                               ordinal_words, spoken_form)
from toolkit.synth.voices import Speaker, Voice
from toolkit.errors import ConfigError, ToolkitError

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_FLITE = shutil.which("flite") is not None
HAVE_MBROLA = HAVE_ESPEAK and voices.available(Voice.single("mbrola", "us1")) is None
HAVE_TEXT = text_corpus.FORTUNE_DIR.is_dir() and (text_corpus.WORDNET_DIR / "data.noun").is_file()
needs_flite = pytest.mark.skipif(not HAVE_FLITE, reason="flite not installed (apt-get install flite)")
needs_mbrola = pytest.mark.skipif(not HAVE_MBROLA, reason="MBROLA's us1 voice not installed (Debian contrib and "
                                                          "non-free: apt-get install mbrola mbrola-us1)")
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")
needs_text = pytest.mark.skipif(not HAVE_TEXT, reason="text packages missing (apt-get install fortunes-min "
                                                      "fortunes wordnet-base)")
CLEAN = re.compile(r"[a-z' ]+")


def tiny_config(**kw) -> SpeechSynthConfig:
    """A few utterances per split; a voice this machine cannot make is skipped by `make_speech_corpus`."""
    return SpeechSynthConfig(**{**dict(train=6, valid=2, test_seen=2, test_heldout=2, test_unseen=2, seed=3), **kw})


# ------------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("text, expected", [
    ("In 1984, 3 cats ate 25% of $4.50",
     "in nineteen eighty four three cats ate twenty five percent of four dollars fifty cents"),
    ("Mr. Smith's 2nd car cost $5 million in the 1960s.",
     "mister smith's second car cost five million dollars in the nineteen sixties"),
    ("1,250,000 people & 7 dogs", "one million two hundred fifty thousand people and seven dogs"),
    ("It's 3.14, not -7, at 10:30 or 9:05 or 3:00.",
     "it's three point one four not minus seven at ten thirty or nine oh five or three o'clock"),
    ('"Don\'t," said the students\' teacher -- twice!', "don't said the students teacher twice"),
    ("The 21st of 100 years: 2005, 1905 and 1900", "the twenty first of one hundred years two thousand five "
     "nineteen oh five and nineteen hundred"),
    ("Café au lait for £1 and $0.01 (e.g. #5)", "cafe au lait for one pound and one cent for example number five"),
    ("Pages 10-20 of the '80s   were   FUN", "pages ten to twenty of the eighties were fun"),
    ("Agent 007 read 2,000 books", "agent zero zero seven read two thousand books"),
])
def test_normalize_transcript_table(text, expected):
    assert normalize_transcript(text) == expected
    assert spoken_form(text).translate(str.maketrans("", "", ".,;:!?")) == expected  # same words, pauses kept


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"), (101, "one hundred one"),
    (1000, "one thousand"), (1001, "one thousand one"), (12345, "twelve thousand three hundred forty five"),
    (2_500_000, "two million five hundred thousand"), (999_999_999, "nine hundred ninety nine million nine hundred "
                                                       "ninety nine thousand nine hundred ninety nine"),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("n, words", [(1, "first"), (2, "second"), (3, "third"), (11, "eleventh"), (12, "twelfth"),
                                      (20, "twentieth"), (21, "twenty first"), (100, "one hundredth")])
def test_ordinal_words(n, words):
    assert ordinal_words(n) == words


@pytest.mark.parametrize("text", ["see x/y", "an mp3 file", "a <b> tag", "snake_case"])
def test_unspeakable_characters_are_left_for_the_filter(text):
    assert not is_clean_transcript(normalize_transcript(text))


@needs_text
def test_text_sources_give_clean_speakable_sentences():
    sentences = text_corpus.load_sentences(("fortunes", "wordnet"), 3, 20)
    assert len(sentences) > 20000
    texts = [normalize_transcript(s) for s in sentences]
    assert all(CLEAN.fullmatch(t) and 3 <= len(t.split()) <= 20 for t in texts)
    assert len(set(texts)) == len(texts) and texts == sorted(texts)
    assert text_corpus.load_sentences(("fortunes", "wordnet"), 3, 20) == sentences  # deterministic


def test_missing_text_package_is_a_one_line_error(tmp_path):
    with pytest.raises(ToolkitError, match=r"apt-get install fortunes") as e:
        text_corpus.fortune_sentences(tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(ToolkitError, match=r"apt-get install wordnet-base"):
        text_corpus.wordnet_sentences(tmp_path)


# ------------------------------------------------------------------------------------------- augmentation


def _tone(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
            ).astype(np.float32)


@pytest.mark.parametrize("kind", augment.NOISE_KINDS)
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_add_noise_hits_the_requested_snr(kind, snr):
    x = _tone()
    y = augment.add_noise(x, snr, kind, np.random.default_rng(1))
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(noise**2))
    assert abs(measured - snr) < 0.5


def test_noise_kinds_have_their_spectra():
    rng = np.random.default_rng(0)
    freqs = np.fft.rfftfreq(32000, 1 / 16000)
    share_low = {}
    for kind in augment.NOISE_KINDS:
        power = np.abs(np.fft.rfft(augment.make_noise(kind, 32000, rng))) ** 2
        share_low[kind] = power[freqs < 1000].sum() / power.sum()
    assert share_low["white"] < 0.2 < share_low["pink"]  # white is flat: 1/8 of the band below 1 kHz
    babble = augment.make_noise("babble", 32000, rng)
    power = np.abs(np.fft.rfft(babble)) ** 2
    assert power[freqs > 4500].sum() / power.sum() < 1e-4  # speech band only (AM sidebands aside)
    envelope = np.sqrt(np.convolve(babble**2, np.ones(400) / 400, mode="valid"))
    assert envelope.std() / envelope.mean() > 0.2  # it fluctuates, unlike steady noise


def test_telephone_removes_energy_above_4khz():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    y = augment.telephone(x)
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    power_in, power_out = np.abs(np.fft.rfft(x)) ** 2, np.abs(np.fft.rfft(y)) ** 2
    assert power_in[freqs > 4000].sum() / power_in.sum() > 0.4
    assert power_out[freqs > 4000].sum() / power_out.sum() < 1e-3
    assert power_out[freqs < 200].sum() / power_out.sum() < 1e-3
    assert len(y) == len(x)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_duration_by_the_factor(factor):
    x = _tone(2.0)
    y = augment.speed_perturb(x, factor)
    assert abs(len(y) - len(x) / factor) <= 2


@pytest.mark.parametrize("factor", [0.85, 1.15])
def test_voice_shift_moves_every_frequency_and_keeps_the_length(factor):
    t = np.arange(32000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1800 * t)).astype(np.float32)
    y = augment.shift_voice(x, factor)
    assert abs(len(y) - len(x)) <= 2
    power, freqs = np.abs(np.fft.rfft(y)) ** 2, np.fft.rfftfreq(len(y), 1 / 16000)
    for f in (440, 1800):  # the power moved to f * factor, not left at f
        assert power[np.abs(freqs - f * factor) < 15].sum() > 20 * power[np.abs(freqs - f) < 15].sum()
    envelope = np.abs(y[2000:-2000]).reshape(-1, 400).max(axis=1)
    assert envelope.min() > 0.5 * envelope.max()  # steady, without phase-vocoder dropouts


def test_reverb_keeps_length_and_level_and_decays():
    x = _tone()
    y = augment.reverberate(x, 0.5, np.random.default_rng(0))
    assert len(y) == len(x) and not np.allclose(x, y)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    h = augment.room_impulse_response(0.5, np.random.default_rng(0))
    early, late = np.abs(h[800:1600]).mean(), np.abs(h[6400:7200]).mean()
    assert late < early / 10 and h[0] == 1.0


def test_augmentation_is_seeded():
    import random

    cfg = augment.AugmentConfig(noise_prob=1, reverb_prob=1, speed_prob=1, telephone_prob=1, voice_prob=1)
    aug = augment.sample_augmentation(random.Random(5), cfg)
    assert aug == augment.sample_augmentation(random.Random(5), cfg) and set(aug) == {"speed", "reverb", "noise",
                                                                                        "telephone", "voice"}
    assert augment.describe(aug).startswith(f"voice{aug['voice']},speed")
    x = _tone()
    np.testing.assert_array_equal(augment.apply_augmentation(x, aug, 7), augment.apply_augmentation(x, aug, 7))
    assert not np.array_equal(augment.apply_augmentation(x, aug, 7), augment.apply_augmentation(x, aug, 8))
    assert augment.sample_augmentation(random.Random(5), augment.AugmentConfig(0, (5, 25), ("white",), 0, (0.2, 0.3),
                                                                               0, (1.1,), 0)) == {}


# ------------------------------------------------------------------------------------------- voices and splits


def test_voice_ids_round_trip():
    for v in (Voice("espeak", "en-gb-scotland", "f2"), Voice("flite", "flite-slt"), Voice("mbrola", "mbrola-us2"),
              Voice("pico", "pico-en-GB"), Voice("piper", "piper-joe"),
              Voice("festival", "festival-cmu_us_slt_arctic_hts")):
        assert Voice.parse(v.id) == v
    assert Voice.single("mbrola", "en1").id == "mbrola:en1" and Voice.parse("flite:awb").name == "awb"
    assert Speaker(Voice.single("mbrola", "us1"), 0.85, 15).command("hi")[:7] == ["espeak-ng", "-v", "mb-us1", "-s",
                                                                                 "149", "-p", "65"]
    assert Speaker(Voice("espeak", "en-us", "m3"), 1.15, -15).id == "espeak:en-us+m3:r1.15:p-15"
    with pytest.raises(ToolkitError, match="voice 'en-us'"):
        Voice.parse("en-us")
    with pytest.raises(ToolkitError, match="voice 'sam:joe'"):
        Voice.parse("sam:joe")


@needs_text
def test_held_out_voices_never_reach_training():
    cfg = replace(tiny_config(), train=400, valid=20, test_seen=40, test_heldout=60, test_unseen=30)
    plan = plan_corpus(cfg)
    train_voices, heldout_voices, _ = split_voices(cfg)
    seen = {u.speaker.voice for s in ("train", "valid", "test_seen") for u in plan[s]}
    held = {u.speaker.voice for u in plan["test_heldout"]}
    assert seen <= set(train_voices) and held <= set(heldout_voices) and len(held) > 1
    assert not {v.accent for v in seen} & {v.accent for v in held}
    assert not {v.variant for v in seen if v.variant} & {v.variant for v in held if v.variant}
    assert {v.accent for v in held} <= set(cfg.held_out_accents)
    assert {v.variant for v in held if v.variant} <= set(cfg.held_out_variants)
    texts = {s: {u.text for u in plan[s]} for s in SPLITS}
    for a in SPLITS:  # evaluation sentences are never seen anywhere else
        for b in SPLITS:
            if a != b and "train" != a:
                assert not texts[a] & texts[b], (a, b)
    assert all(not u.augment for s in EVAL_SPLITS for u in plan[s])
    assert any(u.augment for u in plan["train"])


@needs_text
def test_unseen_voices_are_test_unseen_only():
    """test_unseen is spoken by the unseen voices alone, each about as often, and no other split has any of them;
    the voices without pitch control are planned at pitch 0."""
    from collections import Counter

    cfg = replace(tiny_config(), train=2000, valid=50, test_seen=50, test_heldout=50, test_unseen=300)
    plan = plan_corpus(cfg)
    unseen = set(cfg.unseen_voices)
    assert unseen == {"pico:en-GB", "mbrola:us3", "festival:cmu_us_slt_arctic_hts"}
    counts = Counter(u.speaker.voice.id for u in plan["test_unseen"])
    assert set(counts) == unseen and min(counts.values()) > 70
    others = {u.speaker.voice.id for s in SPLITS if s != "test_unseen" for u in plan[s]}
    assert not others & unseen
    assert {"pico:en-US", "mbrola:us1", "festival:kal_diphone", "piper:joe"} <= others  # their engines stay
    assert {u.speaker.voice for u in plan["test_unseen"]} == set(split_voices(cfg)[2])
    assert all(u.speaker.pitch == 0 for s in SPLITS for u in plan[s] if not u.speaker.voice.has_pitch)
    assert {u.speaker.pitch for u in plan["test_unseen"] if u.speaker.voice.id == "pico:en-GB"} == set(cfg.pitches)
    texts = {u.text for u in plan["test_unseen"]}
    assert len(texts) == 300 and not texts & {u.text for s in SPLITS if s != "test_unseen" for u in plan[s]}
    assert not set(lm_sentences(cfg, plan)) & texts
    # the other splits' sentences do not depend on test_unseen's size (it takes its own slice)
    small = plan_corpus(replace(cfg, test_unseen=10))
    for split in ("valid", "test_seen", "test_heldout"):
        assert [u.text for u in small[split]] == [u.text for u in plan[split]]


@needs_text
def test_plan_is_a_function_of_the_seed():
    a, b, c = plan_corpus(tiny_config()), plan_corpus(tiny_config(workers=1)), plan_corpus(tiny_config(seed=4))
    assert a == b
    assert [u.text for u in a["train"]] != [u.text for u in c["train"]]


def test_voice_shift_off_draws_nothing():
    """With voice_prob 0 (the default) no draw is made for it, so a corpus made before the voice shift existed is
    made again the same; on, it applies to about its share of the utterances, with every factor."""
    import random

    class Counting(random.Random):
        calls = 0

        def random(self):
            Counting.calls += 1
            return super().random()

    augment.sample_augmentation(Counting(3), augment.AugmentConfig(speed_prob=0, reverb_prob=0, noise_prob=0))
    assert Counting.calls == 4  # speed, reverb, noise, telephone
    on = augment.AugmentConfig(voice_prob=0.5)
    shifted = [augment.sample_augmentation(random.Random(i), on).get("voice") for i in range(200)]
    assert 60 < sum(f is not None for f in shifted) < 140 and set(shifted) - {None} == set(on.voice_factors)


@needs_text
def test_voice_shift_changes_train_only():
    """The evaluation splits do not depend on the augmentation: a corpus with shifted voices is scored on the same
    utterances as one without."""
    base = plan_corpus(tiny_config())
    shifted = plan_corpus(replace(tiny_config(), augment=augment.AugmentConfig(voice_prob=1.0)))
    assert all("voice" in u.augment for u in shifted["train"])
    assert [u.text for u in shifted["train"]] == [u.text for u in base["train"]]
    for split in EVAL_SPLITS:
        assert shifted[split] == base[split]


@needs_text
def test_engines_take_their_shares_of_the_seen_splits_only():
    """Each engine speaks about its `engine_shares` of train, espeak-ng the rest; the held-out split, which has only
    espeak-ng and flite voices, is the same utterances without the other engines; an engine without voices in the
    config draws nothing, whatever its share."""
    from collections import Counter

    base = replace(tiny_config(), train=4000)
    plan = plan_corpus(base)
    engines = Counter(u.speaker.voice.engine for u in plan["train"])
    for engine, share in ENGINE_SHARES.items():
        assert abs(engines[engine] / 4000 - share) < 0.02, engine
    assert abs(engines["espeak"] / 4000 - (1 - sum(ENGINE_SHARES.values()))) < 0.03
    assert {u.speaker.voice.id for u in plan["train"] if u.speaker.voice.engine == "mbrola"} == {
        "mbrola:us1", "mbrola:us2", "mbrola:en1"}  # us3 is unseen
    few = replace(base, mbrola_voices=(), pico_voices=(), piper_voices=(), festival_voices=(), unseen_voices=(),
                  test_unseen=0)
    assert plan_corpus(few)["test_heldout"] == plan["test_heldout"]
    assert not {u.speaker.voice.engine for u in plan_corpus(few)["train"]} & {"mbrola", "pico", "piper", "festival"}
    no_piper = replace(base, piper_voices=())
    assert plan_corpus(replace(no_piper, engine_shares={**ENGINE_SHARES, "piper": 0.3})) == plan_corpus(no_piper)
    held = plan_corpus(replace(base, test_heldout=100, held_out_accents=base.held_out_accents + ("mbrola-en1",)))
    assert "mbrola:en1" not in {u.speaker.voice.id for s in ("train", "valid", "test_seen") for u in held[s]}
    assert "mbrola:en1" in {u.speaker.voice.id for u in held["test_heldout"]}


def test_bad_augmentation_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"AugmentConfig.noise_prob: a probability in \[0, 1\], got 1.5"):
        augment.AugmentConfig(noise_prob=1.5)
    with pytest.raises(ConfigError, match="AugmentConfig.noise_kinds: unknown 'brown'"):
        augment.AugmentConfig(noise_kinds=("white", "brown"))
    with pytest.raises(ConfigError, match=r"AugmentConfig.voice_factors: need positive factors, got \[0.9, 0.0\]"):
        augment.AugmentConfig(voice_factors=(0.9, 0.0))


def test_bad_held_out_lists_are_config_errors():
    with pytest.raises(ConfigError, match="held_out_variants: 'm9'"):
        SpeechSynthConfig(held_out_variants=("m9",))
    every = SpeechSynthConfig()
    accents = tuple(Voice.parse(f"{e}:{n}").accent for e in voices.ONE_VOICE_ENGINES
                    for n in getattr(every, f"{e}_voices") if f"{e}:{n}" not in every.unseen_voices)
    with pytest.raises(ConfigError, match="no voice is left for training"):
        SpeechSynthConfig(held_out_accents=voices.ESPEAK_ACCENTS + accents)
    with pytest.raises(ConfigError, match="held_out_accents: 'mbrola-us9' is not in accents"):
        SpeechSynthConfig(held_out_accents=("en-us-nyc", "mbrola-us9"))
    with pytest.raises(ConfigError, match="held_out_accents: 'mbrola-us1' is not in accents"):
        SpeechSynthConfig(held_out_accents=("en-us-nyc", "mbrola-us1"), mbrola_voices=("us2", "us3"))


@pytest.mark.parametrize("settings, message", [
    ({"engine_shares": {"mbrola": 0.9, "flite": 0.15}}, r"engine_shares: must add up to <= 1, got 1.05$"),
    ({"engine_shares": {"espeak": 0.5}}, r"engine_shares: expected \{engine: share\} .*got 'espeak'$"),
    ({"engine_shares": {"piper": -0.1}}, r"engine_shares.piper: must be in \[0, 1\], got -0.1$"),
    ({"engine_shares": {"piper": "a lot"}}, r"engine_shares.piper: must be in \[0, 1\], got 'a lot'$"),
    ({"unseen_voices": ("pico:en-AU",)}, r"unseen_voices: 'pico:en-AU' is not the id of a voice of"),
    ({"unseen_voices": ("flite:rms",)}, r"unseen_voices: 'flite:rms' is also held out"),
    ({"unseen_voices": ()}, r"unseen_voices: no voice for test_unseen \(or set test_unseen to 0\)$"),
    ({"festival_voices": ("kal_diphone", "don_diphone")}, r"festival_voices: 'don_diphone' is reserved"),
    ({"mbrola_voices": ("us1", "de1-en")}, r"mbrola_voices: 'de1-en' is reserved"),
])
def test_bad_engine_settings_are_one_line_config_errors(settings, message):
    with pytest.raises(ConfigError, match=r"^SpeechSynthConfig\." + message) as e:
        SpeechSynthConfig(**settings)
    assert "\n" not in str(e.value)


def test_engine_shares_name_only_what_they_change():
    """An engine that `engine_shares` does not name gets 0; the config keeps every engine's share."""
    cfg = SpeechSynthConfig(engine_shares={"flite": 0.5})
    assert cfg.engine_shares == {"flite": 0.5, "mbrola": 0.0, "pico": 0.0, "piper": 0.0, "festival": 0.0}
    assert SpeechSynthConfig(unseen_voices=(), test_unseen=0).test_unseen == 0


@pytest.mark.parametrize("engine, binary", [("espeak", "espeak-ng"), ("flite", "flite")])
def test_missing_synthesiser_is_a_one_line_error(monkeypatch, tmp_path, engine, binary):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run
    voice = Voice("espeak", "en-us", "m3") if engine == "espeak" else Voice("flite", "flite-slt")
    for call in (lambda: voices.check_voices([voice]), lambda: voices.synthesize(Speaker(voice), "hello there")):
        with pytest.raises(ToolkitError) as e:
            call()
        assert str(e.value) == f"{binary} not found: install it with `apt-get install {binary}`"


def test_missing_mbrola_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolkitError) as e:
        voices.check_voices([Voice.single("mbrola", "us1")])
    assert str(e.value) == "mbrola not found: install it with `apt-get install mbrola` (Debian contrib)"


@needs_mbrola
def test_missing_mbrola_voice_is_a_one_line_error():
    with pytest.raises(ToolkitError) as e:
        voices.check_voices([Voice.single("mbrola", "us1"), Voice.single("mbrola", "xx9")])
    assert str(e.value) == ("voice mbrola:xx9: the MBROLA voice 'xx9' is not installed (Debian non-free: "
                            "`apt-get install mbrola-xx9`)")


@needs_text
def test_make_corpus_without_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(ToolkitError, match=r"^espeak-ng not found: install it with `apt-get install espeak-ng`$"):
        make_speech_corpus(tmp_path / "c", tiny_config(), progress=False)
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------------------------- a tiny corpus


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    if not (HAVE_ESPEAK and HAVE_TEXT):
        pytest.skip("espeak-ng or the text packages are not installed")
    root = tmp_path_factory.mktemp("speech")
    a = make_speech_corpus(root / "a", tiny_config(workers=2), progress=False)
    b = make_speech_corpus(root / "b", tiny_config(workers=1), progress=False)
    return a, b


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tiny_corpus_manifests_and_audio(corpora):
    paths, _ = corpora
    cfg = tiny_config()
    assert set(paths) == set(SPLITS)
    for split, path in paths.items():
        rows = _rows(path)
        assert len(rows) == getattr(cfg, split)
        for row in rows:
            assert {"id", "audio", "text", "duration", "speaker", "voice", "accent"} <= set(row)
            assert CLEAN.fullmatch(row["text"]) and row["speaker"].startswith(row["voice"] + ":")
            assert Voice.parse(row["voice"]).accent == row["accent"]
            wav = path.parent / row["audio"]
            assert wav == path.parent / "wav" / split / f"{row['id']}.wav"
            info = sf.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert abs(info.frames / 16000 - row["duration"]) < 1e-3 and 0.5 < row["duration"] < 20
            audio, _ = sf.read(str(wav))
            assert 0.5 < np.abs(audio).max() <= 0.91
            lead = np.flatnonzero(np.abs(audio) > 0.02)
            assert lead[0] / 16000 < 0.3 and (len(audio) - lead[-1]) / 16000 < 0.3  # silence trimmed


def test_tiny_corpus_held_out_split(corpora):
    paths, _ = corpora
    train = _rows(paths["train"])
    held = _rows(paths["test_heldout"])
    unseen = {r["voice"] for r in _rows(paths["test_unseen"])}
    assert unseen and unseen <= set(tiny_config().unseen_voices)
    assert not unseen & {r["voice"] for split in SPLITS if split != "test_unseen" for r in _rows(paths[split])}
    train_voices = [Voice.parse(r["voice"]) for r in train]
    for row in held:
        v = Voice.parse(row["voice"])
        assert v.accent not in {t.accent for t in train_voices}
        assert not v.variant or v.variant not in {t.variant for t in train_voices}
    train_texts = {r["text"] for r in train}
    for split in EVAL_SPLITS:
        assert not train_texts & {r["text"] for r in _rows(paths[split])}


def test_tiny_corpus_lm_text_leaves_out_the_evaluation_sentences(corpora):
    paths, _ = corpora
    lines = (paths["train"].parent / LM_TEXT).read_text(encoding="utf-8").splitlines()
    assert lines == lm_sentences(tiny_config()) and all(CLEAN.fullmatch(t) for t in lines)
    evaluation = {r["text"] for split in EVAL_SPLITS for r in _rows(paths[split])}
    assert len(evaluation) == 8 and not evaluation & set(lines)
    assert {r["text"] for r in _rows(paths["train"])} <= set(lines)  # the training sentences stay


def test_tiny_corpus_is_reproducible_byte_for_byte(corpora):
    a, b = corpora
    for split in SPLITS:
        assert a[split].read_bytes() == b[split].read_bytes()
        for row in _rows(a[split]):
            assert (a[split].parent / row["audio"]).read_bytes() == (b[split].parent / row["audio"]).read_bytes()


def test_rerun_reuses_finished_files_and_refuses_another_config(corpora):
    _, paths = corpora
    root = paths["train"].parent
    wavs = sorted((root / "wav").rglob("*.wav"))
    stamps = {p: p.stat().st_mtime_ns for p in wavs + list(paths.values()) + [root / LM_TEXT]}
    assert make_speech_corpus(root, tiny_config(workers=1), progress=False) == paths
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten
    kept, victim = (root / row["audio"] for row in _rows(paths["valid"]))
    before, manifest = victim.read_bytes(), paths["valid"].read_bytes()
    victim.unlink()  # an interrupted run: one wav and the manifest missing
    paths["valid"].unlink()
    make_speech_corpus(root, tiny_config(workers=1), progress=False)
    assert victim.read_bytes() == before and paths["valid"].read_bytes() == manifest
    assert kept.stat().st_mtime_ns == stamps[kept]  # the finished wav is reused, not synthesised again
    with pytest.raises(ToolkitError, match=r"another config \(seed: 3, now 4\)"):
        make_speech_corpus(root, tiny_config(seed=4, workers=1), progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in wavs}
    record = root / "speech_corpus.json"
    saved = json.loads(record.read_text(encoding="utf-8"))
    for key in ("voice_prob", "voice_factors"):  # as recorded before the voice shift existed
        del saved["config"]["augment"][key]
    record.write_text(json.dumps(saved), encoding="utf-8")
    make_speech_corpus(root, tiny_config(workers=1), progress=False)  # the same corpus: its defaults change nothing
    assert {p: p.stat().st_mtime_ns for p in wavs} == stamps
    shifted = replace(tiny_config(workers=1), augment=augment.AugmentConfig(voice_prob=0.5))
    with pytest.raises(ToolkitError, match=r"another config \(augment: .*'voice_prob': 0.0.*now .*'voice_prob': 0.5"):
        make_speech_corpus(root, shifted, progress=False)


@needs_espeak
@needs_text
@needs_flite
def test_synth_command_shifts_voices_when_asked(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "toolkit", "synth", "speech", "--out", str(tmp_path), "--train", "3",
                        "--valid", "1", "--test-seen", "1", "--test-heldout", "1", "--test-unseen", "1", "--workers", "1",
                        "--voice-shift", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert all("voice" in row["augment"] for row in _rows(tmp_path / "train.jsonl"))
    assert not _rows(tmp_path / "valid.jsonl")[0]["augment"]
    record = json.loads((tmp_path / "speech_corpus.json").read_text(encoding="utf-8"))
    assert record["config"]["augment"]["voice_prob"] == 1.0


@needs_espeak
@needs_text
@needs_flite
def test_synth_command_sets_the_share_of_each_augmentation(tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "-m", "toolkit", "synth", "speech", "--out", str(tmp_path), "--train", "4", "--valid", "1",
            "--test-seen", "1", "--test-heldout", "1", "--test-unseen", "1", "--workers", "1"]
    r = subprocess.run(base + ["--augment", "noise=0", "reverb=0", "telephone=0", "speed=1", "--voice-shift", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert all(set(row["augment"]) == {"speed", "voice"} for row in _rows(tmp_path / "train.jsonl"))
    augment_record = json.loads((tmp_path / "speech_corpus.json").read_text(encoding="utf-8"))["config"]["augment"]
    assert (augment_record["noise_prob"], augment_record["speed_prob"], augment_record["voice_prob"]) == (0, 1, 1)
    for bad, message in ((["noise=2"], "noise: expected a share in [0, 1], got '2'"),
                         (["voice=0"], "expected KIND=P with KIND among noise, reverb, speed, telephone, got")):
        r = subprocess.run(base + ["--augment"] + bad, capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@needs_mbrola
@needs_text
def test_synth_command_adds_mbrola_voices(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "toolkit", "synth", "speech", "--out", str(tmp_path), "--train", "12",
                        "--valid", "1", "--test-seen", "1", "--test-heldout", "1", "--test-unseen", "1",
                        "--workers", "2", "--mbrola", "us1", "en1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "speech_corpus.json").read_text(encoding="utf-8"))
    assert record["config"]["mbrola_voices"] == ["us1", "en1"]
    assert "mbrola:us3" not in record["config"]["unseen_voices"] and record["config"]["unseen_voices"]
    assert "utterances by engine: espeak " in r.stdout
    rows = [row for row in _rows(tmp_path / "train.jsonl") if row["voice"].startswith("mbrola:")]
    assert rows and all(row["accent"] == "mbrola-" + row["voice"].split(":")[1] for row in rows)
    assert all(sf.info(str(tmp_path / row["audio"])).duration > 0.5 for row in rows)


@needs_espeak
def test_espeak_is_deterministic_and_trimmed():
    speaker = Speaker(Voice("espeak", "en-gb-scotland", "f2"), 1.15, 15)
    x = voices.synthesize(speaker, "the oceans are teeming with life.", keep_silence=0.1)
    np.testing.assert_array_equal(x, voices.synthesize(speaker, "the oceans are teeming with life.", 0.1))
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    for silence in (loud[0], len(x) - loud[-1]):  # espeak-ng gives ~0.01 s before and ~0.2 s after: padded, cut
        assert 0.08 * 16000 <= silence <= 0.13 * 16000
    slow = voices.synthesize(Speaker(speaker.voice, 0.85, 15), "the oceans are teeming with life.", 0.1)
    assert len(slow) > 1.2 * len(x)


@needs_mbrola
def test_mbrola_voice_speaks_deterministically_at_its_rate_and_pitch():
    text = "a friend is a present you give yourself"
    x = voices.synthesize(Speaker(Voice.single("mbrola", "us1")), text)
    assert 1.0 < len(x) / 16000 < 5.0 and np.abs(x).max() > 0.1
    np.testing.assert_array_equal(x, voices.synthesize(Speaker(Voice.single("mbrola", "us1")), text))
    slow = voices.synthesize(Speaker(Voice.single("mbrola", "us1"), 0.85), text)
    assert len(slow) > 1.1 * len(x)

    def f0(samples):  # the autocorrelation peak between 60 and 400 Hz, over the voiced middle
        mid = samples[len(samples) // 4: 3 * len(samples) // 4].astype(np.float64)
        ac = np.correlate(mid[:8000], mid[:8000], "full")[7999:]
        lag = 40 + int(np.argmax(ac[40:267]))
        return 16000 / lag

    high = voices.synthesize(Speaker(Voice.single("mbrola", "us1"), 1.0, 25), text)
    assert f0(high) > 1.1 * f0(x)


@needs_flite
def test_flite_voice_speaks():
    x = voices.synthesize(Speaker(Voice("flite", "flite-slt"), 1.0, 0), "a friend is a present you give yourself")
    assert 1.0 < len(x) / 16000 < 5.0 and np.abs(x).max() > 0.1
