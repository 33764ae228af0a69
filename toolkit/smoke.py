"""An end-to-end smoke run of the whole stack in about a minute on a laptop CPU.

It draws a small synthetic captioning set (one shape per image from the shapes corpus's generator, captions
such as "a large red circle"), trains a tiny timm-CNN + Transformer-decoder captioner, saves it as a bundle,
loads the bundle back and decodes held-out images with greedy and beam search, reporting their exact-match
accuracy.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from toolkit.bundle import load_model, save_model
from toolkit.synth.shapes import COLOURS, SHAPES, captions_for, draw, sample_objects
from toolkit.decode import DecodingOptions, decode
from toolkit.model import build_model
from toolkit.text import train_tokenizer


def make_split(n: int, seed: int, size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """`n` one-object images `(n, 3, size, size)` in [0, 1] from the shapes corpus's generator, with one
    caption each ("a large red circle"), reproducible from `seed`."""
    rng = random.Random(seed)
    pairs = list(itertools.product(COLOURS, SHAPES))
    images, captions = [], []
    for _ in range(n):
        objects = sample_objects(rng, pairs, 1, size)
        images.append(np.asarray(draw(objects, size, rng), dtype=np.float32) / 255.0)
        captions.append(captions_for(objects)[0])
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), captions


@dataclass
class SmokeResult:
    exact_greedy: float
    exact_beam: float
    final_loss: float
    seconds: float
    bundle: Path


def run_smoke(out: Path, steps: int = 150, batch_size: int = 32, seed: int = 0) -> SmokeResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    train_x, train_y = make_split(1024, seed)
    test_x, test_y = make_split(64, seed + 1)
    tokenizer = train_tokenizer("word", train_y)
    model = build_model({
        "vocab_size": tokenizer.vocab_size, "d_model": 64,
        "encoder": {"name": "timm", "backbone": "test_resnet", "dropout": 0.0},
        "decoder": {"num_layers": 2, "num_heads": 4, "ffn_dim": 128, "dropout": 0.0, "max_len": 16},
    })
    targets = [torch.tensor(tokenizer.encode(c)) for c in train_y]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    model.train()
    bar = tqdm(range(steps), desc="smoke: training", unit="step")
    for _ in bar:
        idx = torch.randint(0, len(train_y), (batch_size,))
        y = torch.nn.utils.rnn.pad_sequence([targets[i] for i in idx], batch_first=True)
        lengths = torch.tensor([len(targets[i]) for i in idx])
        loss = model.loss(train_x[idx], None, y, lengths, label_smoothing=0.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")

    bundle_dir = save_model(out / "model", model, tokenizer, info={"task": "caption", "source": "toolkit smoke"})
    bundle = load_model(bundle_dir)

    def exact(beam: int) -> float:
        hyps = decode(bundle.model, test_x, None, DecodingOptions(beam_size=beam, max_length=12))
        return sum(bundle.tokenizer.decode(h.tokens) == ref for h, ref in zip(hyps, test_y)) / len(test_y)

    return SmokeResult(exact(1), exact(4), loss.item(), time.perf_counter() - start, bundle_dir)
