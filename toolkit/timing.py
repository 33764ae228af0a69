"""Timed things on an input's timeline, in seconds from its start: a `Word` (what alignment produces and cue
segmentation consumes) and a `Segment` of a recording whose content is known (what `toolkit synth longform`
writes and subtitle timing is scored against)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

SegmentKind = Literal["speech", "silence", "noise", "music"]
SEGMENT_KINDS: tuple[SegmentKind, ...] = get_args(SegmentKind)


@dataclass(frozen=True)
class Word:
    """One word and its span in seconds on the input's timeline (start <= end)."""

    text: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Segment:
    """One stretch of a recording, `[start, end)` in seconds: speech (`text` its transcript, `source` the
    utterance's id), silence, noise or music (`source` what made it, e.g. "pink")."""

    start: float
    end: float
    kind: SegmentKind
    text: str = ""
    source: str = ""
