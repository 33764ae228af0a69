"""Data: readers, datasets and samplers. Image loading (`images`), caption corpora in COCO / Karpathy / JSONL
(`captions`), the caption dataset and loader (`caption_dataset`), audio decoding (`audio`), speech corpora in JSONL /
Kaldi / LibriSpeech (`speech`), the speech dataset and its bucketing sampler (`speech_dataset`). Corpora are made
by `toolkit.synth`."""

from toolkit.data.caption_dataset import (
    CaptionDataset,
    check_images,
    collate_captions,
    describe_bad_images,
    make_caption_loader,
)
from toolkit.data.captions import (
    CaptionFileError,
    CaptionRecord,
    convert_captions,
    normalize_caption,
    read_captions,
    read_coco,
    read_jsonl,
    read_karpathy,
    write_coco,
    write_jsonl,
    write_karpathy,
)
from toolkit.data.images import ImageLoadError, image_to_tensor, load_image, load_image_tensor, to_rgb, verify_image

__all__ = [
    "CaptionDataset",
    "CaptionFileError",
    "CaptionRecord",
    "ImageLoadError",
    "check_images",
    "collate_captions",
    "convert_captions",
    "describe_bad_images",
    "image_to_tensor",
    "load_image",
    "load_image_tensor",
    "make_caption_loader",
    "normalize_caption",
    "read_captions",
    "read_coco",
    "read_jsonl",
    "read_karpathy",
    "to_rgb",
    "verify_image",
    "write_coco",
    "write_jsonl",
    "write_karpathy",
]
