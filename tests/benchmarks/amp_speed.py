"""fp32 vs bf16 autocast training speed on this machine, side by side in one run, for a recipe's model.

    python tests/benchmarks/amp_speed.py [--config recipes/shapes_caption/conf/quick.yaml] [--steps 30]

Times forward + loss + backward + AdamW on random batches shaped like the recipe's (images for a caption
config), alternating fp32 and bf16 rounds so that machine noise hits both alike. Prints a table, then
key=value figures; a recipe should set `train.amp: bf16` only where `bf16_speedup` is clearly above 1.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from toolkit.config import load_config
from toolkit.model import build_model
from toolkit.tasks.caption import CaptionExperiment

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "recipes/shapes_caption/conf/quick.yaml")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=40)
    args = ap.parse_args()
    exp = load_config(CaptionExperiment, args.config)
    torch.manual_seed(0)
    model = build_model(replace(exp.model, vocab_size=args.vocab)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, s = exp.data.batch_size, exp.data.image_size
    images = torch.rand(b, 3, s, s)
    targets = torch.randint(4, args.vocab, (b, 14))
    lengths = torch.full((b,), 14)

    def run(amp: bool) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else nullcontext()
        start = time.perf_counter()
        for _ in range(args.steps):
            with ctx:
                loss = model.loss(images, None, targets, lengths, label_smoothing=0.1)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return args.steps * b / (time.perf_counter() - start)

    run(False), run(True)  # warm-up
    fp32, bf16 = [], []
    for _ in range(args.rounds):
        fp32.append(run(False))
        bf16.append(run(True))
    f, h = max(fp32), max(bf16)
    print(f"{args.config.name}: batch {b}, image {s}px, {torch.get_num_threads()} threads, best of {args.rounds}")
    print(f"{'precision':<10} {'items/s':>8}")
    print(f"{'fp32':<10} {f:>8.1f}")
    print(f"{'bf16':<10} {h:>8.1f}")
    print(f"fp32_items_per_s={f:.1f} bf16_items_per_s={h:.1f} bf16_speedup={h / f:.2f}")


if __name__ == "__main__":
    main()
