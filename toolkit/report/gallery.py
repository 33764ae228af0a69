"""Captioned images with per-word attention heatmaps: HTML cards, a standalone gallery page, gallery.json.

    items = [GalleryItem(r.image, r.caption, refs[r.image], r.tokens, r.attention) for r in results]
    write_caption_gallery("gallery.html", items, metrics=caption_scores(...))   # one page, no script
    html = caption_cards(items)                     # the cards alone, for a larger page (`ReportPage`)
    write_gallery_json("exp/quick/gallery.json", items)   # saved for `toolkit report` (format: read_gallery_json)
    items = read_gallery_json("exp/quick/gallery.json")

Images are embedded in the HTML as base64 JPEG; the CSS a page needs for the cards is `GALLERY_CSS`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from toolkit.errors import ToolkitError

DISPLAY_SIZE = 256  # longest side of the main image, in pixels
THUMB_SIZE = 96  # longest side of an attention thumbnail
EOS_LABEL = "</s>"


@dataclass
class GalleryItem:
    """One card of the gallery.

    image:      a PIL image or the path of an image file.
    caption:    the predicted caption.
    references: reference captions (a reference equal to the caption after `normalize_text` is highlighted).
    tokens:     the generated pieces, one attention thumbnail each.
    attention:  `(len(tokens), H', W')` attention weights (`CaptionResult.attention`), or
                `(len(tokens) + 1, H', W')` whose last row (the EOS step) is labelled "</s>"; None = no thumbnails.
    """

    image: Image.Image | str | Path
    caption: str
    references: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None


def _colormap(values: np.ndarray) -> np.ndarray:
    """`(H, W)` values in [0, 1] -> `(H, W, 3)` uint8 'jet' colours (matplotlib's map; a close formula without it)."""
    try:
        from matplotlib import colormaps

        return (colormaps["jet"](values)[..., :3] * 255).round().astype(np.uint8)
    except ImportError:
        v = values[..., None] * 4.0
        rgb = np.clip(1.5 - np.abs(v - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
        return (rgb * 255).round().astype(np.uint8)


def _open(image: Image.Image | str | Path) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    from toolkit.data.images import load_image

    return load_image(image)


def _fit(img: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)


def _data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def attention_overlay(image: Image.Image, weights: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend an `(H', W')` attention map, scaled to [0, 1] by its own range and bilinearly upsampled to the
    image's size, as a 'jet' heatmap over the RGB `image` (`alpha` = heatmap weight)."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"an attention map must be 2-D (H', W'), got shape {w.shape}")
    w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(w.min()), float(w.max())
    w = (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)
    up = np.asarray(Image.fromarray(w, mode="F").resize(image.size, Image.Resampling.BILINEAR))
    heat = Image.fromarray(_colormap(np.clip(up, 0.0, 1.0)), mode="RGB")
    return Image.blend(image.convert("RGB"), heat, alpha)


def _labels(item: GalleryItem, index: int) -> list[str]:
    rows = item.attention.shape[0]
    tokens = list(item.tokens)
    if rows == len(tokens) + 1:
        tokens.append(EOS_LABEL)
    if rows != len(tokens):
        raise ValueError(
            f"gallery item {index}: attention has {rows} rows for {len(item.tokens)} tokens "
            "(expected one row per token, optionally one more for EOS)"
        )
    return tokens


GALLERY_CSS = """
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15);padding:16px;margin:0 0 20px;
display:flex;gap:16px;flex-wrap:wrap}
.card .main img{display:block;max-width:256px;border-radius:4px}
.card .name{font-size:.8em;color:#777;margin-top:4px;word-break:break-all;max-width:256px}
.card .text{flex:1;min-width:260px}
.caption{font-size:1.2em;font-weight:600;margin:0 0 8px}
ul.refs{margin:0 0 12px;padding-left:20px;color:#444}
ul.refs li.match{background:#d9f7d9;color:#064;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}
figure.thumb{margin:0;text-align:center;font-size:.8em}
figure.thumb img{display:block;border-radius:3px}
"""


def _card(item: GalleryItem, index: int) -> str:
    from toolkit.text.normalize import normalize_text

    img = _fit(_open(item.image), DISPLAY_SIZE)
    esc = html.escape
    parts = [f'<div class="card" id="item-{index}">', '<div class="main">',
             f'<img src="{_data_uri(img)}" alt="{esc(item.caption)}">']
    if not isinstance(item.image, Image.Image):
        parts.append(f'<div class="name">{esc(str(item.image))}</div>')
    parts += ["</div>", '<div class="text">', f'<p class="caption">{esc(item.caption)}</p>']
    if item.references:
        predicted = normalize_text(item.caption)
        parts.append('<ul class="refs">')
        for ref in item.references:
            match = normalize_text(ref) == predicted
            cls, mark = (' class="match"', " &#10003;") if match else ("", "")
            parts.append(f"<li{cls}>{esc(ref)}{mark}</li>")
        parts.append("</ul>")
    if item.attention is not None:
        attention = np.asarray(item.attention)
        if attention.ndim != 3:
            raise ValueError(f"gallery item {index}: attention must be (U, H', W'), got shape {attention.shape}")
        parts.append('<div class="thumbs">')
        for label, weights in zip(_labels(item, index), attention):
            thumb = _fit(attention_overlay(img, weights), THUMB_SIZE)
            parts.append(f'<figure class="thumb"><img src="{_data_uri(thumb)}" alt="{esc(label)}">'
                         f"<figcaption>{esc(label)}</figcaption></figure>")
        parts.append("</div>")
    parts += ["</div>", "</div>"]
    return "\n".join(parts)


def caption_cards(items: Sequence[GalleryItem]) -> str:
    """The HTML of one card per item (styled by `GALLERY_CSS`): the image, the predicted caption, the references (an
    exact match after normalisation highlighted) and one attention thumbnail per generated word; text escaped."""
    return "\n".join(_card(item, i) for i, item in enumerate(items))


def write_caption_gallery(
    path: str | Path,
    items: Sequence[GalleryItem],
    title: str = "Caption gallery",
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write one self-contained HTML page: `title`, a table of `metrics` (if given), then `caption_cards(items)`.
    No script; the file is written atomically. Returns `path`."""
    from toolkit.report.page import ReportPage

    page = ReportPage(title, probe=False)
    if metrics:
        page.table([{"metric": k, "score": float(v)} for k, v in metrics.items()])
    page.caption_cards(items)
    return page.write(path)


# ------------------------------------------------------------------------------------------------ gallery.json


def write_gallery_json(path: str | Path, items: Sequence[GalleryItem]) -> Path:
    """Save `items` as `path` (a gallery.json, see `read_gallery_json`) with its files in the folder `path` without
    its suffix: item i's image as `NNN-<name>.png` and its attention as `NNN-attention.npy`. The images are copied
    (re-encoded as PNG), so the gallery outlives the data it came from. Returns `path`."""
    from toolkit.files import write_atomic

    path = Path(path)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, item in enumerate(items):
        name = "image" if isinstance(item.image, Image.Image) else Path(item.image).stem
        buf = io.BytesIO()
        _open(item.image).save(buf, format="PNG")
        image = write_atomic(folder / f"{i:03d}-{name}.png", buf.getvalue())
        attention = None
        if item.attention is not None:
            buf = io.BytesIO()
            np.save(buf, np.asarray(item.attention, dtype=np.float32), allow_pickle=False)
            attention = write_atomic(folder / f"{i:03d}-attention.npy", buf.getvalue())
        records.append({
            "image": image.relative_to(path.parent).as_posix(), "caption": item.caption,
            "references": list(item.references), "tokens": list(item.tokens),
            "attention": attention.relative_to(path.parent).as_posix() if attention else None,
        })
    return write_atomic(path, json.dumps(records, indent=1, ensure_ascii=False) + "\n")


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def read_gallery_json(path: str | Path) -> list[GalleryItem]:
    """The items of a gallery.json: a JSON list of objects

        {"image": "gallery/000-x.png",            # required; relative paths are relative to the file's folder
         "caption": "a red circle",               # required
         "references": ["a red circle", ...],     # optional, default []
         "tokens": ["a", "red", "circle"],        # optional, default []
         "attention": "gallery/000-attention.npy"}  # optional (null: no thumbnails): float (len(tokens), H', W'),
                                                  # or (len(tokens) + 1, H', W') with the EOS step last

    A missing file, a malformed entry or an attention array that does not fit its tokens is a one-line
    `ToolkitError` naming the file and the entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolkitError(f"{path}: gallery file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(" ".join(f"{path}: cannot be read as JSON ({e})".split())) from None
    if not isinstance(data, list):
        raise ToolkitError(f"{path}: a gallery must be a JSON list of {{image, caption, ...}} objects")
    items = []
    for i, entry in enumerate(data):
        where = f"{path}: [{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(
                entry.get("caption"), str):
            raise ToolkitError(f"{where}: must be an object with string fields image and caption")
        for key in ("references", "tokens"):
            if not _strings(entry.get(key, [])):
                raise ToolkitError(f"{where}.{key}: must be a list of strings")
        image = path.parent / entry["image"]
        if not image.is_file():
            raise ToolkitError(f"{where}.image: {image} not found")
        item = GalleryItem(image, entry["caption"], entry.get("references", []), entry.get("tokens", []))
        if entry.get("attention") is not None:
            item.attention = _read_attention(path.parent / str(entry["attention"]), len(item.tokens), where)
        items.append(item)
    return items


def _read_attention(path: Path, tokens: int, where: str) -> np.ndarray:
    """A (tokens or tokens + 1, H', W') float array from a .npy file (never unpickled)."""
    try:
        attention = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ToolkitError(f"{where}.attention: {path} not found") from None
    except (OSError, ValueError) as e:
        raise ToolkitError(" ".join(f"{where}.attention: {path} is not a .npy array ({e})".split())) from None
    if attention.ndim != 3 or attention.shape[0] not in (tokens, tokens + 1) or not np.issubdtype(
            attention.dtype, np.floating):
        raise ToolkitError(f"{where}.attention: expected float (U, H', W') with U = {tokens} tokens (or one more "
                           f"for EOS), got {attention.dtype} {attention.shape}")
    return attention
