"""ADWIN: adaptive windowing over exponential buckets (ADWIN2).

Bifet, A. and Gavaldà, R. (2007). Learning from time-changing data with
adaptive windowing. Proceedings of the 2007 SIAM International Conference on
Data Mining (SDM), pp. 443-448.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Self, TypeVar

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

_PARAMS = ("delta", "clock", "max_buckets", "min_window_length", "grace_period")
_RUNNING = (
    "width",
    "total",
    "variance",
    "tick",
    "n_detections",
    "drift_detected",
    "bucket_counts",
    "bucket_totals",
    "bucket_variances",
)
_KIND = "adwin"
_VERSION = 2
"""ADWIN's own state version. Version 2 saves the buckets as base64 strings
of float64 bytes; version 1 saved them as nested lists of numbers."""
_FLOAT = np.dtype("<f8")
_F = TypeVar("_F", float, FloatArray)

# A batch step tests all its clock checks at once; work past a detection is
# wasted, so steps start moderate and double while nothing is found. The
# checks cap keeps the (cut point x check) arrays small when clock is 1.
_FIRST_STEP = 1024
_MAX_STEP = 8192
_MAX_CHECKS_PER_STEP = 2048
# Below this many points a step's fixed numpy cost exceeds a scalar loop.
_LOOP_STEP = 256


class ADWIN:
    """Adaptive windowing drift detector (Bifet & Gavaldà, 2007, SIAM SDM).

    The window is kept as levels of buckets: an entry of level ``i`` sums
    ``2**i`` points, and each level holds at most ``max_buckets`` entries.
    Every ``clock`` updates, once the window is longer than ``grace_period``,
    every split of the window into an older and a newer part is tested; when
    their means differ by more than the Bernstein-style bound for
    ``delta``, the oldest bucket is dropped (repeatedly) and drift is
    reported.

    The arithmetic follows river 0.26.1 operation for operation, so detection
    indices and ``width``/``total``/``variance`` are bit-identical to river's.
    Like river, the update after a detection starts from an empty detector,
    which also sets ``n_detections`` back to zero.

    ``update_many`` gives the same detections and the same final state as a
    loop of ``update``, working on whole numpy batches: only clock checks and
    detections cost Python-level work. Inputs must be finite and within
    ±1e100 (``INPUT_LIMIT`` in ``_state``), so the state stays finite.

    Parameters
    ----------
    delta
        Significance level of the cut test, in (0, 1).
    clock
        Test for change every ``clock`` updates.
    max_buckets
        Entries kept per bucket level before the two oldest merge (>= 2; river
        can crash with 1).
    min_window_length
        Minimum length of each sub-window of a tested split (>= 1).
    grace_period
        No test until the window is longer than this.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 1000), rng.normal(1.5, 1.0, 1000)])
    >>> adwin = ADWIN()
    >>> for i, x in enumerate(stream):
    ...     if adwin.update(x).drift_detected:
    ...         print(f"drift at index {i}")
    drift at index 1055
    >>> ADWIN().update_many(stream)
    array([1055])
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        _check_params(delta, clock, max_buckets, min_window_length, grace_period)
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._reset()

    def _reset(self) -> None:
        self._totals: list[list[float]] = [[]]
        self._variances: list[list[float]] = [[]]
        self._width = 0
        self._total = 0.0
        self._variance = 0.0
        self._tick = 0
        self._n_detections = 0
        self._drift = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift

    @property
    def width(self) -> int:
        """Number of points in the current window."""
        return self._width

    @property
    def total(self) -> float:
        """Sum of the points in the window."""
        return self._total

    @property
    def variance(self) -> float:
        """Sum of squared deviations from the window mean (river's ``variance``)."""
        return self._variance

    @property
    def estimation(self) -> float:
        """Mean of the window (0.0 when empty)."""
        return self._total / self._width if self._width else 0.0

    @property
    def n_detections(self) -> int:
        """Detections since the last reset, so 1 right after a detection, else 0."""
        return self._n_detections

    # -- one point at a time -------------------------------------------------

    def update(self, x: float) -> Self:
        """Add one point; reset first if the previous update detected drift."""
        value = finite_float(x)
        if self._drift:
            self._reset()
        self._insert(value)
        self._tick += 1
        if self._tick % self.clock == 0 and self._width > self.grace_period:
            self._conclude_check()
        return self

    def _insert(self, x: float) -> None:
        self._totals[0].append(x)
        self._variances[0].append(0.0)
        self._width += 1
        if self._width > 1:
            d = x - self._total / (self._width - 1)
            self._variance += (self._width - 1) * d * d / self._width
        self._total += x
        self._compress()

    def _compress(self) -> None:
        level = 0
        while len(self._totals[level]) == self.max_buckets + 1:
            if level + 1 == len(self._totals):
                self._totals.append([])
                self._variances.append([])
            t0, t1 = self._totals[level][:2]
            v0, v1 = self._variances[level][:2]
            merged_t, merged_v = _merge(t0, t1, v0, v1, float(1 << level))
            self._totals[level + 1].append(merged_t)
            self._variances[level + 1].append(merged_v)
            del self._totals[level][:2]
            del self._variances[level][:2]
            level += 1

    def _conclude_check(self) -> None:
        """Shrink while a cut is significant; any cut means drift."""
        while self._cut_oldest():
            self._drift = True
        self._n_detections += self._drift

    def _cut_oldest(self) -> bool:
        """Test cuts oldest-first; at the first significant one drop the oldest bucket."""
        if self._width < 2:
            return False
        bound = _CutBound(self, self._width, self._variance)
        n0, n1, u0, u1 = 0.0, float(self._width), 0.0, self._total
        for level in range(len(self._totals) - 1, -1, -1):
            size = float(1 << level)
            entries = self._totals[level]
            # The newest entry would leave an empty newer sub-window.
            for t in entries[:-1] if level == 0 else entries:
                n0 += size
                n1 -= size
                u0 += t
                u1 -= t
                if bound.significant(n0, n1, u0 / n0 - u1 / n1):
                    self._drop_oldest()
                    return True
        return False

    def _drop_oldest(self) -> None:
        top = len(self._totals) - 1
        n = float(1 << top)
        u = self._totals[top].pop(0)
        v = self._variances[top].pop(0)
        mu = u / n
        self._width -= 1 << top
        self._total -= u
        d = mu - self._total / self._width
        self._variance -= v + n * self._width * d * d / (n + self._width)
        if not self._totals[top]:
            self._totals.pop()
            self._variances.pop()

    # -- batches -------------------------------------------------------------

    def update_many(self, values: npt.ArrayLike) -> IntArray:
        """Feed ``values`` in order; return the positions (0-based) that detected drift."""
        x = finite_array(values)
        hits: list[int] = []
        pos, step = 0, _FIRST_STEP
        max_step = min(_MAX_STEP, _MAX_CHECKS_PER_STEP * self.clock)
        while pos < x.size:
            if self._drift:
                self._reset()
                step = step_after_reset(hits, _FIRST_STEP, 2 * self.clock, max_step)
            chunk = x[pos : pos + step]
            if step <= _LOOP_STEP:
                pos += loop_until_drift(self, chunk)
            else:
                pos += self._advance(chunk, last=pos + step >= x.size)
            if self._drift:
                hits.append(pos - 1)
            else:
                step = min(2 * step, max_step)
        return np.asarray(hits, dtype=np.int64)

    def _advance(self, x: FloatArray, last: bool) -> int:
        """Consume ``x`` up to and including its first detection; return how many were used.

        A detection inside the batch is followed by a reset, so the window
        shrinking it would trigger is only worth doing at the batch's end.
        """
        sums = _running_sums(x, self._width, self._total, self._variance)
        streams = _level_streams(self._totals, x, self.max_buckets)
        checks = self._check_points(x.size)
        hit = _first_cut_check(self, streams, checks, sums) if checks.size else -1
        used = int(checks[hit]) if hit >= 0 else x.size
        if hit >= 0 and not (last and used == x.size):
            self._drift = True
            self._n_detections += 1
            return used
        self._settle(streams, sums, used)
        if hit >= 0:
            # The scalar pass repeats the found cut and does the deletions.
            self._conclude_check()
        return used

    def _check_points(self, n: int) -> IntArray:
        """1-based offsets in a batch of ``n`` at which a clock check happens."""
        first = (-self._tick) % self.clock or self.clock
        offsets = np.arange(first, n + 1, self.clock, dtype=np.int64)
        return offsets[self._width + offsets > self.grace_period]

    def _settle(self, streams: list[_Level], sums: _Sums, used: int) -> None:
        """Move the state to just after the first ``used`` points of the batch."""
        variances = _level_variances(streams, self._variances)
        self._totals, self._variances = [], []
        bounds = _level_bounds(streams, np.array([used]), self.max_buckets)
        for (level, lo, hi), variance in zip(bounds, variances, strict=True):
            if hi[0] > lo[0] or not self._totals:
                self._totals.append(level.totals[lo[0] : hi[0]].tolist())
                self._variances.append(variance[lo[0] : hi[0]].tolist())
        self._width += used
        self._tick += used
        self._total = float(sums.total[used])
        self._variance = float(sums.variance[used])

    # -- state ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Parameters and running state as JSON-able plain data.

        The buckets are saved compactly and exactly: ``bucket_counts`` holds
        the number of entries per level (level 0 first), ``bucket_totals``
        the base64 of every level's totals as little-endian float64 values,
        level 0 first, and ``bucket_variances`` the same for the variances
        of levels 1 and up (a level-0 bucket holds one point, so its variance
        is always 0.0).
        """
        return {
            "kind": _KIND,
            "version": _VERSION,
            "delta": float(self.delta),
            "clock": int(self.clock),
            "max_buckets": int(self.max_buckets),
            "min_window_length": int(self.min_window_length),
            "grace_period": int(self.grace_period),
            "width": self._width,
            "total": self._total,
            "variance": self._variance,
            "tick": self._tick,
            "n_detections": self._n_detections,
            "drift_detected": self._drift,
            "bucket_counts": [len(level) for level in self._totals],
            "bucket_totals": _encode_floats(self._totals),
            "bucket_variances": _encode_floats(self._variances[1:]),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> ADWIN:
        """Rebuild a detector saved by ``to_state``; ValueError names the key at fault."""
        at = at if at is not None else StatePath(_KIND)
        reader = StateReader(state, _KIND, (*_PARAMS, *_RUNNING), at, version=_VERSION)
        delta = reader.number("delta")
        params = {name: reader.count(name) for name in _PARAMS[1:]}
        try:
            detector = cls(delta, **params)
        except ValueError as err:
            reader.fail(None, f"holds invalid parameters: {err}")
        counts = reader.counts("bucket_counts")
        width = reader.count("width")
        _check_buckets(reader, counts, detector.max_buckets, width)
        totals = _split(counts, _decode_floats(reader, "bucket_totals", sum(counts)))
        upper = _decode_floats(reader, "bucket_variances", sum(counts[1:]))
        variances = [[0.0] * counts[0], *_split(counts[1:], upper)]
        detector._totals, detector._variances = totals, variances
        detector._width = width
        detector._total = reader.number("total")
        detector._variance = reader.number("variance")
        detector._tick = reader.count("tick")
        detector._n_detections = reader.count("n_detections")
        detector._drift = reader.flag("drift_detected")
        return detector


class _CutBound:
    """The cut test at one window width; river's operation order, kept for bit-parity."""

    def __init__(self, adwin: ADWIN, width: int, variance: float) -> None:
        self.mwl = adwin.min_window_length
        self.delta_prime = _delta_prime(width, adwin.delta)
        self.scale = variance / width

    def significant(self, n0: float, n1: float, gap: float) -> bool:
        if n0 < self.mwl or n1 < self.mwl:
            return False
        m = 1 / (n0 - self.mwl + 1) + 1 / (n1 - self.mwl + 1)
        spread = 2 * m * self.scale * self.delta_prime
        # A rounding-negative variance makes river's bound NaN, i.e. never significant.
        root = math.sqrt(spread) if spread >= 0.0 else math.nan
        return abs(gap) > root + 2 / 3 * self.delta_prime * m


def _delta_prime(width: float, delta: float) -> float:
    if width < 2:
        return math.nan
    return math.log(2 * math.log(width) / delta)


def _merge(t0: _F, t1: _F, v0: _F, v1: _F, n: float) -> tuple[_F, _F]:
    """Two buckets of ``n`` points as one; scalars or arrays of pairs alike."""
    d = t0 / n - t1 / n
    return t0 + t1, v0 + v1 + n * 0.5 * d * d


class _Sums(NamedTuple):
    """Window total and variance after each point of a batch (index 0 = before it)."""

    total: FloatArray
    variance: FloatArray


def _running_sums(x: FloatArray, width: int, total: float, variance: float) -> _Sums:
    # add.accumulate runs strictly left to right, matching the scalar loop bit for bit.
    totals = np.add.accumulate(np.concatenate(([total], x)))
    w = np.arange(width + 1, width + 1 + x.size, dtype=np.float64)
    prev = np.maximum(w - 1.0, 1.0)
    d = x - totals[:-1] / prev
    inc = np.where(w > 1.0, (w - 1.0) * d * d / w, 0.0)
    variances = np.add.accumulate(np.concatenate(([variance], inc)))
    return _Sums(totals, variances)


class _Level(NamedTuple):
    """One bucket level's totals: ``kept`` from before the batch, then all it appends.

    Its first ``merged`` entries are merged into the next level during the batch.
    """

    totals: FloatArray
    kept: int
    merged: int


def _level_streams(totals: list[list[float]], x: FloatArray, max_buckets: int) -> list[_Level]:
    """Every entry each level will hold during the batch, oldest first.

    A level merges its two oldest entries whenever it reaches
    ``max_buckets + 1``, so its merges consume its stream in pairs (0, 1),
    (2, 3), ... and the merged pairs are the next level's appended stream.
    Variances are left to ``_level_variances``: they only matter for the
    state kept after the batch, not for finding a cut.
    """
    levels: list[_Level] = []
    new = x
    while len(levels) < len(totals) or new.size:
        old = totals[len(levels)] if len(levels) < len(totals) else []
        stream = np.concatenate((np.asarray(old, dtype=np.float64), new)) if old else new
        merged = 2 * max(0, (len(old) + new.size - max_buckets + 1) // 2)
        levels.append(_Level(stream, len(old), merged))
        new = stream[0:merged:2] + stream[1:merged:2]
    return levels


def _level_variances(levels: list[_Level], variances: list[list[float]]) -> list[FloatArray]:
    """The variance stream of each level, built alongside its totals stream."""
    streams = []
    new = np.zeros(levels[0].totals.size - levels[0].kept)
    for i, level in enumerate(levels):
        old = variances[i] if i < len(variances) else []
        stream = np.concatenate((np.asarray(old, dtype=np.float64), new))
        streams.append(stream)
        t, v, m = level.totals, stream, level.merged
        new = _merge(t[0:m:2], t[1:m:2], v[0:m:2], v[1:m:2], float(1 << i))[1]
    return streams


def _level_bounds(
    levels: list[_Level], used: IntArray, max_buckets: int
) -> list[tuple[_Level, IntArray, IntArray]]:
    """Per level, level 0 first: the slice of its stream held after ``used`` batch points."""
    bounds = []
    appended = used
    for level in levels:
        filled = level.kept + appended
        merges = np.maximum(0, (filled - max_buckets + 1) // 2)
        bounds.append((level, 2 * merges, filled))
        appended = merges
    return bounds


def _first_cut_check(adwin: ADWIN, levels: list[_Level], checks: IntArray, sums: _Sums) -> int:
    """Index of the first clock check whose window has a significant cut, or -1.

    Cells are (cut point, check): a cut point per bucket slot in scan order,
    empty slots included, because adding or subtracting an empty slot's 0.0
    leaves the running sums bit-identical to river's scan.
    """
    totals, sizes, cut = _scan_cells(levels, checks, adwin.max_buckets)
    width = (adwin.width + checks).astype(np.float64)
    mwl = adwin.min_window_length
    n0 = _accumulate(np.add, sizes)
    n1 = width - n0
    u0 = _accumulate(np.add, totals)
    u1 = _accumulate(np.subtract, np.vstack((sums.total[checks], totals)))[1:]
    cut &= (n0 >= mwl) & (n1 >= mwl)
    delta_prime = np.array([_delta_prime(w, adwin.delta) for w in width.tolist()])
    scale = sums.variance[checks] / width
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.abs(u0 / n0 - u1 / n1)
        m = 1 / (n0 - mwl + 1) + 1 / (n1 - mwl + 1)
        bound = np.sqrt(2 * m * scale * delta_prime) + 2 / 3 * delta_prime * m
    found = np.flatnonzero((cut & (gap > bound)).any(axis=0))
    return int(found[0]) if found.size else -1


def _accumulate(op: np.ufunc, a: FloatArray) -> FloatArray:
    """``op.accumulate(a, axis=0)``: the same left-to-right order, several times faster in 2-d."""
    if a.shape[1] < 64:
        # Few checks: one native call beats a Python loop over cut points.
        return op.accumulate(a, axis=0)
    out = a.copy()
    for k in range(1, len(out)):
        op(out[k - 1], out[k], out=out[k])
    return out


def _scan_cells(
    levels: list[_Level], checks: IntArray, max_buckets: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Bucket totals, bucket sizes and cut-point mask; one column per check, oldest row first."""
    bounds = _level_bounds(levels, checks, max_buckets)[::-1]
    lo = np.stack([b[1] for b in bounds])[:, None, :]
    count = np.stack([b[2] - b[1] for b in bounds])[:, None, :]
    slot = np.arange(max_buckets)[None, :, None]
    held = slot < count
    streams = [b[0].totals for b in bounds]
    start = np.cumsum([0] + [t.size for t in streams[:-1]])[:, None, None]
    flat = np.concatenate(streams)
    totals = np.where(held, flat.take(start + lo + slot, mode="clip"), 0.0)
    size = np.ldexp(1.0, np.arange(len(bounds) - 1, -1, -1))[:, None, None]
    sizes = np.where(held, size, 0.0)
    cut = held.copy()
    # The newest entry would leave an empty newer sub-window.
    cut[-1] = slot[0] < count[-1] - 1
    shape = (len(bounds) * max_buckets, checks.size)
    return totals.reshape(shape), sizes.reshape(shape), cut.reshape(shape)


def _check_params(
    delta: float, clock: int, max_buckets: int, min_window_length: int, grace_period: int
) -> None:
    rules = (
        ("delta", 0 < delta < 1, "in (0, 1)"),
        ("clock", clock >= 1, ">= 1"),
        ("max_buckets", max_buckets >= 2, ">= 2"),
        ("min_window_length", min_window_length >= 1, ">= 1"),
        ("grace_period", grace_period >= 0, ">= 0"),
    )
    for name, ok, rule in rules:
        if not ok:
            msg = f"ADWIN parameter {name!r} must be {rule}"
            raise ValueError(msg)


def _check_buckets(reader: StateReader, counts: list[int], max_buckets: int, width: int) -> None:
    if not counts or any(count > max_buckets for count in counts):
        problem = f"must hold one count of at most max_buckets={max_buckets} per level"
        reader.fail("bucket_counts", problem)
    if sum(count << level for level, count in enumerate(counts)) != width:
        reader.fail("width", "does not match 'bucket_counts'")


def _encode_floats(levels: list[list[float]]) -> str:
    """Base64 of the levels' values, concatenated, as little-endian float64."""
    values = [value for level in levels for value in level]
    return base64.b64encode(np.array(values, dtype=_FLOAT).tobytes()).decode("ascii")


def _decode_floats(reader: StateReader, key: str, size: int) -> list[float]:
    """The ``size`` finite float64 values ``_encode_floats`` wrote under ``key``."""
    raw = canonical_base64(reader, key, "base64 of little-endian float64 values")
    if len(raw) != size * _FLOAT.itemsize:
        expected = f"{size} float64 values ({size * _FLOAT.itemsize} bytes)"
        reader.fail(key, f"must hold {expected} as 'bucket_counts' says, got {len(raw)} bytes")
    values = np.frombuffer(raw, dtype=_FLOAT)
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        reader.fail(key, f"must hold finite numbers, got {float(values[bad])!r} at position {bad}")
    floats: list[float] = values.astype(np.float64).tolist()
    return floats


def _split(counts: list[int], values: list[float]) -> list[list[float]]:
    """``values`` cut into consecutive runs of ``counts`` entries."""
    levels, start = [], 0
    for count in counts:
        levels.append(values[start : start + count])
        start += count
    return levels
