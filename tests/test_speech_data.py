"""Speech data: audio decoding (rates, channels, bit depths, containers) and its one-line errors, the JSONL / Kaldi /
LibriSpeech readers, the record check, the lazy speech dataset, its collate function and the bucketing sampler."""

from __future__ import annotations

import fractions
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit.data.audio import AudioLoadError, audio_duration, load_audio
from toolkit.data.speech import (
    SpeechFileError,
    SpeechRecord,
    check_speech_records,
    describe_skipped,
    read_jsonl_manifest,
    read_kaldi_dir,
    read_librispeech,
    read_speech,
    write_jsonl_manifest,
)
from toolkit.data.speech_dataset import BucketBatchSampler, SpeechDataset, collate_speech, make_speech_loader
from toolkit.text import train_tokenizer

SR = 16000


def sine(rate: int, seconds: float, freq: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(round(rate * seconds))) / rate)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x[len(x) // 10: -len(x) // 10]))))  # edges: resampler transients


def one_line(excinfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def write_wav(path: Path, seconds: float = 1.0, rate: int = SR, freq: float = 440.0, **kw) -> Path:
    sf.write(path, sine(rate, seconds, freq), rate, **kw)
    return path


def write_av(path: Path, fmt: str, codec: str | None, rate: int = 44100, channels: int = 2, seconds: float = 1.0,
             freq: float = 1000.0, video: bool = False) -> Path:
    """An audio (and/or video) file written with PyAV: audio-only when `video` is False, video-only when codec None."""
    import av
    with av.open(str(path), "w", format=fmt) as out:  # every stream is added before the first packet is muxed
        v = out.add_stream("mpeg4", rate=10) if video else None
        if v is not None:
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream(codec, rate=rate) if codec else None
        if a is not None:
            a.layout = "stereo" if channels == 2 else "mono"
            x, size = sine(rate, seconds, freq), a.codec_context.frame_size or 1024
            fmt_name = a.codec_context.format.name
            for i in range(0, len(x), size):
                chunk = np.tile(x[i: i + size], (channels, 1))
                if fmt_name == "fltp":
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=a.layout.name)
                else:  # s16 (libopus)
                    packed = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                    frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=a.layout.name)
                frame.sample_rate, frame.pts, frame.time_base = rate, i, fractions.Fraction(1, rate)
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
        if v is not None:
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
                frame.pts = i
                for packet in v.encode(frame):
                    out.mux(packet)
            for packet in v.encode():
                out.mux(packet)
    return path


# ------------------------------------------------------------------------------------------------ load_audio


@pytest.mark.parametrize(
    "name, rate, gains, subtype",
    [
        ("stereo_8k.wav", 8000, [0.5, 0.0], "PCM_16"),         # channel 1 silent: the mean halves the amplitude
        ("mono_44k.wav", 44100, [0.8], "PCM_16"),
        ("six_96k.wav", 96000, [0.6, 0, 0, 0, 0, 0.6], "PCM_24"),
        ("float_48k.wav", 48000, [0.9, -0.3], "FLOAT"),
        ("u8_11k.wav", 11025, [0.5], "PCM_U8"),
        ("pcm24_22k.flac", 22050, [0.7], "PCM_24"),
        ("pcm16_16k.flac", 16000, [0.4, 0.4], "PCM_16"),
        ("vorbis_32k.ogg", 32000, [0.5, 0.5], "VORBIS"),
    ],
)
def test_load_audio_resamples_and_mixes_to_mono(tmp_path, name, rate, gains, subtype):
    seconds, freq = 0.75, 1000.0
    x = sine(rate, seconds, freq, amp=1.0)
    sf.write(tmp_path / name, np.stack([g * x for g in gains], axis=1), rate, subtype=subtype)
    wave = load_audio(tmp_path / name)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - seconds * SR) <= 1
    assert abs(peak_hz(wave) - freq) <= 2 * SR / len(wave)
    expected_amp = abs(float(np.mean(gains)))
    assert rms(wave) == pytest.approx(expected_amp / np.sqrt(2), rel=0.05)  # integer PCM scaled to [-1, 1)


def test_load_audio_other_rate_and_antialiasing(tmp_path):
    # a 12 kHz tone (above the 8 kHz Nyquist of 16 kHz) must be filtered out, not folded down to 4 kHz
    sf.write(tmp_path / "mix.wav", sine(44100, 1.0, 12000.0) + sine(44100, 1.0, 500.0, 0.1), 44100)
    wave = load_audio(tmp_path / "mix.wav")
    assert abs(peak_hz(wave) - 500.0) < 3
    assert len(load_audio(tmp_path / "mix.wav", sample_rate=8000)) == 8000


@pytest.mark.parametrize(
    "name, fmt, codec, rate, channels, video",
    [("a.mp4", "mp4", "aac", 44100, 2, False), ("a.m4a", "ipod", "aac", 22050, 1, False),
     ("a.mkv", "matroska", "libopus", 48000, 2, False), ("av.mkv", "matroska", "aac", 44100, 2, True)],
)
def test_load_audio_containers_with_pyav(tmp_path, name, fmt, codec, rate, channels, video):
    path = write_av(tmp_path / name, fmt, codec, rate=rate, channels=channels, seconds=1.0, freq=1000.0, video=video)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) / SR - 1.0) < 0.07  # AAC adds up to one frame of encoder padding
    assert abs(peak_hz(wave) - 1000.0) < 5
    assert rms(wave) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert abs(audio_duration(path) - 1.0) < 0.07


def test_load_audio_segment_and_duration(tmp_path):
    path = write_wav(tmp_path / "long.wav", seconds=3.0, rate=8000)
    assert audio_duration(path) == pytest.approx(3.0)
    assert len(load_audio(path, offset=1.0, end=2.5)) == int(1.5 * SR)
    assert len(load_audio(path, offset=2.0)) == SR
    assert len(load_audio(path, offset=2.0, end=3.3)) == SR  # within MAX_OVERSHOOT: clipped
    with pytest.raises(AudioLoadError) as e:
        load_audio(path, offset=1.0, end=4.0)
    one_line(e, str(path), "past the end")
    with pytest.raises(AudioLoadError) as e:
        load_audio(path, offset=3.5)
    one_line(e, str(path), "past the end")


def bad_inputs(tmp: Path) -> list[tuple[Path, str]]:
    """(path, expected words in the reason) for every kind of unreadable input."""
    cases = [(tmp / "missing.wav", "file not found"), (tmp, "directory")]
    (tmp / "empty.wav").write_bytes(b"")
    cases.append((tmp / "empty.wav", "empty file"))
    sf.write(tmp / "zero.wav", np.zeros(0, np.float32), SR)
    cases.append((tmp / "zero.wav", "no audio samples"))
    for name in ("full.wav", "full.flac"):
        write_wav(tmp / name, seconds=2.0)
        data = (tmp / name).read_bytes()
        (tmp / f"cut_{name}").write_bytes(data[: len(data) // 2])
        cases.append((tmp / f"cut_{name}", "truncated"))
    (tmp / "notes.txt").write_text("these are not the samples you are looking for\n" * 20)
    cases.append((tmp / "notes.txt", "not audio"))
    (tmp / "fake.wav").write_text("RIFX and not a wave file at all\n" * 20)
    cases.append((tmp / "fake.wav", "not audio"))
    x = sine(SR, 0.5, 440.0)
    x[100], x[200] = np.nan, np.inf
    sf.write(tmp / "nan.wav", x, SR, subtype="FLOAT")
    cases.append((tmp / "nan.wav", "NaN or infinite"))
    return cases


def test_load_audio_bad_inputs_are_one_line_errors(tmp_path):
    for path, words in bad_inputs(tmp_path):
        with pytest.raises(AudioLoadError) as e:
            load_audio(path)
        one_line(e, str(path), "cannot load audio", words)
        assert e.value.path == str(path)


def test_audio_duration_bad_inputs(tmp_path):
    for path, words in bad_inputs(tmp_path):
        if path.name == "nan.wav":  # the header is fine; NaN shows only when decoding
            continue
        if path.name == "cut_full.flac":  # libsndfile reads the FLAC header only
            assert audio_duration(path) == pytest.approx(2.0)
            continue
        with pytest.raises(AudioLoadError) as e:
            audio_duration(path)
        one_line(e, str(path), words)


def test_containers_bad_inputs(tmp_path):
    video = write_av(tmp_path / "video_only.mp4", "mp4", None, video=True)
    for fn in (load_audio, audio_duration):
        with pytest.raises(AudioLoadError) as e:
            fn(video)
        one_line(e, str(video), "no audio track")
    good = write_av(tmp_path / "a.mkv", "matroska", "libopus", rate=48000, seconds=2.0)
    (tmp_path / "cut.mkv").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AudioLoadError) as e:
        load_audio(tmp_path / "cut.mkv")
    one_line(e, "cut.mkv", "truncated")
    mp4 = write_av(tmp_path / "a.mp4", "mp4", "aac")
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])  # moov atom lost
    with pytest.raises(AudioLoadError) as e:
        load_audio(tmp_path / "cut.mp4")
    one_line(e, "cut.mp4", "truncated or corrupt")


# ------------------------------------------------------------------------------------------------ JSONL


def test_jsonl_round_trip(tmp_path):
    write_wav(tmp_path / "a.wav")
    records = [
        SpeechRecord("u1", str(tmp_path / "a.wav"), "hello world", 1.0, speaker="spk1", extra={"voice": "en-us"}),
        SpeechRecord("u2", str(tmp_path / "a.wav"), "héllo ünïcode", 0.5, offset=0.25, end=0.75),
        SpeechRecord("u3", "/elsewhere/b.flac", "", None),
        SpeechRecord("u4", str(tmp_path / "a.wav"), "tail", 0.5, offset=0.5),  # a segment to the end of the file
    ]
    write_jsonl_manifest(records, tmp_path / "sub" / ".." / "m.jsonl")
    lines = (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"id": "u1", "audio": "a.wav", "text": "hello world", "duration": 1.0,
                                    "speaker": "spk1", "voice": "en-us"}
    assert "héllo" in lines[1] and json.loads(lines[2])["audio"] == "/elsewhere/b.flac"
    assert read_jsonl_manifest(tmp_path / "m.jsonl") == records
    assert read_speech(tmp_path / "m.jsonl") == records
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_jsonl_defaults_and_nemo_keys(tmp_path):
    lines = ['{"audio": "x.wav", "text": "a"}', '', '{"audio_filepath": "x.wav", "text": "b", "offset": 1.5, '
             '"duration": 2.0, "speaker": 7}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    r1, r2 = read_jsonl_manifest(tmp_path / "m.jsonl")
    assert (r1.id, r1.audio, r1.duration, r1.offset, r1.end) == ("x.wav", str(tmp_path / "x.wav"), None, 0.0, None)
    assert (r2.id, r2.offset, r2.end, r2.duration, r2.speaker) == ("x.wav@1.5", 1.5, 3.5, 2.0, "7")


@pytest.mark.parametrize(
    "content, where, words",
    [
        (b'{"audio": "a.wav", "text": "x"}\n{"audio": "b.wav", "text": "y"\n', ":2", "not valid JSON"),
        (b'{"audio": "a.wav"}\n', ":1", "text: missing"),
        (b'{"text": "hi"}\n', ":1", "audio: missing"),
        (b'{"audio": 3, "text": "hi"}\n', ":1", "audio: must be a string"),
        (b'\n{"audio": "a.wav", "text": "x", "duration": "2.0"}\n', ":2", "duration: must be a number"),
        (b'{"audio": "a.wav", "text": "x", "duration": -1}\n', ":1", "duration: must be a finite number > 0"),
        (b'{"audio": "a.wav", "text": "x", "offset": 2, "end": 1}\n', ":1", "end: must be"),
        (b'{"audio": "a.wav", "text": "x", "speaker": [1]}\n', ":1", "speaker: must be"),
        (b'["a.wav", "x"]\n', ":1", "expected a JSON object"),
        (b'{"audio": "a.wav", "text": "x"}\n{"audio": "a.wav", "text": "y"}\n', ":2", "already used at line 1"),
        (b'{"audio": "a.wav", "text": "caf\xe9"}\n', ":1", "not UTF-8"),
    ],
)
def test_jsonl_errors_name_file_line_field(tmp_path, content, where, words):
    (tmp_path / "bad.jsonl").write_bytes(content)
    with pytest.raises(SpeechFileError) as e:
        read_jsonl_manifest(tmp_path / "bad.jsonl")
    one_line(e, f"bad.jsonl{where}:", words)


def test_jsonl_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(SpeechFileError) as e:
        read_jsonl_manifest(tmp_path / "nope.jsonl")
    one_line(e, "nope.jsonl", "not found")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(SpeechFileError) as e:
        read_speech(tmp_path / "x.csv")
    one_line(e, "x.csv", "unknown speech corpus file type")


# ------------------------------------------------------------------------------------------------ Kaldi


def make_kaldi(tmp: Path) -> Path:
    data = tmp / "data" / "train"
    data.mkdir(parents=True)
    write_wav(data / "rec1.wav", seconds=3.0, rate=8000)
    write_wav(tmp / "rec2.flac", seconds=2.0, rate=22050)
    (data / "wav.scp").write_text(f"rec1 rec1.wav\nrec2 {tmp / 'rec2.flac'}\n")
    (data / "segments").write_text("rec1-a rec1 0.00 1.25\nrec1-b rec1 1.25 3.00\nrec2-a rec2 0.5 -1\n"
                                   "rec2-b rec2 0.0 0.5\nghost-a ghost 0.0 1.0\n")
    (data / "text").write_text("rec1-a HELLO THERE\nrec1-b\nrec2-a GOOD  BYE\norphan NO AUDIO\nghost-a BOO\n")
    (data / "utt2spk").write_text("rec1-a spk1\nrec1-b spk1\nrec2-a spk2\nrec2-b spk2\n")
    return data


def test_kaldi_dir_with_segments(tmp_path, caplog):
    data = make_kaldi(tmp_path)
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        records = read_speech(data)
    assert [r.id for r in records] == ["rec1-a", "rec1-b", "rec2-a"]
    a, b, c = records
    assert (a.audio, a.text, a.offset, a.end, a.duration, a.speaker) == (
        str(data / "rec1.wav"), "HELLO THERE", 0.0, 1.25, 1.25, "spk1")
    assert (b.text, b.offset, b.end) == ("", 1.25, 3.0)
    assert (c.audio, c.text, c.offset, c.end, c.duration) == (str(tmp_path / "rec2.flac"), "GOOD  BYE", 0.5, None, None)
    assert c.extra == {"recording": "rec2"}
    log = caplog.text
    assert "1 utterances have no transcript" in log and "rec2-b" in log and "orphan" in log
    assert "1 utterances name a recording missing from wav.scp" in log and "ghost-a" in log
    ds = SpeechDataset(records)
    assert [len(ds[i]["audio"]) for i in range(3)] == [int(1.25 * SR), int(1.75 * SR), int(1.5 * SR)]
    good, report = check_speech_records(records)
    assert good[2].duration == pytest.approx(1.5) and report.skipped == 0


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("wav.scp", "rec1 sox rec1.wav -t wav - |\n", ["wav.scp:1", "piped commands", "not supported"]),
        ("wav.scp", "rec1 rec1.wav\nrec2 /x/feats.ark:1234\n", ["wav.scp:2", "archives"]),
        ("wav.scp", "rec1 rec1.wav\nrec1 rec1.wav\n", ["wav.scp:2", "already listed at line 1"]),
        ("wav.scp", "rec1\n", ["wav.scp:1", "expected 'utt path'"]),
        ("segments", "rec1-a rec1 0.0 1.0\nrec1-b rec1 abc 2.0\n", ["segments:2", "start: not a number"]),
        ("segments", "rec1-a rec1 2.0 1.0\n", ["segments:1", "bad times"]),
        ("segments", "rec1-a rec1 0.0\n", ["segments:1", "expected 'seg rec start end'"]),
        ("utt2spk", "rec1-a spk1 extra\n", ["utt2spk:1", "expected 'utt spk'"]),
        ("text", b"rec1-a caf\xe9\n", ["text:1", "not UTF-8"]),
    ],
)
def test_kaldi_errors_name_file_line(tmp_path, name, content, words):
    data = make_kaldi(tmp_path)
    (data / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SpeechFileError) as e:
        read_kaldi_dir(data)
    one_line(e, *words)


def test_kaldi_without_segments_and_missing_files(tmp_path):
    data = make_kaldi(tmp_path)
    (data / "segments").unlink()
    (data / "text").write_text("rec2 SECOND\nrec1 FIRST\n")
    (data / "utt2dur").write_text("rec1 3.0\n")
    records = read_kaldi_dir(data)
    assert [(r.id, r.text, r.duration, r.end) for r in records] == [("rec1", "FIRST", 3.0, None),
                                                                    ("rec2", "SECOND", None, None)]
    (data / "text").unlink()
    with pytest.raises(SpeechFileError) as e:
        read_kaldi_dir(data)
    one_line(e, "text", "not found")
    (data / "text").write_text("other NOTHING MATCHES\n")
    with pytest.raises(SpeechFileError) as e:
        read_kaldi_dir(data)
    one_line(e, "no utterance has both audio and a transcript")


# ------------------------------------------------------------------------------------------------ LibriSpeech


def make_librispeech(root: Path) -> Path:
    corpus = root / "LibriSpeech"
    layout = {"train-clean-100": {"19": ["198", "227"], "26": ["495"]}, "dev-clean": {"84": ["121"]}}
    for subset, speakers in layout.items():
        for speaker, chapters in speakers.items():
            for chapter in chapters:
                folder = corpus / subset / speaker / chapter
                folder.mkdir(parents=True)
                lines = []
                for n in range(2):
                    uid = f"{speaker}-{chapter}-{n:04d}"
                    sf.write(folder / f"{uid}.flac", sine(SR, 0.3 + 0.1 * n, 300.0), SR)
                    lines.append(f"{uid} CHAPTER {chapter} LINE {n}")
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus


def test_librispeech_layout(tmp_path):
    corpus = make_librispeech(tmp_path)
    train = read_librispeech(corpus / "train-clean-100")
    assert [r.id for r in train] == ["19-198-0000", "19-198-0001", "19-227-0000", "19-227-0001", "26-495-0000",
                                     "26-495-0001"]
    r = train[1]
    assert (r.audio, r.text, r.speaker, r.extra) == (str(corpus / "train-clean-100/19/198/19-198-0001.flac"),
                                                     "CHAPTER 198 LINE 1", "19",
                                                     {"subset": "train-clean-100", "chapter": "198"})
    both = read_librispeech(corpus, subsets=["train-clean-100", "dev-clean"])
    assert len(both) == 8 and both[-1].extra["subset"] == "dev-clean"
    assert read_speech(corpus, subsets="dev-clean") == both[6:]
    assert read_speech(corpus / "train-clean-100") == train
    assert read_librispeech(corpus / "dev-clean", subsets=["dev-clean"]) == both[6:]
    with pytest.raises(SpeechFileError) as e:
        read_librispeech(corpus)
    one_line(e, "choose subsets", "dev-clean, train-clean-100")
    with pytest.raises(SpeechFileError) as e:
        read_librispeech(corpus, subsets=["train-other-500"])
    one_line(e, "'train-other-500' not found")
    bad = corpus / "dev-clean/84/121/84-121.trans.txt"
    bad.write_text("84-121-0000 FINE\n19-198-0000 WRONG FOLDER\n")
    with pytest.raises(SpeechFileError) as e:
        read_librispeech(corpus / "dev-clean")
    one_line(e, f"{bad}:2", "does not start with '84-121-'")
    good, report = check_speech_records(train, max_duration=0.35)
    assert report.counts["too_long"] == 3 and all(g.duration == pytest.approx(0.3) for g in good)


def test_read_speech_unknown_folder(tmp_path):
    with pytest.raises(SpeechFileError) as e:
        read_speech(tmp_path)
    one_line(e, str(tmp_path), "not a speech corpus")


# ------------------------------------------------------------------------------------------------ check


def test_check_speech_records_counts_and_describes(tmp_path, caplog):
    write_wav(tmp_path / "short.wav", seconds=1.0)
    write_wav(tmp_path / "long.wav", seconds=4.0, rate=8000)
    (tmp_path / "broken.wav").write_text("not audio\n")
    records = [
        SpeechRecord("ok", str(tmp_path / "short.wav"), "hello"),
        SpeechRecord("long", str(tmp_path / "long.wav"), "hello"),
        SpeechRecord("long-seg", str(tmp_path / "long.wav"), "hello", offset=2.5),
        SpeechRecord("given", str(tmp_path / "short.wav"), "hello", duration=9.0),
        SpeechRecord("gone1", str(tmp_path / "gone1.wav"), "hello"),
        SpeechRecord("gone2", str(tmp_path / "gone2.wav"), "hello"),
        SpeechRecord("accent", str(tmp_path / "short.wav"), "héllo wörld"),
        SpeechRecord("broken", str(tmp_path / "broken.wav"), "hello"),
    ]
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        good, report = check_speech_records(records, max_duration=3.0, charset=set("helo wrd"), max_examples=1)
    assert [r.id for r in good] == ["ok", "long-seg"]
    assert [r.duration for r in good] == [pytest.approx(1.0), pytest.approx(1.5)]
    assert records[0].duration is None  # inputs are not modified
    assert report.counts == {"missing": 2, "unreadable": 1, "too_short": 0, "too_long": 2, "charset": 1}
    assert (report.total, report.kept, report.skipped) == (8, 2, 6)
    assert report.examples["too_long"] == ["long (4.0 s)"] and report.examples["charset"] == ["accent ('éö')"]
    text = describe_skipped(report)
    assert "\n" not in text and text.startswith("skipped 6 of 8 utterances")
    assert "2 missing audio: gone1" in text and "and 1 more" in text and "longer than max_duration (3 s)" in text
    assert text in caplog.text
    _, clean = check_speech_records(good)
    assert describe_skipped(clean) == "all 2 utterances kept"


# ------------------------------------------------------------------------------------------------ dataset


def make_records(tmp: Path, n: int = 5) -> list[SpeechRecord]:
    records = []
    for i in range(n):
        write_wav(tmp / f"u{i}.wav", seconds=0.2 + 0.1 * i, rate=8000 if i % 2 else SR)
        records.append(SpeechRecord(f"u{i}", str(tmp / f"u{i}.wav"), "ab" * (i + 1), 0.2 + 0.1 * i))
    return records


def test_dataset_is_lazy_and_collate_skips_failures(tmp_path, caplog):
    records = make_records(tmp_path)
    tok = train_tokenizer("char", ["ab"])
    ds = SpeechDataset(records, tok, transform=lambda x: x * 2.0)
    os.remove(records[1].audio)  # after construction: noticed only when item 1 is loaded
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        items = [ds[i] for i in range(len(ds))] + [ds[1]]
    assert items[1] is None and items[-1] is None
    assert caplog.text.count("u1.wav") == 1 and ds.load_errors == {records[1].audio: "file not found"}
    assert items[0]["tokens"].tolist() == tok.encode("ab") and items[0]["index"] == 0
    assert rms(items[0]["audio"].numpy()) == pytest.approx(1.0 / np.sqrt(2), rel=0.05)  # transform applied
    batch = collate_speech(items[:4])
    assert batch["indices"].tolist() == [0, 2, 3]
    assert batch["audio_lengths"].tolist() == [int(0.2 * SR), int(0.4 * SR), int(0.5 * SR)]
    assert batch["audio"].shape == (3, int(0.5 * SR)) and batch["audio"].dtype == torch.float32
    assert batch["audio"][0, int(0.2 * SR):].abs().sum() == 0
    assert batch["target_lengths"].tolist() == [2, 6, 8]
    assert batch["targets"].shape == (3, 8) and batch["targets"][0, 2:].abs().sum() == 0
    assert collate_speech([None, items[1]]) is None
    plain = SpeechDataset(records)[0]
    assert set(plain) == {"audio", "index"}
    assert set(collate_speech([plain])) == {"audio", "audio_lengths", "indices"}
    with pytest.raises(ValueError, match="transform must return"):
        SpeechDataset(records, transform=lambda x: x[None])[0]
    with pytest.raises(Exception, match="no duration"):
        SpeechDataset([SpeechRecord("x", "x.wav", "")]).durations


def test_loader_with_two_workers(tmp_path):
    records = make_records(tmp_path, n=8)
    ds = SpeechDataset(records, train_tokenizer("char", ["ab"]))
    loader = make_speech_loader(ds, None, max_batch_seconds=1.2, train=True, num_workers=2, seed=3)
    seen = []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        seen.append([b["indices"].tolist() for b in batches])
        for b in batches:
            assert b["audio"].shape[0] * b["audio_lengths"].max().item() <= 1.2 * SR
    assert sorted(i for b in seen[0] for i in b) == list(range(8))
    assert sorted(map(sorted, seen[0])) == sorted(map(sorted, seen[1]))  # same batches ...
    assert seen[0] != seen[1]  # ... in another order


# ------------------------------------------------------------------------------------------------ sampler


def durations_for_sampler(n: int = 300, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(d) for d in rng.uniform(0.5, 20.0, n)] + [45.0]  # one utterance longer than the cap


def epoch_batches(sampler: BucketBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_covers_every_index_under_the_cap(caplog):
    durations = durations_for_sampler()
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        sampler = BucketBatchSampler(durations, max_batch_seconds=40.0, max_batch_size=6, seed=1)
    assert sampler.num_oversized == 1 and "longer than max_batch_seconds" in caplog.text
    batches = epoch_batches(sampler, 0)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for b in batches:
        cost = len(b) * max(durations[i] for i in b)
        assert len(b) <= 6
        assert cost <= 40.0 or len(b) == 1
    assert [len(durations) - 1] in batches  # the oversized utterance forms its own batch
    padded = sum(len(b) * max(durations[i] for i in b) for b in batches)
    assert padded / sum(durations) < 1.15  # sorted buckets: little padding


def test_sampler_epochs_and_seeds():
    durations = durations_for_sampler()
    a = BucketBatchSampler(durations, 60.0, seed=5)
    b = BucketBatchSampler(durations, 60.0, seed=5)
    e0, e1 = epoch_batches(a, 0), epoch_batches(a, 1)
    assert e0 != e1 and sorted(e0) == sorted(e1) and len(e0) == len(e1) == len(a)
    assert epoch_batches(b, 1) == e1 and epoch_batches(b, 0) == e0
    assert epoch_batches(BucketBatchSampler(durations, 60.0, seed=6), 0) != e0
    assert epoch_batches(BucketBatchSampler(durations, 60.0, seed=4), 1) == e0  # the order is drawn from seed + epoch
    ordered = epoch_batches(BucketBatchSampler(durations, 60.0, shuffle=False), 3)
    longest = [max(durations[i] for i in b) for b in ordered]
    assert longest == sorted(longest)
    with pytest.raises(ValueError, match=r"durations\[1\]"):
        BucketBatchSampler([1.0, None, 2.0], 10.0)
    with pytest.raises(ValueError, match="max_batch_seconds"):
        BucketBatchSampler([1.0], 0)


@pytest.mark.parametrize("replicas", [2, 3, 4, 7])
def test_sampler_ranks_are_disjoint_and_equal(replicas):
    durations = durations_for_sampler(n=101, seed=replicas)
    single = BucketBatchSampler(durations, 30.0, max_batch_size=8)
    samplers = [BucketBatchSampler(durations, 30.0, max_batch_size=8, seed=2, num_replicas=replicas, rank=r)
                for r in range(replicas)]
    for epoch in (0, 1):
        per_rank = [epoch_batches(s, epoch) for s in samplers]
        assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
        flat = [i for p in per_rank for b in p for i in b]
        assert sorted(flat) == list(range(len(durations)))  # disjoint, and every utterance exactly once
    assert len(samplers[0]) * replicas >= len(single)


def test_sampler_needs_splitting_and_tiny_sets():
    durations = [1.0] * 10
    assert len(BucketBatchSampler(durations, 5.0)) == 2  # 5 + 5: not a multiple of 3
    ranks = [list(BucketBatchSampler(durations, 5.0, num_replicas=3, rank=r)) for r in range(3)]
    assert [len(r) for r in ranks] == [1, 1, 1]
    assert sorted(i for r in ranks for b in r for i in b) == list(range(10))
    tiny = [list(BucketBatchSampler([1.0, 2.0], 5.0, num_replicas=4, rank=r)) for r in range(4)]
    assert [len(r) for r in tiny] == [1, 1, 1, 1]  # fewer utterances than ranks: batches repeat
    assert {i for r in tiny for b in r for i in b} == {0, 1}
    assert list(BucketBatchSampler([], 5.0)) == [] and len(BucketBatchSampler([], 5.0, num_replicas=2)) == 0
