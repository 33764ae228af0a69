"""The WORLD vocoder (pyworld): analysis of a waveform into F0, spectral envelope and aperiodicity, and synthesis
back.

    params = analyze(x, 16000)                  # WorldParams: f0 (T,) Hz, 0 unvoiced; sp, ap (T, fft_size//2 + 1)
    y = synthesize(params, 16000)               # (~len(x),) float64

pyworld 0.3.5 (the latest release) imports `pkg_resources` for its version string only, which setuptools >= 81 no
longer ships: when that import fails, the compiled module inside the package is loaded directly (the same code).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np

from toolkit.errors import ToolkitError

F0_METHODS = ("dio", "harvest")
_PYWORLD: ModuleType | None = None


def pyworld() -> ModuleType:
    """The pyworld module (its compiled part when the package's `__init__` cannot import)."""
    global _PYWORLD
    if _PYWORLD is None:
        try:
            import pyworld as module
        except ModuleNotFoundError as e:
            if e.name != "pkg_resources":
                raise ToolkitError("voice transforms need pyworld: pip install pyworld") from None
            spec = importlib.util.find_spec("pyworld")
            compiled = sorted(Path(spec.submodule_search_locations[0]).glob("pyworld.*.so")) if spec else []
            if not compiled:
                raise ToolkitError("pyworld is installed without its compiled module: reinstall it") from None
            loader_spec = importlib.util.spec_from_file_location("pyworld.pyworld", compiled[0])
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        _PYWORLD = module
    return _PYWORLD


@dataclass
class WorldParams:
    """WORLD parameters of a waveform, one frame every `frame_period` ms: `f0` (T,) Hz (0: unvoiced), `sp` (T, F)
    spectral envelope (power), `ap` (T, F) aperiodicity in [0, 1] (1: noise), F = fft_size // 2 + 1 bins from 0 Hz
    to the Nyquist frequency."""

    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    frame_period: float


def analyze(x: np.ndarray, sample_rate: int, f0_method: Literal["dio", "harvest"] = "dio",
            frame_period: float = 5.0) -> WorldParams:
    """WORLD analysis of mono `x` (N,): F0 by DIO refined by StoneMask (fast) or by Harvest (slower, fewer
    voicing errors), then CheapTrick (envelope) and D4C (aperiodicity)."""
    pw = pyworld()
    x = np.ascontiguousarray(x, dtype=np.float64)
    if f0_method == "harvest":
        f0, times = pw.harvest(x, sample_rate, frame_period=frame_period)
    elif f0_method == "dio":
        f0, times = pw.dio(x, sample_rate, frame_period=frame_period)
        f0 = pw.stonemask(x, f0, times, sample_rate)
    else:
        raise ValueError(f"unknown F0 method {f0_method!r} (choose from {', '.join(F0_METHODS)})")
    sp = pw.cheaptrick(x, f0, times, sample_rate)
    ap = pw.d4c(x, f0, times, sample_rate)
    return WorldParams(f0, sp, ap, frame_period)


def synthesize(params: WorldParams, sample_rate: int) -> np.ndarray:
    """The waveform of `params`: (T - 1) * frame_period ms of samples, plus one (float64)."""
    pw = pyworld()
    return pw.synthesize(np.ascontiguousarray(params.f0, dtype=np.float64),
                         np.ascontiguousarray(params.sp, dtype=np.float64),
                         np.ascontiguousarray(params.ap, dtype=np.float64), sample_rate, params.frame_period)

