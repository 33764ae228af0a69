"""`snap_words` puts aligned words (`toolkit.timing.Word`) into the speech regions a voice activity detector found.

A CTC spike comes a little after the sound it stands for, and an aligned word can stretch over a pause. So a word
is snapped into the speech region it overlaps most: clamped to the region, its duration capped at `max_word`
seconds, and the first / last word of a region moved to the region's start / end when it lies within `snap`
seconds of it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Sequence

from toolkit.timing import Word

if TYPE_CHECKING:
    from toolkit.media.vad import Region

MAX_WORD = 1.5  # seconds; a longer aligned word is cut to this
SNAP = 0.4  # seconds; a region's first / last word this close to its edge is moved onto it


def snap_words(words: Sequence[Word], regions: Sequence[Region], max_word: float = MAX_WORD,
               snap: float = SNAP) -> list[Word]:
    """Put aligned words, in time order, inside the speech regions (see the module docstring); words keep their order and never
    overlap. Without regions the words are only capped at `max_word`."""
    starts = [r.start for r in regions]
    out: list[Word] = []
    by_region: dict[int, list[int]] = {}
    for w in words:
        start, end = w.start, min(w.end, w.start + max_word)
        k = _region_of(start, end, regions, starts)
        if k is not None:
            r = regions[k]
            start = min(max(start, r.start), r.end)
            end = min(max(end, start), r.end)
            by_region.setdefault(k, []).append(len(out))
        out.append(Word(w.text, start, end))
    for k, idx in by_region.items():
        r = regions[k]
        first, last = out[idx[0]], out[idx[-1]]
        if first.start - r.start <= snap:
            out[idx[0]] = Word(first.text, r.start, max(first.end, r.start))
        last = out[idx[-1]]
        if r.end - last.end <= snap:
            out[idx[-1]] = Word(last.text, last.start, r.end)
    for i in range(1, len(out)):  # keep order, no overlap
        prev, w = out[i - 1], out[i]
        if w.start < prev.end:
            start = max(w.start, prev.start)
            out[i - 1] = Word(prev.text, prev.start, start)
            out[i] = Word(w.text, start, max(w.end, start))
    return out


def _region_of(start: float, end: float, regions: Sequence[Region], starts: list[float]) -> int | None:
    """Index of the region that overlaps [start, end] most, else the nearest one; None without regions."""
    if not regions:
        return None
    i = bisect.bisect_right(starts, end)
    best, best_key = None, None
    for k in range(max(0, i - 3), min(len(regions), i + 2)):
        r = regions[k]
        overlap = min(end, r.end) - max(start, r.start)
        distance = max(r.start - end, start - r.end, 0.0)
        key = (overlap if overlap > 0 else -distance)
        if best_key is None or key > best_key:
            best, best_key = k, key
    return best
