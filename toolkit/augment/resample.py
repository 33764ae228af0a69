"""Band-limited resampling for the channel simulations, steeper than the default of `scipy.signal.resample_poly`
(whose 20 x rate taps leave -20 dB near the new Nyquist frequency): a Kaiser-windowed (beta 8) low-pass of
128 x max(up, down) + 1 taps, passing `passband` of the lower Nyquist frequency (~ -80 dB past it)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def _lowpass(up: int, down: int, passband: float) -> np.ndarray:
    from scipy.signal import firwin

    rate = max(up, down)
    return firwin(128 * rate + 1, passband / rate, window=("kaiser", 8.0))


def resample(x: np.ndarray, orig: int, new: int, passband: float = 0.9) -> np.ndarray:
    """`x` (N,) from `orig` to `new` Hz: ceil(N * new / orig) samples (float64), content above `passband` x the
    lower of the two Nyquist frequencies removed."""
    from scipy.signal import resample_poly

    x = np.asarray(x, dtype=np.float64)
    if orig == new:
        return x
    g = math.gcd(orig, new)
    up, down = new // g, orig // g
    return resample_poly(x, up, down, window=_lowpass(up, down, passband))
