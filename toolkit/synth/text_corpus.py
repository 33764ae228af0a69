"""Speakable English sentences from text that Debian packages ship: fortune cookies and WordNet examples.

Sources (each a name in `SOURCES`):
    fortunes - quotations and prose from `/usr/share/games/fortunes` (packages `fortunes-min`, and `fortunes` for
               the full set); attributions ("-- Mark Twain") are dropped, entries split into sentences, and only
               complete sentences are kept (a capital first, . ! or ? last). Files of art, code, or jokes about
               groups of people (`SKIPPED_FORTUNE_FILES`) are not read.
    wordnet  - the example sentences quoted in WordNet 3.0's glosses (`/usr/share/wordnet/data.*`, package
               `wordnet-base`), e.g. "the oceans are teeming with life".

A sentence is kept when it has no all-capitals word of two letters or more (an acronym would be spelled out
letter by letter by a synthesiser, unlike its transcript), its `normalize_transcript` form is clean ([a-z' ]
only) and has `min_words` to `max_words` words. `load_sentences` returns the raw sentences, unique by their
normalised form and sorted by it, so the same packages give the same list whatever the file order.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from toolkit.synth.text_normalize import is_clean_transcript, normalize_transcript
from toolkit.errors import ToolkitError

FORTUNE_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
SOURCES = {"fortunes": "fortunes-min fortunes", "wordnet": "wordnet-base"}  # name -> Debian packages
SKIPPED_FORTUNE_FILES = frozenset({"art", "ascii-art", "perl", "translate-me", "debian", "ethnic", "men-women",
                                   "drugs", "definitions", "riddles"})
_ABBREV = r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bJr)(?<!\bSr)(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)(?<!\b[A-Z])"
_SENTENCE_END = re.compile(_ABBREV + r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
_COMPLETE = re.compile(r"[\"'(\[]?[A-Z].*[.!?][\"')\]]*", re.S)
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")


def fortune_sentences(directory: Path = FORTUNE_DIR) -> list[str]:
    """Complete sentences of the fortune files in `directory` (attributions removed)."""
    files = sorted(p for p in directory.glob("*")
                   if p.is_file() and not p.suffix and p.name not in SKIPPED_FORTUNE_FILES)
    if not files:
        raise ToolkitError(f"{directory}: no fortune files: install them with `apt-get install fortunes-min fortunes`")
    out = []
    for path in files:
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = []
            for line in entry.splitlines():
                if re.match(r"\s*(--|―)", line):  # an attribution ends the quotation
                    break
                lines.append(line.strip())
            text = " ".join(lines)
            out.extend(s.strip() for s in _SENTENCE_END.split(text) if _COMPLETE.fullmatch(s.strip()))
    return out


def wordnet_sentences(directory: Path = WORDNET_DIR) -> list[str]:
    """The quoted example sentences of WordNet's glosses."""
    files = [directory / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    if not all(p.is_file() for p in files):
        raise ToolkitError(f"{directory}: WordNet data files missing: install them with `apt-get install wordnet-base`")
    out = []
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            out.extend(re.findall(r'"([^"]+)"', line.split("|", 1)[1]))
    return out


def load_sentences(sources: tuple[str, ...] = ("fortunes", "wordnet"), min_words: int = 3,
                   max_words: int = 20) -> list[str]:
    """Raw sentences from `sources` whose normalised transcripts are clean and `min_words`..`max_words` long;
    unique by transcript, sorted by transcript (cached per process)."""
    return list(_load_sentences(tuple(sources), min_words, max_words))


@lru_cache(maxsize=4)
def _load_sentences(sources: tuple[str, ...], min_words: int, max_words: int) -> tuple[str, ...]:
    readers = {"fortunes": fortune_sentences, "wordnet": wordnet_sentences}
    by_text: dict[str, str] = {}
    for source in sources:
        if source not in readers:
            raise ToolkitError(f"text source {source!r}: unknown (choose from {', '.join(readers)})")
        for sentence in readers[source]():
            if _ACRONYM.search(sentence):
                continue
            text = normalize_transcript(sentence)
            if is_clean_transcript(text) and min_words <= len(text.split()) <= max_words:
                by_text.setdefault(text, sentence)
    return tuple(by_text[t] for t in sorted(by_text))
