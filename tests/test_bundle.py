"""Model bundles: save -> load is bit-identical; damaged, foreign or mismatched bundles are refused in one line."""

import hashlib
import json

import pytest
import torch

from toolkit.bundle import load_model, save_model
from toolkit.decode import DecodingOptions, decode
from toolkit.errors import BundleError
from toolkit.model import build_model
from toolkit.text import train_tokenizer

TEXTS = ["a red circle", "two blue squares", "the green triangle is left of a red circle"]


def image_model(tok):
    return build_model({
        "vocab_size": tok.vocab_size, "d_model": 32,
        "encoder": {"name": "timm", "backbone": "test_resnet"},
        "decoder": {"num_layers": 2, "num_heads": 2, "ffn_dim": 64, "max_len": 32},
    })


def audio_model(tok):
    return build_model({
        "vocab_size": tok.vocab_size, "d_model": 32, "ctc": True,
        "encoder": {"name": "conformer", "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "n_mels": 20},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 32},
    })


@pytest.fixture
def saved(tmp_path):
    tok = train_tokenizer("char", TEXTS)
    model = image_model(tok).eval()
    path = save_model(tmp_path / "bundle", model, tok, info={"task": "caption"})
    return path, model, tok


def rewrite_checksums(path):
    meta = json.loads((path / "config.json").read_text())
    for name in meta["files"]:
        meta["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "config.json").write_text(json.dumps(meta))


def one_line_error(path, match):
    with pytest.raises(BundleError, match=match) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_image_bundle_round_trip_bit_identical(saved):
    path, model, tok = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    bundle = load_model(path)
    assert bundle.info == {"task": "caption"} and bundle.tokenizer.vocab() == tok.vocab()
    assert not bundle.model.training
    x = torch.rand(2, 3, 64, 64)
    tokens = torch.randint(4, tok.vocab_size, (2, 6))
    with torch.no_grad():
        assert torch.equal(model(x, None, tokens), bundle.model(x, None, tokens))
    opts = DecodingOptions(beam_size=3, max_length=10)
    assert [h.tokens for h in decode(model, x, None, opts)] == [h.tokens for h in decode(bundle.model, x, None, opts)]


def test_audio_bundle_with_ctc_and_sentencepiece(tmp_path):
    tok = train_tokenizer("sentencepiece", TEXTS * 20, vocab_size=30)
    model = audio_model(tok).eval()
    with torch.no_grad():
        model.encoder.frontend.set_normalization(torch.randn(20), torch.rand(20) + 0.5)
    path = save_model(tmp_path / "asr", model, tok)
    assert (path / "tokenizer.model").is_file()
    bundle = load_model(path)
    x, n = torch.randn(2, 16000), torch.tensor([16000, 9000])
    with torch.no_grad():
        a, b = model.encode(x, n), bundle.model.encode(x, n)
        assert torch.equal(a.memory, b.memory) and torch.equal(a.lengths, b.lengths)
        assert torch.equal(model.ctc_head(a.memory), bundle.model.ctc_head(b.memory))
    torch.testing.assert_close(bundle.model.encoder.frontend.mean, model.encoder.frontend.mean, rtol=0, atol=0)


def test_overwrite_keeps_a_complete_bundle(saved):
    path, model, tok = saved
    save_model(path, model, tok, info={"v": 2})
    assert load_model(path).info == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["bundle"]  # no temporary leftovers


def test_pretrained_file_is_provenance_not_a_dependency(tmp_path):
    tok = train_tokenizer("char", TEXTS)
    backbone = build_model({"vocab_size": tok.vocab_size, "d_model": 32,
                            "encoder": {"name": "timm", "backbone": "test_resnet"}}).encoder.backbone
    from safetensors.torch import save_file
    save_file(backbone.state_dict(), tmp_path / "w.safetensors")
    model = build_model({"vocab_size": tok.vocab_size, "d_model": 32,
                         "encoder": {"name": "timm", "backbone": "test_resnet",
                                     "pretrained_file": str(tmp_path / "w.safetensors")}})
    path = save_model(tmp_path / "b", model, tok)
    (tmp_path / "w.safetensors").unlink()
    bundle = load_model(path)
    assert bundle.info["encoder_initialised_from"].endswith("w.safetensors")


def test_corrupted_weights_refused(saved):
    path = saved[0]
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    one_line_error(path, "checksum mismatch")
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    rewrite_checksums(path)
    one_line_error(path, "not a readable safetensors file")


def test_missing_files_refused(saved, tmp_path):
    path = saved[0]
    one_line_error(tmp_path / "nowhere", "not found")
    (path / "tokenizer.json").unlink()
    one_line_error(path, "tokenizer.json: missing")
    (path / "config.json").unlink()
    one_line_error(path, "config.json: missing")


def test_other_format_version_refused(saved):
    path = saved[0]
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = 99
    (path / "config.json").write_text(json.dumps(meta))
    msg = one_line_error(path, "format version 99")
    assert "reads version 1" in msg
    (path / "config.json").write_text("{broken")
    one_line_error(path, "not valid JSON")


def test_mismatched_vocabulary_refused(saved):
    path = saved[0]
    train_tokenizer("char", ["xyz only"]).save(path)
    rewrite_checksums(path)
    one_line_error(path, "vocabulary mismatch")


def test_weights_of_another_config_refused(saved):
    path, _, tok = saved
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["decoder"]["num_layers"] = 3
    (path / "config.json").write_text(json.dumps(meta))
    one_line_error(path, "missing")
    meta["model"]["decoder"]["num_layers"] = 2
    meta["model"]["decoder"]["ffn_dim"] = 48
    (path / "config.json").write_text(json.dumps(meta))
    one_line_error(path, "another shape")
    meta["model"]["decoder"]["bogus"] = 1
    (path / "config.json").write_text(json.dumps(meta))
    one_line_error(path, "unknown key 'bogus'")
