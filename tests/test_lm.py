"""External language models: the LSTM LM, its training task and bundles, shallow fusion in every search, and the
language-model text of the synthetic speech corpus."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from toolkit.bundle import load_model
from toolkit.config import load_config
from toolkit.synth.text_corpus import FORTUNE_DIR, WORDNET_DIR
from toolkit.decode import BeamSearch, DecodingOptions, GreedySearch, resolve_decoding, search, token_scorers
from toolkit.errors import BundleError, ToolkitError
from toolkit.lm import LanguageModel, LMState, LstmLM, LstmLMConfig, load_lm, save_lm
from toolkit.model import BOS_ID, EOS_ID, DecoderConfig, EncoderOutput, TransformerDecoder
from toolkit.tasks.lm import LmDataConfig, LmExperiment, collate_sentences, train_lm
from toolkit.text import train_tokenizer
from toolkit.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 12


def random_lm(seed: int, vocab: int = VOCAB, layers: int = 2, tie: bool = False) -> LstmLM:
    torch.manual_seed(seed)
    return LstmLM(LstmLMConfig(vocab_size=vocab, embed_dim=16, hidden_dim=16, num_layers=layers, dropout=0.0,
                               tie_weights=tie)).eval()


def random_decoder(seed: int) -> TransformerDecoder:
    torch.manual_seed(seed)
    dec = TransformerDecoder(VOCAB, 16, DecoderConfig(num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0, max_len=64))
    with torch.no_grad():  # sharpen the random model so hypotheses end at varied lengths
        dec.embed.weight.mul_(3.0)
    return dec.eval()


def random_inputs(seed: int, b: int = 4, s: int = 9) -> tuple[EncoderOutput, torch.Tensor]:
    """Encoder memory `(B, S, 16)` with lengths, and CTC log-probs `(B, S, V)` for joint search."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, s + 1, (b,), generator=g)
    lengths[0] = s
    ctc = (2 * torch.randn(b, s, VOCAB, generator=g)).log_softmax(-1)
    return EncoderOutput(4 * torch.randn(b, s, 16, generator=g), lengths), ctc


def item(enc: EncoderOutput, ctc: torch.Tensor, i: int) -> tuple[EncoderOutput, torch.Tensor]:
    n = int(enc.lengths[i])
    return EncoderOutput(enc.memory[i : i + 1, :n], enc.lengths[i : i + 1]), ctc[i : i + 1, :n]


def run(strategy: str, opts: DecodingOptions, dec, enc, ctc, lm=None):
    if strategy == "greedy":
        return GreedySearch(opts).search(dec, enc, lm)
    return BeamSearch(opts).search(dec, enc, lm, ctc=ctc)  # "beam" and "joint": CTC scores when ctc_weight > 0


STRATEGIES = [("greedy", 1, 0.0), ("beam", 4, 0.0), ("joint", 4, 0.3), ("joint", 3, 1.0)]


# ------------------------------------------------------------------------------------------------ the model


def test_step_by_step_equals_the_whole_sequence():
    lm = random_lm(0)
    tokens = torch.randint(4, VOCAB, (3, 7))
    tokens[:, 0] = BOS_ID
    full = lm(tokens).log_softmax(-1)
    state = lm.init_state(3)
    for t in range(tokens.size(1)):
        logp, state = lm.step(tokens[:, t], state)
        assert logp.dtype == torch.float32 and logp.shape == (3, VOCAB)
        torch.testing.assert_close(logp, full[:, t], rtol=0, atol=1e-5)


def test_state_select_reorders_and_repeats_prefixes():
    lm = random_lm(1)
    prefixes = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 7], [BOS_ID, 9, 4]])
    state = lm.init_state(3)
    for t in range(3):
        _, state = lm.step(prefixes[:, t], state)
    index = torch.tensor([2, 0, 0, 1])
    logp, _ = lm.step(torch.tensor([8, 5, 6, 4]), state.select(index))
    expected = lm(torch.cat([prefixes[index], torch.tensor([[8], [5], [6], [4]])], dim=1))[:, -1].log_softmax(-1)
    torch.testing.assert_close(logp, expected, rtol=0, atol=1e-5)


def test_config_is_checked():
    with pytest.raises(ValueError, match="tie_weights needs embed_dim == hidden_dim"):
        LstmLMConfig(vocab_size=10, embed_dim=8, hidden_dim=16, tie_weights=True)
    with pytest.raises(ValueError, match="dropout"):
        LstmLMConfig(vocab_size=10, dropout=1.0)
    with pytest.raises(ValueError, match="lm_weight"):
        DecodingOptions(lm_weight=-0.1)
    with pytest.raises(ValueError, match="length_bonus"):
        DecodingOptions(length_bonus=math.inf)


# ------------------------------------------------------------------------------------------------ training


def write_corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A repetitive text file and a char tokenizer directory for it."""
    sentences = [f"{a} {b}" for a in ("the cat", "a dog", "my bird") for b in ("sat down", "ran off", "was here")]
    text = tmp_path / "text.txt"
    text.write_text("\n".join(s.upper() + "!" for s in sentences * 20) + "\nthe cat sat down\n\n", encoding="utf-8")
    tokenizer = train_tokenizer("char", sentences)
    tokenizer.save(tmp_path / "tok")
    return text, tmp_path / "tok"


def tiny_experiment(text: Path, tok: Path, **train) -> LmExperiment:
    options = dict(max_steps=200, lr=1e-2, warmup_steps=10, valid_every=100, log_every=50, metric="ppl", seed=0)
    return LmExperiment(
        data=LmDataConfig(text=[str(text)], valid_size=2, max_batch_tokens=256, max_length=40),
        train=TrainConfig(**{**options, **train}),
        tokenizer_from=str(tok),
        model=LstmLMConfig(embed_dim=16, hidden_dim=32, num_layers=1, dropout=0.0),
    )


def test_lm_learns_a_repetitive_corpus(tmp_path):
    text, tok = write_corpus(tmp_path)
    exp = tiny_experiment(text, tok, amp="bf16")
    result = train_lm(exp, tmp_path / "exp")
    bundle = load_lm(result.final_path)
    uniform = bundle.tokenizer.vocab_size - 2  # a uniform guess over every token that may follow (not PAD, BOS)
    assert result.final_metrics["ppl"] < 2.5 < uniform / 5
    assert result.final_metrics["ppl"] == pytest.approx(math.exp(result.final_metrics["loss"]))
    assert bundle.info["task"] == "lm" and bundle.info["train_sentences"] == 7  # 9 unique sentences, 2 held out
    # The model it saved spells the corpus's words.
    for prefix, following in [("my bir", "d"), ("a dog was he", "r")]:
        state = bundle.model.init_state(1)
        for i in [BOS_ID, *bundle.tokenizer.encode(prefix)]:
            logp, state = bundle.model.step(torch.tensor([i]), state)
        assert bundle.tokenizer.decode([int(logp.argmax())]) == following


def test_batches_are_bos_tokens_and_tokens_eos():
    batch = collate_sentences([torch.tensor([5, 6, 7]), torch.tensor([8])])
    assert batch["inputs"].tolist() == [[BOS_ID, 5, 6, 7], [BOS_ID, 8, 0, 0]]
    assert batch["targets"].tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, 0, 0]]


def test_lm_task_errors_are_one_line(tmp_path):
    text, tok = write_corpus(tmp_path)
    with pytest.raises(ToolkitError, match=r"missing\.txt: text file not found$"):
        train_lm(replace(tiny_experiment(text, tok), data=LmDataConfig(text=[str(tmp_path / "missing.txt")])),
                 tmp_path / "a")
    big = replace(tiny_experiment(text, tok), data=LmDataConfig(text=[str(text)], valid_size=9))
    with pytest.raises(ToolkitError, match="9 usable sentences, not more than data.valid_size"):
        train_lm(big, tmp_path / "b")


@pytest.mark.parametrize("name", ["lm.yaml", "lm_full.yaml"])
def test_recipe_lm_config_is_valid(name):
    exp = load_config(LmExperiment, ROOT / "recipes/synth_speech/conf" / name)
    assert exp.task == "lm" and exp.train.amp == "bf16" and exp.train.metric == "ppl"


# ------------------------------------------------------------------------------------------------ bundles


@pytest.mark.parametrize("tie", [False, True])
def test_bundle_round_trip_and_tokenizer_mismatch(tmp_path, tie):
    tokenizer = train_tokenizer("char", ["abcdefghijklmnop"])
    lm = random_lm(2, vocab=tokenizer.vocab_size, layers=1, tie=tie)
    save_lm(tmp_path / "lm", lm, tokenizer, info={"step": 3})
    bundle = load_lm(tmp_path / "lm", tokenizer=train_tokenizer("char", ["ponmlkjihgfedcba"]))
    tokens = torch.randint(1, tokenizer.vocab_size, (2, 5))
    assert torch.equal(bundle.model(tokens), lm(tokens)) and bundle.info == {"step": 3, "task": "lm"}
    other = train_tokenizer("char", ["abcdefghijklmnoq"])
    with pytest.raises(ToolkitError, match=r"^\S+lm: the language model was trained with another tokenizer than "
                                           r"the speech model's \(id 19 is 'p' for the LM, 'q' here\)"):
        load_lm(tmp_path / "lm", tokenizer=other)
    with pytest.raises(ToolkitError, match=r"char with 20 tokens vs word with"):
        load_lm(tmp_path / "lm", tokenizer=train_tokenizer("word", ["a b c"]))
    with pytest.raises(BundleError, match="a language model bundle, not an encoder-decoder model"):
        load_model(tmp_path / "lm")
    (tmp_path / "lm" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_lm(tmp_path / "lm")


# ------------------------------------------------------------------------------------------------ fusion


class ExplodingLM(LanguageModel):
    """An LM that must not be run (lm_weight 0)."""

    vocab_size = VOCAB

    def init_state(self, batch_size, device="cpu"):
        raise AssertionError("the LM was used with lm_weight 0")

    def step(self, tokens, state):
        raise AssertionError("the LM was used with lm_weight 0")


@pytest.mark.parametrize("strategy,beam,lam", STRATEGIES)
@pytest.mark.parametrize("seed", range(3))
def test_zero_lm_weight_is_exactly_the_search_without_lm(strategy, beam, lam, seed):
    dec, (enc, ctc) = random_decoder(seed), random_inputs(seed)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=12, ctc_weight=lam, length_penalty=0.5)
    plain = run(strategy, opts, dec, enc, ctc)
    for lm in (None, ExplodingLM(), random_lm(seed)):
        fused = run(strategy, replace(opts, lm_weight=0.0), dec, enc, ctc, lm)
        assert [[(h.tokens, h.logprob, h.score) for h in n] for n in fused] == \
            [[(h.tokens, h.logprob, h.score) for h in n] for n in plain]


class ScriptLM(LanguageModel):
    """A hand-made LM that is sure of one sentence: after a prefix of `script` it gives the next script token (EOS
    at the end) log-probability 0 and every other token -20; off the script, a uniform distribution."""

    vocab_size = VOCAB

    def __init__(self, script: list[int]):
        super().__init__()
        self.script = torch.tensor([BOS_ID, *script, EOS_ID])

    def init_state(self, batch_size, device="cpu"):
        return PrefixState(torch.empty(batch_size, 0, dtype=torch.long))

    def step(self, tokens, state):
        prefix = torch.cat([state.prefix, tokens[:, None]], dim=1)
        t = prefix.size(1)
        logp = torch.full((tokens.size(0), VOCAB), -math.log(VOCAB))
        if t < len(self.script):
            on_script = (prefix == self.script[:t]).all(1)
            logp[on_script] = -20.0
            logp[on_script, self.script[t]] = 0.0
        return logp, PrefixState(prefix)


class PrefixState(LMState):
    def __init__(self, prefix):
        self.prefix = prefix

    def select(self, index):
        return PrefixState(self.prefix.index_select(0, index))


@pytest.mark.parametrize("strategy,beam,lam", STRATEGIES)
def test_a_confident_lm_steers_every_search(strategy, beam, lam):
    dec, (enc, ctc) = random_decoder(0), random_inputs(0)
    script = [9, 5, 9]
    opts = DecodingOptions(beam_size=beam, max_length=12, ctc_weight=lam)
    plain = [n[0].tokens for n in run(strategy, opts, dec, enc, ctc)]
    assert all(tokens != script for tokens in plain)
    steered = run(strategy, replace(opts, lm_weight=3.0), dec, enc, ctc, ScriptLM(script))
    assert [n[0].tokens for n in steered] == [script] * len(plain)


@pytest.mark.parametrize("strategy,beam,lam", STRATEGIES)
def test_fused_scores_add_up_and_lm_states_follow_their_beams(strategy, beam, lam):
    """A finished hypothesis's logprob is the search's own sum: (1 - lambda) * att + lambda * CTC + beta * LM +
    bonus per token. Recomputing the LM term over the returned tokens, from scratch, checks that every LM state
    followed its hypothesis through reordering and pruning."""
    dec, (enc, ctc), lm = random_decoder(3), random_inputs(3), random_lm(3)
    opts = DecodingOptions(beam_size=beam, nbest=beam, max_length=10, ctc_weight=lam, lm_weight=0.7,
                           length_bonus=0.4)
    fused = run(strategy, opts, dec, enc, ctc, lm)
    for i, nbest in enumerate(fused):
        for h in nbest:
            seq = torch.tensor([[BOS_ID, *h.tokens, EOS_ID]])
            lm_logp = lm(seq[:, :-1]).log_softmax(-1)[0].gather(1, seq[0, 1:, None]).sum().item()
            e, c = item(enc, ctc, i)
            plain = replace(opts, lm_weight=0.0, length_bonus=0.0, beam_size=1, nbest=1)
            rest = forced_score(dec, e, c, h.tokens, plain)
            expected = rest + 0.7 * lm_logp + 0.4 * len(h.tokens)
            assert h.logprob == pytest.approx(expected, abs=1e-3)


def forced_score(dec, enc, ctc, tokens, opts) -> float:
    """(1 - lambda) * log p_att(tokens, EOS) + lambda * log p_ctc(tokens) by teacher forcing and the CTC loss."""
    seq = torch.tensor([[BOS_ID, *tokens, EOS_ID]])
    logits, _ = dec(seq[:, :-1], dec.init_state(enc))
    att = logits.log_softmax(-1)[0].gather(1, seq[0, 1:, None]).sum().item()
    lam = opts.ctc_weight
    if not lam:
        return att
    nll = torch.nn.functional.ctc_loss(ctc.transpose(0, 1), torch.tensor(tokens, dtype=torch.long), enc.lengths,
                                       torch.tensor([len(tokens)]), reduction="sum").item()
    return (1 - lam) * att - lam * nll


@pytest.mark.parametrize("strategy,beam,lam", STRATEGIES[1:3])
def test_fused_search_batched_equals_one_by_one(strategy, beam, lam):
    dec, (enc, ctc), lm = random_decoder(4), random_inputs(4, b=5), random_lm(4)
    opts = DecodingOptions(beam_size=beam, nbest=2, max_length=10, ctc_weight=lam, lm_weight=0.5, length_bonus=0.3)
    batched = run(strategy, opts, dec, enc, ctc, lm)
    for i in range(5):
        alone = run(strategy, opts, dec, *item(enc, ctc, i), lm)[0]
        assert [h.tokens for h in batched[i]] == [h.tokens for h in alone]
        assert [h.score for h in batched[i]] == pytest.approx([h.score for h in alone], abs=1e-4)


def test_fused_beam_one_equals_fused_greedy():
    dec, (enc, ctc), lm = random_decoder(5), random_inputs(5), random_lm(5)
    opts = DecodingOptions(beam_size=1, max_length=10, lm_weight=0.8, length_bonus=0.2)
    greedy, beam = run("greedy", opts, dec, enc, ctc, lm), run("beam", opts, dec, enc, ctc, lm)
    assert [n[0].tokens for n in greedy] == [n[0].tokens for n in beam]
    assert [n[0].score for n in greedy] == pytest.approx([n[0].score for n in beam], abs=1e-9)


def test_length_bonus_lengthens_and_skips_eos():
    dec, (enc, ctc) = random_decoder(6), random_inputs(6)
    opts = DecodingOptions(beam_size=4, max_length=12)
    short = [len(n[0].tokens) for n in run("beam", opts, dec, enc, ctc)]
    long = [len(n[0].tokens) for n in run("beam", replace(opts, length_bonus=5.0), dec, enc, ctc)]
    assert long == [12] * len(short) and min(short) < 12
    scorers = token_scorers(None, DecodingOptions(length_bonus=0.5), VOCAB, rows=2, device="cpu")
    extra = sum(s.scores(torch.tensor([BOS_ID, 5])) for s in scorers)
    assert extra[:, EOS_ID].tolist() == [0.0, 0.0] and (extra[:, 4:] == 0.5).all()
    assert token_scorers(random_lm(0), DecodingOptions(), VOCAB, rows=2, device="cpu") == []


def tiny_speech_model():
    from toolkit.model import ModelConfig, build_model

    return build_model(ModelConfig(vocab_size=VOCAB, d_model=16, encoder={"name": "conformer", "num_layers": 1,
                                                                           "num_heads": 2, "ffn_dim": 32},
                                   decoder=DecoderConfig(num_layers=1, num_heads=2, ffn_dim=32), ctc=True)).eval()


def test_search_refuses_an_lm_of_another_vocabulary():
    model = tiny_speech_model()
    enc = model.encode(torch.randn(1, 8000), torch.tensor([8000]))
    with pytest.raises(ValueError, match="the language model has 13 tokens and the model 12"):
        search(model, enc, DecodingOptions(lm_weight=0.5), lm=random_lm(0, vocab=13))
    # an LM of the model's vocabulary is fused into the search `search` dispatches to: a confident one steers it
    script = [9, 5, 9]
    opts = DecodingOptions(beam_size=2, max_length=12, ctc_weight=0.3)
    assert [h.tokens for h in search(model, enc, opts)[0]] != [script]
    steered = search(model, enc, replace(opts, lm_weight=3.0), lm=ScriptLM(script))
    assert len(steered) == 1 and steered[0][0].tokens == script


@pytest.mark.parametrize("decoding,error", [({"lm_weight": -1}, "a number >= 0"),
                                            ({"length_bonus": "1"}, "a finite number"),
                                            ({"oov_penalty": -2}, "a number >= 0")])
def test_bundle_fusion_defaults_are_type_checked(tmp_path, decoding, error):
    from toolkit.bundle import save_model

    save_model(tmp_path / "m", tiny_speech_model(), train_tokenizer("char", ["abcdefgh"]),
               info={"task": "asr", "decoding": decoding})
    with pytest.raises(BundleError, match=f"info.decoding.{next(iter(decoding))}: must be {error}"):
        load_model(tmp_path / "m")


def test_saved_lm_weight_is_the_default_and_a_missing_one_is_an_error():
    saved = {"ctc_weight": 0.3, "max_length_ratio": 1.0, "lm_weight": 0.6, "length_bonus": 1.5}
    opts = resolve_decoding(saved, beam_size=4, has_lm=True)
    assert (opts.beam_size, opts.ctc_weight, opts.lm_weight, opts.length_bonus) == (4, 0.3, 0.6, 1.5)
    assert resolve_decoding(saved, has_lm=True, lm_weight=0.2, length_bonus=0.0).lm_weight == 0.2
    opts = resolve_decoding(saved)  # no LM given: the saved fusion settings are not used
    assert (opts.beam_size, opts.lm_weight, opts.length_bonus) == (1, 0.0, 0.0)
    assert resolve_decoding(saved, has_ctc=False).ctc_weight == 0.0  # nor the saved CTC weight without a CTC head
    assert resolve_decoding(saved, ctc_weight=0.0, length_bonus=0.5) == DecodingOptions(
        max_length=10_000, max_length_ratio=1.0, length_bonus=0.5)
    with pytest.raises(ToolkitError, match=r"^exp/m: the bundle records no decoding.lm_weight"):
        resolve_decoding({"ctc_weight": 0.3}, has_lm=True, where="exp/m")


@pytest.mark.parametrize("given,error", [
    ({"ctc_weight": 0.5, "has_ctc": False}, "this model has no CTC head: it decodes with its attention decoder only"),
    ({"ctc_only": True, "has_ctc": False}, "this model has no CTC head"),
    ({"ctc_only": True, "has_lm": True}, "CTC-only decoding has no search to fuse a language model into"),
    ({"ctc_only": True, "lm_weight": 0.5}, "CTC-only decoding has no search to fuse a language model into"),
    ({"has_lm": True, "has_decoder": False}, "this model has no attention decoder to fuse a language model with"),
    ({"lm_weight": 0.5}, r"lm_weight 0.5 needs a language model \(lm / --lm DIR\)$"),
    ({"oov_penalty": 2.0}, r"oov_penalty 2 needs a language model with a lexicon \(lm / --lm DIR\)$"),
    ({"has_lm": True, "oov_penalty": 2.0}, r"the language model has no lexicon \(lexicon.txt\) for OOV penalty 2"),
])
def test_resolve_decoding_refuses_what_cannot_work_in_one_line(given, error):
    with pytest.raises(ToolkitError, match=f"^m: {error}") as e:
        resolve_decoding({"lm_weight": 0.6}, where="m", **given)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ LM text


def test_a_line_holding_an_evaluation_sentence_is_found():
    from toolkit.synth.speech import _WordSequences

    held_out = _WordSequences(["see what i mean", "why is this so", ""])
    assert held_out.found_in("do you see what i mean") and held_out.found_in("why is this so")
    assert held_out.found_in("they asked why is this so hard")
    assert not held_out.found_in("oversee what i mean") and not held_out.found_in("see what i meant")
    assert not held_out.found_in("why is this") and not held_out.found_in("")


@pytest.mark.skipif(not (FORTUNE_DIR.is_dir() and WORDNET_DIR.is_dir()),
                    reason="text packages missing (apt-get install fortunes-min fortunes wordnet-base)")
def test_lm_text_holds_no_evaluation_sentence():
    from toolkit.synth.speech import EVAL_SPLITS, SpeechSynthConfig, lm_sentences, plan_corpus
    from toolkit.synth.text_corpus import load_sentences
    from toolkit.metrics.asr import normalize_transcript_for_scoring as norm

    config = SpeechSynthConfig(train=40, valid=30, test_seen=30, test_heldout=30, test_unseen=30, seed=5)
    plan = plan_corpus(config)
    text = lm_sentences(config, plan)
    held_out = {norm(u.text) for split in EVAL_SPLITS for u in plan[split]}
    assert len(held_out) == 120 and not held_out & {norm(t) for t in text}
    lines = "".join(f" {norm(t)} \n" for t in text)
    assert not any(f" {h} " in lines for h in held_out)  # nor inside a longer line
    assert {u.text for u in plan["train"]} <= set(text)  # training sentences may stay
    assert len(load_sentences()) - 120 - 20 < len(text) <= len(load_sentences()) - 120
