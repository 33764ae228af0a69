"""Model bundles: a directory that holds everything needed to rebuild a model, and nothing executable.

    bundle/
      config.json          format + version, the ModelConfig, sha256 of every other file, free-form info
      tokenizer.json       the tokenizer (+ tokenizer.model for sentencepiece)
      model.safetensors    the weights

`save_model(dir, model, tokenizer)` writes a complete bundle atomically (a temporary directory renamed into
place); `load_model(dir)` checks the format version, the checksums and the vocabulary and rebuilds the exact
model. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import toolkit
from toolkit.config import from_dict, to_dict
from toolkit.errors import BundleError, ToolkitError
from toolkit.model import EncoderDecoder, ModelConfig, build_model
from toolkit.text import Tokenizer, load_tokenizer

FORMAT = "toolkit-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ModelBundle:
    """A loaded bundle: the model (in eval mode), its tokenizer and the free-form `info` saved with it."""

    model: EncoderDecoder
    tokenizer: Tokenizer
    info: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(
    directory: str | Path, model: EncoderDecoder, tokenizer: Tokenizer, info: dict[str, Any] | None = None
) -> Path:
    """Write `model` (built by `build_model`), `tokenizer` and JSON-serialisable `info` as a bundle.

    An existing bundle at `directory` is replaced only once the new one is complete.
    """
    directory = Path(directory)
    config: ModelConfig = model.config
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    # The weights travel in the bundle: a local pretrained file is provenance, not something to load again.
    encoder = dict(config.encoder)
    info = dict(info or {})
    if encoder.pop("pretrained_file", None):
        info.setdefault("encoder_initialised_from", config.encoder["pretrained_file"])
    config = replace(config, encoder=encoder)

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": FORMAT})
        tokenizer.save(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "toolkit_version": toolkit.__version__,
            "model": to_dict(config),
            "files": {name: _sha256(tmp / name) for name in files},
            "info": info,
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move the complete directory `new` to `target`; an old `target` is removed only after the move."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def read_bundle_config(directory: str | Path) -> dict[str, Any]:
    """The checked `config.json` of a bundle (format, version, file list)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise BundleError(f"{directory}: model bundle directory not found")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {directory} is not a model bundle (see toolkit.bundle)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path}: not a toolkit model bundle (format is not {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r} (toolkit {meta.get('toolkit_version', '?')}); "
            f"this toolkit {toolkit.__version__} reads version {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("files"), dict) or not isinstance(meta.get("model"), dict):
        raise BundleError(f"{path}: the 'files' and 'model' fields are missing or not objects")
    return meta


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the exact model saved at `directory`, in eval mode, with its tokenizer."""
    directory = Path(directory)
    meta = read_bundle_config(directory)
    for name, digest in meta["files"].items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        if _sha256(path) != digest:
            raise BundleError(f"{path}: checksum mismatch, the file is corrupted or was changed after saving")
    if WEIGHTS_FILE not in meta["files"]:
        raise BundleError(f"{directory / CONFIG_FILE}: lists no {WEIGHTS_FILE}")

    try:
        config = from_dict(ModelConfig, meta["model"], f"{directory / CONFIG_FILE}: model")
    except ToolkitError as e:
        raise BundleError(str(e)) from None
    tokenizer = load_tokenizer(directory)
    if tokenizer.vocab_size != config.vocab_size:
        raise BundleError(
            f"{directory}: vocabulary mismatch, tokenizer has {tokenizer.vocab_size} tokens "
            f"but the model config says vocab_size {config.vocab_size}"
        )
    model = build_model(config)
    weights_path = directory / WEIGHTS_FILE
    try:
        state = load_file(weights_path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{weights_path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    check_state_dict(model, state, weights_path)
    model.load_state_dict(state)
    return ModelBundle(model.to(device).eval(), tokenizer, dict(meta.get("info") or {}))


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Raise a one-line `BundleError` if `state` does not fit `model` key for key and shape for shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})"
            )
        raise BundleError(f"{source}: weights do not match the model config: {', '.join(parts)} tensors")
