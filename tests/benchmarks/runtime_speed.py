"""PyTorch against onnxruntime (fp32 and int8) on one speech model, side by side in one run: transcripts, WER and
real-time factor at the same search, file sizes, and the torch-free example's CTC greedy WER.

    python tests/benchmarks/runtime_speed.py --model recipes/synth_speech/exp/quick/final \
        --lm recipes/synth_speech/exp/quick/lm/final --data recipes/synth_speech/data/speech
    python tests/benchmarks/runtime_speed.py --model M --lm LM --data D --splits test_seen --max-utterances 40

The model and the LM are exported twice (fp32, and int8 with `--quantize int8`) into a temporary folder. Every
system decodes the same utterances (the first --max-utterances of each --splits manifest) with the same search:
joint CTC/attention beam --beam, the LM fused at the model's own weight and length bonus (or --lm-weight /
--length-bonus), every network on --threads threads. The utterances are cut into chunks of --chunk and the
systems take turns chunk by chunk, so that machine noise falls on all alike; RTF = decoding seconds / audio
seconds (audio loading included). "same" is the share of transcripts identical to PyTorch's. Then the toolkit's CTC
greedy transcripts against those of recipes/onnx_runtime/transcribe.py (onnxruntime + numpy only) on the fp32
export. With --caption-model and --caption-images, a captioning model is exported too and the three systems caption
the images (beam --beam): images/s and the share of captions identical to PyTorch's. Prints tables, then a last
line of key=value figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--model", type=Path, required=True, help="a trained speech model bundle (PyTorch)")
ap.add_argument("--lm", type=Path, help="a language model bundle to fuse (exported too)")
ap.add_argument("--data", type=Path, required=True, help="a folder of JSONL manifests (the synthetic corpus)")
ap.add_argument("--splits", nargs="+", default=["test_seen", "test_heldout", "test_unseen"])
ap.add_argument("--max-utterances", type=int, help="the first N of each split")
ap.add_argument("--beam", type=int, default=4)
ap.add_argument("--lm-weight", type=float)
ap.add_argument("--length-bonus", type=float)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--chunk", type=int, default=32, help="utterances per turn")
ap.add_argument("--caption-model", type=Path, help="a captioning model bundle to compare too")
ap.add_argument("--caption-images", nargs="+", help="images for it: files, folders or glob patterns")
args = ap.parse_args()
os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads

import torch  # noqa: E402

from toolkit.data.speech import read_jsonl_manifest  # noqa: E402
from toolkit.export import export_onnx  # noqa: E402
from toolkit.lm import load_lm  # noqa: E402
from toolkit.metrics.asr import normalize_transcript_for_scoring, wer_report  # noqa: E402
from toolkit.pipelines import Captioner, Transcriber  # noqa: E402
from toolkit.pipelines.captioner import expand_image_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def folder_bytes(directory: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in directory.glob(pattern))


def main() -> None:
    torch.set_num_threads(args.threads)
    records = [r for split in args.splits
               for r in read_jsonl_manifest(args.data / f"{split}.jsonl")[: args.max_utterances]]
    refs = {r.id: normalize_transcript_for_scoring(r.text) for r in records}
    audio_s = sum(r.duration for r in records)
    work = Path(tempfile.mkdtemp(prefix="runtime_speed."))
    exports = {}
    for name, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
        start = time.perf_counter()
        model_dir = export_onnx(args.model, work / f"model_{quantize or 'fp32'}", quantize=quantize)
        lm_dir = export_onnx(args.lm, work / f"lm_{quantize or 'fp32'}", quantize=quantize) if args.lm else None
        exports[name] = (model_dir, lm_dir, time.perf_counter() - start)
    systems = {"pytorch fp32": (args.model, args.lm)} | {k: v[:2] for k, v in exports.items()}
    loaded = {}
    for name, (model_dir, lm_dir) in systems.items():
        transcriber = Transcriber.from_pretrained(model_dir)
        lm = load_lm(lm_dir, tokenizer=transcriber.tokenizer) if lm_dir else None
        transcriber.transcribe([records[0].audio], beam_size=args.beam, lm=lm, vad=None)  # first-call costs
        loaded[name] = (transcriber, lm)
    hyps = {name: {} for name in systems}
    seconds = dict.fromkeys(systems, 0.0)
    for start in range(0, len(records), args.chunk):
        chunk = records[start : start + args.chunk]
        for name, (transcriber, lm) in loaded.items():
            t0 = time.perf_counter()
            out = transcriber.transcribe([r.audio for r in chunk], beam_size=args.beam, batch_size=16, lm=lm,
                                         lm_weight=args.lm_weight, length_bonus=args.length_bonus, vad=None)
            seconds[name] += time.perf_counter() - t0
            hyps[name].update({r.id: normalize_transcript_for_scoring(o.text) for r, o in zip(chunk, out)})
        print(f"  {min(start + args.chunk, len(records))}/{len(records)} utterances", file=sys.stderr, flush=True)

    sizes = {"pytorch fp32": folder_bytes(args.model, "*.safetensors") + (
        folder_bytes(args.lm, "*.safetensors") if args.lm else 0)}
    sizes |= {name: folder_bytes(m, "*.onnx") + (folder_bytes(lm, "*.onnx") if lm else 0)
              for name, (m, lm, _) in exports.items()}
    base = hyps["pytorch fp32"]
    figures, rows = {}, []
    for name in systems:
        report = wer_report(refs, hyps[name])
        same = sum(hyps[name][i] == base[i] for i in base) / len(base)
        rtf = seconds[name] / audio_s
        rows.append((name, report["wer"], report["cer"], same, rtf, seconds["pytorch fp32"] / seconds[name],
                     sizes[name] / 1e6))
        key = name.replace("pytorch fp32", "torch").replace("onnx ", "")
        figures |= {f"wer_{key}": report["wer"], f"same_{key}": same, f"rtf_{key}": rtf,
                    f"speedup_{key}": seconds["pytorch fp32"] / seconds[name], f"mb_{key}": sizes[name] / 1e6}

    # the torch-free example (CTC greedy) against the toolkit's CTC greedy, on the fp32 export
    manifest = work / "utterances.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(Path(r.audio).resolve()), "text": r.text}) + "\n"
                                for r in records), encoding="utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "recipes" / "onnx_runtime" / "transcribe.py"), "--model",
                          str(exports["onnx fp32"][0]), "--manifest", str(manifest), "--threads", str(args.threads)],
                         capture_output=True, text=True, check=True)
    free = {r.id: normalize_transcript_for_scoring(json.loads(line)["text"])
            for r, line in zip(records, run.stdout.splitlines())}
    greedy = loaded["pytorch fp32"][0].transcribe([r.audio for r in records], ctc_only=True, vad=None)
    greedy = {r.id: normalize_transcript_for_scoring(o.text) for r, o in zip(records, greedy)}
    figures["wer_ctc_toolkit"] = wer_report(refs, greedy)["wer"]
    figures["wer_ctc_torchfree"] = wer_report(refs, free)["wer"]
    figures["same_ctc_torchfree"] = sum(free[i] == greedy[i] for i in greedy) / len(greedy)

    search = f"joint beam {args.beam}" + (f" + LM {args.lm}" if args.lm else "")
    print(f"{len(records)} utterances ({audio_s / 60:.1f} min of audio) of {', '.join(args.splits)}; {search}; "
          f"{args.threads} threads; exports took " + ", ".join(f"{n} {e[2]:.0f} s" for n, e in exports.items()))
    print(f"{'system':<14} {'WER':>7} {'CER':>7} {'same':>6} {'RTF':>7} {'speed':>6} {'MB':>6}")
    for name, wer, cer, same, rtf, speed, mb in rows:
        print(f"{name:<14} {wer:>7.4f} {cer:>7.4f} {same:>6.3f} {rtf:>7.4f} {speed:>5.2f}x {mb:>6.1f}")
    print(f"CTC greedy WER: toolkit {figures['wer_ctc_toolkit']:.4f}, torch-free example "
          f"{figures['wer_ctc_torchfree']:.4f} ({figures['same_ctc_torchfree']:.3f} of transcripts identical)")
    figures["size_ratio_int8"] = figures["mb_fp32"] / figures["mb_int8"]
    if args.caption_model:
        figures |= caption_speed(work)
    print(" ".join(f"{k}={v:.4f}" for k, v in figures.items()))


def caption_speed(work: Path) -> dict[str, float]:
    """Images/s of PyTorch fp32, onnxruntime fp32 and int8 on the same images, taking turns image chunk by chunk."""
    images = [str(p) for p in expand_image_args(args.caption_images)]
    systems = {"pytorch fp32": Captioner.from_pretrained(args.caption_model)}
    for name, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
        out = export_onnx(args.caption_model, work / f"caption_{quantize or 'fp32'}", quantize=quantize)
        systems[name] = Captioner.from_pretrained(out)
    captions = {name: [] for name in systems}
    seconds = dict.fromkeys(systems, 0.0)
    for captioner in systems.values():
        captioner.caption(images[:2], beam_size=args.beam)  # first-call costs
    for start in range(0, len(images), args.chunk):
        for name, captioner in systems.items():
            t0 = time.perf_counter()
            captions[name] += [r.caption for r in captioner.caption(images[start : start + args.chunk],
                                                                     beam_size=args.beam)]
            seconds[name] += time.perf_counter() - t0
    print(f"captioning {len(images)} images of {args.caption_model}, beam {args.beam}:")
    figures = {}
    for name in systems:
        same = sum(a == b for a, b in zip(captions[name], captions["pytorch fp32"])) / len(images)
        rate = len(images) / seconds[name]
        print(f"  {name:<14} {rate:7.1f} images/s  {seconds['pytorch fp32'] / seconds[name]:5.2f}x  same {same:.3f}")
        key = name.replace("pytorch fp32", "torch").replace("onnx ", "")
        figures |= {f"images_per_s_{key}": rate, f"caption_same_{key}": same}
    return figures


if __name__ == "__main__":
    main()
