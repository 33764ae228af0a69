"""ONNX export (`toolkit.export`, `toolkit export`): the exported graphs compute what the PyTorch model computes
(padded batches included), the toolkit's searches give the same transcripts and captions through onnxruntime, int8
stays close, and the torch-free example (recipes/onnx_runtime) runs without PyTorch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from toolkit.bundle import load_model, save_model  # noqa: E402
from toolkit.cli import main  # noqa: E402
from toolkit.errors import BundleError, ToolkitError  # noqa: E402
from toolkit.export import export_onnx  # noqa: E402
from toolkit.lm import load_lm, save_lm  # noqa: E402
from toolkit.lm.model import LstmLM, LstmLMConfig  # noqa: E402
from toolkit.model import BOS_ID  # noqa: E402
from toolkit.model.factory import build_model  # noqa: E402
from toolkit.pipelines.transcriber import Transcriber  # noqa: E402
from toolkit.text import train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
         "every cloud has a silver lining", "zebras quietly vexed jumping wizards"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A small speech model (CTC + attention decoder) and an LSTM LM with its tokenizer, saved, and their fp32 and
    int8 exports."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    tok = train_tokenizer("char", TEXTS)
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 48, "ctc": True,
                         "encoder": {"name": "conformer", "num_layers": 2, "num_heads": 2, "ffn_dim": 96,
                                     "kernel_size": 7},
                         "decoder": {"num_layers": 2, "num_heads": 2, "ffn_dim": 96, "max_len": 64}})
    with torch.no_grad():  # a peaked CTC head: confident frames, as a trained model has
        model.ctc_head.proj.weight.mul_(8.0)
    save_model(root / "asr", model.eval(), tok, info={"task": "asr", "decoding": {"ctc_weight": 0.3}})
    lm = LstmLM(LstmLMConfig(vocab_size=tok.vocab_size, embed_dim=32, hidden_dim=48, num_layers=2, dropout=0.0))
    save_lm(root / "lm", lm.eval(), tok)
    export_onnx(root / "asr", root / "asr_onnx")
    export_onnx(root / "lm", root / "lm_onnx")
    export_onnx(root / "asr", root / "asr_int8", quantize="int8")
    return root


@pytest.fixture(scope="module")
def waves():
    """Three utterance-like signals of different lengths (a padded batch)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    base = (np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32) * 0.3
    return [base[:n] + rng.normal(0, 0.01, n).astype(np.float32) for n in (48000, 30000, 17000)]


def _batch(waves):
    x = torch.zeros(len(waves), max(len(w) for w in waves))
    for i, w in enumerate(waves):
        x[i, : len(w)] = torch.from_numpy(w)
    return x, torch.tensor([len(w) for w in waves])


def test_exported_graphs_agree_with_pytorch_on_a_padded_batch(bundles, waves):
    torch_model = load_model(bundles / "asr").model
    onnx_model = load_model(bundles / "asr_onnx").model
    x, lengths = _batch(waves)
    with torch.no_grad():
        a, b = torch_model.encode(x, lengths), onnx_model.encode(x, lengths)
        assert a.lengths.tolist() == b.lengths.tolist()
        valid = torch.arange(a.memory.size(1))[None, :] < a.lengths[:, None]
        # the STFT (ONNX's DFT against torch's FFT) differs by float rounding, which the log of the power spectrum
        # amplifies in near-silent bins: ~2e-4 in the memory
        assert torch.allclose(a.memory[valid], b.memory[valid], atol=1e-3, rtol=1e-3)
        lp_a, lp_b = torch_model.ctc_head(a.memory), onnx_model.ctc_head(b.memory)
        assert torch.allclose(lp_a[valid], lp_b[valid], atol=3e-3)
        # the padded rows of a batch equal each utterance alone
        alone = onnx_model.encode(x[2:, : lengths[2]], lengths[2:])
        n = int(alone.lengths[0])
        assert torch.allclose(alone.memory[0, :n], b.memory[2, :n], atol=1e-3, rtol=1e-3)
        sa, sb = torch_model.decoder.init_state(a), onnx_model.decoder.init_state(b)
        tokens = torch.full((3, 1), BOS_ID)
        for _ in range(4):  # incremental steps through the exported caches, with a beam-style reorder
            la, sa = torch_model.decoder(tokens, sa)
            lb, sb = onnx_model.decoder(tokens, sb)
            assert torch.allclose(la, lb, atol=1e-3, rtol=1e-3)
            order = torch.tensor([2, 0, 1])
            sa, sb = sa.select(order), sb.select(order)
            tokens = la[order, -1:].argmax(-1)
        both = onnx_model.decoder(torch.tensor([[BOS_ID, 5, 6]] * 3), onnx_model.decoder.init_state(b))[0]
        ref = torch_model.decoder(torch.tensor([[BOS_ID, 5, 6]] * 3), torch_model.decoder.init_state(a))[0]
        assert torch.allclose(both, ref, atol=1e-3, rtol=1e-3)  # several tokens at once: the causal mask


def test_transcripts_through_onnxruntime_equal_pytorch(bundles, waves):
    ours, theirs = Transcriber.from_pretrained(bundles / "asr"), Transcriber.from_pretrained(bundles / "asr_onnx")
    lm_torch, lm_onnx = load_lm(bundles / "lm"), load_lm(bundles / "lm_onnx")
    for kwargs in ({"ctc_only": True}, {"beam_size": 4}, {"beam_size": 3, "ctc_weight": 0.0}):
        a = ours.transcribe(waves, vad=None, **kwargs)
        b = theirs.transcribe(waves, vad=None, **kwargs)
        assert [r.text for r in a] == [r.text for r in b], kwargs
        assert any(r.text for r in a)
    a = ours.transcribe(waves, vad=None, beam_size=4, lm=lm_torch, lm_weight=0.5)
    b = theirs.transcribe(waves, vad=None, beam_size=4, lm=lm_onnx, lm_weight=0.5)
    assert [r.text for r in a] == [r.text for r in b]
    assert np.allclose([r.score for r in a], [r.score for r in b], rtol=1e-4)


def test_exported_lm_steps_like_pytorch(bundles):
    a, b = load_lm(bundles / "lm").model, load_lm(bundles / "lm_onnx").model
    sa, sb = a.init_state(3), b.init_state(3)
    tokens = torch.tensor([BOS_ID] * 3)
    for step in range(5):
        la, sa = a.step(tokens, sa)
        lb, sb = b.step(tokens, sb)
        assert torch.allclose(la, lb, atol=1e-5), step
        sa, sb = sa.select(torch.tensor([1, 1, 0])), sb.select(torch.tensor([1, 1, 0]))
        tokens = la.argmax(-1)


def test_int8_export_is_smaller_and_close(bundles, waves):
    def size(d):
        return sum(p.stat().st_size for p in (bundles / d).glob("*.onnx"))

    assert size("asr_int8") < 0.6 * size("asr_onnx")
    meta = json.loads((bundles / "asr_int8" / "config.json").read_text())
    assert meta["runtime"] == "onnx" and meta["onnx"]["quantize"] == "int8"
    fp32, int8 = load_model(bundles / "asr_onnx").model, load_model(bundles / "asr_int8").model
    x, lengths = _batch(waves)
    a, b = fp32.encode(x, lengths), int8.encode(x, lengths)
    lp_a, lp_b = fp32.ctc_head(a.memory), int8.ctc_head(b.memory)
    valid = torch.arange(a.memory.size(1))[None, :] < a.lengths[:, None]
    agree = (lp_a.argmax(-1) == lp_b.argmax(-1))[valid].float().mean()
    assert agree > 0.9  # int8 weights move the scores a little, not the decisions


def test_cli_export_info_transcribe_and_evaluate(bundles, waves, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", "--model", str(bundles / "asr"), "-o", str(out)]) == 0
    assert "it loads like a bundle" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "onnx"
    wav = tmp_path / "a.wav"
    sf.write(wav, waves[0], 16000)
    assert main(["transcribe", "--model", str(out), "--vad", "none", "--ctc-only", str(wav)]) == 0
    via_onnx = capsys.readouterr().out
    assert main(["transcribe", "--model", str(bundles / "asr"), "--vad", "none", "--ctc-only", str(wav)]) == 0
    assert capsys.readouterr().out == via_onnx
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": TEXTS[0]}) + "\n")
    scores = []
    for model in (out, bundles / "asr"):  # evaluate: the same search, the same errors
        assert main(["evaluate", "--model", str(model), "--data", str(manifest), "--beam", "2",
                     "--out", str(tmp_path / f"{model.name}.json")]) == 0
        capsys.readouterr()
        scores.append(json.loads((tmp_path / f"{model.name}.json").read_text())["report"])
    assert scores[0] == scores[1]


def test_bad_exports_and_exported_folders_are_one_line_errors(bundles, tmp_path, capsys):
    with pytest.raises(ToolkitError, match="already an exported"):
        export_onnx(bundles / "asr_onnx", tmp_path / "again")
    with pytest.raises(ToolkitError, match="--quantize"):
        export_onnx(bundles / "asr", tmp_path / "q", quantize="int4")
    tok = train_tokenizer("char", TEXTS)
    ctc_images = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "decoder": None, "ctc": True,
                              "encoder": {"name": "timm", "backbone": "test_resnet"}})
    save_model(tmp_path / "ctc_images", ctc_images, tok, info={"task": "caption", "image_size": 32})
    assert main(["export", "--model", str(tmp_path / "ctc_images"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot export the encoder" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))

    broken = tmp_path / "broken"
    shutil.copytree(bundles / "asr_onnx", broken)
    meta = json.loads((broken / "config.json").read_text())
    meta["runtime"] = "tensorrt"
    (broken / "config.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="runtime: one of torch, onnx"):
        load_model(broken)
    meta["runtime"] = "onnx"
    (broken / "config.json").write_text(json.dumps(meta))
    (broken / "decoder_step.onnx").write_bytes(b"not a graph")
    with pytest.raises(BundleError, match="decoder_step.onnx: checksum mismatch"):
        load_model(broken)
    with pytest.raises(ToolkitError, match="runs on the CPU"):
        load_model(bundles / "asr_onnx", device="meta")
    older = tmp_path / "older"  # a folder of an earlier layout (format 1: caches stacked over layers)
    shutil.copytree(bundles / "asr_onnx", older)
    meta = json.loads((older / "config.json").read_text())
    del meta["onnx"]["format"]
    (older / "config.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="onnx.format None, this toolkit reads 2: export the model again"):
        load_model(older)


def test_captions_through_onnxruntime_equal_pytorch(tmp_path):
    from PIL import Image

    from toolkit.pipelines.captioner import Captioner

    torch.manual_seed(0)
    tok = train_tokenizer("word", ["a red circle", "a blue square", "two green triangles"])
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 32,
                         "encoder": {"name": "timm", "backbone": "test_resnet"},
                         "decoder": {"num_layers": 2, "num_heads": 2, "ffn_dim": 64, "max_len": 24}})
    save_model(tmp_path / "cap", model.eval(), tok, info={"task": "caption", "image_size": 32})
    export_onnx(tmp_path / "cap", tmp_path / "cap_onnx")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)) for _ in range(5)]
    ours, theirs = Captioner.from_pretrained(tmp_path / "cap"), Captioner.from_pretrained(tmp_path / "cap_onnx")
    for beam in (1, 3):
        a, b = ours.caption(images, beam_size=beam, max_length=12), theirs.caption(images, beam_size=beam,
                                                                                   max_length=12)
        assert [r.caption for r in a] == [r.caption for r in b]
        assert np.allclose([r.score for r in a], [r.score for r in b], rtol=1e-4, atol=1e-4)
    with pytest.raises(ToolkitError, match="attention maps need the PyTorch model"):
        theirs.caption(images[:1], attention=True)
    meta = json.loads((tmp_path / "cap_onnx" / "config.json").read_text())
    assert meta["onnx"]["kind"] == "caption" and meta["onnx"]["image_size"] == 32


def _torch_free_path(tmp_path: Path) -> Path:
    """A folder of links to onnxruntime, numpy, soundfile and what they import: the only packages the example may
    use (run with `python -S`, which leaves site-packages, and so torch, off sys.path)."""
    import numpy
    import onnxruntime

    site = Path(numpy.__file__).parents[1]
    folder = tmp_path / "site"
    folder.mkdir()
    wanted = ["numpy", "numpy.libs", "onnxruntime", "soundfile.py", "_soundfile.py", "_soundfile_data", "cffi",
              "pycparser", "typing_extensions.py"]
    wanted += [p.name for p in site.glob("_cffi_backend*")]
    for name in wanted:
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    assert Path(onnxruntime.__file__).parents[1] == site
    return folder


def _run_torch_free(folder: Path, *args: str) -> subprocess.CompletedProcess:
    script = ROOT / "recipes" / "onnx_runtime" / "transcribe.py"
    code = ("import sys, runpy; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[2:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-S", "-c", code, str(folder), str(script), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_torch_free_example_transcribes_like_the_toolkit(bundles, waves, tmp_path):
    folder = _torch_free_path(tmp_path)
    probe = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(folder)!r}); "
                            "import numpy, onnxruntime, soundfile\ntry:\n import torch\nexcept ImportError:\n"
                            " print('no torch')"], capture_output=True, text=True)
    assert probe.stdout.strip() == "no torch", probe.stderr
    paths = []
    for i, w in enumerate(waves):
        paths.append(tmp_path / f"u{i}.wav")
        sf.write(paths[-1], w, 16000)
    run = _run_torch_free(folder, "--model", str(bundles / "asr_onnx"), *map(str, paths))
    assert run.returncode == 0, run.stderr
    texts = [json.loads(line)["text"] for line in run.stdout.splitlines()]
    toolkit = Transcriber.from_pretrained(bundles / "asr").transcribe(list(map(str, paths)), vad=None,
                                                                      ctc_only=True)
    assert texts == [" ".join(r.text.split()) for r in toolkit]  # it prints words with single spaces
    beam = _run_torch_free(folder, "--model", str(bundles / "asr_onnx"), "--beam", "4", *map(str, paths))
    assert beam.returncode == 0 and len(beam.stdout.splitlines()) == 3

    sf.write(tmp_path / "8k.wav", waves[0][::2], 8000)
    bad = _run_torch_free(folder, "--model", str(bundles / "asr_onnx"), str(tmp_path / "8k.wav"))
    assert bad.returncode == 2 and bad.stderr.strip().endswith("(resample: sox IN -r 16000 OUT)")
    assert len(bad.stderr.strip().splitlines()) == 1
