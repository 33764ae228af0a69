"""Caption image files with a saved model bundle.

    captioner = Captioner.from_pretrained("exp/captioner")
    for r in captioner.caption(["cat.jpg", "dog.png"], beam_size=4, attention=True):
        print(r.image, r.caption, r.score, r.attention.shape)   # attention: (len(r.tokens), H', W')
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from toolkit.decode import DecodingOptions, search
from toolkit.errors import ToolkitError
from toolkit.model import BOS_ID, PAD_ID, EncoderDecoder, EncoderOutput
from toolkit.text import Tokenizer

#: File extensions (lower case) taken from folders and glob patterns.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_IMAGE_SIZE = 128


@dataclass
class CaptionResult:
    """One image's caption.

    caption:   the decoded text (`tokenizer.decode` of the generated ids).
    tokens:    display pieces of the generated ids (`tokenizer.pieces`), BOS/EOS excluded.
    score:     the hypothesis' score, its total log-probability (EOS included) divided by the GNMT length
               penalty (`Hypothesis.score`; the plain log-probability when length_penalty is 0).
    attention: with `attention=True`, float32 `(len(tokens), H', W')`: row i is the decoder's cross-attention
               (averaged over heads and layers) while it predicted `tokens[i]`, over the encoder's H'xW' feature
               grid (row-major, rows sum to 1). The step that predicted EOS is not included. Else None.
    image:     the image's path as given, or None for an in-memory PIL image.
    """

    caption: str
    tokens: list[str]
    score: float
    attention: np.ndarray | None = None
    image: str | None = None


class Captioner:
    """An image-captioning model, its tokenizer and its input size, ready to caption images."""

    def __init__(
        self, model: EncoderDecoder, tokenizer: Tokenizer, image_size: int = DEFAULT_IMAGE_SIZE,
        info: dict[str, Any] | None = None,
    ):
        if model.decoder is None:
            raise ToolkitError("this model has no attention decoder, so it cannot caption images")
        if not getattr(model.encoder, "takes_images", False):
            raise ToolkitError(f"this model's encoder ({type(model.encoder).__name__}) is not an image encoder")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.info = dict(info or {})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Captioner":
        """Load a bundle saved by `toolkit.bundle.save_model`; `info["image_size"]` (default 128) is the input size.

        A bundle whose `info["task"]` is set to anything but "caption" is refused with a one-line `ToolkitError`.
        """
        from toolkit.bundle import load_model

        bundle = load_model(directory, device=device)
        task = bundle.info.get("task")
        if task is not None and task != "caption":
            raise ToolkitError(f"{directory}: a model for task {task!r}, not an image captioner (task 'caption')")
        size = bundle.info.get("image_size", DEFAULT_IMAGE_SIZE)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ToolkitError(f"{directory}: info image_size must be a positive integer, got {size!r}")
        try:
            return cls(bundle.model, bundle.tokenizer, size, bundle.info)
        except ToolkitError as e:
            raise ToolkitError(f"{directory}: {e}") from None

    def _tensor(self, image: str | Path | Image.Image) -> torch.Tensor:
        from toolkit.data.images import image_to_tensor, load_image

        img = image if isinstance(image, Image.Image) else load_image(image)
        return image_to_tensor(img, self.image_size)  # converts any mode to RGB

    @torch.no_grad()
    def caption(
        self,
        images: Sequence[str | Path | Image.Image],
        beam_size: int = 1,
        batch_size: int = 16,
        max_length: int = 40,
        length_penalty: float = 0.0,
        attention: bool = False,
    ) -> list[CaptionResult]:
        """Caption `images` (paths or PIL images), `batch_size` at a time; one result per image, in order.

        beam_size 1 is greedy search. `max_length` caps the generated tokens (the decoder's max_len too);
        `length_penalty` is the GNMT alpha used to rank beams. With `attention=True` each result carries its
        cross-attention map (see `CaptionResult`), from one extra teacher-forced decoder pass per batch.
        An unreadable image path is a one-line `ToolkitError` naming it.
        """
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        options = DecodingOptions(beam_size=beam_size, max_length=max_length, length_penalty=length_penalty)
        results: list[CaptionResult] = []
        for start in range(0, len(images), batch_size):
            batch = list(images[start : start + batch_size])
            x = torch.stack([self._tensor(img) for img in batch]).to(self.device)
            # decode() is encode + search; the encoder output is kept for the attention pass.
            enc_out = self.model.encode(x)
            hyps = [nbest[0] for nbest in search(self.model, enc_out, options)]
            maps = self._attention(enc_out, [h.tokens for h in hyps]) if attention else [None] * len(hyps)
            for img, hyp, att in zip(batch, hyps, maps):
                results.append(CaptionResult(
                    caption=self.tokenizer.decode(hyp.tokens),
                    tokens=self.tokenizer.pieces(hyp.tokens),
                    score=float(hyp.score),
                    attention=att,
                    image=None if isinstance(img, Image.Image) else str(img),
                ))
        return results

    def _attention(self, enc_out: EncoderOutput, token_lists: list[list[int]]) -> list[np.ndarray]:
        """Teacher-force [BOS] + tokens for the batch and return each item's `(len(tokens), H', W')` weights
        (`enc_out.grid`)."""
        if enc_out.grid is None:
            raise ToolkitError("the image encoder did not report its feature grid (EncoderOutput.grid)")
        h, w = enc_out.grid
        longest = max(len(t) for t in token_lists)
        inputs = torch.full((len(token_lists), longest + 1), PAD_ID, dtype=torch.long, device=self.device)
        inputs[:, 0] = BOS_ID
        for i, tokens in enumerate(token_lists):
            inputs[i, 1 : len(tokens) + 1] = torch.tensor(tokens, dtype=torch.long)
        state = self.model.decoder.init_state(enc_out, record_attention=True)
        _, state = self.model.decoder(inputs, state)
        weights = state.attention.float().cpu().numpy()  # (B, U+1, S); padding rows are cut below
        return [weights[i, : len(tokens)].reshape(len(tokens), h, w).copy() for i, tokens in enumerate(token_lists)]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand_image_args(args: Sequence[str]) -> list[Path]:
    """Turn command-line arguments into image paths, in argument order.

    Each argument is a file (taken as is, whatever its extension), a folder (the images directly inside it,
    sorted by name; hidden files skipped) or a glob pattern (`*`, `?`, `[...]`, `**` recursive; the matching
    images, sorted). Folders and patterns keep only the extensions jpg, jpeg, png, bmp, gif, webp, tif, tiff
    (any case). An argument that matches no image is a one-line `ToolkitError`.
    """
    names = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
    paths: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_file():
            paths.append(p)
        elif p.is_dir():
            found = sorted((q for q in p.iterdir() if _is_image(q)), key=lambda q: q.name)
            if not found:
                raise ToolkitError(f"folder {arg!r} holds no images ({names})")
            paths += found
        elif glob.has_magic(arg):
            found = sorted(Path(q) for q in glob.glob(arg, recursive=True) if _is_image(Path(q)))
            if not found:
                raise ToolkitError(f"no image matches {arg!r} ({names})")
            paths += found
        else:
            raise ToolkitError(f"image {arg!r} not found")
    if not paths:
        raise ToolkitError("no images given")
    return paths
