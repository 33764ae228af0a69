"""Speech recognition as a task: the typed experiment config, training through the shared `Trainer`,
evaluation with WER/CER.

    exp = load_config(AsrExperiment, "recipes/synth_speech/conf/quick.yaml", overrides)
    result = train_asr(exp, Path("exp/speech_quick"))
    report, rows = evaluate_asr("exp/speech_quick/final", "data/speech/test_heldout.jsonl")
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from toolkit.bundle import load_model, save_model
from toolkit.data.speech import SpeechRecord, check_speech_records, describe_skipped, read_speech
from toolkit.data.speech_dataset import SpeechDataset, make_speech_loader
from toolkit.decode import DecodingOptions, search
from toolkit.decode.ctc import ctc_greedy
from toolkit.errors import ToolkitError
from toolkit.metrics.asr import normalize_transcript_for_scoring, wer_report
from toolkit.model import EncoderDecoder, ModelConfig, build_model
from toolkit.model.audio_frontend import FeatureStats
from toolkit.tasks.common import TokenizerConfig, copy_weights, prepare_tokenizer
from toolkit.train import TrainConfig, Trainer, TrainResult

log = logging.getLogger("toolkit.asr")
SAMPLE_RATE = 16000


@dataclass
class SpeechDataConfig:
    """Where the utterances are (JSONL manifest, Kaldi data dir or LibriSpeech folder) and how they are batched.

    Transcripts are normalised once, for training and scoring alike (`normalize_transcript_for_scoring`:
    lowercase, punctuation removed except in-word apostrophes).
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


@dataclass
class AsrExperiment:
    """Everything a speech-recognition run needs; a recipe's YAML is exactly this."""

    data: SpeechDataConfig
    train: TrainConfig
    model: ModelConfig = field(default_factory=lambda: ModelConfig(encoder={"name": "conformer"}, ctc=True))
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(kind="char"))
    decoding: DecodingOptions = field(default_factory=lambda: DecodingOptions(max_length=200, max_length_ratio=1.0))
    ctc_weight: float = 0.3  # loss: ctc_weight * CTC + (1 - ctc_weight) * attention
    label_smoothing: float = 0.1
    init_from: str | None = None
    task: Literal["asr"] = "asr"


def _records(path: str, subsets: list[str] | None, max_duration: float, charset: set[str] | None,
             what: str) -> list[SpeechRecord]:
    records = read_speech(path, subsets=subsets) if subsets else read_speech(path)
    records = [replace(r, text=normalize_transcript_for_scoring(r.text)) for r in records]
    good, report = check_speech_records(records, max_duration, charset)
    if len(good) < len(records):
        log.warning("%s: %s", what, describe_skipped(report))
    if not good:
        raise ToolkitError(f"{path}: none of the {len(records)} utterances of the {what} set can be used")
    return good


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
    max_batch_seconds: float = 160.0, progress: bool = False,
) -> tuple[dict[str, str], dict[str, str]]:
    """Decode `records`: ({id: text with the configured search}, {id: text with CTC greedy}) — the second is
    empty for a model without a CTC head."""
    model.eval()
    dataset = SpeechDataset(records, sample_rate=SAMPLE_RATE)
    durations = [r.duration or 0.0 for r in records]
    loader = make_speech_loader(dataset, durations, max_batch_seconds, train=False)
    texts, ctc_texts = {}, {}
    for batch in tqdm(loader, desc="decoding", unit="batch", disable=not progress):
        if batch is None:
            continue
        enc_out = model.encode(batch["audio"], batch["audio_lengths"])
        ids = [records[i].id for i in batch["indices"].tolist()]
        if model.decoder is not None:
            for utt, nbest in zip(ids, search(model, enc_out, options)):
                texts[utt] = tokenizer.decode(nbest[0].tokens)
        if model.ctc_head is not None:
            for utt, tokens in zip(ids, ctc_greedy(model.ctc_head(enc_out.memory), enc_out.lengths)):
                ctc_texts[utt] = tokenizer.decode(tokens)
    return (texts or ctc_texts), ctc_texts


def train_asr(exp: AsrExperiment, out_dir: Path, resume: bool = False) -> TrainResult:
    """Train a speech recogniser on `exp.data`; bundles land in `out_dir/best` and `out_dir/final`."""
    out_dir = Path(out_dir)
    d = exp.data
    train_records = _records(d.train, d.train_subsets, d.max_duration, None, "training")
    init = load_model(exp.init_from) if exp.init_from else None
    if init is not None:
        tokenizer = init.tokenizer
        tokenizer.save(out_dir / "tokenizer")
    else:
        tokenizer = prepare_tokenizer(exp.tokenizer, [r.text for r in train_records], out_dir / "tokenizer", resume)
    charset = set("".join(tokenizer.vocab()[4:])) | {" "} if tokenizer.kind == "char" else None
    valid_records = _records(d.valid, d.valid_subsets, d.max_duration, charset, "validation")
    valid_records = valid_records[: d.valid_max_utterances]

    model = build_model(replace(exp.model, vocab_size=tokenizer.vocab_size))
    dataset = SpeechDataset(train_records, tokenizer, sample_rate=SAMPLE_RATE)
    if init is not None:
        copy_weights(model, init.model, exp.init_from)
    else:
        fit_feature_normalization(model, dataset, d.cmvn_utterances)
    loader = make_speech_loader(dataset, [r.duration or 0.0 for r in train_records], d.max_batch_seconds,
                                train=True, num_workers=d.num_workers, seed=exp.train.seed)
    info = {"task": "asr", "sample_rate": SAMPLE_RATE,
            "decoding": {"ctc_weight": exp.decoding.ctc_weight, "max_length_ratio": exp.decoding.max_length_ratio}}

    def loss_fn(model: EncoderDecoder, batch: dict) -> dict:
        return model.loss(batch["audio"], batch["audio_lengths"], batch["targets"], batch["target_lengths"],
                          ctc_weight=exp.ctc_weight, label_smoothing=exp.label_smoothing)

    def validate_fn(model: EncoderDecoder) -> dict[str, float]:
        greedy = replace(exp.decoding, beam_size=1, nbest=1, ctc_weight=0.0)
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
                      batch_size_fn=lambda b: b["audio"].size(0))
    return trainer.fit(resume=resume)


def evaluate_asr(
    model_dir: str | Path, data: str, subsets: list[str] | None = None, options: DecodingOptions | None = None,
    max_utterances: int | None = None, predictions_path: str | Path | None = None, group_by: str = "voice",
) -> tuple[dict, list[dict]]:
    """WER/CER of the bundle at `model_dir` on `data`, with a per-group breakdown (by the manifest field
    `group_by`, e.g. voice or accent, when present) and per-utterance rows, also written as JSON."""
    bundle = load_model(model_dir)
    if bundle.info.get("task") != "asr":
        raise ToolkitError(f"{model_dir}: a {bundle.info.get('task')!r} model, not a speech recognition model")
    records = _records(data, subsets, float("inf"), None, "evaluation")[:max_utterances]
    saved = bundle.info.get("decoding", {})
    options = options or DecodingOptions(max_length=400, ctc_weight=saved.get("ctc_weight", 0.0),
                                         max_length_ratio=saved.get("max_length_ratio", 1.0))
    texts, _ = transcribe_records(bundle.model, bundle.tokenizer, records, options, progress=True)
    refs = {r.id: r.text for r in records}
    groups = {r.id: str(r.extra.get(group_by) or r.speaker or "all") for r in records}
    report = wer_report(refs, texts, groups=groups)
    rows = [{"id": r.id, "audio": r.audio, "reference": r.text, "hypothesis": texts.get(r.id, ""),
             group_by: groups[r.id]} for r in records]
    if predictions_path:
        Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
        Path(predictions_path).write_text(json.dumps({"report": report, "utterances": rows}, indent=1) + "\n")
    return report, rows
