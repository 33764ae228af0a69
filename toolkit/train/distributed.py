"""Data-parallel training over several processes (GPUs, machines) with `torch.distributed`, as launched by torchrun.

    torchrun --standalone --nproc_per_node 8 -m toolkit train CONF -o DIR       # one machine, 8 GPUs

    with join_process_group() as world:          # torchrun's process group; a world of one without torchrun
        loader = make_speech_loader(..., num_replicas=world.size, rank=world.rank)
        Trainer(model, cfg, out_dir, loader, ..., device=world.device).fit()

torchrun starts one process per GPU and describes the job in environment variables (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT); `join_process_group` reads them, joins the group (backend nccl when CUDA is
available, else gloo), pins the process to `cuda:LOCAL_RANK`, and leaves the group at the end of the block. The
`Trainer` notices the group by itself and wraps the model in `DistributedDataParallel`.

`World` is this process's view of the job: its rank, the number of processes, its device, and the few
collectives the trainer needs to keep every rank taking the same decisions (skip a batch, stop, log). In a world
of one they return their argument without communicating, so single-process training runs the same code.

Timeouts: every collective, and so every rank waiting at a barrier while rank 0 validates and writes checkpoints,
gives up after `TOOLKIT_DDP_TIMEOUT_MINUTES` (default 30) minutes; a rank that fails ends its process, and
torchrun then stops the others.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from toolkit.errors import ToolkitError

TIMEOUT_ENV = "TOOLKIT_DDP_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 30.0
T = TypeVar("T")


def default_device(local_rank: int = 0) -> torch.device:
    """`cuda:local_rank` when CUDA is available (hide GPUs with CUDA_VISIBLE_DEVICES= to train on CPU), else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ToolkitError(
            f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
            "start at most one process per GPU (--nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


def resolve_device(name: str) -> torch.device:
    """A `--device` value as a device: "auto" is `default_device()`, else "cpu", "cuda" or "cuda:N" (also "mps"),
    refused in one line when this machine has no such device."""
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ToolkitError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ToolkitError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ToolkitError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ToolkitError(f"--device {name}: MPS is not available on this machine (use cpu or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ToolkitError(f"--device {name}: not supported (auto, cpu, cuda, cuda:N, mps)")
    return device


@dataclass(frozen=True)
class World:
    """The processes of one training job, seen from one of them: `rank` in [0, `size`), `local_rank` on its
    machine, the `device` it trains on (and exchanges collective tensors on)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and writes checkpoints and bundles."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # -- collectives: every rank must call them, in the same order; in a world of one they do not communicate

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.distributed:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on every rank (e.g. "my batch is usable")."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def any_true(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on some rank."""
        return not self.all_true(not flag)

    def max(self, value: float) -> float:
        """The largest `value` over the ranks (e.g. elapsed time, so that all stop at the same update)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        if not self.distributed or not values:
            return [float(v) for v in values]
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order, on every rank (pickled: for small, trusted in-memory values)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank (the others wait here while rank 0 computes it)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, make: Callable[[], T], load: Callable[[], T]) -> T:
        """`make()` on rank 0 (e.g. train a tokenizer and save it), then `load()` on the other ranks (read what
        rank 0 saved) once rank 0 is done."""
        made = make() if self.is_main else None
        self.barrier()
        return made if self.is_main else load()  # type: ignore[return-value]


def current_world() -> World:
    """The job this process belongs to: the initialised default process group, else a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank, size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpu = dist.get_backend() == "nccl"
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ToolkitError(f"{name} is not set: start the processes with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise ToolkitError(f"{name}={value!r} is not an integer") from None


def timeout_from_env() -> timedelta:
    """How long a collective may wait: `TOOLKIT_DDP_TIMEOUT_MINUTES` (default 30) minutes."""
    value = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_MINUTES))
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise ToolkitError(f"{TIMEOUT_ENV}={value!r}: give a number of minutes > 0")
    return timedelta(minutes=minutes)


@contextmanager
def join_process_group(timeout: timedelta | None = None) -> Iterator[World]:
    """Join the process group torchrun describes in the environment for the duration of the block.

    WORLD_SIZE unset or 1: a world of one, no process group (device: `cuda:0` if CUDA is available, else CPU).
    A group that is already initialised (by the caller) is used as it is and left alone at the end.
    """
    if dist.is_available() and dist.is_initialized():
        yield current_world()
        return
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        yield World(device=default_device(0))
        return
    if not dist.is_available():
        raise ToolkitError("this PyTorch build has no torch.distributed: cannot train with several processes")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    device = default_device(local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout or timeout_from_env(), device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout or timeout_from_env())
    try:
        yield World(rank=rank, size=size, local_rank=local_rank, device=device)
        # Leave together: rank 0 hosts the rendezvous store, and a rank that exits while another still talks to
        # it (or while its own DDP reducer is alive) can abort with "terminate called without an active exception".
        dist.barrier()
    finally:
        gc.collect()  # DistributedDataParallel wrappers no longer referenced go before the group they use
        dist.destroy_process_group()


def unused_parameters(model: nn.Module, compute_loss: Callable[[], Tensor]) -> list[str]:
    """Names of the trainable parameters of `model` that get no gradient from `compute_loss()`.

    One forward and backward (`torch.autograd.grad`: no `.grad` is touched); the model's buffers (e.g. BatchNorm
    statistics) are put back afterwards, and the RNGs are the caller's to preserve. Frozen parameters
    (`requires_grad=False`) are not listed: DistributedDataParallel ignores them.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        loss = compute_loss()
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])
    return [name for (name, _), g in zip(named, grads) if g is None]
