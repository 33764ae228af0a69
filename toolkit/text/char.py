"""Character tokenizer: one id per Unicode code point seen in training (the usual CTC / small-data choice)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from toolkit.text.tokenizer import (NUM_SPECIALS, TokenTableTokenizer, WordRole, check_int_option,
                                   register_tokenizer)

#: How `id_to_piece` shows the space character (as sentencepiece does); `decode` still gives " ".
SPACE_PIECE = "\u2581"


@register_tokenizer("char")
class CharTokenizer(TokenTableTokenizer):
    """Ids 4.. are the training characters in code-point order; every other character encodes to `unk_id`.

    Lossless over the training alphabet: ``decode(encode(s)) == s``. The space is a normal token, shown by
    `id_to_piece` as "▁" (U+2581); other characters (tabs, newlines, ...) are shown as themselves.
    """

    token_name = "character"

    @classmethod
    def _valid_token(cls, token: str) -> bool:
        return len(token) == 1

    @classmethod
    def train(cls, texts: Iterable[str], *, min_count: int = 1) -> CharTokenizer:
        """Vocabulary: every character occurring at least `min_count` times in `texts`, sorted by code point."""
        check_int_option(cls.kind, "min_count", min_count, 1)
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        return cls(cls._select(counts, min_count, by_frequency=False), {"min_count": min_count})

    def encode(self, text: str) -> list[int]:
        return self._lookup(text)

    def _decode(self, ids: list[int]) -> str:
        tokens = self.tokens
        return "".join(tokens[i - NUM_SPECIALS] for i in ids)

    def _piece(self, i: int) -> str:
        c = super()._piece(i)
        return SPACE_PIECE if c == " " else c

    def word_role(self, i: int) -> WordRole:
        """Whitespace characters separate words; every other character (and unk) is inside one."""
        i = self._check_id(i)
        if i < NUM_SPECIALS:
            return super().word_role(i)
        return "space" if self.tokens[i - NUM_SPECIALS].isspace() else "inside"
