"""Word tokenizer: whitespace-separated words, the most frequent ones in training (a closed vocabulary)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from toolkit.text.tokenizer import (NUM_SPECIALS, UNK_ID, TokenTableTokenizer, WordRole, check_int_option,
                                   register_tokenizer)


@register_tokenizer("word")
class WordTokenizer(TokenTableTokenizer):
    """Ids 4.. are training words, most frequent first (ties alphabetical); other words encode to `unk_id`.

    `encode` splits on any whitespace (``str.split()``) and `decode` joins with single spaces, so over the
    training words ``decode(encode(s)) == " ".join(s.split())``: the only normalisation is of whitespace.
    """

    token_name = "word"

    @classmethod
    def _valid_token(cls, token: str) -> bool:
        return token.split() == [token]

    @classmethod
    def train(cls, texts: Iterable[str], *, min_count: int = 1, max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary: words seen at least `min_count` times, the most frequent first, ties broken alphabetically.

        `max_vocab` caps the total `vocab_size`, the 4 special ids included (so at most ``max_vocab - 4`` words).
        """
        check_int_option(cls.kind, "min_count", min_count, 1)
        if max_vocab is not None:
            check_int_option(cls.kind, "max_vocab", max_vocab, NUM_SPECIALS + 1)
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text.split())
        limit = None if max_vocab is None else max_vocab - NUM_SPECIALS
        words = cls._select(counts, min_count, by_frequency=True, limit=limit)
        return cls(words, {"min_count": min_count, "max_vocab": max_vocab})

    def encode(self, text: str) -> list[int]:
        return self._lookup(text.split())

    def _decode(self, ids: list[int]) -> str:
        tokens = self.tokens
        return " ".join(tokens[i - NUM_SPECIALS] for i in ids)

    def word_role(self, i: int) -> WordRole:
        """Every word (and unk) is a word of its own; blank, BOS and EOS belong to none."""
        i = self._check_id(i)
        return "start" if i >= NUM_SPECIALS or i == UNK_ID else "space"
