"""How good are subtitles against a recording whose speech times are known (`toolkit synth longform`)?

    report = timing_report(cues, read_timeline("longform.json"), rules)
    report["start_error_median"], report["cues_in_nonspeech"], report["rule_violations"]

Timing: each true utterance start is matched with the nearest cue start; the error is their distance. An
utterance with no cue start within `miss_after` seconds counts as missed (and is left out of the error
statistics). A cue that overlaps no speech segment at all lies in pure silence, noise or music: a hallucination.
"""

from __future__ import annotations

import bisect
from typing import Any, Sequence

import numpy as np

from toolkit.subtitles.cues import Cue, CueRules, check_cues
from toolkit.timing import Segment


def timing_report(cues: Sequence[Cue], timeline: Sequence[Segment], rules: CueRules,
                  miss_after: float = 1.0) -> dict[str, Any]:
    """Cue timing, hallucination, overlap and rule figures of `cues` against the true `timeline`."""
    speech = [s for s in timeline if s.kind == "speech"]
    starts = sorted(c.start for c in cues)
    errors, missed = [], 0
    for s in speech:
        i = bisect.bisect_left(starts, s.start)
        near = [abs(starts[j] - s.start) for j in (i - 1, i) if 0 <= j < len(starts)]
        if near and min(near) <= miss_after:
            errors.append(min(near))
        else:
            missed += 1
    in_nonspeech = [c for c in cues if not any(min(c.end, s.end) > max(c.start, s.start) for s in speech)]
    overlaps = sum(1 for a, b in zip(cues, cues[1:]) if b.start < a.end)
    violations = check_cues(cues, rules)
    e = np.asarray(errors) if errors else np.asarray([np.nan])
    return {
        "utterances": len(speech),
        "cues": len(cues),
        "missed_utterances": missed,
        "start_error_median": float(np.median(e)),
        "start_error_p95": float(np.percentile(e, 95)),
        "start_error_max": float(np.max(e)),
        "cues_in_nonspeech": len(in_nonspeech),
        "nonspeech_examples": [f"{c.start:.2f}-{c.end:.2f} {c.text!r}" for c in in_nonspeech[:5]],
        "overlapping_cues": overlaps,
        "rule_violations": len(violations),
        "violation_examples": violations[:5],
    }
