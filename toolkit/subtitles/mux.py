"""Put a subtitle file into a video as a soft track (one the viewer can switch off), with ffmpeg.

    mux_subtitles("talk.mp4", "talk.srt", "talk.subtitled.mp4")    # mp4/mov: mov_text; mkv: srt; webm: webvtt

The streams of the video are copied, not re-encoded, so muxing takes seconds for any length. The output is
written to a temporary file next to it and renamed at the end, so a failure never leaves half a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from toolkit.errors import ToolkitError

#: the subtitle codec each container takes
SUBTITLE_CODECS = {".mkv": "srt", ".mka": "srt", ".mp4": "mov_text", ".m4v": "mov_text", ".mov": "mov_text",
                   ".webm": "webvtt"}


def find_ffmpeg() -> str:
    """The ffmpeg executable, or a one-line ToolkitError saying how to install it."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise ToolkitError("--mux needs ffmpeg, which is not installed: apt-get install ffmpeg (or brew install "
                           "ffmpeg); the subtitle file itself was written")
    return path


def mux_subtitles(video: str | Path, subtitles: str | Path, out: str | Path, language: str = "eng") -> Path:
    """Write `out`: the streams of `video` plus `subtitles` (.srt or .vtt) as a default soft subtitle track."""
    video, subtitles, out = Path(video), Path(subtitles), Path(out)
    codec = SUBTITLE_CODECS.get(out.suffix.lower())
    if codec is None:
        raise ToolkitError(f"{out}: cannot hold a subtitle track: use one of {', '.join(sorted(SUBTITLE_CODECS))}")
    for path in (video, subtitles):
        if not path.is_file():
            raise ToolkitError(f"{path}: no such file")
    if out.resolve() == video.resolve():
        raise ToolkitError(f"{out}: the output would overwrite the input video; choose another name")
    ffmpeg = find_ffmpeg()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    command = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(video), "-i", str(subtitles),
               "-map", "0:v?", "-map", "0:a?", "-map", "1:0", "-c", "copy", "-c:s", codec,
               "-metadata:s:s:0", f"language={language}", "-disposition:s:0", "default", tmp]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = " ".join((done.stderr.strip().splitlines() or ["unknown error"])[-1].split())
            raise ToolkitError(f"{out}: ffmpeg could not mux {subtitles.name} into {video.name}: {reason}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
