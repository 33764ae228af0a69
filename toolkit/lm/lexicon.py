"""A lexicon (a list of known words) and the search term it gives: a penalty for every word a hypothesis
spells that the lexicon does not hold.

A character model spells what it hears, so its errors are often words that do not exist ("caremells",
"gelloping"). With a lexicon, the search charges `DecodingOptions.oov_penalty` once for each such word, at the
first token after which the word can no longer become a lexicon word (its letters are a prefix of none), or at
its end (a space or EOS) when it stopped short of one. Known words cost nothing; a word the lexicon lacks can
still win when the audio and the LM favour it strongly enough, which matters for names and rare words.

    lexicon = Lexicon.load("lexicon.txt")               # or an LM bundle's: load_lm(dir).model.lexicon
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=3.0, rows=B * K)
    extra = scorer.scores(last)      # (N, V): -penalty * (how many unknown words each next token completes)
    scorer.select(rows)              # follow the beams' reordering and pruning

Tokens are read as text (`token_texts`): a space ends the word before it, so does a token that starts a word
(SentencePiece's "▁the", any token of a word tokenizer), and EOS ends the last word. The scorer works on any
tokenizer: its table of transitions is filled lazily, for the word prefixes the search actually visits.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

from toolkit.errors import ToolkitError
from toolkit.text import EOS_ID, NUM_SPECIALS, UNK_ID, Tokenizer
from toolkit.text.tokenizer import WORD_SEPARATOR

__all__ = ["Lexicon", "LexiconScorer", "TokenLexicon", "token_texts"]

UNKNOWN_CHARACTER = "\0"  # what <unk> reads as: a character no word has


class Lexicon:
    """A sorted, duplicate-free word list with prefix queries."""

    def __init__(self, words: Iterable[str]):
        self.words = sorted(set(w for w in words if w))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        i = bisect.bisect_left(self.words, word)
        return i < len(self.words) and self.words[i] == word

    def is_prefix(self, prefix: str) -> bool:
        """Whether some word starts with `prefix` (the empty prefix included, when there is a word)."""
        i = bisect.bisect_left(self.words, prefix)
        return i < len(self.words) and self.words[i].startswith(prefix)

    def save(self, path: str | Path) -> None:
        """One word per line, UTF-8."""
        Path(path).write_text("".join(w + "\n" for w in self.words), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Lexicon":
        """A lexicon written by `save` (any whitespace-separated words are accepted)."""
        return cls(Path(path).read_text(encoding="utf-8").split())


def token_texts(tokenizer: Tokenizer) -> list[str | None]:
    """What each token id of `tokenizer` adds to a transcript, as `LexiconScorer` reads it: " " for a word
    break (a space token, EOS), " " + the word's first letters for a token that starts a word, the letters for one
    inside a word, `UNKNOWN_CHARACTER` for <unk>, None for the specials a search never emits (blank, BOS)."""
    texts: list[str | None] = []
    for i in range(tokenizer.vocab_size):
        role = tokenizer.word_role(i)
        if i == EOS_ID:
            texts.append(" ")
        elif i == UNK_ID:  # an unknown piece of a word, or a whole unknown word for a tokenizer of words
            texts.append((" " if role == "start" else "") + UNKNOWN_CHARACTER)
        elif i < NUM_SPECIALS:
            texts.append(None)
        elif role == "space":
            texts.append(" ")
        else:
            letters = tokenizer.id_to_piece(i).replace(WORD_SEPARATOR, "").strip()
            texts.append(" " + letters if role == "start" else letters)
    return texts


@dataclass(frozen=True)
class TokenLexicon:
    """A lexicon and the texts of the token ids it is spelt in (`token_texts` of one tokenizer): what a search
    needs to charge unknown words. A language model loaded from a bundle with a lexicon carries one."""

    lexicon: Lexicon
    texts: tuple[str | None, ...]

    @classmethod
    def of(cls, lexicon: Lexicon, tokenizer: Tokenizer) -> "TokenLexicon":
        return cls(lexicon, tuple(token_texts(tokenizer)))

    def scorer(self, penalty: float, rows: int) -> "LexiconScorer":
        """A scorer for `rows` hypotheses that start empty."""
        return LexiconScorer(self.lexicon, self.texts, penalty, rows)


class LexiconScorer:
    """The OOV penalty of `rows` hypotheses that a search extends token by token.

    lexicon: the known words; texts: what each token id adds to the transcript (`token_texts`; None: nothing,
    for the specials a search never emits); penalty: charged once per word outside the lexicon.

    State: for each hypothesis, the node of its current word: the letters since the last word break (a prefix
    of some lexicon word), or OFF once the word has left the lexicon (already charged). Node ids index a table
    `(nodes, V)` of next nodes and of the number of unknown words each token completes, filled as nodes are met.
    The tables stay on the CPU; `scores` returns its rows on the device of the tokens it reads.
    """

    OFF = 1  # node id of "this word is not in the lexicon (charged)"; 0 is the empty word

    def __init__(self, lexicon: Lexicon, texts: Sequence[str | None], penalty: float, rows: int):
        if not len(lexicon):
            raise ToolkitError("the lexicon is empty: an OOV penalty needs known words")
        self.lexicon = lexicon
        self.texts = list(texts)
        self.penalty = float(penalty)
        self._ids: dict[str | None, int] = {"": 0, None: self.OFF}
        self._prefixes: list[str | None] = ["", None]
        vocab = len(self.texts)
        self._next = torch.zeros(64, vocab, dtype=torch.long)
        self._unknown = torch.zeros(64, vocab, dtype=torch.float64)
        self._filled = torch.zeros(64, dtype=torch.bool)
        self.state = torch.zeros(rows, dtype=torch.long)  # every hypothesis starts at the empty word
        self._fill(0)  # from then on every node a hypothesis holds has its row: `scores` fills the ones it reaches

    def _node(self, prefix: str | None) -> int:
        node = self._ids.get(prefix)
        if node is None:
            node = self._ids[prefix] = len(self._prefixes)
            self._prefixes.append(prefix)
            if node == self._next.size(0):  # grow the tables
                self._next = torch.cat([self._next, torch.zeros_like(self._next)])
                self._unknown = torch.cat([self._unknown, torch.zeros_like(self._unknown)])
                self._filled = torch.cat([self._filled, torch.zeros_like(self._filled)])
        return node

    def _read(self, prefix: str | None, text: str) -> tuple[str | None, int]:
        """The word prefix after reading `text` from `prefix`, and the unknown words charged on the way."""
        charged = 0
        for ch in text:
            if ch == " ":
                if prefix and prefix not in self.lexicon:  # a word ended short of any lexicon word
                    charged += 1
                prefix = ""
            elif prefix is not None:
                prefix += ch
                if not self.lexicon.is_prefix(prefix):
                    prefix, charged = None, charged + 1
        return prefix, charged

    def _fill(self, node: int) -> None:
        prefix = self._prefixes[node]
        for token, text in enumerate(self.texts):
            after, charged = (prefix, 0) if text is None else self._read(prefix, text)
            self._next[node, token] = self._node(after)
            self._unknown[node, token] = charged
        self._filled[node] = True

    def _fill_missing(self, nodes: Tensor) -> None:
        for node in nodes.unique().tolist():
            if not self._filled[node]:
                self._fill(node)

    def scores(self, last: Tensor) -> Tensor:
        """Read each hypothesis's last token `last` `(N,)` (BOS first); return `(N, V)` float64 scores of its next
        tokens: -penalty times the unknown words each one completes (0 or 1, rarely more for a multi-word piece)."""
        self.state = self._next[self.state, last.cpu()]
        self._fill_missing(self.state)
        return (-self.penalty * self._unknown[self.state]).to(last.device)

    def select(self, rows: Tensor) -> None:
        """Keep hypotheses `rows` `(N',)` (an index into the current N; may repeat)."""
        self.state = self.state[rows.cpu()]
