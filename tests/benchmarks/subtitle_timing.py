"""Subtitle timing and long-form accuracy on a recording whose speech times are known.

    python tests/benchmarks/subtitle_timing.py --model recipes/synth_speech/exp/quick/final --minutes 5

Assembles a long recording from held-out-voice utterances (`toolkit synth longform`: silences of 0.6-2.5 s
between them, every sixth gap a stretch of white / pink noise or chords), subtitles it with `Subtitler`, and
scores the cues against the recording's timeline (`toolkit.subtitles.scoring.timing_report`): cue start errors,
cues over pure silence / noise, overlaps, subtitling-rule violations. Long-form WER (all cue text against all
reference text) is compared with the WER of the same utterances cut out of the same recording and decoded one
by one. Prints a table, then key=value figures (`wer_ratio` = long-form / one-by-one WER: inf when only the
one-by-one WER is 0, nan when both are).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jiwer

from toolkit.data.speech import read_jsonl_manifest
from toolkit.synth.longform import LongformConfig, assemble_longform
from toolkit.media import read_spans
from toolkit.metrics.asr import normalize_transcript_for_scoring
from toolkit.pipelines.subtitler import SubtitleOptions, Subtitler
from toolkit.media import VadConfig
from toolkit.subtitles.scoring import timing_report

ROOT = Path(__file__).resolve().parents[2] / "recipes" / "synth_speech"


def wer(refs: list[str], hyps: list[str]) -> float:
    ref = " ".join(normalize_transcript_for_scoring(r) for r in refs).split()
    hyp = " ".join(normalize_transcript_for_scoring(h) for h in hyps).split()
    return jiwer.wer(" ".join(ref), " ".join(hyp)) if ref else float("nan")


def ratio(a: float, b: float) -> float:
    """a / b, where a zero `b` gives inf (a > 0) or nan (a == 0: both perfect, no ratio to speak of)."""
    if b == 0:
        return float("inf") if a > 0 else float("nan")
    return a / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "exp" / "quick" / "final")
    ap.add_argument("--lm", type=Path, help="a language model bundle to fuse")
    ap.add_argument("--manifest", type=Path, default=ROOT / "data" / "speech" / "test_heldout.jsonl")
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the long-form recording")
    ap.add_argument("--vad", choices=["silero", "energy"], default="silero")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep the recording here (default: a temporary folder)")
    args = ap.parse_args()

    records = read_jsonl_manifest(args.manifest)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        wav = work / "longform.wav"
        timeline = assemble_longform(records, wav, LongformConfig(minutes=args.minutes, seed=args.seed))
        speech = [s for s in timeline if s.kind == "speech"]
        options = SubtitleOptions(vad=VadConfig(backend=args.vad), beam_size=args.beam)
        subtitler = Subtitler.from_pretrained(args.model, options, lm=args.lm)

        t0 = time.perf_counter()
        result = subtitler.subtitle(wav)
        seconds = time.perf_counter() - t0
        report = timing_report(result.cues, timeline, options.rules)

        waves = list(read_spans(wav, [(s.start, s.end) for s in speech]))
        one_by_one = subtitler.transcriber.transcribe(waves, beam_size=args.beam, vad=None)  # whole utterances
    refs = [s.text for s in speech]
    wer_long = wer(refs, [c.text.replace("\n", " ") for c in result.cues])
    wer_single = wer(refs, [r.text for r in one_by_one])
    duration = result.duration

    rows = [
        ("recording", f"{duration / 60:.1f} min, {len(speech)} utterances, {len(result.cues)} cues"),
        ("cue start error median / p95 / max (s)",
         f"{report['start_error_median']:.3f} / {report['start_error_p95']:.3f} / {report['start_error_max']:.3f}"),
        ("utterances without a cue start within 1 s", report["missed_utterances"]),
        ("cues over pure silence / noise", report["cues_in_nonspeech"]),
        ("overlapping cues", report["overlapping_cues"]),
        ("cue rule violations", report["rule_violations"]),
        ("WER long-form / one by one", f"{wer_long:.3f} / {wer_single:.3f}"),
        ("real-time factor (subtitling)", f"{seconds / duration:.4f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for example in report["nonspeech_examples"] + report["violation_examples"]:
        print("  ", example)
    print(f"start_median={report['start_error_median']:.3f} start_p95={report['start_error_p95']:.3f} "
          f"nonspeech_cues={report['cues_in_nonspeech']} overlaps={report['overlapping_cues']} "
          f"violations={report['rule_violations']} missed={report['missed_utterances']} "
          f"wer_longform={wer_long:.4f} wer_single={wer_single:.4f} wer_ratio={ratio(wer_long, wer_single):.3f} "
          f"rtf={seconds / duration:.4f}")


if __name__ == "__main__":
    main()
