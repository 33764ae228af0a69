"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (pycocoevalcap's scorers) plus exact match.

    scores = caption_scores({"img1": "a red circle"}, {"img1": ["A red circle.", "a circle"]})
    print(format_table(scores))

Every text (prediction and reference) is first passed through `toolkit.text.normalize.normalize_text`
(lowercase, NFKC, punctuation removed except in-word apostrophes, whitespace collapsed), then split on spaces.
This replaces pycocoevalcap's PTBTokenizer, which needs Java, so the numbers do not depend on whether Java is
installed; they are therefore scores **on normalised text** and can differ slightly from the official
COCO-caption numbers (which tokenise with Stanford PTB rules).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from typing import Mapping, Sequence

from toolkit.errors import ToolkitError
from toolkit.text.normalize import normalize_text

#: Keys of `caption_scores`, in order ("METEOR" only when it was computed).
METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "exact_match")


def _import_scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        raise ToolkitError("caption metrics need pycocoevalcap (pip install pycocoevalcap)") from None
    return Bleu, Cider, Rouge


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _meteor(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """METEOR 1.5 (pycocoevalcap's jar, run with Java) over normalised texts; its corpus-level score."""
    from pycocoevalcap.meteor.meteor import Meteor

    def clean(text: str) -> str:  # "|||" separates fields in the jar's line protocol
        return " ".join(text.replace("|||", " ").split())

    gts = {k: [clean(r) for r in refs] for k, refs in gts.items()}
    res = {k: [clean(h) for h in hyps] for k, hyps in res.items()}
    scorer = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            scorer = Meteor()
            score, _ = scorer.compute_score(gts, res)
        return float(score)
    finally:
        if scorer is not None:
            proc = scorer.meteor_p
            with contextlib.suppress(Exception):
                proc.stdin.close()
            proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                with contextlib.suppress(Exception):
                    stream.close()


def _rouge_l(rouge, hyp: str, refs: list[str]) -> float:
    if not hyp:
        return 0.0
    return float(rouge.calc_score([hyp], refs))


def _cider_d(cider_cls, gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    # CiderScorer fails on a corpus whose references hold no n-gram at all; that corpus scores 0.
    if not any(ref.split() for refs in gts.values() for ref in refs):
        return 0.0
    score, _ = cider_cls().compute_score(gts, res)
    return float(score)


def caption_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    meteor: bool | None = None,
) -> dict[str, float]:
    """Score predicted captions against reference captions; both keyed by image id.

    predictions: one caption per image id.
    references:  one or more reference captions per image id; every predicted id needs at least one (ids that
                 only have references are ignored, so pass the predictions of the whole evaluation set).
    meteor:      None = compute METEOR when Java is on the PATH (`shutil.which("java")`), skip it otherwise
                 (and skip it with a warning if the jar fails); True = required (a `ToolkitError` without Java or
                 when the jar fails); False = never.

    Returns, as fractions (CIDEr-D in [0, 10]), in this order:
      "BLEU-1" .. "BLEU-4"  corpus-level BLEU (pycocoevalcap `Bleu`, "closest" reference length),
      "METEOR"              METEOR 1.5 corpus score (only when computed, see `meteor`),
      "ROUGE-L"             mean per-image ROUGE-L (beta 1.2),
      "CIDEr-D"             mean per-image CIDEr-D (pycocoevalcap's `Cider` is the CIDEr-D variant: clipped
                            n-gram counts, a Gaussian length penalty, x10; its idf comes from the references of
                            the scored set, so it is meaningless for a single image and 0 there),
      "exact_match"         fraction of predictions equal to any of their references.

    All metrics are computed on normalised text: predictions and references go through
    `toolkit.text.normalize.normalize_text` (lowercase, NFKC, punctuation removed except in-word apostrophes,
    whitespace collapsed) and are split on spaces, instead of pycocoevalcap's Java PTBTokenizer. An empty
    (or all-punctuation) prediction scores 0 on every metric.
    """
    if not predictions:
        raise ToolkitError("caption_scores: no predictions to score")
    missing = [k for k in predictions if not references.get(k)]
    if missing:
        raise ToolkitError(
            f"caption_scores: {len(missing)} predicted image id(s) have no reference caption (e.g. {missing[0]!r})"
        )
    for k, refs in references.items():
        if isinstance(refs, str):
            raise ToolkitError(f"caption_scores: references[{k!r}] must be a list of captions, not a string")

    java = shutil.which("java") is not None
    if meteor is True and not java:
        raise ToolkitError("METEOR needs Java, and no `java` is on the PATH (install a JRE or pass meteor=False)")
    Bleu, Cider, Rouge = _import_scorers()

    ids = list(predictions)
    res = {k: [normalize_text(predictions[k])] for k in ids}
    gts = {k: [normalize_text(r) for r in references[k]] for k in ids}

    scores: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its n-gram statistics
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        scores[f"BLEU-{n}"] = float(value)

    if meteor or (meteor is None and java):
        try:
            scores["METEOR"] = _meteor(gts, res)
        except Exception as e:  # noqa: BLE001 - the jar's failure modes are many (memory, broken JRE, ...)
            if meteor:
                raise ToolkitError(f"METEOR failed ({_one_line(e)})") from None
            warnings.warn(f"METEOR skipped: the METEOR jar failed ({_one_line(e)})", RuntimeWarning, stacklevel=2)

    rouge = Rouge()
    scores["ROUGE-L"] = sum(_rouge_l(rouge, res[k][0], gts[k]) for k in ids) / len(ids)
    with contextlib.redirect_stdout(io.StringIO()):
        scores["CIDEr-D"] = _cider_d(Cider, gts, res)
    scores["exact_match"] = sum(bool(res[k][0]) and res[k][0] in gts[k] for k in ids) / len(ids)
    return scores


def format_table(scores: Mapping[str, float]) -> str:
    """A two-column text table of `scores` (metric name, value with 4 decimals), in the dict's order."""
    rows = [(str(k), f"{float(v):.4f}") for k, v in scores.items()]
    left = max([len("metric")] + [len(k) for k, _ in rows])
    right = max([len("score")] + [len(v) for _, v in rows])
    rule = f"{'-' * left}  {'-' * right}"
    lines = [f"{'metric':<{left}}  {'score':>{right}}", rule]
    lines += [f"{k:<{left}}  {v:>{right}}" for k, v in rows]
    return "\n".join(lines)
