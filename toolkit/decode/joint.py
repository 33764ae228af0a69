"""Batched joint CTC/attention beam search (Watanabe et al. 2017; ESPnet's one-pass joint decoding).

    hyps = JointCTCAttentionSearch(DecodingOptions(beam_size=4, ctc_weight=0.3)).search(decoder, ctc_head, enc_out)

It is `BeamSearch` (same B*K rows of one batch, KV cache, top 2K candidates, EOS/length/repetition rules of
`apply_rules`, finished inputs leaving the batch) with one change, the score of extending hypothesis h by c:

    (1 - lambda) * log p_att(c | h, x) + lambda * (psi_ctc(h + c) - psi_ctc(h))          lambda = ctc_weight

where psi_ctc is the CTC prefix score (`toolkit.decode.ctc`) and psi_ctc(h + <eos>) = log p_ctc(h | x). A
finished hypothesis thus carries (1 - lambda) * log p_att(h, <eos>) + lambda * log p_ctc(h | x) as `logprob`
(the sum telescopes), and `score` is that under the length penalty. Candidates the rules ban stay banned.
With a language model (`lm`, `options.lm_weight` = beta) and a length bonus, each extension also gains
beta * log p_lm(c | h) (EOS included) and `length_bonus` (EOS excluded), as in ESPnet's decoding.

Only the `pre_beam` (ceil(1.5 K), at least K + 1) best candidates of each hypothesis by the score without CTC
((1 - lambda) * att, plus the LM and length terms), plus EOS, are scored with CTC (ESPnet's pre-beam; EOS is
added so that a hypothesis CTC cannot extend, for lack of frames, can still end instead of dying); with
lambda = 1 the attention scores carry no weight, so the whole vocabulary is scored, as ESPnet does. K + 1
candidates per hypothesis are enough for lambda = 0 to pick exactly what `BeamSearch` picks. Every hypothesis is
also capped at its input's memory length (on top of `length_caps`): CTC cannot emit more tokens than frames, and
an unconverged decoder cannot loop on.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from toolkit.decode.beam import finish_step
from toolkit.decode.ctc import CTCPrefixScorer
from toolkit.decode.fusion import ShallowFusion
from toolkit.decode.options import DecodingOptions, Hypothesis, apply_rules, length_caps
from toolkit.lm.model import LanguageModel
from toolkit.model.base import BOS_ID, EOS_ID, Decoder, EncoderOutput


class JointCTCAttentionSearch:
    """options.beam_size = K, options.ctc_weight = lambda; `pre_beam_ratio` * K attention candidates per
    hypothesis get a CTC prefix score."""

    def __init__(self, options: DecodingOptions, pre_beam_ratio: float = 1.5):
        self.options = options
        self.pre_beam = max(options.beam_size + 1, math.ceil(pre_beam_ratio * options.beam_size))

    @torch.no_grad()
    def search(
        self, decoder: Decoder, ctc: nn.Module | Tensor | None, enc_out: EncoderOutput,
        lm: LanguageModel | None = None,
    ) -> list[list[Hypothesis]]:
        """decoder: the attention decoder; ctc: the model's CTC head (applied to `enc_out.memory`) or CTC
        log-probs `(B, S, V)` (ignored when ctc_weight is 0); enc_out: memory `(B, S, D)`, lengths `(B,)`;
        lm: a language model fused with weight `options.lm_weight` (module docstring).
        Returns, per input, its `nbest` hypotheses, best first."""
        opts = self.options
        k, lam = opts.beam_size, opts.ctc_weight
        b = enc_out.memory.size(0)
        device = enc_out.memory.device
        caps = length_caps(opts, enc_out.lengths, decoder.max_len)
        caps = torch.minimum(caps, enc_out.lengths.clamp(min=1))
        beams = torch.arange(b, device=device).repeat_interleave(k)
        state = decoder.init_state(enc_out).select(beams)
        scorer = ctc_state = None
        if lam > 0:
            if ctc is None:
                raise ValueError("ctc_weight > 0 needs a CTC head or CTC log-probs")
            log_probs = ctc(enc_out.memory) if isinstance(ctc, nn.Module) else ctc
            scorer = CTCPrefixScorer(log_probs, enc_out.lengths)
            ctc_state = scorer.initial_state(beams)
        items = torch.arange(b, device=device)  # which input each live group of K rows decodes
        scores = torch.full((b, k), -math.inf, dtype=torch.float64, device=device)
        scores[:, 0] = 0.0  # all beams start identical: only the first may expand
        generated = torch.empty(b * k, 0, dtype=torch.long, device=device)
        last = torch.full((b * k, 1), BOS_ID, dtype=torch.long, device=device)
        finished: list[list[Hypothesis]] = [[] for _ in range(b)]
        fusion = ShallowFusion.create(lm, opts, b * k, device)

        while items.numel():
            n = items.numel()
            logits, state = decoder(last, state)
            row_caps = caps[items].repeat_interleave(k)
            logp = apply_rules(logits[:, -1].log_softmax(-1), generated, row_caps, opts).double()
            vocab = logp.size(-1)
            # part: the score of each token but for CTC's share, (1 - lambda) * att (+ LM and length bonus)
            part = ((1.0 - lam) * logp).masked_fill(logp == -math.inf, -math.inf)  # 0 * -inf would be NaN
            if fusion is not None:
                part = part + fusion.scores(last[:, 0], vocab)
            # The pre-beam ranks part; without fusion logp ranks the same for lambda < 1 (and keeps the order
            # of the plain search at lambda = 1, where every token is scored anyway).
            c = vocab if lam == 1.0 else min(self.pre_beam, vocab)
            cand = (part if fusion is not None else logp).topk(c, dim=1).indices  # (n*K, C): the pre-beam
            att = part.gather(1, cand)
            if c < vocab:  # EOS always competes: a hypothesis that CTC cannot extend can still end
                eos = part[:, EOS_ID : EOS_ID + 1].masked_fill((cand == EOS_ID).any(1, keepdim=True), -math.inf)
                att = torch.cat([att, eos], dim=1)
                cand = torch.cat([cand, torch.full_like(cand[:, :1], EOS_ID)], dim=1)
                c += 1
            joint = att
            if scorer is not None:
                psi, ctc_cands = scorer.score(ctc_state, cand)
                # psi(h + c) <= psi(h); an impossible h (psi = -inf: a dead beam) has no possible extension.
                dead = (psi == -math.inf) | (ctc_state.score == -math.inf)[:, None]
                gain = (psi - ctc_state.score[:, None]).masked_fill(dead, -math.inf)
                joint = (att + lam * gain).masked_fill(att == -math.inf, -math.inf)
            candidates = (scores.view(-1, 1) + joint).view(n, k * c)
            top_scores, top_index = candidates.topk(2 * k, dim=1)  # (n, 2K), best first
            origin, token = top_index // c, cand.view(n, k * c).gather(1, top_index)
            is_eos = token == EOS_ID

            keep, done = finish_step(top_scores, origin, is_eos, generated, items, caps, finished, opts)
            scores = top_scores.gather(1, keep)
            index, token = top_index.gather(1, keep), token.gather(1, keep)
            origin = index // c
            live = (~done).nonzero().flatten()
            rows = ((live * k)[:, None] + origin[live]).flatten()  # source row of every surviving beam
            if scorer is not None:
                ctc_state = ctc_cands.select(((live * k * c)[:, None] + index[live]).flatten())
            items, scores, token = items[live], scores[live], token[live].flatten()
            generated = torch.cat([generated[rows], token[:, None]], dim=1)
            state = state.select(rows) if done.any() else state.select_beams(rows)
            if fusion is not None:
                fusion.select(rows)
            last = token[:, None]

        return [sorted(hyps, key=lambda h: -h.score)[: opts.nbest] for hyps in finished]
