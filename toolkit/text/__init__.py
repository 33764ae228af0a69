"""Tokenizers: char, word and sentencepiece, sharing the special ids 0 (blank/pad), 1 (BOS), 2 (EOS), 3 (unk).

    tok = train_tokenizer("sentencepiece", texts, vocab_size=500)
    tok.save(bundle_dir)                 # tokenizer.json (+ tokenizer.model for sentencepiece)
    tok = load_tokenizer(bundle_dir)
    ids = tok.encode("a cat"); text = tok.decode(ids); labels = tok.pieces(ids)

`normalize_text` is the one text normalisation of training targets and metrics (`toolkit.text.normalize`).
"""

from toolkit.text.char import CharTokenizer
from toolkit.text.normalize import normalize_text
from toolkit.text.sentencepiece import SentencePieceTokenizer
from toolkit.text.tokenizer import (
    BLANK_ID,
    BOS_ID,
    EOS_ID,
    NUM_SPECIALS,
    PAD_ID,
    SPECIAL_PIECES,
    TOKENIZER_JSON,
    TOKENIZER_MODEL,
    UNK_ID,
    Tokenizer,
    list_tokenizers,
    load_tokenizer,
    register_tokenizer,
    train_tokenizer,
)
from toolkit.text.word import WordTokenizer

__all__ = [
    "BLANK_ID",
    "BOS_ID",
    "EOS_ID",
    "NUM_SPECIALS",
    "PAD_ID",
    "SPECIAL_PIECES",
    "TOKENIZER_JSON",
    "TOKENIZER_MODEL",
    "UNK_ID",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "list_tokenizers",
    "normalize_text",
    "load_tokenizer",
    "register_tokenizer",
    "train_tokenizer",
]
