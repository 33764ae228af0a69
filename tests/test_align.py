"""Word timestamps by CTC forced alignment (`toolkit.decode.align`) and tokenizer word grouping
(`Tokenizer.word_boundaries`)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from toolkit.decode.align import (align_tokens, align_words, align_words_batch, ctc_min_frames,
                                  uniform_token_spans)
from toolkit.decode.ctc import LOG_FLOOR
from toolkit.text import BLANK_ID, EOS_ID, UNK_ID, train_tokenizer
from toolkit.timing import Word

CORPUS = [
    "the cat sat on the mat", "a ball fell off the wall", "hello world", "the dog ran fast",
    "all small balls roll", "a tall fellow sells shells", "good morning to you", "see the sea",
] * 3


@pytest.fixture(scope="module")
def char_tok():
    return train_tokenizer("char", CORPUS)


@pytest.fixture(scope="module")
def sp_tok():
    return train_tokenizer("sentencepiece", CORPUS, vocab_size=60, model_type="bpe")


@pytest.fixture(scope="module")
def word_tok():
    return train_tokenizer("word", CORPUS)


def peaked_log_probs(tokens: list[int], frames: list[list[int]], num_frames: int, vocab_size: int) -> torch.Tensor:
    """(T, V) log-softmax where token k clearly wins frames[k] and blank wins every other frame."""
    logits = torch.zeros(num_frames, vocab_size)
    logits[:, BLANK_ID] = 8.0
    for token, where in zip(tokens, frames):
        for f in where:
            logits[f, BLANK_ID] = 0.0
            logits[f, token] = 8.0
    return logits.log_softmax(-1)


def spread_frames(n: int, first: int = 2, step: int = 3) -> list[list[int]]:
    """One frame per token: token k at first + k * step."""
    return [[first + k * step] for k in range(n)]


# ------------------------------------------------------------------------------------------- word boundaries


def test_char_word_boundaries(char_tok):
    ids = char_tok.encode("  the  cat sat ")
    spans = char_tok.word_boundaries(ids)
    assert [char_tok.decode(ids[a : b + 1]) for a, b in spans] == ["the", "cat", "sat"]
    assert spans[0] == (2, 4)  # the leading spaces belong to no word
    # an unknown character stays inside its word
    ids = char_tok.encode("cat z sat")
    assert ids[4] == UNK_ID and char_tok.word_boundaries(ids) == [(0, 2), (4, 4), (6, 8)]


def test_sentencepiece_word_boundaries(sp_tok):
    for text in CORPUS[:8]:
        ids = sp_tok.encode(text)
        pieces = sp_tok.pieces(ids)
        # a word begins at a piece "▁xyz", or at the piece after a lone "▁"
        starts = [k for k, p in enumerate(pieces)
                  if p != "\u2581" and (p[0] == "\u2581" or k > 0 and pieces[k - 1] == "\u2581")]
        spans = sp_tok.word_boundaries(ids)
        assert [sp_tok.decode(ids[a : b + 1]).strip() for a, b in spans] == text.split()
        assert [a for a, _ in spans] == starts
    assert any(len(range(a, b + 1)) > 1 for a, b in sp_tok.word_boundaries(sp_tok.encode("fellow shells")))


def test_word_tokenizer_boundaries(word_tok):
    ids = word_tok.encode("the cat zebra sat")
    assert word_tok.word_boundaries(ids) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert word_tok.word_boundaries([]) == []


def test_byte_fallback_whitespace_separates_words():
    tok = train_tokenizer("sentencepiece", CORPUS, vocab_size=300, byte_fallback=True)
    ids = tok.encode("hello\tworld caf\u00e9")  # a tab, unseen in training: the byte piece <0x09>
    assert "<0x09>" in tok.pieces(ids)
    assert [tok.decode(ids[a : b + 1]).strip() for a, b in tok.word_boundaries(ids)] == ["hello", "world",
                                                                                        "caf\u00e9"]


@pytest.mark.parametrize("kind", ["char", "sentencepiece", "word"])
def test_words_match_the_decoded_text(kind, char_tok, sp_tok, word_tok):
    tok = {"char": char_tok, "sentencepiece": sp_tok, "word": word_tok}[kind]
    for text in ["the cat sat on the mat", "see  the sea ", "hello world", "a tall fellow"]:
        ids = tok.encode(text)
        frames = spread_frames(len(ids))
        words = align_words(peaked_log_probs(ids, frames, 3 * len(ids) + 4, tok.vocab_size), ids, tok, 0.04)
        assert [w.text for w in words] == tok.decode(ids).split()


# ------------------------------------------------------------------------------------------------- alignment


def test_known_peaks_give_known_word_times(char_tok):
    ids = char_tok.encode("the ball fell")
    # t h e _ b a l l _ f e l l: the doubled l's are split by a blank frame; "a" is held for three frames
    frames = [[2], [3], [4, 5], [8], [12], [13, 14, 15], [17], [19], [22], [30], [31], [33], [35, 36]]
    lp = peaked_log_probs(ids, frames, 40, char_tok.vocab_size)
    spans = align_tokens(lp, ids)
    assert spans == [(float(f[0]), float(f[-1] + 1)) for f in frames]
    words = align_words(lp, ids, char_tok, frame_shift=0.5, offset=10.0)
    assert words == [Word("the", 11.0, 13.0), Word("ball", 16.0, 20.0), Word("fell", 25.0, 28.5)]


def test_sentencepiece_word_times(sp_tok):
    ids = sp_tok.encode("a tall fellow sells shells")
    frames = spread_frames(len(ids), first=1, step=4)
    words = align_words(peaked_log_probs(ids, frames, 4 * len(ids) + 2, sp_tok.vocab_size), ids, sp_tok, 0.04)
    spans = sp_tok.word_boundaries(ids)
    assert [w.text for w in words] == ["a", "tall", "fellow", "sells", "shells"]
    for w, (a, b) in zip(words, spans):
        assert w.start == pytest.approx(frames[a][0] * 0.04) and w.end == pytest.approx((frames[b][-1] + 1) * 0.04)


def _path_score(lp: torch.Tensor, tokens: list[int], spans) -> float:
    labels = [BLANK_ID] * lp.size(0)
    for t, (s, e) in zip(tokens, spans):
        labels[int(s) : int(e)] = [t] * int(e - s)
    return float(sum(lp[f, c] for f, c in enumerate(labels)))


def _collapse(path: tuple[int, ...]) -> list[int]:
    out, prev = [], BLANK_ID
    for c in path:
        if c != BLANK_ID and c != prev:
            out.append(c)
        prev = c
    return out


@pytest.mark.parametrize("tokens", [[4, 5], [4, 4], [5, 4, 5]])
def test_spans_are_the_best_path(tokens):
    """Exhaustively: no alignment of the tokens scores higher than the one `align_tokens` returns."""
    g = torch.Generator().manual_seed(sum(tokens))
    for _ in range(3):
        lp = torch.randn(7, 6, generator=g).mul(2).log_softmax(-1)
        spans = align_tokens(lp, tokens)
        labels = (BLANK_ID, *sorted(set(tokens)))
        best = max(sum(float(lp[f, c]) for f, c in enumerate(path))
                   for path in itertools.product(labels, repeat=7) if _collapse(path) == tokens)
        assert _path_score(lp, tokens, spans) == pytest.approx(best, abs=1e-4)


def test_times_are_ordered_on_random_inputs(char_tok):
    g = torch.Generator().manual_seed(1)
    for text in CORPUS[:8]:
        ids = char_tok.encode(text)
        t = int(torch.randint(ctc_min_frames(ids), 3 * len(ids), (1,), generator=g))
        lp = torch.randn(t, char_tok.vocab_size, generator=g).log_softmax(-1)
        words = align_words(lp, ids, char_tok, 0.04, offset=2.0)
        assert [w.text for w in words] == text.split()
        assert all(2.0 <= w.start < w.end <= 2.0 + t * 0.04 + 1e-9 for w in words)
        assert all(a.end <= b.start for a, b in zip(words, words[1:]))


# ------------------------------------------------------------------------------------------------ robustness


def test_empty_hypothesis():
    assert align_tokens(torch.zeros(5, 8), []) == []
    assert align_words(torch.zeros(5, 8).log_softmax(-1), [], train_tokenizer("char", ["ab"]), 0.04) == []
    assert align_words(torch.zeros(0, 8), [], train_tokenizer("char", ["ab"]), 0.04) == []


def test_infeasible_sequences_are_spread_uniformly(char_tok):
    ids = char_tok.encode("the cat sat")  # 11 tokens
    lp = torch.randn(6, char_tok.vocab_size).log_softmax(-1)
    assert ctc_min_frames(ids) == 11 and align_tokens(lp, ids) is None
    words = align_words(lp, ids, char_tok, frame_shift=0.1, offset=1.0)
    assert [w.text for w in words] == ["the", "cat", "sat"]
    step = 6 / 11 * 0.1
    assert words[0].start == pytest.approx(1.0) and words[-1].end == pytest.approx(1.6)
    assert words[1].start == pytest.approx(1.0 + 4 * step) and words[1].end == pytest.approx(1.0 + 7 * step)
    # repeats need a blank between them: "ll" fits 3 frames but not 2
    ll = char_tok.encode("ll")
    assert ctc_min_frames(ll) == 3
    assert align_tokens(torch.zeros(2, char_tok.vocab_size), ll) is None
    assert align_tokens(torch.zeros(3, char_tok.vocab_size), ll) == [(0.0, 1.0), (2.0, 3.0)]
    # no frames at all: every word at the offset, zero long
    assert align_words(torch.zeros(0, char_tok.vocab_size), ids, char_tok, 0.04, 3.0) == [
        Word(w, 3.0, 3.0) for w in ("the", "cat", "sat")]
    assert uniform_token_spans(4, 2) == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]


def test_low_precision_and_impossible_tokens(char_tok):
    ids = char_tok.encode("the cat")
    frames = spread_frames(len(ids))
    lp = peaked_log_probs(ids, frames, 3 * len(ids) + 2, char_tok.vocab_size)
    expected = align_words(lp, ids, char_tok, 0.04)
    assert align_words(lp.bfloat16(), ids, char_tok, 0.04) == expected
    assert align_words(lp.half(), ids, char_tok, 0.04) == expected
    assert align_words(lp.double(), ids, char_tok, 0.04) == expected
    # a token the model gives zero probability everywhere still gets a place on the path
    lp[:, ids[4]] = -math.inf
    assert LOG_FLOOR > -math.inf
    words = align_words(lp, ids, char_tok, 0.04)
    assert [w.text for w in words] == ["the", "cat"] and words[0].end <= words[1].start


def test_bad_arguments(char_tok):
    lp = torch.zeros(10, char_tok.vocab_size).log_softmax(-1)
    for bad in ([BLANK_ID], [EOS_ID], [char_tok.vocab_size]):
        with pytest.raises(ValueError, match="cannot be aligned"):
            align_tokens(lp, bad)
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        align_tokens(lp[None], [5])
    with pytest.raises(ValueError, match="NaN"):
        align_tokens(torch.full((4, 8), math.nan), [5])
    with pytest.raises(ValueError, match="frame_shift"):
        align_words(lp, [5], char_tok, 0.0)


def test_batch_uses_each_inputs_frames_and_offset(char_tok):
    texts = ["the cat", "hello world"]
    token_lists = [char_tok.encode(t) for t in texts]
    lengths = [3 * len(ids) + 2 for ids in token_lists]
    batch = torch.zeros(2, max(lengths) + 5, char_tok.vocab_size)
    batch[:, :, char_tok.encode("e")[0]] = 50.0  # padding frames that would win "e" if they were aligned
    for i, ids in enumerate(token_lists):
        batch[i, : lengths[i]] = peaked_log_probs(ids, spread_frames(len(ids)), lengths[i], char_tok.vocab_size)
    words = align_words_batch(batch, torch.tensor(lengths), token_lists, char_tok, 0.04, offsets=[0.0, 30.0])
    for i, ids in enumerate(token_lists):
        lp = batch[i, : lengths[i]]
        assert words[i] == align_words(lp, ids, char_tok, 0.04, offset=30.0 * i)
    assert words[1][0].start == pytest.approx(30.0 + 2 * 0.04)
    with pytest.raises(ValueError, match="2 inputs but 1 token lists"):
        align_words_batch(batch, None, token_lists[:1], char_tok, 0.04)


def test_unknown_words_are_left_out(word_tok):
    ids = word_tok.encode("the zebra cat")
    assert ids[1] == UNK_ID
    lp = peaked_log_probs(ids, [[1], [4, 5], [8]], 10, word_tok.vocab_size)
    assert align_words(lp, ids, word_tok, 1.0) == [Word("the", 1.0, 2.0), Word("cat", 8.0, 9.0)]
