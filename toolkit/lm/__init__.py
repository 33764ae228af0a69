"""External language models for shallow fusion in speech recognition search.

    from toolkit.lm import LstmLM, LstmLMConfig, load_lm, save_lm
    lm = load_lm("exp/lm/final", tokenizer=asr_bundle.tokenizer).model
    hyps = search(asr_model, enc_out, DecodingOptions(beam_size=4, ctc_weight=0.3, lm_weight=0.5), lm=lm)

Trained with `toolkit train conf/lm.yaml` (`task: lm`, `toolkit.tasks.lm`) on text alone, with the tokenizer of the
speech model it will be fused with.
"""

from toolkit.lm.bundle import LEXICON_FILE, LM_TASK, LMBundle, check_same_tokenizer, load_lm, save_lm
from toolkit.lm.lexicon import Lexicon, LexiconScorer, TokenLexicon, token_texts
from toolkit.lm.model import LanguageModel, LMState, LstmLM, LstmLMConfig, LstmState

__all__ = [
    "LEXICON_FILE", "LM_TASK", "LMBundle", "LMState", "LanguageModel", "Lexicon", "LexiconScorer", "LstmLM",
    "LstmLMConfig", "LstmState", "TokenLexicon", "check_same_tokenizer", "load_lm", "save_lm",
    "token_texts",
]
