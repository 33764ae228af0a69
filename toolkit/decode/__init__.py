"""Search strategies over the attention decoder, kept outside the modules (openai/whisper's decoding.py idea).

    hyps = decode(model, x, lengths, DecodingOptions(beam_size=4))   # best hypothesis per input
    hyps = decode(model, x, lengths, DecodingOptions(beam_size=4, ctc_weight=0.3))   # joint CTC/attention
    nbest = search(model, model.encode(x, lengths), DecodingOptions(beam_size=4, ctc_weight=0.3, lm_weight=0.5),
                   lm=lm)                                                       # + shallow fusion with an LM
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit.decode.beam import BeamSearch
from toolkit.decode.ctc import CTCPrefixScorer, CTCPrefixState, ctc_greedy, ctc_greedy_search, ctc_greedy_with_frames
from toolkit.decode.fusion import TokenScorer, token_scorers
from toolkit.decode.greedy import GreedySearch
from toolkit.decode.joint import JointCTCScorer
from toolkit.decode.options import DecodingOptions, Hypothesis
from toolkit.decode.resolve import resolve_decoding
from toolkit.lm.model import LanguageModel
from toolkit.model.base import EncoderDecoder, EncoderOutput
from toolkit.threads import torch_threads

__all__ = [
    "BeamSearch", "CTCPrefixScorer", "CTCPrefixState", "DecodingOptions", "GreedySearch", "Hypothesis",
    "JointCTCScorer", "TokenScorer", "ctc_greedy", "ctc_greedy_search", "ctc_greedy_with_frames", "decode",
    "resolve_decoding", "search", "token_scorers",
]


def search(
    model: EncoderDecoder, enc_out: EncoderOutput, options: DecodingOptions, lm: LanguageModel | None = None
) -> list[list[Hypothesis]]:
    """Run the strategy `options` selects over encoded inputs; n-best lists per input.

    ctc_weight > 0 (the model must have a CTC head): beam search with the CTC prefix scorer, joint CTC/attention
    (beam 1 included); otherwise greedy for beam 1, beam search above. A model with a CTC head and no decoder: CTC
    greedy.
    lm: a language model over the model's token ids, fused into every strategy with `options.lm_weight`
    (and `options.length_bonus`; `toolkit.decode.fusion`); with lm_weight 0 it is not run at all.
    """
    with torch_threads(getattr(model.decoder, "search_threads", None)):
        return _search(model, enc_out, options, lm)


def _search(model: EncoderDecoder, enc_out: EncoderOutput, options: DecodingOptions,
            lm: LanguageModel | None) -> list[list[Hypothesis]]:
    ctc_head = getattr(model, "ctc_head", None)
    if lm is not None and lm.vocab_size != model.config.vocab_size:
        raise ValueError(f"the language model has {lm.vocab_size} tokens and the model {model.config.vocab_size}")
    if model.decoder is None:
        if ctc_head is None:
            raise ValueError("this model has no attention decoder to search with")
        if (lm is not None and options.lm_weight) or options.length_bonus or options.oov_penalty:
            raise ValueError("LM fusion, the length bonus and the OOV penalty need an attention decoder (CTC greedy "
                             "has no search)")
        with torch.no_grad():
            return ctc_greedy_search(ctc_head(enc_out.memory), enc_out.lengths)
    if options.ctc_weight > 0 and ctc_head is None:
        raise ValueError(f"ctc_weight {options.ctc_weight} needs a model with a CTC head")
    if options.beam_size == 1 and options.ctc_weight == 0:
        return GreedySearch(options).search(model.decoder, enc_out, lm)
    return BeamSearch(options).search(model.decoder, enc_out, lm, ctc=ctc_head)


@torch.no_grad()
def decode(
    model: EncoderDecoder, x: Tensor, lengths: Tensor | None = None, options: DecodingOptions | None = None
) -> list[Hypothesis]:
    """Encode a batch `x` (with `lengths` `(B,)` for padded inputs) and return the best hypothesis per input."""
    enc_out = model.encode(x, lengths)
    return [nbest[0] for nbest in search(model, enc_out, options or DecodingOptions())]
