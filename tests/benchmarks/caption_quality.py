"""Captioning quality and speed on the synthetic shapes corpus (the bars of recipes/shapes_caption).

    python tests/benchmarks/caption_quality.py                       # make corpus, train quick config, measure
    python tests/benchmarks/caption_quality.py --exp recipes/shapes_caption/exp/quick   # measure a trained run

Measures BLEU-1..4 / CIDEr-D / ROUGE-L / exact match on the i.i.d. and the held-out-combination test splits,
greedy and beam 4; training throughput (images/s, from the run's log); batched inference throughput
(images/s, encoder + search, images preloaded) for beam 1 and beam 4. Prints a table, then key=value figures.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from toolkit.bundle import load_model
from toolkit.config import load_config
from toolkit.data import CaptionDataset, read_captions
from toolkit.synth.shapes import ShapesConfig, make_shapes_corpus
from toolkit.decode import DecodingOptions, decode
from toolkit.tasks.caption import CaptionExperiment, evaluate_captioner, train_captioner

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shapes_caption"


def training_throughput(exp: Path) -> float:
    with open(exp / "train_log.csv") as f:
        rates = [float(r["items_per_s"]) for r in csv.DictReader(f) if r.get("items_per_s")]
    return sum(rates) / len(rates)


@torch.no_grad()
def inference_throughput(model_dir: Path, data: Path, beam: int, n: int = 256, batch: int = 64) -> float:
    bundle = load_model(model_dir)
    records = read_captions(data)[:n]
    dataset = CaptionDataset(records, image_size=int(bundle.info["image_size"]))
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    options = DecodingOptions(beam_size=beam, max_length=32)
    decode(bundle.model, images[:batch], None, options)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        decode(bundle.model, images[i : i + batch], None, options)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp", type=Path, help="a trained run (default: train the quick config into a new one)")
    ap.add_argument("--config", type=Path, default=RECIPE / "conf" / "quick.yaml")
    ap.add_argument("--data", type=Path, default=RECIPE / "data" / "shapes")
    args = ap.parse_args()
    if not (args.data / "captions_test_heldout.json").is_file():
        make_shapes_corpus(args.data, ShapesConfig(seed=0))
    exp = args.exp
    if exp is None or not (exp / "final" / "config.json").is_file():
        exp = exp or RECIPE / "exp" / f"bench_{time.strftime('%Y%m%d_%H%M%S')}"
        cfg = load_config(CaptionExperiment, args.config, [f"data.train={args.data}/captions_train.json",
                                                           f"data.valid={args.data}/captions_val.json"])
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
    figures["train_images_per_s"] = training_throughput(exp)
    for beam in (1, 4):
        figures[f"infer_images_per_s_beam{beam}"] = inference_throughput(
            exp / "final", args.data / "captions_test_iid.json", beam)

    print(f"{'split':<14} {'beam':>4} {'BLEU-1':>7} {'BLEU-4':>7} {'ROUGE-L':>8} {'CIDEr-D':>8} {'exact':>7}")
    for split, beam, s in rows:
        print(f"{split:<14} {beam:>4} {s['BLEU-1']:>7.4f} {s['BLEU-4']:>7.4f} {s['ROUGE-L']:>8.4f} "
              f"{s['CIDEr-D']:>8.3f} {s['exact_match']:>7.3f}")
    print(f"training: {figures['train_images_per_s']:.1f} images/s; inference (batched 64): "
          f"beam 1 {figures['infer_images_per_s_beam1']:.1f} images/s, beam 4 {figures['infer_images_per_s_beam4']:.1f}")
    print(" ".join(f"{k}={v:.4f}" if v < 10 else f"{k}={v:.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
