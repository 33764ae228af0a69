"""Batched greedy search with the decoder's KV cache."""

from __future__ import annotations

import torch

from toolkit.decode.fusion import token_scorers
from toolkit.decode.options import (DecodingOptions, Hypothesis, apply_rules, length_caps, length_penalty,
                                   start_results)
from toolkit.lm.model import LanguageModel
from toolkit.model.base import BOS_ID, EOS_ID, Decoder, EncoderOutput


class GreedySearch:
    """Pick the most likely token at every step; finished inputs are dropped from the batch as they end."""

    def __init__(self, options: DecodingOptions):
        self.options = options

    @torch.no_grad()
    def search(
        self, decoder: Decoder, enc_out: EncoderOutput, lm: LanguageModel | None = None
    ) -> list[list[Hypothesis]]:
        """enc_out: memory `(B, S, D)` with lengths `(B,)`; lm: a language model fused with weight
        `options.lm_weight` (`toolkit.decode.fusion`). Returns, per input, a list with one hypothesis (for an input
        of length 0, empty and scored 0.0)."""
        opts = self.options
        b = enc_out.memory.size(0)
        device = enc_out.memory.device
        caps = length_caps(opts, enc_out.lengths, decoder.max_len)
        results = start_results(enc_out.lengths)
        rows = (enc_out.lengths > 0).nonzero().flatten()  # which input each live row decodes
        n = rows.numel()
        state = decoder.init_state(enc_out)
        if n < b:
            state = state.select(rows)
        generated = torch.empty(n, 0, dtype=torch.long, device=device)
        logprob = torch.zeros(n, dtype=torch.float64, device=device)
        last = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)
        scorers = token_scorers(lm, opts, decoder.vocab_size, n, device)
        while rows.numel():
            logits, state = decoder(last, state)
            logp = apply_rules(logits[:, -1].log_softmax(-1), generated, caps[rows], opts)
            if scorers:
                logp = logp.double() + sum(s.scores(last[:, 0]) for s in scorers)
            best_logp, token = logp.max(-1)
            logprob += best_logp.double()
            generated = torch.cat([generated, token[:, None]], dim=1)
            ended = token == EOS_ID
            for i in ended.nonzero().flatten().tolist():
                tokens = generated[i, :-1].tolist()
                score = logprob[i].item() / length_penalty(len(tokens) + 1, opts.length_penalty)
                results[rows[i].item()] = [Hypothesis(tokens, logprob[i].item(), score)]
            if ended.any():
                keep = (~ended).nonzero().flatten()
                rows, generated, logprob, token = rows[keep], generated[keep], logprob[keep], token[keep]
                state = state.select(keep)
                for s in scorers:
                    s.select(keep)
            last = token[:, None]
        return results
