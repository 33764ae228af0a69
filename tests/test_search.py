"""Greedy and beam search: a beam wide enough finds exactly what enumerating every hypothesis finds (attention
alone, joint CTC/attention, with an LM, a length bonus and an OOV penalty), beam 1 == greedy, batched == one by one,
length rules, EOS, repetition guard."""

import itertools
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from toolkit.decode import BeamSearch, DecodingOptions, GreedySearch, Hypothesis, decode
from toolkit.decode.options import apply_rules, length_penalty
from toolkit.lm import Lexicon, LstmLM, LstmLMConfig, TokenLexicon
from toolkit.model import (BOS_ID, EOS_ID, UNK_ID, Decoder, DecoderConfig, DecoderState, EncoderOutput, ModelConfig,
                           TransformerDecoder, build_model)
from toolkit.text import train_tokenizer

VOCAB = 12


def random_decoder(seed: int, max_len: int = 64, vocab: int = VOCAB) -> TransformerDecoder:
    torch.manual_seed(seed)
    cfg = DecoderConfig(num_layers=2, num_heads=2, ffn_dim=64, dropout=0.0, max_len=max_len)
    dec = TransformerDecoder(vocab, 16, cfg).eval()
    with torch.no_grad():  # sharpen the random model so hypotheses end at varied lengths
        dec.embed.weight.mul_(3.0)
    return dec


def random_memory(seed: int, b: int = 5, s: int = 6) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    lengths[0] = s
    return EncoderOutput(4 * torch.randn(b, s, 16, generator=g), lengths)


def item(enc: EncoderOutput, i: int) -> EncoderOutput:
    n = int(enc.lengths[i])
    return EncoderOutput(enc.memory[i : i + 1, :n], enc.lengths[i : i + 1])


# ------------------------------------------------------------------------------------------ exhaustive search

TEXTS = [None, None, " ", "\0", " ", "a", "b"]  # what the 7 ids of the char tokenizer of "ab " spell; <unk>: "\0"
WORDS = ["a", "ab", "ba"]


def enumerate_nbest(dec, enc, ctc, lm, opts: DecodingOptions) -> list[list[Hypothesis]]:
    """Every hypothesis of min_length..max_length tokens, scored from scratch as the search scores a finished one:
    (1 - lambda) * log p_att(tokens, EOS) by teacher forcing + lambda * log p_ctc(tokens) by the CTC loss +
    lm_weight * log p_lm(tokens, EOS) + length_bonus * len - oov_penalty * the words of its text not in WORDS;
    per input its `nbest` best by score."""
    lam = opts.ctc_weight
    results = []
    for i, n in enumerate(enc.lengths.tolist()):
        alone = EncoderOutput(enc.memory[i : i + 1, :n], enc.lengths[i : i + 1])
        hyps = []
        for size in range(opts.min_length, opts.max_length + 1):
            every = list(itertools.product(range(UNK_ID, len(TEXTS)), repeat=size))
            m = len(every)
            tokens = torch.tensor(every, dtype=torch.long).view(m, size)  # every sequence of this size
            seq = torch.cat([torch.full((m, 1), BOS_ID), tokens, torch.full((m, 1), EOS_ID)], dim=1)
            state = dec.init_state(alone).select(torch.zeros(m, dtype=torch.long))
            att = dec(seq[:, :-1], state)[0].log_softmax(-1).gather(2, seq[:, 1:, None]).sum((1, 2)).double()
            logprob = (1 - lam) * att
            if lam:
                logprob -= lam * F.ctc_loss(ctc[i, :n, None].expand(n, m, -1), tokens, torch.full((m,), n),
                                            torch.full((m,), size), reduction="none")
            if opts.lm_weight:
                logprob += opts.lm_weight * lm(seq[:, :-1]).log_softmax(-1).gather(2, seq[:, 1:, None]).sum((1, 2))
            for row, value in zip(tokens.tolist(), logprob.tolist()):
                unknown = sum(w not in WORDS for w in "".join(TEXTS[t] for t in row).split())
                value += opts.length_bonus * size - opts.oov_penalty * unknown
                if value > -float("inf"):
                    hyps.append(Hypothesis(row, value, value / length_penalty(size + 1, opts.length_penalty)))
        results.append(sorted(hyps, key=lambda h: -h.score)[: opts.nbest])
    return results


@pytest.mark.parametrize("seed,settings", [
    (0, dict(length_penalty=0.6)),
    (1, dict(min_length=1, lm_weight=0.5, length_bonus=0.7, oov_penalty=1.5)),
    (2, dict(ctc_weight=0.4)),
    (3, dict(ctc_weight=0.4, lm_weight=0.5, length_bonus=0.7, oov_penalty=1.5, length_penalty=0.6)),
    (4, dict(ctc_weight=1.0, length_penalty=0.6)),
])
def test_a_beam_as_wide_as_the_hypotheses_finds_them_all(seed, settings):
    """4 tokens besides EOS (<unk>, space, a, b) and at most 3 of them: 85 hypotheses, of which a step holds at
    most 16 x 5 candidates. A beam of 80 keeps them all, so its n-best must be the enumeration's, scores included:
    this checks every piece of the loop (candidates, EOS, beam bookkeeping, each scorer following its beams)."""
    vocab = len(TEXTS)
    dec = random_decoder(seed, vocab=vocab)
    g = torch.Generator().manual_seed(seed)
    enc = EncoderOutput(4 * torch.randn(3, 8, 16, generator=g), torch.tensor([8, 5, 6]))
    ctc = (2 * torch.randn(3, 8, vocab, generator=g, dtype=torch.float64)).log_softmax(-1)
    torch.manual_seed(seed)
    lm = LstmLM(LstmLMConfig(vocab_size=vocab, embed_dim=8, hidden_dim=8, dropout=0.0)).eval()
    lm.lexicon = TokenLexicon.of(Lexicon(WORDS), train_tokenizer("char", ["ab "]))
    assert list(lm.lexicon.texts) == TEXTS
    opts = DecodingOptions(beam_size=80, nbest=80, max_length=3, repetition_limit=0, **settings)
    found = BeamSearch(opts).search(dec, enc, lm, ctc=ctc)
    for got, want in zip(found, enumerate_nbest(dec, enc, ctc, lm, opts)):
        assert len(want) >= 75 and [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.logprob for h in got] == pytest.approx([h.logprob for h in want], abs=1e-4)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


# ------------------------------------------------------------------------------------------ greedy and beam


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha,min_len", [(0.0, 0), (0.8, 3)])
def test_beam_one_equals_greedy(seed, alpha, min_len):
    dec, enc = random_decoder(seed), random_memory(seed)
    opts = DecodingOptions(beam_size=1, max_length=20, min_length=min_len, length_penalty=alpha)
    greedy = GreedySearch(opts).search(dec, enc)
    beam = BeamSearch(opts).search(dec, enc)
    for g, b in zip(greedy, beam):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, rel=1e-9, abs=1e-9)
        assert len(g[0].tokens) >= min_len


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("strategy,beam", [(GreedySearch, 1), (BeamSearch, 4)])
def test_batched_equals_one_by_one(seed, strategy, beam):
    dec, enc = random_decoder(seed), random_memory(seed)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=15, length_penalty=0.6)
    batched = strategy(opts).search(dec, enc)
    assert len(batched) == enc.memory.size(0)
    for i in range(enc.memory.size(0)):
        alone = strategy(opts).search(dec, item(enc, i))[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in alone], abs=1e-4)


def test_beam_search_nbest_sorted_and_beats_greedy_on_average():
    wins = 0
    for seed in range(6):
        dec, enc = random_decoder(seed), random_memory(seed)
        greedy = GreedySearch(DecodingOptions(max_length=15)).search(dec, enc)
        beam = BeamSearch(DecodingOptions(beam_size=4, nbest=4, max_length=15)).search(dec, enc)
        for g, nbest in zip(greedy, beam):
            scores = [h.score for h in nbest]
            assert scores == sorted(scores, reverse=True)
            assert len({tuple(h.tokens) for h in nbest}) == len(nbest)
            wins += nbest[0].score >= g[0].score - 1e-9
    assert wins >= 0.9 * 6 * 5


@pytest.mark.parametrize("strategy,beam", [(GreedySearch, 1), (BeamSearch, 3)])
def test_length_limits_and_eos(strategy, beam):
    dec, enc = random_decoder(1), random_memory(1)
    for min_len, max_len in [(0, 3), (5, 5), (2, 9)]:
        opts = DecodingOptions(beam_size=beam, nbest=beam, min_length=min_len, max_length=max_len)
        for nbest in strategy(opts).search(dec, enc):
            for h in nbest:
                assert min_len <= len(h.tokens) <= max_len
                assert EOS_ID not in h.tokens
    # The decoder's own max_len caps any request (BOS and EOS need room).
    short = random_decoder(1, max_len=8)
    for nbest in strategy(DecodingOptions(beam_size=beam, max_length=100, min_length=50)).search(short, enc):
        assert len(nbest[0].tokens) == 6


@pytest.mark.parametrize("strategy,beam", [(GreedySearch, 1), (BeamSearch, 3)])
def test_length_capped_by_memory_length(strategy, beam):
    dec, enc = random_decoder(2), random_memory(2, b=6, s=8)
    opts = DecodingOptions(beam_size=beam, max_length=50, min_length=50, max_length_ratio=0.5)
    for n, nbest in zip(enc.lengths.tolist(), strategy(opts).search(dec, enc)):
        assert len(nbest[0].tokens) == -(-n // 2)  # min_length yields to the cap


def run_search(opts: DecodingOptions, dec, enc, ctc) -> list[list[Hypothesis]]:
    if opts.beam_size == 1 and not opts.ctc_weight:
        return GreedySearch(opts).search(dec, enc)
    return BeamSearch(opts).search(dec, enc, ctc=ctc)


@pytest.mark.parametrize("beam,lam", [(1, 0.0), (3, 0.0), (2, 0.5)])
def test_an_input_without_frames_gets_an_empty_hypothesis(beam, lam):
    """An input of length 0 has no frame to attend to: it is not searched (attention over nothing is NaN), gets one
    empty hypothesis scored 0.0, and the other inputs decode as they do alone."""
    dec, enc = random_decoder(3), random_memory(3)
    enc.lengths[[1, 3]] = 0
    lp = (2 * torch.randn(5, 6, VOCAB, generator=torch.Generator().manual_seed(3))).log_softmax(-1)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=10, ctc_weight=lam)
    got = run_search(opts, dec, enc, lp)
    for i, n in enumerate(enc.lengths.tolist()):
        if n == 0:
            assert got[i] == [Hypothesis([], 0.0, 0.0)]
            continue
        alone = run_search(opts, dec, item(enc, i), lp[i : i + 1, :n])[0]
        assert [h.tokens for h in got[i]] == [h.tokens for h in alone]
        assert [h.score for h in got[i]] == pytest.approx([h.score for h in alone], abs=1e-5)
    nothing = EncoderOutput(enc.memory[[1, 3]], enc.lengths[[1, 3]])
    assert run_search(opts, dec, nothing, lp[[1, 3]]) == [[Hypothesis([], 0.0, 0.0)]] * 2


def test_decode_gives_an_input_too_short_for_one_frame_an_empty_hypothesis():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=VOCAB, d_model=16, ctc=True,
                                    encoder={"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
                                    decoder=DecoderConfig(num_layers=1, num_heads=2, ffn_dim=32))).eval()
    x, lengths = torch.randn(2, 8000), torch.tensor([8000, 100])
    assert model.encode(x, lengths).lengths.tolist()[1] == 0
    for opts in (DecodingOptions(), DecodingOptions(beam_size=2, ctc_weight=0.3)):
        assert decode(model, x, lengths, opts)[1] == Hypothesis([], 0.0, 0.0)


@dataclass
class LoopState(DecoderState):
    offset: int = 0  # the same for every row

    def select(self, index):
        return self


class LoopingDecoder(Decoder):
    """A decoder stuck in a loop: it always prefers the token pattern 5 6 7 5 6 7 ..., never EOS."""

    vocab_size = VOCAB
    max_len = 200

    def init_state(self, enc_out):
        return LoopState()

    def forward(self, tokens, state):
        logits = torch.zeros(tokens.size(0), 1, VOCAB)
        logits[:, 0, 5 + state.offset % 3] = 10.0
        logits[:, 0, EOS_ID] = -5.0
        return logits, LoopState(state.offset + 1)


@pytest.mark.parametrize("strategy,beam", [(GreedySearch, 1), (BeamSearch, 2)])
def test_repetition_guard_breaks_loops(strategy, beam):
    enc = EncoderOutput(torch.zeros(2, 3, 4), torch.tensor([3, 3]))
    looping = strategy(DecodingOptions(beam_size=beam, max_length=40, repetition_limit=0)).search(
        LoopingDecoder(), enc
    )
    assert looping[0][0].tokens == [5, 6, 7] * 13 + [5]
    guarded = strategy(DecodingOptions(beam_size=beam, max_length=40, repetition_limit=3)).search(
        LoopingDecoder(), enc
    )
    tokens = guarded[0][0].tokens
    assert tokens[:9] == [5, 6, 7] * 3 and tokens[9] != 5
    for n in range(1, 9):  # no n-gram occurs more than 3 times in a row anywhere
        for s in range(len(tokens) - 4 * n + 1):
            run = tokens[s : s + 4 * n]
            assert run != run[:n] * 4


def test_apply_rules_bans_only_the_looping_continuation():
    logp = torch.zeros(2, VOCAB)
    generated = torch.tensor([[4, 9, 9, 9], [9, 4, 9, 9]])
    out = apply_rules(logp, generated, torch.tensor([10, 10]), DecodingOptions(repetition_limit=3))
    assert out[0, 9] == float("-inf") and out[1, 2:].isfinite().all()
    assert (out[:, :2] == float("-inf")).all()  # padding/blank and BOS are never generated


class ThreadRecordingDecoder(LoopingDecoder):
    """A decoder run elsewhere (as onnxruntime runs an exported one): the search's own ops get one torch thread."""

    search_threads = 1

    def __init__(self):
        super().__init__()
        self.seen: set[int] = set()

    def forward(self, tokens, state):
        self.seen.add(torch.get_num_threads())
        return super().forward(tokens, state)


@pytest.mark.parametrize("beam", [1, 2])
def test_search_runs_a_decoder_on_its_search_threads_and_restores_torch_threads(beam):
    from toolkit.decode import search

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = build_model(ModelConfig(vocab_size=VOCAB, d_model=4, encoder={"name": "conformer", "num_layers": 1,
                                                                             "num_heads": 1, "ffn_dim": 8}))
        model.decoder = ThreadRecordingDecoder()
        enc = EncoderOutput(torch.zeros(2, 3, 4), torch.tensor([3, 3]))
        search(model, enc, DecodingOptions(beam_size=beam, max_length=5))
        assert model.decoder.seen == {1} and torch.get_num_threads() == 2
        model.decoder.search_threads = None  # a PyTorch decoder: the threads as they are
        search(model, enc, DecodingOptions(beam_size=beam, max_length=5))
        assert model.decoder.seen == {1, 2}
    finally:
        torch.set_num_threads(before)
