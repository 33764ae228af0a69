"""Model bundles: a directory that holds everything needed to rebuild a model, and nothing executable.

    bundle/
      config.json          format + version, the ModelConfig, sha256 of every other file, free-form info
      tokenizer.json       the tokenizer (+ tokenizer.model for sentencepiece)
      model.safetensors    the weights

`save_model(dir, model, tokenizer)` writes a complete bundle atomically (a temporary directory renamed into
place); `load_model(dir)` checks the format version, the checksums and the vocabulary and rebuilds the exact
model. Nothing is unpickled. An exported bundle (`toolkit export`, `toolkit.export`) has the same config.json with
"runtime": "onnx" and ONNX graphs instead of the weights; `load_model` / `load_lm` load it too, its networks run by
onnxruntime. Language models for fusion (`toolkit.lm`) are bundles of the same layout whose
`info.task` is "lm" and whose `model` is the LM's config (`toolkit.lm.save_lm` / `load_lm`).
"""

from __future__ import annotations

import hashlib
import json
import math
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
RUNTIMES = ("torch", "onnx")  # what runs the networks: PyTorch (model.safetensors) or onnxruntime (toolkit.export)
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
    config: ModelConfig = model.config
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    # The weights travel in the bundle: a local pretrained file is provenance, not something to load again.
    encoder = dict(config.encoder)
    info = dict(info or {})
    if encoder.pop("pretrained_file", None):
        info.setdefault("encoder_initialised_from", config.encoder["pretrained_file"])
    config = replace(config, encoder=encoder)
    return write_bundle(directory, model.state_dict(), tokenizer, to_dict(config), info)


def write_bundle(
    directory: str | Path, weights: dict[str, torch.Tensor] | None, tokenizer: Tokenizer,
    model_config: dict[str, Any], info: dict[str, Any],
    texts: dict[str, str] | None = None, files: dict[str, Path] | None = None, runtime: str = "torch",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle of any model kind atomically: `weights` (a state dict), `tokenizer`, the model's config as a
    plain dict and `info` (whose `task` says which loader rebuilds it: `load_model`, or `toolkit.lm.load_lm`);
    `texts`: more files, name -> UTF-8 content (a language model's lexicon), checksummed like the others.
    An exported model (`toolkit.export`) has no `weights` but `files` (name -> a file to copy in), `runtime`
    "onnx" and its runtime's description in `extra` (top-level keys of config.json)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state, seen = {}, set()
        for k, v in (weights or {}).items():  # tied weights stored once per name (safetensors refuses shared memory)
            v = v.detach().contiguous().cpu()
            state[k] = v.clone() if v.data_ptr() in seen else v
            seen.add(v.data_ptr())
        if weights is not None:
            save_file(state, tmp / WEIGHTS_FILE, metadata={"format": FORMAT})
        for name, source in (files or {}).items():
            shutil.copyfile(source, tmp / name)
        tokenizer.save(tmp)
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir())
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "toolkit_version": toolkit.__version__,
            "model": model_config,
            "files": {name: _sha256(tmp / name) for name in files},
            "info": info,
        }
        if runtime != "torch":
            meta.update(runtime=runtime, **(extra or {}))
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
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {directory} is not a model bundle (see toolkit.bundle)") from None
    except OSError as e:
        raise BundleError(f"{path}: cannot be read ({e.strerror or e.__class__.__name__})") from None
    except UnicodeDecodeError as e:
        raise BundleError(f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise BundleError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise BundleError(f"{path}: not valid JSON ({str(e).split(':')[0]})") from None
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
    for name, digest in meta["files"].items():
        if name in ("", ".", "..", CONFIG_FILE) or "/" in name or "\\" in name or "\0" in name:
            raise BundleError(f"{path}: files: {name!r} is not the name of a file in the bundle")
        if not isinstance(digest, str):
            raise BundleError(f"{path}: files.{name}: the sha256 must be a string, got {type(digest).__name__}")
    runtime = meta.get("runtime", "torch")
    if runtime not in RUNTIMES:
        raise BundleError(f"{path}: runtime: one of {', '.join(RUNTIMES)}, got {runtime!r:.40}")
    if runtime != "torch" and not isinstance(meta.get(runtime), dict):
        raise BundleError(f"{path}: the {runtime!r} section is missing or not an object")
    if meta.get("info") is None:
        meta["info"] = {}
    _check_info(path, meta["info"])
    return meta


def _check_info(path: Path, info: Any) -> None:
    """The `info` entries that the toolkit itself reads back (free-form otherwise), each checked for its type."""
    def fail(key: str, wanted: str, value: Any) -> BundleError:
        return BundleError(f"{path}: info.{key}: must be {wanted}, got {value!r:.60}")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not isinstance(info, dict):
        raise BundleError(f"{path}: info: must be an object, got {type(info).__name__}")
    if "task" in info and not isinstance(info["task"], str):
        raise fail("task", "a string", info["task"])
    for key in ("image_size", "sample_rate"):
        value = info.get(key)
        if key in info and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise fail(key, "a positive integer", value)
    decoding = info.get("decoding", {})
    if not isinstance(decoding, dict):
        raise fail("decoding", "an object", decoding)
    if "ctc_weight" in decoding and not (number(decoding["ctc_weight"]) and 0 <= decoding["ctc_weight"] <= 1):
        raise fail("decoding.ctc_weight", "a number in [0, 1]", decoding["ctc_weight"])
    ratio = decoding.get("max_length_ratio")
    if ratio is not None and not (number(ratio) and ratio > 0):
        raise fail("decoding.max_length_ratio", "a number > 0 or null", ratio)
    if "lm_weight" in decoding and not (number(decoding["lm_weight"]) and decoding["lm_weight"] >= 0):
        raise fail("decoding.lm_weight", "a number >= 0", decoding["lm_weight"])
    if "length_bonus" in decoding and not number(decoding["length_bonus"]):
        raise fail("decoding.length_bonus", "a finite number", decoding["length_bonus"])
    if "oov_penalty" in decoding and not (number(decoding["oov_penalty"]) and decoding["oov_penalty"] >= 0):
        raise fail("decoding.oov_penalty", "a number >= 0", decoding["oov_penalty"])
    length = decoding.get("max_length")
    if "max_length" in decoding and not (isinstance(length, int) and not isinstance(length, bool) and length > 0):
        raise fail("decoding.max_length", "a positive integer", length)


def verify_bundle_files(directory: str | Path, meta: dict[str, Any]) -> None:
    """Check every file `meta` (from `read_bundle_config`) lists against its sha256; the weights must be listed."""
    directory = Path(directory)
    for name, digest in meta["files"].items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing from the bundle")
        if _sha256(path) != digest:
            raise BundleError(f"{path}: checksum mismatch, the file is corrupted or was changed after saving")
    if meta.get("runtime", "torch") == "torch" and WEIGHTS_FILE not in meta["files"]:
        raise BundleError(f"{directory / CONFIG_FILE}: lists no {WEIGHTS_FILE}")


def read_bundle_weights(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in a bundle's `model.safetensors`, with a one-line error for an unreadable file."""
    weights_path = Path(directory) / WEIGHTS_FILE
    try:
        return load_file(weights_path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{weights_path}: not a readable safetensors file ({' '.join(str(e).split())})") from None


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the exact model saved at `directory`, in eval mode, with its tokenizer."""
    directory = Path(directory)
    meta = read_bundle_config(directory)
    if meta["info"].get("task") == "lm":
        raise BundleError(f"{directory}: a language model bundle, not an encoder-decoder model; it is used for "
                          "fusion in search (--lm DIR; toolkit.lm.load_lm)")
    verify_bundle_files(directory, meta)
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
    if meta.get("runtime", "torch") != "torch":  # exported: the networks run in onnxruntime (toolkit.export)
        from toolkit.export.runtime import load_exported_model

        model = load_exported_model(directory, meta, config, device)
        return ModelBundle(model, tokenizer, dict(meta.get("info") or {}))
    try:
        model = build_model(config)
    except ToolkitError as e:  # e.g. a timm backbone this installation does not have
        raise BundleError(f"{directory / CONFIG_FILE}: model: {e}") from None
    state = read_bundle_weights(directory, device)
    check_state_dict(model, state, directory / WEIGHTS_FILE)
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
