"""A self-contained HTML gallery of captioned images with per-word attention heatmaps.

    items = [GalleryItem(r.image, r.caption, refs[r.image], r.tokens, r.attention) for r in results]
    write_caption_gallery("gallery.html", items, metrics=caption_scores(...))

One HTML file: images are embedded as base64 JPEG, the CSS is inline, and there is no script at all.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

DISPLAY_SIZE = 256  # longest side of the main image, in pixels
THUMB_SIZE = 96  # longest side of an attention thumbnail
EOS_LABEL = "</s>"


@dataclass
class GalleryItem:
    """One card of the gallery.

    image:      a PIL image or the path of an image file.
    caption:    the predicted caption.
    references: reference captions (a reference equal to the caption after `normalize_caption` is highlighted).
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


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;background:#f5f5f7;color:#222}
h1{font-size:1.5em;margin:0 0 16px}
table.metrics{border-collapse:collapse;margin:0 0 24px;background:#fff}
table.metrics th,table.metrics td{border:1px solid #ddd;padding:4px 12px;text-align:left}
table.metrics td.v{text-align:right;font-variant-numeric:tabular-nums}
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
    from toolkit.data.captions import normalize_caption

    img = _fit(_open(item.image), DISPLAY_SIZE)
    esc = html.escape
    parts = [f'<div class="card" id="item-{index}">', '<div class="main">',
             f'<img src="{_data_uri(img)}" alt="{esc(item.caption)}">']
    if not isinstance(item.image, Image.Image):
        parts.append(f'<div class="name">{esc(str(item.image))}</div>')
    parts += ["</div>", '<div class="text">', f'<p class="caption">{esc(item.caption)}</p>']
    if item.references:
        predicted = normalize_caption(item.caption)
        parts.append('<ul class="refs">')
        for ref in item.references:
            match = normalize_caption(ref) == predicted
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


def _metrics_table(metrics: Mapping[str, float]) -> str:
    rows = "\n".join(f'<tr><td>{html.escape(str(k))}</td><td class="v">{float(v):.4f}</td></tr>'
                     for k, v in metrics.items())
    return f'<table class="metrics">\n<tr><th>metric</th><th>score</th></tr>\n{rows}\n</table>'


def write_caption_gallery(
    path: str | Path,
    items: Sequence[GalleryItem],
    title: str = "Caption gallery",
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write one self-contained HTML page: `title`, a table of `metrics` (if given), then a card per item with
    the image, the predicted caption, the references (an exact match after normalisation highlighted) and one
    attention thumbnail per generated word. All text is HTML-escaped. The file is written atomically
    (a temporary file in the same folder, then `os.replace`). Returns `path`."""
    path = Path(path)
    body = [f"<h1>{html.escape(title)}</h1>"]
    if metrics:
        body.append(_metrics_table(metrics))
    body += [_card(item, i) for i, item in enumerate(items)]
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        *body, "</body>", "</html>", "",
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is too strict for a report
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
