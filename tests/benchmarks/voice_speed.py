"""How fast each synthetic voice speaks the corpus's sentences: utterances per second of one process on one thread.

    python tests/benchmarks/voice_speed.py --utterances 40

For each voice (one per engine by default, `--voices` to name others): synthesis of the same `--utterances`
sentences of the speech corpus's text (3-20 words, as `toolkit synth speech` speaks them), at rate 1 and pitch 0,
resampling to 16 kHz and silence trimming included; one warm-up utterance first (Piper loads its model then).
Prints utterances/s, seconds of audio per second and the mean utterance length, then key=value figures.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from toolkit.synth.text_corpus import load_sentences
from toolkit.synth.text_normalize import spoken_form
from toolkit.synth.voices import Speaker, Voice, available, synthesize

DEFAULT = ("espeak:en-us+m3", "flite:slt", "flite:kal", "mbrola:us1", "pico:en-US", "piper:joe",
           "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", nargs="+", default=list(DEFAULT))
    ap.add_argument("--utterances", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sentences = load_sentences(("fortunes", "wordnet"), 3, 20)
    texts = [spoken_form(s) for s in random.Random(args.seed).sample(sentences, args.utterances)]
    figures = {}
    print(f"{'voice':<34} {'utt/s':>7} {'audio s/s':>9} {'mean s':>7}")
    for voice_id in args.voices:
        voice = Voice.parse(voice_id)
        reason = available(voice)
        if reason is not None:
            print(f"{voice_id:<34} skipped: {reason}")
            continue
        synthesize(Speaker(voice), "warm up")
        start = time.perf_counter()
        seconds = sum(len(synthesize(Speaker(voice), t)) / 16000 for t in texts)
        took = time.perf_counter() - start
        print(f"{voice_id:<34} {len(texts) / took:>7.1f} {seconds / took:>9.1f} {seconds / len(texts):>7.2f}")
        figures[voice_id] = len(texts) / took
    print(" ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
