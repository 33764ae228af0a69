"""WER/CER reports: hand-computed counts, empty references, groups, worst-utterance alignments, normalisation."""

import math

import jiwer
import pytest

from toolkit.errors import ToolkitError
from toolkit.metrics import format_wer_table, normalize_transcript_for_scoring, wer_report

REFS = {
    "u1": "The cat sat on the mat.",  # hyp: 1 substitution (the -> a); chars: 2 substitution-or-deletion + 1
    "u2": "Hello, World!",  # 1 insertion (foo)
    "u3": "one two three four",  # 1 deletion (two)
    "u4": "",  # empty reference: 1 insertion, no words
    "u5": "Don't stop",  # no hypothesis: 2 deletions
}
HYPS = {"u1": "the cat sat on a mat", "u2": "HELLO world foo", "u3": "one three four", "u4": "uh"}
GROUPS = {"u1": "us", "u2": "us", "u3": "uk", "u4": "uk"}


def test_normalisation_is_documented_and_applied():
    assert normalize_transcript_for_scoring("Hello, World! It's  a well-known 'test'.") == (
        "hello world it's a well known test"
    )
    assert normalize_transcript_for_scoring("  Don’t STOP…  ") == "don't stop"
    assert "normalize_transcript_for_scoring" in wer_report({"a": "x"}, {"a": "x"})["normalization"]
    assert wer_report({"a": "Hello, World!"}, {"a": "hello world"})["wer"] == 0.0
    assert wer_report({"a": "Hello, World!"}, {"a": "hello word"})["wer"] == 0.5


def test_hand_computed_counts():
    r = wer_report(REFS, HYPS)
    assert (r["substitutions"], r["deletions"], r["insertions"], r["hits"]) == (1, 3, 2, 10)
    assert (r["words"], r["utterances"], r["errors"]) == (14, 5, 6)
    assert r["wer"] == pytest.approx(6 / 14)
    # characters (spaces included): u1 "the"->"a" 3, u2 " foo" 4, u3 "two " 4, u4 "uh" 2, u5 "don't stop" 10
    assert (r["char_errors"], r["chars"]) == (23, 22 + 11 + 18 + 0 + 10)
    assert r["cer"] == pytest.approx(23 / 61)
    assert (r["empty_references"], r["missing_hypotheses"]) == (1, 1)
    assert r["sentence_error_rate"] == 1.0
    assert "groups" not in r


def test_agrees_with_jiwer_on_plain_text():
    refs = {i: t for i, t in enumerate(["a b c d", "e f g", "h i j k l"])}
    hyps = {0: "a x c d y", 1: "f g", 2: "h i j k l"}
    r = wer_report(refs, hyps)
    assert r["wer"] == pytest.approx(jiwer.wer(list(refs.values()), list(hyps.values())))
    assert r["cer"] == pytest.approx(jiwer.cer(list(refs.values()), list(hyps.values())))


def test_empty_references_count_insertions_only():
    assert wer_report({"a": ""}, {"a": ""})["wer"] == 0.0
    only_empty = wer_report({"a": "", "b": "..."}, {"a": "x y"})
    assert only_empty["insertions"] == 2 and only_empty["words"] == 0 and math.isinf(only_empty["wer"])
    assert wer_report({"a": "", "b": "one two"}, {"a": "x", "b": "one two"})["wer"] == 0.5


def test_per_group_breakdown():
    groups = wer_report(REFS, HYPS, groups=GROUPS)["groups"]
    assert list(groups) == ["(ungrouped)", "uk", "us"]
    assert (groups["us"]["words"], groups["us"]["errors"], groups["us"]["utterances"]) == (8, 2, 2)
    assert groups["us"]["wer"] == pytest.approx(0.25)
    assert groups["uk"]["wer"] == pytest.approx(0.5)  # 1 deletion + 1 insertion over 4 words
    assert (groups["uk"]["deletions"], groups["uk"]["insertions"]) == (1, 1)
    assert groups["(ungrouped)"]["wer"] == 1.0
    assert sum(g["words"] for g in groups.values()) == 14


def test_worst_utterances_and_alignment_text():
    r = wer_report(REFS, HYPS, groups=GROUPS, worst=3)
    # most errors first, then the higher utterance WER (u4: inf, u2: 1/2, u3: 1/4, u1: 1/6)
    assert [u["id"] for u in r["worst"]] == ["u5", "u4", "u2"]
    assert r["worst"][0]["alignment"] == "REF: don't stop\nHYP: ***** ****\n     D     D"
    assert r["worst"][1]["alignment"] == "REF: **\nHYP: uh\n     I"
    u1 = wer_report(REFS, HYPS)["worst"][-1]
    assert u1["id"] == "u1" and u1["group"] == "(ungrouped)"
    assert u1["alignment"] == "REF: the cat sat on the mat\nHYP: the cat sat on a   mat\n                    S"
    assert wer_report({"a": "x"}, {"a": "x"})["worst"] == []  # perfect utterances are not listed


def test_format_wer_table():
    text = format_wer_table(wer_report(REFS, HYPS, groups=GROUPS, worst=2))
    assert "WER 42.86%  (S 1  D 3  I 2  of 14 words, 5 utterances)" in text
    assert "CER 37.70%" in text
    assert [line.split()[:4] for line in text.splitlines() if line.startswith("us ")] == [["us", "2", "8", "25.00%"]]
    assert "[u5] 2 errors / 2 words (WER 100.00%)" in text and "[u2]" not in text
    assert "REF: **\nHYP: uh" in text


def test_unknown_hypothesis_ids_are_refused():
    with pytest.raises(ToolkitError, match="no reference"):
        wer_report({"a": "x"}, {"a": "x", "b": "y"})
    with pytest.raises(ToolkitError, match="no references"):
        wer_report({}, {})
