"""Long recordings with a known timeline (`toolkit.synth.longform`) and the demo video."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli import main
from toolkit.data.audio import load_audio
from toolkit.data.speech import SpeechRecord, read_speech, write_jsonl_manifest
from toolkit.synth.longform import (LongformConfig, assemble_longform, make_demo_video, read_timeline,
                                         speech_bounds)
from toolkit.errors import ConfigError, ToolkitError
from toolkit.timing import Segment

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")
TEXTS = ["the quick brown fox", "subtitles need exact times", "a long recording with pauses",
         "silence noise and music"]
RATE = 16000


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Four espeak-ng utterances as 16 kHz PCM16 WAVs and their JSONL manifest."""
    root = tmp_path_factory.mktemp("utts")
    records = []
    for i, text in enumerate(TEXTS):
        raw = root / f"raw{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        wav = root / f"utt{i}.wav"
        sf.write(wav, load_audio(raw), RATE, subtype="PCM_16")  # espeak-ng writes 22.05 kHz
        records.append(SpeechRecord(f"utt{i}", str(wav), text))
    write_jsonl_manifest(records, root / "utts.jsonl")
    return root / "utts.jsonl"


@pytest.fixture(scope="module")
def assembled(manifest, tmp_path_factory) -> tuple[Path, list[Segment]]:
    """About 40 s: the four utterances cycled, every third gap a noise or music stretch."""
    wav = tmp_path_factory.mktemp("long") / "long.wav"
    segments = assemble_longform(read_speech(manifest), wav, LongformConfig(minutes=40 / 60, noise_every=3))
    return wav, segments


def samples(segment: Segment) -> slice:
    return slice(round(segment.start * RATE), round(segment.end * RATE))


def rms_db(x: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12)


def test_timeline_tiles_the_wav(assembled):
    wav, segments = assembled
    info = sf.info(wav)
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    assert info.frames == round(segments[-1].end * RATE) and segments[0].start == 0.0
    assert all(a.end == b.start and a.start < a.end for a, b in zip(segments, segments[1:]))
    assert all(s.start * RATE == pytest.approx(round(s.start * RATE), abs=1e-6) for s in segments)  # whole samples
    assert read_timeline(wav.with_suffix(".json")) == segments
    timeline = json.loads(wav.with_suffix(".json").read_text())
    assert timeline["samples"] == info.frames and timeline["audio"] == "long.wav"
    assert 40.0 <= segments[-1].end <= 40.0 + 10.0
    assert segments[0].kind == "silence" and segments[-1].kind == "silence"


def test_segment_contents(assembled):
    wav, segments = assembled
    x = sf.read(wav, dtype="int16")[0]
    speech = [s for s in segments if s.kind == "speech"]
    assert [s.text for s in speech[:4]] == TEXTS and [s.source for s in speech[:4]] == [f"utt{i}" for i in range(4)]
    assert len(speech) >= 8  # cycled
    for s in segments:
        part = x[samples(s)].astype(np.float64) / 32768
        if s.kind == "silence":
            assert not part.any() and 0.6 <= s.end - s.start <= 2.5
        elif s.kind == "speech":
            # exact edges: the first and last samples are sound, their neighbours digital silence
            assert part[0] != 0 and part[-1] != 0
            assert x[samples(s).start - 1] == 0 and x[samples(s).stop] == 0
            assert rms_db(part) == pytest.approx(-20.0, abs=1.0)
        else:
            assert 2.0 <= s.end - s.start <= 5.0
            assert rms_db(part) == pytest.approx(-30.0, abs=1.0)
    stretches = [(s.kind, s.source) for s in segments if s.kind in ("noise", "music")]
    assert stretches[:3] == [("noise", "white"), ("noise", "pink"), ("music", "chords")]


def test_speech_times_trim_the_synthesisers_silence(manifest, assembled):
    """A speech segment lasts exactly the utterance minus its leading and trailing silence."""
    _, segments = assembled
    for record, segment in zip(read_speech(manifest), [s for s in segments if s.kind == "speech"]):
        x = load_audio(record.audio)
        first, stop = speech_bounds(x, LongformConfig().speech_threshold_db)
        assert first > 0 and stop < len(x)  # espeak-ng's silence was there and was cut
        assert round((segment.end - segment.start) * RATE) == stop - first


def test_same_seed_same_bytes(manifest, tmp_path):
    records = read_speech(manifest)
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        wav = tmp_path / f"{name}.wav"
        assemble_longform(records, wav, LongformConfig(seed=seed, noise_every=2))
        outs.append((wav.read_bytes(), json.loads(wav.with_suffix(".json").read_text())["segments"]))
    assert outs[0] == outs[1] and outs[0][0] != outs[2][0]
    assert [s["text"] for s in outs[0][1] if s["kind"] == "speech"] == TEXTS  # minutes=None: each record once
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_three_minutes_in_little_memory(manifest, tmp_path):
    wav = tmp_path / "three.wav"
    records = read_speech(manifest)
    tracemalloc.start()
    try:
        segments = assemble_longform(records, wav, LongformConfig(minutes=3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 180.0 <= segments[-1].end < 195.0 and sf.info(wav).frames == round(segments[-1].end * RATE)
    whole = sf.info(wav).frames * 4  # the recording as float32
    assert peak < 4_000_000 < whole / 2


def test_bad_inputs(manifest, tmp_path):
    records = read_speech(manifest)
    with pytest.raises(ToolkitError, match="no utterances"):
        assemble_longform([], tmp_path / "x.wav", LongformConfig())
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(RATE, dtype=np.float32), RATE)
    mute = SpeechRecord("mute", str(silent), "nothing")
    segments = assemble_longform([records[0], mute, records[1]], tmp_path / "y.wav", LongformConfig())
    assert [s.source for s in segments if s.kind == "speech"] == ["utt0", "utt1"]
    with pytest.raises(ToolkitError, match="silent"):
        assemble_longform([mute], tmp_path / "z.wav", LongformConfig(minutes=1))
    assert not (tmp_path / "z.wav").exists()
    for field, value in (("gap", (2.0, 1.0)), ("minutes", 0), ("noise_every", -1), ("speech_level_db", 3.0)):
        with pytest.raises(ConfigError, match=f"LongformConfig.{field}:"):
            LongformConfig(**{field: value})


def test_read_timeline_errors(assembled, tmp_path):
    wav, _ = assembled
    timeline = json.loads(wav.with_suffix(".json").read_text())
    bad = tmp_path / "bad.json"
    for edit, message in ((lambda t: t["segments"][2].update(kind="laugh"), r"segments\[2\]\.kind"),
                          (lambda t: t["segments"][1].update(start="0"), r"segments\[1\]\.start"),
                          (lambda t: t["segments"][3].update(start=0.0), r"segments\[3\]: start"),
                          (lambda t: t.update(format=9), "not a timeline")):
        broken = json.loads(json.dumps(timeline))
        edit(broken)
        bad.write_text(json.dumps(broken))
        with pytest.raises(ToolkitError, match=message) as e:
            read_timeline(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ToolkitError, match="not found"):
        read_timeline(tmp_path / "missing.json")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_demo_video(manifest, tmp_path, suffix):
    import av

    wav = tmp_path / "short.wav"
    segments = assemble_longform(read_speech(manifest), wav, LongformConfig(noise_every=0))
    out = make_demo_video(wav, tmp_path / f"demo{suffix}", size=(160, 120), fps=10)
    duration = segments[-1].end
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(frames) == math.ceil(duration * 10) and frames[0].shape == (120, 160, 3)
    assert abs(len(audio) / RATE - duration) < 0.2 and abs(len(frames) / 10 - duration) < 0.2
    assert not np.array_equal(frames[0], frames[5])  # the pattern moves
    # the soundtrack is in sync: loud where the timeline says speech, quiet in the silences
    for s in segments[1:-1]:
        part = audio[round(s.start * RATE) + 800 : round(s.end * RATE) - 800]
        assert (rms_db(part) > -30) if s.kind == "speech" else (rms_db(part) < -50)
    with pytest.raises(ToolkitError, match=r"\.mp4 or \.mkv"):
        make_demo_video(wav, tmp_path / "demo.avi")


def test_cli(manifest, tmp_path, capsys):
    assert main(["synth", "longform", "--manifest", str(manifest), "--minutes", "0.2", "--out", str(tmp_path),
                 "--video", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "longform.wav" in out and "longform.mp4" in out
    segments = read_timeline(tmp_path / "longform.json")
    assert segments[-1].end >= 12.0 and (tmp_path / "longform.mp4").stat().st_size > 0
    with pytest.raises(SystemExit) as e:
        main(["synth", "longform", "--out", str(tmp_path)])
    assert e.value.code == 2 and "the following arguments are required: --manifest" in capsys.readouterr().err
