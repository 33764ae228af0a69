"""Batched beam search with the decoder's KV cache: attention-only or joint CTC/attention, with the scorers of
`toolkit.decode.fusion` (LM shallow fusion, length bonus, OOV penalty) plugged in.

    nbest = BeamSearch(DecodingOptions(beam_size=4)).search(decoder, enc_out)
    nbest = BeamSearch(DecodingOptions(beam_size=4, ctc_weight=0.3, lm_weight=0.5)).search(decoder, enc_out, lm,
                                                                                          ctc=model.ctc_head)

All B inputs x K beams decode together as B*K rows of one batch. At each step a hypothesis h may be extended by
a token c with the score

    log p_att(c | h, x) + the scorers' terms                                  (ctc_weight = 0)
    (1 - lambda) * log p_att(c | h, x) + lambda * CTC prefix score gain + ...  (ctc_weight = lambda > 0, `joint.py`)

after the rules of `apply_rules`. Every input keeps its K best continuations (from the top 2K candidates, so that
K survive even if some end in EOS); a candidate ending in EOS among an input's top K is set aside as finished. An
input is done when it has K finished hypotheses or has reached its length cap; done inputs leave the batch, so the
rest decode faster.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from toolkit.decode.fusion import token_scorers
from toolkit.decode.joint import JointCTCScorer
from toolkit.decode.options import (DecodingOptions, Hypothesis, apply_rules, length_caps, length_penalty,
                                   start_results)
from toolkit.lm.model import LanguageModel
from toolkit.model.base import BOS_ID, EOS_ID, Decoder, EncoderOutput


class BeamSearch:
    """options.beam_size = K (1 included); options.ctc_weight > 0 adds the CTC prefix scorer."""

    def __init__(self, options: DecodingOptions):
        self.options = options

    @torch.no_grad()
    def search(
        self, decoder: Decoder, enc_out: EncoderOutput, lm: LanguageModel | None = None,
        ctc: nn.Module | Tensor | None = None,
    ) -> list[list[Hypothesis]]:
        """enc_out: memory `(B, S, D)` with lengths `(B,)`; lm: a language model fused with weight
        `options.lm_weight` (`toolkit.decode.fusion`); ctc: the model's CTC head (applied to `enc_out.memory`) or
        CTC log-probs `(B, S, V)`, needed when options.ctc_weight > 0 and ignored otherwise.
        Returns, per input, its `nbest` hypotheses, best first; an input of length 0 gets one, empty, scored 0.0."""
        opts = self.options
        k = opts.beam_size
        device = enc_out.memory.device
        caps = length_caps(opts, enc_out.lengths, decoder.max_len)
        finished = start_results(enc_out.lengths)
        items = (enc_out.lengths > 0).nonzero().flatten()  # which input each live group of K rows decodes
        beams = items.repeat_interleave(k)  # the input of each row
        joint = None
        if opts.ctc_weight > 0:
            if ctc is None:
                raise ValueError("ctc_weight > 0 needs a CTC head or CTC log-probs")
            log_probs = ctc(enc_out.memory) if isinstance(ctc, nn.Module) else ctc
            joint = JointCTCScorer(log_probs, enc_out.lengths, opts.ctc_weight, k, beams)
            caps = torch.minimum(caps, enc_out.lengths.clamp(min=1))
        scorers = token_scorers(lm, opts, decoder.vocab_size, beams.numel(), device)
        # Cross-attention keys/values are projected once per input, then copied to its K beams.
        state = decoder.init_state(enc_out).select(beams)
        scores = torch.full((items.numel(), k), -math.inf, dtype=torch.float64, device=device)
        scores[:, 0] = 0.0  # all beams start identical: only the first may expand
        generated = torch.empty(beams.numel(), 0, dtype=torch.long, device=device)
        last = torch.full((beams.numel(),), BOS_ID, dtype=torch.long, device=device)

        while items.numel():
            n = items.numel()
            logits, state = decoder(last[:, None], state)
            row_caps = caps[items].repeat_interleave(k)
            logp = apply_rules(logits[:, -1].log_softmax(-1), generated, row_caps, opts).double()
            extra = sum(s.scores(last) for s in scorers) if scorers else None  # (N, V)
            if joint is None:  # every token is a candidate
                tokens, step = None, (logp if extra is None else logp + extra)
            else:
                tokens, step = joint.score(logp, extra)  # (N, C): the pre-beam's candidates
            c = step.size(1)
            top_scores, top_index = (scores.view(-1, 1) + step).view(n, k * c).topk(2 * k, dim=1)  # best first
            origin = top_index // c
            token = top_index % c if tokens is None else tokens.view(n, k * c).gather(1, top_index)

            keep, done = self._finish(top_scores, origin, token == EOS_ID, generated, items, caps, finished)
            scores, index, token = top_scores.gather(1, keep), top_index.gather(1, keep), token.gather(1, keep)
            live = (~done).nonzero().flatten()
            rows = ((live * k)[:, None] + index[live] // c).flatten()  # source row of every surviving beam
            if joint is not None:
                joint.select(((live * k * c)[:, None] + index[live]).flatten())
            items, scores, last = items[live], scores[live], token[live].flatten()
            generated = torch.cat([generated[rows], last[:, None]], dim=1)
            state = state.select(rows) if done.any() else state.select_beams(rows)
            for s in scorers:
                s.select(rows)

        return [sorted(hyps, key=lambda h: -h.score)[: opts.nbest] for hyps in finished]

    def _finish(
        self, top_scores: Tensor, origin: Tensor, is_eos: Tensor, generated: Tensor, items: Tensor, caps: Tensor,
        finished: list[list[Hypothesis]],
    ) -> tuple[Tensor, Tensor]:
        """The end of one step over n live inputs x K beams.

        top_scores, origin, is_eos: `(n, 2K)` best candidates first, the beam each extends, whether it is EOS.
        generated: `(n*K, t)` tokens so far; items: `(n,)` input index of each group; caps: `(B,)` length caps.
        EOS candidates ranked within an input's top K (with a finite score) join `finished[input]`.
        Returns `keep` `(n, K)`: the columns of the K best non-EOS candidates (a stable sort puts EOS last), and
        `done` `(n,)`: inputs with K finished hypotheses or at their length cap.
        """
        k, alpha = self.options.beam_size, self.options.length_penalty
        t = generated.size(1)
        for g, j in (is_eos[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist():
            tokens = generated[g * k + origin[g, j].item()].tolist()
            logprob = top_scores[g, j].item()
            finished[items[g].item()].append(Hypothesis(tokens, logprob, logprob / length_penalty(len(tokens) + 1,
                                                                                                    alpha)))
        keep = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :k]
        counts = torch.tensor([len(finished[i]) for i in items.tolist()], device=items.device)
        done = (counts >= k) | (caps[items] <= t)
        return keep, done
