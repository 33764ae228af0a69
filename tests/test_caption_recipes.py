"""Captioning end to end through the CLI and the recipe scripts, on corpora the tests make themselves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from toolkit.synth.shapes import HELD_OUT_PAIRS, ShapesConfig, make_shapes_corpus
from toolkit.data import read_coco

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = [
    "model.d_model=32", "model.encoder.backbone=test_resnet",
    "model.decoder.num_layers=1", "model.decoder.num_heads=2", "model.decoder.ffn_dim=64",
    "data.image_size=64", "data.batch_size=8", "data.num_workers=0", "tokenizer.min_count=1",
]


def run(cmd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def toolkit(*args, **kw):
    return run([sys.executable, "-m", "toolkit", *map(str, args)], **kw)


def test_shapes_corpus_is_reproducible_and_holds_out_pairs(tmp_path):
    cfg = ShapesConfig(train=40, val=4, test_iid=4, test_heldout=20, image_size=64)
    a, b = make_shapes_corpus(tmp_path / "a", cfg, progress=False), make_shapes_corpus(tmp_path / "b", cfg, progress=False)
    for split in a:
        assert a[split].read_text() == b[split].read_text().replace(str(tmp_path / "b"), str(tmp_path / "a"))
    assert (tmp_path / "a/images/train_000007.png").read_bytes() == (tmp_path / "b/images/train_000007.png").read_bytes()
    train = read_coco(a["train"])
    assert len(train) == 40 and all(len(r.captions) == 3 for r in train)
    held_phrases = {f"{c} {s}" for c, s in HELD_OUT_PAIRS}
    train_text = " ".join(c for r in train for c in r.captions)
    assert not any(p in train_text for p in held_phrases)
    for r in read_coco(a["test_heldout"]):
        assert any(p in r.captions[0] for p in held_phrases)
    counts = {len(r.captions[0].split(" a ")) for r in train}
    assert len(counts) > 1  # one to three objects


@pytest.mark.slow
def test_shapes_recipe_cli_end_to_end(tmp_path):
    data = tmp_path / "shapes"
    toolkit("synth", "shapes", "--out", data, "--train", 48, "--val", 8, "--test-iid", 8, "--test-heldout", 8,
            "--image-size", 64)
    exp = tmp_path / "exp"
    conf = ROOT / "recipes/shapes_caption/conf/quick.yaml"
    r = toolkit("train", conf, "-o", exp, f"data.train={data}/captions_train.json",
                f"data.valid={data}/captions_val.json", "train.max_minutes=null", "train.max_steps=12",
                "train.valid_every=6", "train.warmup_steps=2", *TINY_MODEL)
    assert "final:" in r.stdout
    for name in ("train_log.csv", "loss_curve.png", "final/model.safetensors", "best/config.json"):
        assert (exp / name).is_file(), name
    assert len(list((exp / "checkpoints").iterdir())) >= 2
    # Resuming a finished run continues from its last checkpoint.
    r = toolkit("train", conf, "-o", exp, f"data.train={data}/captions_train.json",
                f"data.valid={data}/captions_val.json", "train.max_minutes=null", "train.max_steps=14",
                "train.valid_every=6", "train.warmup_steps=2", "--resume", *TINY_MODEL)
    assert "trained 14 steps" in r.stdout

    out = tmp_path / "eval.json"
    r = toolkit("evaluate", "--model", exp / "final", "--data", data / "captions_test_iid.json", "--beam", 2,
                "--out", out, "--report", tmp_path / "gallery.html", "--report-images", 3, "--no-meteor")
    assert "BLEU-4" in r.stdout and "CIDEr-D" in r.stdout
    assert "exact_match=" in r.stdout.strip().splitlines()[-1]
    rows = json.loads(out.read_text())["predictions"]
    assert len(rows) == 8 and {"image", "prediction", "references", "exact"} <= set(rows[0])
    html = (tmp_path / "gallery.html").read_text()
    assert html.count("data:image") >= 3

    r = toolkit("caption", data / "images", "--model", exp / "final", "--json")
    assert len(json.loads(r.stdout)) == 72
    r = toolkit("caption", str(data / "images" / "test_iid_00000*.png"), "--model", exp / "final")
    assert len(r.stdout.strip().splitlines()) == 8


def write_tiny_coco(root: Path) -> Path:
    """A Karpathy-layout dataset_coco.json over a few COCO-style folders of JPEGs."""
    images, colours = [], {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    for i in range(18):
        name = list(colours)[i % 3]
        folder = "train2014" if i < 12 else "val2014"
        path = root / folder / f"COCO_{folder}_{i:012d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (80, 60), colours[name]).save(path)
        split = "train" if i < 10 else "restval" if i < 12 else "val" if i < 15 else "test"
        sentences = [{"raw": f"A {name} picture.", "tokens": ["a", name, "picture"]},
                     {"raw": f"Something {name}.", "tokens": ["something", name]}]
        images.append({"filepath": folder, "filename": path.name, "cocoid": 1000 + i, "split": split,
                       "sentences": sentences})
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


@pytest.mark.slow
def test_coco_recipe_end_to_end(tmp_path):
    captions = write_tiny_coco(tmp_path / "coco")
    import timm

    weights = tmp_path / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), weights)
    exp = tmp_path / "exp"
    tiny = [*TINY_MODEL, "train.max_epochs=null", "train.max_steps=4", "train.valid_every=2",
            "train.warmup_steps=1", "train.keep_last=3", "train.average_last=2", "data.valid_max_images=null"]
    r = run(["bash", str(ROOT / "recipes/coco_caption/run.sh"), "--coco-root", str(tmp_path / "coco"),
             "--captions", str(captions), "--weights", str(weights), "--exp", str(exp), "--", *tiny])
    assert "stage 4" in r.stdout
    frozen = json.loads((exp / "frozen/final/config.json").read_text())
    assert frozen["info"]["encoder_initialised_from"] == str(weights)
    assert frozen["model"]["encoder"]["freeze_backbone"] is True
    tuned = json.loads((exp / "finetune/final/config.json").read_text())
    assert tuned["model"]["encoder"]["freeze_backbone"] is False
    scores = json.loads((exp / "eval/finetune_test_beam3.json").read_text())
    assert len(scores["predictions"]) == 3  # the Karpathy test split
    assert (exp / "gallery_test.html").is_file()
    # The frozen stage really kept the pretrained backbone: its weights equal the file's.
    from toolkit.bundle import load_model
    from safetensors.torch import load_file

    backbone = load_model(exp / "frozen/final").model.encoder.backbone.state_dict()
    source = load_file(weights)
    assert torch.equal(backbone["conv1.0.weight"], source["conv1.0.weight"])


@pytest.mark.parametrize("config", sorted(ROOT.glob("recipes/*_caption/conf/*.yaml")), ids=lambda p: p.name)
def test_recipe_configs_are_valid(config):
    from toolkit.config import load_config
    from toolkit.tasks.caption import CaptionExperiment

    exp = load_config(CaptionExperiment, config)
    assert exp.task == "caption" and exp.train.metric in {"exact_match", "CIDEr-D"}
    assert exp.model.encoder["name"] == "timm"


def test_recipe_scripts_refuse_unknown_options():
    for script in sorted(ROOT.glob("recipes/*/run.sh")):
        r = subprocess.run(["bash", str(script), "--no-such-option", "1"], capture_output=True, text=True)
        assert r.returncode == 2 and "unknown option --no-such-option" in r.stderr, script
