"""Reading images as RGB, and turning them into the `(3, S, S)` tensors in [0, 1] that image encoders expect.

`load_image` handles every mode a captioning corpus meets in practice:

    1, L, RGB, RGBX, YCbCr, CMYK          Pillow's own conversion to RGB
    LA, La, RGBA, RGBa, PA, P / L / RGB   composited over white (transparent pixels become white, never black)
      with a "transparency" entry
    I;16, I;16L, I;16B, I;16N             scaled by the bit depth (16, or a TIFF's BitsPerSample): 65535 -> 255
    I (32-bit int)                        TIFF: by BitsPerSample; otherwise by the smallest of 8/16/32 bits that
                                          holds the maximum; negative values: min..max stretched to 0..255
    F (32-bit float)                      [0, 1] -> 0..255; [0, 255] kept; otherwise min..max stretched; NaN -> 0

and applies the EXIF orientation. Every failure (missing, empty, truncated, not an image, unsupported mode)
is an `ImageLoadError` whose one-line message names the path and the reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}
_PILLOW_RGB_MODES = {"1", "L", "P", "RGB", "RGBX", "YCbCr", "CMYK", "HSV"}


class ImageLoadError(ToolkitError):
    """An image file that cannot be read; `path` and `reason` are kept for reports."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: cannot load image: {self.reason}")


class UnsupportedModeError(ValueError):
    """An image mode that `to_rgb` cannot convert (e.g. LAB)."""


def _reason(e: BaseException) -> str:
    """One-line reason for an exception raised while opening / decoding an image."""
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(e, UnsupportedModeError):
        return str(e)
    if isinstance(e, Image.DecompressionBombError):
        return "too many pixels (decompression bomb guard: PIL.Image.MAX_IMAGE_PIXELS)"
    text = str(e).strip().splitlines()
    detail = text[0][:200] if text else type(e).__name__
    if "truncated" in detail.lower():
        return f"truncated file ({detail})"
    return f"corrupt or unreadable ({type(e).__name__}: {detail})"


def _open(path: str | os.PathLike[str]) -> Image.Image:
    """`Image.open`, refusing missing and empty files with a clear reason (caller closes the image)."""
    try:
        if os.path.getsize(path) == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        return Image.open(path)
    except ImageLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - every decoder failure becomes one line naming the path
        raise ImageLoadError(path, _reason(e)) from None


def verify_image(path: str | os.PathLike[str]) -> None:
    """Quick check that `path` is an image (header + `PIL.Image.verify`, no decoding); raise `ImageLoadError`.

    Cheap enough to run over a whole corpus; a JPEG truncated in its pixel data may still pass (`load_image`
    catches that).
    """
    img = _open(path)
    try:
        with img:
            img.verify()
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(path, _reason(e)) from None


def _bits_per_sample(img: Image.Image) -> int | None:
    """The TIFF BitsPerSample tag, when the image carries one."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    return int(bits) if isinstance(bits, int) and 1 <= bits <= 32 else None


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    """`(H, W)` values already in [0, 255] (float) -> an RGB image."""
    g = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), mode="RGB")


def _stretch(a: np.ndarray) -> np.ndarray:
    """Linear map of min..max onto 0..255 (a constant image becomes 0)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Modes I;16*, I and F -> RGB, scaled by bit depth / value range (see the module docstring)."""
    a = np.asarray(img).astype(np.float64)
    if a.size == 0:
        return _gray_to_rgb(a)
    if img.mode == "F":
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return _gray_to_rgb(a * 255.0)
        if lo >= 0.0 and hi <= 255.0:
            return _gray_to_rgb(a)
        return _gray_to_rgb(_stretch(a))
    bits = _bits_per_sample(img)
    if bits is None and img.mode.startswith("I;16"):
        bits = 16
    if a.min() < 0:
        return _gray_to_rgb(_stretch(a))
    if bits is None:
        hi = float(a.max())
        bits = 8 if hi < 2**8 else 16 if hi < 2**16 else 32
    return _gray_to_rgb(a * (255.0 / (2**bits - 1)))


def _over_white(rgba: Image.Image) -> Image.Image:
    """Composite an RGBA image over a white background -> RGB."""
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB (transparency over white, 16-bit / float scaled); `UnsupportedModeError` (a
    ValueError) for a mode it cannot convert, such as LAB."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or "transparency" in img.info:
        if mode.startswith("I") or mode == "F":
            return _high_depth_to_rgb(img)  # a transparent colour in a 16-bit image: ignore it
        return _over_white(img.convert("RGBA"))
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(img)
    if mode in _PILLOW_RGB_MODES:
        return img.convert("RGB")
    raise UnsupportedModeError(f"unsupported image mode {mode!r}")


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read `path` fully (so truncation fails here) and return it as an RGB image, EXIF orientation applied.

    Raises `ImageLoadError` (one line naming the path and the reason) for a missing, empty, truncated,
    non-image or unsupported file.
    """
    img = _open(path)
    try:
        with img:
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception as e:  # noqa: BLE001 - a broken EXIF block: keep the pixels, say so
                log.warning("%s: EXIF orientation ignored (%s)", path, _reason(e))
                oriented = img
            rgb = to_rgb(oriented)
            if rgb is img:
                rgb = img.copy()  # detach from the closed file
    except ImageLoadError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(path, _reason(e)) from None
    return rgb


def image_to_tensor(img: Image.Image, size: int) -> Tensor:
    """An image -> float32 tensor `(3, size, size)` in [0, 1].

    The image is resized straight to `size x size` (bilinear, antialiased when shrinking): the aspect ratio is
    NOT kept, which is what the image encoders expect (they see a fixed square grid). Non-RGB images go through
    `to_rgb` first.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    if img.mode != "RGB" or "transparency" in img.info:
        img = to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(img, dtype=np.uint8)  # (S, S, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def load_image_tensor(path: str | os.PathLike[str] | Path, size: int) -> Tensor:
    """`image_to_tensor(load_image(path), size)`: `(3, size, size)` float32 in [0, 1]."""
    return image_to_tensor(load_image(path), size)
