"""Long recordings with a known timeline, for testing long-form transcription, voice activity and subtitles.

    segments = assemble_longform(records, Path("out/long.wav"), LongformConfig(minutes=10, seed=0))
    segments = read_timeline("out/long.json")                      # written next to the WAV
    make_demo_video(Path("out/long.wav"), Path("out/long.mp4"))     # a test-pattern video with that soundtrack

The recording is a 16 kHz mono PCM16 WAV: silence, then utterances separated by gaps, then silence again. A gap
lasts a random `gap` seconds of digital silence (exact zeros), except every `noise_every`-th one, which is a
`noise_length`-second stretch of white noise, pink noise or a sequence of chords (in turn), at `noise_level_db`. The
first and the last gap are always silence. Utterances come from the records in order, cycling through them until the
recording has lasted `minutes` (None: each record once); each is scaled to an RMS of `speech_level_db` over its
speech (lowered where its peak would pass `MAX_PEAK`).

Exact times: an utterance's leading and trailing silence (synthesisers add some) is cut at the first and last
sample whose magnitude reaches `speech_threshold_db` below its peak, so a speech segment starts at its first
written sample and ends after its last one; the samples cut are below that threshold (-50 dB: inaudible). A speech
segment is one utterance, its inner pauses included. Segments tile the file: each starts where the previous ends,
the first at 0 and the last at the file's duration, all on whole samples.

The timeline `out.with_suffix(".json")`: {"format", "audio" (the WAV's name), "sample_rate", "samples",
"duration", "config", "segments": [{"start", "end", "kind", "text", "source"}]} with kind "speech" (text = the
transcript, source = the record's id), "silence", "noise" (source "white" / "pink") or "music" (source "chords").

Memory: the WAV is written block by block and each utterance is read when its turn comes, so an hour of audio needs
no more memory than its longest utterance or stretch; `make_demo_video` streams both its frames and its audio.
Everything random is drawn from `seed`: the same records and config give the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf

from toolkit.data.audio import SAMPLE_RATE, load_audio
from toolkit.data.speech import SpeechRecord
from toolkit.synth.augment import make_noise
from toolkit.errors import ConfigError, ToolkitError
from toolkit.timing import SEGMENT_KINDS, Segment, SegmentKind

__all__ = ["LongformConfig", "assemble_longform", "make_demo_video", "read_timeline"]

TIMELINE_FORMAT = 1
MAX_PEAK = 0.95  # no utterance or stretch is written louder than this (PCM16 full scale = 1.0)
BLOCK = 1 << 16  # samples of silence written at a time
FADE = 0.01  # seconds of raised-cosine fade at both ends of a noise / music stretch (no clicks)
STRETCH_KINDS: tuple[tuple[SegmentKind, str], ...] = (("noise", "white"), ("noise", "pink"), ("music", "chords"))
log = logging.getLogger("toolkit.synth")


@dataclass
class LongformConfig:
    """How the recording is laid out (see the module docstring); levels are dBFS RMS, durations seconds."""

    minutes: float | None = None
    gap: tuple[float, float] = (0.6, 2.5)
    noise_every: int = 6  # every N-th gap is a noise / music stretch; 0: never
    noise_length: tuple[float, float] = (2.0, 5.0)
    speech_level_db: float = -20.0
    noise_level_db: float = -30.0
    speech_threshold_db: float = -50.0  # speech starts / ends at the first / last sample this far below the peak
    seed: int = 0

    def __post_init__(self) -> None:
        where = "LongformConfig"
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ConfigError(f"{where}.minutes: must be a positive number or None, got {self.minutes!r}")
        for name in ("gap", "noise_length"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi or not math.isfinite(hi):
                raise ConfigError(f"{where}.{name}: expected (low, high) seconds, 0 < low <= high, got ({lo}, {hi})")
        if isinstance(self.noise_every, bool) or not isinstance(self.noise_every, int) or self.noise_every < 0:
            raise ConfigError(f"{where}.noise_every: must be an integer >= 0, got {self.noise_every!r}")
        for name in ("speech_level_db", "noise_level_db", "speech_threshold_db"):
            if not -120.0 < getattr(self, name) < 0.0:
                raise ConfigError(f"{where}.{name}: must be in (-120, 0) dB, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------------------- audio


def speech_bounds(x: np.ndarray, threshold_db: float) -> tuple[int, int] | None:
    """[first, last + 1) of the samples of `x` (N,) whose magnitude reaches `threshold_db` below its peak;
    None for all-zero audio."""
    magnitude = np.abs(x)
    peak = float(magnitude.max()) if len(x) else 0.0
    if peak <= 0.0:
        return None
    loud = np.flatnonzero(magnitude >= peak * 10 ** (threshold_db / 20))
    return int(loud[0]), int(loud[-1]) + 1


def _at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    """`x` scaled to an RMS of `level_db` dBFS, or less where its peak would pass `MAX_PEAK`."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    peak = float(np.max(np.abs(x)))
    if rms <= 0.0:
        return x.astype(np.float32)
    gain = min(10 ** (level_db / 20) / rms, MAX_PEAK / peak)
    return (x * gain).astype(np.float32)


def chords(n: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`n` samples of music-like sound at unit RMS: major and minor triads of 0.3-0.8 s, each note a tone with two
    overtones under a plucked envelope (5 ms attack, exponential decay)."""
    out = np.zeros(n)
    start = 0
    while start < n:
        length = min(n - start, int(rng.uniform(0.3, 0.8) * sample_rate))
        t = np.arange(length) / sample_rate
        envelope = np.minimum(t / 0.005, 1.0) * np.exp(-t / rng.uniform(0.2, 0.5))
        root = int(rng.integers(48, 65))  # MIDI C3..E4
        for note in (root, root + (4 if rng.random() < 0.5 else 3), root + 7):
            freq = 440.0 * 2 ** ((note - 69) / 12)
            phase = rng.uniform(0, 2 * np.pi)
            for harmonic, amplitude in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[start:start + length] += amplitude * envelope * np.sin(2 * np.pi * harmonic * freq * t + phase)
        start += length
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _stretch(kind: int, n: int, level_db: float, rng: np.random.Generator) -> tuple[SegmentKind, str, np.ndarray]:
    """(segment kind, source, samples) of the `kind`-th stretch type, `n` samples at `level_db`, faded in and out."""
    segment_kind, source = STRETCH_KINDS[kind % len(STRETCH_KINDS)]
    x = chords(n, rng) if source == "chords" else make_noise(source, n, rng)
    x = x * 10 ** (level_db / 20)
    fade = min(int(FADE * SAMPLE_RATE), n // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[n - fade:] *= ramp[::-1]
    return segment_kind, source, np.clip(x, -MAX_PEAK, MAX_PEAK).astype(np.float32)


class _TimelineWriter:
    """Appends to an open WAV and records what it writes as `Segment`s (times from the sample count): utterances,
    and gaps of silence or, every `noise_every`-th gap, a noise / music stretch."""

    def __init__(self, wav: sf.SoundFile, config: LongformConfig) -> None:
        self.wav, self.config = wav, config
        self.rng = np.random.default_rng(config.seed)
        self.samples = self.gaps = self.stretches = 0
        self.segments: list[Segment] = []

    def _add(self, n: int, kind: SegmentKind, text: str = "", source: str = "") -> None:
        start, self.samples = self.samples, self.samples + n
        self.segments.append(Segment(start / SAMPLE_RATE, self.samples / SAMPLE_RATE, kind, text, source))

    def audio(self, x: np.ndarray, kind: SegmentKind, text: str = "", source: str = "") -> None:
        self.wav.write(x)
        self._add(len(x), kind, text, source)

    def silence(self, n: int) -> None:
        for done in range(0, n, BLOCK):
            self.wav.write(np.zeros(min(BLOCK, n - done), dtype=np.float32))
        self._add(n, "silence")

    def gap(self, last: bool = False) -> None:
        """The next gap; the first (gap 0) and the `last` are always silence."""
        every = self.config.noise_every
        if not last and every and self.gaps and self.gaps % every == 0:
            n = round(self.rng.uniform(*self.config.noise_length) * SAMPLE_RATE)
            kind, source, x = _stretch(self.stretches, n, self.config.noise_level_db, self.rng)
            self.audio(x, kind, source=source)
            self.stretches += 1
        else:
            self.silence(round(self.rng.uniform(*self.config.gap) * SAMPLE_RATE))
        self.gaps += 1


def _utterances(records: Sequence[SpeechRecord], minutes: float | None) -> Iterator[SpeechRecord]:
    """The records in order, once (`minutes` None) or cycling for ever (the caller stops)."""
    while True:
        yield from records
        if minutes is None:
            return


# ------------------------------------------------------------------------------------------------- assembling


def assemble_longform(records: Sequence[SpeechRecord], out_wav: Path, config: LongformConfig) -> list[Segment]:
    """Write the recording to `out_wav` and its timeline to `out_wav.with_suffix(".json")` (see the module
    docstring); returns the timeline's segments. Both files are written under temporary names and renamed, so an
    interrupted run leaves no half-written file. Records whose audio is all zeros are skipped (logged)."""
    if not records:
        raise ToolkitError(f"{out_wav}: no utterances to assemble (the manifest is empty)")
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_wav.with_suffix(".json")
    tmp, json_tmp = (p.with_name(f".{p.name}.tmp") for p in (out_wav, json_path))
    target = None if config.minutes is None else round(config.minutes * 60 * SAMPLE_RATE)
    silent: dict[str, None] = {}  # ids of all-zero records, in order (a dict: each once while cycling)
    used = 0
    try:
        with sf.SoundFile(tmp, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16", format="WAV") as wav:
            writer = _TimelineWriter(wav, config)
            writer.gap()
            for record in _utterances(records, config.minutes):
                if target is not None and writer.samples >= target:
                    break
                x = load_audio(record.audio, SAMPLE_RATE, record.offset, record.end)
                bounds = speech_bounds(x, config.speech_threshold_db)
                if bounds is None:
                    silent[record.id] = None
                    if used == 0 and len(silent) == len(records):
                        break  # every record is silent: stop cycling
                    continue
                if used:
                    writer.gap()
                speech = _at_level(x[bounds[0]:bounds[1]], config.speech_level_db)
                writer.audio(speech, "speech", record.text, record.id)
                used += 1
            writer.gap(last=True)
        if used == 0:
            raise ToolkitError(f"{out_wav}: every utterance's audio is silent (all zeros); nothing to assemble")
        if silent:
            log.warning("%s: skipped %d silent utterance(s) (first: %s)", out_wav, len(silent),
                        ", ".join(list(silent)[:3]))
        timeline = {
            "format": TIMELINE_FORMAT, "audio": out_wav.name, "sample_rate": SAMPLE_RATE,
            "samples": writer.samples, "duration": writer.samples / SAMPLE_RATE, "config": asdict(config),
            "segments": [asdict(s) for s in writer.segments],
        }
        json_tmp.write_text(json.dumps(timeline, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out_wav)
        os.replace(json_tmp, json_path)
    finally:
        tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
    return writer.segments


def read_timeline(path: str | os.PathLike[str]) -> list[Segment]:
    """The segments of a timeline JSON written by `assemble_longform`; a malformed file is a one-line
    `ToolkitError` naming the file and the field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolkitError(f"{path}: timeline not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(" ".join(f"{path}: cannot be read as JSON ({e})".split())) from None
    if not isinstance(data, dict) or data.get("format") != TIMELINE_FORMAT:
        raise ToolkitError(f"{path}: not a timeline of format {TIMELINE_FORMAT} (an object with \"format\": "
                           f"{TIMELINE_FORMAT} and \"segments\")")
    if not isinstance(data.get("segments"), list):
        raise ToolkitError(f"{path}: segments: must be a list")
    segments, previous_end = [], 0.0
    for i, item in enumerate(data["segments"]):
        where = f"{path}: segments[{i}]"
        if not isinstance(item, dict):
            raise ToolkitError(f"{where}: must be an object")
        start, end, kind = item.get("start"), item.get("end"), item.get("kind")
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ToolkitError(f"{where}.{name}: must be a number of seconds, got {value!r}")
        if not previous_end - 1e-9 <= start <= end:
            raise ToolkitError(f"{where}: start {start} and end {end} must satisfy "
                               f"previous end ({previous_end}) <= start <= end")
        if kind not in SEGMENT_KINDS:
            raise ToolkitError(f"{where}.kind: must be one of {', '.join(SEGMENT_KINDS)}, got {kind!r}")
        text, source = item.get("text", ""), item.get("source", "")
        if not isinstance(text, str) or not isinstance(source, str):
            raise ToolkitError(f"{where}: text and source must be strings")
        segments.append(Segment(float(start), float(end), kind, text, source))
        previous_end = end
    return segments


# ------------------------------------------------------------------------------------------------------ video

# A 3x5 bitmap font for the frame counter: each glyph is 5 rows of 3 bits, most significant bit on the left.
_GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "s": (0, 3, 4, 1, 6), " ": (0, 0, 0, 0, 0),
}
_BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0],
                  [0, 0, 191]], dtype=np.uint8)  # 75% colour bars: white yellow cyan green magenta red blue


def _draw_text(frame: np.ndarray, text: str, x: int, y: int, scale: int) -> None:
    """Draw `text` (digits, '.', 's', ' ') in white on black into `frame` (H, W, 3) at (x, y), in place."""
    h, w = 5 * scale, (4 * len(text) + 1) * scale
    frame[y - scale:y + h + scale, x - scale:x + w] = 0
    for k, char in enumerate(text):
        rows = np.array(_GLYPHS[char])[:, None] >> np.array([2, 1, 0])[None, :] & 1  # (5, 3)
        glyph = np.kron(rows, np.ones((scale, scale), dtype=np.int64)).astype(bool)
        x0 = x + 4 * k * scale
        frame[y:y + h, x0:x0 + 3 * scale][glyph] = 255


def _test_pattern(size: tuple[int, int]) -> np.ndarray:
    """The static background (H, W, 3) uint8: colour bars over the top two thirds, a grey ramp below."""
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[: 2 * height // 3] = _BARS[np.arange(width) * len(_BARS) // width][None]
    ramp = (np.arange(width) * 255 // max(1, width - 1)).astype(np.uint8)
    frame[2 * height // 3:] = ramp[None, :, None]
    return frame


def make_demo_video(audio_wav: Path, out_path: Path, size: tuple[int, int] = (320, 240), fps: int = 10) -> Path:
    """A test-pattern video as long as `audio_wav`, with that audio as its soundtrack; returns `out_path`.

    Frames: colour bars, a square sweeping left to right once per second, a progress bar, and the frame number
    and time in seconds. `.mp4`: H.264 (libx264; MPEG-4 part 2 when PyAV has no H.264 encoder) and AAC; `.mkv`:
    the same codecs. The length is a whole number of frames, ceil(audio seconds * fps). Frames are encoded as
    they are drawn and the audio is read in blocks, interleaved by time, so any length fits in little memory.
    """
    import av

    out_path, audio_wav = Path(out_path), Path(audio_wav)
    if out_path.suffix.lower() not in (".mp4", ".mkv"):
        raise ToolkitError(f"{out_path}: the demo video must be .mp4 or .mkv, got {out_path.suffix or 'no suffix'!r}")
    width, height = size
    if width < 64 or height < 48 or width % 2 or height % 2 or not 1 <= fps <= 120:
        raise ToolkitError(f"{out_path}: size must be even and at least 64x48, fps in [1, 120]; got {size}, {fps}")
    try:
        audio = sf.SoundFile(audio_wav)
    except (OSError, RuntimeError) as e:
        raise ToolkitError(" ".join(f"{audio_wav}: cannot read the audio ({e})".split())) from None
    if audio.frames == 0:
        audio.close()
        raise ToolkitError(f"{audio_wav}: no audio samples; the demo video would be empty")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    background = _test_pattern(size)
    scale = max(1, height // 60)
    tmp = out_path.with_name(f".{out_path.name}.tmp{out_path.suffix}")
    try:
        with audio, av.open(str(tmp), "w") as container:
            options = {"preset": "veryfast", "crf": "28"} if codec == "libx264" else {}
            video = container.add_stream(codec, rate=fps, options=options)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            sound = container.add_stream("aac", rate=audio.samplerate, layout="mono")
            rate, total = audio.samplerate, audio.frames
            frames = math.ceil(total * fps / rate)
            chunk = sound.codec_context.frame_size or 1024
            read = 0
            for index in range(frames):
                # audio first, up to the end of this video frame, so the muxer never buffers much
                until = min(total, (index + 1) * rate // fps)
                while read < until:
                    block = audio.read(min(chunk, until - read), dtype="float32", always_2d=True).mean(axis=1)
                    aframe = av.AudioFrame.from_ndarray(block[None], format="fltp", layout="mono")
                    aframe.sample_rate, aframe.pts, aframe.time_base = rate, read, Fraction(1, rate)
                    container.mux(sound.encode(aframe))
                    read += len(block)
                picture = background.copy()
                t = index / fps
                side = height // 6
                x = int((t % 1.0) * (width - side))
                picture[height // 2 - side // 2:height // 2 + side - side // 2, x:x + side] = 255
                picture[height - 3 * scale:, : int(width * (index + 1) / frames)] = (255, 128, 0)
                _draw_text(picture, f"{index:05d}", 2 * scale, 2 * scale, scale)
                _draw_text(picture, f"{t:7.1f}s", 2 * scale, 9 * scale, scale)
                vframe = av.VideoFrame.from_ndarray(picture, format="rgb24")
                vframe.pts, vframe.time_base = index, Fraction(1, fps)
                container.mux(video.encode(vframe))
            container.mux(sound.encode(None))
            container.mux(video.encode(None))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
