"""The toolkit learns, not only runs: a tiny Conformer CTC/attention model, trained by `Trainer` on four short
espeak-ng utterances, transcribes those same utterances back (WER <= 0.1 by attention greedy search and by CTC
greedy decoding), and does not after a handful of updates (so the check can fail)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch
from safetensors.torch import save_file

from toolkit.data.audio import load_audio
from toolkit.data.padding import pad_sequences
from toolkit.decode import DecodingOptions, ctc_greedy, decode
from toolkit.metrics.asr import wer_report
from toolkit.model import build_model
from toolkit.model.audio_frontend import FeatureStats
from toolkit.text import train_tokenizer
from toolkit.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (apt-get install espeak-ng)")

TEXTS = ["red cat", "blue dog", "green fish", "big bird"]
STEPS = 80  # transcripts right from about update 60 (seeds 0 and 1); 10 updates leave them wrong
LR = 8e-3


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    """The four texts spoken by espeak-ng, as 16 kHz float32 waveforms."""
    root = tmp_path_factory.mktemp("overfit")
    waves = []
    for i, text in enumerate(TEXTS):
        wav = root / f"u{i}.wav"
        subprocess.run(["espeak-ng", "-s", "200", "-w", str(wav), text], check=True, capture_output=True)
        waves.append(torch.from_numpy(load_audio(wav)))  # resampled from espeak-ng's 22.05 kHz
    return waves


def train(waves: list[torch.Tensor], steps: int, out) -> tuple[dict[str, str], dict[str, str]]:
    """Train for `steps` full-batch updates; the attention-greedy and the CTC-greedy transcripts by utterance."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer("char", TEXTS)
    model = build_model({
        "vocab_size": tokenizer.vocab_size, "d_model": 32, "ctc": True,
        "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "n_mels": 40,
                    "kernel_size": 15, "dropout": 0.0, "freq_masks": 0, "time_masks": 0,
                    "subsampling_channels": 16},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "dropout": 0.0, "max_len": 32},
    })
    x, lengths = pad_sequences(waves)
    stats = FeatureStats()
    stats.update(*model.encoder.frontend(x, lengths, normalize=False))
    model.encoder.frontend.set_normalization(*stats.mean_std())
    targets, target_lengths = pad_sequences([torch.tensor(tokenizer.encode(t)) for t in TEXTS], 0, torch.long)
    batch = {"x": x, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}

    def loss_fn(model, b):
        return model.loss(b["x"], b["lengths"], b["targets"], b["target_lengths"], ctc_weight=0.3)

    def save(model, path, info):
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))

    cfg = TrainConfig(max_steps=steps, lr=LR, warmup_steps=min(10, steps), schedule="constant", grad_clip=5.0,
                      weight_decay=0.0, valid_every=10**6, log_every=20, keep_last=1)
    Trainer(model, cfg, out, [batch], loss_fn, None, save).fit()
    model.eval()
    ids = [f"u{i}" for i in range(len(TEXTS))]
    with torch.no_grad():
        greedy = [tokenizer.decode(h.tokens) for h in decode(model, x, lengths, DecodingOptions(beam_size=1))]
        enc = model.encode(x, lengths)
        ctc = [tokenizer.decode(t) for t in ctc_greedy(model.ctc_head(enc.memory), enc.lengths)]
    return dict(zip(ids, greedy)), dict(zip(ids, ctc))


@pytest.mark.slow
def test_overfits_four_utterances_to_near_zero_wer(utterances, tmp_path):
    references = {f"u{i}": t for i, t in enumerate(TEXTS)}
    greedy, ctc = train(utterances, STEPS, tmp_path / "long")
    print("greedy:", greedy, "ctc:", ctc)
    assert wer_report(references, greedy)["wer"] <= 0.1, greedy
    assert wer_report(references, ctc)["wer"] <= 0.1, ctc

    greedy, ctc = train(utterances, 10, tmp_path / "short")  # the same run cut short has not learnt them
    assert wer_report(references, greedy)["wer"] > 0.5 and wer_report(references, ctc)["wer"] > 0.5, (greedy, ctc)
