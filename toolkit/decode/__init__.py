"""Search strategies over the attention decoder, kept outside the modules (openai/whisper's decoding.py idea).

    hyps = decode(model, x, lengths, DecodingOptions(beam_size=4))   # best hypothesis per input
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit.decode.beam import BeamSearch
from toolkit.decode.greedy import GreedySearch
from toolkit.decode.options import DecodingOptions, Hypothesis
from toolkit.model.base import EncoderDecoder, EncoderOutput

__all__ = ["BeamSearch", "DecodingOptions", "GreedySearch", "Hypothesis", "decode", "search"]


def search(model: EncoderDecoder, enc_out: EncoderOutput, options: DecodingOptions) -> list[list[Hypothesis]]:
    """Run the strategy `options` selects (greedy for beam 1) over encoded inputs; n-best lists per input."""
    if model.decoder is None:
        raise ValueError("this model has no attention decoder to search with")
    strategy = GreedySearch(options) if options.beam_size == 1 else BeamSearch(options)
    return strategy.search(model.decoder, enc_out)


@torch.no_grad()
def decode(
    model: EncoderDecoder, x: Tensor, lengths: Tensor | None = None, options: DecodingOptions | None = None
) -> list[Hypothesis]:
    """Encode a batch `x` (with `lengths` `(B,)` for padded inputs) and return the best hypothesis per input."""
    enc_out = model.encode(x, lengths)
    return [nbest[0] for nbest in search(model, enc_out, options or DecodingOptions())]
