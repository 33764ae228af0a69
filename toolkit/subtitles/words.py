"""A timed word: what alignment produces and what cue segmentation consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """One word and its span in seconds on the input's timeline (start <= end)."""

    text: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start
