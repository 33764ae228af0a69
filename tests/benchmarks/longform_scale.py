"""Do `transcribe` and `subtitle` scale? Peak memory, wall time and long-form WER for 10, 30 and 60 minutes of input.

    python tests/benchmarks/longform_scale.py --model recipes/synth_speech/exp/quick/final
    python tests/benchmarks/longform_scale.py --model M --task transcribe subtitle --repeats 1

Each length is assembled from held-out-voice utterances with silences and noise (`toolkit synth longform`) and run
through `Transcriber.transcribe` (and/or `Subtitler.subtitle`) in a fresh child process, which reports its own peak
resident memory (ru_maxrss) and the wall time of the call. `--repeats N` runs each length N times, interleaved
(10, 30, 60, 10, 30, 60, ...), and keeps the fastest time and the largest peak, so that a noisy machine slows no
length more than another. Every length cycles the same first `--utterances` records (about 2 minutes of speech by
default), so that all lengths hold the same mix of voices and sentences and the comparison measures the scaling,
not the content.

Accuracy: the WER of each long-form transcript (all its text against all the reference text of the recording) is
compared with the WER of the same utterances cut out of the shortest recording and decoded one by one, whole
(`vad=None`). Bars: 60-min peak <= 1.2 x 10-min peak (`memory_ok`), 60-min time <= 1.1 x 6 x 10-min time
(`time_ok`), long-form WER <= 1.1 x one-by-one WER on the shortest recording (`wer_ok`). Prints a table, then
key=value figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer

ROOT = Path(__file__).resolve().parents[2] / "recipes" / "synth_speech"


def child(task: str, model: Path, wav: Path, vad: str, beam: int, lm: Path | None) -> None:
    from toolkit.media import VadConfig

    if task == "subtitle":
        from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler

        subtitler = Subtitler.from_pretrained(model, SubtitleOptions(vad=VadConfig(backend=vad), beam_size=beam),
                                              lm=lm)
        t0 = time.perf_counter()
        result = subtitler.subtitle(wav)
        text = " ".join(c.text.replace("\n", " ") for c in result.cues)
    else:
        from toolkit.pipelines import Transcriber

        transcriber = Transcriber.from_pretrained(model, lm=lm)
        t0 = time.perf_counter()
        [result] = transcriber.transcribe([wav], beam_size=beam, vad=VadConfig(backend=vad))
        text = result.text
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "duration": result.duration, "text": text}))


def wer(refs: list[str], hyp: str) -> float:
    from toolkit.metrics.asr import normalize_transcript_for_scoring

    ref = " ".join(normalize_transcript_for_scoring(r) for r in refs)
    return jiwer.wer(ref, normalize_transcript_for_scoring(hyp))


def one_by_one(model: Path, wav: Path, timeline, beam: int, lm: Path | None) -> str:
    """The speech of `wav` cut out at the timeline's utterance times and decoded one by one, whole."""
    from toolkit.media import read_spans
    from toolkit.pipelines import Transcriber

    speech = [s for s in timeline if s.kind == "speech"]
    waves = list(read_spans(wav, [(s.start, s.end) for s in speech]))
    results = Transcriber.from_pretrained(model, lm=lm).transcribe(waves, beam_size=beam, vad=None)
    return " ".join(r.text for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "exp" / "quick" / "final")
    ap.add_argument("--lm", type=Path, help="a language model bundle to fuse")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data" / "speech" / "test_heldout.jsonl")
    ap.add_argument("--task", nargs="+", choices=["transcribe", "subtitle"], default=["transcribe"])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    ap.add_argument("--vad", choices=["silero", "energy"], default="silero")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--utterances", type=int, default=40, help="cycle the first N utterances of the manifest")
    ap.add_argument("--repeats", type=int, default=2, help="runs per length (fastest time, largest peak kept)")
    ap.add_argument("--child", nargs=2, metavar=("TASK", "WAV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.model, Path(args.child[1]), args.vad, args.beam, args.lm)

    from toolkit.data.speech import read_jsonl_manifest
    from toolkit.synth.longform import LongformConfig, assemble_longform

    records = read_jsonl_manifest(args.manifest)[: args.utterances]
    lengths = sorted(args.minutes)
    best: dict[tuple[str, float], dict] = {}  # per task and length: the fastest time, the largest peak
    with tempfile.TemporaryDirectory() as tmp:
        wavs, refs = {}, {}
        for minutes in lengths:
            wavs[minutes] = Path(tmp) / f"longform_{minutes:g}.wav"
            timeline = assemble_longform(records, wavs[minutes], LongformConfig(minutes=minutes))
            refs[minutes] = [s.text for s in timeline if s.kind == "speech"]
            if minutes == lengths[0]:
                single = one_by_one(args.model, wavs[minutes], timeline, args.beam, args.lm)
        lm = ["--lm", str(args.lm)] if args.lm else []
        for _ in range(args.repeats):
            for task in args.task:
                for minutes in lengths:
                    out = subprocess.run([sys.executable, __file__, "--model", str(args.model), "--vad", args.vad,
                                          "--beam", str(args.beam), *lm, "--child", task, str(wavs[minutes])],
                                         capture_output=True, text=True, check=True)
                    run = json.loads(out.stdout.strip().splitlines()[-1])
                    kept = best.setdefault((task, minutes), run)
                    kept["seconds"] = min(kept["seconds"], run["seconds"])
                    kept["peak_mb"] = max(kept["peak_mb"], run["peak_mb"])
    wer_single = wer(refs[lengths[0]], single)
    print(f"{'task':>10} {'minutes':>8} {'wall s':>8} {'RTF':>7} {'peak RSS MB':>12} {'WER':>6}")
    for (task, minutes), r in sorted(best.items()):
        r["wer"] = wer(refs[minutes], r["text"])
        print(f"{task:>10} {minutes:>8g} {r['seconds']:>8.1f} {r['seconds'] / r['duration']:>7.4f} "
              f"{r['peak_mb']:>12.0f} {r['wer']:>6.3f}")
    print(f"{'one by one':>10} {lengths[0]:>8g} {'':>8} {'':>7} {'':>12} {wer_single:>6.3f}")
    m0, m1 = lengths[0], lengths[-1]
    figures = [f"wer_single={wer_single:.4f}", f"length_ratio={m1 / m0:g}"]
    for task in args.task:
        first, last = best[(task, m0)], best[(task, m1)]
        memory, seconds, wer_ratio = last["peak_mb"] / first["peak_mb"], last["seconds"] / first["seconds"], \
            first["wer"] / wer_single
        figures += [f"{task}_memory_ratio={memory:.3f}", f"{task}_time_ratio={seconds:.2f}",
                    f"{task}_wer_{m0:g}={first['wer']:.4f}", f"{task}_wer_ratio={wer_ratio:.3f}",
                    f"{task}_peak_mb_{m1:g}={last['peak_mb']:.0f}", f"{task}_seconds_{m1:g}={last['seconds']:.1f}",
                    f"{task}_memory_ok={int(memory <= 1.2)}", f"{task}_time_ok={int(seconds <= 1.1 * m1 / m0)}",
                    f"{task}_wer_ok={int(wer_ratio <= 1.1)}"]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
