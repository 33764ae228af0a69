"""Data-parallel training on this machine: 1 process against 2 gloo processes (torchrun) for the quick speech model.

    python tests/benchmarks/ddp_speed.py [--utterances 96] [--epochs 3] [--equivalence-steps 4]

1. Throughput: `toolkit train recipes/synth_speech/conf/quick.yaml` (its model sizes, bf16, max_batch_seconds per
   process) on a small synthetic corpus (`toolkit synth speech`), as one process (all cores' threads) and as two
   torchrun ranks (one thread each): training utterances/s and audio-seconds/s in the steady state, from
   train_log.csv: the time from the end of the first epoch to the end of the last, over which every utterance was
   trained on once per epoch (the first epoch, with its warm-up, and the final validation are left out).
2. Correctness: the same model (dropout and SpecAugment off, fp32) trained for a few updates on equal-length
   random audio, 2 ranks with batch B against 1 process with batch 2B: the largest weight difference.

Prints a table, then one line of key=value figures. On a 2-core CPU expect no speed-up (the ranks share the cores
and add the gradient all-reduce); the point here is that the two set-ups train the same model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "recipes/synth_speech/conf/quick.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, args: list[str], threads: int) -> str:
    """Run `args` (a python module or script and its arguments) in `processes` torchrun ranks; returns stdout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout


def throughput(processes: int, corpus: Path, out: Path, epochs: int, threads: int, utterances: int) -> dict:
    """Train the quick config for `epochs` whole epochs, logging every update; utterances/s after the first epoch."""
    launch(processes, [
        "-m", "toolkit", "train", str(CONFIG), "-o", str(out), f"data.train={corpus}/train.jsonl",
        f"data.valid={corpus}/valid.jsonl", "train.max_minutes=null", f"train.max_epochs={epochs}",
        "train.valid_every=1000000", "train.log_every=1", "data.cmvn_utterances=50", "data.valid_max_utterances=4",
    ], threads)
    with open(out / "train_log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"]]
    # a row's epoch is the number of passes completed before its update: the last row of epoch e ends pass e
    end_of_pass = {int(r["epoch"]): float(r["elapsed_s"]) for r in rows}
    seconds = end_of_pass[epochs - 1] - end_of_pass[0]
    return {"updates": len(rows), "utt_s": (epochs - 1) * utterances / seconds}


def equivalence_worker(out: Path, batch_size: int, steps: int) -> None:
    """One rank (or the one process) of the equivalence run: the quick model, deterministic, equal-length items."""
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from toolkit.config import load_config
    from toolkit.model import build_model
    from toolkit.tasks.asr import AsrExperiment
    from toolkit.train import Trainer
    from toolkit.train.distributed import join_process_group

    exp = load_config(AsrExperiment, CONFIG, [
        "model.vocab_size=32", "model.encoder.dropout=0", "model.encoder.freq_masks=0", "model.encoder.time_masks=0",
        "model.decoder.dropout=0", "train.amp=none", "train.max_minutes=null", f"train.max_steps={steps}",
        "train.warmup_steps=2", "train.valid_every=1000000", "train.log_every=1",
    ])
    g = torch.Generator().manual_seed(0)
    items = 8 * steps  # one epoch of batch 8 (1 process) or 2 x batch 4
    data = TensorDataset(0.1 * torch.randn(items, 32000, generator=g), torch.randint(4, 32, (items, 12), generator=g))

    def loss_fn(model, batch):
        audio, targets = batch
        full = torch.full((audio.size(0),), audio.size(1))
        return model.loss(audio, full, targets, torch.full((targets.size(0),), targets.size(1)),
                          ctc_weight=exp.ctc_loss_weight, label_smoothing=exp.label_smoothing)

    def save(model, path, info):
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().clone() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))

    with join_process_group() as world:
        torch.manual_seed(0)
        model = build_model(exp.model)
        model.ctc_head.dropout.p = 0.0  # the CTC head's own dropout (not in the config)
        sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=0)
        loader = DataLoader(data, batch_size=batch_size, sampler=sampler)
        Trainer(model, exp.train, out, loader, loss_fn, None, save, device=world.device).fit()


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=96, help="synthetic training utterances")
    ap.add_argument("--epochs", type=int, default=3, help="at least 2: the first is not timed")
    ap.add_argument("--equivalence-steps", type=int, default=4)
    ap.add_argument("--equivalence-worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.equivalence_worker:
        return equivalence_worker(args.equivalence_worker, args.batch_size, args.equivalence_steps)
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first epoch is not timed)")

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="ddp_speed.") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "speech"
        subprocess.run([sys.executable, "-m", "toolkit", "synth", "speech", "--out", str(corpus), "--train",
                        str(args.utterances), "--valid", "4", "--test-seen", "1", "--test-heldout", "1",
                        "--test-unseen", "1"],
                       check=True, capture_output=True)
        durations = [json.loads(line)["duration"] for line in (corpus / "train.jsonl").read_text().splitlines()]
        mean_duration = sum(durations) / len(durations)
        runs = {p: throughput(p, corpus, tmp / f"exp{p}", args.epochs, max(1, cores // p), len(durations))
                for p in (1, 2)}

        worker = [str(Path(__file__).resolve()), "--equivalence-steps", str(args.equivalence_steps)]
        launch(1, [*worker, "--equivalence-worker", str(tmp / "eq1"), "--batch-size", "8"], threads=1)
        launch(2, [*worker, "--equivalence-worker", str(tmp / "eq2"), "--batch-size", "4"], threads=1)
        diff = max_weight_difference(tmp / "eq1/final", tmp / "eq2/final")

    print(f"quick speech model, {len(durations)} utterances ({sum(durations):.0f} s of audio), {args.epochs} epochs "
          f"(the first not timed), {cores} CPU cores, gloo")
    print(f"{'processes':>9} {'threads':>8} {'updates':>8} {'utterances/s':>13} {'audio-s/s':>10}")
    for p, r in runs.items():
        print(f"{p:>9} {max(1, cores // p):>8} {r['updates']:>8} {r['utt_s']:>13.1f} "
              f"{r['utt_s'] * mean_duration:>10.1f}")
    print(f"2 ranks x batch 4 vs 1 process x batch 8, {args.equivalence_steps} updates of the same model: "
          f"max weight difference {diff:.3g}")
    u1, u2 = runs[1]["utt_s"], runs[2]["utt_s"]
    print(f"ddp1_utt_s={u1:.2f} ddp2_utt_s={u2:.2f} ratio={u2 / u1:.3f} ddp1_audio_s_s={u1 * mean_duration:.1f} "
          f"ddp2_audio_s_s={u2 * mean_duration:.1f} max_weight_diff={diff:.3g}")


if __name__ == "__main__":
    main()
