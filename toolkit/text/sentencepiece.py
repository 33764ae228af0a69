"""Subword tokenizer: a sentencepiece BPE or unigram model, trained in memory (no files, no network).

Training options fixed here, and why:

* ``pad_id=0, bos_id=1, eos_id=2, unk_id=3`` with pieces "<blank>", "<s>", "</s>", "<unk>": the shared special ids.
* ``normalization_rule_name="identity"``, ``remove_extra_whitespaces=False``: no NFKC and no whitespace folding, so
  the tokenizer is lossless: ``decode(encode(s)) == s`` for any text over the training characters (leading,
  trailing and repeated spaces, tabs and newlines included). With ``byte_fallback=True`` every other character
  round-trips as UTF-8 byte pieces too. One exception: sentencepiece writes spaces as "▁" (U+2581), so a literal
  "▁" in the text decodes as a space.
* ``character_coverage=1.0``: every training character gets a piece (the default 0.9995 drops rare ones to unk).
* ``hard_vocab_limit`` stays on: `vocab_size` is exact (output layers are sized from it). A `vocab_size` the text
  cannot fill, or one too small for its characters, is a one-line `ToolkitError` giving the usable bound.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import sentencepiece as spm

from toolkit.errors import BundleError, ToolkitError
from toolkit.text.tokenizer import (
    NUM_SPECIALS,
    SPECIAL_PIECES,
    TOKENIZER_JSON,
    TOKENIZER_MODEL,
    Tokenizer,
    WordRole,
    check_int_option,
    one_line,
    register_tokenizer,
)

MODEL_TYPES = ("bpe", "unigram")


def _parse(model: bytes) -> spm.SentencePieceProcessor:
    """Load serialized model bytes; ValueError with a one-line reason when they are not a model of ours."""
    try:
        sp = spm.SentencePieceProcessor(model_proto=model)
    except RuntimeError:
        raise ValueError("not a valid sentencepiece model") from None
    if not sp.serialized_model_proto():  # e.g. empty bytes: "loads" but any query would log errors and return 0
        raise ValueError("not a valid sentencepiece model (empty)")
    specials = (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id())
    pieces = tuple(sp.id_to_piece(i) for i in range(min(NUM_SPECIALS, sp.get_piece_size())))
    if specials != tuple(range(NUM_SPECIALS)) or pieces != SPECIAL_PIECES:
        expected = (tuple(range(NUM_SPECIALS)), SPECIAL_PIECES)
        raise ValueError(f"special ids/pieces are {specials}/{pieces}, expected {expected[0]}/{expected[1]}")
    return sp


@register_tokenizer("sentencepiece")
class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model; `model` (the serialized protobuf) is kept so `save` writes it as `tokenizer.model`."""

    def __init__(self, model: bytes, options: dict[str, Any] | None = None) -> None:
        self.model = bytes(model)
        self._sp = _parse(self.model)
        self.options = dict(options or {})

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int = 1000,
        model_type: str = "bpe",
        byte_fallback: bool = False,
        character_coverage: float = 1.0,
    ) -> SentencePieceTokenizer:
        """Train on `texts` (one sentence each). `vocab_size` counts every id, the 4 specials included."""
        check_int_option(cls.kind, "vocab_size", vocab_size, NUM_SPECIALS + 1)
        if model_type not in MODEL_TYPES:
            raise ToolkitError(
                f"sentencepiece tokenizer: model_type must be one of {list(MODEL_TYPES)}, got {model_type!r}"
            )
        if not isinstance(byte_fallback, bool):
            raise ToolkitError(f"sentencepiece tokenizer: byte_fallback must be true or false, got {byte_fallback!r}")
        if isinstance(character_coverage, bool) or not isinstance(character_coverage, (int, float)) or not (
            0.0 < character_coverage <= 1.0
        ):
            raise ToolkitError(
                f"sentencepiece tokenizer: character_coverage must be in (0, 1], got {character_coverage!r}"
            )
        options = dict(
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=byte_fallback,
            character_coverage=float(character_coverage),
        )

        def sentences() -> Iterator[str]:
            for text in texts:
                if not isinstance(text, str):
                    raise TypeError(f"training texts must be str, got {type(text).__name__}")
                yield text

        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences(),
                model_writer=out,
                pad_id=0,
                bos_id=1,
                eos_id=2,
                unk_id=3,
                pad_piece=SPECIAL_PIECES[0],
                bos_piece=SPECIAL_PIECES[1],
                eos_piece=SPECIAL_PIECES[2],
                unk_piece=SPECIAL_PIECES[3],
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                max_sentence_length=1 << 16,  # bytes; longer sentences would be skipped silently
                minloglevel=2,  # silence the C++ trainer's INFO/WARNING logging
                **options,
            )
        except RuntimeError as e:
            raise ToolkitError(_training_error(str(e), vocab_size, byte_fallback)) from None
        return cls(out.getvalue(), options)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def byte_fallback(self) -> bool:
        """Whether characters outside the vocabulary encode as UTF-8 byte pieces instead of `unk_id`."""
        return any(self._sp.is_byte(i) for i in range(NUM_SPECIALS, min(self.vocab_size, NUM_SPECIALS + 256)))

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def _decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def _piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    def word_role(self, i: int) -> WordRole:
        """A piece beginning with "▁" starts a word, a piece of "▁" only separates words (the default rule);
        with byte fallback, the byte pieces of whitespace characters ("<0x09>" for a tab) separate words too."""
        i = self._check_id(i)
        if i >= NUM_SPECIALS and self._sp.is_byte(i) and chr(int(self._piece(i)[3:5], 16)).isspace():
            return "space"
        return super().word_role(i)

    def _state(self, directory: Path) -> dict[str, Any]:
        (directory / TOKENIZER_MODEL).write_bytes(self.model)
        return {
            "model_file": TOKENIZER_MODEL,
            "model_sha256": hashlib.sha256(self.model).hexdigest(),
            "vocab_size": self.vocab_size,
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any], directory: Path) -> Tokenizer:
        json_path = directory / TOKENIZER_JSON
        if state.get("model_file") != TOKENIZER_MODEL:
            got = state.get("model_file")
            raise BundleError(one_line(f"{json_path}: model_file must be {TOKENIZER_MODEL!r}, got {got!r}"))
        path = directory / TOKENIZER_MODEL
        try:
            model = path.read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{path}: missing (the sentencepiece model saved next to {TOKENIZER_JSON})") from None
        except OSError as e:
            raise BundleError(one_line(f"{path}: cannot be read ({e.strerror or e})")) from None
        if hashlib.sha256(model).hexdigest() != state.get("model_sha256"):
            raise BundleError(f"{path}: corrupted (its sha256 does not match model_sha256 in {TOKENIZER_JSON})")
        try:
            tokenizer = cls(model)
        except ValueError as e:
            raise BundleError(one_line(f"{path}: {e}")) from None
        if tokenizer.vocab_size != state.get("vocab_size"):
            expected = state.get("vocab_size")
            got = tokenizer.vocab_size
            raise BundleError(one_line(f"{path}: vocab_size {got} != {expected!r} in {TOKENIZER_JSON}"))
        return tokenizer


def _training_error(message: str, vocab_size: int, byte_fallback: bool) -> str:
    """A one-line explanation of a sentencepiece trainer failure."""
    if m := re.search(r"Vocabulary size too high.*?<= *(\d+)", message):
        return (
            f"sentencepiece tokenizer: vocab_size={vocab_size} is too large for these texts; "
            f"they support at most vocab_size={m.group(1)} (lower it or train on more text)"
        )
    if m := re.search(r"Vocabulary size is smaller than required_chars\. *\d+ vs (\d+)", message):
        extra = ", and 256 byte pieces for byte_fallback" if byte_fallback else ""
        return (
            f"sentencepiece tokenizer: vocab_size={vocab_size} is too small for these texts; they need at least "
            f"vocab_size={m.group(1)} (one piece per character, the 4 specials{extra})"
        )
    if "sentences_.empty()" in message:
        return "sentencepiece tokenizer: no training text (every text is empty)"
    return one_line(f"sentencepiece tokenizer: training failed: {message}")
