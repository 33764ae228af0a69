"""A one-file HTML report built block by block: headings and text, tables, PNG figures, caption cards, and videos
with their subtitle track.

    page = ReportPage("Quickstart")
    page.section("Image captioning", "The quick model on the synthetic shapes.")
    page.table([{"split": "test_iid", "BLEU-4": 0.991}], caption="Captioning metrics")
    page.figure("exp/caption/loss_curve.png", "training loss")
    page.caption_cards(read_gallery_json("exp/caption/gallery.json"))
    page.video("exp/subtitles/demo.mp4", "exp/subtitles/demo.vtt")
    page.write("exp/quickstart/report.html")       # report.html + assets/demo.mp4, assets/demo.vtt

The page needs nothing from the network: the CSS is inline, figures and thumbnails are data URIs, and a video is
copied into `assets/` next to the page and referenced relatively. Its WebVTT track is embedded as a data URI (it
is small), because browsers refuse to load a track from a `file://` page's folder (the video plays, the
subtitles would not); the .vtt is copied to `assets/` as well and linked for download. The page and its assets
are written atomically.

Unless `probe=False`, the page carries one small inline script that writes into the DOM what the browser actually
loaded, for `toolkit.report.browser.load_in_browser` (and anyone's developer tools): on <body>, `data-tables`,
`data-images`, `data-images-loaded` (naturalWidth > 0), `data-videos` and `data-height` (the page's height in
CSS pixels); on each <video>, `data-ready-state`, `data-duration`, `data-video-width`, `data-frames` (frames the
browser presented), `data-text-tracks`, `data-cues` (cues loaded in the showing track) and `data-error` (a
MediaError code).
"""

from __future__ import annotations

import base64
import html
import math
import mimetypes
import re
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from toolkit.errors import ToolkitError
from toolkit.files import copy_atomic, write_atomic
from toolkit.report.gallery import GALLERY_CSS, GalleryItem, caption_cards

ASSETS = "assets"  # the folder, next to the page, that holds its videos and subtitle files
VIDEO_TYPES = {".webm": "video/webm", ".mp4": "video/mp4", ".m4v": "video/mp4", ".ogv": "video/ogg"}
MISSING = "\u2013"  # an en dash stands for a missing value

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;
background:#f5f5f7;color:#222;line-height:1.4}
h1{font-size:1.6em;margin:0 0 12px}
h2{font-size:1.3em;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #ccc}
h3{font-size:1.05em;margin:20px 0 8px}
table.data{border-collapse:collapse;margin:0 0 16px;background:#fff}
table.data caption{caption-side:top;text-align:left;font-weight:600;padding:0 0 4px}
table.data th,table.data td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}
table.data th{background:#eee}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure.figure{margin:0 0 16px}
figure.figure img{display:block;max-width:100%;background:#fff;border:1px solid #ddd}
figure.figure figcaption{font-size:.9em;color:#555;margin-top:4px}
pre.block{background:#fff;border:1px solid #ddd;padding:8px 12px;overflow-x:auto;font-size:.9em}
.video video{display:block;width:640px;max-width:100%;background:#000}
.video .links{font-size:.9em;margin:6px 0 12px}
.scroll{max-height:28em;overflow:auto;display:inline-block;max-width:100%}
""" + GALLERY_CSS

PROBE_SCRIPT = """
(() => {
  const probe = () => {
    const body = document.body.dataset, images = [...document.images], videos = [...document.querySelectorAll('video')];
    body.tables = document.querySelectorAll('table').length;
    body.images = images.length;
    body.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
    body.videos = videos.length;
    body.height = document.documentElement.scrollHeight;
    for (const v of videos) {
      const shown = [...v.textTracks].find(t => t.mode === 'showing');
      Object.assign(v.dataset, {
        readyState: v.readyState, duration: Number.isFinite(v.duration) ? v.duration : '',
        videoWidth: v.videoWidth, textTracks: v.textTracks.length,
        cues: shown && shown.cues ? shown.cues.length : 0, error: v.error ? v.error.code : '',
      });
    }
  };
  for (const v of document.querySelectorAll('video')) {
    v.dataset.frames = 0;
    for (const e of ['loadedmetadata', 'loadeddata', 'canplay', 'error']) v.addEventListener(e, probe);
    for (const t of v.querySelectorAll('track')) for (const e of ['load', 'error']) t.addEventListener(e, probe);
    if (v.requestVideoFrameCallback) {
      v.requestVideoFrameCallback((now, frame) => { v.dataset.frames = frame.presentedFrames; probe(); });
    }
  }
  window.addEventListener('load', probe);
  probe();
})();
"""


def format_value(value: Any, spec: str | None = None) -> str:
    """A table cell's text: None as a dash, booleans as yes / no, numbers with `spec` (a format spec such as
    ".4f" or ".2%"; floats default to ".4f"), infinities as inf and NaN as a dash; anything else as str()."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return MISSING if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return format(value, spec or (".4f" if isinstance(value, float) else "d"))
    return str(value)


def _paragraphs(text: str) -> str:
    """Free text as escaped <p> paragraphs (a blank line separates two)."""
    return "\n".join(f"<p>{html.escape(' '.join(p.split()))}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())


def _timestamp(text: str) -> float:
    parts = text.split(":")
    if not 2 <= len(parts) <= 3:
        raise ValueError(text)
    seconds = float(parts[-1])
    for scale, part in zip((60, 3600), reversed(parts[:-1])):
        seconds += scale * int(part)
    return seconds


def read_vtt_cues(path: str | Path) -> list[tuple[float, float, str]]:
    """The cues of a WebVTT file as (start s, end s, text), lines joined by " / ", tags removed, entities decoded."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ToolkitError(" ".join(f"{path}: cannot be read ({e})".split())) from None
    if not text.startswith("WEBVTT"):
        raise ToolkitError(f"{path}: not a WebVTT file (it does not start with WEBVTT)")
    cues = []
    for block in re.split(r"\r?\n\s*\r?\n", text.replace("\r\n", "\n")):
        lines = block.strip("\n").split("\n")
        timing = next((k for k, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue  # the header, a NOTE, a STYLE or REGION block
        start, _, rest = lines[timing].partition("-->")
        try:
            times = _timestamp(start.strip()), _timestamp(rest.split()[0])
        except (ValueError, IndexError):
            raise ToolkitError(f"{path}: bad cue timing line {lines[timing]!r}") from None
        payload = " / ".join(html.unescape(re.sub(r"<[^>]*>", "", line)).strip() for line in lines[timing + 1:])
        cues.append((*times, payload))
    return cues


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes) // 60:d}:{int(minutes) % 60:02d}:{secs:06.3f}"


class ReportPage:
    """An HTML page assembled block by block (in call order) and written with its assets by `write`."""

    def __init__(self, title: str, intro: str | None = None, probe: bool = True) -> None:
        self.title = title
        self.probe = probe
        self.blocks: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.assets: dict[str, Path] = {}  # name in assets/ -> source file
        if intro:
            self.text(intro)

    def section(self, title: str, text: str | None = None, level: int = 2) -> None:
        """A heading (<h2> by default) and, optionally, free text under it."""
        if not 1 <= level <= 6:
            raise ValueError(f"heading level must be 1..6, got {level}")
        self.blocks.append(f"<h{level}>{html.escape(title)}</h{level}>")
        if text:
            self.text(text)

    def text(self, text: str) -> None:
        """Free text, escaped; a blank line starts a new paragraph."""
        self.blocks.append(_paragraphs(text))

    def preformatted(self, text: str) -> None:
        """Text shown as written, in a monospace block (alignments, logs)."""
        self.blocks.append(f'<pre class="block">{html.escape(text)}</pre>')

    def table(
        self,
        rows: Sequence[Mapping[str, Any] | Sequence[Any]],
        columns: Sequence[str] | None = None,
        caption: str | None = None,
        formats: Mapping[str, str] | None = None,
        scroll: bool = False,
    ) -> None:
        """A table of `rows`: mappings (columns: the keys in order of first appearance, unless given) or sequences
        (then `columns` is required). Cells go through `format_value` with `formats[column]`; numbers are
        right-aligned. `scroll`: a long table scrolls inside a box."""
        if columns is None:
            if not all(isinstance(r, Mapping) for r in rows):
                raise ValueError("table: rows that are not mappings need explicit columns")
            columns = list(dict.fromkeys(k for r in rows for k in r))
        formats = formats or {}
        out = ['<table class="data">']
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
        for row in rows:
            values = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
            if len(values) != len(columns):
                raise ValueError(f"table: a row has {len(values)} cells for {len(columns)} columns")
            cells = []
            for column, value in zip(columns, values):
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                cls = ' class="num"' if number else ""
                cells.append(f"<td{cls}>{html.escape(format_value(value, formats.get(column)))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        table = "\n".join(out)
        self.blocks.append(f'<div class="scroll">{table}</div>' if scroll else table)

    def figure(self, png: str | Path, caption: str | None = None) -> None:
        """A PNG (or JPEG) image file, embedded as a data URI, with an optional caption."""
        png = Path(png)
        try:
            data = png.read_bytes()
        except OSError as e:
            raise ToolkitError(" ".join(f"{png}: cannot be read ({e.strerror or e})".split())) from None
        mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        alt = html.escape(caption or png.name)
        label = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f'<figure class="figure"><img src="{uri}" alt="{alt}">{label}</figure>')

    def caption_cards(self, items: Sequence[GalleryItem]) -> None:
        """Caption cards with attention thumbnails (`toolkit.report.gallery.caption_cards`)."""
        self.blocks.append(caption_cards(items))

    def _asset(self, source: Path) -> str:
        """Register `source` for copying into assets/; its URL relative to the page."""
        name = source.name
        for n in range(2, 10_000):
            if self.assets.get(name, source) == source:
                break
            name = f"{n}-{source.name}"
        self.assets[name] = source
        return f"{ASSETS}/{quote(name)}"

    def video(self, video: str | Path, subtitles: str | Path | None = None, label: str = "English",
              language: str = "en", cue_table: bool = True) -> None:
        """A video (copied to assets/) with, when given, its WebVTT subtitles as the default track (embedded, and
        copied to assets/ for download) and, with `cue_table`, a table of the cues."""
        video = Path(video)
        if not video.is_file():
            raise ToolkitError(f"{video}: video not found")
        mime = VIDEO_TYPES.get(video.suffix.lower()) or mimetypes.guess_type(video.name)[0]
        kind = f' type="{mime}"' if mime else ""
        parts = ['<div class="video">', '<video controls preload="metadata">',
                 f'<source src="{self._asset(video)}"{kind}>']
        links = [f'<a href="{self._asset(video)}">{html.escape(video.name)}</a>']
        cues = None
        if subtitles is not None:
            subtitles = Path(subtitles)
            cues = read_vtt_cues(subtitles)
            uri = "data:text/vtt;base64," + base64.b64encode(subtitles.read_bytes()).decode("ascii")
            parts.append(f'<track kind="subtitles" srclang="{html.escape(language)}" label="{html.escape(label)}" '
                         f'src="{uri}" default>')
            links.append(f'<a href="{self._asset(subtitles)}">{html.escape(subtitles.name)}</a>')
        parts += ["</video>", f'<div class="links">{" &middot; ".join(links)}</div>', "</div>"]
        self.blocks.append("\n".join(parts))
        if cues is not None and cue_table:
            self.cue_table(cues, f"{subtitles.name}: {len(cues)} cues")

    def cue_table(self, cues: Sequence[tuple[float, float, str]], caption: str | None = None) -> None:
        """A scrolling table of subtitle cues (start s, end s, text), times as H:MM:SS.mmm."""
        self.table([(i, _clock(start), _clock(end), text) for i, (start, end, text) in enumerate(cues, 1)],
                   ["#", "start", "end", "text"], caption=caption, scroll=True)

    def html(self) -> str:
        """The page's HTML."""
        script = [f"<script>{PROBE_SCRIPT}</script>"] if self.probe else []
        return "\n".join([
            "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(self.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
            *self.blocks, *script, "</body>", "</html>", "",
        ])

    def write(self, path: str | Path) -> Path:
        """Copy the assets into `assets/` next to `path`, then write the page; each file atomically. Returns `path`."""
        path = Path(path)
        for name, source in self.assets.items():
            copy_atomic(source, path.parent / ASSETS / name)
        return write_atomic(path, self.html())
