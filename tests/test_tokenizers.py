"""Tokenizers: lossless round trips, fixed special ids, save/load, deterministic training, one-line errors."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.errors import BundleError, ToolkitError
from toolkit.text import (
    BLANK_ID,
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_PIECES,
    UNK_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    list_tokenizers,
    load_tokenizer,
    train_tokenizer,
)

CORPUS = [
    "a man rides a bicycle down the street",
    "two dogs play in the snow",
    "a woman is reading a book in the park",
    "the cat sleeps on a red sofa",
    "children are playing football on the beach",
    "a plate of food with rice and vegetables",
    "an old man sits on a wooden bench",
    "the train arrives at the station at noon",
    "a group of people walk across the bridge",
    "a small boat floats on the calm lake",
    "she said that the weather would be fine today",
    "we will meet again tomorrow morning",
    "the quick brown fox jumps over the lazy dog",
    "please turn off the lights before you leave",
    "i think it's going to rain this afternoon",
    "he bought three apples and a loaf of bread",
    "the children laughed at the funny clown",
    "a bird is sitting on top of a tall tree",
    "the kitchen is full of fresh flowers",
    "two men are talking next to a white car",
    "a girl in a yellow dress holds an umbrella",
    "the horse runs quickly across the field",
    "my brother works at the hospital downtown",
    "a pizza with cheese and tomatoes on a table",
    "the sun sets behind the mountains",
    "a skateboarder does a trick on a ramp",
    "the teacher writes on the blackboard",
    "a large crowd watches the concert",
    "the baby is sleeping in her crib",
    "a surfer rides a big wave in the ocean",
    "they are building a new house near the river",
    "a clock on the wall shows ten past nine",
    "the road is wet after the storm",
    "a young boy flies a kite in the wind",
    "the museum opens at nine in the morning",
    "a cup of coffee next to a laptop",
    "the dog catches a frisbee in the air",
    "people are waiting for the bus in the rain",
    "a chef prepares dinner in a busy kitchen",
    "the library is quiet on sunday",
    "a red bus drives past a tall building",
    "two zebras stand near a watering hole",
    "an elephant sprays water with its trunk",
    "the players shake hands after the match",
    "a vase of flowers sits on the window sill",
    "we need to buy milk, eggs and butter",
    "the airplane takes off from the runway",
    "a man and a woman dance at the wedding",
    "the snow covers the quiet village",
    "would you like some tea? yes, please.",
]
ALPHABET = sorted(set("".join(CORPUS)))  # lowercase letters, space, ' , . ?
WORDS = sorted({w for s in CORPUS for w in s.split()})
KINDS = ["char", "word", "sentencepiece"]
SP_OPTIONS = {
    "bpe": dict(vocab_size=150, model_type="bpe"),
    "unigram": dict(vocab_size=100, model_type="unigram"),
    "bytes": dict(vocab_size=330, model_type="bpe", byte_fallback=True),
}


@functools.cache
def trained(kind: str, variant: str = "bpe") -> Tokenizer:
    """One tokenizer per kind (sentencepiece: per variant), trained once on CORPUS and shared by the tests."""
    options = SP_OPTIONS[variant] if kind == "sentencepiece" else {}
    return train_tokenizer(kind, CORPUS, **options)


def assert_one_line_error(exc: pytest.ExceptionInfo, *names: str) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
    for name in names:
        assert name in msg, msg


# --------------------------------------------------------------------------------------------- special ids


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids_are_fixed_and_decode_skips_them(kind: str) -> None:
    tok = trained(kind)
    assert tok.kind == kind
    assert (tok.blank_id, tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 0, 1, 2, 3)
    assert (BLANK_ID, PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 0, 1, 2, 3)
    assert tok.pieces(range(4)) == list(SPECIAL_PIECES) == ["<blank>", "<s>", "</s>", "<unk>"]
    assert tok.vocab()[:4] == list(SPECIAL_PIECES) and len(tok.vocab()) == tok.vocab_size == len(tok)
    ids = tok.encode(CORPUS[0])
    assert ids and min(ids) >= 4 and max(ids) < tok.vocab_size
    noisy = [BOS_ID, BLANK_ID, *ids[:2], EOS_ID, UNK_ID, *ids[2:], EOS_ID, PAD_ID, PAD_ID]
    assert tok.decode(noisy) == tok.decode(ids) == CORPUS[0]
    assert tok.decode([0, 1, 2, 3]) == "" and tok.decode([]) == "" and tok.encode("") == []
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError):
        tok.id_to_piece(-1)


# ------------------------------------------------------------------------------------------- round trips


@settings(deadline=None)
@given(st.text(alphabet=ALPHABET))
def test_char_round_trip(text: str) -> None:
    tok = trained("char")
    ids = tok.encode(text)
    assert len(ids) == len(text) and all(i >= 4 for i in ids)
    assert tok.decode(ids) == text
    assert "".join(tok.pieces(ids)) == text.replace(" ", "\u2581")


@settings(deadline=None)
@given(st.text(alphabet=ALPHABET + ["Z", "é", "\t", "\n", "😀"]))
def test_char_unknown_characters_are_unk_and_dropped_by_decode(text: str) -> None:
    tok = trained("char")
    ids = tok.encode(text)
    assert ids == [UNK_ID if c not in ALPHABET else tok.encode(c)[0] for c in text]
    assert tok.decode(ids) == "".join(c for c in text if c in ALPHABET)


separators = st.sampled_from([" ", "  ", "\t", "\n", " \n "])


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from(WORDS), separators)), separators, st.booleans())
def test_word_round_trip_normalises_whitespace(pairs: list[tuple[str, str]], lead: str, use_lead: bool) -> None:
    tok = trained("word")
    text = (lead if use_lead else "") + "".join(w + sep for w, sep in pairs)
    ids = tok.encode(text)
    assert len(ids) == len(pairs) and all(i >= 4 for i in ids)
    assert tok.decode(ids) == " ".join(text.split()) == " ".join(w for w, _ in pairs)
    assert tok.pieces(ids) == [w for w, _ in pairs]


@settings(deadline=None)
@given(st.lists(st.sampled_from(WORDS + ["zebra", "Man", "man.", "<unk>"])))
def test_word_unknown_words_are_unk(words: list[str]) -> None:
    tok = trained("word")
    ids = tok.encode(" ".join(words))
    assert ids == [tok.encode(w)[0] if w in WORDS else UNK_ID for w in words]
    assert tok.decode(ids) == " ".join(w for w in words if w in WORDS)


@pytest.mark.parametrize("variant", SP_OPTIONS)
@settings(deadline=None)
@given(text=st.text(alphabet=ALPHABET))
def test_sentencepiece_round_trip_is_lossless_over_training_characters(variant: str, text: str) -> None:
    # Lossless because of normalization_rule_name="identity" and remove_extra_whitespaces=False: leading,
    # trailing and repeated spaces all survive.
    tok = trained("sentencepiece", variant)
    ids = tok.encode(text)
    assert all(4 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@pytest.mark.parametrize("variant", SP_OPTIONS)
@settings(deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1))
def test_sentencepiece_round_trip_of_sentences(variant: str, words: list[str]) -> None:
    tok = trained("sentencepiece", variant)
    text = " ".join(words)
    ids = tok.encode(text)
    assert all(i >= 4 for i in ids) and len(ids) <= len(text) + 1
    assert tok.decode(ids) == text
    assert "".join(tok.pieces(ids)).replace("\u2581", " ").lstrip(" ") == text


@settings(deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581")))
def test_sentencepiece_byte_fallback_round_trips_any_text(text: str) -> None:
    # Only a literal "▁" (U+2581, sentencepiece's space marker) does not survive: it decodes as a space.
    tok = trained("sentencepiece", "bytes")
    assert tok.byte_fallback and not trained("sentencepiece", "bpe").byte_fallback
    ids = tok.encode(text)
    assert UNK_ID not in ids and all(4 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_sentencepiece_unknown_characters_are_unk_and_dropped_by_decode() -> None:
    tok = trained("sentencepiece", "bpe")
    ids = tok.encode("the Zebra é")
    assert ids.count(UNK_ID) == 2
    assert tok.decode(ids) == "the ebra "
    assert tok.decode(tok.encode("a\u2581b")) == "a b"  # the documented exception to losslessness


# ------------------------------------------------------------------------------------ save / load, determinism


@pytest.mark.parametrize(
    "kind, variant, files",
    [
        ("char", "", {"tokenizer.json"}),
        ("word", "", {"tokenizer.json"}),
        ("sentencepiece", "bpe", {"tokenizer.json", "tokenizer.model"}),
        ("sentencepiece", "unigram", {"tokenizer.json", "tokenizer.model"}),
        ("sentencepiece", "bytes", {"tokenizer.json", "tokenizer.model"}),
    ],
)
def test_save_load_round_trip(tmp_path: Path, kind: str, variant: str, files: set[str]) -> None:
    tok = trained(kind, variant or "bpe")
    tok.save(tmp_path / "bundle")
    assert {p.name for p in (tmp_path / "bundle").iterdir()} == files
    for where in (tmp_path / "bundle", tmp_path / "bundle" / "tokenizer.json"):
        loaded = load_tokenizer(where)
        assert type(loaded) is type(tok) and loaded.kind == kind
        assert loaded.vocab_size == tok.vocab_size and loaded.vocab() == tok.vocab()
        assert loaded.options == tok.options
        probe = CORPUS + ["  unseen Zebra, é! \t", ""]
        assert [loaded.encode(s) for s in probe] == [tok.encode(s) for s in probe]
        ids = list(range(tok.vocab_size))
        assert loaded.decode(ids) == tok.decode(ids)
    if kind == "sentencepiece":
        assert (tmp_path / "bundle" / "tokenizer.model").read_bytes() == tok.model


@pytest.mark.parametrize(
    "kind, options",
    [("char", {}), ("word", {}), *(("sentencepiece", o) for o in SP_OPTIONS.values())],
)
def test_training_is_deterministic(kind: str, options: dict) -> None:
    a = train_tokenizer(kind, CORPUS, **options)
    b = train_tokenizer(kind, iter(list(CORPUS)), **options)  # any iterable, e.g. a one-shot iterator
    assert a.vocab() == b.vocab()
    if kind == "sentencepiece":
        assert a.model == b.model
    else:  # char / word vocabularies do not depend on the order of the texts
        assert train_tokenizer(kind, CORPUS[::-1], **options).vocab() == a.vocab()


def test_char_vocab_is_sorted_with_min_count() -> None:
    tok = train_tokenizer("char", ["cab", "b a", "ca"], min_count=2)
    assert tok.vocab()[4:] == ["a", "b", "c"]  # " " occurs once
    assert train_tokenizer("char", ["cab", "b a"]).vocab()[4:] == ["\u2581", "a", "b", "c"]
    assert train_tokenizer("char", ["cab", "b a"]).tokens == [" ", "a", "b", "c"]
    assert isinstance(tok, CharTokenizer)


def test_word_vocab_is_most_frequent_first_ties_alphabetical() -> None:
    texts = ["b a c", "a  b\td", "e c b"]  # b:3, a:2, c:2, d:1, e:1
    tok = train_tokenizer("word", texts)
    assert isinstance(tok, WordTokenizer)
    assert tok.vocab()[4:] == ["b", "a", "c", "d", "e"]
    assert train_tokenizer("word", texts, max_vocab=6).vocab()[4:] == ["b", "a"]
    assert train_tokenizer("word", texts, min_count=2).vocab()[4:] == ["b", "a", "c"]
    assert train_tokenizer("word", texts, min_count=2).encode("d b") == [UNK_ID, 4]


# ----------------------------------------------------------------------------------------- corrupted bundles


def _edit_json(directory: Path, **changes) -> None:
    path = directory / "tokenizer.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize(
    "kind, corrupt, file, why",
    [
        ("char", lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json", "missing"),
        ("char", lambda d: (d / "tokenizer.json").write_text('{"kind": "char", '), "tokenizer.json", "not valid JSON"),
        ("char", lambda d: (d / "tokenizer.json").write_bytes(b"\xff\xfe\x00junk"), "tokenizer.json", "not valid JSON"),
        ("char", lambda d: (d / "tokenizer.json").write_text("[1, 2]"), "tokenizer.json", "JSON object"),
        ("char", lambda d: _edit_json(d, kind="bpe"), "tokenizer.json", "'bpe' is unknown"),
        ("char", lambda d: _edit_json(d, kind=None), "tokenizer.json", "None is unknown"),
        ("char", lambda d: _edit_json(d, kind=["char"]), "tokenizer.json", "is unknown"),
        ("char", lambda d: _edit_json(d, version=99), "tokenizer.json", "version 99"),
        ("char", lambda d: _edit_json(d, specials=["<pad>", "<s>", "</s>", "<unk>"]), "tokenizer.json", "specials"),
        ("char", lambda d: _edit_json(d, options=[1]), "tokenizer.json", "options"),
        ("char", lambda d: _edit_json(d, tokens=["a", "bc"]), "tokenizer.json", "'bc' is not a character"),
        ("char", lambda d: _edit_json(d, tokens=["a", "a"]), "tokenizer.json", "duplicates"),
        ("char", lambda d: _edit_json(d, tokens=None), "tokenizer.json", "tokens must be a list"),
        ("word", lambda d: _edit_json(d, tokens=["a", "b c"]), "tokenizer.json", "'b c' is not a word"),
        ("word", lambda d: _edit_json(d, tokens=["a", 3]), "tokenizer.json", "3 is not a word"),
        ("word", lambda d: _edit_json(d, tokens="a b"), "tokenizer.json", "tokens must be a list"),
        ("sentencepiece", lambda d: (d / "tokenizer.model").unlink(), "tokenizer.model", "missing"),
        ("sentencepiece", lambda d: (d / "tokenizer.model").write_bytes(b""), "tokenizer.model", "corrupted"),
        ("sentencepiece", lambda d: _replace_model(d, b""), "tokenizer.model", "not a valid"),
        ("sentencepiece", lambda d: _flip_a_byte(d / "tokenizer.model"), "tokenizer.model", "corrupted"),
        ("sentencepiece", lambda d: _replace_model(d, b"not a model at all"), "tokenizer.model", "not a valid"),
        ("sentencepiece", lambda d: _replace_model(d, _foreign_model()), "tokenizer.model", "special ids"),
        ("sentencepiece", lambda d: _replace_model(d, _foreign_model(same_ids=True)), "tokenizer.model", "<pad>"),
        ("sentencepiece", lambda d: _edit_json(d, vocab_size=7), "tokenizer.model", "vocab_size"),
        ("sentencepiece", lambda d: _edit_json(d, model_file="../x.model"), "tokenizer.json", "model_file"),
    ],
)
def test_corrupted_or_missing_files_give_one_line_bundle_error(tmp_path: Path, kind, corrupt, file, why) -> None:
    trained(kind).save(tmp_path)
    load_tokenizer(tmp_path)  # intact
    corrupt(tmp_path)
    with pytest.raises(BundleError) as exc:
        load_tokenizer(tmp_path)
    assert_one_line_error(exc, str(tmp_path / file))
    assert why in str(exc.value).replace(str(tmp_path), "")  # tmp_path holds the test's name


def test_missing_directory_gives_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as exc:
        load_tokenizer(tmp_path / "nowhere")
    assert_one_line_error(exc, str(tmp_path / "nowhere" / "tokenizer.json"))
    assert "missing" in str(exc.value).replace(str(tmp_path), "")


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _replace_model(directory: Path, model: bytes) -> None:
    """Swap in other bytes and fix the checksum, so the model itself must be checked."""
    (directory / "tokenizer.model").write_bytes(model)
    _edit_json(directory, model_sha256=hashlib.sha256(model).hexdigest())


def _foreign_model(same_ids: bool = False) -> bytes:
    """A valid sentencepiece model that is not ours: sentencepiece's default special ids (unk=0, bos=1, eos=2,
    no pad), or with `same_ids` our ids but sentencepiece's default piece names ("<pad>" for id 0)."""
    ids = dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3) if same_ids else {}
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=out, vocab_size=60, minloglevel=2, **ids
    )
    return out.getvalue()


# ------------------------------------------------------------------------------------------- training errors


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_vocab_too_large_says_the_usable_maximum(model_type: str) -> None:
    with pytest.raises(ToolkitError) as exc:
        train_tokenizer("sentencepiece", CORPUS, vocab_size=5000, model_type=model_type)
    assert_one_line_error(exc, "vocab_size=5000", "too large")
    maximum = int(re.search(r"at most vocab_size=(\d+)", str(exc.value)).group(1))
    assert train_tokenizer("sentencepiece", CORPUS, vocab_size=maximum, model_type=model_type).vocab_size == maximum
    with pytest.raises(ToolkitError):
        train_tokenizer("sentencepiece", CORPUS, vocab_size=maximum + 1, model_type=model_type)


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_sentencepiece_vocab_too_small_says_the_minimum(byte_fallback: bool) -> None:
    with pytest.raises(ToolkitError) as exc:
        train_tokenizer("sentencepiece", CORPUS, vocab_size=20, byte_fallback=byte_fallback)
    assert_one_line_error(exc, "vocab_size=20", "too small")
    minimum = int(re.search(r"at least vocab_size=(\d+)", str(exc.value)).group(1))
    assert minimum == len(ALPHABET) + 4 + (256 if byte_fallback else 0)  # " " is the "▁" piece
    tok = train_tokenizer("sentencepiece", CORPUS, vocab_size=minimum, byte_fallback=byte_fallback)
    assert tok.vocab_size == minimum and tok.decode(tok.encode(CORPUS[3])) == CORPUS[3]


@pytest.mark.parametrize(
    "kind, texts, options, words",
    [
        ("sentencepiece", ["", ""], {}, ["no training text"]),
        ("sentencepiece", CORPUS, {"model_type": "word"}, ["model_type"]),
        ("sentencepiece", CORPUS, {"vocab_size": 4}, ["vocab_size"]),
        ("sentencepiece", CORPUS, {"byte_fallback": "yes"}, ["byte_fallback"]),
        ("sentencepiece", CORPUS, {"character_coverage": 1.5}, ["character_coverage", "(0, 1]"]),
        ("char", [], {}, ["char", "no character"]),
        ("char", CORPUS, {"min_count": 0}, ["min_count"]),
        ("char", CORPUS, {"min_count": 10**6}, ["min_count=1000000"]),
        ("word", CORPUS, {"max_vocab": 4}, ["max_vocab"]),
        ("word", CORPUS, {"min_count": 1.5}, ["min_count"]),
        ("word", CORPUS, {"min_count": True}, ["min_count"]),
        ("word", CORPUS, {"vocab_size": 100}, ["unknown option", "vocab_size", "max_vocab, min_count"]),
        ("bpe", CORPUS, {}, ["'bpe'", "char, sentencepiece, word"]),
    ],
)
def test_bad_training_requests_give_one_line_toolkit_error(kind, texts, options, words) -> None:
    with pytest.raises(ToolkitError) as exc:
        train_tokenizer(kind, texts, **options)
    assert_one_line_error(exc, *words)


def test_registry_lists_kinds() -> None:
    assert list_tokenizers() == ["char", "sentencepiece", "word"]
    assert isinstance(trained("sentencepiece"), SentencePieceTokenizer)
