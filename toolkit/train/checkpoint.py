"""Training checkpoints: written atomically, read without unpickling code.

    checkpoints/
      ckpt-00000500/
        model.safetensors   the model's state dict (weights and buffers)
        trainer_state.pt    the optimizer and scheduler state dicts and the `TrainState` (step, epoch, position in
                            the epoch, best metric, RNG states...): plain tensors and containers only, read with
                            torch.load(weights_only=True)
        meta.json           human-readable summary: step, epoch, metrics, config
      ckpt-00001000/ ...

A checkpoint is written into a hidden temporary sibling (`.ckpt-00000500.tmp-*`), every file and the directory
fsync'd, then renamed into place with `os.replace`: a crash at any point leaves the earlier checkpoints as they
were, and `list_checkpoints` only ever sees complete `ckpt-*` directories (hidden leftovers are ignored, and
removed by `remove_partial`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from toolkit.errors import ToolkitError

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
REQUIRED = (WEIGHTS_FILE, STATE_FILE, META_FILE)
_NAME = re.compile(r"ckpt-(\d{8,})")


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}"


def checkpoint_step(path: str | Path) -> int:
    """The update count in a checkpoint directory's name."""
    m = _NAME.fullmatch(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: not a checkpoint directory name (ckpt-NNNNNNNN)")
    return int(m.group(1))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Write `directory/ckpt-{step:08d}/` atomically and return its path.

    `model_state` goes to safetensors (copied to CPU, so tied or non-contiguous tensors are fine);
    `trainer_state` must hold only tensors, numbers, strings, None and lists/tuples/dicts of them;
    `meta` must be JSON-serialisable. An existing checkpoint of the same step is replaced only once the new
    one is complete.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_name(step)
    tmp = directory / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()  # not mkdtemp: the checkpoint gets the umask's permissions, like any other output
    try:
        weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model_state.items()}
        save_file(weights, tmp / WEIGHTS_FILE, metadata={"format": "toolkit-train-checkpoint"})
        os.chmod(tmp / WEIGHTS_FILE, stat.S_IMODE(tmp.stat().st_mode) & 0o666)  # safetensors writes 0600
        _fsync_file(tmp / WEIGHTS_FILE)
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(trainer_state, f)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():
            old = directory / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in `directory`, oldest (fewest updates) first; [] if there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.fullmatch(p.name)
        if m and p.is_dir() and all((p / name).is_file() for name in REQUIRED):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the most updates in `directory`, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _remove(path: Path) -> None:
    """Delete a checkpoint: hide it first (one rename), so a crash mid-delete never leaves a half `ckpt-*`."""
    hidden = path.with_name(f".{path.name}.del-{os.getpid()}")
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def prune(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the `keep_last` newest checkpoints; returns the deleted paths."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    old = list_checkpoints(directory)[:-keep_last]
    for path in old:
        _remove(path)
    return old


def remove_partial(directory: str | Path) -> list[Path]:
    """Delete the hidden leftovers (`.ckpt-*`) of checkpoint writes or deletions that were interrupted."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".ckpt-") and p.is_dir()]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)
    return leftovers


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of checkpoint directory `path`, on CPU."""
    file = Path(path) / WEIGHTS_FILE
    try:
        return load_file(file, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ToolkitError(f"{file}: not a readable safetensors file ({' '.join(str(e).split())})") from None


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """The trainer state of checkpoint directory `path`, read with `torch.load(weights_only=True)`.

    Anything but plain tensors and containers (a pickle that would run code) is refused in one line.
    """
    file = Path(path) / STATE_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ToolkitError(f"{file}: missing") from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (bad zip), EOFError, ...
        text = " ".join(str(e).split())
        m = re.search(r"Unsupported global: (GLOBAL \S+|\S+)", text)
        reason = m.group(0) if m else (text[:160] or e.__class__.__name__)
        raise ToolkitError(
            f"{file}: refused, not a plain-tensor trainer state ({reason}); it was not loaded and nothing in it ran"
        ) from None
    if not isinstance(state, dict) or "step" not in state:
        raise ToolkitError(f"{file}: not a trainer state (no 'step')")
    return state


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `meta.json` of checkpoint directory `path`."""
    file = Path(path) / META_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(f"{file}: cannot read ({e.__class__.__name__})") from None


def average_checkpoints(paths: Iterable[str | Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of `paths` (float tensors, accumulated in float64 and cast
    back); integer and bool tensors (e.g. BatchNorm's `num_batches_tracked`) are taken from the last path."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        state = load_model_state(path)
        if last and set(state) != set(last):
            diff = sorted(set(state) ^ set(last))
            raise ToolkitError(f"{path}: cannot average, its tensors differ from {paths[0]} (e.g. {diff[0]})")
        for k, v in state.items():
            if k in last and v.shape != last[k].shape:
                raise ToolkitError(f"{path}: cannot average, {k} has shape {tuple(v.shape)} vs {tuple(last[k].shape)}")
            if v.is_floating_point():
                sums[k] = sums[k] + v.double() if k in sums else v.double()
        last = state
    return {k: (sums[k] / len(paths)).to(v.dtype) if v.is_floating_point() else v for k, v in last.items()}
