"""Evaluation metrics.

    from toolkit.metrics import caption_scores, format_table
    print(format_table(caption_scores(predictions, references)))

    from toolkit.metrics import wer_report, format_wer_table
    print(format_wer_table(wer_report(references, hypotheses, groups=voices)))
"""

from toolkit.metrics.asr import format_wer_table, normalize_transcript_for_scoring, wer_report
from toolkit.metrics.caption import METRIC_KEYS, caption_scores, format_table

__all__ = [
    "METRIC_KEYS", "caption_scores", "format_table", "format_wer_table", "normalize_transcript_for_scoring",
    "wer_report",
]
