"""Subtitle files: SRT, WebVTT and JSON writers for cues, safe for any text.

    writer = get_writer("srt")                      # or "vtt", "json"
    writer.write_file(cues, "talk.srt")             # atomic: the old file survives any failure
    text = writer.to_string(cues)

Times are written in whole milliseconds (rounded to nearest), a negative time as 0, and a cue always ends at
least a millisecond after it starts. Cues are written in the order given.

What any text becomes in SRT and WebVTT, where a blank line ends a cue and `-->` marks a timing line:
  - line breaks (\\n, \\r, \\r\\n and the Unicode ones) separate lines; other control characters (NUL, tab,
    escape, ...) become spaces; each line is stripped, and lines left empty are dropped, so a cue never holds a
    blank line; lone surrogates (text that is not valid Unicode) become U+FFFD. Right-to-left scripts, emoji and
    format characters (zero-width joiners, direction marks) are kept as they are.
  - a cue left with no text is skipped: it would show nothing, and readers disagree on it (ffmpeg drops it,
    the `srt` package and webvtt-py keep it), so skipping it gives every reader the same cues. The cues
    written are numbered 1, 2, ... in SRT. With no cue at all, an SRT file is empty.
  - SRT: `-->` in the text becomes `→` (U+2192), so no text line reads as a timing line. SRT has no escapes: tags
    such as `<i>` are written as they are and players show them as styling, as they would in any SRT file. A
    line holding only a number followed by a line that starts like a timestamp ("12" then "00:01:02,000 ...")
    is joined with it by a space, since readers that tolerate blank lines inside cues (the `srt` package) would
    take that pair for the start of the next cue.
  - WebVTT: `&`, `<` and `>` are written as `&amp;`, `&lt;` and `&gt;`, so the text is shown as written and
    cannot hold `-->`.
JSON keeps every cue and the text as given (lone surrogates aside), with each cue's lines and words.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from io import StringIO
from pathlib import Path
from typing import ClassVar, Sequence, TextIO

from toolkit.errors import ToolkitError
from toolkit.subtitles.cues import Cue

__all__ = ["JsonWriter", "SrtWriter", "SubtitleWriter", "WRITERS", "WebVttWriter", "format_timestamp",
           "get_writer", "text_lines"]

SRT_ARROW_REPLACEMENT = "→"
_INDEX_LINE = re.compile(r"-?[0-9]+\.?[0-9]*")  # what SRT readers take for a cue number...
_TIMESTAMP_START = re.compile(r"[0-9]+[,.:，．。：][0-9]+[,.:，．。：][0-9]+")  # ...when a timestamp follows


def _to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def _format_ms(ms: int, decimal_marker: str, always_include_hours: bool) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    prefix = f"{hours:02d}:" if always_include_hours or hours else ""
    return f"{prefix}{minutes:02d}:{secs:02d}{decimal_marker}{millis:03d}"


def format_timestamp(seconds: float, decimal_marker: str = ",", always_include_hours: bool = True) -> str:
    """`seconds` as HH:MM:SS,mmm (rounded to the millisecond; hours may exceed 99, and are left out when
    `always_include_hours` is false and there are none)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        raise ToolkitError(f"timestamp {seconds!r}: must be a finite number of seconds >= 0")
    return _format_ms(_to_ms(seconds), decimal_marker, always_include_hours)


def _checked_ms(value: object, what: str) -> int:
    """A time in whole milliseconds, negative ones as 0; ToolkitError naming `what` for one that is no number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ToolkitError(f"{what} {value!r} is not a finite number of seconds")
    return max(0, _to_ms(value))


def _seconds(value: object, what: str) -> float:
    return _checked_ms(value, what) / 1000


def _cue_times_ms(cue: Cue, number: int) -> tuple[int, int]:
    """(start, end) of cue `number` in whole milliseconds, >= 0, end at least 1 ms after start."""
    start = _checked_ms(cue.start, f"cue {number}: start")
    end = _checked_ms(cue.end, f"cue {number}: end")
    return start, max(end, start + 1)


def _valid_unicode(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot encode) replaced by U+FFFD, surrogate pairs joined."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def text_lines(text: str) -> list[str]:
    """The lines a cue's text is written as in SRT and WebVTT, before format-specific escaping: split at every
    line break, other control characters as spaces, stripped, empty lines dropped."""
    lines = []
    for raw in _valid_unicode(text).splitlines():
        line = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in raw).strip()
        if line:
            lines.append(line)
    return lines


class SubtitleWriter(ABC):
    """Writes cues in one subtitle format; `extension` is the file name suffix, without the dot."""

    extension: ClassVar[str]

    @abstractmethod
    def write(self, cues: Sequence[Cue], file: TextIO) -> None:
        """Write the whole subtitle file for `cues` to an open text file."""

    def to_string(self, cues: Sequence[Cue]) -> str:
        """The file's whole text."""
        buffer = StringIO()
        self.write(cues, buffer)
        return buffer.getvalue()

    def write_file(self, cues: Sequence[Cue], path: str | os.PathLike[str]) -> Path:
        """Write `cues` to `path` (UTF-8, \\n line ends) through a temporary file in the same directory that
        replaces `path` only once complete: on any failure the previous file, if any, is left as it was."""
        path = Path(path)
        if not path.parent.is_dir():
            raise ToolkitError(f"{path}: directory {path.parent} does not exist")
        try:
            fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as e:
            raise ToolkitError(f"{path}: cannot write in {path.parent}: {e.strerror}") from e
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
                self.write(cues, file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temp_name, path.stat().st_mode & 0o777 if path.exists() else 0o644)
            os.replace(temp_name, path)
        except BaseException as e:
            Path(temp_name).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise ToolkitError(f"{path}: cannot write: {e.strerror or e}") from e
            raise
        return path


class SrtWriter(SubtitleWriter):
    """SubRip: numbered blocks `N`, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text lines, a blank line."""

    extension = "srt"

    @staticmethod
    def payload_lines(text: str) -> list[str]:
        """The text lines written for a cue's text (see the module docstring); [] means the cue is skipped."""
        lines: list[str] = []
        for line in text_lines(text):
            line = line.replace("-->", SRT_ARROW_REPLACEMENT)
            if lines and _INDEX_LINE.fullmatch(lines[-1]) and _TIMESTAMP_START.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        return lines

    def write(self, cues: Sequence[Cue], file: TextIO) -> None:
        number = 0
        for position, cue in enumerate(cues, start=1):
            start, end = _cue_times_ms(cue, position)
            lines = self.payload_lines(cue.text)
            if not lines:
                continue
            number += 1
            timing = f"{_format_ms(start, ',', True)} --> {_format_ms(end, ',', True)}"
            file.write("\n".join([str(number), timing, *lines]) + "\n\n")


class WebVttWriter(SubtitleWriter):
    """WebVTT: a `WEBVTT` header, then blocks `HH:MM:SS.mmm --> HH:MM:SS.mmm` and escaped text lines."""

    extension = "vtt"

    @staticmethod
    def payload_lines(text: str) -> list[str]:
        """The text lines written for a cue's text, `&`, `<`, `>` escaped; [] means the cue is skipped."""
        return [line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for line in text_lines(text)]

    def write(self, cues: Sequence[Cue], file: TextIO) -> None:
        file.write("WEBVTT\n\n")
        for position, cue in enumerate(cues, start=1):
            start, end = _cue_times_ms(cue, position)
            lines = self.payload_lines(cue.text)
            if lines:
                timing = f"{_format_ms(start, '.', True)} --> {_format_ms(end, '.', True)}"
                file.write("\n".join([timing, *lines]) + "\n\n")


class JsonWriter(SubtitleWriter):
    """{"cues": [{"start", "end", "text", "lines", "words": [{"text", "start", "end"}]}]}, times in seconds
    rounded to the millisecond; every cue is kept, empty or not."""

    extension = "json"

    def write(self, cues: Sequence[Cue], file: TextIO) -> None:
        records = []
        for number, cue in enumerate(cues, start=1):
            start, end = _cue_times_ms(cue, number)
            words = [{"text": _valid_unicode(word.text),
                      "start": _seconds(word.start, f"cue {number}: word {index} start"),
                      "end": _seconds(word.end, f"cue {number}: word {index} end")}
                     for index, word in enumerate(cue.words, start=1)]
            records.append({"start": start / 1000, "end": end / 1000, "text": _valid_unicode(cue.text),
                            "lines": [_valid_unicode(line) for line in cue.lines], "words": words})
        json.dump({"cues": records}, file, ensure_ascii=False, indent=1)
        file.write("\n")


WRITERS: dict[str, type[SubtitleWriter]] = {"srt": SrtWriter, "vtt": WebVttWriter, "json": JsonWriter}


def get_writer(format: str) -> SubtitleWriter:
    """The writer for "srt", "vtt" or "json" (case and a leading dot ignored)."""
    key = format.lower().lstrip(".") if isinstance(format, str) else format
    if key not in WRITERS:
        raise ToolkitError(f"subtitle format {format!r}: unknown, choose one of {', '.join(WRITERS)}")
    return WRITERS[key]()
