"""Caption data: image modes -> RGB, one-line load errors, COCO / Karpathy / JSONL round trips and errors,
the lazy caption dataset, its collate function and loaders, and the bad-image check."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data import caption_dataset
from toolkit.data import (
    CaptionDataset,
    CaptionRecord,
    ImageLoadError,
    check_images,
    collate_captions,
    convert_captions,
    describe_bad_images,
    image_to_tensor,
    load_image,
    make_caption_loader,
    normalize_caption,
    read_captions,
    read_coco,
    read_jsonl,
    read_karpathy,
    to_rgb,
    write_coco,
    write_jsonl,
    write_karpathy,
)
from toolkit.errors import ToolkitError
from toolkit.text import UNK_ID, train_tokenizer


def rgb_at(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel(xy)


def close(a, b, tol: int = 3) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


def one_line_error(excinfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ----------------------------------------------------------------------------------------------- image modes


def test_gray_and_bilevel_modes(tmp_path: Path) -> None:
    Image.new("L", (3, 3), 128).save(tmp_path / "l.png")
    Image.new("1", (3, 3), 1).save(tmp_path / "one.png")
    assert rgb_at(load_image(tmp_path / "l.png")) == (128, 128, 128)
    assert rgb_at(load_image(tmp_path / "one.png")) == (255, 255, 255)


@pytest.mark.parametrize("mode,saver", [("I;16", "png"), ("I;16B", "tiff"), ("I;16", "tiff")])
def test_16_bit_gray_is_scaled_by_bit_depth(tmp_path: Path, mode: str, saver: str) -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=">u2" if mode == "I;16B" else "<u2")
    src = Image.frombytes(mode, (3, 1), values.tobytes())
    path = tmp_path / f"g.{saver}"
    src.save(path)
    img = load_image(path)
    assert [rgb_at(img, (x, 0)) for x in range(3)] == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_32_bit_int_and_float_modes(tmp_path: Path) -> None:
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))  # mode I, no bit depth tag: 16 bits inferred
    assert wide.mode == "I" and rgb_at(to_rgb(wide), (1, 0)) == (255, 255, 255)
    small = Image.fromarray(np.array([[0, 200]], dtype=np.int32))  # values of 8-bit data kept
    assert rgb_at(to_rgb(small), (1, 0)) == (200, 200, 200)
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tiff")
    img = load_image(tmp_path / "f.tiff")
    assert [rgb_at(img, (x, 0))[0] for x in range(3)] == [0, 128, 255]
    hdr = Image.fromarray(np.array([[-10.0, 990.0]], dtype=np.float32))  # outside [0, 255]: stretched
    assert [rgb_at(to_rgb(hdr), (x, 0))[0] for x in range(2)] == [0, 255]


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128)])
    rgba.save(tmp_path / "rgba.png")
    img = load_image(tmp_path / "rgba.png")
    assert rgb_at(img, (0, 0)) == (255, 255, 255)
    assert rgb_at(img, (1, 0)) == (255, 0, 0)
    assert close(rgb_at(img, (2, 0)), (255, 127, 127), tol=2)
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])
    la.save(tmp_path / "la.png")
    img = load_image(tmp_path / "la.png")
    assert rgb_at(img, (0, 0)) == (255, 255, 255) and rgb_at(img, (1, 0)) == (0, 0, 0)
    rgb = Image.new("RGB", (2, 1), (0, 0, 0))
    rgb.putpixel((1, 0), (10, 20, 30))
    rgb.save(tmp_path / "trns.png", transparency=(0, 0, 0))  # RGB with a transparent colour (tRNS)
    img = load_image(tmp_path / "trns.png")
    assert rgb_at(img, (0, 0)) == (255, 255, 255) and rgb_at(img, (1, 0)) == (10, 20, 30)


def test_palette_modes(tmp_path: Path) -> None:
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
    p = Image.new("P", (4, 1))
    p.putpalette(palette)
    p.putdata([0, 1, 2, 3])
    p.save(tmp_path / "p.png")
    img = load_image(tmp_path / "p.png")
    assert [rgb_at(img, (x, 0)) for x in range(4)] == [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    p.save(tmp_path / "pt.png", transparency=0)  # palette index 0 transparent: white, not black
    img = load_image(tmp_path / "pt.png")
    assert rgb_at(img, (0, 0)) == (255, 255, 255) and rgb_at(img, (1, 0)) == (255, 0, 0)
    p.save(tmp_path / "p.gif", transparency=0)
    assert rgb_at(load_image(tmp_path / "p.gif"), (0, 0)) == (255, 255, 255)
    pa = p.convert("PA")
    alpha = Image.new("L", (4, 1), 255)
    alpha.putpixel((3, 0), 0)
    pa.putalpha(alpha)
    assert pa.mode == "PA"
    out = to_rgb(pa)
    assert rgb_at(out, (2, 0)) == (0, 255, 0) and rgb_at(out, (3, 0)) == (255, 255, 255)


def test_cmyk(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    cmyk.save(tmp_path / "cmyk.tiff")
    assert close(rgb_at(load_image(tmp_path / "cmyk.jpg"), (8, 8)), (255, 0, 0), tol=8)
    assert rgb_at(load_image(tmp_path / "cmyk.tiff"), (8, 8)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    img.paste((0, 0, 255), (2, 0, 4, 2))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    img.save(tmp_path / "rot.png", exif=exif)
    out = load_image(tmp_path / "rot.png")
    assert out.size == (2, 4)
    assert rgb_at(out, (0, 0)) == (255, 0, 0) and rgb_at(out, (0, 3)) == (0, 0, 255)


def test_image_to_tensor_squares_and_scales() -> None:
    img = Image.new("RGB", (40, 10), (255, 0, 0))
    img.paste((255, 255, 255), (20, 0, 40, 10))
    t = image_to_tensor(img, 8)
    assert t.shape == (3, 8, 8) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert torch.allclose(t[:, :, 0], torch.tensor([1.0, 0.0, 0.0])[:, None].expand(3, 8))
    assert torch.allclose(t[:, :, -1], torch.ones(3, 8))
    gray16 = Image.frombytes("I;16", (2, 2), np.full((2, 2), 65535, "<u2").tobytes())
    assert torch.allclose(image_to_tensor(gray16, 4), torch.ones(3, 4, 4))
    with pytest.raises(ValueError):
        image_to_tensor(img, 0)


# ------------------------------------------------------------------------------------------------ load errors


def _noise_png(path: Path, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _truncate(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_unreadable_files_raise_one_line_errors(tmp_path: Path) -> None:
    png = _truncate(_noise_png(tmp_path / "cut.png"))
    jpg = tmp_path / "cut.jpg"
    Image.open(_noise_png(tmp_path / "src.png")).save(jpg, quality=90)
    _truncate(jpg)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    cases = {
        png: "truncated",
        jpg: "truncated",
        tmp_path / "empty.png": "empty",
        tmp_path / "notes.jpg": "not an image",
        tmp_path / "missing.png": "not found",
        tmp_path: "directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError) as excinfo:
            load_image(path)
        one_line_error(excinfo, str(path), reason)
        assert isinstance(excinfo.value, ToolkitError) and excinfo.value.path == str(path)


# ------------------------------------------------------------------------------------------------- captions


def test_normalize_caption() -> None:
    assert normalize_caption("A Dog's  ball, (well-known)!") == "a dog's ball well known"
    assert normalize_caption("  Rock\u2019n\u2019roll '90s dogs' \t\n") == "rock'n'roll 90s dogs"
    assert normalize_caption("ＣＡＦÉ\u00a0…costs $5") == "café costs $5"  # NFKC: full-width, nbsp, ellipsis
    assert normalize_caption("...") == ""


def _records(root: Path) -> list[CaptionRecord]:
    (root / "img" / "sub").mkdir(parents=True)
    names = ["img/a.png", "img/sub/b.png", "img/c.png"]
    for name in names:
        Image.new("RGB", (4, 4)).save(root / name)
    return [
        CaptionRecord(str(root / names[0]), ["A cat.", "A small cat sits"], "cat-1", "train"),
        CaptionRecord(str(root / names[1]), ["Two dogs", "dogs play", "Ünïcödé dog"], "dog/2", "val"),
        CaptionRecord(str(root / names[2]), [], "no-captions", "test"),  # kept for inference
    ]


def _key(records: list[CaptionRecord]) -> list[tuple]:
    return [(os.path.realpath(r.image), r.captions, r.image_id, r.split) for r in records]


def test_coco_jsonl_karpathy_coco_round_trip(tmp_path: Path) -> None:
    records = _records(tmp_path / "data")
    write_coco(records, tmp_path / "data" / "coco.json")
    coco = json.loads((tmp_path / "data" / "coco.json").read_text())
    assert coco["images"][1]["file_name"] == "img/sub/b.png"  # relative to the JSON's folder
    assert len(coco["annotations"]) == 5 and coco["images"][0]["original_id"] == "cat-1"
    assert _key(read_coco(tmp_path / "data" / "coco.json")) == _key(records)
    assert convert_captions(tmp_path / "data" / "coco.json", tmp_path / "j" / "m.jsonl", to="jsonl") == 3
    assert convert_captions(tmp_path / "j" / "m.jsonl", tmp_path / "k" / "deep" / "k.json", to="karpathy") == 3
    karpathy = json.loads((tmp_path / "k" / "deep" / "k.json").read_text())
    assert karpathy["images"][0]["sentences"][0]["tokens"] == ["a", "cat"]
    assert convert_captions(tmp_path / "k" / "deep" / "k.json", tmp_path / "data" / "back.json", to="coco") == 3
    back = read_captions(tmp_path / "data" / "back.json")
    assert _key(back) == _key(records)
    assert json.loads((tmp_path / "data" / "back.json").read_text())["images"][2]["file_name"] == "img/c.png"
    leftovers = [p.name for d in ("data", "j", "k/deep") for p in (tmp_path / d).iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_integer_ids_are_kept_and_split_defaults_to_train(tmp_path: Path) -> None:
    records = [CaptionRecord(str(tmp_path / "x.jpg"), ["a"], "42"), CaptionRecord(str(tmp_path / "y.jpg"), [], "7")]
    write_coco(records, tmp_path / "c.json")
    assert [i["id"] for i in json.loads((tmp_path / "c.json").read_text())["images"]] == [42, 7]
    write_karpathy(records, tmp_path / "k.json")
    back = read_karpathy(tmp_path / "k.json")
    assert [(r.image_id, r.split) for r in back] == [("42", "train"), ("7", "train")]


def test_karpathy_layout_and_split_filter(tmp_path: Path) -> None:
    images = [
        {"filepath": "val2014", "filename": "a.jpg", "cocoid": 1, "split": "train",
         "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}]},
        {"filepath": "val2014", "filename": "b.jpg", "cocoid": 2, "split": "restval", "sentences": [{"raw": "B"}]},
        {"filename": "c.jpg", "imgid": 9, "split": "test", "sentences": []},
    ]
    (tmp_path / "dataset.json").write_text(json.dumps({"images": images}))
    root = tmp_path / "coco"
    got = read_karpathy(tmp_path / "dataset.json", image_root=root, splits={"train", "restval"})
    assert [(r.image, r.captions, r.image_id) for r in got] == [
        (str(root / "val2014" / "a.jpg"), ["A cat."], "1"), (str(root / "val2014" / "b.jpg"), ["B"], "2")]
    test = read_captions(tmp_path / "dataset.json", splits="test")
    assert [(r.image, r.image_id) for r in test] == [(str(tmp_path / "c.jpg"), "9")]
    with pytest.raises(ToolkitError) as excinfo:
        read_karpathy(tmp_path / "dataset.json", splits={"tarin"})
    one_line_error(excinfo, "dataset.json", "tarin")


def test_jsonl_paths_ids_and_blank_lines(tmp_path: Path) -> None:
    lines = ['{"image": "a.jpg", "captions": ["x"]}', "", '  ',
             '{"image": "/abs/b.jpg", "captions": [], "id": 5, "split": "val", "extra": 1}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    got = read_jsonl(tmp_path / "m.jsonl")
    assert [(r.image, r.captions, r.image_id, r.split) for r in got] == [
        (str(tmp_path / "a.jpg"), ["x"], "a.jpg", None), ("/abs/b.jpg", [], "5", "val")]
    write_jsonl(got, tmp_path / "copy.jsonl")
    assert json.loads((tmp_path / "copy.jsonl").read_text().splitlines()[0])["image"] == "a.jpg"
    assert read_jsonl(tmp_path / "copy.jsonl") == got


BAD_JSONL = {
    "broken": ('{"image": "a.jpg", "captions": ["x"]}\n\n{"image": "b.jpg", "captions": [\n', ["bad.jsonl:3", "JSON"]),
    "missing": ('{"image": "a.jpg", "captions": ["x"]}\n{"image": "b.jpg"}\n', ["bad.jsonl:2", "captions", "missing"]),
    "type": ('{"image": "a.jpg", "captions": "a cat"}\n', ["bad.jsonl:1", "captions", "list"]),
    "item type": ('{"image": "a.jpg", "captions": ["ok", 3]}\n', ["bad.jsonl:1", "captions[1]", "string"]),
    "not object": ('["a.jpg"]\n', ["bad.jsonl:1", "object"]),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_names_file_and_line(tmp_path: Path, case: str) -> None:
    text, parts = BAD_JSONL[case]
    (tmp_path / "bad.jsonl").write_text(text)
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "bad.jsonl")
    one_line_error(excinfo, *parts)


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    good = b'{"image": "a.jpg", "captions": ["x"]}\n'
    (tmp_path / "bad.jsonl").write_bytes(good + b'{"image": "caf\xe9.jpg", "captions": []}\n')
    with pytest.raises(ToolkitError) as excinfo:
        read_jsonl(tmp_path / "bad.jsonl")
    one_line_error(excinfo, "bad.jsonl:2", "UTF-8", "0xe9")
    (tmp_path / "bad.json").write_bytes(b'{"images": [], "annotations": [{"caption": "caf\xe9"}]}')
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "bad.json")
    one_line_error(excinfo, "bad.json", "UTF-8")


COCO_IMAGES = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
ANNOTATION = {"image_id": 1, "caption": "x"}
BAD_COCO = {
    "unknown id": ({"images": COCO_IMAGES, "annotations": [ANNOTATION, {"image_id": 3, "caption": "y"}]},
                   ["annotations[1].image_id", "3"]),
    "missing caption": ({"images": COCO_IMAGES, "annotations": [ANNOTATION] * 12 + [{"image_id": 2}]},
                        ["annotations[12].caption", "missing"]),
    "missing file_name": ({"images": [{"id": 1}], "annotations": []}, ["images[0].file_name", "missing"]),
    "duplicate id": ({"images": COCO_IMAGES + [{"id": 2, "file_name": "c.jpg"}], "annotations": []}, ["images[2].id"]),
    "wrong type": ({"images": [{"id": 1, "file_name": 5}], "annotations": []}, ["images[0].file_name", "string"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_bad_coco_names_file_and_field(tmp_path: Path, case: str) -> None:
    data, parts = BAD_COCO[case]
    (tmp_path / "coco.json").write_text(json.dumps(data))
    with pytest.raises(ToolkitError) as excinfo:
        read_coco(tmp_path / "coco.json")
    one_line_error(excinfo, "coco.json", *parts)


def test_bad_json_files_name_file_and_field(tmp_path: Path) -> None:
    k = {"images": [{"filename": "a.jpg", "sentences": [{"raw": "x"}, {"tokens": ["y"]}]}]}
    (tmp_path / "k.json").write_text(json.dumps(k))
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "k.json")
    one_line_error(excinfo, "k.json", "images[0].sentences[1].raw")
    (tmp_path / "broken.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "broken.json")
    one_line_error(excinfo, "broken.json", "line 2", "JSON")
    (tmp_path / "info.json").write_text('{"images": [{"id": 3, "file_name": "a.jpg"}]}')  # COCO test image list
    assert [(r.image_id, r.captions) for r in read_captions(tmp_path / "info.json")] == [("3", [])]
    (tmp_path / "other.json").write_text('{"images": [{"file": "a.jpg"}]}')
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "other.json")
    one_line_error(excinfo, "other.json", "COCO", "Karpathy")
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "captions.txt")
    one_line_error(excinfo, "captions.txt", ".txt")
    with pytest.raises(ToolkitError) as excinfo:
        read_captions(tmp_path / "absent.jsonl")
    one_line_error(excinfo, "absent.jsonl", "not found")


# -------------------------------------------------------------------------------------------------- dataset


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[list[CaptionRecord], object]:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    records = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (20, 12), colour).save(tmp_path / f"{i}.png")
        caps = [f"A dog number {i}.", "The CAT sat", "a zebra grazes"][: i + 1]
        records.append(CaptionRecord(str(tmp_path / f"{i}.png"), caps, str(i)))
    tokenizer = train_tokenizer("word", ["a dog number 0", "the cat sat", "1 2"])
    return records, tokenizer


def test_train_dataset_one_item_per_pair(corpus) -> None:
    records, tok = corpus
    ds = CaptionDataset(records, tok, image_size=8, train=True)
    assert len(ds) == 1 + 2 + 3 and ds.skipped_long == 0
    items = [ds[i] for i in range(len(ds))]
    assert [it["index"] for it in items] == [0, 1, 1, 2, 2, 2]
    assert items[1]["tokens"].tolist() == tok.encode("a dog number 1")
    assert UNK_ID in items[5]["tokens"].tolist()  # "zebra grazes" are unknown words: kept, mapped to unk
    assert items[0]["image"].shape == (3, 8, 8) and torch.allclose(items[0]["image"][:, 0, 0], torch.tensor([1., 0, 0]))
    long = CaptionDataset(records, tok, image_size=8, train=True, max_tokens=3)
    assert long.skipped_long == 3 and len(long) == 3  # the three "a dog number i" captions have 4 tokens
    eval_ds = CaptionDataset(records, image_size=8)
    assert len(eval_ds) == 3 and "tokens" not in eval_ds[2] and eval_ds[2]["index"] == 2
    with pytest.raises(ToolkitError):
        CaptionDataset(records, tok, train=True, max_tokens=1)


def test_dataset_loads_lazily_and_skips_vanished_images(corpus, caplog, monkeypatch) -> None:
    records, tok = corpus
    calls = []
    real = caption_dataset.load_image_tensor
    monkeypatch.setattr(caption_dataset, "load_image_tensor", lambda *a: calls.append(a) or real(*a))
    ds = CaptionDataset(records, tok, image_size=8, train=True)
    assert calls == [] and not any(isinstance(v, torch.Tensor) for v in vars(ds).values())  # nothing decoded yet
    Image.new("RGB", (20, 12), (255, 255, 255)).save(records[0].image)  # changed after construction: seen
    assert torch.allclose(ds[0]["image"], torch.ones(3, 8, 8)) and len(calls) == 1
    os.remove(records[1].image)
    with caplog.at_level(logging.WARNING, logger="toolkit.data"):
        assert ds[1] is None and ds[2] is None
    assert ds.load_errors == {records[1].image: "file not found"}
    assert len([r for r in caplog.records if records[1].image in r.getMessage()]) == 1  # once per path
    batch = collate_captions([ds[i] for i in range(len(ds))])
    assert batch["indices"].tolist() == [0, 2, 2, 2]
    assert batch["images"].shape == (4, 3, 8, 8)
    assert batch["target_lengths"].tolist() == [4, 4, 3, 3] and batch["targets"].shape == (4, 4)
    assert collate_captions([ds[1], ds[2]]) is None


def test_collate_pads_with_zero() -> None:
    items = [{"image": torch.zeros(3, 2, 2), "tokens": torch.tensor([5, 6, 7]), "index": 3}, None,
             {"image": torch.ones(3, 2, 2), "tokens": torch.tensor([9]), "index": 1}]
    batch = collate_captions(items)
    assert batch["targets"].tolist() == [[5, 6, 7], [9, 0, 0]]
    assert batch["target_lengths"].tolist() == [3, 1] and batch["indices"].tolist() == [3, 1]
    assert batch["targets"].dtype == torch.long and batch["images"].shape == (2, 3, 2, 2)


def test_loader_with_workers_and_seeded_shuffle(corpus) -> None:
    records, tok = corpus
    ds = CaptionDataset(records, tok, image_size=8, train=True)
    loader = make_caption_loader(ds, batch_size=4, train=True, num_workers=2, seed=3)
    batches = [b for b in loader]
    assert [len(b["indices"]) for b in batches] == [4, 2]  # last partial batch kept
    assert sorted(torch.cat([b["indices"] for b in batches]).tolist()) == [0, 1, 1, 2, 2, 2]
    assert loader.persistent_workers
    order = lambda seed: torch.cat([b["indices"] for b in make_caption_loader(ds, 2, True, seed=seed)]).tolist()
    assert order(3) == order(3)
    assert len({tuple(order(s)) for s in range(6)}) > 1
    eval_loader = make_caption_loader(CaptionDataset(records, image_size=8), batch_size=2, train=False)
    assert torch.cat([b["indices"] for b in eval_loader]).tolist() == [0, 1, 2]


def test_check_images_reports_the_bad_ones(corpus, tmp_path: Path) -> None:
    records, _ = corpus
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    bad_records = [CaptionRecord(str(tmp_path / n), ["x"], n) for n in ("empty.png", "text.png", "gone.png")]
    good, bad = check_images(records[:2] + bad_records + records[2:])
    assert good == records
    assert [(Path(p).name, r.split()[0]) for p, r in bad] == [("empty.png", "empty"), ("text.png", "not"),
                                                               ("gone.png", "file")]
    line = describe_bad_images(bad, max_report=2)
    assert "\n" not in line and line.startswith("3 images") and "empty.png" in line and "and 1 more" in line
    assert "gone.png" not in line
