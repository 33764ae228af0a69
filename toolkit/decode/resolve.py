"""The one place a speech search's options are chosen: what the user gives, else what the model's bundle saved,
checked against what the model and the language model can do.

    options = resolve_decoding(bundle.info.get("decoding"), beam_size=4, lm_weight=None, has_lm=True,
                               has_lexicon=lm.lexicon is not None, has_ctc=model.ctc_head is not None,
                               has_decoder=model.decoder is not None, where="exp/speech/final")

It takes plain facts (`has_lm`, `has_lexicon`, ...), not models or bundles, so that `toolkit.decode` imports
nothing above it. A combination that cannot work is one `ToolkitError`, worded once here for every caller (the
command line, `Transcriber`, `Subtitler`, `evaluate_asr`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolkit.decode.options import DecodingOptions
from toolkit.errors import ToolkitError

MAX_LENGTH = 10_000  # tokens per input; the real cap of a speech search is max_length_ratio * encoder frames


def resolve_decoding(
    saved: Mapping[str, Any] | None = None, *, beam_size: int | None = None, ctc_weight: float | None = None,
    lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
    has_ctc: bool = True, has_decoder: bool = True, has_lm: bool = False, has_lexicon: bool = False,
    ctc_only: bool = False, where: str | Path | None = None,
) -> DecodingOptions:
    """The `DecodingOptions` of a speech search.

    saved:        the defaults a bundle records (`info["decoding"]`: ctc_weight, max_length_ratio, and for fusion
                  with a language model lm_weight, length_bonus, oov_penalty).
    beam_size ... oov_penalty: the user's values; None = not given, take the saved one. Without a saved one: beam 1,
                  ctc_weight 0, max_length_ratio 1.0, length bonus and OOV penalty 0; an LM weight is required.
    has_*:        what the model (a CTC head, an attention decoder) and the language model (given at all, with a
                  lexicon) offer. The saved ctc_weight is used only with a CTC head, the saved fusion settings
                  only with an LM; lm_weight and oov_penalty given without an LM are errors.
    ctc_only:     CTC greedy decoding is asked for (no search).
    where:        prefixed to the error message (the model's directory).
    """
    saved = saved or {}

    def fail(message: str) -> ToolkitError:
        return ToolkitError(f"{where}: {message}" if where is not None else message)

    if not has_ctc and (ctc_only or ctc_weight):
        raise fail("this model has no CTC head: it decodes with its attention decoder only (no CTC-only decoding, "
                   "ctc_weight 0)")
    if ctc_only and (has_lm or lm_weight is not None):
        raise fail("CTC-only decoding has no search to fuse a language model into")
    if has_lm and not has_decoder:
        raise fail("this model has no attention decoder to fuse a language model with")
    if has_lm:
        lm_weight = saved.get("lm_weight") if lm_weight is None else lm_weight
        if lm_weight is None:
            raise fail("the bundle records no decoding.lm_weight to fuse a language model with; give one "
                       "(lm_weight / --lm-weight, e.g. 0.3)")
        length_bonus = saved.get("length_bonus", 0.0) if length_bonus is None else length_bonus
        oov_penalty = saved.get("oov_penalty", 0.0) if oov_penalty is None else oov_penalty
        if oov_penalty and not has_lexicon:
            raise fail(f"the language model has no lexicon (lexicon.txt) for OOV penalty {oov_penalty:g}: give "
                       "oov_penalty 0 (--oov-penalty 0), or train the LM again")
    elif lm_weight:
        raise fail(f"lm_weight {lm_weight:g} needs a language model (lm / --lm DIR)")
    elif oov_penalty:
        raise fail(f"oov_penalty {oov_penalty:g} needs a language model with a lexicon (lm / --lm DIR)")
    if ctc_weight is None:
        ctc_weight = saved.get("ctc_weight", 0.0) if has_ctc else 0.0
    return DecodingOptions(beam_size=beam_size or 1, max_length=MAX_LENGTH,
                           max_length_ratio=saved.get("max_length_ratio", 1.0), ctc_weight=float(ctc_weight),
                           lm_weight=float(lm_weight or 0.0), length_bonus=float(length_bonus or 0.0),
                           oov_penalty=float(oov_penalty or 0.0))
