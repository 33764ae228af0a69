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

Failures are `AudioLoadError`s with a one-line message naming the file, with the reasons `load_audio` gives for
the same file: missing, empty, not media, no audio track, no samples. A stream that breaks while decoding (a
decoder error, NaN / inf samples, fewer samples than the audio stream announces, or a video container whose
streams stop well before the duration it announces) raises when that is found, naming the time reached; blocks
already yielded stay valid. A truncated WAV is refused from its header before any block. Formats that announce no
length (Ogg, raw AAC) cannot reveal a truncation at the end and simply stop there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.data.audio import (
    MAX_OVERSHOOT,
    AudioLoadError,
    PathLike,
    _av_open,
    _check_file,
    _first_line,
    _import_av,
    _wav_truncation,
)

__all__ = ["MediaInfo", "probe_media", "read_spans", "stream_audio"]


@dataclass
class MediaInfo:
    """What a media file holds, read from its headers.

    duration:     seconds of the first audio stream: from its header, else the container's duration when it holds
                  video, else decoded and counted
    sample_rate:  its native rate in Hz; channels: its channel count; codec: FFmpeg's decoder name ("aac", "flac")
    has_video:    the file also holds a video stream (cover art attached to an audio file does not count)
    """

    path: str
    duration: float
    sample_rate: int
    channels: int
    codec: str
    has_video: bool


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


def _announced_duration(container, stream) -> float | None:
    """Seconds of audio the file promises: the stream's own duration, else the container's when nothing but audio
    is inside (a video's container duration may be the video's). None when no header says."""
    import av

    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and not container.streams.video:
        return container.duration / av.time_base
    return None


def _to_mono(frame) -> np.ndarray:
    """A planar float32 frame -> `(n,)` float32, the mean of its channels."""
    planes = frame.to_ndarray()  # (channels, n)
    return planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)


class _AudioTrack:
    """Iterating it yields the first audio stream of an open container as `(n,)` float32 mono pieces at `rate` Hz,
    frame by frame. Every stream's packets are demuxed (only the audio ones decoded) and `reached` records how far
    in seconds they go, so a container cut short can be told from a video whose audio simply ends early."""

    def __init__(self, container, stream, rate: int) -> None:
        import av

        self.container, self.stream = container, stream
        # rate and sample format only: FFmpeg's own downmix weighs each channel 1/sqrt(2), not 1/channels
        self.resampler = av.AudioResampler(format="fltp", rate=rate)
        self.reached = 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        for packet in self.container.demux():
            if packet.pts is not None and packet.time_base:
                self.reached = max(self.reached, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if packet.stream.index == self.stream.index:
                for frame in packet.decode():
                    for out in self.resampler.resample(frame):
                        yield _to_mono(out)
        for out in self.resampler.resample(None):
            yield _to_mono(out)

    def truncation(self, decoded: float) -> str | None:
        """Why the file looks cut short after `decoded` seconds of audio, or None: the audio stream announces more
        than decoded, or (with video) the container announces more than any stream's packets reach."""
        import av

        announced = _announced_duration(self.container, self.stream)
        if announced is not None and decoded < announced - max(0.2, 0.02 * announced):
            return f"truncated: decoding stopped at {decoded:.2f} s, the file announces {announced:.2f} s of audio"
        if self.container.duration and self.container.streams.video:
            total = self.container.duration / av.time_base
            reached = self.reached - (self.container.start_time or 0) / av.time_base
            if reached < total - max(1.0, 0.02 * total):
                return f"truncated: the streams stop at {reached:.2f} s, the container announces {total:.2f} s"
        return None


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
        duration = _announced_duration(container, stream)
        if duration is None and container.duration:  # a video container: its overall length
            duration = container.duration / av.time_base
        info = MediaInfo(path=str(path), duration=duration or 0.0, sample_rate=int(stream.sample_rate or 0),
                         channels=int(stream.channels or 0), codec=stream.codec_context.name,
                         has_video=_has_video(container))
    if duration is None:
        rate = info.sample_rate or 16000
        info.duration = sum(block.size for block in stream_audio(path, rate)) / rate
    if info.duration <= 0:
        raise AudioLoadError(path, "no audio samples (0 frames)")
    return info


def stream_audio(path: PathLike, sample_rate: int = 16000, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decode the first audio stream of `path` as float32 mono blocks at `sample_rate` Hz.

    Every block holds exactly `round(block_seconds * sample_rate)` samples except the last, which holds the rest
    (1 sample or more). Memory is O(block). Raises `AudioLoadError` before the first block for a file that cannot be
    opened or has no audio track, after the blocks already decoded for a stream that breaks (naming the time
    reached), and for a stream with no samples at all.
    """
    block = _block_samples(block_seconds, sample_rate)
    with _open_container(path) as container:
        track = _AudioTrack(container, container.streams.audio[0], sample_rate)
        pieces = iter(track)
        out, filled, emitted = np.empty(block, np.float32), 0, 0  # the block being filled; samples yielded
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                break
            except Exception as e:  # noqa: BLE001 - any decoder / demuxer failure midway
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
        if emitted + filled == 0:
            raise AudioLoadError(path, "no audio samples (0 frames)")
        truncated = track.truncation((emitted + filled) / sample_rate)
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


def read_spans(path: PathLike, spans: Sequence[tuple[float, float]], sample_rate: int = 16000,
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
