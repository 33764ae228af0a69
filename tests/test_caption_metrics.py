"""Caption metrics: BLEU/ROUGE-L/CIDEr-D/METEOR through pycocoevalcap on normalised text, plus exact match."""

import math
import shutil

import pytest

from toolkit.errors import ToolkitError
from toolkit.metrics import caption_scores, format_table
from toolkit.metrics import caption as caption_module

REFS = {
    "img1": ["a red circle on the left", "a red round shape on the left side"],
    "img2": ["a blue square on the right", "a blue box on the right"],
    "img3": ["a green triangle on the left", "green triangle at the left"],
}
KEYS = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "exact_match"]


def test_keys_and_order_without_meteor():
    scores = caption_scores({k: v[0] for k, v in REFS.items()}, REFS, meteor=False)
    assert list(scores) == KEYS
    assert all(isinstance(v, float) for v in scores.values())


def test_identical_predictions_score_perfectly():
    scores = caption_scores({k: v[0] for k, v in REFS.items()}, REFS, meteor=False)
    for n in range(1, 5):
        assert scores[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["exact_match"] == 1.0
    assert scores["CIDEr-D"] > 1.0


def test_disjoint_predictions_score_low():
    preds = {"img1": "zebra xylophone quartz", "img2": "purple monkey dishwasher", "img3": "seven jumping owls"}
    scores = caption_scores(preds, REFS, meteor=False)
    for key in KEYS:
        assert scores[key] < 1e-6, key


def test_hand_computed_bleu():
    # "a cat sat on the mat" vs "the cat is on the mat": 4 of 6 unigrams clipped-match (cat, on, the, mat),
    # 2 of 5 bigrams (on the, the mat); equal lengths, so no brevity penalty.
    scores = caption_scores({"x": "A cat sat on the mat."}, {"x": ["The cat is on the mat"]}, meteor=False)
    assert scores["BLEU-1"] == pytest.approx(4 / 6, abs=1e-6)
    assert scores["BLEU-2"] == pytest.approx(math.sqrt(4 / 6 * 2 / 5), abs=1e-6)
    # "the cat": every unigram matches, brevity penalty exp(1 - 6/2)
    scores = caption_scores({"x": "the cat"}, {"x": ["the cat is on the mat"]}, meteor=False)
    assert scores["BLEU-1"] == pytest.approx(math.exp(1 - 6 / 2), abs=1e-6)


def test_exact_match_any_reference_after_normalisation():
    preds = {"img1": "A Red round-shape, on the LEFT side!", "img2": "a blue square",
             "img3": "Green  triangle at the left."}
    scores = caption_scores(preds, REFS, meteor=False)
    assert scores["exact_match"] == pytest.approx(2 / 3)  # img1 matches its second reference, img3 its second


def test_empty_prediction_scores_zero_without_crashing():
    scores = caption_scores({"img1": "", "img2": "!!!"}, REFS, meteor=False)
    assert list(scores) == KEYS
    assert all(v == 0.0 for v in scores.values()), scores
    # an empty prediction scores 0 even against a reference that normalises to nothing
    nothing = caption_scores({"x": ""}, {"x": ["...", "a cat"]}, meteor=False)
    assert all(v == 0.0 for v in nothing.values()), nothing
    mixed = caption_scores({"img1": "", "img2": REFS["img2"][0]}, REFS, meteor=False)
    assert mixed["exact_match"] == 0.5 and 0.0 < mixed["ROUGE-L"] == pytest.approx(0.5)


def test_pycocoevalcap_prints_are_silenced(capsys):
    caption_scores({k: v[0] for k, v in REFS.items()}, REFS, meteor=False)
    assert capsys.readouterr().out == ""


def test_meteor_present_iff_java():
    if shutil.which("java") is None:  # METEOR's absence without Java: test_without_java_meteor_is_skipped_or_refused
        pytest.skip("no Java runtime: pycocoevalcap's METEOR needs one (Debian: apt-get install default-jre-headless)")
    preds = {"img1": REFS["img1"][0], "img2": "a blue square on the left", "img3": ""}
    scores = caption_scores(preds, REFS)
    assert ("METEOR" in scores) == (shutil.which("java") is not None)
    if "METEOR" in scores:
        assert list(scores) == KEYS[:4] + ["METEOR"] + KEYS[4:]
        assert 0.0 < scores["METEOR"] < 1.0
    assert "METEOR" not in caption_scores(preds, REFS, meteor=False)


def test_without_java_meteor_is_skipped_or_refused(monkeypatch):
    monkeypatch.setattr(caption_module.shutil, "which", lambda name: None)
    preds = {k: v[0] for k, v in REFS.items()}
    assert list(caption_scores(preds, REFS)) == KEYS
    with pytest.raises(ToolkitError, match="METEOR needs Java") as e:
        caption_scores(preds, REFS, meteor=True)
    assert "\n" not in str(e.value)


def test_missing_references_are_refused():
    with pytest.raises(ToolkitError, match="no reference caption.*'nope'"):
        caption_scores({"img1": "a", "nope": "b"}, REFS, meteor=False)
    with pytest.raises(ToolkitError, match="no predictions"):
        caption_scores({}, REFS, meteor=False)


def test_format_table():
    table = format_table({"BLEU-4": 0.123456, "CIDEr-D": 1.5, "exact_match": 1.0})
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "score"]
    assert lines[2].split() == ["BLEU-4", "0.1235"] and lines[3].split() == ["CIDEr-D", "1.5000"]
    assert lines[4].split() == ["exact_match", "1.0000"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
