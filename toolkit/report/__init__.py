"""Human-readable reports of model outputs: caption galleries, and the report page of a run (`toolkit report`).

    from toolkit.report import GalleryItem, write_caption_gallery, build_report, ReportPage
"""

from toolkit.report.experiments import build_report
from toolkit.report.gallery import (
    GalleryItem,
    attention_overlay,
    caption_cards,
    read_gallery_json,
    write_caption_gallery,
    write_gallery_json,
)
from toolkit.report.page import ReportPage

__all__ = ["GalleryItem", "ReportPage", "attention_overlay", "build_report", "caption_cards", "read_gallery_json",
           "write_caption_gallery", "write_gallery_json"]
