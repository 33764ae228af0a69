"""Speech regions -> chunks: the spans of audio that are decoded, in batches, as one utterance each.

    chunks = plan_chunks(regions, probs, vad.window_seconds, max_chunk=20.0, merge_gap=1.0)
    waves = read_spans(path, [(c.start, c.end) for c in chunks])

A recogniser trained on utterances of a few seconds to a few tens of seconds decodes best, and batches best, on
inputs of that length. So regions closer than `merge_gap` share a chunk while it stays within `max_chunk`, and a
region longer than `max_chunk` is cut where the speech probability dips lowest (a pause, or the quietest stretch
there is) in the later part of each `max_chunk` span, keeping pieces at least `min_piece` long where the region
allows it. Every chunk keeps the regions it covers, so word times can later be snapped to region edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from toolkit.media.vad import Region

__all__ = ["Chunk", "plan_chunks", "split_region"]


@dataclass
class Chunk:
    """One span of audio decoded as one utterance, `[start, end)` in seconds, and the speech regions inside it
    (sorted, disjoint, within `[start, end]`; the first starts at `start`, the last ends at `end`)."""

    start: float
    end: float
    regions: list[Region] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


def split_region(region: Region, probs: np.ndarray, window_seconds: float, max_chunk: float,
                 min_piece: float = 3.0) -> list[Region]:
    """Cut `region` into consecutive pieces no longer than `max_chunk` seconds.

    Each cut is placed at the centre of the lowest-probability window (the latest one on ties) among those whose
    centre lies in `[piece start + max(max_chunk / 2, min_piece), piece start + max_chunk]` and leaves at least
    `min_piece` for the rest of the region; `min_piece` is lowered to `max_chunk / 2` when larger, so a cut always
    exists. Windows past the end of `probs` count as probability 1 (never preferred).
    """
    if not max_chunk > 0:
        raise ValueError(f"max_chunk must be > 0 seconds, got {max_chunk!r}")
    min_piece = min(min_piece, max_chunk / 2)
    pieces: list[Region] = []
    start = region.start
    while region.end - start > max_chunk:
        lo = start + max(max_chunk / 2, min_piece)
        hi = min(start + max_chunk, region.end - min_piece)
        first = int(np.ceil(lo / window_seconds - 0.5))  # windows with centre (i + 0.5) * window_seconds in [lo, hi]
        last = int(np.floor(hi / window_seconds - 0.5))
        if last < first:  # windows wider than the allowed span: cut at its end
            cut = hi
        else:
            candidates = np.ones(last - first + 1, np.float32)
            inside = probs[first:last + 1]
            candidates[:inside.size] = inside
            best = last - int(np.argmin(candidates[::-1]))  # the latest of the lowest
            cut = (best + 0.5) * window_seconds
        pieces.append(Region(start, cut))
        start = cut
    pieces.append(Region(start, region.end))
    return pieces


def plan_chunks(regions: Sequence[Region], probs: np.ndarray, window_seconds: float, max_chunk: float = 20.0,
                merge_gap: float = 1.0, min_piece: float = 3.0) -> list[Chunk]:
    """Group sorted, disjoint speech `regions` (seconds) into chunks no longer than `max_chunk` seconds.

    `probs` `(W,)` are the per-window speech probabilities the regions came from (window i covers
    `[i, i+1) * window_seconds`); they place the cuts in regions longer than `max_chunk` (see `split_region`).
    Walking the pieces in order, a piece joins the current chunk when the gap to it is shorter than `merge_gap` and
    the chunk stays within `max_chunk`; otherwise it starts a new chunk. The chunks are sorted and disjoint (the
    pieces of a cut region may touch).
    """
    if not max_chunk > 0:
        raise ValueError(f"max_chunk must be > 0 seconds, got {max_chunk!r}")
    if not merge_gap >= 0:
        raise ValueError(f"merge_gap must be >= 0 seconds, got {merge_gap!r}")
    probs = np.asarray(probs, dtype=np.float32)
    chunks: list[Chunk] = []
    previous_end = -np.inf
    for region in regions:
        if region.start < previous_end or region.end <= region.start:
            raise ValueError(f"regions must be sorted, disjoint and non-empty; got {region} after end {previous_end}")
        previous_end = region.end
        for piece in split_region(region, probs, window_seconds, max_chunk, min_piece):
            current = chunks[-1] if chunks else None
            if current and piece.start - current.end < merge_gap and piece.end - current.start <= max_chunk:
                current.end = piece.end
                current.regions.append(piece)
            else:
                chunks.append(Chunk(piece.start, piece.end, [piece]))
    return chunks
