"""What every task shares: the tokenizer section of an experiment and starting weights from a bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolkit.bundle import check_state_dict
from toolkit.text import Tokenizer, load_tokenizer, train_tokenizer

log = logging.getLogger("toolkit")


@dataclass
class TokenizerConfig:
    """kind: char | word | sentencepiece; vocab_size: sentencepiece size, or the word vocabulary cap."""

    kind: Literal["char", "word", "sentencepiece"] = "word"
    vocab_size: int | None = None
    min_count: int = 1


def prepare_tokenizer(config: TokenizerConfig, texts: list[str], directory: Path, resume: bool) -> Tokenizer:
    """Train the tokenizer on `texts` and save it to `directory`; on resume, load the one saved there."""
    if resume and (directory / "tokenizer.json").is_file():
        return load_tokenizer(directory)
    options: dict = {}
    if config.kind == "sentencepiece":
        options["vocab_size"] = config.vocab_size or 1000
    else:
        options["min_count"] = config.min_count
        if config.kind == "word" and config.vocab_size:
            options["max_vocab"] = config.vocab_size
    tokenizer = train_tokenizer(config.kind, texts, **options)
    tokenizer.save(directory)
    log.info("tokenizer: %s with %d tokens, saved to %s", config.kind, tokenizer.vocab_size, directory)
    return tokenizer


def copy_weights(model, source, where: str | Path) -> None:
    """Copy the weights of `source` (e.g. a loaded bundle's model) into `model` of the same architecture."""
    state = source.state_dict()
    check_state_dict(model, state, where)
    model.load_state_dict(state)
    log.info("weights initialised from %s", where)
