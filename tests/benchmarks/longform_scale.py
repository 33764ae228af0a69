"""Does subtitling scale? Peak memory and wall time for 10, 30 and 60 minutes of input, in one run.

    python tests/benchmarks/longform_scale.py --model recipes/synth_speech/exp/quick/final

Each length is assembled from held-out-voice utterances with silences and noise (`toolkit synth longform`) and
subtitled in a fresh child process, which reports its own peak resident memory (ru_maxrss) and the wall time of
`Subtitler.subtitle`; `--repeats N` runs each length N times, interleaved (10, 30, 60, 10, 30, 60, ...), and
keeps the fastest time and the largest peak, so that a noisy machine slows no length more than another. Every length
cycles the same first `--utterances` records (about 2 minutes of speech by default), so that all lengths hold the
same mix of voices and sentences: with the whole split, the 10-minute file would hold only its first 139
utterances and the longer ones the rest too, and the comparison would measure the content, not the scaling. Memory should stay flat (60-min peak <= 1.2 x 10-min peak) and time linear
(60 min <= 6.6 x 10 min). Prints a table, then key=value figures.
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

ROOT = Path(__file__).resolve().parents[2] / "recipes" / "synth_speech"


def child(model: Path, wav: Path, vad: str) -> None:
    from toolkit.media import VadConfig
    from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler

    subtitler = Subtitler.from_pretrained(model, SubtitleOptions(vad=VadConfig(backend=vad)))
    t0 = time.perf_counter()
    result = subtitler.subtitle(wav)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "cues": len(result.cues),
                      "duration": result.duration}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "exp" / "quick" / "final")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data" / "speech" / "test_heldout.jsonl")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    ap.add_argument("--vad", choices=["silero", "energy"], default="silero")
    ap.add_argument("--utterances", type=int, default=40, help="cycle the first N utterances of the manifest")
    ap.add_argument("--repeats", type=int, default=2, help="runs per length (fastest time, largest peak kept)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.model, args.child, args.vad)

    from toolkit.data.speech import read_jsonl_manifest
    from toolkit.data.synth.longform import LongformConfig, assemble_longform

    records = read_jsonl_manifest(args.manifest)[: args.utterances]
    best: dict[float, dict] = {}  # per length: the fastest time, the largest peak
    with tempfile.TemporaryDirectory() as tmp:
        wavs = {}
        for minutes in args.minutes:
            wavs[minutes] = Path(tmp) / f"longform_{minutes:g}.wav"
            assemble_longform(records, wavs[minutes], LongformConfig(minutes=minutes))
        for _ in range(args.repeats):
            for minutes in args.minutes:
                out = subprocess.run([sys.executable, __file__, "--model", str(args.model), "--vad", args.vad,
                                      "--child", str(wavs[minutes])], capture_output=True, text=True, check=True)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                kept = best.setdefault(minutes, run)
                kept["seconds"] = min(kept["seconds"], run["seconds"])
                kept["peak_mb"] = max(kept["peak_mb"], run["peak_mb"])
    runs = sorted(best.items())
    print(f"{'minutes':>8} {'cues':>6} {'wall s':>8} {'RTF':>7} {'peak RSS MB':>12}")
    for minutes, r in runs:
        print(f"{minutes:>8g} {r['cues']:>6} {r['seconds']:>8.1f} {r['seconds'] / r['duration']:>7.4f} "
              f"{r['peak_mb']:>12.0f}")
    (m0, first), (m1, last) = runs[0], runs[-1]
    print(f"memory_ratio={last['peak_mb'] / first['peak_mb']:.3f} time_ratio={last['seconds'] / first['seconds']:.2f} "
          f"length_ratio={m1 / m0:g} peak_mb_{m0:g}={first['peak_mb']:.0f} peak_mb_{m1:g}={last['peak_mb']:.0f} "
          f"seconds_{m0:g}={first['seconds']:.1f} seconds_{m1:g}={last['seconds']:.1f}")


if __name__ == "__main__":
    main()
