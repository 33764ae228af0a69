"""Human-readable reports of model outputs.

    from toolkit.report import GalleryItem, write_caption_gallery
"""

from toolkit.report.gallery import GalleryItem, attention_overlay, write_caption_gallery

__all__ = ["GalleryItem", "attention_overlay", "write_caption_gallery"]
