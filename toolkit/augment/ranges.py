"""Validated config fields of the augmentation configs, and the draws made from them.

A range is `(low, high)` with `low <= high`; `low == high` pins the value (`(1.0, 1.0)`: that change is off).
Ratios (pitch, rate, warp factors) are drawn log-uniformly, so that 0.8 and 1.25 are equally likely around 1.
Every check raises a one-line `ConfigError` naming `<Config>.<field>`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from toolkit.errors import ConfigError


def check_prob(where: str, name: str, value: float) -> None:
    """`value` is a probability in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}.{name}: a probability in [0, 1], got {value}")


def check_range(where: str, name: str, value: Sequence[float], lowest: float | None = None,
                highest: float | None = None, above: float | None = None) -> None:
    """`value` is `[low, high]` with `low <= high`, both within `[lowest, highest]` (and `> above` when given)."""
    if len(value) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
        raise ConfigError(f"{where}.{name}: expected [low, high], got {list(value)}")
    lo, hi = value
    if lo > hi:
        raise ConfigError(f"{where}.{name}: expected [low, high] with low <= high, got [{lo}, {hi}]")
    if (lowest is not None and lo < lowest) or (highest is not None and hi > highest) or (
            above is not None and lo <= above):
        bounds = f"> {above}" if above is not None else f"in [{lowest}, {highest}]"
        raise ConfigError(f"{where}.{name}: values must be {bounds}, got [{lo}, {hi}]")


def check_choices(where: str, name: str, value: Sequence[str], known: Sequence[str]) -> None:
    """`value` is a non-empty list of names from `known`."""
    if not value:
        raise ConfigError(f"{where}.{name}: choose at least one of {', '.join(known)}")
    bad = [v for v in value if v not in known]
    if bad:
        raise ConfigError(f"{where}.{name}: unknown {bad[0]!r} (choose from {', '.join(known)})")


def uniform(rng: np.random.Generator, value: Sequence[float]) -> float:
    """A draw from `[low, high]`, uniform (no draw is spent when `low == high`)."""
    lo, hi = value
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def log_uniform(rng: np.random.Generator, value: Sequence[float]) -> float:
    """A draw from `[low, high]` (both > 0), uniform in the logarithm."""
    lo, hi = value
    return float(lo) if lo == hi else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def integer(rng: np.random.Generator, value: Sequence[float]) -> int:
    """An integer drawn uniformly from `low..high` (inclusive)."""
    lo, hi = int(value[0]), int(value[1])
    return lo if lo == hi else int(rng.integers(lo, hi + 1))


def happens(rng: np.random.Generator, prob: float) -> bool:
    """True with probability `prob`; no draw is spent when `prob` is 0 or 1, so switching a transform off leaves
    every other draw as it was."""
    if prob <= 0.0:
        return False
    if prob >= 1.0:
        return True
    return bool(rng.random() < prob)
