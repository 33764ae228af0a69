"""Batched beam search with the decoder's KV cache.

All B inputs x K beams decode together as B*K rows of one batch. At each step every input keeps its K best
continuations (from the top 2K candidates, so that K survive even if some end in EOS); a candidate ending in
EOS among an input's top K is set aside as finished. An input is done when it has K finished hypotheses or
has reached its length cap; done inputs leave the batch, so the rest decode faster. A language model and a length
bonus (`toolkit.decode.fusion`) add to each candidate's log-probability when `options` asks for them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from toolkit.decode.fusion import ShallowFusion
from toolkit.decode.options import DecodingOptions, Hypothesis, apply_rules, length_caps, length_penalty
from toolkit.lm.model import LanguageModel
from toolkit.model.base import BOS_ID, EOS_ID, Decoder, EncoderOutput


def finish_step(
    top_scores: Tensor, origin: Tensor, is_eos: Tensor, generated: Tensor, items: Tensor, caps: Tensor,
    finished: list[list[Hypothesis]], options: DecodingOptions,
) -> tuple[Tensor, Tensor]:
    """The end of one beam step, shared by every beam search over n live inputs x K beams.

    top_scores, origin, is_eos: `(n, 2K)` best candidates first, the beam each extends, whether it is EOS.
    generated: `(n*K, t)` tokens so far; items: `(n,)` input index of each group; caps: `(B,)` length caps.
    EOS candidates ranked within an input's top K (with a finite score) join `finished[input]`.
    Returns `keep` `(n, K)`: the columns of the K best non-EOS candidates (a stable sort puts EOS last), and
    `done` `(n,)`: inputs with K finished hypotheses or at their length cap.
    """
    k = options.beam_size
    t = generated.size(1)
    for g, j in (is_eos[:, :k] & top_scores[:, :k].isfinite()).nonzero().tolist():
        tokens = generated[g * k + origin[g, j].item()].tolist()
        logprob = top_scores[g, j].item()
        score = logprob / length_penalty(len(tokens) + 1, options.length_penalty)
        finished[items[g].item()].append(Hypothesis(tokens, logprob, score))
    keep = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :k]
    counts = torch.tensor([len(finished[i]) for i in items.tolist()], device=items.device)
    done = (counts >= k) | (caps[items] <= t)
    return keep, done


class BeamSearch:
    def __init__(self, options: DecodingOptions):
        self.options = options

    @torch.no_grad()
    def search(
        self, decoder: Decoder, enc_out: EncoderOutput, lm: LanguageModel | None = None
    ) -> list[list[Hypothesis]]:
        """enc_out: memory `(B, S, D)` with lengths `(B,)`; lm: a language model fused with weight
        `options.lm_weight` (`toolkit.decode.fusion`). Returns, per input, its `nbest` hypotheses, best first."""
        opts = self.options
        k = opts.beam_size
        b = enc_out.memory.size(0)
        device = enc_out.memory.device
        caps = length_caps(opts, enc_out.lengths, decoder.max_len)
        # Cross-attention keys/values are projected once per input, then copied to its K beams.
        state = decoder.init_state(enc_out).select(torch.arange(b, device=device).repeat_interleave(k))
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
            if fusion is not None:
                logp = logp + fusion.scores(last[:, 0], vocab)
            candidates = (scores.view(-1, 1) + logp).view(n, k * vocab)
            top_scores, top_index = candidates.topk(2 * k, dim=1)  # (n, 2K), best first
            origin, token = top_index // vocab, top_index % vocab
            is_eos = token == EOS_ID

            keep, done = finish_step(top_scores, origin, is_eos, generated, items, caps, finished, opts)
            scores = top_scores.gather(1, keep)
            origin, token = origin.gather(1, keep), token.gather(1, keep)
            live = (~done).nonzero().flatten()
            rows = ((live * k)[:, None] + origin[live]).flatten()  # source row of every surviving beam
            items, scores, token = items[live], scores[live], token[live].flatten()
            generated = torch.cat([generated[rows], token[:, None]], dim=1)
            state = state.select(rows) if done.any() else state.select_beams(rows)
            if fusion is not None:
                fusion.select(rows)
            last = token[:, None]

        return [sorted(hyps, key=lambda h: -h.score)[: opts.nbest] for hyps in finished]
