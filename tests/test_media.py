"""Long-form media input: streaming decode on the file's timeline (`toolkit.media.stream`, with `load_audio`),
voice activity detection (`vad`) and chunk planning (`chunks`). Every input is made here: tones and noise with
numpy, speech with espeak-ng, video containers with PyAV (and the ffmpeg CLI where installed), late or damaged
audio tracks by remuxing a video's packets (`remux`)."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit.data.audio import AudioLoadError, audio_duration, load_audio, resample
from toolkit.errors import ConfigError
from toolkit.media import (
    EnergyVad,
    Region,
    SileroVad,
    VadConfig,
    make_vad,
    plan_chunks,
    probe_media,
    read_spans,
    speech_probabilities,
    speech_regions,
    stream_audio,
)

SR = 16000
WINDOW = 512 / SR


def tone(seconds: float, rate: int = SR, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance 1/f noise (spectrum shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = np.arange(spectrum.size, dtype=np.float64)
    scale[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(scale), n)
    return (x / x.std()).astype(np.float32)


def chords(seconds: float, staccato: bool) -> np.ndarray:
    """A music-like signal: triads changing every 0.5 s, held at a steady level or struck and decaying."""
    progression = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    n_chord = SR // 2
    t = np.arange(n_chord) / SR
    envelope = np.exp(-t / 0.12) if staccato else np.ones_like(t)
    parts = [0.3 * envelope * sum(np.sin(2 * np.pi * f * (t + k * 0.5)) for f in progression[k % 4]) / 3
             for k in range(round(seconds * 2))]
    return np.concatenate(parts).astype(np.float32)


def write_video(path: Path, video_codec: str, audio_codec: str | None, video_seconds: float = 2.0,
                audio_seconds: float = 2.0, rate: int = 48000, wave: np.ndarray | None = None) -> None:
    """A 32x32, 10 fps video stream and (unless `audio_codec` is None) a stereo 440 Hz tone at amplitude 0.3, or
    `wave` (mono, at `rate`) on both channels."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=10)
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        audio = None
        if audio_codec is not None:
            audio = container.add_stream(audio_codec, rate=rate)
            audio.layout = "stereo"
        for i in range(round(video_seconds * 10)):
            image = np.full((32, 32, 3), (i * 20) % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            wave = tone(audio_seconds, rate) if wave is None else wave
            step = audio.codec_context.frame_size or 1024
            for start in range(0, wave.size, step):
                piece = np.ascontiguousarray(np.stack([wave[start:start + step]] * 2))
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


def remux(src: Path, dst: Path, delay: float = 0.0, damage: Callable[[int, int], bool] = lambda i, n: False) -> None:
    """Copy the packets of `src` into `dst` with PyAV, no re-encoding: the audio ones `delay` seconds later, and
    those where `damage(index, count)` holds (index among the `count` audio packets) replaced by as many random
    bytes (seed 0)."""
    rng = np.random.default_rng(0)
    with av.open(str(src)) as source:
        count = sum(1 for packet in source.demux(audio=0) if packet.size)
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("audio", "video")}
        audio, index = source.streams.audio[0].index, 0
        for packet in source.demux():
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            stream = streams[packet.stream.index]
            if packet.stream.index == audio:
                if damage(index, count):
                    garbage = av.Packet(rng.integers(0, 256, packet.size, np.uint8).tobytes())
                    garbage.pts, garbage.dts, garbage.duration, garbage.time_base = (
                        packet.pts, packet.dts, packet.duration, packet.time_base)
                    packet = garbage
                shift = round(delay / packet.time_base)
                packet.pts, packet.dts, index = packet.pts + shift, packet.dts + shift, index + 1
            packet.stream = stream
            out.mux(packet)


def bursts(rate: int) -> np.ndarray:
    """3 s of digital silence with two 0.2 s bursts of a 1 kHz tone (amplitude 0.5), starting at 0.5 s and 2.0 s."""
    wave = np.zeros(3 * rate, np.float32)
    for start in (0.5, 2.0):
        burst = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(rate // 5) / rate)
        wave[round(start * rate):round(start * rate) + burst.size] = burst
    return wave


def onset(wave: np.ndarray, after: float = 0.0) -> float:
    """Seconds (at SR) of the first sample from `after` on whose magnitude passes 0.05."""
    return after + np.flatnonzero(np.abs(wave[round(after * SR):]) > 0.05)[0] / SR


def assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, reason: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and reason in message, message


# ---------------------------------------------------------------------------------------------- stream


def test_stream_audio_matches_load_audio_with_exact_blocks(tmp_path):
    rng = np.random.default_rng(0)
    left, right = tone(5.0, 48000, 440.0), tone(5.0, 48000, 1000.0, 0.2) + 0.02 * rng.standard_normal(240000)
    path = tmp_path / "stereo48k.wav"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="PCM_16")

    blocks = list(stream_audio(path, block_seconds=1.3))
    assert [b.size for b in blocks] == [20800, 20800, 20800, 17600]
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    streamed, loaded = np.concatenate(blocks), load_audio(path)
    assert streamed.size == loaded.size
    error = streamed - loaded  # swresample vs torchaudio sinc: they differ near 8 kHz only
    assert np.sqrt(np.mean(error ** 2)) < 0.01 * np.sqrt(np.mean(loaded ** 2))
    assert np.abs(error).max() < 0.02

    sf.write(path, tone(2.0), SR)  # a whole number of blocks: no empty block at the end
    assert [b.size for b in stream_audio(path, block_seconds=0.5)] == [8000] * 4


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg"])
def test_audio_formats_stream(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    sf.write(path, tone(3.0, 22050), 22050)
    info = probe_media(path)
    assert (info.sample_rate, info.channels, info.has_video) == (22050, 1, False)
    assert info.duration == pytest.approx(3.0, abs=0.06)
    wave = np.concatenate(list(stream_audio(path)))
    assert wave.size / SR == pytest.approx(3.0, abs=0.06)
    assert np.sqrt(np.mean(wave ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("suffix,video_codec,audio_codec,codec", [
    (".mp4", "mpeg4", "aac", "aac"),
    (".mkv", "mpeg4", "libmp3lame", "mp3"),
    (".webm", "libvpx", "libopus", "opus"),
    (".mov", "mpeg4", "aac", "aac"),
])
def test_video_containers_give_their_audio_track(tmp_path, suffix, video_codec, audio_codec, codec):
    path = tmp_path / f"clip{suffix}"
    write_video(path, video_codec, audio_codec)
    info = probe_media(path)
    assert info.has_video and info.channels == 2 and info.sample_rate == 48000 and codec in info.codec
    assert info.duration == pytest.approx(2.0, abs=0.1)
    wave = np.concatenate(list(stream_audio(path, block_seconds=0.5)))
    assert wave.size / SR == pytest.approx(2.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(wave[1600:-1600]))
    assert np.fft.rfftfreq(wave.size - 3200, 1 / SR)[spectrum.argmax()] == pytest.approx(440.0, abs=5.0)
    assert np.sqrt(np.mean(wave[1600:-1600] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)


def test_video_whose_audio_ends_early_is_not_truncated(tmp_path):
    path = tmp_path / "short_audio.mkv"
    write_video(path, "mpeg4", "libmp3lame", video_seconds=4.0, audio_seconds=1.0)
    assert sum(b.size for b in stream_audio(path)) / SR == pytest.approx(1.0, abs=0.1)


def test_cover_art_is_not_video(tmp_path):
    path = tmp_path / "song.mp3"
    with av.open(str(path), "w") as container:
        audio = container.add_stream("libmp3lame", rate=SR)
        audio.layout = "mono"
        cover = container.add_stream("png")
        cover.width = cover.height = 16
        cover.pix_fmt = "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in cover.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        wave = tone(1.0)
        for start in range(0, wave.size, 1152):
            frame = av.AudioFrame.from_ndarray(wave[None, start:start + 1152].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = SR, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    info = probe_media(path)
    assert not info.has_video and info.duration == pytest.approx(1.0, abs=0.05)
    assert sum(b.size for b in stream_audio(path)) == pytest.approx(SR, abs=800)


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    cases = [(tmp_path / "missing.wav", "file not found")]
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases.append((tmp_path / "empty.mp4", "empty file"))
    write_video(tmp_path / "silent_film.mp4", "mpeg4", None)
    cases.append((tmp_path / "silent_film.mp4", "no audio track"))
    (tmp_path / "notes.txt").write_text("these are not samples\n" * 40)
    cases.append((tmp_path / "notes.txt", "not audio"))
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    cases.append((tmp_path / "zero.wav", "no audio samples"))
    sf.write(tmp_path / "cut.wav", tone(4.0), SR, subtype="PCM_16")
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    cases.append((tmp_path / "cut.wav", "truncated"))
    write_video(tmp_path / "cut.mp4", "mpeg4", "aac")  # moov at the end: half a file does not open
    data = (tmp_path / "cut.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])
    cases.append((tmp_path / "cut.mp4", "truncated or corrupt"))
    return cases


def test_unreadable_files_are_one_line_errors(tmp_path):
    for path, reason in _bad_files(tmp_path):
        with pytest.raises(AudioLoadError) as excinfo:
            probe_media(path)
        assert_one_line_error(excinfo, path, reason)
        with pytest.raises(AudioLoadError) as excinfo:
            next(stream_audio(path))
        assert_one_line_error(excinfo, path, reason)


@pytest.mark.parametrize("suffix,reason", [(".flac", "decoding stopped at"), (".mp3", "decoding stopped at"),
                                           (".mkv", "the streams stop at")])
def test_stream_cut_short_fails_midway_naming_the_time(tmp_path, suffix, reason):
    path = tmp_path / f"long{suffix}"
    if suffix == ".mkv":
        write_video(path, "mpeg4", "libmp3lame", video_seconds=6.0, audio_seconds=6.0)
    else:
        sf.write(path, tone(6.0) + 0.05 * np.random.default_rng(0).standard_normal(6 * SR).astype(np.float32), SR)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert probe_media(path).duration == pytest.approx(6.0, abs=0.1)  # the header is intact
    blocks = []
    with pytest.raises(AudioLoadError) as excinfo:
        for block in stream_audio(path, block_seconds=1.0):
            blocks.append(block)
    assert_one_line_error(excinfo, path, reason)
    assert len(blocks) >= 2 and all(b.size == SR for b in blocks)  # what decoded before the break was delivered
    reached = float(re.search(rf"{reason} (\d+\.\d\d) s", str(excinfo.value)).group(1))
    assert len(blocks) - 0.2 <= reached < len(blocks) + 1.2  # the time reached, in seconds


def test_read_spans_returns_exact_samples(tmp_path):
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 10 * SR).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    spans = [(0.0, 0.1), (0.2, 3.7), (1.0, 1.5), (1.2, 6.0), (9.5, 10.0), (9.9, 10.3)]
    got = list(read_spans(path, spans, block_seconds=0.25))
    assert len(got) == len(spans)
    for (start, end), samples in zip(spans, got):
        np.testing.assert_array_equal(samples, wave[round(start * SR):min(round(end * SR), wave.size)])

    assert list(read_spans(path, [])) == []
    with pytest.raises(ValueError, match="sorted"):
        list(read_spans(path, [(2.0, 3.0), (1.0, 4.0)]))
    with pytest.raises(AudioLoadError, match="past the end"):
        list(read_spans(path, [(1.0, 2.0), (10.5, 11.0)]))
    with pytest.raises(AudioLoadError, match="past the end"):
        list(read_spans(path, [(9.0, 11.0)]))


# ------------------------------------------------------------------------------------------------ timeline


@pytest.mark.parametrize("maker", ["pyav", "ffmpeg"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_starting_after_the_video_keeps_its_place_on_the_timeline(tmp_path, suffix, maker):
    """Sound that starts 2 s after the picture: silence first, then every sound at its time in the file (AAC's
    priming frame starts ~21 ms before 2.0 s and holds the lead-in, so nothing moves by it)."""
    path = tmp_path / f"late{suffix}"
    if maker == "pyav":  # written at 0, then its packets moved 2 s later
        write_video(tmp_path / f"on_time{suffix}", "mpeg4", "aac", video_seconds=5.0, wave=bursts(48000))
        remux(tmp_path / f"on_time{suffix}", path, delay=2.0)
    else:
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg is not installed")
        sf.write(tmp_path / "bursts.wav", bursts(48000), 48000)
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=10:duration=5",
                        "-itsoffset", "2", "-i", str(tmp_path / "bursts.wav"), "-c:v", "mpeg4", "-c:a", "aac",
                        str(path)], check=True)
    info = probe_media(path)
    assert info.start == pytest.approx(2.0, abs=0.03) and info.duration == pytest.approx(5.0, abs=0.05)
    assert audio_duration(path) == pytest.approx(5.0, abs=0.05)
    streamed, loaded = np.concatenate(list(stream_audio(path, block_seconds=0.7))), load_audio(path)
    for wave in (streamed, loaded):
        assert wave.size / SR == pytest.approx(5.0, abs=0.05)
        assert not wave[:round(1.95 * SR)].any()  # exact zeros before the sound starts
        assert onset(wave) == pytest.approx(2.5, abs=0.01) and onset(wave, 3.0) == pytest.approx(4.0, abs=0.01)
    [span] = read_spans(path, [(2.4, 2.6)])
    assert onset(span) == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("suffix,video_codec,audio_codec", [
    (".mkv", "mpeg4", "aac"),  # timestamps rounded to 1 ms: frames start up to 0.7 ms off the samples' count
    (".webm", "libvpx", "libopus"),  # and a 648-sample first frame after Opus's pre-skip
    (".mkv", "mpeg4", "libmp3lame"),  # a 47-sample first frame after the encoder delay
    (".mp4", "mpeg4", "aac"),  # priming cut by the edit list
])
def test_audio_without_an_offset_decodes_sample_for_sample(tmp_path, suffix, video_codec, audio_codec):
    """Rounded timestamps and codec priming stay under the gap tolerance: at its own rate a file decodes to exactly
    the samples of PyAV's frames, nothing inserted."""
    path = tmp_path / f"clip{suffix}"
    write_video(path, video_codec, audio_codec, audio_seconds=3.0)
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray() for frame in container.decode(audio=0)]  # (2, n) float32 planes
    np.testing.assert_array_equal(load_audio(path, 48000), np.concatenate(frames, axis=1).mean(axis=0))
    assert probe_media(path).start == 0.0


@pytest.mark.parametrize("suffix,audio_codec,lost", [(".mp4", "aac", 0.021), (".mkv", "flac", 0.096)])
def test_a_damaged_audio_packet_is_skipped_and_filled_with_silence(tmp_path, caplog, suffix, audio_codec, lost):
    clean, path = tmp_path / f"clean{suffix}", tmp_path / f"damaged{suffix}"
    write_video(clean, "mpeg4", audio_codec, video_seconds=3.0, wave=bursts(48000))
    remux(clean, path, damage=lambda i, n: i == n // 2)  # ~1.5 s: garbage the decoder refuses
    caplog.set_level(logging.WARNING)
    streamed = np.concatenate(list(stream_audio(path, block_seconds=0.7)))
    [warning] = caplog.records
    message = warning.getMessage()
    assert re.fullmatch(rf"{re.escape(str(path))}: 1 undecodable audio packet skipped, {lost:.3f} s of audio lost "
                        r"\(filled with silence; first at 1\.[45]\d s\)", message), message
    loaded = load_audio(path)
    assert caplog.records == [warning]  # one warning per file
    shutil.copy(path, tmp_path / f"copy{suffix}")
    np.testing.assert_array_equal(load_audio(tmp_path / f"copy{suffix}"), loaded)
    assert caplog.records[1].getMessage() == message.replace(str(path), str(tmp_path / f"copy{suffix}"))
    for wave, reference in ((streamed, np.concatenate(list(stream_audio(clean)))), (loaded, load_audio(clean))):
        assert wave.size == reference.size  # the whole duration, the lost packet's time filled
        outside = np.r_[:round(1.3 * SR), round(1.8 * SR):wave.size]  # the packet, and a frame's overlap each side
        np.testing.assert_allclose(wave[outside], reference[outside], atol=1e-6)  # all the rest in its place
        assert onset(wave, 1.8) == pytest.approx(2.0, abs=0.01)
    assert np.abs(streamed[:loaded.size] - loaded[:streamed.size]).max() < 0.02

    remux(clean, path, damage=lambda i, n: True)
    caplog.clear()
    for read in (lambda p: next(stream_audio(p)), load_audio):
        with pytest.raises(AudioLoadError) as excinfo:
            read(path)
        assert_one_line_error(excinfo, path, "corrupt: none of its")
    assert not caplog.records


# ------------------------------------------------------------------------------------------------- vad


def espeak(text: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
    wave, rate = sf.read(io.BytesIO(out), dtype="float32")
    return resample(wave, rate, SR)


@pytest.fixture(scope="module")
def speech_in_silence() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """14 s: two espeak sentences in digital silence, and where their voiced samples start and end (seconds)."""
    signal = np.zeros(14 * SR, np.float32)
    truth = []
    for offset, text in [(2.0, "The quick brown fox jumps over the lazy dog."),
                         (7.8, "Speech recognition turns audio into subtitles.")]:
        voice = espeak(text)
        at = round(offset * SR)
        signal[at:at + voice.size] = voice
        loud = np.flatnonzero(np.abs(voice) > 0.02 * np.abs(voice).max())
        truth.append((offset + loud[0] / SR, offset + (loud[-1] + 1) / SR))
    return signal, truth


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    vad = make_vad(VadConfig(backend="silero"))
    assert isinstance(vad, SileroVad), "silero-vad is a dependency: make_vad fell back to the energy detector"
    return vad


@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_vad_finds_speech_at_known_times(speech_in_silence, silero, backend):
    signal, truth = speech_in_silence
    vad = silero if backend == "silero" else EnergyVad()
    probs = speech_probabilities((signal[i:i + 3 * SR] for i in range(0, signal.size, 3 * SR)), vad)
    assert probs.shape == (int(np.ceil(signal.size / 512)),) and probs.dtype == np.float32
    regions = speech_regions(probs, vad.window_seconds, VadConfig(pad=0.0), signal.size / SR)
    assert len(regions) == len(truth)
    for region, (start, end) in zip(regions, truth):
        assert abs(region.start - start) < 0.15 and abs(region.end - end) < 0.15, (region, start, end)
    padded = speech_regions(probs, vad.window_seconds, VadConfig(pad=0.2), signal.size / SR)
    assert [r.start for r in padded] == pytest.approx([r.start - 0.2 for r in regions], abs=1e-6)


def non_speech(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 10 * SR
    return {
        "silence": np.zeros(n, np.float32),
        "white noise": (0.05 * rng.standard_normal(n)).astype(np.float32),
        "loud white noise": (0.3 * rng.standard_normal(n)).astype(np.float32),
        "pink noise": 0.05 * pink_noise(n, rng),
        "held chords": chords(10.0, staccato=False),
        "struck chords": chords(10.0, staccato=True),
        "noise burst after silence": np.concatenate(
            [np.zeros(3 * SR), 0.1 * rng.standard_normal(2 * SR), np.zeros(5 * SR)]).astype(np.float32),
    }


def test_silero_finds_no_speech_in_silence_noise_or_music(silero):
    for name, signal in non_speech(np.random.default_rng(1)).items():
        probs = speech_probabilities([signal], silero)
        assert speech_regions(probs, silero.window_seconds, VadConfig(), signal.size / SR) == [], name


def test_energy_vad_rejects_steady_sounds_but_not_onsets():
    """What EnergyVad's docstring promises: steady sounds at any level are rejected; sounds that rise well above
    the recent floor (a noise burst after silence, struck chords) are taken for speech."""
    vad = EnergyVad()
    found = {}
    for name, signal in non_speech(np.random.default_rng(1)).items():
        probs = speech_probabilities([signal], vad)
        found[name] = speech_regions(probs, vad.window_seconds, VadConfig(), signal.size / SR)
    for name in ("silence", "white noise", "loud white noise", "pink noise", "held chords"):
        assert found[name] == [], name
    assert [(round(r.start, 1), round(r.end, 1)) for r in found["noise burst after silence"]] == [(2.8, 5.2)]
    assert found["struck chords"]


@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_vad_streaming_does_not_depend_on_block_size(speech_in_silence, silero, backend):
    signal = speech_in_silence[0][:5 * SR + 123]
    vad = silero if backend == "silero" else EnergyVad()
    whole = speech_probabilities([signal], vad)
    pieces = speech_probabilities((signal[i:i + 1000] for i in range(0, signal.size, 1000)), vad)
    np.testing.assert_allclose(pieces, whole, atol=1e-4)  # float sums in another order, nothing more


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")  # inside silero-vad's loader
def test_silero_block_path_equals_the_packages_per_window_call(speech_in_silence, silero):
    from silero_vad import load_silero_vad

    signal = speech_in_silence[0][int(1.5 * SR):int(4.5 * SR)]
    model = load_silero_vad()
    with torch.no_grad():
        reference = [model(torch.from_numpy(signal[i:i + 512]), SR).item() for i in range(0, signal.size - 511, 512)]
    ours = speech_probabilities([signal], silero)[:len(reference)]
    assert silero._batched
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_silero_import_keeps_torch_threads(monkeypatch):
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)  # import it afresh: its import calls torch.set_num_threads(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        SileroVad()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_make_vad_falls_back_to_energy_without_silero(monkeypatch, caplog):
    assert isinstance(make_vad(VadConfig(backend="energy")), EnergyVad)
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # import silero_vad now raises ImportError
    assert isinstance(make_vad(VadConfig(backend="silero")), EnergyVad)
    assert "energy-based detector" in caplog.text


@pytest.mark.parametrize("field,value", [("backend", "webrtc"), ("threshold", 1.5), ("neg_threshold", 0.7),
                                         ("min_silence", -1.0), ("pad", float("nan"))])
def test_vad_config_refuses_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"vad.{field}"):
        VadConfig(**{field: value})


def test_speech_regions_hysteresis_gaps_and_padding():
    probs = np.zeros(200, np.float32)  # 6.4 s of 32 ms windows
    probs[10:40] = 0.9
    probs[40:60] = 0.4  # 0.64 s between the exit (0.35) and start (0.5) thresholds: still speech
    probs[60:65] = 0.9
    probs[70:80] = 0.9  # after a 5-window (0.16 s) gap < min_silence: joined
    probs[120:124] = 0.9  # 0.128 s < min_speech: dropped
    probs[150:190] = 0.45  # never reaches the start threshold
    probs[195:200] = 0.9
    config = VadConfig(min_speech=0.25, min_silence=0.3, pad=0.1)
    regions = speech_regions(probs, WINDOW, config, duration=6.39)
    assert [(round(r.start, 3), round(r.end, 3)) for r in regions] == [(10 * WINDOW - 0.1, 80 * WINDOW + 0.1)]
    regions = speech_regions(probs, WINDOW, VadConfig(min_speech=0.1, pad=0.1), duration=6.39)
    assert regions[-1] == Region(195 * WINDOW - 0.1, 6.39)  # clipped to the file
    assert speech_regions(np.zeros(0, np.float32), WINDOW, config, 0.0) == []


# ---------------------------------------------------------------------------------------------- chunks


def test_plan_chunks_merges_close_regions_within_max_chunk():
    regions = [Region(1.0, 4.0), Region(4.5, 8.0), Region(8.6, 12.0), Region(12.8, 16.0), Region(16.5, 25.0)]
    probs = np.zeros(round(30 / WINDOW), np.float32)
    chunks = plan_chunks(regions, probs, WINDOW, max_chunk=10.0, merge_gap=1.0)
    assert [(c.start, c.end) for c in chunks] == [(1.0, 8.0), (8.6, 16.0), (16.5, 25.0)]
    assert [len(c.regions) for c in chunks] == [2, 2, 1]
    assert len(plan_chunks(regions, probs, WINDOW, max_chunk=30.0, merge_gap=0.0)) == 5
    assert len(plan_chunks(regions, probs, WINDOW, max_chunk=30.0, merge_gap=3.0)) == 1


def test_plan_chunks_splits_long_regions_at_pauses():
    probs = np.full(round(80 / WINDOW), 0.95, np.float32)
    pauses = [round(t / WINDOW) for t in (6.0, 14.0, 31.0, 44.0)]  # windows; 6 s is too early to cut at
    probs[pauses] = 0.2
    chunks = plan_chunks([Region(2.0, 60.0)], probs, WINDOW, max_chunk=20.0)
    cuts = [c.end for c in chunks[:-1]]
    assert cuts == pytest.approx([(i + 0.5) * WINDOW for i in pauses[1:]], abs=1e-9)
    assert all(c.duration <= 20.0 for c in chunks)
    assert chunks[0].start == 2.0 and chunks[-1].end == 60.0
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))

    flat = np.full_like(probs, 0.95)  # no pause anywhere: cut late, never leaving a sliver
    chunks = plan_chunks([Region(0.0, 41.0)], flat, WINDOW, max_chunk=20.0, min_piece=3.0)
    assert all(3.0 <= c.duration <= 20.0 for c in chunks) and chunks[-1].end == 41.0


def test_plan_chunks_never_exceeds_max_chunk_on_random_regions():
    rng = np.random.default_rng(3)
    for _ in range(20):
        edges = np.cumsum(rng.exponential(6.0, 40))
        regions = [Region(float(a), float(b)) for a, b in zip(edges[0::2], edges[1::2])]
        probs = rng.uniform(0.0, 1.0, round(edges[-1] / WINDOW) + 1).astype(np.float32)
        max_chunk = float(rng.uniform(2.0, 25.0))
        chunks = plan_chunks(regions, probs, WINDOW, max_chunk=max_chunk, merge_gap=1.5)
        assert all(0 < c.duration <= max_chunk + 1e-9 for c in chunks)
        assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
        covered = sum(r.duration for c in chunks for r in c.regions)
        assert covered == pytest.approx(sum(r.duration for r in regions))


# ---------------------------------------------------------------------------------------------- memory


def test_memory_stays_flat_on_a_20_minute_file(tmp_path):
    path = tmp_path / "lecture.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:  # written in 10 s blocks: never held whole either
        for _ in range(120):
            block = 0.01 * rng.standard_normal(10 * SR)
            block[2 * SR:6 * SR] += tone(4.0, freq=200.0) * (np.arange(4 * SR) % 8000 < 4000)
            f.write(block.astype(np.float32))
    decoded_bytes = 20 * 60 * SR * 4  # 77 MB as float32 at 16 kHz
    tracemalloc.start()
    try:
        vad = EnergyVad()
        probs = speech_probabilities(stream_audio(path), vad)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert probs.size == 20 * 60 * SR // 512
    assert peak < decoded_bytes / 8, f"peak {peak / 1e6:.1f} MB while streaming a {decoded_bytes / 1e6:.0f} MB file"
    regions = speech_regions(probs, vad.window_seconds, VadConfig(), 1200.0)
    assert len(regions) == 120  # the gated tone bursts, one per 10 s
