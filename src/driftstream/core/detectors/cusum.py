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

import base64
import functools
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftstream.core.detectors._state import (
    FloatArray,
    IntArray,
    StatePath,
    StateReader,
    canonical_base64,
    finite_array,
    finite_float,
    loop_until_drift,
    step_after_reset,
)

_KIND = "cusum"
_VERSION = 2
"""CUSUM's own state version. Version 2 keeps each chart as one integer and
packs the running values into one base64 string; version 1 kept two floats
per chart (a cumulative sum and its running minimum) as lists of numbers."""
_PARAMS = ("shifts", "threshold", "min_instances")
_RUNNING = ("n_seen", "running", "drift_detected")
_MAX_CHARTS = 16

# Fixed point: a score is rounded to a multiple of 2**-14 standard deviations
# (and clipped at ±1024), a shift to a multiple of 2**-10. Chart arithmetic is
# then on integers, exact, so it gives the same result in any order: however
# the stream is batched, saved or restored, and whether it is solved point by
# point or with numpy over whole batches of detectors.
_SCORE_BITS = 14
_SHIFT_BITS = 10
_SCORE_SCALE = float(1 << _SCORE_BITS)
_STEP_LIMIT = 1 << 24
"""The largest score step: ``1024 * 2**14``. ``|z| <= sqrt(n - 1)`` for the
point just added to ``n``, so the clip only bites after a million points."""
_CHART_CAP = 1 << 46
"""Charts stop growing here, far above any threshold (at least 2**22 in
log-likelihood-ratio units); only reachable before ``min_instances``."""
_MIN_SHIFT = 2.0**-_SHIFT_BITS
_DRIFT_BYTE = 32  # the drift flag's offset in a running record (see _Grid)
_FLOAT = np.dtype("<f8")
_MOMENTS = 3 * _FLOAT.itemsize

# update_many: steps of at most _MAX_STEP points, small after a reset (work
# past a detection is thrown away) and doubling while nothing is found; up to
# _LOOP_STEP points a loop of ``update`` beats numpy's per-call cost.
_FIRST_STEP = 256
_MIN_STEP = 16
_MAX_STEP = 4096
_LOOP_STEP = 16

DEFAULT_SHIFTS = (0.25, 0.5, 1.0, 2.0)
DEFAULT_MIN_INSTANCES = 30
DEFAULT_THRESHOLD = 14.0
"""Calibrated by ``bench/cusum_threshold.py``: with the default shifts, on
no-drift streams standardised through their baseline CDF as the monitor does
(normal, lognormal and Poisson(3), 20M points each), the alarm rate fitted
over thresholds 9 to 12 reaches 0.035 per 100,000 points at 13.19, 13.30 and
13.85 respectively; 14.0 is the largest, rounded up, and measured directly
gives 0.015, 0.015 and 0.03 per 100,000 (the budget is 0.05). Discrete,
tied values (the Poisson counts) set the threshold."""
DEFAULT_RATE = 3e-7
"""False alarms per point at ``DEFAULT_THRESHOLD``: the highest measured there
(Poisson(3), 0.030 per 100,000)."""
RATE_SLOPE = 0.95
"""How fast the log of the alarm rate falls per unit of threshold. Fitted by
``bench/cusum_threshold.py`` over thresholds 9 to 12: 1.06 (normal), 1.03
(lognormal), 0.97 (Poisson(3)); Siegmund's approximation gives 1 for a
log-likelihood-ratio chart. The least, rounded down, so that thresholds
extrapolated from it err on the high side."""


def threshold_for_rate(rate: float, floor: float = DEFAULT_THRESHOLD) -> float:
    """The default-shift threshold at which no-drift alarms come at most ``rate`` per point.

    Extrapolated from the measured rate at ``DEFAULT_THRESHOLD`` along the
    fitted slope and rounded up to a quarter (so thresholds are few and
    readable); never below ``floor``.

    >>> threshold_for_rate(DEFAULT_RATE)
    14.0
    >>> threshold_for_rate(1e-10)
    22.5
    >>> threshold_for_rate(1e-3)
    14.0
    """
    if not rate > 0.0:
        msg = f"rate must be > 0, got {rate!r}"
        raise ValueError(msg)
    raw = DEFAULT_THRESHOLD + math.log(DEFAULT_RATE / rate) / RATE_SLOPE
    return max(floor, math.ceil(raw * 4 - 1e-9) / 4)


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

    Arithmetic: ``d * z - d**2 / 2 = d * (z - d / 2)``, so each chart is
    Page's CUSUM of the scores with reference value ``d / 2``, scaled by
    ``d``. The scores are rounded to multiples of 2**-14 (and clipped at
    ±1024 standard deviations), the shifts to multiples of 2**-10 (the
    rounded shift is the one used), so every chart holds an integer number of
    2**-14 steps and moves by integers: exact arithmetic. The running mean and
    variance are float sums taken in stream order. ``update``,
    ``update_many`` and ``update_cusums`` therefore agree bit for bit however
    the stream is batched, and a saved state holds just one integer per
    chart. Rounding moves a chart by at most ``d * 2**-15`` per point, with
    no bias: on 60M no-drift points standardised as ``bench/cusum_threshold.py``
    does, at thresholds 9 to 14, every alarm falls where the floating-point
    charts of state version 1 put it, and that script's calibration figures
    are unchanged. ``update_many`` solves each chunk for all its points at
    once (the recursion in closed form, ``_charts_through``);
    ``update_cusums`` (``cusum_bank``) does so for many detectors.

    Parameters
    ----------
    shifts
        The shift sizes the charts are tuned to, in [2**-10, 10], at most
        16; each gives an upward and a downward chart.
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
        min_instances: int = DEFAULT_MIN_INSTANCES,
    ) -> None:
        _check_params(shifts, threshold, min_instances)
        self._shifts = tuple(float(d) for d in shifts)
        self._threshold = float(threshold)
        self.min_instances = min_instances
        self._grid = _grid(self._shifts, self._threshold)
        self._reset()

    @property
    def shifts(self) -> tuple[float, ...]:
        """The shift sizes the charts are tuned to (read-only: the charts depend on them)."""
        return self._shifts

    @property
    def threshold(self) -> float:
        """The detection threshold (read-only: the charts' limits are derived from it)."""
        return self._threshold

    def retune(self, threshold: float) -> None:
        """Change the threshold, keeping the charts: it applies from the next point.

        The charts do not depend on the threshold (only the limits they are
        compared with do), so nothing else changes.
        """
        _check_params(self._shifts, threshold, self.min_instances)
        self._threshold = float(threshold)
        self._grid = _grid(self._shifts, self._threshold)

    def _reset(self) -> None:
        # The running state is one packed record (see _Grid), so that banks of
        # detectors read and write it in bulk.
        self._record = self._grid.fresh

    def _running(self) -> tuple[int, float, float, float, bool, list[int]]:
        """(points since reset, anchor, sum and sum of squares of the points less
        the anchor, drift detected, charts: every upward one, then every downward)."""
        n, anchor, total, squares, drift, *charts = self._grid.record.unpack(self._record)
        return n, anchor, total, squares, drift, charts

    def _store(
        self, n: int, anchor: float, total: float, squares: float, drift: bool, charts: list[int]
    ) -> None:
        self._record = self._grid.record.pack(n, anchor, total, squares, drift, *charts)

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._record[_DRIFT_BYTE] != 0

    @property
    def n_seen(self) -> int:
        """Points seen since the last reset."""
        return self._running()[0]

    @property
    def mean(self) -> float:
        """Mean of the points seen since the last reset (0.0 before any)."""
        n, anchor, total, *_ = self._running()
        return anchor + total / n if n else 0.0

    @property
    def std(self) -> float:
        """Standard deviation (1/n) of the points seen since the last reset (0.0 before any)."""
        n, _, total, squares, *_ = self._running()
        if not n:
            return 0.0
        return math.sqrt(max(squares / n - (total / n) ** 2, 0.0))

    @property
    def charts(self) -> dict[str, list[float]]:
        """Each chart's log-likelihood ratio, one per shift: ``{"up": [...], "down": [...]}``."""
        charts = self._running()[5]
        half, units = len(self.shifts), self._grid.units
        values = [
            math.ldexp(units[i % half] * c, -_SCORE_BITS - _SHIFT_BITS)
            for i, c in enumerate(charts)
        ]
        return {"up": values[:half], "down": values[half:]}

    @property
    def statistic(self) -> float:
        """The largest chart value, the one compared with ``threshold``."""
        charts = self.charts
        return max(charts["up"] + charts["down"])

    # -- one point at a time -------------------------------------------------

    def update(self, x: float) -> Self:
        """Add one point; reset first if the previous update detected drift."""
        value = finite_float(x)
        grid = self._grid
        n, anchor, total, squares, drift, *charts = grid.record.unpack(self._record)
        if drift:
            n, total, squares, charts = 0, 0.0, 0.0, [0] * len(charts)
        if not n:
            anchor = value
        n += 1
        gap = value - anchor
        total += gap
        squares += gap * gap
        mean = total / n
        variance = squares / n - mean * mean
        # The operations of _scores, in the same order.
        score = (gap - mean) / math.sqrt(variance) * _SCORE_SCALE if variance > 0.0 else 0.0
        step = round(min(max(score, -_STEP_LIMIT), _STEP_LIMIT))
        half, hit = len(grid.refs), False
        for j, (ref, limit) in enumerate(zip(grid.refs, grid.limits, strict=True)):
            up = min(max(charts[j] + step - ref, 0), _CHART_CAP)
            down = min(max(charts[half + j] - step - ref, 0), _CHART_CAP)
            charts[j], charts[half + j] = up, down
            hit = hit or up > limit or down > limit
        drift = hit and n >= self.min_instances
        self._record = grid.record.pack(n, anchor, total, squares, drift, *charts)
        return self

    # -- batches -------------------------------------------------------------

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed ``values`` in order; return the positions (0-based) that detected drift."""
        x = finite_array(values)
        hits: list[int] = []
        pos, step = 0, _MAX_STEP
        while pos < x.size:
            if self.drift_detected:
                self._reset()
                step = step_after_reset(hits, _FIRST_STEP, _MIN_STEP, _MAX_STEP)
            chunk = x[pos : pos + step]
            # Near the cap, update's clamp applies point by point.
            near = max(self._running()[5]) > _CHART_CAP - chunk.size * _STEP_LIMIT
            if chunk.size <= _LOOP_STEP or near:
                pos += loop_until_drift(self, chunk)
            else:
                pos += self._advance(chunk)
            if self.drift_detected:
                hits.append(pos - 1)
            else:
                step = min(2 * step, _MAX_STEP)
        return np.asarray(hits, dtype=np.int64)

    def _advance(self, x: FloatArray) -> int:
        """Consume ``x`` up to its first detection; return how many points were used.

        The charts are solved for every point at once (``_charts_through``).
        """
        n0, anchor, total, squares, _, charts = self._running()
        if not n0:
            anchor = float(x[0])
        grid = self._grid
        row = (np.array([anchor]), np.array([total]), np.array([squares]), np.array([n0]))
        score, totals, sums_of_squares = _scores(x[None], *row, False, _fresh)
        steps = np.cumsum(score[0].astype(np.int64))[:, None]
        start = np.array(charts, dtype=np.int64).reshape(2, -1, 1)
        after = _charts_through(steps, grid.refs_array, start)[:, :, :, 0]
        over = np.any(after > grid.limits_array, axis=(1, 2))
        over[: max(0, self.min_instances - n0 - 1)] = False
        found = np.flatnonzero(over)
        k = int(found[0]) if found.size else x.size - 1
        self._store(
            n0 + k + 1,
            anchor,
            float(totals[0, k]),
            float(sums_of_squares[0, k]),
            bool(found.size),
            after[k].reshape(-1).tolist(),
        )
        return k + 1

    # -- state ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Parameters and running state as JSON-able plain data.

        ``running`` is the base64 of the running mean's anchor (the first
        point since the last reset), the sum and the sum of squares of the
        points' differences from it, as little-endian float64 values, then
        each chart (upward charts first, in ``shifts`` order) as an unsigned
        LEB128 varint: its CUSUM in score steps of 2**-14.
        """
        n, anchor, total, squares, drift, charts = self._running()
        return {
            "kind": _KIND,
            "version": _VERSION,
            "shifts": list(self.shifts),
            "threshold": self.threshold,
            "min_instances": int(self.min_instances),
            "n_seen": n,
            "running": _pack(anchor, total, squares, charts),
            "drift_detected": drift,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> CUSUM:
        """Rebuild a detector saved by ``to_state``; ValueError names the key at fault."""
        at = at if at is not None else StatePath(_KIND)
        reader = StateReader(state, _KIND, _PARAMS + _RUNNING, at, version=_VERSION)
        shifts = reader.numbers("shifts")
        if not 1 <= len(shifts) <= _MAX_CHARTS:
            reader.fail("shifts", f"must hold 1 to {_MAX_CHARTS} shifts, got {len(shifts)}")
        threshold = reader.number("threshold")
        min_instances = reader.count("min_instances")
        try:
            detector = cls(shifts, threshold, min_instances)
        except ValueError as err:
            reader.fail(None, f"holds invalid parameters: {err}")
        n = reader.count("n_seen")
        (anchor, total, squares), charts = _unpack(reader, "running", 2 * len(shifts))
        drift = reader.flag("drift_detected")
        if not n and (drift or anchor or total or squares or any(charts)):
            reader.fail("n_seen", "is 0 but the running values are not those of a reset")
        detector._store(n, anchor, total, squares, drift, charts)
        return detector


class _Grid:
    """Shifts and threshold in integer form; immutable, shared by detectors with both.

    Per shift d: ``units`` is d in multiples of 2**-10, ``refs`` its reference
    value d / 2 and ``limits`` the threshold over d, both in score steps of
    2**-14 (a chart above its limit exceeds the threshold). ``order`` lists the
    shifts by increasing reference value; ``sorted_refs``/``sorted_limits``
    are in that order.

    A detector's running state is one ``record``: points since the reset
    (int64), the anchor, sum and sum of squares (float64), whether drift
    was detected (one byte), then the charts (int64, upward ones first),
    little-endian and unpadded; ``record_dtype`` is its numpy form and
    ``fresh`` the record of a reset detector.
    """

    __slots__ = (
        "fresh",
        "key",
        "limits",
        "limits_array",
        "order",
        "record",
        "record_dtype",
        "refs",
        "refs_array",
        "sorted_limits",
        "sorted_refs",
        "units",
    )

    def __init__(self, shifts: tuple[float, ...], threshold: float) -> None:
        self.key = (shifts, threshold)
        self.units = tuple(round(d * (1 << _SHIFT_BITS)) for d in shifts)
        self.refs = tuple(u << (_SCORE_BITS - _SHIFT_BITS - 1) for u in self.units)
        limit = math.floor(threshold * (1 << (_SCORE_BITS + _SHIFT_BITS)))
        self.limits = tuple(limit // u for u in self.units)
        self.refs_array = _frozen(self.refs)
        self.limits_array = _frozen(self.limits)
        self.order = sorted(range(len(shifts)), key=self.refs.__getitem__)
        self.sorted_refs = _frozen([self.refs[j] for j in self.order])
        self.sorted_limits = _frozen([self.limits[j] for j in self.order])
        charts = 2 * len(shifts)
        self.record = struct.Struct(f"<q3d?{charts}q")
        self.record_dtype = np.dtype(
            [
                ("n", "<i8"),
                ("anchor", "<f8"),
                ("sum", "<f8"),
                ("squares", "<f8"),
                ("drift", "?"),
                ("charts", "<i8", (2, len(shifts))),
            ]
        )
        self.fresh = self.record.pack(0, 0.0, 0.0, 0.0, False, *[0] * charts)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Grid:
        return self

    def __reduce__(self) -> tuple[Any, tuple[tuple[float, ...], float]]:
        return _grid, self.key


@functools.lru_cache(maxsize=64)
def _grid(shifts: tuple[float, ...], threshold: float) -> _Grid:
    return _Grid(shifts, threshold)


def _frozen(values: Sequence[int]) -> IntArray:
    array = np.array(values, dtype=np.int64)
    array.flags.writeable = False
    return array


# -- state encoding --------------------------------------------------------------


def _pack(anchor: float, total: float, squares: float, charts: list[int]) -> str:
    """``to_state``'s ``running``: three float64 values, then one varint per chart."""
    raw = bytearray(np.array([anchor, total, squares], dtype=_FLOAT).tobytes())
    for value in charts:
        while value > 0x7F:
            raw.append(value & 0x7F | 0x80)
            value >>= 7
        raw.append(value)
    return base64.b64encode(bytes(raw)).decode("ascii")


def _unpack(
    reader: StateReader, key: str, count: int
) -> tuple[tuple[float, float, float], list[int]]:
    """What ``_pack`` wrote under ``key``: (anchor, sum, squares) and ``count`` charts."""
    raw = canonical_base64(reader, key, "base64 of three float64 values and a varint per chart")
    if len(raw) < _MOMENTS:
        reader.fail(key, f"must start with 3 float64 values ({_MOMENTS} bytes), got {len(raw)}")
    anchor, total, squares = np.frombuffer(raw[:_MOMENTS], dtype=_FLOAT).tolist()
    for name, value in (("anchor", anchor), ("sum", total), ("squares", squares)):
        if not math.isfinite(value):
            reader.fail(key, f"holds a non-finite {name}: {value!r}")
    if squares < 0.0:
        reader.fail(key, f"holds a negative sum of squares: {squares!r}")
    charts, pos = [], _MOMENTS
    for index in range(count):
        value, shift = 0, 0
        while True:
            if pos == len(raw):
                reader.fail(key, f"ends inside chart {index} of {count}")
            byte = raw[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if shift > 7 and byte == 0:
            reader.fail(key, f"holds chart {index} in a longer form than needed")
        if value > _CHART_CAP:
            reader.fail(key, f"holds chart {index} above the cap 2**46: {value}")
        charts.append(value)
    if pos != len(raw):
        reader.fail(key, f"has {len(raw) - pos} bytes after the {count} charts")
    return (anchor, total, squares), charts


def _check_params(shifts: Sequence[float], threshold: float, min_instances: int) -> None:
    if not 1 <= len(shifts) <= _MAX_CHARTS:
        msg = f"CUSUM parameter 'shifts' must hold 1 to {_MAX_CHARTS} shifts, got {len(shifts)}"
        raise ValueError(msg)
    if not all(_MIN_SHIFT <= float(d) <= 10 for d in shifts):
        msg = f"CUSUM parameter 'shifts' must hold values in [2**-10, 10], got {list(shifts)!r}"
        raise ValueError(msg)
    if not 0 < threshold < 1e6:
        msg = f"CUSUM parameter 'threshold' must be in (0, 1e6), got {threshold!r}"
        raise ValueError(msg)
    if min_instances < 0:
        msg = f"CUSUM parameter 'min_instances' must be >= 0, got {min_instances!r}"
        raise ValueError(msg)


# -- arithmetic shared with the bank (cusum_bank) ------------------------------

Scratch = Callable[[str, int, Any], Any]
"""``scratch(name, size, dtype)``: a 1-d buffer for intermediate values (any contents)."""


def _fresh(name: str, size: int, dtype: Any) -> Any:
    """New memory for every buffer."""
    return np.empty(size, dtype=dtype)


def _scores(
    x: FloatArray,
    anchor: FloatArray,
    total: FloatArray,
    squares: FloatArray,
    seen: IntArray,
    wide: bool,
    scratch: Scratch,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``update``'s score steps for rows of points, one row per detector.

    ``x`` is (detector, point); ``anchor``, ``total``, ``squares`` and ``seen``
    are each detector's running values before its row (anchors already set
    for fresh detectors). Returns the rounded score steps (as floats) and
    the running sum and sum of squares after each point, as (point,
    detector) arrays if ``wide``, else (detector, point). The sums fold left
    to right as ``update`` adds them (the real and imaginary parts of one
    complex accumulation; row by row for ``wide``), then every step is
    ``update``'s, operation for operation.
    """
    count, width = x.shape
    shape = (width, count) if wide else (count, width)
    cells = count * width
    gaps = scratch("cusum.gaps", cells, np.float64).reshape(shape)
    sums = scratch("cusum.sums", cells + count, np.complex128)
    if wide:
        np.subtract(x.T, anchor, out=gaps)
        sums = sums.reshape(width + 1, count)
        sums.real[0], sums.imag[0] = total, squares
        sums.real[1:] = gaps
        np.multiply(gaps, gaps, out=sums.imag[1:])
        for k in range(1, width + 1):
            np.add(sums[k - 1], sums[k], out=sums[k])
        running = sums[1:]
    else:
        np.subtract(x, anchor[:, None], out=gaps)
        sums = sums.reshape(count, width + 1)
        sums.real[:, 0], sums.imag[:, 0] = total, squares
        sums.real[:, 1:] = gaps
        np.multiply(gaps, gaps, out=sums.imag[:, 1:])
        np.add.accumulate(sums, axis=1, out=sums)
        running = sums[:, 1:]
    # Points seen after each point; one row for all when every detector has seen as many.
    points = np.arange(1, width + 1, dtype=np.float64)
    if int(seen.min()) == int(seen.max()):
        counts = points + float(seen[0])
        counts = counts[:, None] if wide else counts[None]
    else:
        counts = scratch("cusum.counts", cells, np.float64).reshape(shape)
        if wide:
            np.add(points[:, None], seen, out=counts)
        else:
            np.add(seen[:, None], points, out=counts)
    # mean, variance, then (gap - mean) / sqrt(variance) * 2**14, clipped and rounded.
    mean = scratch("cusum.mean", cells, np.float64).reshape(shape)
    np.divide(running.real, counts, out=mean)
    dev = np.subtract(gaps, mean, out=gaps)
    variance = scratch("cusum.variance", cells, np.float64).reshape(shape)
    np.divide(running.imag, counts, out=variance)
    np.multiply(mean, mean, out=mean)
    np.subtract(variance, mean, out=variance)
    scale = mean
    if variance.min() > 0.0:
        np.sqrt(variance, out=scale)
    else:
        # update's score is 0 where the variance is not positive: divide by infinity.
        positive = scratch("cusum.positive", cells, np.bool_).reshape(shape)
        np.greater(variance, 0.0, out=positive)
        scale.fill(np.inf)
        np.sqrt(variance, out=scale, where=positive)
    score = np.divide(dev, scale, out=dev)
    score *= _SCORE_SCALE
    np.clip(score, -_STEP_LIMIT, _STEP_LIMIT, out=score)
    np.rint(score, out=score)
    return score, running.real, running.imag


def _charts_through(steps: IntArray, refs: IntArray, start: IntArray) -> IntArray:
    """Every chart after every point: (point, direction, shift, detector).

    ``steps`` is (point, detector), the score steps summed from the first
    point; ``start`` the charts before it, (direction, shift, detector). A
    chart's cumulative sum is ``climb = steps - ref * (point + 1)`` upward,
    ``-steps - ref * (point + 1)`` downward, and the chart is
    ``max(start + climb, climb - min(0, running minimum of climb))``: the
    CUSUM recursion in closed form (Lindley), exact in integers.
    """
    m, count = steps.shape
    ref_rows = (refs * np.arange(1, m + 1)[:, None])[:, :, None]
    climb = np.empty((m, 2, refs.size, count), dtype=np.int64)
    np.subtract(steps[:, None], ref_rows, out=climb[:, 0])
    np.subtract(-ref_rows, steps[:, None], out=climb[:, 1])
    rise = np.minimum(climb, 0)
    np.minimum.accumulate(rise, axis=0, out=rise)
    np.subtract(climb, rise, out=rise)
    np.add(climb, start, out=climb)
    np.maximum(climb, rise, out=climb)
    return climb
