"""Speech recognition as a task: the typed experiment config, training through the shared `Trainer`,
evaluation with WER/CER.

    exp = load_config(AsrExperiment, "recipes/synth_speech/conf/quick.yaml", overrides)
    result = train_asr(exp, Path("exp/speech_quick"))
    report, rows = evaluate_asr("exp/speech_quick/final", "data/speech/test_heldout.jsonl")
    report, rows = evaluate_asr("exp/speech_quick/final", "data/speech/test_heldout.jsonl", beam_size=4,
                                lm="exp/lm/final")     # + shallow fusion with an LM (saved lm_weight, ...)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from tqdm import tqdm

from toolkit.augment import SpeechAugmentConfig
from toolkit.bundle import load_model, save_model
from toolkit.data.speech import SpeechRecord, check_speech_records, describe_skipped, read_speech
from toolkit.data.speech_dataset import SpeechDataset, make_speech_loader
from toolkit.decode import DecodingOptions, resolve_decoding, search
from toolkit.decode.ctc import ctc_greedy
from toolkit.errors import ToolkitError
from toolkit.lm import LanguageModel, load_lm
from toolkit.metrics.asr import wer_report
from toolkit.model import EncoderDecoder, ModelConfig, build_model
from toolkit.model.audio_frontend import FeatureStats
from toolkit.tasks.common import TokenizerConfig, copy_weights, prepare_tokenizer
from toolkit.text import load_tokenizer, normalize_text
from toolkit.train import TrainConfig, Trainer, TrainResult
from toolkit.train.distributed import World, join_process_group
from toolkit.train.rng import seed_everything

log = logging.getLogger("toolkit.asr")


@dataclass
class SpeechDataConfig:
    """Where the utterances are (JSONL manifest, Kaldi data dir or LibriSpeech folder) and how they are batched.

    Transcripts are normalised once, for training and scoring alike (`toolkit.text.normalize_text`: lowercase,
    punctuation removed except in-word apostrophes).

    `augment` (off by default): on-the-fly augmentation of the training audio (`toolkit.augment`: voices, rooms,
    noise with babble of the other training utterances, channels), a new variant of every utterance each epoch,
    drawn from `(train.seed, epoch, item)`; e.g. `augment: {voice: {prob: 0.3}, channel: {telephone_prob: 0.2}}`
    (unset keys take their defaults). Validation audio is never augmented; the feature statistics are taken on the
    epoch-0 variants. Its cost per second of audio: tests/benchmarks/augment_cost.py (give `num_workers` to match).
    """

    train: str
    valid: str
    train_subsets: list[str] | None = None  # LibriSpeech: e.g. [train-clean-100]
    valid_subsets: list[str] | None = None
    max_duration: float = 20.0  # longer utterances are skipped and counted
    max_batch_seconds: float = 160.0  # audio seconds per batch, padding included
    num_workers: int = 1
    valid_max_utterances: int | None = 300
    cmvn_utterances: int = 500  # utterances used for the global feature mean / variance
    augment: SpeechAugmentConfig | None = None


@dataclass
class AsrExperiment:
    """Everything a speech-recognition run needs; a recipe's YAML is exactly this.

    ctc_loss_weight is the CTC share of the training loss (`ctc_loss_weight * CTC + (1 - ctc_loss_weight) *
    attention`); `decoding.ctc_weight` is the search's CTC prefix weight, saved in the bundle as
    `info.decoding.ctc_weight`. A config with the old top-level name `ctc_weight` is refused with the new one.
    """

    RENAMED_KEYS: ClassVar[dict[str, str]] = {"ctc_weight": "ctc_loss_weight"}

    data: SpeechDataConfig
    train: TrainConfig
    model: ModelConfig = field(default_factory=lambda: ModelConfig(encoder={"name": "conformer"}, ctc=True))
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(kind="char"))
    decoding: DecodingOptions = field(default_factory=lambda: DecodingOptions(max_length=200, max_length_ratio=1.0))
    ctc_loss_weight: float = 0.3
    label_smoothing: float = 0.1
    init_from: str | None = None
    task: Literal["asr"] = "asr"


def _read(path: str, subsets: list[str] | None) -> list[SpeechRecord]:
    """The corpus at `path` with its transcripts normalised; a corpus without utterances is an error."""
    records = read_speech(path, subsets=subsets) if subsets else read_speech(path)
    if not records:
        raise ToolkitError(f"{path}: holds no utterances")
    return [replace(r, text=normalize_text(r.text)) for r in records]


def _usable(records: list[SpeechRecord], path: str, what: str, **limits) -> list[SpeechRecord]:
    """`check_speech_records(records, **limits)`, which logs what it skips (naming `path`) when some are kept; a
    one-line error saying why when none is."""
    good, report = check_speech_records(records, source=path, **limits)
    if not good:
        why = describe_skipped(replace(report, source=None))
        raise ToolkitError(f"{path}: no usable utterance in the {what} set ({why})")
    return good


def _min_duration(model: EncoderDecoder) -> float:
    """Seconds of audio the encoder needs for one output frame (shorter utterances have nothing to align)."""
    return getattr(model.encoder, "min_input_samples", 0) / model.encoder.sample_rate


@torch.no_grad()
def fit_feature_normalization(model: EncoderDecoder, dataset: SpeechDataset, count: int) -> None:
    """Global mean / variance of the log-mel features over the first `count` utterances, stored in the model."""
    frontend = model.encoder.frontend
    stats = FeatureStats()
    for i in tqdm(range(min(count, len(dataset))), desc="feature statistics", unit="utt", leave=False):
        item = dataset[i]
        if item is None:
            continue
        audio = item["audio"][None]
        feats, lengths = frontend(audio, torch.tensor([audio.size(1)]), normalize=False)
        stats.update(feats, lengths)
    mean, std = stats.mean_std()
    frontend.set_normalization(mean, std)


@torch.no_grad()
def transcribe_records(
    model: EncoderDecoder, tokenizer, records: list[SpeechRecord], options: DecodingOptions,
    max_batch_seconds: float = 160.0, progress: bool = False, load_errors: dict[str, str] | None = None,
    lm: LanguageModel | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Decode `records`: ({id: text with the configured search}, {id: text with CTC greedy}) — the second is
    empty for a model without a CTC head. Records whose audio fails to load are left out of both (and, when
    `load_errors` is given, it receives their audio path -> reason); a record too short for one encoder frame
    gets an empty text. `lm` is fused into the search with `options.lm_weight`."""
    model.eval()
    device = next(model.parameters()).device
    dataset = SpeechDataset(records, sample_rate=model.encoder.sample_rate)
    if load_errors is not None:
        dataset.load_errors = load_errors
    durations = [r.duration or 0.0 for r in records]
    loader = make_speech_loader(dataset, durations, max_batch_seconds, train=False)
    texts, ctc_texts = {}, {}
    for batch in tqdm(loader, desc="decoding", unit="batch", disable=not progress):
        if batch is None:
            continue
        enc_out = model.encode(batch["audio"].to(device), batch["audio_lengths"].to(device))
        ids = [records[i].id for i in batch["indices"].tolist()]
        no_frames = (enc_out.lengths == 0).tolist()  # shorter than the encoder's shortest input: empty transcript
        if model.decoder is not None:
            for utt, nbest, empty in zip(ids, search(model, enc_out, options, lm), no_frames):
                texts[utt] = "" if empty else tokenizer.decode(nbest[0].tokens)
        if model.ctc_head is not None:
            for utt, tokens, empty in zip(ids, ctc_greedy(model.ctc_head(enc_out.memory), enc_out.lengths),
                                          no_frames):
                ctc_texts[utt] = "" if empty else tokenizer.decode(tokens)
    return (texts or ctc_texts), ctc_texts


def train_asr(exp: AsrExperiment, out_dir: Path, resume: bool = False) -> TrainResult:
    """Train a speech recogniser on `exp.data`; bundles land in `out_dir/best` and `out_dir/final`.

    Training utterances with missing or unreadable audio, longer than `data.max_duration`, too short for the
    encoder to give one frame, or (char tokenizer) with characters outside the vocabulary are skipped and reported
    (count and the first ids, naming the corpus); audio that fails only when decoded (NaN samples, a stream that
    stops) is skipped and reported, naming the file, when first met. Validation skips the same, except that
    too-short utterances are scored with their empty transcript, as `evaluate_asr` does.

    Started by torchrun, every process trains on its share of the batches (`max_batch_seconds` per process) on
    its own device, data-parallel (`toolkit.train.distributed`); alone, one process on `cuda:0` or the CPU.
    """
    with join_process_group() as world:
        return _train_asr(exp, Path(out_dir), resume, world)


def _train_asr(exp: AsrExperiment, out_dir: Path, resume: bool, world: World) -> TrainResult:
    """`train_asr` on one rank of `world` (every rank runs it)."""
    d = exp.data
    train_records = _usable(_read(d.train, d.train_subsets), d.train, "training", max_duration=d.max_duration)
    init = load_model(exp.init_from) if exp.init_from else None
    if init is not None:
        tokenizer = init.tokenizer
        if world.is_main:
            tokenizer.save(out_dir / "tokenizer")
    else:  # rank 0 trains and saves it, the others read it
        tokenizer = world.main_first(
            lambda: prepare_tokenizer(exp.tokenizer, [r.text for r in train_records], out_dir / "tokenizer", resume),
            lambda: load_tokenizer(out_dir / "tokenizer"))
    charset = set("".join(tokenizer.vocab()[4:])) | {" "} if tokenizer.kind == "char" else None
    seed_everything(exp.train.seed)  # the same initial weights on every run (and every rank)
    model = build_model(replace(exp.model, vocab_size=tokenizer.vocab_size))
    train_records = _usable(train_records, d.train, "training", charset=charset, min_duration=_min_duration(model))
    valid_records = _usable(_read(d.valid, d.valid_subsets), d.valid, "validation", max_duration=d.max_duration,
                            charset=charset)[: d.valid_max_utterances]

    dataset = SpeechDataset(train_records, tokenizer, sample_rate=model.encoder.sample_rate, augment=d.augment,
                            augment_seed=exp.train.seed)
    if init is not None:
        copy_weights(model, init.model, exp.init_from)
    elif getattr(model.encoder.frontend, "normalization", "global") == "global":  # per-utterance needs no statistics
        fit_feature_normalization(model, dataset, d.cmvn_utterances)
    loader = make_speech_loader(dataset, [r.duration or 0.0 for r in train_records], d.max_batch_seconds,
                                train=True, num_workers=d.num_workers, seed=exp.train.seed,
                                num_replicas=world.size, rank=world.rank)
    decoding = {"ctc_weight": exp.decoding.ctc_weight, "max_length_ratio": exp.decoding.max_length_ratio}
    if exp.decoding.lm_weight:  # the fusion setting for when an LM is given (evaluate / transcribe --lm)
        decoding.update(lm_weight=exp.decoding.lm_weight, length_bonus=exp.decoding.length_bonus,
                        oov_penalty=exp.decoding.oov_penalty)
    info = {"task": "asr", "sample_rate": model.encoder.sample_rate, "decoding": decoding}

    def loss_fn(model: EncoderDecoder, batch: dict) -> dict:
        return model.loss(batch["audio"], batch["audio_lengths"], batch["targets"], batch["target_lengths"],
                          ctc_weight=exp.ctc_loss_weight, label_smoothing=exp.label_smoothing)

    def validate_fn(model: EncoderDecoder) -> dict[str, float]:
        greedy = replace(exp.decoding, beam_size=1, nbest=1, ctc_weight=0.0, lm_weight=0.0, length_bonus=0.0,
                         oov_penalty=0.0)
        texts, ctc_texts = transcribe_records(model, tokenizer, valid_records, greedy, d.max_batch_seconds)
        refs = {r.id: r.text for r in valid_records}
        report = wer_report(refs, texts)
        scores = {"wer": report["wer"], "cer": report["cer"]}
        if ctc_texts:
            scores["ctc_wer"] = wer_report(refs, ctc_texts)["wer"]
        return scores

    def save_fn(model: EncoderDecoder, path: Path, extra: dict) -> None:
        save_model(path, model, tokenizer, info={**info, **extra})

    trainer = Trainer(model, exp.train, out_dir, loader, loss_fn, validate_fn, save_fn,
                      batch_size_fn=lambda b: b["audio"].size(0), device=world.device)
    return trainer.fit(resume=resume)


def evaluate_asr(
    model_dir: str | Path, data: str, subsets: list[str] | None = None, max_utterances: int | None = None,
    predictions_path: str | Path | None = None, group_by: str = "voice", lm: str | Path | None = None,
    device: str | torch.device = "cpu", *, beam_size: int | None = None, ctc_weight: float | None = None,
    lm_weight: float | None = None, length_bonus: float | None = None, oov_penalty: float | None = None,
) -> tuple[dict, list[dict]]:
    """WER/CER of the bundle at `model_dir` on `data`, with a per-group breakdown (by the manifest field
    `group_by`, e.g. voice or accent, when present) and per-utterance rows, also written as JSON.

    lm: a language-model bundle fused into the search (refused if trained with another tokenizer than the
    model's); beam_size ... oov_penalty: the search, each one not given taken from the bundle's saved decoding
    settings (`toolkit.decode.resolve_decoding`); `device`: where the model (and the LM) run."""
    bundle = load_model(model_dir, device)
    if bundle.info.get("task") != "asr":
        raise ToolkitError(f"{model_dir}: a {bundle.info.get('task')!r} model, not a speech recognition model")
    language_model = load_lm(lm, device, tokenizer=bundle.tokenizer).model if lm is not None else None
    options = resolve_decoding(
        bundle.info.get("decoding"), beam_size=beam_size, ctc_weight=ctc_weight, lm_weight=lm_weight,
        length_bonus=length_bonus, oov_penalty=oov_penalty, has_ctc=bundle.model.ctc_head is not None,
        has_decoder=bundle.model.decoder is not None, has_lm=language_model is not None,
        has_lexicon=getattr(language_model, "lexicon", None) is not None, where=model_dir)
    records = _usable(_read(data, subsets), data, "evaluation")[:max_utterances]
    load_errors: dict[str, str] = {}
    texts, _ = transcribe_records(bundle.model, bundle.tokenizer, records, options, progress=True,
                                  load_errors=load_errors, lm=language_model)
    # Audio that fails only when decoded (NaN samples, a stream that stops) is skipped like a missing file: the
    # scores cover the utterances that could be read, and the others are named, never scored as deletions.
    failed = [r for r in records if r.id not in texts]
    if failed:
        if len(failed) == len(records):
            first = failed[0]
            raise ToolkitError(f"{data}: none of the {len(records)} utterances can be decoded (first: {first.id}: "
                               f"{first.audio}: {load_errors.get(first.audio, 'not decoded')})")
        log.warning("%s: %d of %d utterances could not be decoded and are not scored: %s", data, len(failed),
                    len(records), ", ".join(f"{r.id} ({r.audio})" for r in failed[:3]) + (
                        f", and {len(failed) - 3} more" if len(failed) > 3 else ""))
        records = [r for r in records if r.id in texts]
    refs = {r.id: r.text for r in records}
    groups = {r.id: str(r.extra.get(group_by) or r.speaker or "all") for r in records}
    report = wer_report(refs, texts, groups=groups)
    rows = [{"id": r.id, "audio": r.audio, "reference": r.text, "hypothesis": texts.get(r.id, ""),
             group_by: groups[r.id]} for r in records]
    if predictions_path:
        Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
        Path(predictions_path).write_text(json.dumps({"report": report, "utterances": rows}, indent=1) + "\n")
    return report, rows
