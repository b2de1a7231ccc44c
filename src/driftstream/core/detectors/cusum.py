"""Multi-chart CUSUM: parallel two-sided CUSUMs sharing one threshold.

Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2),
pp. 100-115 (the CUSUM). Lorden, G. (1971). Procedures for reacting to a
change in distribution. Annals of Mathematical Statistics 42(6),
pp. 1897-1908 (its optimality). Tartakovsky, A. G., Nikiforov, I. V. and
Basseville, M. (2014). Sequential Analysis: Hypothesis Testing and
Changepoint Detection, CRC Press, section 8.3 (the multi-chart CUSUM for a
shift of unknown size, after Lorden & Pollak).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftstream.core.detectors._state import (
    STATE_VERSION,
    FloatArray,
    IntArray,
    StatePath,
    StateReader,
    finite_array,
    finite_float,
    loop_until_drift,
    step_after_reset,
)

_PARAMS = ("shifts", "threshold", "min_instances")
_RUNNING = ("n_seen", "anchor", "sum", "squares", "climb", "floor", "drift_detected")
# Chart sums are rebased every block: they drift down by shift**2 / 2 per
# point under no change, and a rebase keeps them small, so no precision is lost
# on long streams.
_BLOCK = 4096
_MAX_CHARTS = 16
# See ``update_many`` in page_hinkley.py: small steps after a reset, doubling.
_FIRST_STEP = 256
_MIN_STEP = 16
_LOOP_STEP = 32

DEFAULT_SHIFTS = (0.25, 0.5, 1.0, 2.0)
DEFAULT_THRESHOLD = 14.0
"""Calibrated by ``bench/cusum_threshold.py``: with the default shifts, on
no-drift streams standardised through their baseline CDF as the monitor does
(normal, lognormal and Poisson(3), 20M points each), the alarm rate fitted
over thresholds 9 to 12 reaches 0.035 per 100,000 points at 13.19, 13.30 and
13.85 respectively; 14.0 is the largest, rounded up, and measured directly
gives 0.015, 0.015 and 0.03 per 100,000 (the budget is 0.05). Discrete,
tied values (the Poisson counts) set the threshold."""


class CUSUM:
    """Two-sided multi-chart CUSUM for a mean shift of unknown size.

    For each ``shift`` d (in units of the stream's standard deviation) two
    log-likelihood-ratio CUSUMs run in parallel (Page, 1954) on the score
    ``z = (x - mean) / std``:

    ``up = max(0, up + d * z - d**2 / 2)`` and
    ``down = max(0, down - d * z - d**2 / 2)``,

    and drift is reported as soon as any chart exceeds the one shared
    ``threshold``, once ``min_instances`` points have been seen since the last
    reset. Each chart is Lorden's (1971) minimax-optimal test for its own
    shift; taking the first alarm over a grid of shifts is the multi-chart
    CUSUM (Lorden & Pollak; Tartakovsky, Nikiforov & Basseville 2014, 8.3),
    within a few points of the optimum for every shift between the grid's
    ends at the cost of a slightly higher threshold.

    ``mean`` and ``std`` are those of the points since the last reset (the
    mean as in Page-Hinkley), not 0 and 1: a discrete feature standardised
    through its baseline CDF has its mean away from zero (about -0.3 for
    Poisson counts) and its variance away from one, and a chart against a
    fixed zero would fire on it constantly. After a detection the next
    update starts from a fresh detector.

    Arithmetic: each chart keeps ``climb``, the sum of its increments since
    the start of the current block of 4096 points (starting from the chart's
    value then), and ``floor``, the running minimum of ``climb`` and 0; the
    chart's value is ``climb - floor``. This is the CUSUM recursion written
    as a cumulative sum minus its running minimum, so ``update_many`` solves
    it with numpy accumulations, and ``update`` performs the same operations
    in the same order: the two agree bit for bit however the stream is
    batched.

    Parameters
    ----------
    shifts
        The shift sizes the charts are tuned to, positive, at most 16; each
        gives an upward and a downward chart.
    threshold
        Detection threshold on the log-likelihood-ratio scale, shared by all
        charts.
    min_instances
        Points needed since the last reset before the test applies (the
        running mean settles meanwhile).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(1.0, 1.0, 1000)])
    >>> cusum = CUSUM()
    >>> for i, x in enumerate(stream):
    ...     if cusum.update(x).drift_detected:
    ...         print(f"drift at index {i}")
    drift at index 1041
    >>> CUSUM().update_many(stream)
    array([1041])
    """

    def __init__(
        self,
        shifts: Sequence[float] = DEFAULT_SHIFTS,
        threshold: float = DEFAULT_THRESHOLD,
        min_instances: int = 30,
    ) -> None:
        _check_params(shifts, threshold, min_instances)
        self.shifts = tuple(float(d) for d in shifts)
        self.threshold = float(threshold)
        self.min_instances = min_instances
        # Chart order: every shift upward, then every shift downward.
        self._slopes = [*self.shifts, *(-d for d in self.shifts)]
        self._drifts = [d * d / 2 for d in self.shifts] * 2
        self._slope_row = np.asarray(self._slopes, dtype=np.float64)
        self._drift_row = np.asarray(self._drifts, dtype=np.float64)
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._anchor = 0.0
        self._sum = 0.0
        self._squares = 0.0
        self._climb = [0.0] * len(self._slopes)
        self._floor = [0.0] * len(self._slopes)
        self._drift = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift

    @property
    def n_seen(self) -> int:
        """Points seen since the last reset."""
        return self._n

    @property
    def mean(self) -> float:
        """Mean of the points seen since the last reset (0.0 before any)."""
        return self._anchor + self._sum / self._n if self._n else 0.0

    @property
    def std(self) -> float:
        """Standard deviation (1/n) of the points seen since the last reset (0.0 before any)."""
        if not self._n:
            return 0.0
        return math.sqrt(max(self._squares / self._n - (self._sum / self._n) ** 2, 0.0))

    @property
    def charts(self) -> dict[str, list[float]]:
        """Each chart's value, one per shift: ``{"up": [...], "down": [...]}``."""
        values = [c - f for c, f in zip(self._climb, self._floor, strict=True)]
        half = len(self.shifts)
        return {"up": values[:half], "down": values[half:]}

    @property
    def statistic(self) -> float:
        """The largest chart value, the one compared with ``threshold``."""
        return max(c - f for c, f in zip(self._climb, self._floor, strict=True))

    # -- one point at a time -------------------------------------------------

    def update(self, x: float) -> Self:
        """Add one point; reset first if the previous update detected drift."""
        value = finite_float(x)
        if self._drift:
            self._reset()
        if not self._n:
            self._anchor = value
        self._n += 1
        gap = value - self._anchor
        self._sum += gap
        self._squares += gap * gap
        dev = value - (self._anchor + self._sum / self._n)
        sd = math.sqrt(max(self._squares / self._n - (self._sum / self._n) ** 2, 0.0))
        score = dev / sd if sd > 0.0 else 0.0
        top = 0.0
        climb, floor = self._climb, self._floor
        for i, (slope, drift) in enumerate(zip(self._slopes, self._drifts, strict=True)):
            c = climb[i] + (slope * score - drift)
            f = min(floor[i], c)
            climb[i], floor[i] = c, f
            top = max(top, c - f)
        if self._n % _BLOCK == 0:
            self._rebase()
        self._drift = self._n >= self.min_instances and top > self.threshold
        return self

    def _rebase(self) -> None:
        self._climb = [c - f for c, f in zip(self._climb, self._floor, strict=True)]
        self._floor = [0.0] * len(self._climb)

    # -- batches -------------------------------------------------------------

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed ``values`` in order; return the positions (0-based) that detected drift."""
        x = finite_array(values)
        hits: list[int] = []
        pos, step = 0, _FIRST_STEP
        while pos < x.size:
            if self._drift:
                self._reset()
                step = step_after_reset(hits, _FIRST_STEP, _MIN_STEP, _BLOCK)
            room = _BLOCK - self._n % _BLOCK
            chunk = x[pos : pos + min(step, room)]
            pos += loop_until_drift(self, chunk) if step <= _LOOP_STEP else self._advance(chunk)
            if self._drift:
                hits.append(pos - 1)
            else:
                step = min(2 * step, _BLOCK)
        return np.asarray(hits, dtype=np.int64)

    def _advance(self, x: FloatArray) -> int:
        """Consume ``x`` (inside one block) up to its first detection; return how many."""
        if not self._n:
            self._anchor = float(x[0])
        n = np.arange(self._n + 1, self._n + 1 + x.size, dtype=np.float64)
        gaps = x - self._anchor
        sums = np.add.accumulate(np.concatenate(([self._sum], gaps)))[1:]
        squares = np.add.accumulate(np.concatenate(([self._squares], gaps * gaps)))[1:]
        dev = x - (self._anchor + sums / n)
        sd = np.sqrt(np.maximum(squares / n - (sums / n) ** 2, 0.0))
        score = np.divide(dev, sd, out=np.zeros_like(dev), where=sd > 0.0)
        steps = score[:, None] * self._slope_row - self._drift_row
        start = np.asarray(self._climb, dtype=np.float64)[None, :]
        climb = np.add.accumulate(np.concatenate((start, steps)), axis=0)[1:]
        low = np.asarray(self._floor, dtype=np.float64)[None, :]
        floor = np.minimum.accumulate(np.concatenate((low, climb)), axis=0)[1:]
        top = (climb - floor).max(axis=1)
        hit = top > self.threshold
        hit[: max(0, self.min_instances - self._n - 1)] = False
        hits = np.flatnonzero(hit)
        k = int(hits[0]) if hits.size else x.size - 1
        self._n += k + 1
        self._sum = float(sums[k])
        self._squares = float(squares[k])
        self._climb = climb[k].tolist()
        self._floor = floor[k].tolist()
        if self._n % _BLOCK == 0:
            self._rebase()
        self._drift = bool(hits.size)
        return k + 1

    # -- state ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Parameters and running state as JSON-able plain data."""
        return {
            "kind": "cusum",
            "version": STATE_VERSION,
            "shifts": list(self.shifts),
            "threshold": self.threshold,
            "min_instances": int(self.min_instances),
            "n_seen": self._n,
            "anchor": self._anchor,
            "sum": self._sum,
            "squares": self._squares,
            "climb": list(self._climb),
            "floor": list(self._floor),
            "drift_detected": self._drift,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> CUSUM:
        """Rebuild a detector saved by ``to_state``; ValueError names the key at fault."""
        reader = StateReader(state, "cusum", _PARAMS + _RUNNING, at)
        shifts = reader.array("shifts")
        if not 1 <= len(shifts) <= _MAX_CHARTS:
            reader.fail("shifts", f"must hold 1 to {_MAX_CHARTS} shifts, got {len(shifts)}")
        values = [_entry(reader, "shifts", i, v) for i, v in enumerate(shifts)]
        threshold = reader.number("threshold")
        min_instances = reader.count("min_instances")
        try:
            detector = cls(values, threshold, min_instances)
        except ValueError as err:
            reader.fail(None, f"holds invalid parameters: {err}")
        charts = 2 * len(values)
        detector._n = reader.count("n_seen")
        detector._anchor = reader.number("anchor")
        detector._sum = reader.number("sum")
        detector._squares = reader.number("squares")
        if detector._squares < 0.0:
            reader.fail("squares", f"must be >= 0, got {detector._squares!r}")
        climb = reader.array("climb", charts)
        floor = reader.array("floor", charts)
        detector._climb = [_entry(reader, "climb", i, v) for i, v in enumerate(climb)]
        detector._floor = [_entry(reader, "floor", i, v) for i, v in enumerate(floor)]
        if any(f > 0.0 or f > c for c, f in zip(detector._climb, detector._floor, strict=True)):
            reader.fail("floor", "must hold values at most 0 and at most the matching climb")
        detector._drift = reader.flag("drift_detected")
        return detector


def _entry(reader: StateReader, key: str, index: int, value: object) -> float:
    """Entry ``index`` of the list under ``key``: a finite number, never a bool."""
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):
            number = float(value)
    if not math.isfinite(number):
        reader.fail(key, f"entry {index} must be a finite number, got {value!r}")
    return number


def _check_params(shifts: Sequence[float], threshold: float, min_instances: int) -> None:
    if not 1 <= len(shifts) <= _MAX_CHARTS:
        msg = f"CUSUM parameter 'shifts' must hold 1 to {_MAX_CHARTS} shifts, got {len(shifts)}"
        raise ValueError(msg)
    if not all(0 < float(d) <= 10 for d in shifts):
        msg = f"CUSUM parameter 'shifts' must hold values in (0, 10], got {list(shifts)!r}"
        raise ValueError(msg)
    if not 0 < threshold < 1e6:
        msg = f"CUSUM parameter 'threshold' must be in (0, 1e6), got {threshold!r}"
        raise ValueError(msg)
    if min_instances < 0:
        msg = f"CUSUM parameter 'min_instances' must be >= 0, got {min_instances!r}"
        raise ValueError(msg)
