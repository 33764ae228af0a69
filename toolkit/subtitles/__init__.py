"""Subtitles: timed words -> cues (line, length and reading-speed rules) -> SRT / WebVTT / JSON.

    from toolkit.subtitles import CueRules, check_cues, get_writer, make_cues
    rules = CueRules(max_line_chars=42, max_cps=17)
    cues = make_cues(words, rules)                   # words: list[Word(text, start, end)], seconds, in order
    problems = check_cues(cues, rules)               # one line per broken rule; [] for a clean result
    get_writer("srt").write_file(cues, "talk.srt")   # or "vtt", "json"
"""

from toolkit.subtitles.cues import Cue, CueRules, check_cues, clean_word_text, layout_lines, make_cues
from toolkit.subtitles.writers import (
    WRITERS,
    JsonWriter,
    SrtWriter,
    SubtitleWriter,
    WebVttWriter,
    format_timestamp,
    get_writer,
    text_lines,
)
from toolkit.timing import Word

__all__ = ["WRITERS", "Cue", "CueRules", "JsonWriter", "SrtWriter", "SubtitleWriter", "WebVttWriter", "Word",
           "check_cues", "clean_word_text", "format_timestamp", "get_writer", "layout_lines", "make_cues",
           "text_lines"]
