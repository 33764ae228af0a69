"""A report in a real browser: what headless Chromium loads from it, and a screenshot of it.

    view = load_in_browser("exp/quickstart/report.html")
    view.tables, view.images_loaded, view.videos[0]["cues"]      # read back from the page's probe script
    take_screenshot("exp/quickstart/report.html", "report.png")  # also: toolkit report ... --screenshot report.png

Chromium (Debian: `apt-get install chromium`) runs headless with a fresh profile and nothing that reaches the
network. The same screenshot by hand:

    chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \\
      --disable-sync --no-first-run --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1280,4000 \\
      --virtual-time-budget=8000 --screenshot=report.png "file://$PWD/exp/quickstart/report.html"

`--virtual-time-budget` lets the page settle (media metadata, subtitle cues, the probe script) before the DOM is
dumped or the screenshot taken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from toolkit.errors import ToolkitError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio")
SETTLE_MS = 8000  # virtual time the page gets before its DOM is read or its screenshot taken
TIMEOUT_S = 120.0  # wall-clock limit of one browser run
MAX_HEIGHT = 16384  # the tallest screenshot taken, in CSS pixels


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable on the PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _run_chromium(page: Path, flags: list[str], user_data_dir: str | os.PathLike[str] | None) -> str:
    """Run headless Chromium on the local `page` with `flags` in a fresh profile; its stdout."""
    browser = find_chromium()
    if browser is None:
        raise ToolkitError("no Chromium found on the PATH (Debian: apt-get install chromium)")
    if not page.is_file():
        raise ToolkitError(f"{page}: page not found")
    with tempfile.TemporaryDirectory(prefix="toolkit-chromium-") as fresh:
        profile = Path(user_data_dir or fresh)
        profile.mkdir(parents=True, exist_ok=True)
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={SETTLE_MS}",
                   *flags, page.resolve().as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ToolkitError(f"{page}: Chromium did not finish within {TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ToolkitError(f"{page}: Chromium failed with exit status {done.returncode} ({last})")
    return done.stdout


@dataclass
class BrowserView:
    """What the browser loaded, as the page's probe script recorded it (see `toolkit.report.page`): counts of
    <table> and <img> elements, of images with pixels, the page height in CSS pixels, and per <video> its
    data-* values (ready-state, duration, video-width, frames, text-tracks, cues, error) as strings."""

    tables: int
    images: int
    images_loaded: int
    height: int
    videos: list[dict[str, str]] = field(default_factory=list)


class _ProbeReader(HTMLParser):
    """Collects the data-* attributes of <body> and of each <video> in a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.videos: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        data = {k[5:]: v or "" for k, v in attrs if k.startswith("data-")}
        if tag == "body":
            self.body = data
        elif tag == "video":
            self.videos.append(data)


def load_in_browser(page: str | os.PathLike[str], width: int = 1280,
                    user_data_dir: str | os.PathLike[str] | None = None) -> BrowserView:
    """Open `page` in headless Chromium in a window `width` CSS pixels wide, let it settle, and read back what its
    probe script recorded. A page without the probe script (written with `probe=False`) is a `ToolkitError`."""
    page = Path(page)
    reader = _ProbeReader()
    reader.feed(_run_chromium(page, [f"--window-size={width},800", "--dump-dom"], user_data_dir))
    body = reader.body
    if "tables" not in body:
        raise ToolkitError(f"{page}: the page recorded nothing (no probe script, or scripts did not run)")
    return BrowserView(int(body["tables"]), int(body["images"]), int(body["images-loaded"]), int(body["height"]),
                       reader.videos)


def take_screenshot(page: str | os.PathLike[str], png: str | os.PathLike[str], width: int = 1280,
                    height: int | None = None, user_data_dir: str | os.PathLike[str] | None = None) -> Path:
    """A PNG of `page` rendered `width` CSS pixels wide and `height` high (None: the whole page, as measured by its
    probe script, at most `MAX_HEIGHT`). Written atomically; returns `png`."""
    page, png = Path(page), Path(png)
    if height is None:
        height = load_in_browser(page, width, user_data_dir).height
    height = max(200, min(int(height), MAX_HEIGHT))
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.tmp.png")
    try:
        _run_chromium(page, ["--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={tmp}"],
                      user_data_dir)
        if not tmp.is_file():
            raise ToolkitError(f"{page}: Chromium wrote no screenshot")
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png
