"""Helpers shared by the detectors: state and input checks, batch step sizes."""

from __future__ import annotations

import base64
import math
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from driftstream.core.state import STATE_VERSION, StatePath, StateReader

__all__ = ["STATE_VERSION", "StatePath", "StateReader"]


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


INPUT_LIMIT = 1e100
"""Largest input magnitude a detector accepts.

The running sums hold squared deviations, and the square of a difference of
1e200 is not a finite double: one such value would turn a detector's state
into infinities, which JSON cannot hold. Below the limit every sum stays
finite for 1e100 points. Monitors feed the detectors values in [-√3, √3].
"""


def finite_float(x: float) -> float:
    """``x`` as a float; NaN, infinities and huge values would poison the running sums."""
    value = float(x)
    if not abs(value) <= INPUT_LIMIT:
        raise ValueError(_input_error(value))
    return value


def finite_array(values: npt.ArrayLike) -> FloatArray:
    """``values`` as a 1-d float64 array, refusing entries like ``finite_float``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        msg = f"detector input must be 1-d, got shape {array.shape}"
        raise ValueError(msg)
    # NaN fails both comparisons.
    accepted = (array <= INPUT_LIMIT) & (array >= -INPUT_LIMIT)
    if not accepted.all():
        bad = int(np.flatnonzero(~accepted)[0])
        raise ValueError(_input_error(float(array[bad]), f" at position {bad}"))
    return array


def _input_error(value: float, where: str = "") -> str:
    if not math.isfinite(value):
        return f"detector input must be finite, got {value!r}{where}"
    return f"detector input must be within ±{INPUT_LIMIT:g}, got {value!r}{where}"


def step_after_reset(hits: list[int], default: int, low: int, high: int) -> int:
    """Points to try after a reset: twice the last run between detections, if known.

    Work past a detection is thrown away, so a step near the typical run
    keeps frequent detections cheap while rare ones still get big steps.
    """
    if len(hits) < 2:
        return default
    return min(high, max(low, 2 * (hits[-1] - hits[-2])))


class _Detector(Protocol):
    def update(self, x: float) -> Self: ...

    @property
    def drift_detected(self) -> bool: ...


def loop_until_drift(detector: _Detector, x: FloatArray) -> int:
    """Scalar updates up to the first detection; return how many points were used.

    For steps so short that numpy's per-call cost would exceed a Python loop.
    """
    for k, value in enumerate(x.tolist()):
        if detector.update(value).drift_detected:
            return k + 1
    return int(x.size)


def canonical_base64(reader: StateReader, key: str, expected: str) -> bytes:
    """The bytes saved as base64 under ``key``; ``expected`` says what they should hold.

    Only the canonical text is accepted, so a restored state saves exactly
    as it was loaded.
    """
    text = reader.text(key)
    try:
        raw = base64.b64decode(text, validate=True)  # binascii.Error is a ValueError
    except ValueError:
        raw = None
    if raw is None or base64.b64encode(raw).decode("ascii") != text:
        reader.at.wrong(key, expected, text)
    return raw
