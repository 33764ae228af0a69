"""Transcribe WAV files with an exported speech model (`toolkit export`), with only onnxruntime, numpy and soundfile:
no PyTorch, no toolkit. CTC decoding: greedy (best path) or a CTC prefix beam search, in numpy.

    python transcribe.py --model exp/quick_onnx a.wav b.wav            # one line of JSON per file
    python transcribe.py --model exp/quick_onnx --beam 8 a.wav
    python transcribe.py --model exp/quick_onnx --manifest test.jsonl  # + WER against its "text" fields

What it reads from the exported folder: config.json's "onnx" section (graph files, sample rate, special ids, the
tokens of every id) and encoder.onnx, whose graph takes raw audio (B, N) float32 + lengths (B,) int64 and returns
CTC log-probabilities (B, T, V). Audio must already be at the model's sample rate (16 kHz): resample first, e.g.
`sox in.mp3 -r 16000 -c 1 out.wav`. The attention decoder and LM fusion need the toolkit (`toolkit transcribe`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf


class Failure(Exception):
    """A one-line error for the user."""


class CtcSpeechModel:
    """The exported encoder + CTC head of `directory`; `log_probs(waves)` -> per wave its `(T, V)` log-probs."""

    def __init__(self, directory: Path, threads: int = 0):
        try:
            meta = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise Failure(f"{directory / 'config.json'}: cannot read it ({e})") from None
        runtime = meta.get("onnx") if meta.get("runtime") == "onnx" else None
        if not isinstance(runtime, dict) or runtime.get("kind") != "speech":
            raise Failure(f"{directory}: not an exported speech model (run: toolkit export --model BUNDLE -o DIR)")
        encoder = runtime["graphs"]["encoder"]
        if "ctc_log_probs" not in encoder["outputs"]:
            raise Failure(f"{directory}: this model has no CTC head; it needs the toolkit's attention decoder")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(directory / encoder["file"]), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = encoder["outputs"]
        self.sample_rate = int(runtime["sample_rate"])
        self.min_samples = int(runtime["min_input_samples"])
        self.blank = int(runtime["blank_id"])
        self.first_text_id = 1 + max(runtime[k] for k in ("blank_id", "bos_id", "eos_id", "unk_id"))
        self.tokens = runtime["tokens"]
        self.join = runtime["token_join"]

    def log_probs(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        n = max(self.min_samples, max(len(w) for w in waves))
        audio = np.zeros((len(waves), n), dtype=np.float32)
        for i, w in enumerate(waves):
            audio[i, : len(w)] = w
        lengths = np.array([len(w) for w in waves], dtype=np.int64)
        out = dict(zip(self.outputs, self.session.run(None, {"audio": audio, "audio_lengths": lengths})))
        return [lp[:t] for lp, t in zip(out["ctc_log_probs"], out["memory_lengths"])]

    def text(self, ids: list[int]) -> str:
        text = self.join.join(self.tokens[i] for i in ids if i >= self.first_text_id)
        return " ".join(text.replace("\u2581", " ").split())


def ctc_greedy(log_probs: np.ndarray, blank: int) -> list[int]:
    """Best path: the argmax of every frame, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(-1)
    keep = (best != blank) & (best != np.concatenate([[blank], best[:-1]]))
    return best[keep].tolist()


def ctc_prefix_beam(log_probs: np.ndarray, blank: int, beam: int, token_beam: int = 8) -> list[int]:
    """CTC prefix beam search: the `beam` most probable label prefixes, each with its probability of ending in
    a blank and in a non-blank (log space), extended frame by frame with the frame's `token_beam` best tokens."""
    prefixes: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}  # prefix -> (log p_b, log p_nb)
    for frame in log_probs:
        candidates = np.argsort(frame)[::-1][:token_beam]
        grown: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], which: int, value: float) -> None:
            entry = grown.setdefault(prefix, [-np.inf, -np.inf])
            entry[which] = np.logaddexp(entry[which], value)

        for prefix, (p_b, p_nb) in prefixes.items():
            total = np.logaddexp(p_b, p_nb)
            for token in candidates:
                p = float(frame[token])
                if token == blank:
                    add(prefix, 0, total + p)
                elif prefix and prefix[-1] == token:
                    add(prefix, 1, p_nb + p)                  # the same label continues
                    add(prefix + (int(token),), 1, p_b + p)   # a new label after a blank
                else:
                    add(prefix + (int(token),), 1, total + p)
        best = sorted(grown.items(), key=lambda kv: np.logaddexp(*kv[1]), reverse=True)[:beam]
        prefixes = {prefix: (p_b, p_nb) for prefix, (p_b, p_nb) in best}
    return list(max(prefixes.items(), key=lambda kv: np.logaddexp(*kv[1]))[0])


def read_wave(path: str, sample_rate: int) -> np.ndarray:
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as e:
        raise Failure(f"{path}: cannot read it as audio ({' '.join(str(e).split())})") from None
    if rate != sample_rate:
        raise Failure(f"{path}: {rate} Hz; the model takes {sample_rate} Hz (resample: sox IN -r {sample_rate} OUT)")
    return data.mean(axis=1)


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference words)."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return row[-1], len(r)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a folder written by `toolkit export`")
    ap.add_argument("--beam", type=int, default=0, help="CTC prefix beam size (default 0: greedy)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default 0: its choice)")
    ap.add_argument("--manifest", help="a JSONL manifest (audio relative to its folder, text): prints WER too")
    ap.add_argument("audio", nargs="*", help="WAV / FLAC files at the model's sample rate")
    args = ap.parse_args()
    try:
        model = CtcSpeechModel(args.model, args.threads)
        items = [(path, None) for path in args.audio]
        if args.manifest:
            root = Path(args.manifest).parent
            for n, line in enumerate(Path(args.manifest).read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        entry = json.loads(line)
                        items.append((str(root / entry["audio"]), str(entry["text"])))
                    except (ValueError, KeyError, TypeError) as e:
                        raise Failure(f"{args.manifest}:{n}: not a manifest line with audio and text ({e})") from None
        if not items:
            raise Failure("no audio given (files, or --manifest)")
        errors = words = 0
        for start in range(0, len(items), args.batch_size):
            batch = items[start : start + args.batch_size]
            for (path, ref), lp in zip(batch, model.log_probs([read_wave(p, model.sample_rate) for p, _ in batch])):
                ids = ctc_prefix_beam(lp, model.blank, args.beam) if args.beam > 0 else ctc_greedy(lp, model.blank)
                text = model.text(ids)
                print(json.dumps({"audio": path, "text": text}, ensure_ascii=False), flush=True)
                if ref is not None:
                    e, w = word_errors(" ".join(ref.lower().split()), text)
                    errors, words = errors + e, words + w
        if words:
            print(f"wer={errors / words:.4f} words={words}", file=sys.stderr)
    except Failure as e:
        print(f"transcribe.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
