"""The CTC prefix scorer of joint CTC/attention beam search (Watanabe et al. 2017; ESPnet's one-pass joint decoding).

    joint = JointCTCScorer(ctc_log_probs, lengths, weight=0.3, beam_size=K, items=items.repeat_interleave(K))
    tokens, scores = joint.score(logp, extra)    # in every step of `BeamSearch`: (N, C) candidates and their scores
    joint.select(index)                          # the candidates kept, flat indices into N*C

With it, `BeamSearch` scores the extension of hypothesis h by c as

    (1 - lambda) * log p_att(c | h, x) + lambda * (psi_ctc(h + c) - psi_ctc(h))          lambda = ctc_weight

where psi_ctc is the CTC prefix score (`toolkit.decode.ctc`) and psi_ctc(h + <eos>) = log p_ctc(h | x). A
finished hypothesis thus carries (1 - lambda) * log p_att(h, <eos>) + lambda * log p_ctc(h | x) as `logprob`
(the sum telescopes), and `score` is that under the length penalty. Candidates the rules ban stay banned.
The other scorers (`toolkit.decode.fusion`: LM, length bonus, OOV penalty) add their terms on top, as in ESPnet.

Only the `pre_beam` (ceil(1.5 K), at least K + 1) best candidates of each hypothesis by the score without CTC
((1 - lambda) * att, plus the other scorers' terms), plus EOS, are scored with CTC (ESPnet's pre-beam; EOS is
added so that a hypothesis CTC cannot extend, for lack of frames, can still end instead of dying); with
lambda = 1 the attention scores carry no weight, so the whole vocabulary is scored, as ESPnet does. K + 1
candidates per hypothesis are enough for a vanishing lambda to pick what the attention-only search picks.
`BeamSearch` also caps every hypothesis at its input's memory length when it scores with CTC: CTC cannot emit more
tokens than frames, and an unconverged decoder cannot loop on.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from toolkit.decode.ctc import CTCCandidates, CTCPrefixScorer
from toolkit.model.base import EOS_ID

__all__ = ["JointCTCScorer"]


class JointCTCScorer:
    """lambda-weighted CTC prefix score gains of N hypotheses' candidate tokens (module docstring).

    log_probs: `(B, S, V)` CTC log-probabilities of B inputs, valid for `lengths` `(B,)` frames; weight: lambda in
    (0, 1]; items: `(N,)` the input of each initial (empty) hypothesis; `pre_beam_ratio` * K candidates per
    hypothesis get a CTC prefix score.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, weight: float, beam_size: int, items: Tensor,
                 pre_beam_ratio: float = 1.5):
        self.weight = weight
        self.pre_beam = max(beam_size + 1, math.ceil(pre_beam_ratio * beam_size))
        self.prefix = CTCPrefixScorer(log_probs, lengths)
        self.state = self.prefix.initial_state(items)
        self.candidates: CTCCandidates | None = None

    def score(self, logp: Tensor, extra: Tensor | None) -> tuple[Tensor, Tensor]:
        """logp: `(N, V)` float64 attention log-probabilities after the rules; extra: `(N, V)` the other scorers'
        terms, or None. Returns the candidate tokens `(N, C)` of each hypothesis and their joint scores `(N, C)`."""
        lam, vocab = self.weight, logp.size(-1)
        # part: the score of each token but for CTC's share, (1 - lambda) * att (+ the other scorers' terms)
        part = ((1.0 - lam) * logp).masked_fill(logp == -math.inf, -math.inf)  # 0 * -inf would be NaN
        if extra is not None:
            part = part + extra
        # The pre-beam ranks part; without extra terms logp ranks the same for lambda < 1 (and keeps the order of
        # the attention-only search at lambda = 1, where every token is scored anyway).
        c = vocab if lam == 1.0 else min(self.pre_beam, vocab)
        tokens = (part if extra is not None else logp).topk(c, dim=1).indices  # (N, C): the pre-beam
        att = part.gather(1, tokens)
        if c < vocab:  # EOS always competes: a hypothesis that CTC cannot extend can still end
            eos = part[:, EOS_ID : EOS_ID + 1].masked_fill((tokens == EOS_ID).any(1, keepdim=True), -math.inf)
            att = torch.cat([att, eos], dim=1)
            tokens = torch.cat([tokens, torch.full_like(tokens[:, :1], EOS_ID)], dim=1)
        psi, self.candidates = self.prefix.score(self.state, tokens)
        # psi(h + c) <= psi(h); an impossible h (psi = -inf: a dead beam) has no possible extension.
        dead = (psi == -math.inf) | (self.state.score == -math.inf)[:, None]
        gain = (psi - self.state.score[:, None]).masked_fill(dead, -math.inf)
        return tokens, (att + lam * gain).masked_fill(att == -math.inf, -math.inf)

    def select(self, index: Tensor) -> None:
        """Keep the candidates `index` `(N',)` (flat indices into the N*C of the last `score`) as the hypotheses."""
        self.state = self.candidates.select(index)
