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

Every failure is an `AudioLoadError` whose one-line message names the path and the reason: missing, a folder,
empty (0 bytes), no samples (0 frames), truncated (a WAV or a container whose header announces more audio than the
file holds, or a stream that stops decoding), corrupt, not audio, a video without an audio track, non-finite
samples, a segment past the end of the file. A segment `end` that overshoots the audio by at most
`MAX_OVERSHOOT` seconds is clipped to it (Kaldi's `extract-segments` rule); more is an error.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from toolkit.errors import ToolkitError

PathLike = str | os.PathLike[str]
MAX_OVERSHOOT = 0.5  # seconds a segment end may pass the end of its audio (clipped), as Kaldi's extract-segments
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


def _read_av(path: PathLike, hint: _NotForSoundfile | None) -> tuple[np.ndarray, int]:
    """`(frames, channels)` float32 + sample rate of the first audio stream, decoded whole with FFmpeg."""
    av = _import_av(path, hint)

    container = _av_open(path, hint)
    with container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # same layout and rate as the stream: only the sample format
        chunks: list[np.ndarray] = []
        rate = 0
        try:
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
        except Exception as e:  # noqa: BLE001 - a stream that stops decoding
            raise AudioLoadError(path, f"truncated or corrupt (ffmpeg: {_first_line(e)})") from None
        announced = None
        if stream.duration and stream.time_base:
            announced = float(stream.duration * stream.time_base)
        elif container.duration and not container.streams.video:
            announced = container.duration / av.time_base
    data = np.concatenate(chunks, axis=1).T if chunks else np.zeros((0, 1), np.float32)
    if data.shape[0] == 0 or not rate:
        raise AudioLoadError(path, "no audio samples (0 frames)")
    decoded = data.shape[0] / rate
    if announced is not None and decoded < announced - max(0.2, 0.02 * announced):
        raise AudioLoadError(path, f"truncated: the container announces {announced:.2f} s of audio, "
                                   f"only {decoded:.2f} s decode")
    return np.ascontiguousarray(data, dtype=np.float32), rate


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """`(N,)` float32 at `orig` Hz -> `(ceil(N * new / orig),)` float32 at `new` Hz (windowed sinc, torchaudio)."""
    if orig == new:
        return wave
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), orig, new).numpy()


# ------------------------------------------------------------------------------------------------- public


def load_audio(path: PathLike, sample_rate: int = 16000, offset: float = 0.0, end: float | None = None) -> np.ndarray:
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
    """Duration of `path` in seconds, from the header where possible (soundfile.info; PyAV's stream / container
    duration for containers), decoding only when no header says it. Raises `AudioLoadError` like `load_audio`
    (including for 0 frames and a truncated WAV)."""
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
    av = _import_av(path, hint)
    with _av_open(path, hint) as container:
        stream = container.streams.audio[0]
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration and not container.streams.video:
            return container.duration / av.time_base
    data, rate = _read_av(path, hint)
    return data.shape[0] / rate
