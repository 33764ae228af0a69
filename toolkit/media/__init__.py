"""Long-form media input: stream the audio track of any file at 16 kHz mono (`stream`), find the speech in it
(`vad`), plan the chunks a recogniser decodes in batches (`chunks`), and both together for one input
(`speech_map`: `map_speech`, `read_chunks`).

    info = probe_media("talk.mkv")
    vad = make_vad(VadConfig())
    probs = speech_probabilities(stream_audio("talk.mkv"), vad)
    regions = speech_regions(probs, vad.window_seconds, VadConfig(), info.duration)
    chunks = plan_chunks(regions, probs, vad.window_seconds, max_chunk=20.0)
    for chunk, wave in zip(chunks, read_spans("talk.mkv", [(c.start, c.end) for c in chunks])):
        ...

Memory stays flat in the length of the input: audio is decoded block by block and only the per-window speech
probabilities (112,500 floats per hour) are kept for the whole file.
"""

from toolkit.media.chunks import Chunk, plan_chunks, split_region
from toolkit.media.speech_map import SpeechMap, map_speech, read_chunks
from toolkit.media.stream import MediaInfo, probe_media, read_spans, stream_audio
from toolkit.media.vad import (
    EnergyVad,
    Region,
    SileroVad,
    VadConfig,
    make_vad,
    speech_probabilities,
    speech_regions,
)

__all__ = [
    "Chunk",
    "EnergyVad",
    "MediaInfo",
    "Region",
    "SileroVad",
    "SpeechMap",
    "VadConfig",
    "make_vad",
    "map_speech",
    "plan_chunks",
    "probe_media",
    "read_chunks",
    "read_spans",
    "speech_probabilities",
    "speech_regions",
    "split_region",
    "stream_audio",
]
