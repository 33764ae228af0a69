"""Speech recognition end to end through the CLI and the recipe scripts, on corpora the tests make."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = [
    "model.d_model=32", "model.encoder.num_layers=1", "model.encoder.num_heads=2", "model.encoder.ffn_dim=64",
    "model.encoder.n_mels=40", "model.decoder.num_layers=1", "model.decoder.num_heads=2", "model.decoder.ffn_dim=64",
    "data.num_workers=0", "data.max_batch_seconds=20", "data.cmvn_utterances=4",
    "train.max_minutes=null", "train.max_epochs=null", "train.max_steps=6", "train.valid_every=3",
    "train.warmup_steps=2", "train.average_last=2", "train.keep_last=2",
]


def toolkit(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert (r.returncode == 0) == ok, f"{args}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_synth_speech_recipe_cli_end_to_end(tmp_path):
    data = tmp_path / "speech"
    toolkit("synth", "speech", "--out", data, "--train", 12, "--valid", 3, "--test-seen", 3, "--test-heldout", 3,
            "--test-unseen", 3, "--workers", 2)
    exp = tmp_path / "exp"
    conf = ROOT / "recipes/synth_speech/conf/quick.yaml"
    r = toolkit("train", conf, "-o", exp, f"data.train={data}/train.jsonl", f"data.valid={data}/valid.jsonl",
                *TINY_MODEL)
    assert "final:" in r.stdout and "wer=" in r.stdout.splitlines()[-1]
    for name in ("train_log.csv", "loss_curve.png", "final/model.safetensors", "best/config.json"):
        assert (exp / name).is_file(), name
    info = json.loads((exp / "final/config.json").read_text())
    assert info["info"]["task"] == "asr" and info["model"]["ctc"] is True

    out = tmp_path / "eval.json"
    r = toolkit("evaluate", "--model", exp / "final", "--data", data / "test_heldout.jsonl", "--beam", 2,
                "--ctc-weight", 0.5, "--out", out)
    assert "WER" in r.stdout and r.stdout.strip().splitlines()[-1].startswith("wer=")
    report = json.loads(out.read_text())
    assert len(report["utterances"]) == 3 and report["report"]["groups"]  # per-voice breakdown

    wavs = sorted((data / "wav" / "test_seen").glob("*.wav"))
    r = toolkit("transcribe", *wavs, "--model", exp / "final", "--json")
    assert [row["audio"] for row in json.loads(r.stdout)] == [str(w) for w in wavs]
    r = toolkit("transcribe", wavs[0], "--model", exp / "final", "--ctc-only")
    assert r.stdout.startswith(str(wavs[0]))
    # A captioning model or a missing file: one line, exit status 2.
    r = toolkit("transcribe", tmp_path / "missing.wav", "--model", exp / "final", ok=False)
    assert r.returncode == 2 and "missing.wav" in r.stderr and "Traceback" not in r.stderr

    # An external LM on the corpus's text-only sentences, with the speech model's tokenizer (run.sh stage 3),
    # fused into evaluation with the weight the speech model's bundle records (stage 4) and into transcription.
    assert info["info"]["decoding"]["lm_weight"] > 0
    lm = tmp_path / "lm"
    (tmp_path / "words.txt").write_text("Tatees\n")  # a word the text lacks, of letters it has
    r = toolkit("train", ROOT / "recipes/synth_speech/conf/lm.yaml", "-o", lm, f"tokenizer_from={exp}/final",
                f"data.text=[{data}/lm_text.txt]", "data.valid_size=20", "model.embed_dim=16", "model.hidden_dim=32",
                "train.max_steps=4", "train.valid_every=2", "train.warmup_steps=1",
                f"data.lexicon=[{tmp_path}/words.txt]")
    assert r.stdout.strip().splitlines()[-1].startswith("loss=") and "ppl=" in r.stdout
    lexicon = (lm / "final/lexicon.txt").read_text().split()
    assert "the" in lexicon and "tatees" in lexicon  # the text's words and the word list's
    # (What the penalty does to a search is tested in test_lexicon.py; an untrained model may end every hypothesis
    # mid-word at its length cap, so no outcome is asserted here.)
    r = toolkit("transcribe", *wavs, "--model", exp / "final", "--lm", lm / "final", "--oov-penalty", 2, "--json")
    assert [row["audio"] for row in json.loads(r.stdout)] == [str(w) for w in wavs]
    r = toolkit("evaluate", "--model", exp / "final", "--data", data / "test_seen.jsonl", "--beam", 2, "--lm",
                lm / "final", "--oov-penalty", 2)
    assert r.stdout.strip().splitlines()[-1].startswith("wer=")
    r = toolkit("transcribe", wavs[0], "--model", exp / "final", "--oov-penalty", 2, ok=False)
    assert r.returncode == 2 and r.stderr.strip().endswith("oov_penalty 2 needs a language model with a lexicon "
                                                           "(lm / --lm DIR)")
    r = toolkit("evaluate", "--model", exp / "final", "--data", data / "test_heldout.jsonl", "--beam", 2,
                "--lm", lm / "final")
    assert r.stdout.strip().splitlines()[-1].startswith("wer=")
    r = toolkit("transcribe", wavs[0], "--model", exp / "final", "--lm", lm / "final", "--lm-weight", 0.5,
                "--length-bonus", 1)
    assert r.stdout.startswith(str(wavs[0]))
    r = toolkit("evaluate", "--model", lm / "final", "--data", data / "test_heldout.jsonl", ok=False)
    assert r.returncode == 2 and "a language model bundle" in r.stderr and "Traceback" not in r.stderr


def write_tiny_librispeech(root: Path) -> None:
    """LibriSpeech layout: <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + .trans.txt."""
    rng = np.random.default_rng(0)
    words = ["HELLO", "WORLD", "SPEECH", "TEST", "AUDIO", "MODEL"]
    for subset, speakers in [("train-clean-100", ["19", "26"]), ("dev-clean", ["84"]), ("test-clean", ["61"])]:
        for spk in speakers:
            chapter = root / subset / spk / "100"
            chapter.mkdir(parents=True)
            lines = []
            for u in range(4):
                utt = f"{spk}-100-{u:04d}"
                t = np.arange(int(16000 * rng.uniform(0.8, 1.6))) / 16000
                wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * u) * t) + 0.01 * rng.standard_normal(len(t))
                sf.write(chapter / f"{utt}.flac", wave.astype(np.float32), 16000)
                lines.append(f"{utt} {' '.join(rng.choice(words, 3))}")
            (chapter / f"{spk}-100.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_librispeech_recipe_end_to_end(tmp_path):
    write_tiny_librispeech(tmp_path / "LibriSpeech")
    exp = tmp_path / "exp"
    r = subprocess.run(
        ["bash", str(ROOT / "recipes/librispeech/run.sh"), "--data", str(tmp_path / "LibriSpeech"),
         "--train-subsets", "train-clean-100", "--test-sets", "test-clean", "--exp", str(exp), "--",
         *TINY_MODEL, "tokenizer.vocab_size=30", "data.valid_subsets=[dev-clean]", "model.decoder.max_len=64"],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "stage 2" in r.stdout and "wer=" in r.stdout
    bundle = json.loads((exp / "final/config.json").read_text())
    assert "tokenizer.model" in bundle["files"]  # SentencePiece BPE
    rows = json.loads((exp / "eval/test-clean.json").read_text())["utterances"]
    assert len(rows) == 4 and rows[0]["reference"].islower()


def test_asr_recipe_configs_are_valid():
    from toolkit.config import load_config
    from toolkit.tasks.asr import AsrExperiment

    for config in sorted(ROOT.glob("recipes/*/conf/*.yaml")):
        if "task: asr" in config.read_text():
            exp = load_config(AsrExperiment, config)
            assert exp.model.ctc and exp.model.encoder["name"] == "conformer"
