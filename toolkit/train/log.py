"""The training log: `train_log.csv` (one row per logged or validated update), `loss_curve.png` drawn from it, and
the window of updates a log row averages over."""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.train.distributed import World

LOG_FILE = "train_log.csv"
PLOT_FILE = "loss_curve.png"


class CSVLog:
    """`train_log.csv`, rewritten whole when a new column appears (first validation), else appended and closed."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = path
        self.columns: list[str] = []
        self.rows: list[dict[str, str]] = []
        if keep_until_step is not None and path.is_file():  # resuming: keep the rows up to the checkpoint
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = [r for r in reader if (r.get("step") or "").isdigit() and int(r["step"]) <= keep_until_step]
        self._rewrite()

    def write(self, row: dict[str, Any]) -> None:
        row = {k: f"{v:.6g}" if isinstance(v, float) else str(v) for k, v in row.items()}
        self.rows.append(row)
        if any(k not in self.columns for k in row):
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self.columns, restval="").writerow(row)

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if self.columns:
                writer = csv.DictWriter(f, self.columns, restval="")
                writer.writeheader()
                writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def series(self, column: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows where `column` is set."""
        pairs = [(int(r["step"]), float(r[column])) for r in self.rows if r.get(column) not in (None, "")]
        return [s for s, _ in pairs], [v for _, v in pairs]


def plot_curves(log: CSVLog, path: Path, metric: str) -> None:
    """Training loss (left axis) and validation `metric` (right axis) against updates, as a PNG (no pyplot state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # the plot is a convenience; training goes on without it
        return
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    steps, losses = log.series("loss")
    lines = ax.plot(steps, losses, color="tab:blue", label="training loss")
    ax.set_xlabel("update")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    vsteps, values = log.series(f"valid_{metric}")
    if values:
        ax2 = ax.twinx()
        lines += ax2.plot(vsteps, values, "o-", color="tab:orange", label=f"validation {metric}")
        ax2.set_ylabel(f"validation {metric}")
    ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    ax.set_title(path.parent.name)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


@dataclass
class LogWindow:
    """This rank's sums over the updates since the last log row: losses per batch, items, gradient norms."""

    t0: float = field(default_factory=time.perf_counter)
    steps: int = 0
    items: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    grad_norm: float = 0.0
    lr: float = 0.0

    def add(self, losses: dict[str, Any], items: int) -> None:
        """One batch's loss_fn entries (scalars) and its number of items."""
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1
        self.items += items

    def row(self, world: World) -> dict[str, Any]:
        """The window's loss means over every rank's batches, the last lr, the mean gradient norm and items/s (of
        all ranks); every rank calls it. The window then starts afresh."""
        keys = ["loss", *sorted(k for k in self.sums if k != "loss")]
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        totals = world.sum([self.items, *(self.sums[k] for k in keys), *(self.counts[k] for k in keys)])
        items, sums, counts = totals[0], totals[1: 1 + len(keys)], totals[1 + len(keys):]
        row: dict[str, Any] = {k: total / count for k, total, count in zip(keys, sums, counts)}
        row.update(lr=self.lr, grad_norm=self.grad_norm / self.steps, items_per_s=items / seconds)
        self.t0, self.steps, self.items = time.perf_counter(), 0, 0
        self.sums, self.counts, self.grad_norm = {}, {}, 0.0
        return row
