"""Training-step speed of the quick speech model with the toolkit's CPU attention against PyTorch's kernels.

    python tests/benchmarks/attention_kernel.py [--steps 8] [--rounds 4] [--threads 2]

`toolkit.model.attention` runs attention on CPU as three plain steps (bf16 scores, fp32 softmax, bf16 weighted sum
under autocast), because PyTorch's fused kernel's backward is slow for short speech sequences and its "math"
kernel computes bf16 inputs in fp32 and checks every row for full masking. This benchmark times that choice: the
quick config of recipes/synth_speech (`conf/quick.yaml`), one model per kernel from the same initial weights,
stepped (bf16 autocast, joint loss, backward, AdamW) on the same random batches of 2-3.2 s of audio, 60 s per
batch, rounds interleaved so that machine noise hits all alike; the best round per kernel counts. Prints a table,
then key=value figures (`speedup`: ours over the better of PyTorch's two).
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
from torch.nn.attention import SDPBackend, sdpa_kernel

from toolkit.config import load_config
from toolkit.model import conformer, decoder
from toolkit.model.factory import build_model
from toolkit.tasks.asr import AsrExperiment

CONFIG = Path(__file__).resolve().parents[2] / "recipes/synth_speech/conf/quick.yaml"


@contextmanager
def pytorch_kernel(backend: SDPBackend | None) -> Iterator[None]:
    """Run the models' attention through `F.scaled_dot_product_attention` with `backend` (None: PyTorch picks)."""
    saved = conformer.attention, decoder.attention

    def plain(q, k, v, attn_mask=None, dropout_p=0.0):
        with sdpa_kernel(backend) if backend is not None else nullcontext():
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
    for name in ("fused", "math", "toolkit"):
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
            # "fused": PyTorch's own choice on CPU; "math": its math kernel; "toolkit": toolkit.model.attention
            context = {"fused": pytorch_kernel(None), "math": pytorch_kernel(SDPBackend.MATH),
                       "toolkit": nullcontext()}[name]
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
          f"toolkit_audio_s_per_s={best['toolkit']:.1f} "
          f"speedup={best['toolkit'] / max(best['fused'], best['math']):.2f}")


if __name__ == "__main__":
    main()
