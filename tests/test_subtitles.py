"""Cue segmentation rules (toolkit.subtitles.cues) and the SRT / WebVTT / JSON writers, read back by independent
parsers: the `srt` package, webvtt-py, libavformat through PyAV, and the ffmpeg command when it is installed."""

from __future__ import annotations

import html
import json
import math
import random
import shutil
import subprocess
from pathlib import Path

import av
import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import ConfigError, ToolkitError
from toolkit.subtitles import (
    Cue,
    CueRules,
    JsonWriter,
    SrtWriter,
    WebVttWriter,
    Word,
    check_cues,
    format_timestamp,
    get_writer,
    layout_lines,
    make_cues,
)

PROSE = """\
The old lighthouse on the northern cape was switched off in the spring of nineteen seventy-two, and for a while
nobody knew what to do with it. The keepers had gone years before. Their cottage was let to summer visitors,
who complained about the wind, the stairs and the gulls, in roughly that order. Then a retired schoolteacher
from the village, a woman called Ada Pennick, wrote a letter to the harbour board. Could she, she asked, borrow
the key? She wanted to count birds. The board, which met twice a year and had never been asked anything so
simple, said yes before anyone thought to say no. For the next eleven summers she climbed the tower every
morning at six, notebook in one pocket and a flask of tea in the other, and wrote down everything that flew
past the lantern room. Kittiwakes, fulmars, gannets, the occasional lost swallow. On a good day there were
thousands; on a bad one, fog, and nothing at all. Her notebooks, forty-one of them, are now in the county
archive, and they are more useful than she could have imagined. When researchers compared her counts with
modern surveys, they found that the gannets had moved their feeding grounds almost twenty miles to the east.
Why? The water had warmed, and the sand eels had followed the cold. Nobody had been watching closely enough
to notice, except, it turned out, one stubborn teacher with a pencil. I went up the tower last autumn. The
stairs are exactly as bad as the visitors said: a hundred and twelve steps, narrow, worn smooth in the middle.
At the top the wind takes your breath away, and then gives it back smelling of salt and diesel. You can see
the whole bay from there, the ferry crawling out towards the islands, the wind farm turning slowly on the
horizon. Her chair is still there, a wooden kitchen chair with one leg shorter than the others, wedged against
the rail with a folded beer mat. Somebody has left a fresh notebook on the seat. Nobody I asked would admit to
it. Perhaps that is how these things should work. A record is only as good as the person who keeps showing up
to make it, and most of the time that person is not a scientist, or an official, or anyone you would think to
ask. It is someone with a key, a habit, and a little too much patience. The harbour board still meets twice a
year. Last spring they voted to keep the lighthouse open to anyone who wants to count something, birds,
boats, clouds, whatever. There have been eight requests so far. Three of them were from children. One was
from a man who wanted to count the stars, which the board felt was ambitious, but they gave him the key
anyway. It seemed like the kind of thing she would have wanted. Incomprehensibilities aside, the story is
simple: look at the same place, every day, for long enough, and the place will tell you something true.
"""

NASTY_TEXTS = ["-->", "<b>", "&amp;", "\n\n", "", " ", "مرحبا بالعالم", "שלום", "\u200f", "\x00", "😀",
               "a --> b", "1\n00:00:01,000 --> 00:00:02,000\nx", "12\n00:01:02,000 y", "\r\n", "\u2028", "\ud800",
               "<i>ok</i> & more", "--->", "NOTE this", "WEBVTT", "\t\x1b[31m", "\u200b", "a\rb"]


def speech_words(text: str, seed: int = 0) -> list[Word]:
    """Timed words as a speaker might say `text`: durations growing with length, short gaps between words,
    longer ones after commas and sentences, an occasional hesitation."""
    rng = random.Random(seed)
    words, t = [], 0.3
    for token in text.split():
        duration = 0.045 * len(token) + rng.uniform(0.06, 0.14)
        words.append(Word(token, round(t, 3), round(t + duration, 3)))
        t += duration
        if token[-1] in ".?!:":
            t += rng.uniform(0.25, 1.1)
        elif token[-1] in ",;":
            t += rng.uniform(0.1, 0.45)
        elif rng.random() < 0.025:
            t += rng.uniform(0.6, 0.9)  # hesitation
        else:
            t += rng.uniform(0.0, 0.08)
    return words


def timed(text: str, word_duration: float = 0.3, gap: float = 0.05, start: float = 0.0) -> list[Word]:
    """Evenly timed words."""
    words, t = [], start
    for token in text.split():
        words.append(Word(token, t, t + word_duration))
        t += word_duration + gap
    return words


def cue_texts(cues: list[Cue]) -> list[str]:
    return [" ".join(cue.lines) for cue in cues]


# ------------------------------------------------------------------------------------------------ segmentation


def test_realistic_three_minute_stream_obeys_every_rule():
    words = speech_words(PROSE)
    assert 150 < words[-1].end < 240
    rules = CueRules()
    cues = make_cues(words, rules)
    assert check_cues(cues, rules) == []
    assert [w for cue in cues for w in cue.words] == words  # every word once, in order, none split
    assert all(" ".join(cue.lines) == " ".join(w.text for w in cue.words) for cue in cues)
    # where no long pause forces a break, the break is chosen: almost always after punctuation
    chosen = [a for a, b in zip(cues, cues[1:]) if b.words[0].start - a.words[-1].end < rules.pause_split]
    at_punctuation = [cue for cue in chosen if cue.words[-1].text[-1] in ".?!,;:"]
    assert len(chosen) >= 15 and len(at_punctuation) / len(chosen) > 0.85
    assert all(cue.start <= cue.words[0].start for cue in cues)
    starts_at_speech = sum(cue.start == cue.words[0].start for cue in cues)
    assert starts_at_speech / len(cues) > 0.9  # lead-in only where a cue needs it


@pytest.mark.parametrize("max_line_chars,max_lines", [(42, 2), (32, 2), (20, 3), (37, 1)])
def test_lines_fit_the_line_length_and_count(max_line_chars, max_lines):
    rules = CueRules(max_line_chars=max_line_chars, max_lines=max_lines, max_cps=30.0)
    cues = make_cues(speech_words(PROSE, seed=1)[:200], rules)
    assert [p for p in check_cues(cues, rules) if "line" in p] == []
    assert max(len(line) for cue in cues for line in cue.lines) <= max_line_chars
    assert max(len(cue.lines) for cue in cues) <= max_lines
    assert max(len(cue.lines) for cue in cues) == max_lines  # the room is used


def test_a_word_longer_than_a_line_is_kept_whole_on_its_own_line():
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis"  # 45 characters
    rules = CueRules(max_line_chars=20)
    words = [Word("They", 0.0, 0.3), Word("had", 0.35, 0.6), Word(long_word, 0.65, 2.9), Word("once.", 3.0, 3.4)]
    cues = make_cues(words, rules)
    assert [cue.lines for cue in cues] == [["They had", long_word], ["once."]]
    assert check_cues(cues, rules) == []
    with_others = [Cue(0.0, 3.0, [f"he had {long_word}"], [])]
    assert "line 1 has 52 characters > 20" in check_cues(with_others, rules)[0]
    assert check_cues([Cue(0.0, 3.0, [long_word], [])], rules) == []


def test_words_are_never_split_and_lines_join_to_the_words():
    words = timed("a " * 5 + "supercalifragilistic expialidocious word " * 6)
    for rules in (CueRules(max_line_chars=12), CueRules(max_line_chars=25, max_lines=1)):
        cues = make_cues(words, rules)
        assert [w for cue in cues for w in cue.words] == words
        for cue in cues:
            assert " ".join(cue.lines).split(" ") == [w.text for w in cue.words]


def test_a_long_pause_always_ends_a_cue():
    words = timed("one two three") + timed("four five six", start=1.0 + 0.6)  # "three" ends at 1.0
    cues = make_cues(words, CueRules(pause_split=0.6))
    assert cue_texts(cues) == ["one two three", "four five six"]
    assert cue_texts(make_cues(words, CueRules(pause_split=0.7))) == ["one two three four five six"]


def test_max_duration_splits_slow_speech():
    words = timed("word " * 40, word_duration=0.5, gap=0.1)  # 24 s of speech, few characters
    rules = CueRules(max_duration=5.0)
    cues = make_cues(words, rules)
    assert check_cues(cues, rules) == []
    assert all(cue.duration <= 5.0 for cue in cues) and len(cues) >= 5


def test_a_single_word_longer_than_max_duration_is_shown_at_most_max_duration():
    words = [Word("Ooooh", 1.0, 10.0), Word("yes.", 10.1, 10.4)]
    rules = CueRules(max_duration=7.0)
    cues = make_cues(words, rules)
    assert cues[0].lines == ["Ooooh"] and cues[0].duration == pytest.approx(7.0)
    assert check_cues(cues, rules) == []


def test_short_cues_are_extended_into_the_gap_and_keep_the_minimum_gap():
    words = [Word("Yes.", 1.0, 1.3), Word("Right", 2.0, 2.3), Word("away.", 2.35, 2.7), Word("Go!", 5.0, 5.2)]
    rules = CueRules(min_duration=1.0, min_gap=0.08, max_lead_in=0.0)
    cues = make_cues(words, rules)
    assert cue_texts(cues) == ["Yes.", "Right away.", "Go!"]
    assert cues[0].start == 1.0 and cues[0].end == pytest.approx(2.0 - 0.08)  # as long as the gap allows
    assert cues[1].end == pytest.approx(3.0) and cues[2].end == pytest.approx(6.0)  # extended to min_duration
    assert check_cues(cues, rules) == ["cue 1: on screen 0.920 s < min_duration 1 s"]
    # with a lead-in allowed, the first cue may appear a little before the word is spoken
    rules = CueRules(min_duration=1.0, max_lead_in=0.25)
    cues = make_cues(words, rules)
    assert cues[0].start == pytest.approx(0.92) and check_cues(cues, rules) == []
    # never before zero
    cues = make_cues([Word("Hi.", 0.1, 0.3), Word("Next", 1.0, 1.3), Word("one.", 1.35, 1.7)], rules)
    assert cues[0].start == 0.0 and cues[0].end == pytest.approx(0.92)


def test_fast_speech_is_extended_to_the_reading_speed():
    words = timed("Extraordinarily complicated sentences tire readers.", word_duration=0.2, gap=0.02)
    rules = CueRules(max_cps=15.0)
    cue = make_cues(words, rules)[0]
    assert words[-1].end - words[0].start < len(cue.text) / 15.0  # too fast as spoken
    assert cue.duration == pytest.approx(math.ceil(1000 * cue.chars / 15.0) / 1000)
    assert check_cues([cue], rules) == []


def test_a_cue_trimmed_before_the_next_one_is_led_in_for_the_trim_too():
    # Seven fast words (32 characters in 1.44 s) whose last one ends 40 ms before the next cue's first word: the
    # cue is trimmed to min_gap before it and needs 1.6 s at 20 characters/s, which only the lead-in can give.
    # (From a 10-minute benchmark where the lead-in was sized before the trim: 1.56 s, 20.5 characters/s.)
    texts = "may your tone stick to the rough of your mouth with the force of a thousand car of a thousand".split()
    starts = [192.032, 192.232, 192.432, 192.712, 192.952, 193.112, 193.272, 193.512, 193.632, 193.832, 194.072,
              194.272, 194.432, 194.712, 194.832, 194.912, 195.392, 195.592, 195.712, 195.792]
    ends = [192.192, 192.392, 192.672, 192.912, 193.072, 193.232, 193.472, 193.592, 193.792, 194.032, 194.232,
            194.392, 194.672, 194.792, 194.872, 195.312, 195.512, 195.672, 195.752, 196.064]
    words = [Word("earlier", 186.9, 187.5)] + [Word(t, a, b) for t, a, b in zip(texts, starts, ends)]
    cues = make_cues(words)
    assert check_cues(cues, CueRules()) == []
    fast = next(c for c in cues if c.text.startswith("may"))
    assert fast.start < 192.032  # led in


def test_overlapping_words_give_cues_that_do_not_overlap():
    words = [Word("first", 0.0, 1.5), Word("cue.", 1.4, 2.5), Word("Second", 2.45, 3.0), Word("one.", 3.0, 3.5)]
    rules = CueRules(max_line_chars=12, max_lines=1)
    cues = make_cues(words, rules)
    assert cue_texts(cues) == ["first cue.", "Second one."]
    assert cues[0].end == pytest.approx(2.45 - 0.08)  # the earlier cue is trimmed
    assert check_cues(cues, rules) == []


def test_simultaneous_words_still_give_ordered_non_overlapping_cues():
    words = [Word(f"w{i}" * 8, 1.0, 1.0) for i in range(6)]
    rules = CueRules(max_line_chars=16, max_lines=1)
    cues = make_cues(words, rules)
    for a, b in zip(cues, cues[1:]):
        assert a.start < a.end <= b.start - 0.08 + 1e-9
    assert cues[0].start >= 0.75  # a lead-in of at most max_lead_in


def test_breaks_prefer_sentence_ends_then_clauses_then_pauses():
    sentence = timed("We left early. The road was long and the night was cold and very dark")
    assert cue_texts(make_cues(sentence, CueRules(max_line_chars=42, max_lines=1)))[0] == "We left early."
    clause = timed("After the long storm had passed, we walked along the beach")
    assert cue_texts(make_cues(clause, CueRules(max_line_chars=42, max_lines=1)))[0] == \
        "After the long storm had passed,"
    # no punctuation: the longest pause wins
    words = timed("one two three four five six seven eight nine ten eleven")  # 55 characters: two cues
    words[4] = Word(words[4].text, words[4].start, words[4].end - 0.3)  # a pause after "five"
    assert cue_texts(make_cues(words, CueRules(max_line_chars=42, max_lines=1)))[0] == "one two three four five"


def test_a_short_sentence_joins_a_neighbour_rather_than_flash_by():
    # "No." alone would be on screen 0.35 s: the next word follows at once, so there is no gap to extend into
    rules = CueRules()
    words = timed("We asked whether the board had ever refused a request. No. They had never said no to anyone.")
    cues = make_cues(words, rules)
    assert cue_texts(cues) == ["We asked whether the board had ever refused a request. No.",
                               "They had never said no to anyone."]
    assert cues[0].lines == ["We asked whether the board", "had ever refused a request. No."]
    assert check_cues(cues, rules) == []


def test_lines_are_balanced_and_break_at_punctuation():
    rules = CueRules(max_line_chars=42)
    lines = layout_lines("the quick brown fox jumps over the lazy dog and runs far away".split(), rules)
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 6
    lines = layout_lines("I told you so. But nobody listens to me when it matters".split(), rules)
    assert lines == ["I told you so.", "But nobody listens to me when it matters"]
    lines = layout_lines("When the rain stopped, we walked down to the harbour again".split(), rules)
    assert lines[0] == "When the rain stopped,"
    assert layout_lines("short enough for one line".split(), rules) == ["short enough for one line"]


def test_no_one_word_orphan_line():
    rules = CueRules(max_line_chars=42)
    words = "We walked all the way to the end of the pier and back again. Then".split()
    lines = layout_lines(words, rules)
    assert all(" " in line for line in lines), lines


def test_word_text_is_cleaned_and_empty_words_dropped():
    words = [Word("hello\nworld", 0.0, 0.4), Word("  ", 0.5, 0.6), Word("", 0.6, 0.7), Word("\u200b", 0.7, 0.8),
             Word("a\x00b\tc", 0.8, 1.0)]
    cues = make_cues(words)
    assert [w.text for cue in cues for w in cue.words] == ["hello world", "a b c"]
    assert cues[0].text == "hello world a b c"
    assert make_cues([]) == [] and make_cues([Word(" ", 0.0, 1.0)]) == []


@pytest.mark.parametrize("words,message", [
    ([Word("a", 0.0, 0.5), Word("b", math.nan, 1.0)], "word 1: start nan"),
    ([Word("a", 0.0, math.inf)], "word 0: end inf"),
    ([Word("a", -0.5, 0.5)], "word 0: start -0.5"),
    ([Word("a", 1.0, 0.5)], "word 0: end 0.5 s is before its start 1.0 s"),
    ([Word("a", 0.0, 0.5), Word("b", 2.0, 2.5), Word("c", 1.0, 1.5)], "word 2: starts at 1.0 s, before word 1"),
    ([Word("a", "0", 1.0)], "word 0: start '0' is not a number"),
])
def test_invalid_word_times_raise_naming_the_word(words, message):
    with pytest.raises(ToolkitError) as info:
        make_cues(words)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("field,value,message", [
    ("max_line_chars", 0, "CueRules.max_line_chars: must be an integer >= 1"),
    ("max_lines", 1.5, "CueRules.max_lines: must be an integer >= 1"),
    ("min_duration", -1.0, "CueRules.min_duration: must be >= 0"),
    ("max_cps", 0.0, "CueRules.max_cps: must be > 0"),
    ("min_gap", math.nan, "CueRules.min_gap: must be a number"),
    ("max_duration", math.inf, "CueRules.max_duration: must be finite"),
    ("min_duration", 8.0, "CueRules.min_duration: 8.0 s is longer than max_duration 7.0 s"),
    ("pause_split", True, "CueRules.pause_split: must be a number"),
])
def test_invalid_rules_raise_config_error_naming_the_field(field, value, message):
    with pytest.raises(ConfigError) as info:
        CueRules(**{field: value})
    assert str(info.value).startswith(message)
    assert CueRules(pause_split=math.inf).pause_split == math.inf


def test_check_cues_reports_each_violated_rule():
    rules = CueRules()
    cues = [Cue(0.0, 0.5, ["x" * 45, "two words", "three"], [Word("x", 0, 0.1)]),
            Cue(0.4, 8.0, ["fine"], []),
            Cue(8.02, 9.0, ["this line is much too long to read in under a second"], []),
            Cue(9.5, 9.5, ["never shown"], []),
            Cue(10.0, 11.0, [" "], [])]
    problems = check_cues(cues, rules)
    assert problems == [
        "cue 1: 3 lines > 2",
        "cue 1: line 1 has 45 characters > 42",
        "cue 1: on screen 0.500 s < min_duration 1 s",
        "cue 1: 118.0 characters/s > max_cps 20",
        "cue 2: on screen 7.600 s > max_duration 7 s",
        "cue 2: starts 0.100 s before cue 1 ends",
        "cue 3: line 1 has 52 characters > 42",
        "cue 3: on screen 0.980 s < min_duration 1 s",
        "cue 3: 53.1 characters/s > max_cps 20",
        "cue 3: starts 0.020 s after cue 2 ends < min_gap 0.08 s",
        "cue 4: ends at 9.500 s, not after its start 9.500 s",
        "cue 5: has no text",
    ]
    assert check_cues([], rules) == []


# ------------------------------------------------------------------------------------------------------ writers


def sample_cues() -> list[Cue]:
    return make_cues(speech_words(PROSE)[:80])


def test_format_timestamp():
    assert format_timestamp(0) == "00:00:00,000"
    assert format_timestamp(3723.4567) == "01:02:03,457"
    assert format_timestamp(59.9996, ".", always_include_hours=False) == "01:00.000"
    assert format_timestamp(360000.0) == "100:00:00,000"
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ToolkitError, match="^timestamp"):
            format_timestamp(bad)


def test_get_writer():
    assert isinstance(get_writer("srt"), SrtWriter) and isinstance(get_writer(".VTT"), WebVttWriter)
    assert isinstance(get_writer("json"), JsonWriter)
    with pytest.raises(ToolkitError, match=r"^subtitle format 'ass': unknown, choose one of srt, vtt, json$"):
        get_writer("ass")


def test_srt_layout():
    cues = [Cue(1.0, 2.5, ["Hello", "world"]), Cue(3.0, 3.0004, ["a --> b"]), Cue(4.0, 5.0, ["  "])]
    assert SrtWriter().to_string(cues) == (
        "1\n00:00:01,000 --> 00:00:02,500\nHello\nworld\n\n"
        "2\n00:00:03,000 --> 00:00:03,001\na → b\n\n")


def test_webvtt_layout():
    cues = [Cue(61.0, 62.5, ["<i>Tom & Jerry</i>", "a --> b"])]
    assert WebVttWriter().to_string(cues) == (
        "WEBVTT\n\n00:01:01.000 --> 00:01:02.500\n&lt;i&gt;Tom &amp; Jerry&lt;/i&gt;\na --&gt; b\n\n")


def test_srt_and_webvtt_round_trip(tmp_path):
    cues = sample_cues()
    srt_path = SrtWriter().write_file(cues, tmp_path / "talk.srt")
    parsed = list(srt.parse(srt_path.read_text(encoding="utf-8")))
    assert [s.index for s in parsed] == list(range(1, len(cues) + 1))
    for cue, sub in zip(cues, parsed, strict=True):
        assert abs(sub.start.total_seconds() - cue.start) < 1e-3 and abs(sub.end.total_seconds() - cue.end) < 1e-3
        assert sub.content == cue.text
    vtt_path = WebVttWriter().write_file(cues, tmp_path / "talk.vtt")
    captions = webvtt.read(str(vtt_path)).captions
    assert len(captions) == len(cues)
    for cue, caption in zip(cues, captions):
        assert (to_ms(caption.start), to_ms(caption.end)) == (round(cue.start * 1000), round(cue.end * 1000))
        assert html.unescape(caption.raw_text) == cue.text


def test_json_round_trip(tmp_path):
    cues = sample_cues()
    data = json.loads(JsonWriter().write_file(cues, tmp_path / "talk.json").read_text(encoding="utf-8"))
    assert len(data["cues"]) == len(cues)
    for cue, record in zip(cues, data["cues"]):
        assert record["start"] == cue.start and record["end"] == cue.end
        assert record["text"] == cue.text and record["lines"] == cue.lines
        assert [Word(**w) for w in record["words"]] == cue.words


def libav_events(path: Path) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of each subtitle event, as libavformat's demuxer reads the file."""
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        assert stream.time_base * 1000 == 1
        return [(packet.pts, packet.pts + packet.duration, bytes(packet).decode("utf-8"))
                for packet in container.demux(stream) if packet.size]


def test_libav_reads_srt_and_webvtt(tmp_path):
    cues = sample_cues()
    expected = [(round(c.start * 1000), round(c.end * 1000), c.text) for c in cues]
    assert libav_events(SrtWriter().write_file(cues, tmp_path / "t.srt")) == expected
    assert libav_events(WebVttWriter().write_file(cues, tmp_path / "t.vtt")) == expected


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
@pytest.mark.parametrize("writer", [SrtWriter(), WebVttWriter()], ids=["srt", "vtt"])
def test_ffmpeg_reads_and_converts(tmp_path, writer):
    cues = sample_cues() + [Cue(100.0, 101.0, ["<b>bold --> & شكرا 😀"])]
    path = writer.write_file(cues, tmp_path / f"in.{writer.extension}")
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "-"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    converted = list(srt.parse(result.stdout))
    assert [(round(s.start.total_seconds() * 1000), round(s.end.total_seconds() * 1000)) for s in converted] == \
        [(round(c.start * 1000), round(c.end * 1000)) for c in cues]
    # The texts come back: WebVTT's escapes undone exactly; SRT has none, so its "-->" was written as "→" and
    # ffmpeg reads "<b>" as SRT markup for bold (and closes it).
    last = "<b>bold → & شكرا 😀</b>" if writer.extension == "srt" else cues[-1].text
    assert [s.content for s in converted] == [c.text for c in cues[:-1]] + [last]


def test_write_file_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "talk.srt"
    path.write_text("old subtitles\n", encoding="utf-8")
    calls = []

    def failing_payload(text):
        calls.append(text)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return [text]

    monkeypatch.setattr(SrtWriter, "payload_lines", staticmethod(failing_payload))
    with pytest.raises(RuntimeError, match="disk on fire"):
        SrtWriter().write_file(sample_cues(), path)
    assert path.read_text(encoding="utf-8") == "old subtitles\n"
    assert [p.name for p in tmp_path.iterdir()] == ["talk.srt"]  # no temporary file left behind
    with pytest.raises(ToolkitError, match="directory .* does not exist"):
        SrtWriter().write_file(sample_cues(), tmp_path / "missing" / "talk.srt")


# ----------------------------------------------------------------------------------------------- property tests

cue_text = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(NASTY_TEXTS)), min_size=1, max_size=4) \
    .map("".join)
cue_times = st.tuples(st.floats(0, 400_000, allow_nan=False), st.floats(0, 20, allow_nan=False))
cue_lists = st.lists(st.tuples(cue_text, cue_times), max_size=8).map(
    lambda items: [Cue(start, start + length, text.split("\n")) for text, (start, length) in items])
# in time order, as in a real file: libav sorts events by time and drops exact duplicates
ordered_cue_lists = st.lists(st.tuples(cue_text, st.integers(1, 100_000), st.floats(0, 20)), max_size=8).map(
    lambda items: [Cue(sum(gap for _, gap, _ in items[:k + 1]) / 1000,
                       sum(gap for _, gap, _ in items[:k + 1]) / 1000 + length, text.split("\n"))
                   for k, (text, _, length) in enumerate(items)])
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def written_ms(cue: Cue) -> tuple[int, int]:
    start = round(cue.start * 1000)
    return start, max(round(cue.end * 1000), start + 1)


@fuzz
@given(cue_lists)
def test_srt_parses_for_any_text(cues):
    written = [(cue, SrtWriter.payload_lines(cue.text)) for cue in cues]
    written = [(cue, lines) for cue, lines in written if lines]
    parsed = list(srt.parse(SrtWriter().to_string(cues)))
    assert len(parsed) == len(written)
    for (cue, lines), sub in zip(written, parsed):
        assert (round(sub.start.total_seconds() * 1000), round(sub.end.total_seconds() * 1000)) == written_ms(cue)
        assert sub.content == "\n".join(lines)
        assert "-->" not in sub.content and "\n\n" not in sub.content
        # only line breaks, spacing, control characters and arrows may differ from the text given
        assert squash(sub.content) == squash(cue.text.replace("-->", "→"))


@fuzz
@given(cue_lists)
def test_webvtt_parses_for_any_text(cues):
    written = [cue for cue in cues if WebVttWriter.payload_lines(cue.text)]
    captions = webvtt.from_string(WebVttWriter().to_string(cues)).captions
    assert len(captions) == len(written)
    for cue, caption in zip(written, captions):
        assert (to_ms(caption.start), to_ms(caption.end)) == written_ms(cue)
        assert caption.lines == WebVttWriter.payload_lines(cue.text)
        assert squash(html.unescape(caption.raw_text)) == squash(cue.text)


@fuzz
@given(cue_lists)
def test_json_loads_for_any_text(cues):
    data = json.loads(JsonWriter().to_string(cues))
    assert [(round(r["start"] * 1000), round(r["end"] * 1000)) for r in data["cues"]] == \
        [written_ms(cue) for cue in cues]
    assert [r["lines"] for r in data["cues"]] == [[valid(line) for line in cue.lines] for cue in cues]


@settings(max_examples=40, deadline=None)
@given(ordered_cue_lists)
def test_libav_reads_any_text(tmp_path_factory, cues):
    folder = tmp_path_factory.mktemp("fuzz")
    for writer in (SrtWriter(), WebVttWriter()):
        path = writer.write_file(cues, folder / f"f.{writer.extension}")
        expected = [(*written_ms(cue), "\n".join(lines)) for cue in cues
                    if (lines := writer.payload_lines(cue.text))]
        if not expected and writer.extension == "srt":
            assert path.read_text(encoding="utf-8") == ""  # an empty SRT file, which libav cannot probe
            continue
        events = libav_events(path)
        assert [(s, e) for s, e, _ in events] == [(s, e) for s, e, _ in expected]
        assert [t for _, _, t in events] == [t for _, _, t in expected]


def to_ms(timestamp: str) -> int:
    hours, minutes, seconds = timestamp.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


def valid(text: str) -> str:
    """`text` as UTF-8 can hold it: lone surrogates as U+FFFD."""
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def squash(text: str) -> str:
    """`text` without whitespace and control characters, lone surrogates as U+FFFD."""
    return "".join(ch for ch in valid(text) if not ch.isspace() and not (ord(ch) < 32 or 127 <= ord(ch) < 160))
