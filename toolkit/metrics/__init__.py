"""Evaluation metrics.

    from toolkit.metrics import caption_scores, format_table
    print(format_table(caption_scores(predictions, references)))
"""

from toolkit.metrics.caption import METRIC_KEYS, caption_scores, format_table

__all__ = ["METRIC_KEYS", "caption_scores", "format_table"]
