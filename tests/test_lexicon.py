"""The lexicon and its OOV penalty: word-list reading, the token texts of each tokenizer kind, the scorer's word
states (checked against counting unknown words in the decoded text), its place in every search, LM bundles that
carry a lexicon, and the one-line errors around it."""

import json
import random
from dataclasses import replace

import pytest
import torch

from toolkit.bundle import save_model
from toolkit.decode import DecodingOptions, resolve_decoding, token_scorers
from toolkit.errors import BundleError, ToolkitError
from toolkit.lm import Lexicon, LexiconScorer, TokenLexicon, load_lm, save_lm, token_texts
from toolkit.model import BOS_ID, EOS_ID
from toolkit.tasks.lm import LmDataConfig, make_lexicon, train_lm
from toolkit.text import UNK_ID, train_tokenizer

from test_lm import (STRATEGIES, forced_score, item, random_decoder, random_inputs, random_lm, run, tiny_experiment,
                     tiny_speech_model, write_corpus)

WORDS = ["a", "ab", "bad", "cab", "dead", "face"]


def char_tokenizer():
    """12 ids, as test_lm's random decoder: 4 specials, the space and the letters a-g."""
    tokenizer = train_tokenizer("char", ["abcdefg "])
    assert tokenizer.vocab_size == 12
    return tokenizer


def unknown_words(tokenizer, tokens, lexicon) -> int:
    return sum(w not in lexicon for w in tokenizer.decode(tokens).split())


# ------------------------------------------------------------------------------------------------ the pieces


def test_lexicon_queries_and_file_round_trip(tmp_path):
    lexicon = Lexicon(["cab", "a", "ab", "cab", ""])
    assert lexicon.words == ["a", "ab", "cab"] and len(lexicon) == 3
    assert "ab" in lexicon and "c" not in lexicon and "abc" not in lexicon
    assert lexicon.is_prefix("") and lexicon.is_prefix("ca") and lexicon.is_prefix("cab")
    assert not lexicon.is_prefix("b") and not lexicon.is_prefix("cabs")
    lexicon.save(tmp_path / "words.txt")
    assert Lexicon.load(tmp_path / "words.txt").words == lexicon.words


def test_token_texts_of_each_tokenizer_kind():
    char = char_tokenizer()
    assert token_texts(char) == [None, None, " ", "\0", " ", *"abcdefg"]
    word = train_tokenizer("word", ["the cat sat"])
    assert token_texts(word) == [None, None, " ", " \0", " cat", " sat", " the"]
    pieces = train_tokenizer("sentencepiece", ["the cat sat on the mat"] * 50 + ["a bad cab"] * 50, vocab_size=30)
    texts = token_texts(pieces)
    for i in range(4, pieces.vocab_size):
        piece = pieces.id_to_piece(i)
        assert texts[i] == (" " + piece[1:] if piece.startswith("\u2581") else piece)


# ------------------------------------------------------------------------------------------------ the scorer


def test_scorer_charges_a_word_where_it_leaves_the_lexicon_or_ends_short():
    tokenizer, lexicon = char_tokenizer(), Lexicon(WORDS)
    ids = {c: tokenizer.encode(c)[0] for c in "abcdefg "}
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=2.5, rows=1)

    def after(text):
        out = scorer.scores(torch.tensor([BOS_ID]))
        for c in text:
            out = scorer.scores(torch.tensor([ids[c]]))
        return {c: -float(out[0, i]) / 2.5 for c, i in [*ids.items(), ("EOS", EOS_ID), ("UNK", UNK_ID)]}

    start = after("")  # a word may start with a, b, c, d or f; a space or EOS on the empty word costs nothing
    assert [c for c in "abcdefg" if start[c]] == ["e", "g"] and start[" "] == start["EOS"] == 0 and start["UNK"] == 1
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=2.5, rows=1)
    ca = after("ca")  # "ca" is no word: ending it here costs; "cab" goes on
    assert ca["b"] == 0 and ca["a"] == 1 and ca[" "] == ca["EOS"] == 1
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=2.5, rows=1)
    assert after("cab")[" "] == 0 and after("")["EOS"] == 0
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=2.5, rows=1)
    off = after("ge")  # charged at "g" already: the rest of the word is free, the next word is scored again
    assert all(v == 0 for v in off.values())
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=2.5, rows=1)
    assert after("ge ")["e"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_scorer_total_is_the_penalty_per_unknown_word_and_follows_select(seed):
    """Random token walks over rows that are reordered, repeated and pruned like beams: each row's charges add up
    to penalty x the words of its decoded text that the lexicon lacks."""
    tokenizer, lexicon = char_tokenizer(), Lexicon(WORDS)
    rng = random.Random(seed)
    rows = 6
    scorer = TokenLexicon.of(lexicon, tokenizer).scorer(penalty=1.5, rows=rows)
    seqs, totals = [[] for _ in range(rows)], [0.0] * rows
    last = torch.full((rows,), BOS_ID)
    for _ in range(14):
        extra = scorer.scores(last)
        weights = [6 if t == 4 else 1 for t in range(4, 12)]  # spaces often, so that many words end
        nxt = [rng.choices(range(4, 12), weights)[0] for _ in range(rows)]
        totals = [t + float(extra[r, nxt[r]]) for r, t in enumerate(totals)]
        seqs = [s + [n] for s, n in zip(seqs, nxt)]
        keep = torch.tensor(sorted(rng.choices(range(rows), k=rows)))
        scorer.select(keep)
        seqs, totals = [seqs[k] for k in keep], [totals[k] for k in keep]
        last = torch.tensor([s[-1] for s in seqs])
    end = scorer.scores(last)[:, EOS_ID]
    for r in range(rows):
        assert totals[r] + float(end[r]) == pytest.approx(-1.5 * unknown_words(tokenizer, seqs[r], lexicon))


# ------------------------------------------------------------------------------------------------ in the searches


def lm_with_lexicon(seed, words=WORDS):
    lm = random_lm(seed)
    lm.lexicon = TokenLexicon.of(Lexicon(words), char_tokenizer())
    return lm


@pytest.mark.parametrize("strategy,beam,lam", STRATEGIES)
def test_fused_scores_add_up_with_the_oov_penalty(strategy, beam, lam):
    """A finished hypothesis's logprob is its attention/CTC score + beta * LM + bonus - penalty x unknown words:
    recomputed from scratch over the returned tokens, this checks that the word states followed their beams."""
    tokenizer = char_tokenizer()
    dec, (enc, ctc), lm = random_decoder(3), random_inputs(3), lm_with_lexicon(3)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=10, ctc_weight=lam, lm_weight=0.7,
                           length_bonus=0.4, oov_penalty=2.0)
    for i, nbest in enumerate(run(strategy, opts, dec, enc, ctc, lm)):
        for h in nbest:
            seq = torch.tensor([[BOS_ID, *h.tokens, EOS_ID]])
            lm_logp = lm(seq[:, :-1]).log_softmax(-1)[0].gather(1, seq[0, 1:, None]).sum().item()
            plain = replace(opts, lm_weight=0.0, length_bonus=0.0, oov_penalty=0.0, beam_size=1, nbest=1)
            rest = forced_score(dec, *item(enc, ctc, i), h.tokens, plain)
            oov = unknown_words(tokenizer, h.tokens, lm.lexicon.lexicon)
            assert h.logprob == pytest.approx(rest + 0.7 * lm_logp + 0.4 * len(h.tokens) - 2.0 * oov, abs=1e-3)


def test_a_large_penalty_keeps_beam_search_in_the_lexicon():
    tokenizer = char_tokenizer()
    dec, (enc, ctc), lm = random_decoder(7), random_inputs(7, b=6), lm_with_lexicon(7)
    opts = DecodingOptions(beam_size=4, max_length=10, ctc_weight=0.3, lm_weight=0.3)
    free = [n[0].tokens for n in run("joint", opts, dec, enc, ctc, lm)]
    held = [n[0].tokens for n in run("joint", replace(opts, oov_penalty=50.0), dec, enc, ctc, lm)]
    assert sum(unknown_words(tokenizer, t, lm.lexicon.lexicon) for t in free) > 0
    assert sum(unknown_words(tokenizer, t, lm.lexicon.lexicon) for t in held) == 0


def test_oov_penalty_needs_an_lm_with_a_lexicon():
    with pytest.raises(ValueError, match=r"oov_penalty -1.0 must be a finite number >= 0"):
        DecodingOptions(oov_penalty=-1.0)
    with pytest.raises(ValueError, match="needs a language model whose bundle has a lexicon"):
        token_scorers(random_lm(0), DecodingOptions(lm_weight=0.5, oov_penalty=1.0), 12, rows=2, device="cpu")
    with pytest.raises(ValueError, match="needs a language model whose bundle has a lexicon"):
        token_scorers(None, DecodingOptions(oov_penalty=1.0), 12, rows=2, device="cpu")
    # An LM weight of 0 with a penalty: the LM is not run, its lexicon is used.
    lm = lm_with_lexicon(0)
    scorers = token_scorers(lm, DecodingOptions(oov_penalty=1.0), 12, rows=1, device="cpu")
    assert [type(s) for s in scorers] == [LexiconScorer]
    assert scorers[0].penalty == 1.0 and scorers[0].lexicon is lm.lexicon.lexicon
    assert scorers[0].texts == list(lm.lexicon.texts)


def test_saved_oov_penalty_is_the_default():
    saved = {"ctc_weight": 0.3, "lm_weight": 0.6, "length_bonus": 1.5, "oov_penalty": 3.0}
    assert resolve_decoding(saved, has_lm=True, has_lexicon=True).oov_penalty == 3.0
    assert resolve_decoding(saved, has_lm=True, oov_penalty=0.0).oov_penalty == 0.0
    assert resolve_decoding(saved).oov_penalty == 0.0  # no LM, no lexicon: the saved penalty is not used
    with pytest.raises(ToolkitError, match="oov_penalty 2 needs a language model with a lexicon"):
        resolve_decoding(saved, oov_penalty=2.0)


# ------------------------------------------------------------------------------------------------ bundles


def test_lm_bundle_carries_its_lexicon(tmp_path):
    tokenizer = char_tokenizer()
    save_lm(tmp_path / "plain", random_lm(1), tokenizer)
    assert load_lm(tmp_path / "plain").model.lexicon is None
    save_lm(tmp_path / "lm", random_lm(1), tokenizer, lexicon=Lexicon(WORDS))
    lexicon = load_lm(tmp_path / "lm").model.lexicon
    assert lexicon.lexicon.words == sorted(WORDS) and lexicon.texts == tuple(token_texts(tokenizer))
    assert "lexicon.txt" in json.loads((tmp_path / "lm" / "config.json").read_text())["files"]
    (tmp_path / "lm" / "lexicon.txt").write_text("a\nab\n")
    with pytest.raises(BundleError, match=r"lexicon\.txt: checksum mismatch"):
        load_lm(tmp_path / "lm")
    save_lm(tmp_path / "empty", random_lm(1), tokenizer, lexicon=Lexicon([]))
    with pytest.raises(BundleError, match=r"empty/lexicon\.txt: lists no words$"):
        load_lm(tmp_path / "empty")


def test_lm_training_writes_the_text_and_word_list_words(tmp_path):
    text, tok = write_corpus(tmp_path)
    (tmp_path / "words.txt").write_text("Bird's\nHERE\ncafé\nzebra\n", encoding="utf-8")
    exp = tiny_experiment(text, tok, max_steps=2, valid_every=2)
    exp = replace(exp, data=replace(exp.data, lexicon=[str(tmp_path / "words.txt")]))
    bundle = load_lm(train_lm(exp, tmp_path / "exp").final_path)
    words = bundle.model.lexicon.lexicon.words
    # the text's words (normalised: "THE CAT SAT DOWN!" -> the cat sat down) and the list's, lowercased; "café"
    # and "zebra" hold letters the corpus's char tokenizer does not know
    assert words == sorted({"the", "cat", "a", "dog", "my", "bird", "sat", "down", "ran", "off", "was", "here"})
    assert bundle.info["lexicon_words"] == len(words)
    tokenizer = bundle.tokenizer
    assert make_lexicon(tokenizer, ["the dog"], []).words == ["dog", "the"]
    bad = replace(exp, data=LmDataConfig(text=[str(text)], valid_size=2, lexicon=[str(tmp_path / "none.txt")]))
    with pytest.raises(ToolkitError, match=r"none\.txt: text file not found$"):
        train_lm(bad, tmp_path / "bad")


def test_evaluate_and_transcribe_refuse_a_penalty_without_a_lexicon(tmp_path):
    from toolkit.pipelines import Transcriber

    tokenizer = char_tokenizer()
    torch.manual_seed(0)  # the model and the wave: a run that ends mid-word at its length cap would be charged
    save_model(tmp_path / "asr", tiny_speech_model(), tokenizer,
               info={"task": "asr", "decoding": {"ctc_weight": 0.3, "lm_weight": 0.5, "oov_penalty": 2.0}})
    save_lm(tmp_path / "plain", random_lm(1), tokenizer)
    save_lm(tmp_path / "lex", random_lm(1), tokenizer, lexicon=Lexicon(WORDS))
    wave = torch.randn(8000).numpy()  # noise, not speech: decoded whole (vad=None) to exercise the search
    with pytest.raises(ToolkitError, match="no lexicon .* for OOV penalty 2: give oov_penalty 0 "):
        Transcriber.from_pretrained(tmp_path / "asr", lm=tmp_path / "plain").transcribe(wave, vad=None)
    plain = Transcriber.from_pretrained(tmp_path / "asr", lm=tmp_path / "plain", oov_penalty=0.0)
    assert plain.transcribe(wave, vad=None)[0].text
    held = Transcriber.from_pretrained(tmp_path / "asr", lm=tmp_path / "lex", oov_penalty=100.0).transcribe(wave,
                                                                                                           vad=None)
    assert held[0].text and all(w in WORDS for w in held[0].text.split())
    with pytest.raises(ToolkitError, match=r"^oov_penalty 1 needs a language model with a lexicon"):
        Transcriber.from_pretrained(tmp_path / "asr").transcribe(wave, oov_penalty=1.0)
