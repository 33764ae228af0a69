"""Training-step speed of the quick speech model with PyTorch's fused CPU attention kernel against its math kernel.

    python tests/benchmarks/attention_kernel.py [--steps 8] [--rounds 4] [--threads 2]

`toolkit.model.attention` runs attention through PyTorch's "math" kernel on CPU, because the fused kernel's backward
is slow for short speech sequences. This benchmark times that choice: the quick config of recipes/synth_speech
(`conf/quick.yaml`), one model per kernel from the same initial weights, stepped (bf16 autocast, joint loss,
backward, AdamW) on the same random batches of 2-3.2 s of audio, 60 s per batch, rounds interleaved so that machine
noise hits both alike; the best round per kernel counts. Prints a table, then key=value figures.
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from toolkit.config import load_config
from toolkit.model import conformer, decoder
from toolkit.model.factory import build_model
from toolkit.tasks.asr import AsrExperiment

CONFIG = Path(__file__).resolve().parents[2] / "recipes/synth_speech/conf/quick.yaml"


@contextmanager
def default_kernel() -> Iterator[None]:
    """Run the models' attention through plain `F.scaled_dot_product_attention` (PyTorch picks the kernel)."""
    saved = conformer.attention, decoder.attention

    def plain(q, k, v, attn_mask=None, dropout_p=0.0):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)

    conformer.attention = decoder.attention = plain
    try:
        yield
    finally:
        conformer.attention, decoder.attention = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    exp = load_config(AsrExperiment, CONFIG)
    base = build_model(replace(exp.model, vocab_size=32)).train()
    systems = {}
    for name in ("fused", "math"):
        model = copy.deepcopy(base)
        systems[name] = (model, torch.optim.AdamW(model.parameters(), 1e-3))

    def step(model, optimizer, seconds: float, batch: int, gen: torch.Generator) -> None:
        samples = -(-int(seconds * 16000) // 5120) * 5120
        x = torch.randn(batch, samples, generator=gen)
        lengths = torch.full((batch,), samples)
        targets = torch.randint(4, 32, (batch, 41), generator=gen)
        target_lengths = torch.full((batch,), 41)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(x, lengths, targets, target_lengths, ctc_weight=exp.ctc_loss_weight)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    best = {name: 0.0 for name in systems}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, (model, optimizer) in systems.items():
            # "math": what toolkit.model.attention picks on CPU; "fused": PyTorch's own choice (its fused kernel)
            context = nullcontext() if name == "math" else default_kernel()
            rng, gen = random.Random(r), torch.Generator().manual_seed(r)
            with context:
                start, audio = time.perf_counter(), 0.0
                for _ in range(args.steps):
                    seconds = rng.uniform(2.0, 3.2)
                    batch = int(60 // seconds)
                    step(model, optimizer, seconds, batch, gen)
                    audio += batch * seconds
            if r:
                best[name] = max(best[name], audio / (time.perf_counter() - start))
    print(f"quick speech model ({CONFIG.name}), {args.threads} threads, bf16, best of {args.rounds} rounds x "
          f"{args.steps} steps")
    print(f"{'kernel':8} {'audio s/s':>10}")
    for name, speed in best.items():
        print(f"{name:8} {speed:10.1f}")
    print(f"fused_audio_s_per_s={best['fused']:.1f} math_audio_s_per_s={best['math']:.1f} "
          f"speedup={best['math'] / best['fused']:.2f}")


if __name__ == "__main__":
    main()
