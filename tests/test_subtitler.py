"""Subtitler: VAD -> chunks -> decode -> aligned words snapped to speech -> cues; `toolkit subtitle` and --mux.

The recogniser here is a tiny untrained model whose search is replaced by a fixed transcript per chunk, so the
tests check the pipeline (what is decoded, where words land, what is written), not recognition quality; the
quality and timing figures come from tests/benchmarks/subtitle_timing.py with a trained model.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import torch

from toolkit.bundle import save_model
from toolkit.cli import main
from toolkit.data.speech import SpeechRecord
from toolkit.synth.longform import LongformConfig, assemble_longform, make_demo_video
from toolkit.media import Region, VadConfig
from toolkit.model.factory import build_model
from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler, snap_words
from toolkit.pipelines.transcriber import Transcriber
from toolkit.subtitles import Word, check_cues
from toolkit.subtitles.scoring import timing_report
from toolkit.text import train_tokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
         "all that glitters is not gold", "where there is smoke there is fire"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("asr")
    torch.manual_seed(0)
    tok = train_tokenizer("char", TEXTS)
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "ctc": True,
                         "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64},
                         "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 128}})
    save_model(root / "asr", model.eval(), tok, info={"task": "asr", "decoding": {"ctc_weight": 0.3}})
    return root / "asr"


@pytest.fixture(scope="module")
def utterances(tmp_path_factory) -> list[SpeechRecord]:
    """The four TEXTS spoken by espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("utterances")
    records = []
    for i, text in enumerate(TEXTS):
        wav = root / f"u{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
        records.append(SpeechRecord(id=f"u{i}", audio=str(wav), text=text, duration=sf.info(wav).duration))
    return records


@pytest.fixture(scope="module")
def recording(tmp_path_factory, utterances) -> tuple[Path, list]:
    """~40 s: the four utterances with silences and a noise / chord stretch between them."""
    wav = tmp_path_factory.mktemp("longform") / "long.wav"
    return wav, assemble_longform(utterances, wav, LongformConfig(noise_every=2, seed=1))


@pytest.fixture
def fixed_transcript(monkeypatch, bundle):
    """Every chunk 'decodes' to the same three words (the search is the only part replaced)."""
    tok = Transcriber.from_pretrained(bundle).tokenizer
    ids = tok.encode("one two three")

    def decode_batch(self, waves, options, lm=None, ctc_only=False, return_encoder=False):
        scored = [(list(ids), 0.0) for _ in waves]
        if not return_encoder:
            return scored
        x = torch.zeros(len(waves), max(len(w) for w in waves))
        for row, w in enumerate(waves):
            x[row, : len(w)] = torch.from_numpy(w)
        return scored, self.model.encode(x, torch.tensor([len(w) for w in waves]))

    monkeypatch.setattr(Transcriber, "decode_batch", decode_batch)


def test_snap_words_clamps_caps_and_snaps_to_region_edges():
    regions = [Region(1.0, 3.0), Region(5.0, 6.0)]
    words = [Word("a", 1.2, 1.3), Word("b", 1.5, 4.0), Word("c", 2.5, 2.9), Word("d", 4.9, 5.2), Word("e", 5.3, 5.7)]
    out = snap_words(words, regions, max_word=1.0, snap=0.3)
    assert [w.text for w in out] == list("abcde")
    assert out[0].start == 1.0  # first word of region 1 snapped to its start (0.2 s away)
    assert out[1].end <= 2.5  # capped at max_word (1.5 + 1.0), then no overlap with "c"
    assert out[2].end == 3.0  # last word of region 1 snapped to its end
    assert out[3].start == 5.0 and out[4].end == 6.0  # "d" clamped into region 2, "e" snapped to its end
    assert all(a.end <= b.start for a, b in zip(out, out[1:]))
    far = snap_words([Word("x", 1.6, 1.8)], [Region(1.0, 3.0)], max_word=1.0, snap=0.3)
    assert (far[0].start, far[0].end) == (1.6, 1.8)  # 0.6 s from the start and 1.2 s from the end: not moved


@needs_espeak
@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_cues_only_where_speech_is_and_within_the_rules(bundle, recording, fixed_transcript, backend):
    wav, timeline = recording
    options = SubtitleOptions(vad=VadConfig(backend=backend), max_chunk=6.0, merge_gap=0.0)
    result = Subtitler.from_pretrained(bundle, options).subtitle(wav)
    speech = [s for s in timeline if s.kind == "speech"]
    assert len(result.regions) >= len(speech)
    assert all(c.end - c.start <= 6.0 + 1e-6 for c in result.chunks)
    report = timing_report(result.cues, timeline, options.rules)
    assert report["cues_in_nonspeech"] == 0 and report["overlapping_cues"] == 0
    assert report["missed_utterances"] == 0 and report["start_error_median"] <= 0.15
    assert check_cues(result.cues, options.rules) == []
    for w in result.words:  # every word inside a speech region
        assert any(r.start - 1e-6 <= w.start and w.end <= r.end + 1e-6 for r in result.regions)


@needs_espeak
def test_silence_and_noise_give_no_cues(bundle, tmp_path, fixed_transcript):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(16000 * 3), 0.05 * rng.standard_normal(16000 * 4), np.zeros(16000 * 2)])
    sf.write(tmp_path / "quiet.wav", x.astype(np.float32), 16000)
    result = Subtitler.from_pretrained(bundle).subtitle(tmp_path / "quiet.wav")
    assert result.cues == [] and result.chunks == []


@needs_espeak
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_cli_writes_every_format_and_muxes_a_soft_track(bundle, recording, tmp_path, fixed_transcript, capsys):
    wav, _ = recording
    video = make_demo_video(wav, tmp_path / "demo.mp4")
    for fmt in ("srt", "vtt", "json"):
        assert main(["subtitle", str(video), "--model", str(bundle), "-o", str(tmp_path / f"demo.{fmt}"),
                     "--quiet"]) == 0
    cues = list(srt.parse((tmp_path / "demo.srt").read_text()))
    words = " ".join(c.content for c in cues).split()
    assert cues and len(words) % 3 == 0 and words == ["one", "two", "three"] * (len(words) // 3)
    assert (tmp_path / "demo.vtt").read_text().startswith("WEBVTT")
    out = tmp_path / "demo.subtitled.mkv"
    assert main(["subtitle", str(video), "--model", str(bundle), "-o", str(tmp_path / "d.srt"), "--mux", str(out),
                 "--quiet"]) == 0
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                            str(out)], capture_output=True, text=True, check=True).stdout.split()
    assert probe == ["video", "audio", "subtitle"]
    # The soft track holds the cues written to d.srt: the same texts, at the same times on the video's clock.
    # (Matroska has no negative times: ffmpeg shifts every stream by the AAC encoder delay the MP4 hid in an edit
    # list, so the track's times are the file's plus the video stream's start time.)
    track = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(out), "-map", "0:s:0", "-f", "srt", "-"],
                           capture_output=True, text=True, check=True).stdout
    video_start = float(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                        "stream=start_time", "-of", "csv=p=0", str(out)],
                                       capture_output=True, text=True, check=True).stdout)
    written = list(srt.parse((tmp_path / "d.srt").read_text()))
    assert written and [c.content for c in written] == [c.content for c in cues]
    muxed = list(srt.parse(track))
    assert [c.content for c in muxed] == [c.content for c in written]
    for a, b in zip(muxed, written, strict=True):
        assert (a.start - b.start).total_seconds() == pytest.approx(video_start, abs=1e-3)
        assert (a.end - b.end).total_seconds() == pytest.approx(video_start, abs=1e-3)


def test_video_without_audio_is_a_one_line_error(bundle, tmp_path):
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 64, 48
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    done = subprocess.run([sys.executable, "-m", "toolkit", "subtitle", str(path), "--model", str(bundle),
                           "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "silent_film.srt").exists()


def test_mux_without_ffmpeg_says_how_to_install_it(bundle, tmp_path, monkeypatch, capsys):
    import toolkit.subtitles.mux as mux

    monkeypatch.setattr(mux.shutil, "which", lambda name: None)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    assert main(["subtitle", str(wav), "--model", str(bundle), "--mux", str(tmp_path / "a.mkv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get install ffmpeg" in err[0]


# ---------------------------------------------------------------------- the timeline of a video's audio track
# A video whose sound starts after its picture, and one with an audio packet its decoder refuses: the cues stay on
# the video's timeline. Both are the demo video with its packets moved / damaged by `remux` (no re-encoding).

from test_media import remux  # noqa: E402 - the PyAV remuxer of the media tests


@pytest.fixture(scope="module")
def demo_video(recording, tmp_path_factory) -> Path:
    return make_demo_video(recording[0], tmp_path_factory.mktemp("video") / "demo.mp4", size=(64, 48))


@needs_espeak
def test_cues_of_a_video_whose_sound_starts_late_are_on_the_videos_timeline(bundle, recording, demo_video,
                                                                            tmp_path, fixed_transcript):
    late = tmp_path / "late.mp4"
    remux(demo_video, late, delay=2.0)
    # silero: the energy detector takes a noise stretch's onset for speech, 0.6 s early
    options = SubtitleOptions(vad=VadConfig(backend="silero"), max_chunk=6.0, merge_gap=0.0)
    result = Subtitler.from_pretrained(bundle, options).subtitle(late)
    truth = [replace(s, start=s.start + 2.0, end=s.end + 2.0) for s in recording[1]]
    report = timing_report(result.cues, truth, options.rules)
    assert report["missed_utterances"] == 0 and report["cues_in_nonspeech"] == 0
    assert report["start_error_max"] <= 0.05, report
    assert result.duration == pytest.approx(truth[-1].end, abs=0.05)


@needs_espeak
def test_video_with_a_damaged_audio_packet_is_subtitled_with_a_warning(bundle, demo_video, tmp_path,
                                                                       fixed_transcript, caplog):
    damaged = tmp_path / "damaged.mp4"
    remux(demo_video, damaged, damage=lambda i, n: i == n // 2)  # an AAC packet (64 ms at 16 kHz) mid-file
    cues = {}
    for name, video in (("clean", demo_video), ("damaged", damaged)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(["subtitle", str(video), "--model", str(bundle), "-o", str(tmp_path / f"{name}.srt"),
                         "--quiet"]) == 0
        cues[name] = list(srt.parse((tmp_path / f"{name}.srt").read_text()))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one, though the subtitler reads the audio twice
    assert re.fullmatch(rf"{re.escape(str(damaged))}: 1 undecodable audio packet skipped, 0\.064 s of audio lost "
                        r"\(filled with silence; first at \d+\.\d\d s\)", warnings.pop())
    starts = [[c.start.total_seconds() for c in cues[name]] for name in ("clean", "damaged")]
    assert starts[0] and starts[1] == pytest.approx(starts[0], abs=0.05)  # later cues in place
