"""The `Tokenizer` interface, its fixed special ids, the registry of kinds, and `train_tokenizer` / `load_tokenizer`.

Every tokenizer shares the same four special ids, so models, CTC losses and decoders never ask which one they use:

    id 0  "<blank>"  CTC blank and padding (``blank_id == pad_id == 0``)
    id 1  "<s>"      beginning of sequence (``bos_id``)
    id 2  "</s>"     end of sequence (``eos_id``)
    id 3  "<unk>"    unknown character / word / piece (``unk_id``)

Normal tokens start at id 4. `encode` never adds BOS/EOS; `decode` skips all four special ids (an unknown token
therefore disappears from the decoded text; `pieces` shows it as "<unk>"). Tokenizers do no text normalisation
(lowercasing, punctuation, ...): that is the data pipeline's job, and keeping them lossless makes round trips testable.

A saved tokenizer is a directory holding ``tokenizer.json`` (``kind``, ``version``, ``specials`` and the kind's
state) and, for sentencepiece, the binary model ``tokenizer.model`` next to it. Loading reads JSON and the
sentencepiece protobuf only: nothing is ever unpickled.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal, Sequence, TypeVar

from toolkit.errors import BundleError, ToolkitError
from toolkit.files import write_atomic

BLANK_ID = PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
NUM_SPECIALS = 4
SPECIAL_PIECES: tuple[str, ...] = ("<blank>", "<s>", "</s>", "<unk>")

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_MODEL = "tokenizer.model"
FORMAT_VERSION = 1

#: How a token takes part in words (`Tokenizer.word_role`): "space" separates words and belongs to none, "start"
#: begins a new word, "inside" continues the current one (or begins a word after a "space" or at the start).
WordRole = Literal["space", "start", "inside"]
WORD_SEPARATOR = "\u2581"  # "▁": how sentencepiece (and `CharTokenizer.id_to_piece`) shows a space


def one_line(text: str) -> str:
    """Collapse `text` to one line (user-facing errors are single lines)."""
    return " ".join(str(text).split())


class Tokenizer(ABC):
    """Text <-> ids with the shared special ids.

    Subclasses implement `vocab_size`, `encode`, `_decode`, `_piece`, `_state`, `train` and `_from_state`.
    """

    kind: ClassVar[str]
    blank_id: ClassVar[int] = BLANK_ID
    pad_id: ClassVar[int] = PAD_ID
    bos_id: ClassVar[int] = BOS_ID
    eos_id: ClassVar[int] = EOS_ID
    unk_id: ClassVar[int] = UNK_ID
    special_ids: ClassVar[tuple[int, ...]] = tuple(range(NUM_SPECIALS))

    #: The training options that built this tokenizer (saved for provenance; not needed to load it).
    options: dict[str, Any]

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special ids included (ids are ``0 .. vocab_size - 1``)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without BOS/EOS; unknown tokens become `unk_id`."""

    @abstractmethod
    def _decode(self, ids: list[int]) -> str:
        """Text of normal ids (all >= NUM_SPECIALS and < vocab_size)."""

    @abstractmethod
    def _piece(self, i: int) -> str:
        """Display form of the normal id `i`."""

    @abstractmethod
    def _state(self, directory: Path) -> dict[str, Any]:
        """The kind's JSON state for `tokenizer.json`; may write extra files into `directory`."""

    @classmethod
    @abstractmethod
    def train(cls, texts: Iterable[str], **options: Any) -> Tokenizer:
        """Build a tokenizer from training texts (deterministic: same texts and options, same vocabulary)."""

    @classmethod
    @abstractmethod
    def _from_state(cls, state: dict[str, Any], directory: Path) -> Tokenizer:
        """Rebuild from a loaded `tokenizer.json`; raise `BundleError` naming the file when it does not fit."""

    def _check_id(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} out of range for a {self.kind} tokenizer of vocab_size {self.vocab_size}")
        return i

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, skipping every special id (blank/pad, BOS, EOS, unk); it does not stop at EOS."""
        return self._decode([i for i in map(self._check_id, ids) if i >= NUM_SPECIALS])

    def id_to_piece(self, i: int) -> str:
        """Display form of one id: "<blank>", "<s>", "</s>", "<unk>" for the specials, else the token."""
        i = self._check_id(i)
        return SPECIAL_PIECES[i] if i < NUM_SPECIALS else self._piece(i)

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Display form of each id, e.g. to label the rows of an attention map."""
        return [self.id_to_piece(i) for i in ids]

    def vocab(self) -> list[str]:
        """Display form of every id, in id order."""
        return self.pieces(range(self.vocab_size))

    def word_role(self, i: int) -> WordRole:
        """How id `i` takes part in words (see `WordRole`), from its display form by default: a piece of
        whitespace and "▁" only is a "space", one that begins with either "start"s a word, any other piece is
        "inside". The special ids blank, BOS and EOS are "space" (they never belong to a word); unk is "inside".
        Subclasses whose pieces follow another convention override this."""
        i = self._check_id(i)
        if i < NUM_SPECIALS:
            return "inside" if i == UNK_ID else "space"
        piece = self._piece(i)
        if not piece.replace(WORD_SEPARATOR, " ").strip():
            return "space"
        return "start" if piece[0] == WORD_SEPARATOR or piece[0].isspace() else "inside"

    def word_boundaries(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        """The words of a token sequence as (first, last) positions into `ids` (both inclusive), in order.

        A word begins at a "start" token, or at an "inside" token that follows a "space" token or opens the
        sequence; it runs up to the token before the next "space" or "start". "space" tokens belong to no word.
        So for a char tokenizer the space character separates words, for sentencepiece a piece beginning with
        "▁" begins one, and for a word tokenizer every token is a word.
        """
        spans: list[tuple[int, int]] = []
        first: int | None = None
        for pos, i in enumerate(ids):
            role = self.word_role(i)
            if role == "space" or (role == "start" and first is not None):
                if first is not None:
                    spans.append((first, pos - 1))
                first = None
            if role != "space" and first is None:
                first = pos
        if first is not None:
            spans.append((first, len(ids) - 1))
        return spans

    def save(self, directory: Path) -> None:
        """Write `tokenizer.json` (and the kind's extra files, e.g. `tokenizer.model`) into `directory`. The JSON is
        written last and atomically (renamed into place), so once it exists the tokenizer is complete."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "version": FORMAT_VERSION, "specials": list(SPECIAL_PIECES)}
        meta.update(self._state(directory))
        meta["options"] = self.options
        write_atomic(directory / TOKENIZER_JSON, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def check_int_option(kind: str, name: str, value: Any, minimum: int) -> int:
    """Refuse a non-integer or too small training option with a one-line `ToolkitError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ToolkitError(f"{kind} tokenizer: option {name} must be an integer >= {minimum}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------- registry

_TOKENIZERS: dict[str, type[Tokenizer]] = {}

T = TypeVar("T", bound=type[Tokenizer])


def register_tokenizer(kind: str) -> Callable[[T], T]:
    """Class decorator: make a `Tokenizer` subclass trainable and loadable as `kind`."""

    def wrap(cls: T) -> T:
        if kind in _TOKENIZERS:
            raise ValueError(f"tokenizer kind {kind!r} is registered twice")
        cls.kind = kind
        _TOKENIZERS[kind] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    # Importing the modules runs their @register_tokenizer decorators.
    from toolkit.text import char, sentencepiece, word  # noqa: F401


def list_tokenizers() -> list[str]:
    """Kinds accepted by `train_tokenizer`."""
    _load_builtin()
    return sorted(_TOKENIZERS)


def train_tokenizer(kind: str, texts: Iterable[str], **options: Any) -> Tokenizer:
    """Train a tokenizer of `kind` ("char", "word", "sentencepiece") on `texts`; unknown kinds/options are refused."""
    _load_builtin()
    if kind not in _TOKENIZERS:
        raise ToolkitError(f"tokenizer kind {kind!r} is unknown (known: {', '.join(sorted(_TOKENIZERS))})")
    cls = _TOKENIZERS[kind]
    params = inspect.signature(cls.train).parameters
    known = sorted(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ToolkitError(
            f"{kind} tokenizer: unknown option(s) {', '.join(unknown)} (known: {', '.join(known) or 'none'})"
        )
    return cls.train(texts, **options)


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load a tokenizer saved by `Tokenizer.save` (a directory, or its `tokenizer.json`)."""
    _load_builtin()
    directory = Path(directory)
    if directory.name == TOKENIZER_JSON and directory.is_file():
        directory = directory.parent
    path = directory / TOKENIZER_JSON
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing (a tokenizer directory holds the tokenizer.json written by save)") from None
    except OSError as e:
        raise BundleError(one_line(f"{path}: cannot be read ({e.strerror or e})")) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(one_line(f"{path}: not valid JSON ({e})")) from None
    if not isinstance(meta, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in _TOKENIZERS:
        raise BundleError(one_line(f"{path}: kind {kind!r} is unknown (known: {', '.join(sorted(_TOKENIZERS))})"))
    if meta.get("version") != FORMAT_VERSION:
        version = meta.get("version")
        raise BundleError(one_line(f"{path}: version {version!r} is not supported (expected {FORMAT_VERSION})"))
    if meta.get("specials") != list(SPECIAL_PIECES):
        raise BundleError(one_line(f"{path}: specials {meta.get('specials')!r} != {list(SPECIAL_PIECES)}"))
    options = meta.get("options", {})
    if not isinstance(options, dict):
        raise BundleError(f"{path}: options must be a JSON object")
    tokenizer = _TOKENIZERS[kind]._from_state(meta, directory)
    tokenizer.options = options
    return tokenizer


class TokenTableTokenizer(Tokenizer):
    """A tokenizer whose normal tokens are a list of strings (ids 4, 5, ...): the base of char and word."""

    #: What one token is, for error messages ("character", "word").
    token_name: ClassVar[str]

    def __init__(self, tokens: Sequence[str], options: dict[str, Any] | None = None) -> None:
        self.tokens = list(tokens)
        self._index = {t: i for i, t in enumerate(self.tokens, start=NUM_SPECIALS)}
        if len(self._index) != len(self.tokens):
            raise ValueError(f"{self.kind} tokenizer: duplicate tokens")
        self.options = dict(options or {})

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIALS + len(self.tokens)

    @classmethod
    def _valid_token(cls, token: str) -> bool:
        """Whether `token` can be one token of this kind (checked when loading)."""
        return bool(token)

    def _lookup(self, tokens: Iterable[str]) -> list[int]:
        index = self._index
        return [index.get(t, UNK_ID) for t in tokens]

    def _piece(self, i: int) -> str:
        return self.tokens[i - NUM_SPECIALS]

    def _state(self, directory: Path) -> dict[str, Any]:
        return {"tokens": self.tokens}

    @classmethod
    def _from_state(cls, state: dict[str, Any], directory: Path) -> Tokenizer:
        path = directory / TOKENIZER_JSON
        tokens = state.get("tokens")
        if not isinstance(tokens, list):
            raise BundleError(f"{path}: tokens must be a list of {cls.token_name}s")
        for i, t in enumerate(tokens):
            if not isinstance(t, str) or not cls._valid_token(t):
                raise BundleError(one_line(f"{path}: tokens[{i}] = {t!r} is not a {cls.token_name}"))
        if len(set(tokens)) != len(tokens):
            raise BundleError(f"{path}: tokens has duplicates")
        return cls(tokens)

    @classmethod
    def _select(cls, counts: dict[str, int], min_count: int, by_frequency: bool, limit: int | None = None) -> list[str]:
        """Tokens seen at least `min_count` times, sorted (or most frequent first, ties sorted), at most `limit`."""
        kept = sorted(t for t, c in counts.items() if c >= min_count)
        if by_frequency:
            kept.sort(key=lambda t: -counts[t])  # stable: ties stay in sorted order
        if limit is not None:
            kept = kept[:limit]
        if not kept:
            raise ToolkitError(
                f"{cls.kind} tokenizer: no {cls.token_name} occurs at least min_count={min_count} times in the texts"
            )
        return kept
