"""Language-model bundles: the model bundle layout (`toolkit.bundle`) with `info.task = "lm"`.

    save_lm("exp/lm/final", lm, tokenizer, info={"step": 1200})
    bundle = load_lm("exp/lm/final", tokenizer=asr_bundle.tokenizer)   # refuses an LM of another tokenizer

config.json holds the `LstmLMConfig` as `model`, the sha256 of every file and `info`; tokenizer.json is the
tokenizer the LM was trained with, which must be the one of the speech model it is fused with: token ids are
added position by position, so both models must mean the same token by the same id. lexicon.txt (optional, one
word per line) lists the words the LM knows, for the search's OOV penalty (`toolkit.lm.lexicon`); the loaded
model carries it as `model.lexicon`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolkit.bundle import (CONFIG_FILE, WEIGHTS_FILE, check_state_dict, read_bundle_config, read_bundle_weights,
                            verify_bundle_files, write_bundle)
from toolkit.config import from_dict, to_dict
from toolkit.errors import BundleError, ToolkitError
from toolkit.lm.lexicon import Lexicon, TokenLexicon
from toolkit.lm.model import LanguageModel, LstmLM, LstmLMConfig
from toolkit.text import Tokenizer, load_tokenizer

LM_TASK = "lm"
LEXICON_FILE = "lexicon.txt"

__all__ = ["LEXICON_FILE", "LM_TASK", "LMBundle", "check_same_tokenizer", "load_lm", "save_lm"]


@dataclass
class LMBundle:
    """A loaded language model (in eval mode), the tokenizer it was trained with and its `info`."""

    model: LanguageModel  # an LstmLM, or its exported twin (toolkit.export.runtime.OnnxLstmLM)
    tokenizer: Tokenizer
    info: dict[str, Any] = field(default_factory=dict)


def save_lm(directory: str | Path, lm: LstmLM, tokenizer: Tokenizer, info: dict[str, Any] | None = None,
            lexicon: Lexicon | None = None) -> Path:
    """Write `lm` and the `tokenizer` it reads as a bundle at `directory` (atomically; `info.task` = "lm"), with
    `lexicon` as lexicon.txt when given."""
    if tokenizer.vocab_size != lm.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the LM {lm.config.vocab_size}")
    texts = {LEXICON_FILE: "".join(w + "\n" for w in lexicon.words)} if lexicon is not None else None
    return write_bundle(directory, lm.state_dict(), tokenizer, to_dict(lm.config), {**(info or {}), "task": LM_TASK},
                        texts)


def check_same_tokenizer(lm_tokenizer: Tokenizer, tokenizer: Tokenizer, where: str | Path) -> None:
    """A one-line `ToolkitError` unless both tokenizers are of one kind and map every id to the same token."""
    if lm_tokenizer.kind == tokenizer.kind and lm_tokenizer.vocab() == tokenizer.vocab():
        return
    if lm_tokenizer.kind == tokenizer.kind and lm_tokenizer.vocab_size == tokenizer.vocab_size:
        diff = next(i for i, (a, b) in enumerate(zip(lm_tokenizer.vocab(), tokenizer.vocab())) if a != b)
        detail = f"id {diff} is {lm_tokenizer.id_to_piece(diff)!r} for the LM, {tokenizer.id_to_piece(diff)!r} here"
    else:
        detail = (f"{lm_tokenizer.kind} with {lm_tokenizer.vocab_size} tokens vs {tokenizer.kind} with "
                  f"{tokenizer.vocab_size}")
    raise ToolkitError(f"{where}: the language model was trained with another tokenizer than the speech model's "
                       f"({detail}); train it with tokenizer_from: <the speech model's bundle>")


def load_lm(directory: str | Path, device: str | torch.device = "cpu", tokenizer: Tokenizer | None = None) -> LMBundle:
    """Rebuild the language model saved at `directory`, in eval mode. With `tokenizer` (the speech model's), an LM
    trained with another tokenizer is refused in one line."""
    directory = Path(directory)
    meta = read_bundle_config(directory)
    task = meta["info"].get("task")
    if task != LM_TASK:
        raise BundleError(f"{directory}: a {task!r} model bundle, not a language model (info.task is not 'lm')")
    verify_bundle_files(directory, meta)
    try:
        config = from_dict(LstmLMConfig, meta["model"], f"{directory / CONFIG_FILE}: model")
        lm = LstmLM(config) if meta.get("runtime", "torch") == "torch" else None
    except (ToolkitError, ValueError) as e:
        raise BundleError(str(e)) from None
    lm_tokenizer = load_tokenizer(directory)
    if lm_tokenizer.vocab_size != config.vocab_size:
        raise BundleError(f"{directory}: vocabulary mismatch, tokenizer has {lm_tokenizer.vocab_size} tokens "
                          f"but the LM config says vocab_size {config.vocab_size}")
    if tokenizer is not None:
        check_same_tokenizer(lm_tokenizer, tokenizer, directory)
    if lm is None:  # exported: the network runs in onnxruntime (toolkit.export)
        from toolkit.export.runtime import load_exported_lm

        lm = load_exported_lm(directory, meta, config, device)
    else:
        state = read_bundle_weights(directory, device)
        check_state_dict(lm, state, directory / WEIGHTS_FILE)
        lm.load_state_dict(state)
    if LEXICON_FILE in meta["files"]:
        lexicon = Lexicon.load(directory / LEXICON_FILE)
        if not len(lexicon):
            raise BundleError(f"{directory / LEXICON_FILE}: lists no words")
        lm.lexicon = TokenLexicon.of(lexicon, lm_tokenizer)
    return LMBundle(lm.to(device).eval(), lm_tokenizer, dict(meta["info"]))

