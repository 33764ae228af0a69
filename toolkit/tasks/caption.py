"""Image captioning as a task: the typed experiment config, training through the shared `Trainer`, evaluation.

    exp = load_config(CaptionExperiment, "recipes/shapes_caption/conf/quick.yaml", overrides)
    result = train_captioner(exp, Path("exp/shapes_quick"))
    scores = evaluate_captioner("exp/shapes_quick/final", "data/shapes/captions_test_iid.json")
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from toolkit.bundle import load_model, save_model
from toolkit.data import (
    CaptionDataset,
    CaptionRecord,
    check_images,
    describe_bad_images,
    make_caption_loader,
    normalize_caption,
    read_captions,
)
from toolkit.decode import DecodingOptions, decode
from toolkit.errors import ToolkitError
from toolkit.metrics import caption_scores
from toolkit.model import EncoderDecoder, ModelConfig, build_model
from toolkit.tasks.common import TokenizerConfig, copy_weights, prepare_tokenizer
from toolkit.text import load_tokenizer
from toolkit.train import TrainConfig, Trainer, TrainResult
from toolkit.train.distributed import World, join_process_group
from toolkit.train.rng import seed_everything

log = logging.getLogger("toolkit.caption")


@dataclass
class CaptionDataConfig:
    """Where the captions are (COCO / Karpathy JSON or JSONL manifests) and how images are batched."""

    train: str
    valid: str
    image_root: str | None = None
    train_splits: list[str] | None = None  # Karpathy files: e.g. [train, restval]
    valid_splits: list[str] | None = None  # e.g. [val]
    image_size: int = 128
    batch_size: int = 32
    num_workers: int = 2
    max_tokens: int = 40  # longer training captions are skipped (and counted)
    valid_max_images: int | None = 500  # validate on the first N images (None: all)


@dataclass
class CaptionExperiment:
    """Everything a captioning run needs; a recipe's YAML is exactly this."""

    data: CaptionDataConfig
    train: TrainConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    decoding: DecodingOptions = field(default_factory=lambda: DecodingOptions(max_length=40))
    label_smoothing: float = 0.1
    init_from: str | None = None  # a model bundle whose weights start this run (e.g. frozen-backbone stage)
    task: Literal["caption"] = "caption"


def _records(path: str, image_root: str | None, splits: list[str] | None, what: str) -> list[CaptionRecord]:
    """The readable images of a caption file (`check_images` logs the others, naming `path`); an error naming the
    first unreadable ones when none is readable."""
    records = read_captions(path, image_root, splits)
    if not records:
        raise ToolkitError(f"{path}: holds no images")
    good, bad = check_images(records, source=path)
    if not good:
        raise ToolkitError(f"{path}: no readable image in the {what} set ({describe_bad_images(bad, max_report=2)})")
    return good


@torch.no_grad()
def predict_captions(
    model: EncoderDecoder, tokenizer, records: list[CaptionRecord], image_size: int, options: DecodingOptions,
    batch_size: int = 32, num_workers: int = 0, load_errors: dict[str, str] | None = None,
) -> dict[str, str]:
    """Caption every readable image of `records`: {image_id: caption}. Images that fail to load are left out (and,
    when `load_errors` is given and `num_workers` is 0, it receives their path -> reason)."""
    model.eval()
    device = next(model.parameters()).device
    dataset = CaptionDataset(records, image_size=image_size, train=False)
    if load_errors is not None:
        dataset.load_errors = load_errors
    predictions = {}
    for batch in make_caption_loader(dataset, batch_size, train=False, num_workers=num_workers):
        if batch is None:
            continue
        for i, hyp in zip(batch["indices"].tolist(), decode(model, batch["images"].to(device), None, options)):
            predictions[records[i].image_id] = tokenizer.decode(hyp.tokens)
    return predictions


def train_captioner(exp: CaptionExperiment, out_dir: Path, resume: bool = False) -> TrainResult:
    """Train a captioner on `exp.data`; bundles land in `out_dir/best` and `out_dir/final`.

    Started by torchrun, every process trains on its share of the images (`batch_size` per process) on its own
    device, data-parallel (`toolkit.train.distributed`); alone, one process on `cuda:0` or the CPU."""
    with join_process_group() as world:
        return _train_captioner(exp, Path(out_dir), resume, world)


def _train_captioner(exp: CaptionExperiment, out_dir: Path, resume: bool, world: World) -> TrainResult:
    """`train_captioner` on one rank of `world` (every rank runs it)."""
    d = exp.data
    train_records = _records(d.train, d.image_root, d.train_splits, "training")
    valid_records = _records(d.valid, d.image_root, d.valid_splits, "validation")[: d.valid_max_images]
    init = load_model(exp.init_from) if exp.init_from else None
    if init is not None:  # continue with the starting model's vocabulary
        tokenizer = init.tokenizer
        if world.is_main:
            tokenizer.save(out_dir / "tokenizer")
    else:  # rank 0 trains and saves it, the others read it
        texts = [normalize_caption(c) for r in train_records for c in r.captions]
        tokenizer = world.main_first(lambda: prepare_tokenizer(exp.tokenizer, texts, out_dir / "tokenizer", resume),
                                     lambda: load_tokenizer(out_dir / "tokenizer"))

    seed_everything(exp.train.seed)  # the same initial weights on every run (and every rank)
    model = build_model(replace(exp.model, vocab_size=tokenizer.vocab_size))
    if init is not None:
        copy_weights(model, init.model, exp.init_from)
    dataset = CaptionDataset(train_records, tokenizer, d.image_size, train=True, max_tokens=d.max_tokens)
    if dataset.skipped_long:
        log.warning("%d training captions longer than %d tokens are skipped", dataset.skipped_long, d.max_tokens)
    loader = make_caption_loader(dataset, d.batch_size, train=True, num_workers=d.num_workers, seed=exp.train.seed,
                                 num_replicas=world.size, rank=world.rank)
    info = {"task": "caption", "image_size": d.image_size, "decoding": {"max_length": exp.decoding.max_length}}

    def loss_fn(model: EncoderDecoder, batch: dict) -> dict:
        return model.loss(batch["images"], None, batch["targets"], batch["target_lengths"],
                          label_smoothing=exp.label_smoothing)

    def validate_fn(model: EncoderDecoder) -> dict[str, float]:
        greedy = replace(exp.decoding, beam_size=1, nbest=1)
        predictions = predict_captions(model, tokenizer, valid_records, d.image_size, greedy, d.batch_size)
        references = {r.image_id: r.captions for r in valid_records}
        return caption_scores(predictions, references, meteor=False)

    def save_fn(model: EncoderDecoder, path: Path, extra: dict) -> None:
        save_model(path, model, tokenizer, info={**info, **extra})

    trainer = Trainer(model, exp.train, out_dir, loader, loss_fn, validate_fn, save_fn,
                      batch_size_fn=lambda b: b["images"].size(0), device=world.device)
    return trainer.fit(resume=resume)


def evaluate_captioner(
    model_dir: str | Path, data: str, image_root: str | None = None, splits: list[str] | None = None,
    options: DecodingOptions | None = None, batch_size: int = 32, max_images: int | None = None,
    predictions_path: str | Path | None = None, meteor: bool | None = None, device: str | torch.device = "cpu",
) -> tuple[dict[str, float], list[dict]]:
    """Caption every image of `data` with the bundle at `model_dir` (run on `device`); returns the scores and
    per-image rows ({image_id, image, prediction, references, exact}) also written to `predictions_path` as JSON."""
    bundle = load_model(model_dir, device)
    if bundle.info.get("task", "caption") != "caption":
        raise ToolkitError(f"{model_dir}: a {bundle.info['task']!r} model, not a captioning model")
    records = _records(data, image_root, splits, "evaluation")[:max_images]
    options = options or DecodingOptions(max_length=bundle.info.get("decoding", {}).get("max_length", 40))
    image_size = int(bundle.info.get("image_size", 128))
    load_errors: dict[str, str] = {}
    predictions = predict_captions(bundle.model, bundle.tokenizer, records, image_size, options, batch_size,
                                   load_errors=load_errors)
    # Images that fail only when decoded (pixel data cut short) are skipped like unreadable ones, and named.
    failed = [r for r in records if r.image_id not in predictions]
    if failed and len(failed) == len(records):
        first = failed[0].image
        raise ToolkitError(f"{data}: none of the {len(records)} images can be decoded (first: {first}: "
                           f"{load_errors.get(first, 'not decoded')})")
    if failed:
        more = f", and {len(failed) - 3} more" if len(failed) > 3 else ""
        log.warning("%s: %d of %d images could not be decoded and are not scored: %s%s", data, len(failed),
                    len(records), ", ".join(r.image for r in failed[:3]), more)
    references = {r.image_id: r.captions for r in records if r.image_id in predictions}
    scores = caption_scores(predictions, references, meteor=meteor)
    rows = [
        {"image_id": r.image_id, "image": r.image, "prediction": predictions[r.image_id],
         "references": r.captions,
         "exact": normalize_caption(predictions[r.image_id]) in {normalize_caption(c) for c in r.captions}}
        for r in records if r.image_id in predictions
    ]
    if predictions_path:
        Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
        Path(predictions_path).write_text(json.dumps({"scores": scores, "predictions": rows}, indent=1) + "\n")
    return scores, rows
