"""Training speed against SpeechBrain, side by side in one run, at SpeechBrain's LibriSpeech `conformer_small` size.

    pip install speechbrain==1.1.2        # for this benchmark only (not a dependency of the toolkit)
    python tests/benchmarks/train_speed.py [--steps 5] [--warmup 2] [--threads 2] [--precision both] [--device cuda]

Each system trains in fp32 and under bf16 autocast (`--precision` picks one or both) on the same random batches
(B waveforms x S seconds of 16 kHz noise, U random tokens each, ids 4..V-1 so that no special id is used), one
optimizer update per step, and the steps are interleaved (ours fp32, SpeechBrain fp32, ours bf16, SpeechBrain
bf16, ours fp32, ...) so that machine noise hits all alike. Ours and SpeechBrain are compared at equal precision:

  ours_*   `build_model` (Conformer encoder d 144, 12 layers, 4 heads, ffn 1024, kernel 31; 4-layer decoder,
           ffn 1024; CTC head; vocab 5000), stepped as `toolkit.train.Trainer` steps it with `amp: none` (fp32)
           or `amp: bf16` (bf16 autocast around `model.loss`; CTC and log-softmax run fp32 inside the model):
           `model.loss` (ctc_weight 0.3, label_smoothing 0.1, as recipes/librispeech), loss finiteness check,
           backward, grad-norm clip 5, AdamW (lr 1e-3, betas 0.9/0.98, weight decay 0.01 on matrices only:
           `param_groups`).
  sb_fp32  SpeechBrain 1.1.2 modules built with the values of recipes/LibriSpeech/ASR/transformer/hparams/
           conformer_small.yaml and stepped as its train.py + `Brain.fit_batch` step them at the recipe's
           default `precision: fp32`: Fbank(n_mels 80, n_fft 400) -> InputNormalization(global, updating)
           -> fea_augment (time drop, freq drop, time warp) -> ConvolutionFrontEnd -> TransformerASR
           (conformer, RelPosMHAXL) -> ctc_lin / seq_lin + log-softmax -> 0.3 CTC + 0.7 KL/NLL (batchmean),
           backward, grad-norm clip 5 (max_grad_norm), Adam (lr 1e-3, betas 0.9/0.98, eps 1e-9).
  sb_bf16  the same SpeechBrain step under torch bf16 autocast (what `--precision=bf16` does on CPU).

Data loading and speed perturbation (done in the recipe's loader workers) are outside every timed step.
Prints the settings, parameter counts, a table (s/step from the best step by default, best and median wall
seconds, process CPU seconds of the best step, utterances/s, audio seconds/s, ours / SpeechBrain at the same
precision, model FLOPs utilisation: the FLOPs of one step, counted by `tests/benchmarks/mfu.py`, per second over
the matmul peak of the step's precision measured in the same run), then a last line of key=value figures: `speedup_fp32` = ours_fp32 / sb_fp32 utterances/s and
`speedup_bf16` = ours_bf16 / sb_bf16 (the headline), `cpu_speedup_*` the same from CPU seconds, and, labelled
as across precisions, `ours_bf16_vs_sb_fp32` (ours under bf16 against SpeechBrain's default fp32).

`--device cuda` runs every system on the GPU (autocast on that device; each step's time runs from a synchronised
start to a synchronised end), so the comparison holds there too.

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless the environment sets it): on a 2-core machine shared
with other jobs, the default spin-waiting made every system's 2-thread step 3-5x slower in wall time (and burn
3.5x the CPU) and very erratic, while the ratios stayed the same. `OMP_WAIT_POLICY=ACTIVE python ...` measures
the default behaviour.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads its OpenMP runtime

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import AbstractContextManager, nullcontext  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

from mfu import matmul_peak, step_flops  # noqa: E402
from toolkit.model import build_model  # noqa: E402
from toolkit.train.optim import param_groups  # noqa: E402

Step = Callable[[], float]


def count_params(modules: list[torch.nn.Module]) -> int:
    seen, total = set(), 0
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def make_batch(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Random noise waveforms and random token ids, the same for every system (fixed seed), on `args.device`."""
    g = torch.Generator().manual_seed(args.seed)
    samples = int(args.seconds * 16000)
    wavs = 0.1 * torch.randn(args.batch, samples, generator=g)
    tokens = torch.randint(4, args.vocab, (args.batch, args.tokens), generator=g)
    return {"wavs": wavs.to(args.device), "tokens": tokens.to(args.device)}


# --------------------------------------------------------------------------------------------- ours


def autocast(args: argparse.Namespace, bf16: bool) -> Callable[[], AbstractContextManager]:
    """A fresh bf16 autocast context on `args.device` per call, or no autocast (fp32)."""
    return (lambda: torch.autocast(args.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext


def build_ours(args: argparse.Namespace, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[Step, int, str]:
    torch.manual_seed(args.seed)
    config = {
        "vocab_size": args.vocab,
        "d_model": 144,
        "encoder": {"name": "conformer", "num_layers": 12, "num_heads": 4, "ffn_dim": 1024, "kernel_size": 31,
                    "dropout": 0.1},
        "decoder": {"num_layers": 4, "num_heads": 4, "ffn_dim": 1024, "dropout": 0.1},
        "ctc": True,
    }
    if args.ours_subsampling_channels:
        config["encoder"]["subsampling_channels"] = args.ours_subsampling_channels
    model = build_model(config).train().to(args.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, betas=(0.9, 0.98))
    wavs, targets = batch["wavs"], batch["tokens"]
    wav_lengths = torch.full((wavs.size(0),), wavs.size(1), dtype=torch.long, device=args.device)
    target_lengths = torch.full((targets.size(0),), targets.size(1), dtype=torch.long, device=args.device)
    ctx = autocast(args, bf16)

    def step() -> float:
        with ctx():
            out = model.loss(wavs, wav_lengths, targets, target_lengths, ctc_weight=0.3, label_smoothing=0.1)
        loss = out["loss"].float()
        if not torch.isfinite(loss):
            raise RuntimeError("ours: non-finite loss")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    enc = model.encoder.config
    desc = (f"ours: toolkit build_model, conformer d 144 x{enc.num_layers} (4 heads, ffn 1024, kernel 31, "
            f"Conv2d subsampling {enc.subsampling_channels or 144} channels, abs sinusoids, toolkit attention), "
            f"decoder 4 "
            f"layers ffn 1024 (tied output), CTC; fp32 / bf16 autocast, ctc_weight 0.3, label_smoothing 0.1, AdamW, clip 5")
    return step, count_params([model]), desc


# --------------------------------------------------------------------------------------------- SpeechBrain


def build_speechbrain(args: argparse.Namespace, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[Step, int]:
    """SpeechBrain's conformer_small, built with the values of its recipe yaml (cited beside each one)."""
    from speechbrain.augment.augmenter import Augmenter
    from speechbrain.augment.freq_domain import SpectrogramDrop, Warping
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.losses import ctc_loss, kldiv_loss
    from speechbrain.processing.features import InputNormalization

    torch.manual_seed(args.seed)
    d_model, vocab = 144, args.vocab  # d_model: 144, output_neurons: 5000
    compute_features = Fbank(sample_rate=16000, n_fft=400, n_mels=80)  # sample_rate, n_fft, n_mels
    normalize = InputNormalization(norm_type="global", update_until_epoch=4)
    fea_augment = Augmenter(  # min/max_augmentations 3, augment_prob 1.0, [time_drop, freq_drop, time_warp]
        min_augmentations=3, max_augmentations=3, augment_prob=1.0,
        augmentations=[
            SpectrogramDrop(drop_length_low=15, drop_length_high=25, drop_count_low=4, drop_count_high=4,
                            replace="mean"),
            SpectrogramDrop(drop_length_low=10, drop_length_high=20, drop_count_low=4, drop_count_high=4,
                            replace="mean", dim=2),
            Warping(),
        ],
    )
    cnn = ConvolutionFrontEnd(  # CNN: the recipe's values
        input_shape=(8, 10, 80), num_blocks=2, num_layers_per_block=1, out_channels=(64, 32),
        kernel_sizes=(3, 3), strides=(2, 2), residuals=(False, False),
    )
    transformer = TransformerASR(  # Transformer: the recipe's values
        input_size=640, tgt_vocab=vocab, d_model=d_model, nhead=4, num_encoder_layers=12, num_decoder_layers=4,
        d_ffn=1024, dropout=0.1, activation=torch.nn.GELU, encoder_module="conformer",
        attention_type="RelPosMHAXL", normalize_before=True, causal=False,
    )
    ctc_lin = Linear(input_size=d_model, n_neurons=vocab)
    seq_lin = Linear(input_size=d_model, n_neurons=vocab)
    log_softmax = torch.nn.LogSoftmax(dim=-1)
    modules = torch.nn.ModuleDict({"CNN": cnn, "Transformer": transformer, "seq_lin": seq_lin,
                                   "ctc_lin": ctc_lin, "normalize": normalize}).train().to(args.device)
    compute_features.to(args.device)
    fea_augment.to(args.device)
    params = [p for p in modules.parameters() if p.requires_grad]
    # train.py: opt_class=hparams["Adam"] (torch.optim.Adam, lr_adam 0.001, betas (0.9, 0.98), eps 1e-9);
    # --sb-adamw swaps in AdamW with the same settings (speed is the same).
    opt_class = torch.optim.AdamW if args.sb_adamw else torch.optim.Adam
    opt = opt_class(params, lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    ctc_weight, max_grad_norm, pad_index, bos_index, eos_index = 0.3, 5.0, 0, 1, 2  # ctc_weight, max_grad_norm

    wavs, tokens = batch["wavs"], batch["tokens"]
    b = wavs.size(0)
    on = {"device": args.device}
    wav_lens = torch.ones(b, **on)  # SpeechBrain lengths are relative to the padded length
    tokens_bos = torch.cat([torch.full((b, 1), bos_index, **on), tokens], dim=1)
    tokens_eos = torch.cat([tokens, torch.full((b, 1), eos_index, **on)], dim=1)
    tokens_lens = torch.ones(b, **on)
    tokens_eos_lens = torch.ones(b, **on)
    ctx = autocast(args, bf16)

    def step() -> float:
        # Brain.fit_batch (precision fp32: no autocast; bf16: torch autocast) -> compute_forward / objectives
        with ctx():
            feats = compute_features(wavs)
            feats = normalize(feats, wav_lens, epoch=1)  # epoch < update_until_epoch: statistics still update
            feats, _ = fea_augment(feats, wav_lens)  # optimizer_step > augment_warmup (0) after the first update
            src = cnn(feats)
            enc_out, pred = transformer(src, tokens_bos, wav_lens, pad_idx=pad_index)
            p_ctc = log_softmax(ctc_lin(enc_out))
            p_seq = log_softmax(seq_lin(pred))
            loss_seq = kldiv_loss(p_seq, tokens_eos, length=tokens_eos_lens, label_smoothing=0.0,
                                  reduction="batchmean").sum()  # label_smoothing: 0.0, loss_reduction: batchmean
            loss_ctc = ctc_loss(p_ctc, tokens, wav_lens, tokens_lens, blank_index=0, reduction="batchmean").sum()
            loss = ctc_weight * loss_ctc + (1 - ctc_weight) * loss_seq
        if not torch.isfinite(loss):  # check_loss_isfinite
            raise RuntimeError("speechbrain: non-finite loss")
        loss.backward()
        # optimizers_step: clip over the optimizer's params, step, zero_grad(set_to_none=True)
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step, count_params([cnn, transformer, seq_lin, ctc_lin])


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per system")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per system first")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stat", choices=["best", "median"], default="best",
                    help="step time the figures use: best (min; robust on a shared, noisy machine) or median")
    ap.add_argument("--precision", choices=["both", "fp32", "bf16"], default="both",
                    help="the precisions both systems train in (each compared at equal precision)")
    ap.add_argument("--sb-adamw", action="store_true", help="SpeechBrain with AdamW instead of the recipe's Adam")
    ap.add_argument("--ours-subsampling-channels", type=int, default=0,
                    help="our Conv2d subsampling channels (0: the default, d_model)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where every system runs")
    args = ap.parse_args()
    args.device = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device.type == "cuda" else (lambda: None)
    torch.set_num_threads(args.threads)
    try:
        import speechbrain
    except ImportError:
        sys.exit("speechbrain is not installed: pip install speechbrain==1.1.2 (for this benchmark only)")

    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    batch = make_batch(args)
    systems: dict[str, Step] = {}
    failed: dict[str, str] = {}  # system -> first line of the error of its trial step
    flops: dict[str, int] = {}  # system -> FLOPs of one step
    peaks = {prec: matmul_peak(torch.bfloat16 if prec == "bf16" else torch.float32, args.device)
             for prec in precisions}
    for prec in precisions:
        ours, ours_params, ours_desc = build_ours(args, batch, bf16=prec == "bf16")
        sb, sb_params = build_speechbrain(args, batch, bf16=prec == "bf16")
        for name, step in ((f"ours_{prec}", ours), (f"sb_{prec}", sb)):
            try:  # a trial step, its FLOPs counted: a system that cannot run is reported, not the end of the run
                flops[name] = step_flops(step)
                systems[name] = step
            except RuntimeError as e:
                failed[name] = str(e).splitlines()[0]
    if not systems:
        sys.exit("no system ran: " + "; ".join(f"{n}: {e}" for n, e in failed.items()))

    losses: dict[str, float] = {}
    for _ in range(args.warmup):
        for name, step in systems.items():
            losses[name] = step()
    times: dict[str, list[float]] = {name: [] for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}  # process CPU seconds (all threads) per step
    for _ in range(args.steps):
        for name, step in systems.items():
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            losses[name] = step()
            sync()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    audio = args.batch * args.seconds
    where = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, speechbrain {speechbrain.__version__}, {where}, {torch.get_num_threads()} threads; "
          f"batch {args.batch} x {args.seconds:g} s noise at 16 kHz, {args.tokens} tokens, vocab {args.vocab}; "
          f"{args.warmup} warm-up + {args.steps} timed steps per system, interleaved; "
          f"figures from the {args.stat} step; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(ours_desc)
    print("speechbrain: conformer_small.yaml (Fbank 80, global InputNormalization, fea_augment, CNN 64/32, "
          "TransformerASR conformer RelPosMHAXL d 144 x12, 4 dec layers, ffn 1024, kernel 31, dropout 0.1, GELU, "
          f"ctc_lin/seq_lin), ctc_weight 0.3, label_smoothing 0.0, {'AdamW' if args.sb_adamw else 'Adam'}, clip 5")
    print(f"parameters: ours {ours_params / 1e6:.2f} M, speechbrain {sb_params / 1e6:.2f} M")
    print(f"{'system':<10} {'s/step':>8} {'best':>8} {'median':>8} {'cpu s':>7} {'utt/s':>8} {'audio s/s':>10} "
          f"{'ours/sb':>8} {'GFLOP':>7} {'MFU':>6} {'last loss':>10}")
    pick = min if args.stat == "best" else statistics.median
    picked = {name: pick(t) for name, t in times.items()}
    utt = {name: args.batch / secs for name, secs in picked.items()}
    mfu = {name: flops[name] / picked[name] / peaks[name.split("_")[1]] for name in picked}
    for name, t in times.items():
        prec = name.split("_")[1]
        both = f"ours_{prec}" in utt and f"sb_{prec}" in utt
        ratio = f"{utt[f'ours_{prec}'] / utt[f'sb_{prec}']:>8.2f}" if both else f"{'-':>8}"
        print(f"{name:<10} {picked[name]:>8.3f} {min(t):>8.3f} {statistics.median(t):>8.3f} {min(cpu[name]):>7.2f} "
              f"{utt[name]:>8.2f} {audio / picked[name]:>10.1f} {ratio} {flops[name] / 1e9:>7.1f} {mfu[name]:>6.1%} "
              f"{losses[name]:>10.2f}")
    print("matmul peak (1024 x 1024, same threads): " + ", ".join(f"{p} {v / 1e9:.0f} GFLOP/s" for p, v in peaks.items()))
    print("all step times (s): " + "; ".join(f"{n} " + " ".join(f"{x:.2f}" for x in t) for n, t in times.items()))
    for name, error in failed.items():
        print(f"{name} did not run: {error}")

    figures = [f"{name}_utt_s={u:.2f}" for name, u in utt.items()] + [f"mfu_{name}={m:.3f}" for name, m in mfu.items()]
    for prec in precisions:  # the headline: ours / SpeechBrain at equal precision
        ours, sb = f"ours_{prec}", f"sb_{prec}"
        if ours in utt and sb in utt:
            figures += [f"speedup_{prec}={utt[ours] / utt[sb]:.2f}",
                        f"cpu_speedup_{prec}={min(cpu[sb]) / min(cpu[ours]):.2f}"]
    if "ours_bf16" in utt and "sb_fp32" in utt:  # across precisions: ours bf16 against SpeechBrain's default fp32
        figures += [f"ours_bf16_vs_sb_fp32={utt['ours_bf16'] / utt['sb_fp32']:.2f}"]
    figures += [f"ours_params_m={ours_params / 1e6:.2f}", f"sb_params_m={sb_params / 1e6:.2f}"]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
