"""Captioning quality and speed on the synthetic shapes corpus (the bars of recipes/shapes_caption).

    python tests/benchmarks/caption_quality.py                       # make corpus, train quick config, measure
    python tests/benchmarks/caption_quality.py --exp recipes/shapes_caption/exp/quick   # measure a trained run
    python tests/benchmarks/caption_quality.py --tiny   # smoke run: a tiny corpus and run in a temporary folder

Measures BLEU-1..4 / CIDEr-D / ROUGE-L / exact match on the i.i.d. and the held-out-combination test splits,
greedy and beam 4, then the speed of the trained model in this process, in interleaved rounds (train, beam 1,
beam 4, train, ...; the best round of each counts): training steps (forward + loss + backward + clip + optimizer
step, as `Trainer` steps them under the config's `train.amp`, on a copy of the model, one preloaded batch of
`data.batch_size` training images) and batched inference (encoder + search, images preloaded) for beam 1 and
beam 4, all in images/s. The run's own average from its log (data loading included, other jobs on the machine
included) is reported beside them as `train_log_images_per_s`. Prints a table, then key=value figures.
"""

from __future__ import annotations

import argparse
import copy
import csv
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from toolkit.bundle import ModelBundle, load_model
from toolkit.config import load_config
from toolkit.data import CaptionDataset, make_caption_loader, read_captions
from toolkit.synth.shapes import ShapesConfig, make_shapes_corpus
from toolkit.decode import DecodingOptions, decode
from toolkit.tasks.caption import CaptionExperiment, evaluate_captioner, train_captioner
from toolkit.train.optim import build_optimizer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shapes_caption"
TINY_CORPUS = ShapesConfig(train=64, val=8, test_iid=16, test_heldout=16, image_size=64)
TINY_OVERRIDES = ["train.max_steps=4", "train.valid_every=4", "train.log_every=2", "train.warmup_steps=1",
                  "data.image_size=64", "data.batch_size=8", "data.num_workers=0", "data.valid_max_images=8"]


def logged_training_throughput(exp: Path) -> float:
    """The mean `items_per_s` of the run's log (nan when it logged none)."""
    with open(exp / "train_log.csv") as f:
        rates = [float(r["items_per_s"]) for r in csv.DictReader(f) if r.get("items_per_s")]
    return sum(rates) / len(rates) if rates else float("nan")


def training_step(bundle: ModelBundle, cfg: CaptionExperiment, data: Path) -> tuple[Callable[[], object], int]:
    """One update of a copy of `bundle.model` on one preloaded training batch, as `Trainer` steps it; and the
    batch's image count."""
    model = copy.deepcopy(bundle.model).train()
    records = read_captions(data / "captions_train.json")
    dataset = CaptionDataset(records, bundle.tokenizer, int(bundle.info["image_size"]), train=True,
                             max_tokens=cfg.data.max_tokens)
    batch = next(iter(make_caption_loader(dataset, cfg.data.batch_size, train=True, num_workers=0)))
    optimizer = build_optimizer(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if cfg.train.amp == "bf16" else nullcontext

    def step() -> None:
        with amp():
            loss = model.loss(batch["images"], None, batch["targets"], batch["target_lengths"],
                              label_smoothing=cfg.label_smoothing)["loss"]
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, batch["images"].size(0)


def inference_pass(bundle: ModelBundle, data: Path, beam: int, n: int, batch: int) -> tuple[Callable[[], object], int]:
    """Caption the first `n` i.i.d. test images (preloaded), `batch` at a time; and the image count."""
    records = read_captions(data / "captions_test_iid.json")[:n]
    dataset = CaptionDataset(records, image_size=int(bundle.info["image_size"]))
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    options = DecodingOptions(beam_size=beam, max_length=32)

    @torch.no_grad()
    def run() -> None:
        for i in range(0, len(images), batch):
            decode(bundle.model, images[i : i + batch], None, options)

    return run, len(images)


def speeds(cases: dict[str, tuple[Callable[[], object], int]], rounds: int) -> dict[str, float]:
    """Images/s of each case, from its best of `rounds` interleaved rounds (one untimed warm-up round first)."""
    best = {name: float("inf") for name in cases}
    for r in range(rounds + 1):
        for name, (run, _) in cases.items():
            start = time.perf_counter()
            run()
            if r:
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: images / best[name] for name, (_, images) in cases.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", type=Path, help="a trained run (default: train the quick config into a new one)")
    ap.add_argument("--config", type=Path, default=RECIPE / "conf" / "quick.yaml")
    ap.add_argument("--data", type=Path, default=RECIPE / "data" / "shapes")
    ap.add_argument("--rounds", type=int, default=3, help="timed speed rounds (after one warm-up round)")
    ap.add_argument("--train-steps", type=int, default=10, help="training steps per speed round")
    ap.add_argument("--infer-images", type=int, default=256, help="images captioned per inference round")
    ap.add_argument("--infer-batch", type=int, default=64)
    ap.add_argument("--tiny", action="store_true",
                    help="smoke run: a tiny corpus, 4 training updates, 1 speed round, in a temporary folder")
    args = ap.parse_args()
    overrides = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            args.data, args.exp = Path(tmp) / "shapes", Path(tmp) / "exp"
            args.rounds, args.train_steps, args.infer_images, args.infer_batch = 1, 1, 8, 8
            overrides = TINY_OVERRIDES
        measure(args, overrides)


def measure(args: argparse.Namespace, overrides: list[str]) -> None:
    if not (args.data / "captions_test_heldout.json").is_file():
        make_shapes_corpus(args.data, TINY_CORPUS if args.tiny else ShapesConfig(seed=0))
    cfg = load_config(CaptionExperiment, args.config, [f"data.train={args.data}/captions_train.json",
                                                       f"data.valid={args.data}/captions_val.json", *overrides])
    exp = args.exp
    if exp is None or not (exp / "final" / "config.json").is_file():
        exp = exp or RECIPE / "exp" / f"bench_{time.strftime('%Y%m%d_%H%M%S')}"
        result = train_captioner(cfg, exp)
        print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min -> {exp}")

    rows, figures = [], {}
    for split in ("test_iid", "test_heldout"):
        for beam in (1, 4):
            scores, _ = evaluate_captioner(exp / "final", str(args.data / f"captions_{split}.json"),
                                           options=DecodingOptions(beam_size=beam, max_length=32), meteor=False)
            rows.append((split, beam, scores))
            key = f"{split.removeprefix('test_')}_beam{beam}"
            figures[f"bleu4_{key}"] = scores["BLEU-4"]
            figures[f"exact_{key}"] = scores["exact_match"]

    bundle = load_model(exp / "final")
    train_step, batch_images = training_step(bundle, cfg, args.data)

    def train_round() -> None:
        for _ in range(args.train_steps):
            train_step()

    cases = {"train_images_per_s": (train_round, args.train_steps * batch_images)}
    for beam in (1, 4):
        cases[f"infer_images_per_s_beam{beam}"] = inference_pass(bundle, args.data, beam, args.infer_images,
                                                                 args.infer_batch)
    figures.update(speeds(cases, args.rounds))
    figures["train_log_images_per_s"] = logged_training_throughput(exp)

    print(f"{'split':<14} {'beam':>4} {'BLEU-1':>7} {'BLEU-4':>7} {'ROUGE-L':>8} {'CIDEr-D':>8} {'exact':>7}")
    for split, beam, s in rows:
        print(f"{split:<14} {beam:>4} {s['BLEU-1']:>7.4f} {s['BLEU-4']:>7.4f} {s['ROUGE-L']:>8.4f} "
              f"{s['CIDEr-D']:>8.3f} {s['exact_match']:>7.3f}")
    print(f"speed in this process ({torch.get_num_threads()} threads, best of {args.rounds} interleaved rounds): "
          f"training {figures['train_images_per_s']:.1f} images/s (batch {batch_images}, amp {cfg.train.amp}); "
          f"inference (batched {args.infer_batch}): beam 1 {figures['infer_images_per_s_beam1']:.1f} images/s, "
          f"beam 4 {figures['infer_images_per_s_beam4']:.1f}; the run's log: {figures['train_log_images_per_s']:.1f} "
          f"training images/s")
    print(" ".join(f"{k}={v:.4f}" if v < 10 else f"{k}={v:.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
