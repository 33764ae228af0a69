"""The one training loop shared by every recipe (image captioning, speech recognition).

    trainer = Trainer(model, TrainConfig(max_steps=20_000), Path("exp/run1"), train_loader,
                      loss_fn=lambda model, batch: model.loss(**batch),
                      validate_fn=lambda model: {"loss": ..., "wer": ...},
                      save_model_fn=lambda model, path, info: save_model(path, model, tokenizer, info))
    result = trainer.fit()             # or fit(resume=True) after an interruption

What it writes in `out_dir`:
    train_log.csv      one row per logged / validated update: step, epoch, loss (+ the loss_fn's other entries),
                       lr, grad_norm, items_per_s, elapsed_s, valid_* (validation metrics, on their rows)
    loss_curve.png     training loss and the validation metric, refreshed at each validation
    checkpoints/       ckpt-NNNNNNNN/ at each validation and at the end, the `keep_last` newest kept
    best/              model bundle (written by save_model_fn) of the best validation metric
    final/             model bundle of the final weights (or the average of the last `average_last` checkpoints)

Resume (`fit(resume=True)`) restores from the newest checkpoint: weights, optimizer moments, scheduler position,
update / epoch counters, the position in the epoch, the best metric, the elapsed time and the python / numpy /
torch (CPU and CUDA) RNG states; the epoch's loader iterator is re-created under the RNG state it was first
created with (so a `DataLoader(shuffle=True)` or a sampler with `set_epoch` yields the same order) and the
batches already trained on are drawn and dropped. On CPU, with a deterministic model and loader, a resumed run
ends with bit-identical weights to an uninterrupted one. The learning rate and betas come from the checkpoint;
the schedule's shape (e.g. a longer `max_steps`) from the current config.

Several processes (torchrun; `toolkit.train.distributed`): when a `torch.distributed` process group is initialised,
every rank runs `fit` on its own shard of the data (a distributed sampler: the same number of batches on every
rank) and the model is wrapped in `DistributedDataParallel`, which averages the gradients over the ranks, so an
update sees the batches of all ranks (the loss must be a per-item mean). `find_unused_parameters` is switched on
only when one forward / backward of a first batch shows trainable parameters without a gradient (e.g. a CTC head
with ctc_weight 0; frozen parameters do not count). Gradient accumulation skips the all-reduce (`no_sync`) on all
but the last batch of an update. Decisions that must agree are taken together: a batch is skipped on every rank
when it is empty or its loss is not finite on any rank, and `max_minutes` is read from the slowest rank's clock.
Rank 0 alone logs (the training loss and items/s reduced over the ranks), shows the progress bar, validates,
writes checkpoints (the bare model's weights: no "module." prefix; the RNG states of every rank) and bundles,
while the others wait for it. A checkpoint resumes on the same number of processes exactly, and on a different
number approximately (at the same fraction of the epoch, with fresh per-rank RNG seeds).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from toolkit.bundle import check_state_dict
from toolkit.config import to_dict
from toolkit.errors import ToolkitError
from toolkit.train.batches import first_tensor_len, move_to, set_epoch
from toolkit.train.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_model_state,
    load_trainer_state,
    prune,
    remove_partial,
    save_checkpoint,
)
from toolkit.train.config import TrainConfig
from toolkit.train.distributed import current_world, unused_parameters
from toolkit.train.log import LOG_FILE, PLOT_FILE, CSVLog, LogWindow, plot_curves
from toolkit.train.optim import build_optimizer
from toolkit.train.rng import RngState, rng_state, seed_everything, set_rng_state
from toolkit.train.schedule import build_scheduler, horizon
from toolkit.train.state import STATE_VERSION, TrainState


@dataclass
class TrainResult:
    """What `Trainer.fit` did. Counters and `seconds` are totals over resumed runs; `items_per_second` is this run's
    training throughput (validation and checkpointing excluded); `epochs` counts completed passes."""

    steps: int
    epochs: int
    best_metric: float | None
    best_step: int | None
    final_metrics: dict[str, float]
    seconds: float
    items_per_second: float
    best_path: Path | None
    final_path: Path
    bad_batches: int = 0
    empty_batches: int = 0
    stop_reason: str = ""
    averaged: list[str] = field(default_factory=list)


class LossModule(nn.Module):
    """`model` and its `loss_fn` as one module whose forward is the training loss: what DistributedDataParallel
    wraps, so that its hooks see the whole computation whatever method of `model` the loss calls (`model.loss`)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], dict[str, Tensor]]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.loss_fn(self.model, batch)


class Trainer:
    """Trains `model` on `train_loader`: AdamW or Muon + AdamW (`toolkit.train.optim`), warmup + schedule,
    accumulation, clipping and optional bf16.

    loss_fn(model, batch) -> {"loss": scalar tensor (a mean over the batch), other entries logged};
    validate_fn(model) -> {metric name: value} (called in eval mode under no_grad; None: no validation, no best);
    save_model_fn(model, path, info) writes a model bundle at `path` (info: step, epoch, metrics);
    batch_size_fn(batch) -> number of items (for items/s). Batches that are None are skipped and counted.

    In a process group (see the module docstring) `train_loader` must give this rank's shard, `device` is this
    rank's device, and validate_fn / save_model_fn run on rank 0 only. `find_unused_parameters` (for
    DistributedDataParallel): None finds out with one forward / backward of a first batch; True / False forces it.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        out_dir: Path,
        train_loader: Iterable,
        loss_fn: Callable[[nn.Module, Any], dict[str, Tensor]],
        validate_fn: Callable[[nn.Module], dict[str, float]] | None,
        save_model_fn: Callable[[nn.Module, Path, dict], None],
        batch_size_fn: Callable[[Any], int] = first_tensor_len,
        device: str | torch.device = "cpu",
        find_unused_parameters: bool | None = None,
    ):
        self.config = config
        self.world = current_world()
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_module = LossModule(self.model, loss_fn)  # what a training step calls
        self.find_unused_parameters = find_unused_parameters
        self._ddp: DistributedDataParallel | None = None  # wraps loss_module in a process group of several ranks
        self.train_loader = train_loader
        self.validate_fn = validate_fn
        self.save_model_fn = save_model_fn
        self.batch_size_fn = batch_size_fn
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, config)
        self.scheduler = build_scheduler(self.optimizer, config, self._horizon())
        self.state = TrainState(world_size=self.world.size, batches_per_epoch=self._batches_per_epoch())
        self._epoch_rng: RngState | None = None  # this rank's RNG states when the current pass's iterator was made
        # this run only
        self._bad_in_a_row = 0
        self._last_valid_step: int | None = None
        self._last_ckpt_step: int | None = None
        self._overhead = 0.0  # seconds of validation / checkpointing / resume skipping
        self._items = 0
        self._t0 = time.perf_counter()
        self._bar: tqdm | None = None
        self.log: CSVLog | None = None

    def _horizon(self) -> int | None:
        """The schedule's length in updates for this config and loader (`toolkit.train.schedule.horizon`)."""
        return horizon(self.config, self._batches_per_epoch())

    def _batches_per_epoch(self) -> int | None:
        """The number of batches of one pass over this rank's loader; None when it has no length."""
        try:
            return len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:  # no __len__, or an IterableDataset without one
            return None

    # ------------------------------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until a limit of the config is reached; validate, checkpoint and save the final bundle."""
        cfg = self.config
        self._t0 = time.perf_counter()
        self._start(resume)
        s = self.state
        self.model.train()
        if self.world.distributed and self._ddp is None:
            self._wrap_data_parallel()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        self.optimizer.zero_grad(set_to_none=True)
        win = LogWindow()
        micro = 0  # usable batches accumulated toward the next update
        self._bar = tqdm(total=cfg.max_steps, initial=s.step, unit="step", desc="training",
                         disable=not (self.world.is_main and sys.stderr.isatty()), dynamic_ncols=True)
        with self._bar:
            stop = self._limit_reached()
            while stop is None:  # a pass over the loader
                resumed_mid_epoch, usable = s.batches_in_epoch > 0, 0
                for batch in self._epoch_iterator():
                    s.batches_in_epoch += 1
                    if not self.world.all_true(batch is not None):  # the loader dropped every item of a batch
                        s.empty_batches += 1
                        continue
                    usable += 1
                    micro += self._forward_backward(batch, win, last_of_update=micro + 1 == cfg.accum_steps)
                    if micro < cfg.accum_steps:
                        continue
                    micro = 0
                    norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
                    if not torch.isfinite(norm):  # no update
                        self.optimizer.zero_grad(set_to_none=True)
                        self._bad("gradient norm")
                        continue
                    win.lr = self.optimizer.param_groups[0]["lr"]
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    s.step += 1
                    self._bad_in_a_row = 0
                    win.steps, win.grad_norm = win.steps + 1, win.grad_norm + float(norm)
                    self._bar.update(1)
                    stop = self._limit_reached()
                    if stop is not None:
                        break
                    validate = s.step % cfg.valid_every == 0
                    if validate or s.step % cfg.log_every == 0:
                        self._report(win, validate)
                else:  # the pass is over
                    if usable == 0 and not resumed_mid_epoch:
                        raise ToolkitError(
                            f"the training loader yielded no usable batch in epoch {s.epoch} "
                            f"({s.batches_in_epoch} batches, all None): check the data"
                        )
                    s.epoch += 1
                    s.batches_in_epoch = 0
                    stop = self._limit_reached()
        if micro:  # a partial accumulation at the end of training is dropped
            self.optimizer.zero_grad(set_to_none=True)
        try:
            return self._finish(win, stop)
        finally:
            # DDP's C++ reducer must go while the process group is alive: freed after the group is destroyed (at
            # interpreter exit, say) it can abort the process ("terminate called without an active exception").
            self._ddp = None

    def _epoch_iterator(self) -> Iterator:
        """The loader's iterator for the current pass; after a resume mid-pass, the batches already trained on
        are drawn again (under the RNG state of the pass's start, so in the same order) and dropped."""
        loader, epoch = self.train_loader, self.state.epoch
        set_epoch(loader, epoch)
        skip = self.state.batches_in_epoch
        if skip == 0:
            self._epoch_rng = rng_state()
            return iter(loader)
        t = time.perf_counter()
        self._echo(f"resuming: drawing and dropping the {skip} batches of epoch {epoch} already trained on")
        now = rng_state()
        if self._epoch_rng is not None:
            set_rng_state(self._epoch_rng)
        it = iter(loader)
        for i in range(skip):
            if next(it, StopIteration) is StopIteration:
                self._echo(f"warning: epoch {epoch} has only {i} batches now, {skip} before; the loader changed")
                break
        set_rng_state(now)
        self._overhead += time.perf_counter() - t
        return it

    def _forward_backward(self, batch: Any, win: LogWindow, last_of_update: bool) -> int:
        """Loss and backward of one batch (scaled by 1 / accum_steps); 0 if its loss was not finite (on any rank),
        else 1. With several ranks the gradients are all-reduced only on the `last_of_update` batch."""
        batch = move_to(batch, self.device)
        items = self.batch_size_fn(batch)
        step_module = self._ddp if self._ddp is not None else self.loss_module
        local_only = self._ddp.no_sync() if self._ddp is not None and not last_of_update else nullcontext()
        with local_only:
            out = self._loss(step_module, batch)
            if not isinstance(out, dict) or not isinstance(out.get("loss"), Tensor) or out["loss"].dim() != 0:
                raise TypeError("loss_fn must return a dict whose 'loss' is a scalar tensor (a mean over the batch)")
            loss = out["loss"].float()
            finite = bool(torch.isfinite(loss))
            if not self.world.all_true(finite):
                self._bad(f"loss {loss.item()}" if not finite else "loss on another rank")
                return 0
            (loss / self.config.accum_steps).backward()
        win.add({k: v.detach() if isinstance(v, Tensor) else v for k, v in out.items()}, items)
        self._items += items
        return 1

    def _loss(self, module: nn.Module, batch: Any) -> dict[str, Tensor]:
        """`module(batch)`, under bf16 autocast when `config.amp` is bf16."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16"):
            return module(batch)

    def _bad(self, what: str) -> None:
        s = self.state
        s.bad_batches += 1
        self._bad_in_a_row += 1
        if s.bad_batches <= 10:
            self._echo(f"skipped: non-finite {what} at step {s.step} (epoch {s.epoch})")
        if self._bad_in_a_row >= self.config.max_bad_steps:
            raise ToolkitError(
                f"training stopped at step {s.step}: {self._bad_in_a_row} non-finite losses or gradients in a row "
                f"(max_bad_steps={self.config.max_bad_steps}); lower lr, check the data, or try amp: none"
            )

    def _limit_reached(self) -> str | None:
        cfg = self.config
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_epochs is not None and self.state.epoch >= cfg.max_epochs:
            return "max_epochs"
        if cfg.max_minutes is not None and self.world.max(self._elapsed()) >= cfg.max_minutes * 60:
            return "max_minutes"  # the slowest rank's clock: every rank stops after the same update
        return None

    def _elapsed(self) -> float:
        return self.state.elapsed_s + time.perf_counter() - self._t0

    # ------------------------------------------------------------------------------------------ several ranks

    def _wrap_data_parallel(self) -> None:
        """Check that every rank has as many batches, then wrap the loss module in DistributedDataParallel (which
        broadcasts rank 0's weights and buffers to the others)."""
        t = time.perf_counter()
        lengths = self.world.gather(self._batches_per_epoch())  # None: unknown, the sampler is trusted
        if len(set(lengths)) > 1:
            raise ToolkitError(
                f"the training loader gives the ranks {', '.join(map(str, lengths))} batches per epoch: every rank "
                "needs the same number (use a distributed sampler), or the ranks would wait for each other forever"
            )
        find_unused = self.find_unused_parameters
        if find_unused is None:  # one forward / backward of this rank's first usable batch, RNG states restored
            saved = rng_state()
            batch = next((b for _, b in zip(range(10), self.train_loader) if b is not None), None)
            unused = None
            if batch is not None:
                batch = move_to(batch, self.device)
                unused = unused_parameters(self.model, lambda: self._loss(self.loss_module, batch)["loss"].float())
            set_rng_state(saved)
            find_unused = self.world.any_true(unused is None or bool(unused))
            if unused:
                shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
                self._echo(f"{len(unused)} trainable parameters get no gradient ({shown}): "
                           "DistributedDataParallel looks for unused parameters at every step")
        device_ids = None
        if self.device.type == "cuda":
            device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        self.find_unused_parameters = find_unused  # the decision, kept after fit() lets the wrapper go
        self._ddp = DistributedDataParallel(self.loss_module, device_ids=device_ids,
                                            find_unused_parameters=find_unused)
        self._overhead += time.perf_counter() - t

    # ------------------------------------------------------------------------------------------ reporting

    def _echo(self, msg: str) -> None:
        if self.world.is_main:
            tqdm.write(msg)

    def _report(self, win: LogWindow, validate: bool) -> None:
        """Write a CSV row of the training window and / or a validation (+ best bundle, checkpoint, plot).
        Every rank calls it (the window is reduced over the ranks); rank 0 writes."""
        s = self.state
        row: dict[str, Any] = {"step": s.step, "epoch": s.epoch}
        if win.steps:
            row.update(win.row(self.world), elapsed_s=self._elapsed())
            postfix = {"loss": f"{row['loss']:.4g}", "lr": f"{row['lr']:.2e}",
                       "items/s": f"{row['items_per_s']:.0f}"}
            if self._bar is not None and not self._bar.disable:
                self._bar.set_postfix(postfix)
            else:
                shown = " | ".join(f"{k} {v}" for k, v in postfix.items())
                self._echo(f"step {s.step} | epoch {s.epoch} | {shown}")
        if not validate:
            if self.log is not None:
                self.log.write(row)
            return
        t = time.perf_counter()
        metrics = self._validate()
        s.metrics, self._last_valid_step = metrics, s.step
        improved = self._update_best(metrics)
        row.update({f"valid_{k}": v for k, v in metrics.items()})
        if self.log is not None:
            self.log.write(row)
        if metrics:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            self._echo(f"valid step {s.step}: {shown}" + (" (best)" if improved else ""))
        self._checkpoint()
        if self.log is not None:
            plot_curves(self.log, self.out_dir / PLOT_FILE, self.config.metric)
        dt = time.perf_counter() - t
        self._overhead += dt
        win.t0 += dt

    def _validate(self) -> dict[str, float]:
        """validate_fn on rank 0 (the bare model: no collectives), its metrics sent to every rank."""
        if self.validate_fn is None:
            return {}
        metrics: dict[str, float] = {}
        if self.world.is_main:
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = {str(k): float(v) for k, v in self.validate_fn(self.model).items()}
            finally:
                self.model.train()
        return self.world.broadcast(metrics)

    def _update_best(self, metrics: dict[str, float]) -> bool:
        cfg, s = self.config, self.state
        if not metrics:
            return False
        if cfg.metric not in metrics:
            raise ToolkitError(
                f"the validation returned no {cfg.metric!r} (it returned {', '.join(metrics)}); "
                "set metric to one of them"
            )
        value = metrics[cfg.metric]
        better = s.best_metric is None or (value < s.best_metric if cfg.metric_mode == "min" else value > s.best_metric)
        if not math.isfinite(value) or not better:
            return False
        s.best_metric, s.best_step = value, s.step
        if self.world.is_main:
            self.save_model_fn(self.model, self.out_dir / "best", self._info(metrics))
        return True

    def _info(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {"step": self.state.step, "epoch": self.state.epoch, "metrics": dict(metrics),
                "metric": self.config.metric}

    # ------------------------------------------------------------------------------------------ checkpoints

    def _checkpoint(self) -> None:
        """Every rank calls it: their RNG states are gathered, rank 0 writes, the others wait until it is done."""
        rank_rng = self.world.gather({"rng": rng_state(), "epoch_rng": self._epoch_rng})
        if self.world.is_main:
            state = dataclasses.replace(self.state, elapsed_s=self._elapsed(), rank_rng=rank_rng).state_dict()
            state.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict())
            meta = {k: state[k] for k in ("step", "epoch", "batches_in_epoch", "metrics", "best_metric", "best_step",
                                          "world_size")}
            meta.update(format="toolkit-train-checkpoint", version=STATE_VERSION, config=to_dict(self.config),
                        saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            save_checkpoint(self.ckpt_dir, self.state.step, self.model.state_dict(), state, meta)
            prune(self.ckpt_dir, self.config.keep_last)
        self._last_ckpt_step = self.state.step
        self.world.barrier()

    def _start(self, resume: bool) -> None:
        """Check the output folder, then restore the newest checkpoint (resume) or seed the RNGs (fresh start)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(self.ckpt_dir)
        seen = self.world.gather(latest.name if latest is not None else None)
        if len(set(seen)) > 1:
            raise ToolkitError(
                f"{self.ckpt_dir}: the ranks see different latest checkpoints ({', '.join(map(str, seen))}); the "
                "output folder must be on a file system that every machine shares"
            )
        if resume:
            if latest is None:
                raise ToolkitError(f"{self.ckpt_dir}: no checkpoint to resume from; start without --resume")
            self._restore(latest)
        elif latest is not None:
            raise ToolkitError(
                f"{self.out_dir} already holds a training run (latest checkpoint {latest.name}); "
                "pass --resume to continue it, or choose another output folder"
            )
        else:
            seed_everything(self.config.seed + self.world.rank)  # rank 0 as one process; others their own streams
        if self.world.is_main:
            remove_partial(self.ckpt_dir)
            self.log = CSVLog(self.out_dir / LOG_FILE, keep_until_step=self.state.step if resume else None)

    def _restore(self, path: Path) -> None:
        saved = load_trainer_state(path)  # first: a malicious file is refused before anything else is touched
        state = TrainState.from_state_dict(saved, path / STATE_FILE)
        weights = load_model_state(path)
        check_state_dict(self.model, weights, path / WEIGHTS_FILE)
        self.model.load_state_dict(weights)
        world, saved_world = self.world, state.world_size
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            if saved_world == world.size:  # exactly where each rank was
                self._epoch_rng = state.rank_rng[world.rank]["epoch_rng"]
                set_rng_state(state.rank_rng[world.rank]["rng"])
            else:  # the epoch is dealt out differently now: new random streams
                self._epoch_rng = None
                seed_everything(self.config.seed + world.rank + world.size * state.step)
        except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as e:
            msg = " ".join(str(e).split())[:200]
            raise ToolkitError(f"{path}: the trainer state does not fit this model or trainer ({msg})") from None
        self.state = state = state.for_world(world.size, self._batches_per_epoch())
        self._last_valid_step = self._last_ckpt_step = state.step
        if saved_world != world.size:
            self._echo(f"the checkpoint was written by {saved_world} processes, this run has {world.size}: "
                       "it continues at the same fraction of the epoch, with new random streams (not bit-exact)")
        self._echo(f"resumed from {path} (step {state.step}, epoch {state.epoch}, batch {state.batches_in_epoch})")

    # ------------------------------------------------------------------------------------------ the end

    def _finish(self, win: LogWindow, stop: str | None) -> TrainResult:
        """Last validation + checkpoint, optional checkpoint averaging, the final bundle, the summary."""
        cfg, s = self.config, self.state
        if win.steps or self._last_valid_step != s.step:
            self._report(win, validate=self._last_valid_step != s.step)
        if self._last_ckpt_step != s.step:
            self._checkpoint()
        final_metrics = dict(s.metrics)
        averaged: list[str] = []
        if cfg.average_last > 1:  # every rank averages (the checkpoints are on a shared file system)
            paths = list_checkpoints(self.ckpt_dir)[-cfg.average_last:]
            if len(paths) > 1:
                self.model.load_state_dict(average_checkpoints(paths))
                final_metrics = self._validate()
                averaged = [p.name for p in paths]
                shown = " ".join(f"{k}={v:.4g}" for k, v in final_metrics.items())
                self._echo(f"final model: average of {', '.join(averaged)}" + (f": {shown}" if shown else ""))
            else:
                self._echo("final model: only one checkpoint, nothing to average; the last weights are final")
        final_path = self.out_dir / "final"
        if self.world.is_main:
            self.save_model_fn(self.model, final_path, self._info(final_metrics) | {"averaged": averaged})
            plot_curves(self.log, self.out_dir / PLOT_FILE, cfg.metric)
        self.world.barrier()  # every rank returns once the final bundle is written
        items = self.world.sum([self._items])[0]
        run_seconds = time.perf_counter() - self._t0
        best_text = f"; best {cfg.metric} {s.best_metric:.4g} at step {s.best_step}" if s.best_step is not None else ""
        self._echo(
            f"done: {s.step} updates, {s.epoch} epochs ({stop}); skipped {s.bad_batches} non-finite and "
            f"{s.empty_batches} empty (None) batches{best_text}"
        )
        best = self.out_dir / "best"
        return TrainResult(
            steps=s.step, epochs=s.epoch, best_metric=s.best_metric, best_step=s.best_step,
            final_metrics=final_metrics, seconds=self._elapsed(),
            items_per_second=items / max(run_seconds - self._overhead, 1e-9),
            best_path=best if best.exists() else None, final_path=final_path,
            bad_batches=s.bad_batches, empty_batches=s.empty_batches, stop_reason=stop or "", averaged=averaged,
        )
