"""CTC decoding: greedy (best path) and the CTC prefix score used by joint CTC/attention beam search.

    tokens = ctc_greedy(log_probs, lengths)                       # argmax, collapse repeats, drop blank
    tokens, frames = ctc_greedy_with_frames(log_probs, lengths)   # + the frame where each token starts

    scorer = CTCPrefixScorer(log_probs, lengths)                  # (B, T, V) log-probs of B inputs
    state = scorer.initial_state(items)                           # N empty prefixes; items (N,) picks the input
    scores, candidates = scorer.score(state, tokens)              # tokens (N, C) -> psi(prefix + token) (N, C)
    state = candidates.select(index)                              # keep candidates index (M,) of the N*C

The prefix score (Watanabe et al. 2017, "Hybrid CTC/attention architecture", Algorithm 2; ESPnet's
`CTCPrefixScoreTH`) of a label prefix h is psi(h) = log P(the CTC label sequence starts with h | x). It is
built from the forward variables of h:

    r_n[t](h), r_b[t](h) = log P(x_0..x_t emit exactly h, frame t being non-blank / blank)
    phi[t](h, c)         = r_b[t](h) if c == last(h) else logaddexp(r_n[t](h), r_b[t](h))
    psi(h + c)           = logsumexp_t phi[t-1](h, c) + log y_t(c)          (t over valid frames)
    psi(h + <eos>)       = logaddexp(r_n[T'-1](h), r_b[T'-1](h)) = log p_ctc(h | x)   (T' = the input's length)

with phi[-1] = 0 for the empty prefix (and -inf otherwise). The recursions

    r_n[t](h + c) = logaddexp(r_n[t-1](h + c), phi[t-1](h, c)) + log y_t(c)
    r_b[t](h + c) = logaddexp(r_n[t-1](h + c), r_b[t-1](h + c)) + log y_t(blank)

are first-order linear in probability space, a[t] = (a[t-1] + u[t-1]) * m[t], so they are solved for all t at
once with a prefix sum and a `logcumsumexp`: a[t] = M[t] + logcumsumexp_s(u[s-1] - M[s-1]), M = cumsum(log m).
One scoring step is therefore a handful of vectorised ops over (N, C, T) instead of a Python loop over frames.
The subtraction of large cumulative sums is why the scorer works in float64 by default (float32 loses about
|M| * 1e-7 nats). Log-probabilities below `LOG_FLOOR` are raised to it so that cumulative sums stay finite
(exp(-1e4) is 0 in float64 anyway); an impossible prefix then scores about LOG_FLOOR or -inf.
Frames at or past an input's length do not count: they take no part in psi, and the end score is read at the
last valid frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit.decode.options import Hypothesis
from toolkit.model.base import BLANK_ID, EOS_ID

LOG_FLOOR = -1e4  # CTC log-probabilities below this (-inf included) are raised to it: here and in `align.py`

__all__ = [
    "LOG_FLOOR", "CTCCandidates", "CTCPrefixScorer", "CTCPrefixState", "ctc_greedy", "ctc_greedy_search",
    "ctc_greedy_with_frames",
]


def _full_lengths(log_probs: Tensor, lengths: Tensor | None) -> Tensor:
    b, t, _ = log_probs.shape
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long, device=log_probs.device)
    return lengths.to(device=log_probs.device, dtype=torch.long).clamp(0, t)


def ctc_greedy_with_frames(
    log_probs: Tensor, lengths: Tensor | None = None, blank: int = BLANK_ID
) -> tuple[list[list[int]], list[list[int]]]:
    """Best-path CTC decoding of log-probs (or logits) `(B, T, V)` over the first `lengths` `(B,)` frames.

    The argmax path is collapsed (a token repeated in consecutive frames counts once; a blank between two equal
    tokens separates them) and blanks are dropped. Returns, per input, the tokens and the frame index at which
    each token starts (for timestamps: frame * the encoder's frame shift).
    """
    b, t, _ = log_probs.shape
    lengths = _full_lengths(log_probs, lengths)
    best = log_probs.argmax(-1)  # (B, T)
    prev = F.pad(best[:, :-1], (1, 0), value=blank)
    valid = torch.arange(t, device=best.device)[None, :] < lengths[:, None]
    emit = (best != blank) & (best != prev) & valid
    tokens, frames = [], []
    for row, mask in zip(best.cpu(), emit.cpu()):
        tokens.append(row[mask].tolist())
        frames.append(mask.nonzero().flatten().tolist())
    return tokens, frames


def ctc_greedy(log_probs: Tensor, lengths: Tensor | None = None, blank: int = BLANK_ID) -> list[list[int]]:
    """Best-path CTC decoding `(B, T, V)` -> per input its token ids (repeats collapsed, blanks dropped)."""
    return ctc_greedy_with_frames(log_probs, lengths, blank)[0]


@torch.no_grad()
def ctc_greedy_search(log_probs: Tensor, lengths: Tensor | None = None) -> list[list[Hypothesis]]:
    """`ctc_greedy` as a search result: one `Hypothesis` per input whose logprob (and score) is the CTC
    log-likelihood log p_ctc(tokens | x) = -ctc_loss, summed over all alignments (not the best path's)."""
    lengths = _full_lengths(log_probs, lengths)
    tokens = ctc_greedy(log_probs, lengths)
    targets = torch.tensor([tok for seq in tokens for tok in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(seq) for seq in tokens], dtype=torch.long)
    nll = F.ctc_loss(
        log_probs.float().log_softmax(-1).transpose(0, 1).cpu(), targets, lengths.cpu(), target_lengths,
        blank=BLANK_ID, reduction="none", zero_infinity=False,
    )
    return [[Hypothesis(seq, -float(loss), -float(loss))] for seq, loss in zip(tokens, nll)]


@dataclass
class CTCPrefixState:
    """N label prefixes, each against one input of the scorer.

    item:  `(N,)` the input (row of the scorer's log-probs) each prefix belongs to.
    r_n:   `(N, T+1)` log P(frames 0..t emit the prefix, frame t non-blank) in column t+1; column 0 is
           "before the first frame" (-inf).
    r_b:   `(N, T+1)` the same with frame t blank; column 0 is 0 for the empty prefix, -inf otherwise.
    score: `(N,)` psi(prefix), the prefix log-probability (0 for the empty prefix).
    last:  `(N,)` the prefix's last token, -1 when empty.
    """

    item: Tensor
    r_n: Tensor
    r_b: Tensor
    score: Tensor
    last: Tensor

    def select(self, index: Tensor) -> "CTCPrefixState":
        """Keep prefixes `index` `(M,)` (beam reordering and pruning): an index_select of every field."""
        fields = (self.item, self.r_n, self.r_b, self.score, self.last)
        return CTCPrefixState(*(f.index_select(0, index) for f in fields))


@dataclass
class CTCCandidates:
    """The N*C extensions scored by `CTCPrefixScorer.score`; candidate i*C + j is prefix i + tokens[i, j].
    Their forward variables are computed only for the candidates that `select` keeps."""

    scorer: "CTCPrefixScorer"
    parent: CTCPrefixState
    tokens: Tensor  # (N, C)
    scores: Tensor  # (N, C)

    def select(self, index: Tensor) -> CTCPrefixState:
        """States of candidates `index` `(M,)` (flat indices into N*C)."""
        c = self.tokens.size(1)
        parent = self.parent.select(torch.div(index, c, rounding_mode="floor"))
        return self.scorer.extend(parent, self.tokens.flatten()[index], self.scores.flatten()[index])


class CTCPrefixScorer:
    """CTC prefix scores against B inputs, vectorised over any number of prefixes (see the module docstring).

    log_probs: `(B, T, V)` CTC log-probabilities (blank = `blank`); lengths: `(B,)` valid frames (default T).
    dtype:     float64 (default) or float32 for the forward variables.
    """

    def __init__(
        self, log_probs: Tensor, lengths: Tensor | None = None, blank: int = BLANK_ID, eos: int = EOS_ID,
        dtype: torch.dtype = torch.float64,
    ):
        b, t, v = log_probs.shape
        self.blank, self.eos, self.dtype, self.frames = blank, eos, dtype, t
        self.lengths = _full_lengths(log_probs, lengths)
        self.valid = torch.arange(t, device=log_probs.device)[None, :] < self.lengths[:, None]  # (B, T)
        # Padded frames are set to 0 (finite, never counted); (B, V, T) so a token's frames are contiguous.
        x = log_probs.detach().clamp(min=LOG_FLOOR).masked_fill(~self.valid[:, :, None], 0.0)
        self.x = x.transpose(1, 2).contiguous()
        blank_cum = x[:, :, blank].to(dtype).cumsum(1)
        self.blank_cum = F.pad(blank_cum, (1, 0))  # (B, T+1): column s = sum of blank log-probs of frames < s

    def initial_state(self, items: Tensor) -> CTCPrefixState:
        """Empty prefixes for inputs `items` `(N,)`: r_b = all-blank paths, psi = 0."""
        n = items.numel()
        r_n = torch.full((n, self.frames + 1), -math.inf, dtype=self.dtype, device=items.device)
        return CTCPrefixState(
            items, r_n, self.blank_cum[items], torch.zeros(n, dtype=self.dtype, device=items.device),
            torch.full((n,), -1, dtype=torch.long, device=items.device),
        )

    def end_score(self, state: CTCPrefixState) -> Tensor:
        """`(N,)` log p_ctc(prefix | x): the prefix complete at the last valid frame of its input."""
        total = torch.logaddexp(state.r_n, state.r_b)
        return total.gather(1, self.lengths[state.item][:, None]).squeeze(1)

    def _phi(self, state: CTCPrefixState, tokens: Tensor) -> Tensor:
        """phi[-1..T-2] `(N, C, T)` of prefixes extended by `tokens` `(N, C)`: columns 0..T-1 of the state."""
        total = torch.logaddexp(state.r_n, state.r_b)[:, None, :-1]
        repeat = (tokens == state.last[:, None])[:, :, None]
        return torch.where(repeat, state.r_b[:, None, :-1], total)

    def score(self, state: CTCPrefixState, tokens: Tensor) -> tuple[Tensor, CTCCandidates]:
        """psi(prefix + token) `(N, C)` for candidate `tokens` `(N, C)` of each prefix, and the candidates.

        The EOS candidate scores `end_score` (the prefix is the whole transcript); a blank candidate -inf.
        """
        x = self.x[state.item[:, None], tokens].to(self.dtype)  # (N, C, T)
        terms = self._phi(state, tokens) + x
        terms = terms.masked_fill(~self.valid[state.item][:, None, :], -math.inf)
        psi = torch.logsumexp(terms, dim=-1)
        psi = torch.where(tokens == self.eos, self.end_score(state)[:, None], psi)
        psi = psi.masked_fill(tokens == self.blank, -math.inf)
        return psi, CTCCandidates(self, state, tokens, psi)

    def extend(self, state: CTCPrefixState, tokens: Tensor, scores: Tensor) -> CTCPrefixState:
        """Forward variables of prefixes `state` extended by one token each, `tokens` `(N,)`, whose psi is
        `scores` `(N,)` (from `score`). Two prefix sums and two logcumsumexps over time, no loop."""
        x = self.x[state.item, tokens].to(self.dtype)  # (N, T)
        phi = self._phi(state, tokens[:, None])[:, 0]  # (N, T): phi[t-1]
        m = x.cumsum(1)
        m_prev = F.pad(m[:, :-1], (1, 0))
        r_n = m + torch.logcumsumexp(phi - m_prev, dim=1)
        blank_cum = self.blank_cum[state.item]
        start = torch.full_like(r_n[:, :1], -math.inf)
        r_n = torch.cat([start, r_n], dim=1)
        r_b = blank_cum[:, 1:] + torch.logcumsumexp(r_n[:, :-1] - blank_cum[:, :-1], dim=1)
        return CTCPrefixState(state.item, r_n, torch.cat([start, r_b], dim=1), scores, tokens)
