"""Speech recognition metrics: WER and CER with jiwer, error counts, per-group breakdown, worst utterances.

    report = wer_report({"u1": "The cat sat."}, {"u1": "the cat sat on"}, groups={"u1": "en-us"})
    print(format_wer_table(report))

Text normalisation (`normalize_transcript_for_scoring`) is the ONE rule applied to references and hypotheses
before scoring; it is the one text normalisation of the toolkit, `toolkit.text.normalize.normalize_text`:

    1. Unicode NFKC, then lowercase;
    2. typographic apostrophes become ', every other punctuation character (Unicode P*: . , ; : ! ? - " ( ) ...)
       becomes a space; an apostrophe is kept only inside a word ("don't", "rock'n'roll");
    3. whitespace runs collapse to one space, none at either end.

    "Hello, World! It's  a well-known 'test'." -> "hello world it's a well known test"

Symbols ($ % + ...) and digits are kept as they are (numbers are not spelled out). Words are the space-separated
tokens of the normalised text; characters for CER are its characters, spaces between words included (jiwer's
`cer` convention).

    WER = (S + D + I) / N over the whole set, N = reference words (a corpus rate, not a mean of utterance rates);
    CER the same over characters.

An utterance whose normalised reference is empty contributes 0 to N and one insertion per hypothesis word
(per character for CER); if the whole set has N = 0, a rate is 0.0 without errors and inf with any. A reference
with no hypothesis is scored against an empty hypothesis (all deletions) and counted in "missing_hypotheses"; a
hypothesis id that has no reference is an error.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from toolkit.errors import ToolkitError
from toolkit.text.normalize import normalize_text

NORMALIZATION = (
    "NFKC, lowercase, punctuation removed except in-word apostrophes, whitespace collapsed "
    "(toolkit.metrics.asr.normalize_transcript_for_scoring)"
)
UNGROUPED = "(ungrouped)"
_COUNTS = ("substitutions", "deletions", "insertions", "hits")


def normalize_transcript_for_scoring(text: str) -> str:
    """The one WER/CER normalisation of the module docstring (`normalize_text`)."""
    return normalize_text(text)


def _rate(errors: int, total: int) -> float:
    return errors / total if total else (0.0 if errors == 0 else math.inf)


def _chunk_counts(chunks) -> dict[str, int]:
    """S/D/I/H counts of one sentence's jiwer alignment chunks."""
    counts = dict.fromkeys(_COUNTS, 0)
    for ch in chunks:
        n_ref, n_hyp = ch.ref_end_idx - ch.ref_start_idx, ch.hyp_end_idx - ch.hyp_start_idx
        key = {"substitute": "substitutions", "delete": "deletions", "insert": "insertions", "equal": "hits"}[ch.type]
        counts[key] += n_hyp if ch.type == "insert" else n_ref
    return counts


def _align(refs: list[str], hyps: list[str], chars: bool) -> list[tuple[dict[str, int], list]]:
    """Per utterance (counts, alignment chunks) at word or character level; empty references handled here
    (jiwer 3 refuses them): every hypothesis unit is an insertion."""
    import jiwer

    units = (lambda s: list(s)) if chars else (lambda s: s.split())
    results: list[tuple[dict[str, int], list]] = [(dict.fromkeys(_COUNTS, 0), []) for _ in refs]
    scored = [i for i, r in enumerate(refs) if r]
    for i, h in enumerate(hyps):
        if not refs[i] and h:
            n = len(units(h))
            chunk = jiwer.AlignmentChunk(
                type="insert", ref_start_idx=0, ref_end_idx=0, hyp_start_idx=0, hyp_end_idx=n
            )
            results[i] = ({**dict.fromkeys(_COUNTS, 0), "insertions": n}, [chunk])
    if scored:
        process = jiwer.process_characters if chars else jiwer.process_words
        out = process([refs[i] for i in scored], [hyps[i] for i in scored])
        for i, chunks in zip(scored, out.alignments):
            results[i] = (_chunk_counts(chunks), chunks)
    return results


def alignment_text(reference: str, hypothesis: str, chunks) -> str:
    """Three lines, REF / HYP / op (S, D, I under each error), words padded to a common column width; a missing
    word shows as stars."""
    ref, hyp = reference.split(), hypothesis.split()
    columns: list[tuple[str, str, str]] = []
    for ch in chunks:
        r, h = ref[ch.ref_start_idx : ch.ref_end_idx], hyp[ch.hyp_start_idx : ch.hyp_end_idx]
        if ch.type in ("equal", "substitute"):
            columns += [(a, b, " " if ch.type == "equal" else "S") for a, b in zip(r, h)]
        elif ch.type == "delete":
            columns += [(a, "*" * len(a), "D") for a in r]
        else:
            columns += [("*" * len(b), b, "I") for b in h]
    widths = [max(len(a), len(b)) for a, b, _ in columns]
    lines = [
        prefix + " ".join(col[k].ljust(w) for col, w in zip(columns, widths))
        for prefix, k in (("REF: ", 0), ("HYP: ", 1), ("     ", 2))
    ]
    return "\n".join(line.rstrip() for line in lines)


def _summary(utts: list[dict[str, Any]]) -> dict[str, Any]:
    words = sum(u["words"] for u in utts)
    chars = sum(u["chars"] for u in utts)
    counts = {key: sum(u[key] for u in utts) for key in _COUNTS}
    errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    char_errors = sum(u["char_errors"] for u in utts)
    return {
        "wer": _rate(errors, words),
        "cer": _rate(char_errors, chars),
        **counts,
        "errors": errors,
        "words": words,
        "char_errors": char_errors,
        "chars": chars,
        "utterances": len(utts),
        "sentence_error_rate": _rate(sum(u["errors"] > 0 for u in utts), len(utts)),
    }


def wer_report(
    references: Mapping[str, str],
    hypotheses: Mapping[str, str],
    groups: Mapping[str, str] | None = None,
    worst: int = 10,
) -> dict[str, Any]:
    """Score `hypotheses` against `references` (both id -> transcript) after `normalize_transcript_for_scoring`.

    groups: id -> group name (a voice, an accent, a speaker); ids it lacks go to "(ungrouped)".
    Returns a dict:
      "wer", "cer"                     corpus rates (fractions; see the module docstring for N = 0);
      "substitutions", "deletions", "insertions", "hits", "errors", "words"   word-level counts;
      "char_errors", "chars"           character-level counts; "utterances"; "sentence_error_rate";
      "empty_references", "missing_hypotheses"   counts; "normalization" a description of the rule;
      "groups"                         group -> the same summary keys, sorted by group name (only with `groups`);
      "worst"                          the `worst` utterances with errors, most errors first (then higher
                                       utterance WER, then id), each {"id", "group", "errors", "words", "wer",
                                       "substitutions", "deletions", "insertions", "reference", "hypothesis",
                                       "alignment"} (normalised texts; "alignment" from `alignment_text`).
    """
    extra = [k for k in hypotheses if k not in references]
    if extra:
        raise ToolkitError(f"wer_report: {len(extra)} hypothesis id(s) have no reference (e.g. {extra[0]!r})")
    if not references:
        raise ToolkitError("wer_report: no references to score")
    ids = list(references)
    refs = [normalize_transcript_for_scoring(references[i]) for i in ids]
    hyps = [normalize_transcript_for_scoring(hypotheses.get(i, "")) for i in ids]
    word_align, char_align = _align(refs, hyps, chars=False), _align(refs, hyps, chars=True)
    utts = []
    for i, ref, hyp, (wc, chunks), (cc, _) in zip(ids, refs, hyps, word_align, char_align):
        errors = wc["substitutions"] + wc["deletions"] + wc["insertions"]
        words = wc["substitutions"] + wc["deletions"] + wc["hits"]
        utts.append({
            "id": i, "group": (groups or {}).get(i, UNGROUPED), **wc, "errors": errors, "words": words,
            "wer": _rate(errors, words), "chars": len(ref),
            "char_errors": cc["substitutions"] + cc["deletions"] + cc["insertions"],
            "reference": ref, "hypothesis": hyp, "chunks": chunks,
        })
    report = _summary(utts)
    report["empty_references"] = sum(not r for r in refs)
    report["missing_hypotheses"] = sum(i not in hypotheses for i in ids)
    report["normalization"] = NORMALIZATION
    if groups is not None:
        names = sorted({u["group"] for u in utts})
        report["groups"] = {g: _summary([u for u in utts if u["group"] == g]) for g in names}
    ranked = sorted((u for u in utts if u["errors"]), key=lambda u: (-u["errors"], -u["wer"], str(u["id"])))
    keys = ("id", "group", "errors", "words", "wer", "substitutions", "deletions", "insertions", "reference",
            "hypothesis")
    report["worst"] = [
        {**{k: u[k] for k in keys}, "alignment": alignment_text(u["reference"], u["hypothesis"], u["chunks"])}
        for u in ranked[:worst]
    ]
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%" if math.isfinite(x) else "inf"


def format_wer_table(report: Mapping[str, Any]) -> str:
    """A plain-text summary of a `wer_report`: totals, the per-group table, the worst utterances' alignments."""
    r = report
    lines = [
        f"WER {_pct(r['wer'])}  (S {r['substitutions']}  D {r['deletions']}  I {r['insertions']}  "
        f"of {r['words']} words, {r['utterances']} utterances)",
        f"CER {_pct(r['cer'])}  ({r['char_errors']} of {r['chars']} characters)",
        f"sentence error rate {_pct(r['sentence_error_rate'])}; empty references {r['empty_references']}; "
        f"missing hypotheses {r['missing_hypotheses']}",
    ]
    if r.get("groups"):
        width = max(5, *(len(str(g)) for g in r["groups"]))
        head = [f"{'group':<{width}}", f"{'utts':>6}", f"{'words':>7}", f"{'WER':>8}", f"{'CER':>8}"]
        lines += ["", "  ".join(head + [f"{op:>5}" for op in "SDI"])]
        for name, g in r["groups"].items():
            lines.append(
                f"{name:<{width}}  {g['utterances']:>6}  {g['words']:>7}  {_pct(g['wer']):>8}  {_pct(g['cer']):>8}  "
                f"{g['substitutions']:>5}  {g['deletions']:>5}  {g['insertions']:>5}"
            )
    if r.get("worst"):
        lines += ["", f"worst {len(r['worst'])} utterances:"]
        for u in r["worst"]:
            head = f"[{u['id']}] {u['errors']} errors / {u['words']} words (WER {_pct(u['wer'])})"
            lines += [head, u["alignment"], ""]
    return "\n".join(lines).rstrip() + "\n"
