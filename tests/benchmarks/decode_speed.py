"""Decoding speed, measured side by side in one run (not a test: the machine is noisy, ratios are what count).

1. Greedy decoding of 128 tokens with the KV cache vs recomputing the whole prefix at every step.
2. Batched beam search (beam 4) over 32 inputs vs the same search run one input at a time.

    python tests/benchmarks/decode_speed.py [--tokens 128] [--inputs 32] [--repeats 3]

Prints a table, then a last line of key=value figures.
"""

from __future__ import annotations

import argparse
import time

import torch

from toolkit.decode import BeamSearch, DecodingOptions
from toolkit.model import BOS_ID, DecoderConfig, EncoderOutput, TransformerDecoder


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--beam-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    d, vocab, mem_len = 256, 1000, 100
    cfg = DecoderConfig(num_layers=6, num_heads=4, ffn_dim=1024, dropout=0.0, max_len=args.tokens + 2)
    decoder = TransformerDecoder(vocab, d, cfg).eval()

    enc = EncoderOutput(torch.randn(4, mem_len, d), torch.full((4,), mem_len))
    same = torch.equal(greedy_steps(decoder, enc, 16, True), greedy_steps(decoder, enc, 16, False))
    t_cache = best_time(lambda: greedy_steps(decoder, enc, args.tokens, True), args.repeats)
    t_full = best_time(lambda: greedy_steps(decoder, enc, args.tokens, False), args.repeats)

    lengths = torch.randint(mem_len // 2, mem_len + 1, (args.inputs,))
    enc = EncoderOutput(torch.randn(args.inputs, mem_len, d), lengths)
    n = args.beam_tokens
    beam = BeamSearch(DecodingOptions(beam_size=args.beam, max_length=n, min_length=n, repetition_limit=0))
    t_batched = best_time(lambda: beam.search(decoder, enc), args.repeats)

    def one_by_one():
        for i in range(args.inputs):
            k = int(enc.lengths[i])
            beam.search(decoder, EncoderOutput(enc.memory[i : i + 1, :k], enc.lengths[i : i + 1]))

    t_single = best_time(one_by_one, max(1, args.repeats - 1))

    print(f"decoder: {cfg.num_layers} layers, d_model {d}, vocab {vocab}, memory {mem_len}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeats}")
    print(f"{'case':<48} {'seconds':>9} {'tokens/s':>10}")
    rows = [
        (f"greedy {args.tokens} tok x4, KV cache", t_cache, 4 * args.tokens / t_cache),
        (f"greedy {args.tokens} tok x4, recompute prefix", t_full, 4 * args.tokens / t_full),
        (f"beam {args.beam}, {args.inputs} inputs x {n} tok, batched", t_batched, args.inputs * n / t_batched),
        (f"beam {args.beam}, {args.inputs} inputs x {n} tok, one by one", t_single, args.inputs * n / t_single),
    ]
    for name, secs, tps in rows:
        print(f"{name:<48} {secs:>9.3f} {tps:>10.1f}")
    print(f"cached_equals_recompute={same}")
    print(f"kv_cache_speedup={t_full / t_cache:.2f} batched_beam_speedup={t_single / t_batched:.2f}")


if __name__ == "__main__":
    main()
