"""Streaming audio out of media files of any length: probe, decode in fixed-size blocks, cut spans in one pass.

    info = probe_media("talk.mkv")                  # MediaInfo(duration=3601.2, sample_rate=48000, channels=2, ...)
    for block in stream_audio("talk.mkv"):          # (480_000,) float32 blocks, 16 kHz mono; the last may be shorter
        ...
    for wave in read_spans("talk.mkv", [(12.0, 19.5), (31.2, 44.0)]):   # the samples of each span, in order
        ...

Every format goes through PyAV (FFmpeg): wav / flac / mp3 / ogg as well as the audio track of a video container
(mp4, mkv, webm, mov ...). Only the first audio stream is decoded (video packets are demuxed and dropped, never
decoded). `av.AudioResampler` converts it to planar float32 at the requested rate (FFmpeg's swresample, a windowed
sinc) and the channels are averaged, as `load_audio` does (FFmpeg's own downmix would weigh each 1/sqrt(2)). Memory
is O(block): nothing keeps the whole waveform, so an hour of audio costs what a block costs.

All times are on the file's own timeline, 0 being the container's start: sample n of what `stream_audio` yields
lies n / sample_rate seconds into the file, and spans and `MediaInfo` times use the same clock. Audio that starts
after the container (sound 2 s after the picture) is preceded by silence, and so is every frame that starts past
the audio before it (the decoding is `toolkit.data.audio._AvAudio`, shared with `load_audio`). An audio packet the
decoder refuses is skipped and its time filled with silence, as FFmpeg does; one warning per file says how many
packets and seconds were lost.

Failures are `AudioLoadError`s with a one-line message naming the file, with the reasons `load_audio` gives for
the same file: missing, empty, not media, no audio track, no samples, no audio packet that decodes. A stream that
breaks while decoding (a demuxer error, NaN / inf samples, less audio than the audio stream announces, or a video
container whose streams stop well before the duration it announces) raises when that is found, naming the time
reached; blocks already yielded stay valid. A truncated WAV is refused from its header before any block. Formats
that announce no length (Ogg, raw AAC) cannot reveal a truncation at the end and simply stop there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.data.audio import (
    MAX_OVERSHOOT,
    SAMPLE_RATE,
    AudioLoadError,
    PathLike,
    _announced_end,
    _av_open,
    _AvAudio,
    _check_file,
    _first_line,
    _import_av,
    _stream_start,
    _wav_truncation,
)

__all__ = ["MediaInfo", "probe_media", "read_spans", "stream_audio"]


@dataclass
class MediaInfo:
    """What a media file holds, read from its headers. Times are seconds on the file's timeline (0 = the container's
    start), the one `stream_audio` yields samples on.

    duration:     where the first audio stream ends: its start + its length from the headers, else the container's
                  duration when it holds video, else decoded and counted
    sample_rate:  its native rate in Hz; channels: its channel count; codec: FFmpeg's decoder name ("aac", "flac")
    has_video:    the file also holds a video stream (cover art attached to an audio file does not count)
    start:        where the audio stream starts by its header (2.0 for sound that begins 2 s after the picture; a
                  few ms less with codec priming); `stream_audio` yields silence before it
    """

    path: str
    duration: float
    sample_rate: int
    channels: int
    codec: str
    has_video: bool
    start: float = 0.0


# ---------------------------------------------------------------------------------------------- helpers


def _open_container(path: PathLike):  # -> an av container holding at least one audio stream
    """Check the file, then open it with PyAV; every refusal is an `AudioLoadError` naming `path`."""
    _check_file(path)
    truncated = _wav_truncation(path)
    if truncated:
        raise AudioLoadError(path, truncated)
    return _av_open(path, None)


def _has_video(container) -> bool:
    import av

    return any(not (s.disposition & av.stream.Disposition.attached_pic) for s in container.streams.video)


def _to_mono(planes: np.ndarray) -> np.ndarray:
    """`(channels, n)` float32 -> `(n,)` float32, the mean of its channels."""
    return planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)


def _block_samples(block_seconds: float, sample_rate: int) -> int:
    """Validate the arguments of `stream_audio`; -> samples per block."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    block = round(block_seconds * sample_rate) if np.isfinite(block_seconds) else 0
    if block < 1:
        raise ValueError(f"block_seconds must make at least one sample at {sample_rate} Hz, got {block_seconds!r}")
    return block


# ------------------------------------------------------------------------------------------------- public


def probe_media(path: PathLike) -> MediaInfo:
    """Describe the first audio stream of `path` from its headers (decoding, in O(1) memory, only when no header
    states the duration). Raises `AudioLoadError` for a missing, empty, unreadable or non-media file, a file
    without an audio track, and one with zero seconds of audio."""
    av = _import_av(path, None)
    with _open_container(path) as container:
        stream = container.streams.audio[0]
        duration = _announced_end(container, stream)
        if duration is None and container.duration:  # a video container: its overall length
            duration = container.duration / av.time_base
        info = MediaInfo(path=str(path), duration=duration or 0.0, sample_rate=int(stream.sample_rate or 0),
                         channels=int(stream.channels or 0), codec=stream.codec_context.name,
                         has_video=_has_video(container), start=_stream_start(container, stream))
    if duration is None:
        rate = info.sample_rate or SAMPLE_RATE
        info.duration = sum(block.size for block in stream_audio(path, rate)) / rate
    if info.duration <= 0:
        raise AudioLoadError(path, "no audio samples (0 frames)")
    return info


def stream_audio(path: PathLike, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decode the first audio stream of `path` as float32 mono blocks at `sample_rate` Hz.

    Sample n lies n / sample_rate seconds after the container's start (silence where the audio has none: before a
    late start, in place of undecodable packets). Every block holds exactly `round(block_seconds * sample_rate)`
    samples except the last, which holds the rest (1 sample or more). Memory is O(block). Raises `AudioLoadError`
    before the first block for a file that cannot be opened or has no audio track, after the blocks already decoded
    for a stream that breaks (naming the time reached), and for a stream of which nothing decodes.
    """
    block = _block_samples(block_seconds, sample_rate)
    with _open_container(path) as container:
        track = _AvAudio(path, container, sample_rate)
        pieces = iter(track)
        out, filled, emitted = np.empty(block, np.float32), 0, 0  # the block being filled; samples yielded
        while True:
            try:
                piece = _to_mono(next(pieces))
            except StopIteration:
                break
            except AudioLoadError:
                raise
            except Exception as e:  # noqa: BLE001 - any demuxer / resampler failure midway
                reached = (emitted + filled) / sample_rate
                raise AudioLoadError(path, f"decoding failed at {reached:.2f} s (ffmpeg: {_first_line(e)})") from None
            while piece.size:
                take = min(block - filled, piece.size)
                out[filled:filled + take] = piece[:take]
                filled, piece = filled + take, piece[take:]
                if filled == block:
                    _check_finite(path, out, emitted, sample_rate)
                    yield out
                    out, filled, emitted = np.empty(block, np.float32), 0, emitted + block
        truncated = track.truncation()
        if truncated:
            raise AudioLoadError(path, truncated)
        if filled:
            _check_finite(path, out[:filled], emitted, sample_rate)
            yield out[:filled].copy()


def _check_finite(path: PathLike, block: np.ndarray, offset: int, sample_rate: int) -> None:
    finite = np.isfinite(block)
    if not finite.all():
        at = (offset + int(np.argmin(finite))) / sample_rate
        raise AudioLoadError(path, f"NaN or infinite samples at {at:.2f} s (refused: re-encode the file)")


def _span_samples(spans: Sequence[tuple[float, float]], sample_rate: int) -> list[tuple[int, int]]:
    """Validate `(start, end)` spans in seconds (finite, 0 <= start < end, sorted by start) -> sample indices."""
    bounds: list[tuple[int, int]] = []
    previous = -1.0
    for i, (start, end) in enumerate(spans):
        if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
            raise ValueError(f"span {i}: need finite seconds with 0 <= start < end, got ({start!r}, {end!r})")
        if start < previous:
            raise ValueError(f"span {i}: spans must be sorted by start ({start} s comes after {previous} s)")
        previous = start
        bounds.append((round(start * sample_rate), max(round(end * sample_rate), round(start * sample_rate) + 1)))
    return bounds


def read_spans(path: PathLike, spans: Sequence[tuple[float, float]], sample_rate: int = SAMPLE_RATE,
               block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield the float32 mono samples at `sample_rate` of each `(start, end)` span (seconds), in the given order.

    One streaming pass over `stream_audio`: spans must be sorted by start and may overlap. Decoding stops after the
    last span. Memory is O(block + longest span): only the samples from the earliest unserved span's start on are
    kept. An `end` past the end of the audio by at most `MAX_OVERSHOOT` seconds is clipped to it; a span starting
    at or after the end, or overshooting by more, is an `AudioLoadError`. Each span yields
    `round(end * sample_rate) - round(start * sample_rate)` samples when fully inside the audio.
    """
    bounds = _span_samples(spans, sample_rate)
    if not bounds:
        return
    buffer = np.zeros(0, np.float32)
    buffer_start = 0  # index in the whole stream of buffer[0]
    k = 0
    for block in stream_audio(path, sample_rate, block_seconds):
        buffer = np.concatenate([buffer, block]) if buffer.size else block
        buffer_end = buffer_start + buffer.size
        while k < len(bounds) and bounds[k][1] <= buffer_end:
            start, end = bounds[k]
            yield buffer[start - buffer_start:end - buffer_start].copy()
            k += 1
        if k == len(bounds):
            return
        keep_from = min(max(bounds[k][0], buffer_start), buffer_end)  # nothing before the next span is needed
        buffer, buffer_start = buffer[keep_from - buffer_start:], keep_from
    total = buffer_start + buffer.size
    for start, end in bounds[k:]:
        if start >= total:
            raise AudioLoadError(path, f"span start {start / sample_rate:.2f} s is past the end of the audio "
                                       f"({total / sample_rate:.2f} s)")
        if end - total > MAX_OVERSHOOT * sample_rate:
            raise AudioLoadError(path, f"span end {end / sample_rate:.2f} s is past the end of the audio "
                                       f"({total / sample_rate:.2f} s)")
        yield buffer[start - buffer_start:min(end, total) - buffer_start].copy()
