"""Speech recognition quality and speed on the synthetic speech corpus, next to pocketsphinx, in one run.

    python tests/benchmarks/asr_quality.py --model recipes/synth_speech/exp/quick/final
    python tests/benchmarks/asr_quality.py --model DIR --max-utterances 100 --no-pocketsphinx
    python tests/benchmarks/asr_quality.py --model DIR --no-pocketsphinx --lm LM_DIR --lm-weight 0.3 0.5 \
        --length-bonus 0 1          # + shallow fusion with a language model, every weight x bonus pair
    python tests/benchmarks/asr_quality.py --model DIR --no-pocketsphinx --lm LM_DIR --lm-weight 0.7 \
        --length-bonus 1.5 --oov-penalty 0 3   # + the OOV penalty of the LM's lexicon (toolkit.lm.lexicon)

For the seen-voice, held-out-voice and unseen-voice test splits (test_unseen when the corpus has it: corpora
made before it existed do not): WER and CER of our model (joint CTC/attention beam 4,
batched) and its real-time factor on this machine's CPU threads; then pocketsphinx (PyPI `pocketsphinx`, which
ships its own US English model; install it for the benchmark only) on the same utterances: WER, CER and RTF.
With --lm, our model is also run with the language model fused into its search for every pair of --lm-weight
and --length-bonus values (rows "toolkit+lm W/B"), times every --oov-penalty (a P > 0 shows as "W/B/P"). RTF =
decoding seconds / audio seconds, audio loading included for both. A second table breaks every split's WER down by
engine (the part of the manifest's "voice" before ":", e.g. pico, mbrola, festival), every system on the same
utterances; --splits picks splits. Prints the tables, then key=value figures (per engine: `..._wer_unseen_pico`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from toolkit.data.audio import load_audio
from toolkit.data.speech import read_jsonl_manifest
from toolkit.lm import LMBundle, load_lm
from toolkit.media import VadConfig
from toolkit.metrics.asr import normalize_transcript_for_scoring, wer_report
from toolkit.pipelines import Transcriber

DATA = Path(__file__).resolve().parents[2] / "recipes" / "synth_speech" / "data" / "speech"


def ours(transcriber: Transcriber, records, beam: int, ctc_weight: float, lm: LMBundle | None = None,
         lm_weight: float | None = None, length_bonus: float | None = None,
         oov_penalty: float | None = None, vad: VadConfig | None = None) -> tuple[dict[str, str], float]:
    start = time.perf_counter()
    results = transcriber.transcribe([r.audio for r in records], beam_size=beam, batch_size=16, ctc_weight=ctc_weight,
                                     lm=lm, lm_weight=lm_weight, length_bonus=length_bonus, oov_penalty=oov_penalty,
                                     vad=vad)
    return {r.id: res.text for r, res in zip(records, results)}, time.perf_counter() - start


def pocketsphinx(records) -> tuple[dict[str, str], float]:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    texts = {}
    start = time.perf_counter()
    for r in records:
        pcm = (np.clip(load_audio(r.audio), -1, 1) * 32767).astype(np.int16)
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts[r.id] = normalize_transcript_for_scoring(hyp.hypstr if hyp else "")
    return texts, time.perf_counter() - start


def engine_of(record) -> str:
    """The synthesiser of a corpus utterance: "pico" for voice "pico:en-GB" (the speaker id where no voice is given)."""
    voice = record.extra.get("voice") or record.speaker or "?"
    return str(voice).split(":", 1)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a trained speech model bundle")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="the synthetic corpus (test_seen / test_heldout / test_unseen.jsonl)")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--ctc-weight", type=float, default=0.3)
    ap.add_argument("--max-utterances", type=int, help="the first N utterances of each split")
    ap.add_argument("--splits", nargs="+", choices=["seen", "heldout", "unseen"],
                    default=["seen", "heldout", "unseen"], help="test splits to score (default: all three)")
    ap.add_argument("--no-pocketsphinx", action="store_true")
    ap.add_argument("--lm", type=Path, help="a language model bundle (toolkit train, task lm) to fuse")
    ap.add_argument("--lm-weight", type=float, nargs="+", default=[0.3], help="LM weights to try (default: 0.3)")
    ap.add_argument("--length-bonus", type=float, nargs="+", default=[0.0], help="length bonuses to try (0)")
    ap.add_argument("--oov-penalty", type=float, nargs="+", default=[0.0],
                    help="OOV penalties to try, with an LM that has a lexicon (0)")
    ap.add_argument("--vad", choices=["none", "silero"], default="none",
                    help="none: decode each utterance whole, as `toolkit evaluate` does (default); silero: through "
                         "the voice activity gate of `toolkit transcribe`")
    args = ap.parse_args()
    vad = None if args.vad == "none" else VadConfig()
    transcriber = Transcriber.from_pretrained(args.model)
    lm = load_lm(args.lm, tokenizer=transcriber.tokenizer) if args.lm else None
    fused = ([(w, b, p) for w in args.lm_weight for b in args.length_bonus for p in args.oov_penalty]
             if lm is not None else [])
    warm = read_jsonl_manifest(args.data / "valid.jsonl")[:4]
    ours(transcriber, warm, args.beam, args.ctc_weight, vad=vad)  # first-call costs are not part of the RTF
    rows, engine_rows, figures = [], [], {}
    for key in args.splits:
        split = f"test_{key}"
        if split == "test_unseen" and not (args.data / f"{split}.jsonl").is_file():
            continue
        records = read_jsonl_manifest(args.data / f"{split}.jsonl")[: args.max_utterances]
        refs = {r.id: normalize_transcript_for_scoring(r.text) for r in records}
        audio_s = sum(r.duration for r in records)
        systems = [("toolkit", *ours(transcriber, records, args.beam, args.ctc_weight, vad=vad))]
        systems += [(f"toolkit+lm {w:g}/{b:g}" + (f"/{p:g}" if p else ""),
                     *ours(transcriber, records, args.beam, args.ctc_weight, lm, w, b, p, vad)) for w, b, p in fused]
        if not args.no_pocketsphinx:
            systems.append(("pocketsphinx", *pocketsphinx(records)))
        for name, hyps, seconds in systems:
            report = wer_report(refs, hyps)
            rows.append((split, name, report["wer"], report["cer"], seconds / audio_s, len(records)))
            tag = {"toolkit": "", "pocketsphinx": "pocketsphinx_"}.get(
                name, name.replace("toolkit+lm ", "lm").replace("/", "_b", 1).replace("/", "_p") + "_")
            figures[f"{tag}wer_{key}"] = report["wer"]
            figures[f"{tag}cer_{key}"] = report["cer"]
            figures[f"{tag}rtf_{key}"] = seconds / audio_s
            for engine in sorted({engine_of(r) for r in records}):
                ids = [r.id for r in records if engine_of(r) == engine]
                part = wer_report({i: refs[i] for i in ids}, {i: hyps[i] for i in ids})
                engine_rows.append((split, engine, name, part["wer"], part["cer"], len(ids)))
                figures[f"{tag}wer_{key}_{engine}"] = part["wer"]
    print(f"model {args.model}; beam {args.beam}, CTC weight {args.ctc_weight}; VAD {args.vad}; "
          f"{torch.get_num_threads()} threads"
          + (f"; LM {args.lm} (rows toolkit+lm weight/length bonus[/OOV penalty])" if lm is not None else ""))
    print(f"{'split':<14} {'system':<20} {'WER':>7} {'CER':>7} {'RTF':>7} {'utts':>5}")
    for split, name, wer, cer, rtf, n in rows:
        print(f"{split:<14} {name:<20} {wer:>7.3f} {cer:>7.3f} {rtf:>7.4f} {n:>5}")
    print(f"\n{'split':<14} {'engine':<10} {'system':<20} {'WER':>7} {'CER':>7} {'utts':>5}")
    for split, engine, name, wer, cer, n in sorted(engine_rows, key=lambda row: row[:2]):
        print(f"{split:<14} {engine:<10} {name:<20} {wer:>7.3f} {cer:>7.3f} {n:>5}")
    print(" ".join(f"{k}={v:.4f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
