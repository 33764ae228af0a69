"""Properties of cue making (`toolkit.subtitles.cues`) on random word streams under random rules.

On any stream of time-ordered, non-overlapping words: the cues hold every word once, in order, and their lines
are exactly those words; cues never overlap and keep `min_gap` between them; no cue breaks a line, line-count or
duration rule. The input itself can make two rules impossible (a short word between two long pauses has no room
to stay `min_duration` on screen, or to be read at `max_cps`), so on arbitrary streams those two are the only
problems `check_cues` may report; on streams that leave every word the time it needs, it reports none.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.subtitles.cues import CueRules, check_cues, make_cues
from toolkit.timing import Word

properties = settings(max_examples=int(os.environ.get("CUE_EXAMPLES", "150")), deadline=None, database=None,
                      derandomize="CUE_EXAMPLES" not in os.environ, suppress_health_check=[HealthCheck.too_slow])

# Word texts: any visible characters (letters of any script, digits, punctuation, symbols), no spaces or controls.
word_texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")),
            min_size=1, max_size=14),
    st.sampled_from(["the", "a", "of", "and", "I", "end.", "Why?", "well,", "so;", "「はい」", "done.\"", "—",
                     "Dr.", "...", "supercalifragilisticexpialidocious"]),
)

rules_strategy = st.builds(
    lambda line, lines, min_d, extra_d, gap, cps, pause, lead: CueRules(
        max_line_chars=line, max_lines=lines, min_duration=min_d, max_duration=min_d + extra_d, min_gap=gap,
        max_cps=cps, pause_split=pause, max_lead_in=lead),
    st.integers(8, 50), st.integers(1, 3), st.sampled_from([0.0, 0.5, 1.0, 1.5]), st.sampled_from([0.5, 3.0, 6.0]),
    st.sampled_from([0.0, 0.04, 0.08, 0.2]), st.sampled_from([8.0, 15.0, 20.0, 30.0]),
    st.sampled_from([0.3, 0.6, 1.5, float("inf")]), st.sampled_from([0.0, 0.25, 0.5]),
)


@st.composite
def word_streams(draw, rules: CueRules | None = None):
    """Sorted, non-overlapping words at whole milliseconds. With `rules`: every word lasts long enough to be shown
    alone (min_duration, its characters at max_cps) and no longer than max_duration, and every pause leaves
    min_gap plus a space's reading time plus a millisecond or two of rounding, so the rules can all be met."""
    texts = draw(st.lists(word_texts, min_size=1, max_size=30))
    words, t = [], draw(st.integers(0, 2000))
    for text in texts:
        if rules is None:
            duration, pause = draw(st.integers(0, 3000)), draw(st.sampled_from([0, 0, 10, 50, 300, 700, 2500]))
        else:
            text = text[: int(rules.max_cps * rules.max_duration) - 1] or "x"  # readable within max_duration
            needed = max(rules.min_duration, len(text) / rules.max_cps)
            duration = draw(st.integers(int(needed * 1000) + 1, int(rules.max_duration * 1000)))
            least = int(1000 * max(rules.min_gap, 1 / rules.max_cps)) + 3
            pause = draw(st.integers(least, least + 2000))
        words.append(Word(text, t / 1000, (t + duration) / 1000))
        t += duration + pause
    return words


def check_structure(words: list[Word], cues, rules: CueRules) -> list[str]:
    """The properties that hold for any input; returns check_cues' problems."""
    assert [w for cue in cues for w in cue.words] == words  # every word, once, in order
    for cue in cues:
        assert cue.words and " ".join(cue.lines) == " ".join(w.text for w in cue.words)
        assert 1 <= len(cue.lines) <= rules.max_lines
        assert all(len(line) <= rules.max_line_chars or " " not in line for line in cue.lines)
        assert 0 <= cue.start < cue.end <= cue.start + rules.max_duration + 1e-9
        assert cue.start >= cue.words[0].start - rules.max_lead_in - 1e-9  # led in by max_lead_in at most
    for a, b in zip(cues, cues[1:]):
        assert b.start - a.end >= rules.min_gap - 1e-9, (a, b)  # never overlapping, min_gap apart
    return check_cues(cues, rules)


@properties
@given(rules=rules_strategy, data=st.data())
def test_any_word_stream_breaks_only_the_rules_its_timing_makes_impossible(rules, data):
    words = data.draw(word_streams())
    problems = check_structure(words, make_cues(words, rules), rules)
    assert all("min_duration" in p or "max_cps" in p for p in problems), problems


@properties
@given(rules=rules_strategy, data=st.data())
def test_word_streams_that_leave_room_give_cues_that_obey_every_rule(rules, data):
    words = data.draw(word_streams(rules))
    assert check_structure(words, make_cues(words, rules), rules) == []
