"""The README's main-job command, `bash recipes/quickstart/run.sh`, end to end in its tiny mode (about a minute):
corpora, both trainings, evaluations, the subtitled demo video and the report, checked in headless Chromium;
then a second run that finds everything made and redoes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from toolkit.report.browser import find_chromium, load_in_browser

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
                    reason="the quickstart needs espeak-ng and ffmpeg (.ci/run installs them)")
def test_quickstart_tiny_end_to_end_and_rerun_skips(tmp_path):
    exp = tmp_path / "quickstart"
    run = ["bash", str(ROOT / "recipes/quickstart/run.sh"), "--tiny", "true", "--exp", str(exp)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(run, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == f"open {exp}/report.html"
    for name in ("caption/final/model.safetensors", "caption/gallery.json", "speech/final/model.safetensors",
                 "speech/lm/final/model.safetensors", "speech/eval/lm_test_heldout.json", "subtitles/demo.vtt",
                 "subtitles/demo.srt", "subtitles/demo.timing.json", "subtitles/source/demo.subtitled.mkv"):
        assert (exp / name).is_file(), name

    chromium = find_chromium() is not None
    if chromium:
        view = load_in_browser(exp / "report.html")
        assert view.tables >= 7 and view.images_loaded == view.images >= 10
        video = view.videos[0]
        assert int(video["ready-state"]) >= 1 and int(video["text-tracks"]) == 1 and int(video["cues"]) >= 1
        assert (exp / "report.png").stat().st_size > 10_000

    again = subprocess.run(run, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already trained, skipping") == 3  # caption, speech, LM
    assert "already made, skipping" in again.stdout  # the shapes corpus
    assert "toolkit synth longform" not in again.stdout and "video:" not in again.stdout
    if not chromium:  # all else passed; the report's checks in a browser did not run
        pytest.skip("no Chromium: the report was not checked in a browser (Debian: apt-get install chromium)")
