"""Timed words -> subtitle cues that obey line, length, duration and reading-speed rules.

    cues = make_cues(words, CueRules(max_line_chars=42, max_lines=2))
    problems = check_cues(cues, rules)        # [] when every cue obeys every rule

Segmentation, in order:

1. Clean and check the words. Control characters and line breaks inside a word become single spaces; a word left
   with nothing visible (empty, spaces, zero-width characters only) is dropped. A time that is not a finite number
   >= 0, an end before its start, or a word that starts before the previous one raises `ToolkitError` naming the
   word's index in the input. A word is never split: it is the unit of every break below.
2. Choose where cues end, by dynamic programming over the positions between words: the cheapest sequence of cues
   under the hard limits below, where a cue costs
     - 0.5 (fewer, fuller cues are preferred to many fragments),
     - plus the cost of the break after it: nothing after sentence punctuation (. ? ! ...), a little after a
       clause mark (, ; : and dashes), most in mid-phrase and more after a word of one to three letters (mostly
       articles, prepositions and conjunctions: "the", "of", "and"); each lowered by the pause that follows, so
       a break falls at a longer pause when the punctuation does not decide,
     - plus a penalty when the cue, even extended into the gap that follows (up to `min_gap` before the next
       word) and led in from the one before (up to `max_lead_in`), cannot stay on screen for `min_duration` or
       for its text at `max_cps` (this is what keeps very short cues from being made),
     - plus a penalty when its text is shorter than a third of a line,
     - plus a penalty when it ends one sentence and starts another that it does not finish.
   Hard limits: a pause of at least `pause_split` between two words always ends a cue; a cue's words fit in
   `max_lines` lines of `max_line_chars` (so it never holds more than max_lines x max_line_chars characters),
   span at most `max_duration` seconds, and hold no more characters than can be read in `max_duration` at
   `max_cps`. Only a single word may break these: a word longer than a line gets a line of its own, a word
   longer than `max_duration` (or than can be read in it) a cue of its own.
3. Lay out each cue's lines: the fewest lines that fit, then, by dynamic programming over the break positions,
   the layout whose line lengths are closest to equal, with a bonus for a line break after punctuation, a
   penalty for one after a word of one to three letters, and one for a line of a single word when another
   layout avoids it.
4. Time the cues, in whole milliseconds. A cue starts at its first word's start and ends at its last word's end,
   shortened to `max_duration` (only a single long word needs it). A cue shown for less than `min_duration`, or
   for less than its characters / `max_cps`, is extended into the gap after it, never closer than `min_gap` to
   the next cue. A cue that ends less than `min_gap` before the next one starts (or overlaps it: words may
   overlap in time) has its end trimmed; if even that cannot leave it a millisecond, the next cue starts later.
   If the cue is still too short, it may then start up to `max_lead_in` earlier, never closer than `min_gap` to
   the previous cue. Times are never below zero.

`check_cues` reports, one line per violation, what a subtitler would reject. The rules cannot always all be
met (a one-word answer between two long pauses is on screen only as long as the pauses allow); such a cue is
made as good as it can be and reported.

Punctuation is recognised for Latin, CJK and Arabic script marks; an abbreviation such as "Dr." counts as a
sentence end, which only makes a break after it cheaper.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

from toolkit.errors import ConfigError, ToolkitError
from toolkit.timing import Word

__all__ = ["Cue", "CueRules", "check_cues", "clean_word_text", "layout_lines", "make_cues"]

SENTENCE_END = frozenset(".?!…。？！؟")
CLAUSE_END = frozenset(",;:，、；：،—–")
CLOSING = "\"'”’»›)]}」』"  # skipped when looking for the punctuation that ends a word: `done."` ends a sentence

# Costs of the segmentation (step 2); only their ratios matter.
CUE_COST = 0.5
BREAK_COST = {"sentence": 0.0, "clause": 1.0, "none": 2.5}
SHORT_WORD_BREAK_COST = 0.75  # added after an unpunctuated word of 1-3 letters ("the", "of", "and", "I")
PAUSE_BONUS = 1.5  # subtracted from a break's cost in proportion to its pause, up to a pause of `pause_split`
TIMING_PENALTY = 8.0  # per unit of relative shortfall of display time
SHORT_TEXT_PENALTY = 1.0  # for a cue of no text, falling linearly to 0 at a third of a line
STRADDLE_PENALTY = 1.5  # for a cue that ends one sentence and starts another that it does not finish
# Costs of the line layout (step 3).
BALANCE_WEIGHT = 4.0  # times the squared deviation of a line's length from the mean, in units of max_line_chars
LINE_BREAK_BONUS = {"sentence": 1.0, "clause": 0.5, "none": 0.0}
SHORT_WORD_LINE_BREAK_COST = 0.3
ORPHAN_PENALTY = 1.0
TOLERANCE = 1e-6  # slack for float rounding in comparisons of times (s) and characters


@dataclass
class CueRules:
    """What a cue may be. Times in seconds.

    max_line_chars: characters on one line (a single longer word gets a line of its own).
    max_lines:      lines in one cue.
    min_duration:   shortest time on screen; a shorter cue is extended into the gap that follows when there is room.
    max_duration:   longest time on screen.
    min_gap:        least time between a cue's end and the next cue's start.
    max_cps:        reading speed: characters (spaces included, line breaks not) per second on screen.
    pause_split:    a pause between words at least this long always ends a cue (math.inf: never).
    max_lead_in:    a cue still too short or too fast after extending into the gap after it may appear up to this
                    much before its first word is spoken (into the pause before it); 0 disables.
    """

    max_line_chars: int = 42
    max_lines: int = 2
    min_duration: float = 1.0
    max_duration: float = 7.0
    min_gap: float = 0.08
    max_cps: float = 20.0
    pause_split: float = 0.6
    max_lead_in: float = 0.25

    def __post_init__(self) -> None:
        for name in ("max_line_chars", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CueRules.{name}: must be an integer >= 1, got {value!r}")
        for name in ("min_duration", "max_duration", "min_gap", "max_cps", "pause_split", "max_lead_in"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ConfigError(f"CueRules.{name}: must be a number, got {value!r}")
            if math.isinf(value) and name != "pause_split":
                raise ConfigError(f"CueRules.{name}: must be finite, got {value!r}")
            setattr(self, name, float(value))
        for name in ("min_duration", "min_gap", "max_lead_in"):
            if getattr(self, name) < 0:
                raise ConfigError(f"CueRules.{name}: must be >= 0, got {getattr(self, name)!r}")
        if self.max_duration < 0.001:
            raise ConfigError(f"CueRules.max_duration: must be at least 0.001 s, got {self.max_duration!r}")
        if self.min_duration > self.max_duration:
            raise ConfigError(f"CueRules.min_duration: {self.min_duration} s is longer than "
                              f"max_duration {self.max_duration} s")
        for name in ("max_cps", "pause_split"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"CueRules.{name}: must be > 0, got {getattr(self, name)!r}")


@dataclass
class Cue:
    """One subtitle: shown from `start` to `end` (seconds), its `lines` top to bottom, and the words it came from."""

    start: float
    end: float
    lines: list[str]
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def chars(self) -> int:
        """Characters read: spaces included, line breaks not."""
        return sum(len(line) for line in self.lines)


# ---------------------------------------------------------------------------------------------------- words


def clean_word_text(text: str) -> str:
    """A word's text on one line: control characters and line breaks as single spaces, ends stripped;
    "" when nothing visible is left (only spaces, control or zero-width characters)."""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    text = " ".join(text.split())
    if all(unicodedata.category(ch) in ("Cf", "Zs") for ch in text):
        return ""
    return text


def _checked_time(value: object, what: str, index: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolkitError(f"word {index}: {what} {value!r} is not a number")
    if not math.isfinite(value) or value < 0:
        raise ToolkitError(f"word {index}: {what} {value!r} must be a finite number >= 0")
    return float(value)


def _clean_words(words: Sequence[Word]) -> list[Word]:
    """The words to segment: times checked (ToolkitError naming the word's index), texts cleaned, empty ones out."""
    kept: list[Word] = []
    previous_start = 0.0
    for index, word in enumerate(words):
        if not isinstance(word.text, str):
            raise ToolkitError(f"word {index}: text {word.text!r} is not a string")
        start = _checked_time(word.start, "start", index)
        end = _checked_time(word.end, "end", index)
        if end < start:
            raise ToolkitError(f"word {index}: end {end} s is before its start {start} s")
        if start < previous_start:
            raise ToolkitError(f"word {index}: starts at {start} s, before word {index - 1} ({previous_start} s); "
                               "words must be in time order")
        previous_start = start
        text = clean_word_text(word.text)
        if text:
            kept.append(Word(text, start, end))
    return kept


def _binds_forward(text: str) -> bool:
    """A word of 1-3 letters: in most alphabetic languages mostly articles, prepositions, conjunctions and
    pronouns, which read badly at the end of a line or a cue, cut off from the words they introduce."""
    return len(text) <= 3 and text.isalpha()


def _punctuation(text: str) -> str:
    """'sentence', 'clause' or 'none': the mark that ends `text`, closing quotes and brackets skipped."""
    stripped = text.rstrip(CLOSING)
    last = stripped[-1:] if stripped else ""
    if last in SENTENCE_END:
        return "sentence"
    if last in CLAUSE_END:
        return "clause"
    return "none"


# ---------------------------------------------------------------------------------------------- line layout


def _count_lines(lengths: Sequence[int], max_chars: int) -> int:
    """Fewest lines the words (of these lengths, joined by spaces) fit in; greedy filling is optimal for this."""
    lines, used = 0, 0
    for length in lengths:
        if used and used + 1 + length <= max_chars:
            used += 1 + length
        else:
            lines, used = lines + 1, length
    return lines


def layout_lines(texts: Sequence[str], rules: CueRules) -> list[str]:
    """Split a cue's words into the fewest lines that fit, balanced (step 3 of the module docstring)."""
    n = len(texts)
    lengths = [len(t) for t in texts]
    n_lines = _count_lines(lengths, rules.max_line_chars)
    if n_lines <= 1:
        return [" ".join(texts)] if texts else []
    prefix = [0]
    for length in lengths:
        prefix.append(prefix[-1] + length)
    mean = (prefix[-1] + n - n_lines) / n_lines  # line length if the characters were spread evenly

    def line_cost(a: int, b: int) -> float:
        """Words a..b-1 on one line, then a break after word b-1; math.inf when they do not fit."""
        length = prefix[b] - prefix[a] + (b - a - 1)
        if length > rules.max_line_chars and b - a > 1:
            return math.inf
        cost = BALANCE_WEIGHT * ((length - mean) / rules.max_line_chars) ** 2
        if b - a == 1 and n > n_lines:
            cost += ORPHAN_PENALTY
        if b < n:
            cost -= LINE_BREAK_BONUS[_punctuation(texts[b - 1])]
            cost += SHORT_WORD_LINE_BREAK_COST if _binds_forward(texts[b - 1]) else 0.0
        return cost

    # best[k][b]: cheapest layout of words 0..b-1 in k lines; back[k][b]: where its last line starts
    best = [[math.inf] * (n + 1) for _ in range(n_lines + 1)]
    back = [[0] * (n + 1) for _ in range(n_lines + 1)]
    best[0][0] = 0.0
    for k in range(1, n_lines + 1):
        for b in range(k, n - (n_lines - k) + 1):
            for a in range(b - 1, k - 2, -1):
                if best[k - 1][a] == math.inf:
                    continue
                cost = line_cost(a, b)
                if cost == math.inf:
                    break  # a longer line does not fit either
                if best[k - 1][a] + cost < best[k][b]:
                    best[k][b], back[k][b] = best[k - 1][a] + cost, a
    lines, b = [], n
    for k in range(n_lines, 0, -1):
        a = back[k][b]
        lines.append(" ".join(texts[a:b]))
        b = a
    return lines[::-1]


# --------------------------------------------------------------------------------------------- segmentation


def _segment(words: Sequence[Word], rules: CueRules) -> list[tuple[int, int]]:
    """Cues as (first word, last word + 1), by dynamic programming (step 2 of the module docstring)."""
    n = len(words)
    lengths = [len(w.text) for w in words]
    pauses = [max(0.0, words[k + 1].start - words[k].end) for k in range(n - 1)] + [math.inf]
    pause_scale = rules.pause_split if math.isfinite(rules.pause_split) else 1.0
    max_chars = rules.max_cps * rules.max_duration  # more cannot be read in the longest cue
    short_text = rules.max_line_chars / 3

    def break_cost(last: int) -> float:
        if pauses[last] >= rules.pause_split - TOLERANCE:
            return 0.0  # forced (or the end of the words): every segmentation pays the same
        bonus = PAUSE_BONUS * min(pauses[last] / pause_scale, 1.0)
        text = words[last].text
        cost = BREAK_COST[_punctuation(text)] + (SHORT_WORD_BREAK_COST if _binds_forward(text) else 0.0)
        return max(0.0, cost - bonus)

    def timing_cost(first: int, last: int, chars: int) -> float:
        # What step 4 can give the cue: until min_gap before the next word (where it trims the cue when its words
        # run closer), plus a lead-in of up to max_lead_in into the gap before its first word.
        start = words[first].start
        room = words[last + 1].start - rules.min_gap - start if last + 1 < n else math.inf
        before = start - (words[first - 1].end + rules.min_gap if first > 0 else 0.0)
        shown = min(room + min(rules.max_lead_in, max(0.0, before)), rules.max_duration)
        needed = min(max(rules.min_duration, chars / rules.max_cps), rules.max_duration)
        return TIMING_PENALTY * max(0.0, needed - shown) / needed if needed > 0 else 0.0

    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for last in range(n):
        closing = CUE_COST + break_cost(last)
        ends_sentence = _punctuation(words[last].text) == "sentence"
        chars, straddles = -1, False
        for first in range(last, -1, -1):
            if first < last and pauses[first] >= rules.pause_split - TOLERANCE:
                break  # the cue would span a long pause
            chars += lengths[first] + 1
            straddles = straddles or (first < last and not ends_sentence
                                      and _punctuation(words[first].text) == "sentence")
            if first < last and (
                chars > max_chars
                or words[last].end - words[first].start > rules.max_duration
                or _count_lines(lengths[first:last + 1], rules.max_line_chars) > rules.max_lines
            ):
                break  # more words only make it worse
            cost = closing + timing_cost(first, last, chars) + (STRADDLE_PENALTY if straddles else 0.0)
            cost += SHORT_TEXT_PENALTY * max(0.0, 1.0 - chars / short_text)
            if best[first] + cost < best[last + 1]:
                best[last + 1], back[last + 1] = best[first] + cost, first
    spans, end = [], n
    while end > 0:
        spans.append((back[end], end))
        end = back[end]
    return spans[::-1]


# ------------------------------------------------------------------------------------------------------ timing


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _time_cues(groups: Sequence[Sequence[Word]], lines: Sequence[list[str]], rules: CueRules) -> list[Cue]:
    """Display times in whole milliseconds (step 4 of the module docstring)."""
    gap = math.ceil(rules.min_gap * 1000 - TOLERANCE)
    min_duration = math.ceil(rules.min_duration * 1000 - TOLERANCE)
    max_duration = max(1, math.floor(rules.max_duration * 1000 + TOLERANCE))
    lead_in = math.floor(rules.max_lead_in * 1000 + TOLERANCE)
    first_starts = [_ms(group[0].start) for group in groups]
    cues: list[Cue] = []
    previous_end: int | None = None
    for k, group in enumerate(groups):
        earliest = 0 if previous_end is None else previous_end + gap
        start = max(first_starts[k], earliest)
        end = min(max(_ms(group[-1].end), start + 1), start + max_duration)
        latest = first_starts[k + 1] - gap if k + 1 < len(groups) else math.inf
        chars = sum(len(line) for line in lines[k])
        needed = min(max(min_duration, math.ceil(chars * 1000 / rules.max_cps)), max_duration)
        if end - start < needed:
            end = max(end, min(start + needed, latest))
        if end > latest:  # trimmed before the lead-in is sized, so that the lead-in makes up for the trim too
            end = max(latest, start + 1)
        if end - start < needed and lead_in:
            start = min(start, max(end - needed, start - lead_in, earliest))
        cues.append(Cue(start / 1000, end / 1000, list(lines[k]), list(group)))
        previous_end = end
    return cues


def make_cues(words: Sequence[Word], rules: CueRules | None = None) -> list[Cue]:
    """Subtitle cues for timed words (seconds, in time order), following `rules` (defaults: `CueRules()`)."""
    rules = rules if rules is not None else CueRules()
    kept = _clean_words(words)
    groups = [kept[a:b] for a, b in _segment(kept, rules)]
    lines = [layout_lines([w.text for w in group], rules) for group in groups]
    return _time_cues(groups, lines, rules)


# ---------------------------------------------------------------------------------------------------- checking


def _is_one_word(line: str, cue: Cue) -> bool:
    return any(line == w.text for w in cue.words) if cue.words else " " not in line


def check_cues(cues: Sequence[Cue], rules: CueRules) -> list[str]:
    """One line per violated rule ("cue 3: line 1 has 45 characters > 42"), cues numbered from 1; [] when every
    cue obeys every rule and no two cues overlap. A line of a single word may be longer than `max_line_chars`."""
    problems: list[str] = []
    previous: Cue | None = None
    for number, cue in enumerate(cues, start=1):
        where = f"cue {number}:"
        times_ok = True
        for name in ("start", "end"):
            value = getattr(cue, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{where} {name} {value!r} is not a finite time >= 0")
                times_ok = False
        if times_ok and cue.end <= cue.start:
            problems.append(f"{where} ends at {cue.end:.3f} s, not after its start {cue.start:.3f} s")
            times_ok = False
        if not any(line.strip() for line in cue.lines):
            problems.append(f"{where} has no text")
        if len(cue.lines) > rules.max_lines:
            problems.append(f"{where} {len(cue.lines)} lines > {rules.max_lines}")
        for index, line in enumerate(cue.lines, start=1):
            if len(line) > rules.max_line_chars and not _is_one_word(line, cue):
                problems.append(f"{where} line {index} has {len(line)} characters > {rules.max_line_chars}")
        if times_ok:
            duration = cue.duration
            if duration < rules.min_duration - TOLERANCE:
                problems.append(f"{where} on screen {duration:.3f} s < min_duration {rules.min_duration:g} s")
            if duration > rules.max_duration + TOLERANCE:
                problems.append(f"{where} on screen {duration:.3f} s > max_duration {rules.max_duration:g} s")
            if cue.chars > rules.max_cps * duration + TOLERANCE:
                problems.append(f"{where} {cue.chars / duration:.1f} characters/s > max_cps {rules.max_cps:g}")
        if previous is not None and math.isfinite(previous.end) and math.isfinite(cue.start):
            gap = cue.start - previous.end
            if gap < -TOLERANCE:
                problems.append(f"{where} starts {-gap:.3f} s before cue {number - 1} ends")
            elif gap < rules.min_gap - TOLERANCE:
                problems.append(f"{where} starts {gap:.3f} s after cue {number - 1} ends < min_gap "
                                f"{rules.min_gap:g} s")
        previous = cue
    return problems

