"""The captioning pipeline (Captioner, expand_image_args) and the HTML caption gallery."""

import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from toolkit.bundle import save_model
from toolkit.data.images import image_to_tensor, load_image
from toolkit.decode import DecodingOptions, decode
from toolkit.errors import ToolkitError
from toolkit.model import BOS_ID, build_model
from toolkit.pipelines import Captioner, CaptionResult, expand_image_args
from toolkit.report import GalleryItem, write_caption_gallery
from toolkit.text import train_tokenizer

TEXTS = ["a red circle on the left", "a blue square on the right", "a green triangle on the left"]
SIZE = 64
MAX_LEN = 12


def make_model(tok):
    torch.manual_seed(0)
    return build_model({
        "vocab_size": tok.vocab_size, "d_model": 32,
        "encoder": {"name": "timm", "backbone": "test_resnet"},
        "decoder": {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "max_len": 32},
    }).eval()


def draw(i: int) -> Image.Image:
    img = Image.new("RGB", (80, 60), (30 * i % 255, 90, 200 - 20 * i))
    d = ImageDraw.Draw(img)
    d.ellipse([5 + 7 * i, 5, 30 + 7 * i, 40], fill=(255, 40 * i % 255, 0))
    return img


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("captioner")
    tok = train_tokenizer("word", TEXTS)
    bundle = save_model(root / "bundle", make_model(tok), tok, info={"task": "caption", "image_size": SIZE})
    images = root / "images"
    images.mkdir()
    paths = []
    for i in range(5):
        p = images / f"img{i}.png"
        draw(i).save(p)
        paths.append(p)
    return bundle, paths, root


@pytest.fixture(scope="module")
def captioner(setup):
    return Captioner.from_pretrained(setup[0])


def test_one_result_per_image_in_order(setup, captioner):
    _, paths, _ = setup
    results = captioner.caption(paths, max_length=MAX_LEN)
    assert len(results) == len(paths)
    assert [r.image for r in results] == [str(p) for p in paths]
    for r in results:
        assert isinstance(r, CaptionResult) and r.attention is None
        assert r.caption == " ".join(t for t in r.tokens if t != "<unk>")
        assert 0 < len(r.tokens) <= MAX_LEN and r.score < 0
    # the images differ, so at least two captions or scores should
    assert len({(r.caption, round(r.score, 4)) for r in results}) > 1
    reversed_results = captioner.caption(paths[::-1], max_length=MAX_LEN)
    assert [r.caption for r in reversed_results] == [r.caption for r in results][::-1]


def test_batched_equals_one_at_a_time(setup, captioner):
    _, paths, _ = setup
    for beam in (1, 3):
        batched = captioner.caption(paths, beam_size=beam, batch_size=2, max_length=MAX_LEN, attention=True)
        single = [captioner.caption([p], beam_size=beam, max_length=MAX_LEN, attention=True)[0] for p in paths]
        for b, s in zip(batched, single):
            assert (b.caption, b.tokens, b.image) == (s.caption, s.tokens, s.image)
            assert b.score == pytest.approx(s.score, abs=1e-4)
            np.testing.assert_allclose(b.attention, s.attention, atol=1e-5)


def test_beam_one_is_greedy_search(setup, captioner, monkeypatch):
    _, paths, _ = setup
    import toolkit.pipelines.captioner as module

    seen = []
    real_search = module.search
    monkeypatch.setattr(module, "search", lambda model, enc, opts: seen.append(opts) or real_search(model, enc, opts))
    captioner.caption(paths[:1], beam_size=3, max_length=7, length_penalty=0.6)
    assert [(o.beam_size, o.max_length, o.length_penalty) for o in seen] == [(3, 7, 0.6)]
    x = torch.stack([image_to_tensor(load_image(p), SIZE) for p in paths])
    greedy = decode(captioner.model, x, None, DecodingOptions(beam_size=1, max_length=MAX_LEN))
    results = captioner.caption(paths, beam_size=1, max_length=MAX_LEN)
    tok = captioner.tokenizer
    assert [r.tokens for r in results] == [tok.pieces(h.tokens) for h in greedy]
    assert [r.score for r in results] == pytest.approx([h.score for h in greedy], abs=1e-5)
    # a PIL image gives the same caption as its file
    pil = captioner.caption([load_image(paths[0])], max_length=MAX_LEN)[0]
    assert (pil.caption, pil.image) == (results[0].caption, None)


def test_attention_maps(setup, captioner):
    _, paths, _ = setup
    results = captioner.caption(paths[:3], max_length=MAX_LEN, attention=True)
    grid = captioner.model.encode(image_to_tensor(load_image(paths[0]), SIZE)[None]).grid
    assert grid is not None and grid[0] * grid[1] > 1
    assert any(len(r.tokens) > 1 for r in results)
    for r in results:
        assert r.attention.shape == (len(r.tokens), *grid) and r.attention.dtype == np.float32
        np.testing.assert_allclose(r.attention.reshape(len(r.tokens), -1).sum(-1), 1.0, atol=1e-5)
    # the teacher-forced maps equal the ones recorded while decoding step by step (row-major grid)
    model, r = captioner.model, results[0]
    x = image_to_tensor(load_image(paths[0]), SIZE)[None]
    ids = decode(model, x, None, DecodingOptions(max_length=MAX_LEN))[0].tokens
    assert captioner.tokenizer.pieces(ids) == r.tokens
    with torch.no_grad():
        state = model.decoder.init_state(model.encode(x), record_attention=True)
        rows = []
        for token in [BOS_ID] + ids[:-1]:
            _, state = model.decoder(torch.tensor([[token]]), state)
            rows.append(state.attention[0, 0])
    expected = torch.stack(rows).reshape(len(ids), *grid).numpy()
    np.testing.assert_allclose(r.attention, expected, atol=1e-5)


def test_bad_image_path_is_one_line_error(setup, captioner, tmp_path):
    _, paths, _ = setup
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    for path in (bad, tmp_path / "missing.jpg"):
        with pytest.raises(ToolkitError) as e:
            captioner.caption([paths[0], path])
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_wrong_task_bundle_is_refused(tmp_path):
    tok = train_tokenizer("word", TEXTS)
    save_model(tmp_path / "asr", make_model(tok), tok, info={"task": "asr"})
    with pytest.raises(ToolkitError, match="task 'asr'") as e:
        Captioner.from_pretrained(tmp_path / "asr")
    assert "\n" not in str(e.value)
    save_model(tmp_path / "untagged", make_model(tok), tok)  # no task: accepted, default image size
    assert Captioner.from_pretrained(tmp_path / "untagged").image_size == 128
    audio = build_model({"vocab_size": tok.vocab_size, "d_model": 32, "decoder": {"num_layers": 1, "num_heads": 2},
                         "encoder": {"name": "conformer", "num_layers": 1, "num_heads": 2, "ffn_dim": 64}})
    with pytest.raises(ToolkitError, match=r"encoder \(ConformerEncoder\) is not an image encoder"):
        Captioner(audio, tok)


def test_expand_image_args(setup, tmp_path, monkeypatch):
    _, paths, root = setup
    folder = root / "images"
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    upper = folder / "z_upper.JPG"
    draw(1).save(upper, format="JPEG")
    expected = sorted(paths) + [upper]
    assert expand_image_args([str(folder)]) == expected
    assert expand_image_args([str(folder / "img*.png")]) == sorted(paths)
    assert expand_image_args([str(folder / "*")]) == expected  # patterns keep images only
    assert expand_image_args([str(paths[2]), str(folder / "*.JPG")]) == [paths[2], upper]
    assert expand_image_args([str(folder / "notes.txt")]) == [folder / "notes.txt"]  # an explicit file is kept
    monkeypatch.chdir(root)
    assert expand_image_args(["**/img[01].png"]) == [paths[0].relative_to(root), paths[1].relative_to(root)]
    empty = tmp_path / "empty"
    empty.mkdir()
    for arg, match in [(str(empty), "holds no images"), (str(folder / "*.gif"), "no image matches"),
                       (str(tmp_path / "nothing.png"), "not found")]:
        with pytest.raises(ToolkitError, match=match) as e:
            expand_image_args([arg])
        assert arg in str(e.value) and "\n" not in str(e.value)
    upper.unlink()


def test_caption_gallery(setup, captioner, tmp_path):
    _, paths, _ = setup
    results = captioner.caption(paths[:2], max_length=6, attention=True)
    items = [GalleryItem(r.image, r.caption, ["some reference"], r.tokens, r.attention) for r in results]
    hostile = "<script>alert('x')</script> & more"
    items.append(GalleryItem(draw(3), hostile, ["A Red circle.", "a blue <b>square</b>"], ["a", "red"],
                             np.random.default_rng(0).random((3, 2, 2))))  # 3 rows: the last is EOS
    items.append(GalleryItem(paths[0], "a red circle", ["A Red circle.", "other"]))  # no attention
    out = write_caption_gallery(tmp_path / "out" / "gallery.html", items, title="Run <1>",
                                metrics={"BLEU-4": 0.25, "CIDEr-D": 1.5})
    assert out == tmp_path / "out" / "gallery.html"
    assert [p.name for p in out.parent.iterdir()] == ["gallery.html"]  # no temporary file left
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page  # no external assets
    assert len(re.findall(r'<div class="card"', page)) == len(items)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "a blue &lt;b&gt;square&lt;/b&gt;" in page and "Run &lt;1&gt;" in page
    words = sum(len(r.tokens) for r in results) + 3
    assert len(re.findall(r'<figure class="thumb">', page)) == words
    assert len(re.findall(r'src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', page)) == len(items) + words
    assert re.findall(r'<li class="match">([^<]*)', page) == ["A Red circle. &#10003;"]  # only the last card matches
    assert "<figcaption>&lt;/s&gt;</figcaption>" in page
    assert "<td>BLEU-4</td>" in page and "1.5000" in page
    for r in results:
        for token in r.tokens:
            assert f"<figcaption>{token}</figcaption>" in page
    with pytest.raises(ValueError, match="attention has 5 rows for 2 tokens"):
        write_caption_gallery(tmp_path / "bad.html", [GalleryItem(draw(0), "a b", [], ["a", "b"], np.ones((5, 2, 2)))])
