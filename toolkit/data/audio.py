"""Reading audio files as the float32 mono waveforms at 16 kHz that the speech encoders expect.

    wave = load_audio("utt.flac")                           # (N,) float32, mono, 16 kHz
    wave = load_audio("talk.mkv", offset=12.5, end=15.0)    # one segment (Kaldi `segments`), in seconds
    seconds = audio_duration("utt.flac")                     # from the header, no decoding

Two decoders, one result:

    soundfile (libsndfile)  wav / flac / ogg (vorbis, opus) / mp3 / aiff / au / w64 / rf64 / caf ... : tried first
    PyAV (FFmpeg)           containers (mp4, m4a, mkv, webm, mov, avi ...) and anything libsndfile cannot open

Integer PCM (8/16/24/32-bit) is scaled to [-1, 1) by its bit depth, float files are kept as they are; any channel
count is averaged to mono, and any sample rate is resampled with `torchaudio.functional.resample` (windowed sinc,
the same for both decoders). NaN / inf samples are REFUSED (an `AudioLoadError`), never replaced: a file holding
them is broken, and zeros in their place would train on silence labelled with speech.

PyAV puts a container's audio on the file's own timeline (`_AvAudio`, which `toolkit.media.stream` streams with
too): sample n lies n / rate seconds after the container's start, so audio that starts after the picture begins
with that much silence, and an `offset` means the same second of a video as its picture does. An audio packet the
decoder refuses is skipped and its time filled with silence, as FFmpeg does; one warning per file names the count
and the seconds lost.

Every failure is an `AudioLoadError` whose one-line message names the path and the reason: missing, a folder,
empty (0 bytes), no samples (0 frames), truncated (a WAV or a container whose header announces more audio than the
file holds, or a stream that stops decoding), corrupt (not one audio packet decodes), not audio, a video without
an audio track, non-finite samples, a segment past the end of the file. A segment `end` that overshoots the audio
by at most `MAX_OVERSHOOT` seconds is clipped to it (Kaldi's `extract-segments` rule); more is an error.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from toolkit.errors import ToolkitError

PathLike = str | os.PathLike[str]
log = logging.getLogger(__name__)
SAMPLE_RATE = 16000  # Hz: the rate speech is read, synthesised, detected and recognised at
MAX_OVERSHOOT = 0.5  # seconds a segment end may pass the end of its audio (clipped), as Kaldi's extract-segments
# Seconds a decoded frame may start past the end of the audio before it with no silence put in between: above the
# 1 ms rounding of Matroska / WebM timestamps (frames seen up to 0.7 ms ahead; codec priming only ever starts early),
# below one lost AAC / MP3 / Opus packet (10 to 64 ms), so that timestamps never shift the audio by more than this.
GAP_TOLERANCE = 0.005
_WARNED: set[tuple[str, int, float | None]] = set()  # (path, packets skipped, first time) of the warnings given
# Suffixes decoded by PyAV directly (libsndfile cannot read these containers).
CONTAINER_SUFFIXES = frozenset(
    {".mp4", ".m4a", ".m4b", ".mkv", ".mka", ".webm", ".mov", ".avi", ".aac", ".wma", ".wmv", ".3gp", ".ts",
     ".flv", ".amr", ".ac3", ".mpg", ".mpeg"}
)
# libsndfile errors that mean "not a format I can read" (then PyAV decides). Its MP3 reader (mpg123) reports content
# it cannot parse as "does not exist or is not a regular file": `_check_file` has shown that the file is one.
_SF_UNRECOGNISED = ("format not recognised", "unimplemented format", "unknown format", "not a regular file")


class AudioLoadError(ToolkitError):
    """An audio file that cannot be read; `path` and `reason` are kept for reports."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: cannot load audio: {self.reason}")


# ---------------------------------------------------------------------------------------------- helpers


def _check_file(path: PathLike) -> None:
    """Refuse a missing path, a folder, an unreadable or an empty file before any decoder sees it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioLoadError(path, "file not found") from None
    except OSError as e:
        raise AudioLoadError(path, f"cannot be read ({e.strerror or e})") from None
    if Path(path).is_dir():
        raise AudioLoadError(path, "is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise AudioLoadError(path, "permission denied")
    if st.st_size == 0:
        raise AudioLoadError(path, "empty file (0 bytes)")


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(getattr(e, "error_string", None) or getattr(e, "strerror", None) or e).strip().splitlines()
    return (text[0][:limit] if text else type(e).__name__).rstrip(".")


def _wav_truncation(path: PathLike) -> str | None:
    """For a RIFF/WAVE file: a reason when its `data` chunk announces more bytes than the file holds, else None.

    libsndfile silently reads what is there; a size of 0 or 0xFFFFFFFF (streamed writers) is not checked.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(f.fileno()).st_size
        byte_rate, pos = 0, 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, n = struct.unpack("<4sI", f.read(8))
            if chunk == b"fmt ":
                fmt = f.read(12)
                byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) == 12 else 0
            elif chunk == b"data":
                have = size - pos - 8
                if n in (0, 0xFFFFFFFF) or n - have <= max(16, byte_rate // 100):  # 10 ms slack
                    return None
                if byte_rate:
                    return (f"truncated: the WAV header announces {n / byte_rate:.2f} s of audio, "
                            f"the file holds {have / byte_rate:.2f} s")
                return f"truncated: the WAV header announces {n} bytes of audio, the file holds {have}"
            pos += 8 + n + (n & 1)
    return None


def _bounds(path: PathLike, frames: int, rate: int, offset: float, end: float | None) -> tuple[int, int]:
    """`[start, stop)` frames of the segment `offset..end` seconds (end None: to the end of the audio)."""
    if frames <= 0:
        raise AudioLoadError(path, "no audio samples (0 frames)")
    start = int(round(offset * rate))
    stop = frames if end is None else int(round(end * rate))
    total = frames / rate
    if start >= frames:
        raise AudioLoadError(path, f"segment start {offset:.2f} s is past the end of the audio ({total:.2f} s)")
    if stop > frames:
        if end is not None and end - total > MAX_OVERSHOOT:
            raise AudioLoadError(path, f"segment end {end:.2f} s is past the end of the audio ({total:.2f} s)")
        stop = frames
    if stop <= start:
        raise AudioLoadError(path, f"empty segment ({offset:.2f} s to {end} s)")
    return start, stop


def _check_segment(offset: float, end: float | None) -> None:
    if not (np.isfinite(offset) and offset >= 0):
        raise ValueError(f"offset must be a finite number of seconds >= 0, got {offset!r}")
    if end is not None and not (np.isfinite(end) and end > offset):
        raise ValueError(f"end must be None or a finite number of seconds > offset ({offset}), got {end!r}")


# ---------------------------------------------------------------------------------------------- decoders


class _NotForSoundfile(Exception):
    """libsndfile could not open the file: try PyAV (the reason is kept in case PyAV fails too)."""

    def __init__(self, reason: str, recognised: bool) -> None:
        super().__init__(reason)
        self.reason, self.recognised = reason, recognised


def _read_soundfile(path: PathLike, offset: float, end: float | None) -> tuple[np.ndarray, int]:
    """`(frames, channels)` float32 + sample rate, reading only the segment's frames."""
    try:
        f = sf.SoundFile(path)
    except sf.LibsndfileError as e:
        message = _first_line(e)
        raise _NotForSoundfile(message, not any(s in message.lower() for s in _SF_UNRECOGNISED)) from None
    except Exception as e:  # noqa: BLE001 - e.g. a format libsndfile knows but refuses (RAW without parameters)
        raise _NotForSoundfile(f"{type(e).__name__}: {_first_line(e)}", False) from None
    with f:
        truncated = _wav_truncation(path) if f.format in ("WAV", "WAVEX") else None
        if truncated:
            raise AudioLoadError(path, truncated)
        rate = f.samplerate
        start, stop = _bounds(path, f.frames, rate, offset, end)
        try:
            if start:
                f.seek(start)
            data = f.read(stop - start, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - the header opened but the data does not decode
            raise AudioLoadError(path, f"truncated or corrupt (libsndfile: {_first_line(e)})") from None
    if len(data) < (stop - start) - rate // 100:
        raise AudioLoadError(path, f"truncated: the header announces {(stop - start) / rate:.2f} s of audio, "
                                   f"only {len(data) / rate:.2f} s decode")
    return data, rate


def _import_av(path: PathLike, hint: _NotForSoundfile | None):  # -> the av module
    try:
        import av
    except ImportError:
        why = f"libsndfile cannot read it ({hint.reason}) and " if hint is not None else ""
        raise AudioLoadError(path, f"{why}PyAV is not installed to decode it: pip install 'av>=14,<19'") from None
    return av


def _av_open(path: PathLike, hint: _NotForSoundfile | None):  # -> av container with an audio stream
    av = _import_av(path, hint)

    try:
        container = av.open(str(path))
    except Exception as e:  # noqa: BLE001 - FFmpeg cannot open it either
        if hint is not None and hint.recognised:
            raise AudioLoadError(path, f"truncated or corrupt (libsndfile: {hint.reason})") from None
        if hint is not None or isinstance(e, av.error.InvalidDataError):
            known = Path(path).suffix.lower() in CONTAINER_SUFFIXES
            why = "truncated or corrupt" if known else "not audio, or truncated / corrupt"
            raise AudioLoadError(path, f"{why} (ffmpeg: {_first_line(e)})") from None
        raise AudioLoadError(path, f"cannot be opened (ffmpeg: {_first_line(e)})") from None
    if not container.streams.audio:
        fmt = container.format.name
        video = [s.codec_context.name for s in container.streams.video]
        container.close()
        if hint is not None and hint.recognised:
            raise AudioLoadError(path, f"truncated or corrupt (libsndfile: {hint.reason})")
        if not video or fmt == "tty" or fmt.endswith("_pipe") or fmt.startswith("image2"):
            raise AudioLoadError(path, "not audio (format not recognised)")
        raise AudioLoadError(path, f"no audio track (a video file with only {', '.join(video)} video)")
    return container


def _shape(frame) -> tuple[str, str, int]:
    """What an `av.AudioResampler` needs to stay the same from frame to frame: format, layout, rate."""
    return frame.format.name, frame.layout.name, frame.sample_rate


def _stream_start(container, stream) -> float:
    """Seconds from the container's start to the audio stream's start, from the headers (0 when none says)."""
    import av

    if stream.start_time is None or not stream.time_base:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base) - (container.start_time or 0) / av.time_base)


def _announced_duration(container, stream) -> float | None:
    """Seconds of audio the file promises: the stream's own duration, else the container's when nothing but audio
    is inside (a video's container duration may be the video's). None when no header says."""
    import av

    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and not container.streams.video:
        return container.duration / av.time_base
    return None


def _announced_end(container, stream) -> float | None:
    """Where the audio ends on the file's timeline by its headers (`_stream_start` + `_announced_duration`)."""
    duration = _announced_duration(container, stream)
    return None if duration is None else _stream_start(container, stream) + duration


class _AvAudio:
    """The first audio stream of an open container, decoded onto the file's timeline.

    Iterating yields `(channels, n)` float32 pieces at `rate` Hz (None: the stream's own rate, kept in `rate` once
    known) such that sample k of their concatenation lies k / rate seconds after the container's start
    (`container.start_time`: MPEG-TS starts at large values, so no absolute time is ever used). Wherever a decoded
    frame starts (`frame.time`) more than `GAP_TOLERANCE` seconds after the audio so far ends, silence fills the gap
    first: a stream that starts after the container (sound 2 s after the picture), packets lost. Frames that start
    early (codec priming, millisecond-rounded timestamps) are kept whole, never trimmed.

    A packet the decoder refuses is skipped: counted in `skipped`, its duration added to `lost` (seconds), the first
    one's time kept in `first_skip`. The next frame's gap fills its place; skipped packets after the last frame pad
    the end to where they end. When the iteration ends (or is abandoned) after skips, a warning names the file, the
    count, the seconds lost and the first time, once per process (a second pass over the file, as the subtitler
    makes, or the next epoch's read repeats nothing); when no frame decodes at all it raises `AudioLoadError`.
    Every stream's packets are demuxed (only the audio ones decoded) and `reached` records how far they go on the
    timeline, so that `truncation()` can tell a container cut short from a video whose audio simply ends early.
    """

    def __init__(self, path: PathLike, container, rate: int | None = None) -> None:
        import av

        self.path, self.container, self.stream, self.rate = path, container, container.streams.audio[0], rate
        # rate and sample format only: FFmpeg's own downmix weighs each channel 1/sqrt(2), not 1/channels
        self.resampler = av.AudioResampler(format="fltp", rate=rate)
        self.origin = (container.start_time or 0) / av.time_base  # seconds: where the timeline's 0 is
        self.end = 0.0  # seconds on the timeline the audio so far (silence included) reaches
        self.reached = 0.0  # seconds on the timeline the packets of any stream reach
        self.frames = self.skipped = 0
        self.lost, self.first_skip = 0.0, None

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        audio, error = self.stream.index, ""
        template, layout = None, None  # the latest frame (what silence looks like); the first one's channel layout
        skip_end = None  # where the packets skipped since the last frame end on the timeline
        try:
            for packet in self.container.demux():
                start = None
                if packet.pts is not None and packet.time_base:
                    start = float(packet.pts * packet.time_base) - self.origin
                    self.reached = max(self.reached, start + float((packet.duration or 0) * packet.time_base))
                if packet.stream.index != audio:
                    continue
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:  # a damaged packet: FFmpeg skips it and goes on, and so do we
                    if packet.size:
                        at = self.end if start is None else start
                        duration = float((packet.duration or 0) * packet.time_base) if packet.time_base else 0.0
                        self.skipped, self.lost, error = self.skipped + 1, self.lost + duration, error or _first_line(e)
                        self.first_skip = at if self.first_skip is None else self.first_skip
                        skip_end = at + duration if skip_end is None else max(skip_end, at + duration)
                    continue
                for frame in frames:
                    if not frame.samples:
                        continue
                    if template is not None and _shape(frame) != _shape(template):
                        # a mid-stream change of rate / layout / format: FFmpeg reconfigures its filters, and so
                        # do we, keeping the output's rate and channels
                        yield from self._emit(None)
                        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
                    template, skip_end = frame, None
                    layout, self.rate = layout or frame.layout, self.rate or frame.sample_rate
                    if frame.time is not None:
                        yield from self._silence(template, frame.time - self.origin)
                    yield from self._emit(frame)
                    self.frames += 1
                    self.end += frame.samples / frame.sample_rate
            if template is not None and skip_end is not None:
                yield from self._silence(template, skip_end)
            yield from self._emit(None)
            if not self.frames:
                raise AudioLoadError(self.path, f"corrupt: none of its {self.skipped} audio packets decodes "
                                                f"(ffmpeg: {error})" if self.skipped else "no audio samples (0 frames)")
        finally:
            warned = (str(self.path), self.skipped, self.first_skip)
            if self.skipped and self.frames and warned not in _WARNED:
                _WARNED.add(warned)
                log.warning("%s: %d undecodable audio packet%s skipped, %.3f s of audio lost (filled with silence; "
                            "first at %.2f s)", self.path, self.skipped, "s"[:self.skipped != 1], self.lost,
                            self.first_skip)

    def _emit(self, frame) -> Iterator[np.ndarray]:
        """Resample `frame` (None: flush) -> `(channels, n)` float32 pieces."""
        for out in self.resampler.resample(frame):
            yield out.to_ndarray()

    def _silence(self, like, until: float) -> Iterator[np.ndarray]:
        """Zeros from `self.end` to `until` (seconds on the timeline) when that gap passes `GAP_TOLERANCE`, made as
        frames shaped like the frame `like` (format, layout, rate) and at most a second each."""
        import av

        rate = like.sample_rate
        missing = round((until - self.end) * rate) if until - self.end > GAP_TOLERANCE else 0
        fill = b"\x80" if like.format.name.startswith("u8") else b"\0"  # unsigned 8-bit silence is 128
        while missing > 0:
            n = min(missing, rate)
            silence = av.AudioFrame(format=like.format.name, layout=like.layout, samples=n)
            silence.sample_rate = rate
            for plane in silence.planes:
                plane.update(fill * plane.buffer_size)
            yield from self._emit(silence)
            missing -= n
            self.end += n / rate

    def truncation(self) -> str | None:
        """Why the file looks cut short once iterated, or None: the audio stream announces more than decoded, or
        (with video) the container announces more than any stream's packets reach."""
        import av

        announced = _announced_end(self.container, self.stream)
        if announced is not None and self.end < announced - max(0.2, 0.02 * announced):
            return f"truncated: decoding stopped at {self.end:.2f} s, the file announces audio up to {announced:.2f} s"
        if self.container.duration and self.container.streams.video:
            total = self.container.duration / av.time_base
            if self.reached < total - max(1.0, 0.02 * total):
                return f"truncated: the streams stop at {self.reached:.2f} s, the container announces {total:.2f} s"
        return None


def _read_av(path: PathLike, hint: _NotForSoundfile | None) -> tuple[np.ndarray, int]:
    """`(frames, channels)` float32 + sample rate of the first audio stream on the file's timeline (`_AvAudio`, at
    its own rate), decoded whole with FFmpeg."""
    with _av_open(path, hint) as container:
        track = _AvAudio(path, container)
        try:
            chunks = list(track)
        except AudioLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - a stream that stops decoding
            raise AudioLoadError(path, f"truncated or corrupt (ffmpeg: {_first_line(e)})") from None
        truncated = track.truncation()
    if truncated:
        raise AudioLoadError(path, truncated)
    return np.ascontiguousarray(np.concatenate(chunks, axis=1).T, dtype=np.float32), int(track.rate)


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """`(N,)` float32 at `orig` Hz -> `(ceil(N * new / orig),)` float32 at `new` Hz (windowed sinc, torchaudio)."""
    if orig == new:
        return wave
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig, new).numpy()


# ------------------------------------------------------------------------------------------------- public


def load_audio(path: PathLike, sample_rate: int = SAMPLE_RATE, offset: float = 0.0,
               end: float | None = None) -> np.ndarray:
    """Decode `path` to a `(N,)` float32 mono waveform at `sample_rate` Hz (see the module docstring).

    `offset` / `end` (seconds) select a segment; soundfile reads only its frames, PyAV decodes the whole stream
    and slices. Raises `AudioLoadError` (one line naming the path) for every unreadable input.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    _check_segment(offset, end)
    _check_file(path)
    container, hint = Path(path).suffix.lower() in CONTAINER_SUFFIXES, None
    if not container:
        try:
            data, rate = _read_soundfile(path, offset, end)
        except _NotForSoundfile as e:
            hint = e
    if container or hint is not None:
        data, rate = _read_av(path, hint)
        start, stop = _bounds(path, data.shape[0], rate, offset, end)
        data = data[start:stop]
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    bad = int(mono.size - np.count_nonzero(np.isfinite(mono)))
    if bad:
        raise AudioLoadError(path, f"{bad} of {mono.size} samples are NaN or infinite (refused: re-encode the file)")
    return np.ascontiguousarray(resample(mono, rate, sample_rate), dtype=np.float32)


def audio_duration(path: PathLike) -> float:
    """Duration of `path` in seconds, the length of what `load_audio` returns: from the header where possible
    (soundfile.info; for containers, where PyAV's stream start + duration, or the container's duration, puts the
    audio's end on the file's timeline), decoding only when no header says it. Raises `AudioLoadError` like
    `load_audio` (including for 0 frames and a truncated WAV)."""
    _check_file(path)
    hint = None
    if Path(path).suffix.lower() not in CONTAINER_SUFFIXES:
        try:
            info = sf.info(str(path))
        except sf.LibsndfileError as e:
            message = _first_line(e)
            hint = _NotForSoundfile(message, not any(s in message.lower() for s in _SF_UNRECOGNISED))
        except Exception as e:  # noqa: BLE001
            hint = _NotForSoundfile(f"{type(e).__name__}: {_first_line(e)}", False)
        else:
            truncated = _wav_truncation(path) if info.format in ("WAV", "WAVEX") else None
            if truncated:
                raise AudioLoadError(path, truncated)
            if info.frames <= 0 or info.samplerate <= 0:
                raise AudioLoadError(path, "no audio samples (0 frames)")
            return info.frames / info.samplerate
    with _av_open(path, hint) as container:
        end = _announced_end(container, container.streams.audio[0])
    if end is not None:
        return end
    data, rate = _read_av(path, hint)
    return data.shape[0] / rate
