"""CTC greedy, the CTC prefix scorer against brute force and ctc_loss, joint CTC/attention beam search."""

import itertools
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from test_search import VOCAB, random_decoder, random_memory
from toolkit.decode import (
    BeamSearch,
    CTCPrefixScorer,
    DecodingOptions,
    ctc_greedy,
    ctc_greedy_search,
    ctc_greedy_with_frames,
    search,
)
from toolkit.model import EOS_ID, CTCHead, Decoder, EncoderDecoder, EncoderOutput, ModelConfig

# ------------------------------------------------------------------------------------------------ helpers


def path_log_probs(paths: list[list[int]], v: int = 6) -> torch.Tensor:
    """(B, T, V) log-probs whose argmax at frame t is paths[b][t]."""
    logits = torch.zeros(len(paths), len(paths[0]), v)
    for b, path in enumerate(paths):
        for t, tok in enumerate(path):
            logits[b, t, tok] = 5.0
    return logits.log_softmax(-1)


def random_log_probs(b: int, t: int, v: int, seed: int, sharp: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (sharp * torch.randn(b, t, v, generator=g, dtype=torch.float64)).log_softmax(-1)


def collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for p in path:
        if p != 0 and p != prev:
            out.append(p)
        prev = p
    return tuple(out)


def brute_force(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(label sequence | x) for every label sequence, summing all V^T alignments of lp `(T, V)` (float64)."""
    t, v = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(v), repeat=t):
        y = collapse(path)
        probs[y] = probs.get(y, 0.0) + math.exp(sum(lp[i, p].item() for i, p in enumerate(path)))
    return probs


def ctc_nll(lp: torch.Tensor, tokens: list[int]) -> float:
    """-log p_ctc(tokens | x) for one input lp `(T, V)` with torch's ctc_loss."""
    return F.ctc_loss(
        lp[:, None].float(), torch.tensor([tokens], dtype=torch.long), torch.tensor([lp.size(0)]),
        torch.tensor([len(tokens)]), reduction="sum",
    ).item()


def prefix_scores(scorer: CTCPrefixScorer, item: int, prefix: tuple[int, ...]) -> tuple[float, float]:
    """(psi(prefix), log p_ctc(prefix)) by extending one token at a time and scoring EOS."""
    state = scorer.initial_state(torch.tensor([item]))
    for tok in prefix:
        psi, cands = scorer.score(state, torch.tensor([[tok]]))
        state = cands.select(torch.tensor([0]))
        assert state.score.item() == psi.item()
    end, _ = scorer.score(state, torch.tensor([[EOS_ID]]))
    return state.score.item(), end.item()


# -------------------------------------------------------------------------------------------- ctc greedy


def test_ctc_greedy_collapses_repeats_drops_blanks_and_respects_lengths():
    lp = path_log_probs([
        [3, 3, 0, 3, 4, 4, 0, 0, 5, 5],  # repeats collapse, a blank separates two 3s
        [0, 0, 5, 0, 5, 5, 4, 3, 3, 3],  # only the first 6 frames are valid
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ])
    lengths = torch.tensor([10, 6, 10])
    tokens, frames = ctc_greedy_with_frames(lp, lengths)
    assert tokens == [[3, 3, 4, 5], [5, 5], []]
    assert frames == [[0, 3, 4, 8], [2, 4], []]
    assert ctc_greedy(lp) == [[3, 3, 4, 5], [5, 5, 4, 3], []]  # no lengths: every frame counts


def test_ctc_greedy_search_scores_are_ctc_log_likelihoods():
    lp = random_log_probs(3, 9, 6, seed=1).float()
    lengths = torch.tensor([9, 5, 7])
    hyps = ctc_greedy_search(lp, lengths)
    for i, nbest in enumerate(hyps):
        n = int(lengths[i])
        assert nbest[0].tokens == ctc_greedy(lp[i : i + 1, :n])[0]
        assert nbest[0].logprob == pytest.approx(-ctc_nll(lp[i, :n], nbest[0].tokens), abs=1e-4)


# ------------------------------------------------------------------------------------ CTC prefix scorer


def test_prefix_scores_match_brute_force_with_per_item_lengths():
    t, v = 5, 4
    lp = random_log_probs(2, t, v, seed=0)
    lp[1, 3:] = torch.tensor([-50.0, 9.0, 9.0, 9.0])  # frames past item 1's length must not count
    lengths = torch.tensor([5, 3])
    scorer = CTCPrefixScorer(lp, lengths, eos=EOS_ID)
    for item in (0, 1):
        n = int(lengths[item])
        probs = brute_force(lp[item, :n])
        for size in range(4):
            for prefix in itertools.product([1, 2, 3], repeat=size):
                if EOS_ID in prefix:
                    continue
                psi, end = prefix_scores(scorer, item, prefix)
                starts = sum(p for y, p in probs.items() if y[:size] == prefix)
                exact = probs.get(prefix, 0.0)
                assert psi == pytest.approx(math.log(starts) if starts else -math.inf, abs=1e-9)
                assert end == pytest.approx(math.log(exact) if exact else -math.inf, abs=1e-9)


@pytest.mark.parametrize("tokens", [[5, 3, 7, 7, 1, 5, 5, 5, 6], [4], [], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]])
def test_complete_hypothesis_plus_eos_equals_minus_ctc_loss(tokens):
    lp = random_log_probs(1, 30, 8, seed=3)
    scorer = CTCPrefixScorer(lp, eos=EOS_ID)
    _, end = prefix_scores(scorer, 0, tuple(tokens))
    assert end == pytest.approx(-ctc_nll(lp[0], tokens), abs=1e-3)


def test_batched_scoring_and_select_equal_one_by_one():
    lp = random_log_probs(3, 12, 7, seed=4)
    scorer = CTCPrefixScorer(lp, torch.tensor([12, 8, 10]))
    prefixes = [(3, 4), (5, 5), (6, 6), (4, 3), (3, 3)]  # (5, 5), (6, 6), (3, 3): the repeated-label rule
    items = torch.tensor([0, 1, 2, 2, 1])
    candidates = [3, 4, 5, 6]
    state = scorer.initial_state(items)
    for step in range(2):
        psi, cands = scorer.score(state, torch.tensor([candidates] * 5))
        for r, (p, i) in enumerate(zip(prefixes, items.tolist())):
            for j, tok in enumerate(candidates):
                assert psi[r, j].item() == pytest.approx(prefix_scores(scorer, i, p[:step] + (tok,))[0], abs=1e-9)
        state = cands.select(torch.tensor([r * 4 + candidates.index(p[step]) for r, p in enumerate(prefixes)]))
    psi, _ = scorer.score(state, torch.tensor([[EOS_ID, 0]] * 5))
    assert (psi[:, 1] == -math.inf).all()  # blank is not a label
    for r, (p, i) in enumerate(zip(prefixes, items.tolist())):
        assert psi[r, 0].item() == pytest.approx(prefix_scores(scorer, i, p)[1], abs=1e-9)
    order = torch.tensor([4, 2, 0, 3, 1])
    moved = state.select(order)  # beam reordering is an index_select of every field
    for r, o in enumerate(order.tolist()):
        for a, b in zip((moved.r_n, moved.r_b, moved.score), (state.r_n, state.r_b, state.score)):
            assert torch.equal(a[r], b[o])


# ------------------------------------------------------------------------------------- joint search


def long_memory(seed: int, b: int = 5, s: int = 20) -> EncoderOutput:
    enc = random_memory(seed, b=b, s=s)
    enc.lengths.clamp_(min=16)  # at least max_length frames: the memory-length cap does not bind
    return enc


def item(enc: EncoderOutput, i: int) -> EncoderOutput:
    n = int(enc.lengths[i])
    return EncoderOutput(enc.memory[i : i + 1, :n], enc.lengths[i : i + 1])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beam,ratio", [(1, None), (4, None), (3, 0.5)])
def test_vanishing_ctc_weight_picks_what_attention_alone_picks(seed, beam, ratio):
    """The pre-beam scores only K + 1 candidates (and EOS) per hypothesis with CTC: as lambda -> 0 the search must
    still find what the search over the whole vocabulary finds (memory long enough that CTC can spell any
    hypothesis: no candidate is impossible for it)."""
    dec, enc = random_decoder(seed), random_memory(seed, b=5, s=32)
    enc.lengths.clamp_(min=30)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=15, length_penalty=0.6, max_length_ratio=ratio)
    lp = random_log_probs(5, 32, VOCAB, seed).float()
    plain = BeamSearch(opts).search(dec, enc)
    joint = BeamSearch(replace(opts, ctc_weight=1e-9)).search(dec, enc, ctc=lp)
    for a, j in zip(plain, joint):
        assert [h.tokens for h in a] == [h.tokens for h in j]
        assert [h.score for h in j] == pytest.approx([h.score for h in a], abs=1e-6)
        assert [h.logprob for h in j] == pytest.approx([h.logprob for h in a], abs=1e-6)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("lam,beam", [(0.3, 4), (0.7, 2), (1.0, 3)])
def test_joint_batched_equals_one_by_one(seed, lam, beam):
    dec, enc = random_decoder(seed), random_memory(seed, b=5, s=12)
    lp = random_log_probs(5, 12, VOCAB, seed + 10).float()
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=15, length_penalty=0.6, ctc_weight=lam)
    batched = BeamSearch(opts).search(dec, enc, ctc=lp)
    for i in range(5):
        n = int(enc.lengths[i])
        alone = BeamSearch(opts).search(dec, item(enc, i), ctc=lp[i : i + 1, :n])[0]
        assert alone, "every input ends with at least one hypothesis"
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in alone], abs=1e-5)


@pytest.mark.parametrize("seed,beam,sharp", [(0, 32, 2.5), (1, 32, 2.5), (2, 4, 5.0), (3, 4, 5.0)])
def test_full_ctc_weight_scores_are_ctc_likelihoods_and_beat_greedy(seed, beam, sharp):
    """lambda = 1: the attention decoder only applies the rules, the result is CTC prefix beam search. Flat
    posteriors need a wide beam (an EOS competes with optimistic prefix scores); peaky ones, as from a trained
    model, do not."""
    dec = random_decoder(seed)
    t = 10
    enc = EncoderOutput(torch.randn(3, t, 16), torch.tensor([10, 7, 9]))
    logits = sharp * torch.randn(3, t, VOCAB, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    logits[:, :, 0] += 1.5  # blank-heavy like a trained CTC model
    logits[:, :, 1:3] -= 30.0  # BOS/EOS are never CTC labels
    lp = logits.log_softmax(-1).float()
    opts = DecodingOptions(beam_size=beam, max_length=20, ctc_weight=1.0, repetition_limit=0)
    best = BeamSearch(opts).search(dec, enc, ctc=lp)
    greedy = ctc_greedy(lp, enc.lengths)
    for i in range(3):
        n = int(enc.lengths[i])
        hyp = best[i][0]
        assert hyp.logprob == pytest.approx(-ctc_nll(lp[i, :n], hyp.tokens), abs=1e-3)  # the sum telescopes
        assert hyp.logprob >= -ctc_nll(lp[i, :n], greedy[i]) - 1e-4


class NoEOSDecoder(Decoder):
    """An unconverged decoder: always prefers token 5, EOS almost impossible (but finite)."""

    vocab_size = VOCAB
    max_len = 200

    def init_state(self, enc_out):
        from test_search import LoopState

        return LoopState()

    def forward(self, tokens, state):
        logits = torch.zeros(tokens.size(0), 1, VOCAB)
        logits[:, 0, 5] = 8.0
        logits[:, 0, 6] = 6.0
        logits[:, 0, EOS_ID] = -40.0
        return logits, state


@pytest.mark.parametrize("lam,ratio", [(0.0, 1.0), (0.5, None), (0.5, 0.5), (1.0, None)])
def test_length_capped_by_encoder_length(lam, ratio):
    """With CTC, every hypothesis is capped at its memory length; attention alone, at max_length_ratio's cap."""
    enc = EncoderOutput(torch.zeros(3, 9, 4), torch.tensor([9, 4, 6]))
    lp = random_log_probs(3, 9, VOCAB, seed=5).float()
    opts = DecodingOptions(beam_size=3, nbest=3, max_length=150, ctc_weight=lam, max_length_ratio=ratio,
                           repetition_limit=0)
    results = BeamSearch(opts).search(NoEOSDecoder(), enc, ctc=lp)
    for n, nbest in zip(enc.lengths.tolist(), results):
        assert nbest
        cap = n if ratio is None else math.ceil(n * ratio)
        assert all(len(h.tokens) <= cap for h in nbest)
        if lam == 0.0:  # attention alone runs on to the cap
            assert len(nbest[0].tokens) == cap


def assembled(decoder, ctc_head) -> EncoderDecoder:
    """A model of `decoder` and `ctc_head` over an identity encoder (the search is given the memory)."""
    config = ModelConfig(vocab_size=VOCAB, d_model=16, encoder={"name": "conformer"},
                         decoder=None if decoder is None else decoder.config, ctc=ctc_head is not None)
    return EncoderDecoder(torch.nn.Identity(), decoder, ctc_head, config=config)


def test_search_dispatches_on_ctc_weight_and_heads():
    dec, enc = random_decoder(1), long_memory(1)
    head = CTCHead(16, VOCAB, dropout=0.0).eval()
    model = assembled(dec, head)
    opts = DecodingOptions(beam_size=3, max_length=15, ctc_weight=0.4)
    want = BeamSearch(opts).search(dec, enc, ctc=head(enc.memory))
    assert [n[0].tokens for n in search(model, enc, opts)] == [n[0].tokens for n in want]
    plain = DecodingOptions(beam_size=3, max_length=15)
    assert [n[0].tokens for n in search(model, enc, plain)] == [n[0].tokens for n in BeamSearch(plain).search(dec, enc)]
    ctc_only = assembled(None, head)
    assert [n[0].tokens for n in search(ctc_only, enc, plain)] == ctc_greedy(head(enc.memory), enc.lengths)
    with pytest.raises(ValueError, match="CTC head"):
        search(assembled(dec, None), enc, opts)
    with pytest.raises(ValueError, match="ctc_weight"):
        DecodingOptions(ctc_weight=1.5)
