"""Bad inputs, end to end: every file a user hands the toolkit that it cannot use is refused with ONE line naming
the file (and the line or field at fault), exit status 2 and no traceback, through the Python API and through
the `toolkit` command (`transcribe`, `caption`, `evaluate`, `train`, `info`). Valid but unusual inputs (8 or
96 kHz, six channels, a real file under the wrong extension) simply work. A corpus with a few bad items trains
on the good ones and reports the bad ones (how many, and which).

One-sample audio (anything shorter than the encoder's shortest input, 1360 samples = 85 ms here) is not an
error: it carries no speech, so its transcript is empty (`toolkit transcribe`, `Transcriber`, `toolkit
evaluate`), a warning names it, and training skips it as too short to align a transcript with.

The command runs in-process (`toolkit.cli.main`, stderr captured by pytest; log records go to `caplog`), plus
one real process to check what a shell sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from toolkit.bundle import load_model, save_model
from toolkit.cli import main
from toolkit.config import load_config
from toolkit.data import read_captions, read_coco, read_jsonl, read_karpathy
from toolkit.data.audio import AudioLoadError, load_audio
from toolkit.data.images import ImageLoadError, load_image
from toolkit.data.speech import check_speech_records, read_jsonl_manifest, read_kaldi_dir, read_librispeech
from toolkit.errors import BundleError, ConfigError, ToolkitError
from toolkit.model import build_model
from toolkit.pipelines import Transcriber
from toolkit.tasks.asr import AsrExperiment
from toolkit.text import train_tokenizer
from toolkit.train.distributed import resolve_device

SR = 16000
SHORTEST = 1360  # samples: n_fft 400 + 6 hops of 160, the shortest input that gives one Conformer frame
WORDS = ["ab", "ba", "abc", "cab", "bca"]


# ------------------------------------------------------------------------------------------------- helpers


def toolkit(capsys, *args) -> tuple[int, str, str]:
    """Run `toolkit ARGS` in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def error_line(rc: int, err: str, *parts) -> str:
    """The command failed with status 2 and ONE stderr line (tqdm progress aside) holding every part."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, lines
    assert re.match(r"toolkit \w+: error: \S", lines[0]), lines[0]
    for part in parts:
        assert str(part) in lines[0], f"{part!r} not in {lines[0]!r}"
    return lines[0]


def one_line(excinfo, *parts) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"
    return message


def tone(seconds: float, rate: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    x = (0.5 * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * rate))) / rate)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def peak_hz(x: np.ndarray, rate: int = SR) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x))


def write_video_only(path: Path) -> Path:
    """An mp4 with a video stream and no audio stream."""
    import av
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def rewrite_checksums(bundle: Path) -> None:
    meta = json.loads((bundle / "config.json").read_text())
    for name in meta["files"]:
        meta["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "config.json").write_text(json.dumps(meta))


def edit_config(bundle: Path, edit) -> None:
    meta = json.loads((bundle / "config.json").read_text())
    edit(meta)
    (bundle / "config.json").write_text(json.dumps(meta))


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> SimpleNamespace:
    """A tiny speech recogniser (char tokenizer, CTC + attention) and a tiny captioner, saved as bundles."""
    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    tok = train_tokenizer("char", WORDS)
    asr = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "ctc": True,
                       "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "n_mels": 20},
                       "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 64}})
    save_model(root / "asr", asr.eval(), tok,
               info={"task": "asr", "decoding": {"ctc_weight": 0.3, "max_length_ratio": 1.0}})
    ctok = train_tokenizer("word", ["a red circle", "a blue square"])
    cap = build_model({"vocab_size": ctok.vocab_size, "d_model": 32,
                       "encoder": {"name": "timm", "backbone": "test_resnet"},
                       "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 24}})
    save_model(root / "caption", cap.eval(), ctok, info={"task": "caption", "image_size": 32})
    return SimpleNamespace(asr=root / "asr", caption=root / "caption")


# ------------------------------------------------------------------------------------------- audio files


def bad_audio(tmp: Path) -> list[tuple[Path, str]]:
    """(file, words of the reason) for every kind of audio that cannot be used."""
    cases = [(tmp / "missing.wav", "file not found")]
    (tmp / "empty.wav").write_bytes(b"")
    cases.append((tmp / "empty.wav", "empty file (0 bytes)"))
    sf.write(tmp / "zero.wav", np.zeros(0, np.float32), SR)
    cases.append((tmp / "zero.wav", "no audio samples"))
    sf.write(tmp / "full.wav", tone(1.0), SR)
    sf.write(tmp / "full.flac", tone(1.0), SR)
    for name in ("full.wav", "full.flac"):
        data = (tmp / name).read_bytes()
        (tmp / f"cut_{name}").write_bytes(data[: len(data) // 2])
        cases.append((tmp / f"cut_{name}", "truncated"))
    (tmp / "notes.wav").write_text("no samples in here\n" * 40)
    cases.append((tmp / "notes.wav", "not audio"))
    Image.new("RGB", (16, 16)).save(tmp / "picture.mp3", format="PNG")
    cases.append((tmp / "picture.mp3", "not audio"))
    for name, value in (("nan.wav", np.nan), ("inf.wav", -np.inf)):
        x = tone(0.5)
        x[123] = value
        sf.write(tmp / name, x, SR, subtype="FLOAT")
        cases.append((tmp / name, "1 of 8000 samples are NaN or infinite"))
    cases.append((write_video_only(tmp / "silent_film.mp4"), "no audio track"))
    return cases


def test_unusable_audio_is_one_line_error_everywhere(tmp_path, bundles, capsys):
    transcriber = Transcriber.from_pretrained(bundles.asr)
    for path, reason in bad_audio(tmp_path):
        with pytest.raises(AudioLoadError) as e:
            load_audio(path)
        one_line(e, path, "cannot load audio", reason)
        with pytest.raises(ToolkitError) as e:
            transcriber.transcribe([tmp_path / "full.wav", path])
        one_line(e, path, reason)
        rc, out, err = toolkit(capsys, "transcribe", tmp_path / "full.wav", path, "--model", bundles.asr)
        error_line(rc, err, path, reason)
        assert out == ""  # nothing is decoded before every file has loaded


@pytest.mark.parametrize(
    "name, rate, channels, fmt",
    [
        ("tel_8k.wav", 8000, 1, "WAV"),
        ("studio_96k.wav", 96000, 2, "WAV"),
        ("surround_6ch.wav", 48000, 6, "WAV"),
        ("flac_named.wav", 22050, 1, "FLAC"),        # wrong extension: libsndfile reads the content
        ("wav_named.mp4", 16000, 2, "WAV"),          # a container extension: FFmpeg reads the WAV
        ("wav_named.txt", 44100, 1, "WAV"),
    ],
)
def test_unusual_but_valid_audio_just_works(tmp_path, bundles, capsys, name, rate, channels, fmt):
    path = tmp_path / name
    sf.write(path, tone(0.6, rate, freq=1000.0, channels=channels), rate, format=fmt)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1  # mono
    assert abs(len(wave) - 0.6 * SR) <= 1  # 16 kHz, the right duration
    assert abs(peak_hz(wave) - 1000.0) <= 2 * SR / len(wave)
    rc, out, err = toolkit(capsys, "transcribe", path, "--model", bundles.asr, "--beam", 2)
    assert rc == 0, err
    assert out.startswith(f"{path}\t") and out.count("\n") == 1


def test_one_sample_audio_gets_an_empty_transcript(tmp_path, bundles, capsys, caplog):
    sf.write(tmp_path / "one.wav", tone(1.0)[:1], SR)
    sf.write(tmp_path / "just_enough.wav", tone(1.0)[:SHORTEST], SR)
    sf.write(tmp_path / "normal.wav", tone(1.0), SR)
    assert load_audio(tmp_path / "one.wav").shape == (1,)  # the file itself is fine
    transcriber = Transcriber.from_pretrained(bundles.asr)
    assert transcriber.model.encoder.min_input_samples == SHORTEST
    with caplog.at_level(logging.WARNING):
        results = transcriber.transcribe([tmp_path / "normal.wav", tmp_path / "one.wav", np.zeros(5, np.float32),
                                          tmp_path / "just_enough.wav"], beam_size=2)
    assert [(r.text, r.tokens, r.score) for r in results[1:3]] == [("", [], 0.0), ("", [], 0.0)]
    assert [r.source for r in results] == [str(tmp_path / n) for n in ("normal.wav", "one.wav")] + [
        None, str(tmp_path / "just_enough.wav")]
    warning = next(r.getMessage() for r in caplog.records if "shorter than" in r.getMessage())
    assert "2 inputs are shorter than the model's shortest input (0.085 s)" in warning
    assert "one.wav" in warning and "audio[2]" in warning and "just_enough" not in warning
    for flags in ([], ["--ctc-only"]):
        rc, out, err = toolkit(capsys, "transcribe", tmp_path / "one.wav", "--model", bundles.asr, *flags)
        assert rc == 0 and out == f"{tmp_path / 'one.wav'}\t\n", err
    # Evaluation scores the empty transcript (a deletion per word), like any other utterance ...
    manifest = write_jsonl(tmp_path / "test.jsonl", [{"id": "one", "audio": "one.wav", "text": "ab ba"},
                                                     {"id": "normal", "audio": "normal.wav", "text": "cab"}])
    rc, out, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", manifest, "--out",
                           tmp_path / "scores.json")
    assert rc == 0, err
    rows = {r["id"]: r for r in json.loads((tmp_path / "scores.json").read_text())["utterances"]}
    assert rows["one"]["hypothesis"] == "" and set(rows) == {"one", "normal"}
    # ... and training skips it: no encoder frame to align "ab ba" with.
    good, report = check_speech_records(read_jsonl_manifest(manifest), min_duration=SHORTEST / SR)
    assert [r.id for r in good] == ["normal"] and report.examples["too_short"] == ["one (6.25e-05 s)"]


def test_transcriber_refuses_ctc_decoding_without_a_ctc_head():
    tok = train_tokenizer("char", WORDS)
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 32,
                         "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64,
                                     "n_mels": 20},
                         "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64}})
    transcriber = Transcriber(model, tok)
    for kwargs in ({"ctc_only": True}, {"ctc_weight": 0.5}):
        with pytest.raises(ToolkitError, match="no CTC head"):
            transcriber.transcribe([tone(0.5)], **kwargs)
    assert len(transcriber.transcribe([tone(0.5)], beam_size=1)) == 1
    with pytest.raises(ValueError, match=r"audio\[0\]: the waveform holds NaN"):
        transcriber.transcribe([np.full(2000, np.nan, np.float32)])


def test_transcriber_refuses_a_model_of_another_sample_rate():
    tok = train_tokenizer("char", WORDS)
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "ctc": True, "decoder": None,
                         "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64,
                                     "n_mels": 20, "sample_rate": 8000}})
    with pytest.raises(ToolkitError, match="takes 8000 Hz audio; transcription reads audio and detects speech at "
                                           "16000 Hz"):
        Transcriber(model, tok)


def test_bad_command_line_values_are_refused_by_argparse(bundles, capsys):
    for args in (["--beam", "0"], ["--batch-size", "-1"], ["--ctc-weight", "1.5"], ["--ctc-weight", "nan"]):
        with pytest.raises(SystemExit) as e:
            main(["transcribe", "a.wav", "--model", str(bundles.asr), *args])
        assert e.value.code == 2
        assert f"argument {args[0]}: expected" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_device_this_machine_lacks_is_a_one_line_error(tmp_path, bundles, capsys):
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    rc, out, err = toolkit(capsys, "transcribe", tmp_path / "a.wav", "--model", bundles.asr, "--device", "cpu")
    assert rc == 0 and out.startswith(str(tmp_path / "a.wav")), err
    for device, part in (("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                         ("tpu", "not a device"), ("meta", "not supported")):
        for command in (["transcribe", tmp_path / "a.wav"], ["caption", tmp_path / "a.png"],
                        ["subtitle", tmp_path / "a.wav", "-o", tmp_path / "a.srt"]):
            model = bundles.caption if command[0] == "caption" else bundles.asr
            rc, _, err = toolkit(capsys, *command, "--model", model, "--device", device)
            error_line(rc, err, f"--device {device}", part)
    assert resolve_device("auto") == torch.device("cpu")


def test_outputs_that_cannot_be_written_are_one_line_errors(tmp_path, bundles, capsys):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    write_jsonl(tmp_path / "test.jsonl", [{"audio": "a.wav", "text": "ab"}])
    (tmp_path / "folder").mkdir()
    rc, _, err = toolkit(capsys, "caption", tmp_path / "a.png", "--model", bundles.caption, "--report",
                         tmp_path / "folder")
    error_line(rc, err, f"{tmp_path / 'folder'}: Is a directory")
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", tmp_path / "test.jsonl", "--out",
                         tmp_path / "folder")
    error_line(rc, err, f"{tmp_path / 'folder'}: Is a directory")


# ------------------------------------------------------------------------------------------- image files


def bad_images(tmp: Path) -> list[tuple[Path, str]]:
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp / "full.png")
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp / "full.jpg", quality=95)
    cases = []
    for name in ("full.png", "full.jpg"):
        data = (tmp / name).read_bytes()
        (tmp / f"cut_{name}").write_bytes(data[: len(data) // 2])
        cases.append((tmp / f"cut_{name}", "truncated"))
    (tmp / "empty.png").write_bytes(b"")
    cases.append((tmp / "empty.png", "empty file (0 bytes)"))
    (tmp / "notes.png").write_text("not pixels\n" * 10)
    cases.append((tmp / "notes.png", "not an image"))
    sf.write(tmp / "sound.jpg", tone(0.1), SR, format="WAV")
    cases.append((tmp / "sound.jpg", "not an image"))
    Image.new("LAB", (4, 4)).save(tmp / "lab.tiff")
    cases.append((tmp / "lab.tiff", "unsupported image mode 'LAB'"))
    return cases


def test_unusable_images_are_one_line_errors(tmp_path, bundles, capsys):
    for path, reason in bad_images(tmp_path):
        with pytest.raises(ImageLoadError) as e:
            load_image(path)
        one_line(e, path, "cannot load image", reason)
        rc, out, err = toolkit(capsys, "caption", tmp_path / "full.png", path, "--model", bundles.caption)
        error_line(rc, err, path, reason)
    rc, _, err = toolkit(capsys, "caption", tmp_path / "gone.png", "--model", bundles.caption)
    error_line(rc, err, "gone.png", "not found")


def test_images_under_a_wrong_extension_still_caption(tmp_path, bundles, capsys):
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "png_named.jpg", format="PNG")
    Image.new("L", (40, 30), 90).save(tmp_path / "jpeg_named.txt", format="JPEG")
    for name in ("png_named.jpg", "jpeg_named.txt"):
        assert load_image(tmp_path / name).size == (40, 30)
    rc, out, err = toolkit(capsys, "caption", tmp_path / "png_named.jpg", tmp_path / "jpeg_named.txt", "--json",
                           "--model", bundles.caption)
    assert rc == 0, err
    assert [row["image"] for row in json.loads(out)] == [str(tmp_path / "png_named.jpg"),
                                                        str(tmp_path / "jpeg_named.txt")]


# --------------------------------------------------------------------------------------- speech corpora

GOOD_LINE = '{"audio": "a.wav", "text": "ab"}'
BAD_SPEECH_JSONL = {
    "broken JSON": ([GOOD_LINE, '{"audio": "a.wav", "text": '], ":2:", "not valid JSON"),
    "missing text": ([GOOD_LINE, '{"audio": "a.wav"}'], ":2:", "text: missing"),
    "missing audio": (['{"text": "ab"}'], ":1:", "audio: missing"),
    "wrong type": ([GOOD_LINE.replace('"ab"', '["ab"]')], ":1:", "text: must be a string, got a list"),
    "negative duration": (['{"audio": "a.wav", "text": "ab", "duration": -2}'], ":1:", "duration: must be"),
    "endless segment": (['{"audio": "a.wav", "text": "ab", "offset": 1e308, "duration": 1e308}'], ":1:",
                        "offset + duration: 1e+308 + 1e+308 s is not a finite number"),
    "not an object": (['"a.wav ab"'], ":1:", "expected a JSON object"),
    "5000-digit number": (['{"audio": "a.wav", "text": "ab", "duration": ' + "7" * 5000 + "}"], ":1:",
                          "not valid JSON (Exceeds the limit (4300 digits)"),
    "nested 100000 deep": (["[" * 100_000 + "]" * 100_000], ":1:", "not valid JSON (nested too deeply)"),
    "non-UTF-8": ([GOOD_LINE, b'{"audio": "a.wav", "text": "caf\xe9"}'], ":2:", "not UTF-8 (byte 0xe9"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPEECH_JSONL))
def test_broken_speech_manifest_is_one_line_error(tmp_path, bundles, capsys, case):
    lines, where, reason = BAD_SPEECH_JSONL[case]
    manifest = tmp_path / "test.jsonl"
    manifest.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    sf.write(tmp_path / "a.wav", tone(0.3), SR)
    with pytest.raises(ToolkitError) as e:
        read_jsonl_manifest(manifest)
    one_line(e, f"{manifest}{where}", reason)
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", manifest)
    error_line(rc, err, f"{manifest}{where}", reason)


def kaldi_dir(tmp: Path) -> Path:
    data = tmp / "kaldi"
    data.mkdir()
    sf.write(data / "r1.wav", tone(1.0), SR)
    (data / "wav.scp").write_text("r1 r1.wav\n")
    (data / "text").write_text("r1 ab ba\n")
    return data


@pytest.mark.parametrize(
    "name, content, parts",
    [
        ("wav.scp", "r1 r1.wav\nr2\n", ["wav.scp:2", "expected 'utt path'"]),
        ("wav.scp", "r1 sox r1.wav -t wav - |\n", ["wav.scp:1", "piped commands"]),
        ("text", b"r1 ab\nr2 caf\xe9\n", ["text:2", "not UTF-8"]),
        ("segments", "s1 r1 0.0 0.5\ns2 r1 zero 1.0\n", ["segments:2", "start: not a number"]),
        ("segments", "s1 r1 0.8 0.2\n", ["segments:1", "bad times"]),
        ("utt2dur", "r1 inf\n", ["utt2dur:1", "duration: not a finite number"]),
        ("utt2dur", "r1 -1.5\n", ["utt2dur:1", "duration: must be > 0 seconds"]),
        ("utt2spk", "r1 spk1\nr1 spk2\n", ["utt2spk:2", "already listed at line 1"]),
    ],
)
def test_broken_kaldi_dir_is_one_line_error(tmp_path, bundles, capsys, name, content, parts):
    data = kaldi_dir(tmp_path)
    (data / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ToolkitError) as e:
        read_kaldi_dir(data)
    one_line(e, data, *parts)
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", data)
    error_line(rc, err, data, *parts)


def test_missing_kaldi_text_and_broken_librispeech(tmp_path, bundles, capsys):
    data = kaldi_dir(tmp_path)
    (data / "text").unlink()
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", data)
    error_line(rc, err, data / "text", "not found")
    subset = tmp_path / "LibriSpeech" / "dev-clean"
    chapter = subset / "84" / "121"
    chapter.mkdir(parents=True)
    sf.write(chapter / "84-121-0000.flac", tone(0.5), SR)
    trans = chapter / "84-121.trans.txt"
    for content, parts in ((b"84-121-0000 AB\n19-198-0001 BA\n", [f"{trans}:2", "does not start with '84-121-'"]),
                           (b"84-121-0000 AB\n84-121-0000 BA\n", [f"{trans}:2", "'84-121-0000' already used at "
                                                                   f"{trans}:1"]),
                           (b"84-121-0000 \xff\n", [f"{trans}:1", "not UTF-8"])):
        trans.write_bytes(content)
        with pytest.raises(ToolkitError) as e:
            read_librispeech(subset)
        one_line(e, *parts)
        rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", subset)
        error_line(rc, err, *parts)


def test_speech_manifest_with_missing_or_broken_audio(tmp_path, bundles, capsys, caplog):
    sf.write(tmp_path / "ok.wav", tone(0.8), SR)
    x = tone(0.8)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    only_missing = write_jsonl(tmp_path / "gone.jsonl", [{"id": "u1", "audio": "gone.wav", "text": "ab"}])
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", only_missing)
    error_line(rc, err, only_missing, "no usable utterance in the evaluation set", "1 missing audio: u1",
               tmp_path / "gone.wav")
    only_nan = write_jsonl(tmp_path / "nan.jsonl", [{"id": "u1", "audio": "nan.wav", "text": "ab"}])
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", only_nan)
    error_line(rc, err, only_nan, "none of the 1 utterances can be decoded", tmp_path / "nan.wav", "NaN")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", tmp_path / "empty.jsonl")
    error_line(rc, err, "empty.jsonl", "holds no utterances")
    # A few bad items: the rest is scored, the bad ones are named and never scored as deletions.
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"id": "good", "audio": "ok.wav", "text": "ab"},
                                                   {"id": "lost", "audio": "gone.wav", "text": "ba"},
                                                   {"id": "nan", "audio": "nan.wav", "text": "cab"}])
    with caplog.at_level(logging.WARNING):
        rc, out, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", mixed, "--out",
                               tmp_path / "scores.json")
    assert rc == 0, err
    assert [r["id"] for r in json.loads((tmp_path / "scores.json").read_text())["utterances"]] == ["good"]
    assert "1 utterances" in out  # the WER table counts the scored utterance only
    log = caplog.text
    assert f"{mixed}: skipped 1 of 3 utterances: 1 missing audio: lost" in log
    assert f"{mixed}: 1 of 2 utterances could not be decoded and are not scored: nan ({tmp_path / 'nan.wav'})" in log


# -------------------------------------------------------------------------------------- caption corpora

COCO_OK = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "caption": "a red circle"}]}
BAD_CAPTION_FILES = {
    "coco missing caption": ("c.json", {**COCO_OK, "annotations": [{"image_id": 1}]},
                             ["annotations[0].caption", "missing"]),
    "coco unknown image id": ("c.json", {**COCO_OK, "annotations": [{"image_id": 7, "caption": "x"}]},
                              ["annotations[0].image_id", "7"]),
    "coco wrong type": ("c.json", {**COCO_OK, "images": [{"id": 1, "file_name": ["a.png"]}]},
                        ["images[0].file_name", "must be a string"]),
    "karpathy missing raw": ("k.json", {"images": [{"filename": "a.png", "sentences": [{"tokens": ["x"]}]}]},
                             ["images[0].sentences[0].raw", "missing"]),
    "broken JSON": ("b.json", '{"images": [\n {"id": 1,,}]}', ["line 2", "not valid JSON"]),
    "non-UTF-8 JSON": ("u.json", b'{"images": [], "annotations": [{"caption": "caf\xe9"}]}', ["not UTF-8"]),
    "deep JSON": ("d.json", "[" * 100_000 + "]" * 100_000, ["not valid JSON (nested too deeply)"]),
    "jsonl broken line": ("j.jsonl", '{"image": "a.png", "captions": ["x"]}\n{"image": \n', [":2:", "not valid JSON"]),
    "jsonl missing captions": ("j.jsonl", '{"image": "a.png"}\n', [":1:", "captions: missing"]),
    "jsonl caption type": ("j.jsonl", '{"image": "a.png", "captions": ["x", 3]}\n', [":1:", "captions[1]"]),
    "jsonl non-UTF-8": ("j.jsonl", b'{"image": "a.png", "captions": ["x"]}\n{"image": "\xff"}\n', [":2:", "UTF-8"]),
    "neither format": ("n.json", {"images": [{"path": "a.png"}]}, ["neither COCO", "nor Karpathy"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CAPTION_FILES))
def test_broken_caption_file_is_one_line_error(tmp_path, bundles, capsys, case):
    name, content, parts = BAD_CAPTION_FILES[case]
    path = tmp_path / name
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    reader = {"c.json": read_coco, "k.json": read_karpathy, "j.jsonl": read_jsonl}.get(name, read_captions)
    with pytest.raises(ToolkitError) as e:
        reader(path)
    one_line(e, path, *parts)
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.caption, "--data", path, "--no-meteor")
    error_line(rc, err, path, *parts)


def test_caption_file_with_missing_or_broken_images(tmp_path, bundles, capsys, caplog):
    Image.new("RGB", (20, 20), (200, 0, 0)).save(tmp_path / "ok.png")
    (tmp_path / "notes.png").write_text("text\n")
    rows = [{"image": "gone.png", "captions": ["a red circle"]}, {"image": "notes.png", "captions": ["a circle"]}]
    all_bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.caption, "--data", all_bad, "--no-meteor")
    error_line(rc, err, all_bad, "no readable image in the evaluation set", tmp_path / "gone.png", "not found",
               tmp_path / "notes.png", "not an image")
    # A JPEG cut in its pixel data passes the header check, and fails only when decoded.
    Image.effect_noise((64, 64), 60).convert("RGB").save(tmp_path / "noise.jpg")
    data = (tmp_path / "noise.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    cut = write_jsonl(tmp_path / "cut.jsonl", [{"image": "cut.jpg", "captions": ["noise"]}])
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.caption, "--data", cut, "--no-meteor")
    error_line(rc, err, cut, "none of the 1 images can be decoded", tmp_path / "cut.jpg", "truncated")
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"image": "ok.png", "captions": ["a red circle"]}, *rows,
                                                   {"image": "cut.jpg", "captions": ["noise"]}])
    with caplog.at_level(logging.WARNING):
        rc, out, err = toolkit(capsys, "evaluate", "--model", bundles.caption, "--data", mixed, "--no-meteor",
                               "--out", tmp_path / "scores.json")
    assert rc == 0, err
    assert [r["image"] for r in json.loads((tmp_path / "scores.json").read_text())["predictions"]] == [
        str(tmp_path / "ok.png")]
    assert f"{mixed}: 2 of 4 images cannot be read and are skipped" in caplog.text
    assert f"{mixed}: 1 of 2 images could not be decoded and are not scored: {tmp_path / 'cut.jpg'}" in caplog.text


# ------------------------------------------------------------------------------------------------ configs

ASR_BASE = "task: asr\ndata: {train: t.jsonl, valid: v.jsonl}\ntrain: {max_steps: 2}\n"
BAD_CONFIGS = {
    "unknown key": (ASR_BASE + "bogus: 1\n", ["unknown key 'bogus' for AsrExperiment"]),
    "unknown nested key": (ASR_BASE.replace("max_steps: 2", "max_steps: 2, lr_max: 3"),
                           [".train: unknown key 'lr_max' for TrainConfig"]),
    "unknown encoder key": (ASR_BASE + "model: {encoder: {name: conformer, layers: 3}}\n",
                            [".model.encoder: unknown key 'layers' for ConformerEncoder.Config"]),
    "unknown numeric key": (ASR_BASE + "1: one\nbogus: 2\n", ["unknown key 1 for AsrExperiment"]),
    "wrong type": (ASR_BASE.replace("max_steps: 2", "max_steps: two"), [".train.max_steps: expected an integer"]),
    "wrong nested type": (ASR_BASE + "model: {d_model: 3.5}\n", [".model.d_model: expected an integer, got 3.5"]),
    "invalid value": (ASR_BASE + "model: {decoder: {dropout: 1.5}}\n", [".model", "decoder.dropout must be in"]),
    "renamed key": (ASR_BASE + "ctc_weight: 0.5\n", ["key 'ctc_weight' of AsrExperiment is now called "
                                                      "'ctc_loss_weight': rename it"]),
    "NaN": (ASR_BASE + "ctc_loss_weight: .nan\n", [".ctc_loss_weight: expected a number, got nan"]),
    "400-digit number": (ASR_BASE + "label_smoothing: " + "9" * 400 + "\n",
                         [".label_smoothing: expected a number, got an integer of 400 digits"]),
    "invalid YAML": ("task: asr\ndata: [1\n", [":3: invalid YAML"]),
    "not a mapping": ("- task\n- asr\n", ["the top level must be a mapping, got list"]),
    "non-UTF-8": (b"task: asr\n# caf\xe9\n", [":2: not UTF-8 (byte 0xe9)"]),
    "alias cycle": ("a: &x [*x]\n", ["invalid YAML (nested too deeply, or an alias that refers to itself)"]),
    "python tag": (ASR_BASE + "x: !!python/object/apply:os.system [echo]\n", [":4: invalid YAML"]),
    "unknown task": (ASR_BASE.replace("task: asr", "task: tts"), ["task 'tts' is not known"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_error(tmp_path, capsys, case):
    text, parts = BAD_CONFIGS[case]
    config = tmp_path / "conf.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    if case != "unknown task":
        with pytest.raises(ConfigError) as e:
            load_config(AsrExperiment, config)
        one_line(e, config, *parts)
    rc, _, err = toolkit(capsys, "train", config, "-o", tmp_path / "exp")
    error_line(rc, err, config, *parts)
    assert not (tmp_path / "exp").exists()


def test_bad_overrides_and_config_paths(tmp_path, capsys):
    config = tmp_path / "conf.yaml"
    config.write_text(ASR_BASE)
    for override, parts in (("train.max_steps=[1", ["override 'train.max_steps=[1'", "not valid YAML"]),
                            ("train.lr=fast", [f"{config}.train.lr: expected a number, got 'fast'"]),
                            ("data.max_duration=" + "9" * 5000, ["not valid YAML"]),
                            ("task.x=1", ["override 'task.x=1'", "'task' is not a mapping"])):
        rc, _, err = toolkit(capsys, "train", config, "-o", tmp_path / "exp", override)
        error_line(rc, err, *parts)
    rc, _, err = toolkit(capsys, "train", tmp_path / "none.yaml", "-o", tmp_path / "exp")
    error_line(rc, err, tmp_path / "none.yaml", "config file not found")
    rc, _, err = toolkit(capsys, "train", tmp_path, "-o", tmp_path / "exp")
    error_line(rc, err, tmp_path, "is a directory, not a config file")


# ------------------------------------------------------------------------------------------------ bundles


def damaged_bundles(src: Path, tmp: Path) -> list[tuple[Path, list[str]]]:
    """(bundle, parts of the error) for a bundle damaged in every way a copy or an edit can damage it."""
    cases = []

    def copy(name: str) -> Path:
        path = tmp / name
        shutil.copytree(src, path)
        return path

    b = copy("no_weights")
    (b / "model.safetensors").unlink()
    cases.append((b, [b / "model.safetensors", "missing from the bundle"]))
    b = copy("no_tokenizer")
    (b / "tokenizer.json").unlink()
    cases.append((b, [b / "tokenizer.json", "missing from the bundle"]))
    b = copy("no_config")
    (b / "config.json").unlink()
    cases.append((b, [b / "config.json", "missing", "not a model bundle"]))
    b = copy("flipped_byte")
    data = bytearray((b / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (b / "model.safetensors").write_bytes(bytes(data))
    cases.append((b, [b / "model.safetensors", "checksum mismatch"]))
    b = copy("not_safetensors")
    (b / "model.safetensors").write_text("weights")
    rewrite_checksums(b)
    cases.append((b, [b / "model.safetensors", "not a readable safetensors file"]))
    b = copy("other_vocabulary")
    train_tokenizer("char", ["xyz only"]).save(b)
    rewrite_checksums(b)
    cases.append((b, [b, "vocabulary mismatch"]))
    b = copy("other_architecture")
    edit_config(b, lambda m: m["model"]["decoder"].update(ffn_dim=48))
    cases.append((b, [b / "model.safetensors", "weights do not match the model config", "another shape"]))
    b = copy("unknown_model_key")
    edit_config(b, lambda m: m["model"]["decoder"].update(layers=2))
    cases.append((b, [b / "config.json", "model.decoder: unknown key 'layers'"]))
    b = copy("future_format")
    edit_config(b, lambda m: m.update(format_version=9))
    cases.append((b, [b / "config.json", "bundle format version 9"]))
    b = copy("broken_json")
    (b / "config.json").write_text('{"format": "toolkit-model",\n "files": }')
    cases.append((b, [b / "config.json", "not valid JSON (line 2"]))
    b = copy("info_not_object")
    edit_config(b, lambda m: m.update(info=["task", "asr"]))
    cases.append((b, [b / "config.json", "info: must be an object, got list"]))
    b = copy("info_bad_decoding")
    edit_config(b, lambda m: m["info"].update(decoding={"ctc_weight": "high"}))
    cases.append((b, [b / "config.json", "info.decoding.ctc_weight: must be a number in [0, 1], got 'high'"]))
    b = copy("file_outside")
    edit_config(b, lambda m: m["files"].update({"../escape.bin": "0" * 64}))
    cases.append((b, [b / "config.json", "files: '../escape.bin' is not the name of a file in the bundle"]))
    cases.append((tmp / "nowhere", [tmp / "nowhere", "model bundle directory not found"]))
    return cases


def test_damaged_bundles_are_one_line_errors(tmp_path, bundles, capsys):
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    for bundle, parts in damaged_bundles(bundles.asr, tmp_path):
        with pytest.raises(BundleError) as e:
            load_model(bundle)
        one_line(e, *parts)
        for args in (["info", bundle], ["transcribe", tmp_path / "a.wav", "--model", bundle],
                     ["evaluate", "--model", bundle, "--data", tmp_path / "test.jsonl"]):
            rc, out, err = toolkit(capsys, *args)
            error_line(rc, err, *parts)
            assert out == ""


def test_a_model_for_the_other_task_is_refused(tmp_path, bundles, capsys):
    sf.write(tmp_path / "a.wav", tone(0.5), SR)
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    rc, _, err = toolkit(capsys, "transcribe", tmp_path / "a.wav", "--model", bundles.caption)
    error_line(rc, err, bundles.caption, "a 'caption' model, not a speech recognition model")
    rc, _, err = toolkit(capsys, "caption", tmp_path / "a.png", "--model", bundles.asr)
    error_line(rc, err, bundles.asr, "a model for task 'asr', not an image captioner")
    write_jsonl(tmp_path / "c.jsonl", [{"image": "a.png", "captions": ["a red circle"]}])
    rc, _, err = toolkit(capsys, "evaluate", "--model", bundles.asr, "--data", tmp_path / "c.jsonl")
    error_line(rc, err, tmp_path / "c.jsonl:1:", "audio: missing")  # read as a speech manifest


# ---------------------------------------------------------------------------------- training on bad items

ASR_CONFIG = """\
task: asr
data: {{train: {train}, valid: {valid}, max_duration: 2.0, max_batch_seconds: 8.0, num_workers: 0,
        valid_max_utterances: 4, cmvn_utterances: 50}}
tokenizer: {{kind: char, min_count: 2}}
model:
  d_model: 32
  encoder: {{name: conformer, num_layers: 1, num_heads: 2, ffn_dim: 64, n_mels: 20}}
  decoder: {{num_layers: 1, num_heads: 2, ffn_dim: 64, max_len: 64}}
  ctc: true
train: {{max_steps: 2, valid_every: 2, warmup_steps: 1, log_every: 1, metric: wer, metric_mode: min}}
decoding: {{max_length: 32, max_length_ratio: 1.0}}
"""


def test_asr_training_skips_and_reports_bad_utterances(tmp_path, capsys, caplog):
    rows = []
    for i in range(6):
        sf.write(tmp_path / f"good{i}.wav", tone(0.4 + 0.05 * i, freq=300 + 60 * i), SR)
        rows.append({"id": f"good{i}", "audio": f"good{i}.wav", "text": f"{WORDS[i % 5]} {WORDS[(i + 2) % 5]}"})
    x = tone(0.5)
    x[77] = np.nan
    sf.write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    sf.write(tmp_path / "long.wav", tone(3.0), SR)
    sf.write(tmp_path / "one.wav", tone(0.1)[:1], SR)
    for name in ("cut.wav", "cut.flac"):
        sf.write(tmp_path / name, tone(1.0), SR)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    bad = [("lost", "gone.wav", "ab"), ("nan", "nan.wav", "ba"), ("cutwav", "cut.wav", "abc"),
           ("cutflac", "cut.flac", "cab"), ("long", "long.wav", "ab ba"), ("tiny", "one.wav", "ab"),
           ("oov", "good0.wav", "ab ñ")]
    rows += [{"id": uid, "audio": audio, "text": text} for uid, audio, text in bad]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[:2])
    config = tmp_path / "asr.yaml"
    config.write_text(ASR_CONFIG.format(train=train, valid=valid))
    with caplog.at_level(logging.WARNING):
        rc, out, err = toolkit(capsys, "train", config, "-o", tmp_path / "exp")
    assert rc == 0, err
    assert "trained 2 steps" in out and (tmp_path / "exp/final/model.safetensors").is_file()
    log = caplog.text
    assert (f"{train}: skipped 3 of 13 utterances: 1 missing audio: lost ({tmp_path / 'gone.wav'}); "
            "1 unreadable audio: cutwav (truncated") in log
    assert "1 longer than max_duration (2 s): long (3.0 s)" in log
    assert (f"{train}: skipped 2 of 10 utterances: 1 shorter than min_duration (0.085 s): tiny (6.25e-05 s); "
            "1 with characters outside the charset: oov ('ñ')") in log
    # Found only when decoded (the headers are fine): named, with the reason, when first met.
    assert f"{tmp_path / 'nan.wav'}: cannot load audio: 1 of 8000 samples are NaN or infinite" in log
    assert f"{tmp_path / 'cut.flac'}: cannot load audio: truncated or corrupt" in log


CAPTION_CONFIG = """\
task: caption
data: {{train: {train}, valid: {valid}, image_size: 32, batch_size: 4, num_workers: 0, max_tokens: 16,
        valid_max_images: 4}}
tokenizer: {{kind: word, min_count: 1}}
model:
  d_model: 32
  encoder: {{name: timm, backbone: test_resnet}}
  decoder: {{num_layers: 1, num_heads: 2, ffn_dim: 64, max_len: 20}}
train: {{max_steps: 2, valid_every: 2, warmup_steps: 1, log_every: 1, metric: exact_match, metric_mode: max}}
decoding: {{max_length: 16}}
"""


def test_caption_training_skips_and_reports_bad_images(tmp_path, capsys, caplog):
    colours = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}
    rows = []
    for i, (name, rgb) in enumerate(colours.items()):
        for j in range(2):
            Image.new("RGB", (40, 40), rgb).save(tmp_path / f"{name}{j}.png")
            rows.append({"image": f"{name}{j}.png", "captions": [f"a {name} square", f"{name}"]})
    for name in ("cut.png", "cut.jpg"):
        Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image\n")
    rows += [{"image": name, "captions": ["a grey square"]} for name in ("cut.png", "cut.jpg", "notes.png", "gone.png")]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[:2])
    config = tmp_path / "caption.yaml"
    config.write_text(CAPTION_CONFIG.format(train=train, valid=valid))
    with caplog.at_level(logging.WARNING):
        rc, out, err = toolkit(capsys, "train", config, "-o", tmp_path / "exp")
    assert rc == 0, err
    assert "trained 2 steps" in out and (tmp_path / "exp/final/model.safetensors").is_file()
    summary = next(r.getMessage() for r in caplog.records if "cannot be read and are skipped" in r.getMessage())
    assert summary.startswith(f"{train}: ")
    for name in ("cut.png", "notes.png", "gone.png"):
        assert str(tmp_path / name) in summary
    # A JPEG cut in its pixel data passes the header check: it is named when its pixels are decoded.
    if "cut.jpg" not in summary:
        assert f"{tmp_path / 'cut.jpg'}: cannot load image: truncated" in caplog.text
    assert re.search(r"[34] of 10 images cannot be read", summary)


# ----------------------------------------------------------------------------------------- a real process


def test_the_shell_sees_one_line_and_status_2(tmp_path, bundles):
    """What `toolkit` prints in a real process (logging configured by the command itself): nothing but the
    error line on stderr, nothing on stdout, exit status 2."""
    x = tone(0.5)
    x[1] = np.inf
    sf.write(tmp_path / "inf.wav", x, SR, subtype="FLOAT")
    (tmp_path / "conf.yaml").write_text(ASR_BASE + "model: {encoder: {name: conformer, layers: 3}}\n")
    for args, parts in (
        (["transcribe", tmp_path / "inf.wav", "--model", bundles.asr], [tmp_path / "inf.wav", "NaN or infinite"]),
        (["train", tmp_path / "conf.yaml", "-o", tmp_path / "exp"], [tmp_path / "conf.yaml", "unknown key 'layers'"]),
    ):
        r = subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True)
        assert r.stdout == ""
        error_line(r.returncode, r.stderr, *parts)
