"""Long-form media input: streaming decode (`toolkit.media.stream`), voice activity detection (`vad`) and chunk
planning (`chunks`). Every input is made here: tones and noise with numpy, speech with espeak-ng, video
containers with PyAV."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from toolkit.data.audio import AudioLoadError, load_audio, resample
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
                audio_seconds: float = 2.0, rate: int = 48000) -> None:
    """A 32x32, 10 fps video stream and (unless `audio_codec` is None) a stereo 440 Hz tone at amplitude 0.3."""
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
            wave = tone(audio_seconds, rate)
            step = audio.codec_context.frame_size or 1024
            for start in range(0, wave.size, step):
                piece = np.ascontiguousarray(np.stack([wave[start:start + step]] * 2))
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)


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


@pytest.mark.parametrize("suffix,reason", [(".flac", "decoding failed at"), (".mp3", "decoding stopped at"),
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
    pytest.importorskip("silero_vad")
    return SileroVad()


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
    pytest.importorskip("silero_vad")
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
