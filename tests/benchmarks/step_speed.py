"""Training steps per second of a recipe config, this checkout's code against an earlier revision, side by side.

    python tests/benchmarks/step_speed.py --baseline 507a3b9 [--config recipes/synth_speech/conf/quick.yaml]
        [--threads 1,2] [--updates 200] [--block 10]

The baseline revision is exported (`git archive`) to a temporary folder. For each thread count, two worker
processes start, one importing the toolkit from this checkout (`new`) and one from the baseline (`old`); each builds
the config's model (the same seed: the same initial weights), optimizer and learning-rate schedule as the trainer
does, and runs `--updates` training updates on the same sequence of batches, stepped as `Trainer.fit` steps them
(`model.loss` under the config's autocast, backward, gradient-norm clip, optimizer and scheduler step). The parent
alternates between them every `--block` updates (old, new, old, ...), so that machine noise hits both alike; only
one runs at a time.

Batches: `batch` utterances of `seconds` (each cut to a random 85-100% of it, so batches are padded) of 16 kHz noise,
and random token ids (`tokens` per utterance, 70-100% of it) drawn from the config's character vocabulary; batch i
is a function of the seed and i only.

Numerics: the losses of the two runs over the same updates are compared (largest relative difference). The floor
they are held to is what the *same* code gives at another thread count (old at 1 thread against old at 2: the same
arithmetic in another reduction order): a new path with the same numerics differs from the old by about that much.

Speed: each update's wall time; the table gives the median, updates/s and utterances/s, the model FLOPs of one
update (forward, backward and optimizer, `torch.utils.flop_counter`) and the model FLOPs utilisation (MFU): those
FLOPs per second over the bf16 (or fp32, by the config's `amp`) matrix-product peak that `torch.matmul` of 1024 x
1024 matrices reaches on the same threads (`tests/benchmarks/mfu.py`; measured by both workers, the better kept).
Last line: `speedup_<n>t` (new / old updates/s), `loss_rel_diff_<n>t`, `loss_rel_diff_floor`, `mfu_new_<n>t`,
`mfu_old_<n>t`.

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set): on a shared 2-core machine, spin-waiting makes
2-thread steps erratic (tests/benchmarks/train_speed.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads its OpenMP runtime

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------- worker


def _worker(args: argparse.Namespace) -> None:
    """Build the model and optimizer from `args.config` with the toolkit found on the path; then answer the
    parent's "run N" lines with one JSON line of N (seconds, loss) pairs."""
    import dataclasses

    import torch

    torch.set_num_threads(args.threads)
    import toolkit
    from toolkit.config import load_config
    from toolkit.model import build_model
    from toolkit.tasks.asr import AsrExperiment
    from toolkit.train.optim import build_optimizer
    from toolkit.train.schedule import warmup_cosine

    exp = load_config(AsrExperiment, args.config, [])
    cfg = exp.train
    vocab = 4 + 28  # the char tokenizer's special ids + a-z, apostrophe, space
    torch.manual_seed(cfg.seed)
    model = build_model(dataclasses.replace(exp.model, vocab_size=vocab)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.max_steps,
                                                                           cfg.min_lr_ratio))
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    bf16 = cfg.amp == "bf16"

    def batch(i: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + i)
        n = int(args.seconds * 16000)
        lengths = (n * (0.85 + 0.15 * torch.rand(args.batch, generator=g))).long()
        lengths[0] = n
        wavs = 0.1 * torch.randn(args.batch, n, generator=g)
        wavs = wavs.masked_fill(torch.arange(n)[None, :] >= lengths[:, None], 0.0)
        t_lengths = (args.tokens * (0.7 + 0.3 * torch.rand(args.batch, generator=g))).long()
        t_lengths[0] = args.tokens
        targets = torch.randint(4, vocab, (args.batch, args.tokens), generator=g)
        targets = targets.masked_fill(torch.arange(args.tokens)[None, :] >= t_lengths[:, None], 0)
        return wavs, lengths, targets, t_lengths

    def update(i: int) -> float:
        wavs, lengths, targets, t_lengths = batch(i)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.loss(wavs, lengths, targets, t_lengths, ctc_weight=exp.ctc_loss_weight,
                             label_smoothing=exp.label_smoothing)
        loss = out["loss"].float()
        if not torch.isfinite(loss):
            raise RuntimeError(f"update {i}: non-finite loss")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    # FLOPs of one update, counted on a throwaway update whose effects are undone, and the matmul peak.
    from mfu import matmul_peak, step_flops

    state = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict(), scheduler.state_dict())
    rng = torch.get_rng_state()
    flops = step_flops(lambda: update(0))
    model.load_state_dict(state[0])
    optimizer.load_state_dict(state[1])
    scheduler.load_state_dict(state[2])
    torch.set_rng_state(rng)
    optimizer.zero_grad(set_to_none=True)
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)

    print(json.dumps({"toolkit": str(Path(toolkit.__file__).parent), "flops": flops, "peak": peak,
                      "params": sum(p.numel() for p in params)}), flush=True)
    done = 0
    for line in sys.stdin:
        n = int(line.split()[1])
        results = []
        for _ in range(n):
            t = time.perf_counter()
            loss = update(done + 1)  # batch 0 was the FLOP count's
            results.append((time.perf_counter() - t, loss))
            done += 1
        print(json.dumps(results), flush=True)


# --------------------------------------------------------------------------------------------- parent


class Worker:
    def __init__(self, code: Path, args: argparse.Namespace, threads: int):
        env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(threads),
               "--config", str(args.config), "--batch", str(args.batch), "--seconds", str(args.seconds),
               "--tokens", str(args.tokens), "--seed", str(args.seed)]
        self.proc = subprocess.Popen(cmd, cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        if Path(self.info["toolkit"]).resolve() != (code / "toolkit").resolve():
            raise SystemExit(f"worker imported the toolkit from {self.info['toolkit']}, not {code}/toolkit")
        self.times: list[float] = []
        self.losses: list[float] = []

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a worker stopped (exit code {self.proc.wait()})")
        return json.loads(line)

    def run(self, n: int) -> None:
        self.proc.stdin.write(f"run {n}\n")
        self.proc.stdin.flush()
        for seconds, loss in self._read():
            self.times.append(seconds)
            self.losses.append(loss)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def rel_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=False, help="git revision of the old code (e.g. a commit of main)")
    p.add_argument("--config", type=Path, default=Path("recipes/synth_speech/conf/quick.yaml"))
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--block", type=int, default=10, help="updates per turn before switching code")
    p.add_argument("--batch", type=int, default=15)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--tokens", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        return _worker(args)
    if not args.baseline:
        p.error("--baseline is required")
    args.config = (REPO / args.config).resolve() if not args.config.is_absolute() else args.config
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="step_speed_") as tmp:
        old_code = Path(tmp)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "toolkit"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        print(f"config {args.config.relative_to(REPO)}; batch {args.batch} x {args.seconds:g} s, {args.tokens} "
              f"tokens; {args.updates} updates per run, alternating every {args.block}; old = {args.baseline}, "
              f"new = this checkout")
        rows, figures, runs = [], {}, {}
        for n in threads:
            old, new = Worker(old_code, args, n), Worker(REPO, args, n)
            for start in range(0, args.updates, args.block):
                for w in (old, new):
                    w.run(min(args.block, args.updates - start))
            old.close()
            new.close()
            runs[n] = (old, new)
            peak = max(old.info["peak"], new.info["peak"])  # each worker measured it; the better is the truer
            for name, w in (("old", old), ("new", new)):
                med = statistics.median(w.times)
                mfu = w.info["flops"] / med / peak
                rows.append((f"{name} {n}t", med, 1 / med, args.batch / med, w.info["flops"] / 1e9, peak / 1e9, mfu))
                figures[f"mfu_{name}_{n}t"] = mfu
            figures[f"speedup_{n}t"] = statistics.median(old.times) / statistics.median(new.times)
            figures[f"loss_rel_diff_{n}t"] = rel_diff(new.losses, old.losses)
        if len(threads) > 1:
            figures["loss_rel_diff_floor"] = rel_diff(runs[threads[0]][0].losses, runs[threads[1]][0].losses)
        print(f"\n{'run':8} {'s/update':>9} {'updates/s':>10} {'utt/s':>7} {'GFLOP/upd':>10} {'peak GF/s':>10} "
              f"{'MFU':>6}")
        for r in rows:
            print(f"{r[0]:8} {r[1]:9.3f} {r[2]:10.2f} {r[3]:7.1f} {r[4]:10.1f} {r[5]:10.0f} {r[6]:6.1%}")
        print("\nlosses (old / new) at updates 1, 50, 100, 200:")
        for n, (old, new) in runs.items():
            picks = [i for i in (0, 49, 99, 199) if i < len(old.losses)]
            print(f"  {n}t: " + "  ".join(f"{old.losses[i]:.4f}/{new.losses[i]:.4f}" for i in picks))
        print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
