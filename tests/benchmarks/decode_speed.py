"""Decoding speed, measured side by side in one run (not a test: the machine is noisy, ratios are what count).

1. Greedy decoding of 128 tokens with the KV cache vs recomputing the whole prefix at every step.
2. Batched beam search (beam 4) over 32 inputs vs the same search run one input at a time.

    python tests/benchmarks/decode_speed.py [--tokens 128] [--inputs 32] [--repeats 3] [--stat best]
    python tests/benchmarks/decode_speed.py --tokens 2 --inputs 2 --beam-tokens 2 --repeats 1   # smoke run

The four cases run in interleaved rounds (1, 2, 3, 4, 1, 2, 3, 4, ...) so that machine noise hits all alike; each
case's time is the best (or median) of its rounds. Prints a table, then a last line with every figure as key=value.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from toolkit.decode import BeamSearch, DecodingOptions
from toolkit.model import BOS_ID, DecoderConfig, EncoderOutput, TransformerDecoder


def interleaved_times(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of every case in each of `rounds` rounds; a round runs each case once, in order."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


@torch.no_grad()
def greedy_steps(decoder: TransformerDecoder, enc: EncoderOutput, steps: int, cached: bool) -> torch.Tensor:
    """Greedy decoding for exactly `steps` tokens; with `cached=False` the whole prefix is re-run each step
    (cross-attention keys/values are still projected once, so only the self-attention prefix is recomputed)."""
    base = decoder.init_state(enc)
    tokens = torch.full((enc.memory.size(0), 1), BOS_ID)
    state = base
    for _ in range(steps):
        if cached:
            logits, state = decoder(tokens[:, -1:], state)
        else:
            fresh = type(base)(memory_mask=base.memory_mask, cross_kv=base.cross_kv)
            logits, _ = decoder(tokens, fresh)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128, help="greedy tokens per item (4 items)")
    ap.add_argument("--inputs", type=int, default=32, help="inputs of the beam search")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--beam-tokens", type=int, default=32, help="tokens the beam search generates per input")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (each case once per round)")
    ap.add_argument("--stat", choices=["best", "median"], default="best", help="the time a case's figures use")
    args = ap.parse_args()
    torch.manual_seed(0)
    d, vocab, mem_len, check_steps = 256, 1000, 100, 16
    cfg = DecoderConfig(num_layers=6, num_heads=4, ffn_dim=1024, dropout=0.0,
                        max_len=max(args.tokens, check_steps) + 2)
    decoder = TransformerDecoder(vocab, d, cfg).eval()

    greedy_enc = EncoderOutput(torch.randn(4, mem_len, d), torch.full((4,), mem_len))
    same = torch.equal(greedy_steps(decoder, greedy_enc, check_steps, True),
                       greedy_steps(decoder, greedy_enc, check_steps, False))
    lengths = torch.randint(mem_len // 2, mem_len + 1, (args.inputs,))
    enc = EncoderOutput(torch.randn(args.inputs, mem_len, d), lengths)
    n = args.beam_tokens
    beam = BeamSearch(DecodingOptions(beam_size=args.beam, max_length=n, min_length=n, repetition_limit=0))

    def one_by_one() -> None:
        for i in range(args.inputs):
            k = int(enc.lengths[i])
            beam.search(decoder, EncoderOutput(enc.memory[i : i + 1, :k], enc.lengths[i : i + 1]))

    cases = {  # key: (description, generated tokens, run)
        "greedy_cache": (f"greedy {args.tokens} tok x4, KV cache", 4 * args.tokens,
                         lambda: greedy_steps(decoder, greedy_enc, args.tokens, True)),
        "greedy_recompute": (f"greedy {args.tokens} tok x4, recompute prefix", 4 * args.tokens,
                             lambda: greedy_steps(decoder, greedy_enc, args.tokens, False)),
        "beam_batched": (f"beam {args.beam}, {args.inputs} inputs x {n} tok, batched", args.inputs * n,
                         lambda: beam.search(decoder, enc)),
        "beam_one_by_one": (f"beam {args.beam}, {args.inputs} inputs x {n} tok, one by one", args.inputs * n,
                            one_by_one),
    }
    times = interleaved_times({key: run for key, (_, _, run) in cases.items()}, args.repeats)
    pick = min if args.stat == "best" else statistics.median
    secs = {key: pick(t) for key, t in times.items()}

    print(f"decoder: {cfg.num_layers} layers, d_model {d}, vocab {vocab}, memory {mem_len}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.stat} of {args.repeats} "
          f"interleaved rounds")
    print(f"{'case':<48} {'seconds':>9} {'tokens/s':>10}")
    for key, (name, tokens, _) in cases.items():
        print(f"{name:<48} {secs[key]:>9.3f} {tokens / secs[key]:>10.1f}")
    print(f"cached_equals_recompute={same}")
    figures = [f"{key}_s={secs[key]:.4f} {key}_tokens_per_s={tokens / secs[key]:.1f}"
               for key, (_, tokens, _) in cases.items()]
    figures += [f"cached_equals_recompute={same}",
                f"kv_cache_speedup={secs['greedy_recompute'] / secs['greedy_cache']:.2f}",
                f"batched_beam_speedup={secs['beam_one_by_one'] / secs['beam_batched']:.2f}"]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
