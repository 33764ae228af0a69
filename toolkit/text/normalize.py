"""Text normalisation: the ONE rule for caption and transcript training targets and for every text metric.

    1. Unicode NFKC, then lowercase;
    2. typographic apostrophes (’ ‘ ʼ) become ', and every other Unicode punctuation character (categories P*:
       . , ; : ! ? - " ( ) [ ] / ... ) becomes a space;
    3. an apostrophe is kept only between two letters/digits ("don't", "rock'n'roll"); others become a space;
    4. whitespace runs collapse to one space, with none at either end.

    normalize_text("A Dog's  ball, (well-known)!")  # -> "a dog's ball well known"

Symbols (categories S*: $ + = emoji ...) and digits are kept as they are (numbers are not spelled out).
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_LONE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])")


def normalize_text(text: str) -> str:
    """The normalisation of the module docstring: NFKC, lowercase, punctuation out, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = "".join(" " if c != "'" and unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(_LONE_APOSTROPHE.sub(" ", text).split())
