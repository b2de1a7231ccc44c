"""Many ADWIN or Page-Hinkley detectors updated together, one numpy pass for all.

A micro-batch gives each of hundreds of detectors a few hundred new values.
``update_many`` is fast on long arrays, but every call pays a fixed cost of
some tens of numpy calls, which dominates at that size. ``update_adwins`` and
``update_page_hinkleys`` take the detectors with their columns and do each
step once for all of them:

- ADWIN: the detectors go through in passes of a few hundred (sorted by
  column length, so little padding). A pass lays the columns out as rows of
  2-d arrays; the running window totals and variances come from
  ``accumulate`` along the rows, which adds strictly left to right like the
  scalar recurrences. Bucket levels are built level by level for all rows
  at once with flat index arithmetic (``adwin._level_streams``), and every
  clock check of every detector becomes one column of a (bucket slot x
  check) array, tested in the operation order of
  ``adwin._first_cut_check``. The new state is then written back into each
  detector's lists.
- Page-Hinkley: rounds of (time x detector) arrays; a round stops at the
  end of a detector's block of faded sums, where ``update`` rebases them.
  The running sums fold a row of detectors at a time. Running minima and
  maxima are only needed for detectors whose statistic could cross the
  threshold, which bounds per span of points rule out for nearly all.

Results and final states are bit-identical to ``detector.update_many(column)``
for every detector. Detections are rare and cut a batch short, so a
detector whose column holds one is left untouched by the pass and then fed
through its own ``update_many``; so are Page-Hinkley detectors with a short
block (``alpha`` well below 1) and a handful of long Page-Hinkley columns,
where rounds would not pay. Every column is checked before any detector
changes: one bad value raises ``ValueError`` and leaves all detectors as
they were.

Large intermediate arrays live in per-thread buffers kept between calls (a
few MiB): touching fresh memory costs more than the arithmetic done in it.

Examples
--------
Three streams in micro-batches of 200; the second one shifts at index 600.

>>> import numpy as np
>>> from driftstream.core.detectors import ADWIN, PageHinkley
>>> rng = np.random.default_rng(2)
>>> streams = [rng.normal(0.0, 1.0, 1000) for _ in range(3)]
>>> streams[1][600:] += 1.5
>>> adwins = [ADWIN() for _ in streams]
>>> for start in range(0, 1000, 200):
...     batch = [s[start : start + 200] for s in streams]
...     for i, hits in enumerate(update_adwins(adwins, batch)):
...         for k in hits.tolist():
...             print(f"stream {i}: drift at index {start + k}")
stream 1: drift at index 639
>>> update_page_hinkleys([PageHinkley(threshold=75.0) for _ in streams], streams)
[array([], dtype=int64), array([630]), array([], dtype=int64)]
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from itertools import chain, islice
from operator import attrgetter, getitem
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from driftstream.core.detectors._state import (
    INPUT_LIMIT,
    FloatArray,
    IntArray,
    _input_error,
)
from driftstream.core.detectors.adwin import ADWIN, _merge
from driftstream.core.detectors.page_hinkley import PageHinkley

__all__ = ["update_adwins", "update_page_hinkleys"]

BoolArray = npt.NDArray[np.bool_]

# Padded cells (detectors x values) per ADWIN pass; more rows are split over passes.
_ROW_CELLS = 1 << 15
# (clock check x bucket slot) cells evaluated at once.
_CHECK_CELLS = 1 << 15
# (detector x value) cells per Page-Hinkley round.
_ROUND_CELLS = 1 << 15
# Page-Hinkley blocks shorter than this would need a round every few values.
_MIN_BLOCK = 64
# Fewer Page-Hinkley columns than _FEW_LONG longer than _LONG go to update_many.
_LONG = 2048
_FEW_LONG = 16
# Page-Hinkley rounds take at least this many values per detector.
_MIN_STEPS = 8
# Page-Hinkley clears most detectors from the extremes of spans this long.
_SPAN = 32
# Folding row by row beats ``accumulate`` from this many detectors on.
_LOOP_WIDTH = 192
# Elements of the largest buffer kept from call to call (see _scratch).
_SCRATCH_LIMIT = 1 << 17
_EMPTY_LEVELS: list[list[float]] = [[]]
_PH_STATE = attrgetter(
    "_drift",
    "_n",
    "_shift",
    "_sum",
    "_base_inc",
    "_base_dec",
    "_acc_inc",
    "_acc_dec",
    "_min_inc",
    "_max_dec",
)
_PH_PARAMS = attrgetter("min_instances", "delta", "threshold", "mode", "_block")
# Page-Hinkley's running state after a reset, in _PH_STATE's order (less "_drift").
_PH_RESET = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, np.inf, -1.0])


def update_adwins(detectors: Sequence[ADWIN], columns: Sequence[npt.ArrayLike]) -> list[IntArray]:
    """``[d.update_many(c) for d, c in zip(detectors, columns)]``, bit for bit, in one pass.

    The detectors must be distinct objects; they are updated in place.
    """
    cols = _columns(detectors, columns)
    hits = _no_hits(len(cols))
    pending = sorted((i for i, c in enumerate(cols) if c.size), key=lambda i: cols[i].size)
    for rows in _row_chunks(pending, [cols[i].size for i in pending]):
        found = _AdwinPass([detectors[i] for i in rows], [cols[i] for i in rows]).run()
        for k in found:
            i = rows[k]
            hits[i] = detectors[i].update_many(cols[i])
    return hits


def update_page_hinkleys(
    detectors: Sequence[PageHinkley], columns: Sequence[npt.ArrayLike]
) -> list[IntArray]:
    """``[d.update_many(c) for d, c in zip(detectors, columns)]``, bit for bit, in one pass.

    The detectors must be distinct objects; they are updated in place.
    """
    cols = _columns(detectors, columns)
    hits = _no_hits(len(cols))
    rows: list[int] = []
    alone: list[int] = []
    for i, c in enumerate(cols):
        if c.size:
            (rows if detectors[i]._block >= _MIN_BLOCK else alone).append(i)
    long = [i for i in rows if cols[i].size > _LONG]
    if len(long) < _FEW_LONG:
        # Rounds over a few detectors are no faster than their own update_many.
        alone += long
        rows = [i for i in rows if cols[i].size <= _LONG]
    if rows:
        found = _PageHinkleyPass([detectors[i] for i in rows], [cols[i] for i in rows]).run()
        alone += [rows[k] for k in found]
    for i in sorted(alone):
        hits[i] = detectors[i].update_many(cols[i])
    return hits


# -- shared ------------------------------------------------------------------


def _columns(detectors: Sequence[Any], columns: Sequence[npt.ArrayLike]) -> list[FloatArray]:
    """The columns as 1-d float64 arrays, all checked like ``finite_array`` before any update."""
    if len(detectors) != len(columns):
        msg = f"got {len(detectors)} detectors but {len(columns)} columns"
        raise ValueError(msg)
    if len({id(d) for d in detectors}) != len(detectors):
        msg = "a detector appears more than once"
        raise ValueError(msg)
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    for i, c in enumerate(cols):
        if c.ndim != 1:
            msg = f"detector input must be 1-d, got shape {c.shape} in column {i}"
            raise ValueError(msg)
    # A few columns are checked one by one, many in one piece.
    parts = cols if len(cols) < _FEW_LONG else [np.concatenate(cols)]
    for part in parts:
        # NaN fails both comparisons.
        if part.size and not (part.min() >= -INPUT_LIMIT and part.max() <= INPUT_LIMIT):
            _refuse(cols)
    return cols


def _refuse(cols: list[FloatArray]) -> NoReturn:
    """Raise the ``finite_array`` error for the first bad value, naming its column."""
    for i, c in enumerate(cols):
        accepted = (c <= INPUT_LIMIT) & (c >= -INPUT_LIMIT)
        if not accepted.all():
            at = int(np.flatnonzero(~accepted)[0])
            raise ValueError(_input_error(float(c[at]), f" at position {at} of column {i}"))
    msg = "detector input out of range"
    raise ValueError(msg)


def _no_hits(count: int) -> list[IntArray]:
    """``count`` empty int64 arrays, what ``update_many`` returns without detections."""
    return list(np.empty((count, 0), dtype=np.int64))


def _row_chunks(rows: list[int], sizes: list[int]) -> list[list[int]]:
    """Consecutive runs of ``rows`` (sorted by size) whose padded arrays stay small."""
    chunks: list[list[int]] = []
    current: list[int] = []
    for row, size in zip(rows, sizes, strict=True):
        if current and (len(current) + 1) * size > _ROW_CELLS:
            chunks.append(current)
            current = []
        current.append(row)
    if current:
        chunks.append(current)
    return chunks


def _ragged(counts: IntArray) -> tuple[IntArray, IntArray]:
    """Row and position in the row of every element, for rows of ``counts`` elements."""
    rows = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return rows, np.arange(rows.size) - starts[rows]


def _starts(counts: IntArray) -> IntArray:
    """Where each run begins when runs of ``counts`` are laid end to end."""
    return np.cumsum(counts) - counts


# -- ADWIN ---------------------------------------------------------------------


class _AdwinPass:
    """ADWIN detectors with non-empty columns, one row each; ``run`` does the update.

    The bucket structure is kept as level streams (see ``adwin._level_streams``):
    for every level, what it held before the batch, then what it appends. A
    level that appends in the batch gets a 2-d block of ``self.totals``, one
    row per detector: the old entries end at column ``self.right`` and the
    appended ones start there. Levels that append nothing stay where the old
    state was flattened, at the front of ``self.totals``. ``start[L, r]`` is
    where row ``r``'s stream of level ``L`` begins in ``self.totals``,
    ``held[L, r]`` how many entries it had before the batch.
    """

    def __init__(self, detectors: list[ADWIN], columns: list[FloatArray]) -> None:
        self.detectors = detectors
        # A detector that reported drift starts the batch from a reset.
        self.fresh = [d._drift for d in detectors]
        if any(self.fresh):
            pairs = [
                (_EMPTY_LEVELS, _EMPTY_LEVELS) if f else (d._totals, d._variances)
                for d, f in zip(detectors, self.fresh, strict=True)
            ]
            self.old_totals = [t for t, _ in pairs]
            self.old_variances = [v for _, v in pairs]
        else:
            self.old_totals = [d._totals for d in detectors]
            self.old_variances = [d._variances for d in detectors]
        kept = ~np.array(self.fresh, dtype=np.bool_)
        self.width = np.where(kept, [d._width for d in detectors], 0).astype(np.int64)
        self.tick = np.where(kept, [d._tick for d in detectors], 0).astype(np.int64)
        total = np.where(kept, [d._total for d in detectors], 0.0)
        variance = np.where(kept, [d._variance for d in detectors], 0.0)
        self.max_buckets = np.array([d.max_buckets for d in detectors], dtype=np.int64)
        self.clock = np.array([d.clock for d in detectors], dtype=np.int64)
        self.grace = np.array([d.grace_period for d in detectors], dtype=np.int64)
        self.mwl = np.array([d.min_window_length for d in detectors], dtype=np.int64)
        self.delta = np.array([d.delta for d in detectors], dtype=np.float64)
        self.n = np.array([c.size for c in columns], dtype=np.int64)
        self.values = np.concatenate(columns)
        self.right = int(self.max_buckets.max())
        self._flatten_levels()
        self._plan_levels()
        self._build_levels()
        self._running_sums(total, variance)

    def _flatten_levels(self) -> None:
        """Every old bucket total in one array; ``held``/``start`` locate each row's levels."""
        n_levels = np.fromiter(map(len, self.old_totals), dtype=np.int64, count=self.n.size)
        counts = np.fromiter(
            map(len, chain.from_iterable(self.old_totals)),
            dtype=np.int64,
            count=int(n_levels.sum()),
        )
        self.old_flat = np.fromiter(
            chain.from_iterable(chain.from_iterable(self.old_totals)),
            dtype=np.float64,
            count=int(counts.sum()),
        )
        rows, level = _ragged(n_levels)
        self.old_depth = int(n_levels.max())
        self.held = np.zeros((self.old_depth, self.n.size), dtype=np.int64)
        self.held[level, rows] = counts
        self.start = np.zeros((self.old_depth, self.n.size), dtype=np.int64)
        self.start[level, rows] = _starts(counts)

    def _plan_levels(self) -> None:
        """How many entries each level appends and merges away over the whole batch.

        Counts only: a level holding ``size`` entries in all merges
        ``(size - max_buckets + 1) // 2`` pairs, which the next level appends.
        """
        self.appended: list[IntArray] = []
        self.merged: list[IntArray] = []
        appended = self.n
        level = 0
        while appended.any():
            if level == self.held.shape[0]:
                zero = np.zeros((1, self.n.size), dtype=np.int64)
                self.held = np.concatenate((self.held, zero))
                self.start = np.concatenate((self.start, zero))
            merged = np.maximum(0, (self.held[level] + appended - self.max_buckets + 1) // 2)
            self.appended.append(appended)
            self.merged.append(merged)
            appended = merged
            level += 1
        self.widths = [self.right + int(a.max()) for a in self.appended]
        offsets = np.cumsum([self.old_flat.size] + [self.n.size * w for w in self.widths])
        self.offsets = offsets.tolist()
        self.totals = _zeros("adwin.totals", self.offsets[-1])
        self.totals[: self.old_flat.size] = self.old_flat

    def _block(self, flat: FloatArray, level: int) -> FloatArray:
        """Level ``level``'s 2-d block (one row per detector) inside ``flat``."""
        lo, hi = self.offsets[level], self.offsets[level + 1]
        return flat[lo:hi].reshape(self.n.size, self.widths[level])

    def _build_levels(self) -> None:
        """Fill the blocks of the levels that append, lowest first.

        Keeps, per level, the pair positions and the pairs' totals, so that
        ``_variances`` can merge the variances of the same pairs.
        """
        changing = len(self.merged)
        held = self.held[:changing]
        widths = np.array(self.widths)[:, None]
        local = np.arange(self.n.size) * widths + (self.right - held)
        start = np.array(self.offsets[:changing])[:, None] + local
        # The old entries of every changing level, right-aligned.
        cells, within = _ragged(held.ravel())
        old_at = start.ravel()[cells] + within
        self.totals[old_at] = self.old_flat[self.start[:changing].ravel()[cells] + within]
        self.start[:changing] = start
        block = self._block(self.totals, 0)
        longest = self.widths[0] - self.right
        if self.values.size == self.n.size * longest:
            block[:, self.right :] = self.values.reshape(self.n.size, longest)
        else:
            rows, steps = _ragged(self.n)
            block[rows, self.right + steps] = self.values
        self.pairs: list[tuple[IntArray, FloatArray, FloatArray]] = []
        new = block[:, :0]
        for level, merged in enumerate(self.merged):
            if level:
                block = self._block(self.totals, level)
                block[:, self.right : self.right + new.shape[1]] = new
            pairs = local[level][:, None] + 2 * np.arange(int(merged.max()))
            flat = block.reshape(-1)
            t0 = flat.take(pairs, mode="clip")
            t1 = flat[1:].take(pairs, mode="clip")
            self.pairs.append((pairs, t0, t1))
            new = t0 + t1

    def _running_sums(self, total: FloatArray, variance: FloatArray) -> None:
        """``adwin._running_sums`` for every row: column ``k`` is the state after ``k`` values."""
        x = self._block(self.totals, 0)[:, self.right :]
        shape = (x.shape[0], x.shape[1] + 1)
        totals = _scratch("adwin.sums_total", shape[0] * shape[1], np.float64).reshape(shape)
        totals[:, 0] = total
        totals[:, 1:] = x
        np.add.accumulate(totals, axis=1, out=totals)
        before = self.width[:, None] + np.arange(x.shape[1], dtype=np.float64)
        d = _scratch("adwin.d", x.size, np.float64).reshape(x.shape)
        np.divide(totals[:, :-1], np.maximum(before, 1.0), out=d)
        np.subtract(x, d, out=d)
        # (w - 1) * d * d / w, in that order.
        spread = _scratch("adwin.spread", x.size, np.float64).reshape(x.shape)
        np.multiply(before, d, out=spread)
        spread *= d
        variances = _scratch("adwin.sums_variance", totals.size, np.float64).reshape(shape)
        variances[:, 0] = variance
        np.divide(spread, before + 1.0, out=variances[:, 1:])
        # A first point into an empty window adds nothing.
        variances[self.width == 0, 1] = 0.0
        np.add.accumulate(variances, axis=1, out=variances)
        self.sums_total, self.sums_variance = totals, variances

    def run(self) -> list[int]:
        """Write back every row without a detection; return the rows that have one."""
        found = self._detections()
        self._write_back(found)
        return np.flatnonzero(found).tolist()

    def _detections(self) -> BoolArray:
        """Rows with a clock check in the batch that finds a significant cut."""
        first = (-self.tick) % self.clock
        first = np.where(first == 0, self.clock, first)
        count = np.where(first <= self.n, (self.n - first) // self.clock + 1, 0)
        rows, k = _ragged(count)
        checks = first[rows] + self.clock[rows] * k
        keep = self.width[rows] + checks > self.grace[rows]
        rows, checks = rows[keep], checks[keep]
        found = np.zeros(self.n.size, dtype=np.bool_)
        step = max(1, _CHECK_CELLS // (self.held.shape[0] * self.right))
        for lo in range(0, rows.size, step):
            part = rows[lo : lo + step]
            found[part[self._significant(part, checks[lo : lo + step])]] = True
        return found

    def _significant(self, rows: IntArray, checks: IntArray) -> BoolArray:
        """Per clock check: whether any cut is significant (``adwin._first_cut_check``).

        Arrays are (cut point, check), so the running sums down the cut
        points fold all checks at once.
        """
        totals, sizes, cut = self._scan_cells(rows, checks)
        width = (self.width[rows] + checks).astype(np.float64)
        mwl = self.mwl[rows]
        n0 = sizes
        _fold(np.add, n0)
        n1 = width - n0
        u0 = totals.copy()
        _fold(np.add, u0)
        u1 = np.concatenate((self.sums_total[rows, checks][None], totals))
        _fold(np.subtract, u1)
        u1 = u1[1:]
        cut &= (n0 >= mwl) & (n1 >= mwl)
        delta_prime = _delta_primes(width, self.delta[rows])
        scale = self.sums_variance[rows, checks] / width
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.abs(u0 / n0 - u1 / n1)
            m = 1 / (n0 - mwl + 1) + 1 / (n1 - mwl + 1)
            bound = np.sqrt(2 * m * scale * delta_prime) + 2 / 3 * delta_prime * m
        result: BoolArray = (cut & (gap > bound)).any(axis=0)
        return result

    def _scan_cells(
        self, rows: IntArray, checks: IntArray
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Bucket totals, sizes and cut mask: one row per bucket slot, oldest first.

        Like ``adwin._scan_cells``, one column per check: every level has
        ``self.right`` slots, empty ones included, since adding an empty
        slot's 0.0 leaves the running sums bit-identical to river's scan.
        """
        depth = self.held.shape[0]
        changing = len(self.appended)
        count = np.empty((rows.size, depth), dtype=np.int64)
        begin = np.empty((rows.size, depth), dtype=np.int64)
        max_buckets = self.max_buckets[rows]
        appended = checks
        for level in range(changing):
            filled = self.held[level, rows] + appended
            merged = np.maximum(0, (filled - max_buckets + 1) // 2)
            count[:, level] = filled - 2 * merged
            begin[:, level] = self.start[level, rows] + 2 * merged
            appended = merged
        count[:, changing:] = self.held[changing:, rows].T
        begin[:, changing:] = self.start[changing:, rows].T
        slot = np.arange(self.right)[:, None]
        # Oldest level first; (level, slot, check).
        count, begin = count.T[::-1, None, :], begin.T[::-1, None, :]
        held = slot < count
        totals = np.where(held, self.totals.take(begin + slot, mode="clip"), 0.0)
        size = np.ldexp(1.0, np.arange(depth - 1, -1, -1))[:, None, None]
        sizes = np.where(held, size, 0.0)
        cut = held.copy()
        # The newest entry would leave an empty newer sub-window.
        cut[-1] = slot < count[-1] - 1
        shape = (depth * self.right, rows.size)
        return totals.reshape(shape), sizes.reshape(shape), cut.reshape(shape)

    def _variances(self, active: BoolArray, levels: IntArray) -> FloatArray:
        """Variance streams laid out like ``self.totals``, for the levels that append.

        ``levels[r]`` is how many levels of row ``r`` append in the batch; only
        their old variances are read (rows in order, levels within a row).
        """
        held = np.where(active, self.held[: active.shape[0]], 0)
        flat = np.fromiter(
            chain.from_iterable(
                chain.from_iterable(map(getitem, self.old_variances, map(slice, levels.tolist())))
            ),
            dtype=np.float64,
            count=int(held.sum()),
        )
        origin = _starts(held.T.ravel()).reshape(held.shape[1], held.shape[0]).T
        cells, within = _ragged(held.ravel())
        variances = _zeros("adwin.variances", self.totals.size)
        variances[self.start[: held.shape[0]].ravel()[cells] + within] = flat[
            origin.ravel()[cells] + within
        ]
        new = variances[:0]
        for level, (pairs, t0, t1) in enumerate(self.pairs):
            block = self._block(variances, level)
            if level:
                block[:, self.right : self.right + new.shape[1]] = new
            v = block.reshape(-1)
            v0, v1 = v.take(pairs, mode="clip"), v[1:].take(pairs, mode="clip")
            new = _merge(t0, t1, v0, v1, float(1 << level))[1]
        return variances

    def _write_back(self, found: BoolArray) -> None:
        """The state after the whole column, for every row not in ``found``."""
        appended = np.stack(self.appended)
        merged = np.stack(self.merged)
        changing = appended.shape[0]
        active = appended > 0
        levels = active.sum(axis=0)
        variances = self._variances(active, levels)
        size = self.held[:changing] + appended
        keep = (active & ~found).T
        begin = (self.start[:changing] + 2 * merged).T[keep]
        count = (size - 2 * merged).T[keep]
        rows, within = _ragged(count)
        at = begin[rows] + within
        ends = np.cumsum(count)
        starts, ends = (ends - count).tolist(), ends.tolist()
        done = ~found
        picked = np.flatnonzero(done)
        counts = levels[done].tolist()
        detectors = [self.detectors[r] for r in picked.tolist()]
        total = self.sums_total[picked, self.n[done]].tolist()
        variance = self.sums_variance[picked, self.n[done]].tolist()
        width = (self.width + self.n)[done].tolist()
        tick = (self.tick + self.n)[done].tolist()
        for d, c, w, t, u, v in zip(detectors, counts, width, tick, total, variance, strict=True):
            if d._drift:
                d._totals = [[] for _ in range(c)]
                d._variances = [[] for _ in range(c)]
                d._drift, d._n_detections = False, 0
            elif len(d._totals) < c:
                d._totals.extend([] for _ in range(c - len(d._totals)))
                d._variances.extend([] for _ in range(c - len(d._variances)))
            d._width, d._tick, d._total, d._variance = w, t, u, v
        # The levels that changed are rewritten in place, as ``update`` does:
        # the others keep their lists, and no new list outlives the call.
        for array, name in ((self.totals, "_totals"), (variances, "_variances")):
            lists = map(array[at].tolist().__getitem__, map(slice, starts, ends))
            for levels, c in zip(map(attrgetter(name), detectors), counts, strict=True):
                levels[:c] = islice(lists, c)


def _delta_primes(width: FloatArray, delta: FloatArray) -> FloatArray:
    """``adwin._delta_prime`` per check, with ``math.log`` as the scalar code has it.

    numpy's vectorised ``log`` may differ from libm's in the last bit.
    """
    logs = np.fromiter(map(math.log, np.maximum(width, 2.0).tolist()), np.float64, width.size)
    inner = 2 * logs / delta
    out = np.fromiter(map(math.log, inner.tolist()), np.float64, width.size)
    out[width < 2] = np.nan
    return out


# -- Page-Hinkley ----------------------------------------------------------------


class _PageHinkleyPass:
    """Page-Hinkley detectors with non-empty columns: state as arrays, one entry per detector.

    Works in rounds: each round takes, for every detector still running, its
    next values up to the end of its block (where ``update`` rebases the
    faded sums) or the round's length. Arrays are time by detector, so the
    running sums fold whole rows of detectors at once.
    """

    def __init__(self, detectors: list[PageHinkley], columns: list[FloatArray]) -> None:
        self.detectors = detectors
        rows = np.array(list(map(_PH_STATE, detectors)), dtype=np.float64).reshape(-1, 10)
        # A detector that reported drift starts the batch from a reset.
        state = np.where(rows[:, :1] != 0.0, _PH_RESET, rows[:, 1:])
        self.seen = state[:, 0].astype(np.int64)
        self.shift, self.sum = state[:, 1].copy(), state[:, 2].copy()
        self.base_inc, self.base_dec = state[:, 3].copy(), state[:, 4].copy()
        self.acc_inc, self.acc_dec = state[:, 5].copy(), state[:, 6].copy()
        self.min_inc, self.max_dec = state[:, 7].copy(), state[:, 8].copy()
        params = list(map(_PH_PARAMS, detectors))
        self.min_instances = np.array([p[0] for p in params], dtype=np.int64)
        self.delta = np.array([p[1] for p in params], dtype=np.float64)
        self.threshold = np.array([p[2] for p in params], dtype=np.float64)
        self.up = np.array([p[3] != "down" for p in params], dtype=np.bool_)
        self.down = np.array([p[3] != "up" for p in params], dtype=np.bool_)
        self.block = np.array([p[4] for p in params], dtype=np.int64)
        self.tables = _power_tables(detectors)
        self.size = np.array([c.size for c in columns], dtype=np.int64)
        self.values = np.concatenate(columns)
        self.origin = _starts(self.size)
        self.pos = np.zeros(len(detectors), dtype=np.int64)
        self.found = np.zeros(len(detectors), dtype=np.bool_)

    def _work(self, name: str, rows: int, cols: int) -> Any:
        """Scratch buffer ``name`` as a (rows, cols) array."""
        dtype = np.int64 if name == "index" else np.float64
        return _scratch(f"page_hinkley.{name}", rows * cols, dtype).reshape(rows, cols)

    def run(self) -> list[int]:
        """Write back every detector without a detection; return those with one."""
        live = np.arange(len(self.detectors))
        while live.size:
            live = self._round(live)
        self._write_back()
        return np.flatnonzero(self.found).tolist()

    def _round(self, a: IntArray) -> IntArray:
        """Advance detectors ``a`` by one round; return those with values left.

        The arithmetic is ``PageHinkley._advance``'s, operation for operation.
        """
        seen, block = self.seen[a], self.block[a]
        phase = seen % block
        steps = max(_MIN_STEPS, _ROUND_CELLS // a.size)
        seg = np.minimum(np.minimum(self.size[a] - self.pos[a], block - phase), steps)
        width = int(seg.max())
        i = np.arange(width)[:, None]
        index = self._work("index", width, a.size)
        np.add(self.origin[a] + self.pos[a], i, out=index)
        x = self._work("x", width, a.size)
        np.take(self.values, index, out=x, mode="clip")
        sh = np.where(seen == 0, x[0], self.shift[a])
        sums = self._work("sums", width + 1, a.size)
        sums[0] = self.sum[a]
        np.subtract(x, sh, out=sums[1:])
        _fold(np.add, sums)
        # dev = x - (shift + sum / n)
        dev = self._work("dev", width, a.size)
        np.add((seen + 1).astype(np.float64), i, out=dev)
        np.divide(sums[1:], dev, out=dev)
        dev += sh
        np.subtract(x, dev, out=dev)
        # Both faded sums side by side, so one fold runs them together; rows
        # past ``width`` pad the round to whole spans for ``_Faded.bounds``.
        span = min(_SPAN, width)
        padded = -(-width // span) * span
        acc = self._work("acc", padded + 1, 2 * a.size).reshape(padded + 1, 2, a.size)
        acc[0, 0], acc[0, 1] = self.acc_inc[a], self.acc_dec[a]
        acc[width + 1 :] = 0.0
        delta = self.delta[a]
        np.subtract(dev, delta, out=acc[1 : width + 1, 0])
        np.add(dev, delta, out=acc[1 : width + 1, 1])
        faded = _Faded(self, a, phase, padded)
        faded.scale(acc[1 : width + 1])
        _fold(np.add, acc[: width + 1].reshape(width + 1, 2 * a.size))
        cols = np.arange(a.size)
        ends = acc[seg, :, cols].T
        low, high, up, down = faded.bounds(acc[1:], seg, span, self.min_inc[a], self.max_dec[a])
        threshold = self.threshold[a]
        maybe = np.flatnonzero(
            (self.up[a] & (up > threshold)) | (self.down[a] & (down > threshold))
        )
        hit = np.zeros(a.size, dtype=np.bool_)
        if maybe.size:
            s = faded.sums(acc[1:, :, maybe], maybe)
            hit[maybe] = self._hits(a[maybe], s[:, 0], s[:, 1], seg[maybe])
        rebase = phase + seg == block
        if rebase.any():
            at = np.flatnonzero(rebase)
            last = faded.sums(ends[None, :, at], at, seg[at] - 1)[0]
            self.base_inc[a[at]], self.base_dec[a[at]] = last
            ends[:, at] = 0.0
        self.seen[a] = seen + seg
        self.shift[a] = sh
        self.sum[a] = sums[seg, cols]
        self.acc_inc[a], self.acc_dec[a] = ends
        self.min_inc[a], self.max_dec[a] = low, high
        self.found[a[hit]] = True
        self.pos[a] += seg
        return a[(self.pos[a] < self.size[a]) & ~hit]

    def _hits(self, a: IntArray, s_inc: FloatArray, s_dec: FloatArray, seg: IntArray) -> BoolArray:
        """Whether each of detectors ``a`` detects within its ``seg`` values of the round."""
        low = _scan(np.minimum, self.min_inc[a], s_inc)[1:]
        high = _scan(np.maximum, self.max_dec[a], s_dec)[1:]
        threshold = self.threshold[a]
        hit = (self.up[a] & (s_inc - low > threshold)) | (self.down[a] & (high - s_dec > threshold))
        i = np.arange(len(hit))[:, None]
        # The test applies from the point that makes ``min_instances`` points.
        hit &= (i < seg) & (self.seen[a] + 1 + i >= self.min_instances[a])
        return np.asarray(hit.any(axis=0))

    def _write_back(self) -> None:
        state = zip(
            self.seen.tolist(),
            self.shift.tolist(),
            self.sum.tolist(),
            self.base_inc.tolist(),
            self.base_dec.tolist(),
            self.acc_inc.tolist(),
            self.acc_dec.tolist(),
            self.min_inc.tolist(),
            self.max_dec.tolist(),
            self.found.tolist(),
            strict=True,
        )
        for d, (n, shift, total, b_inc, b_dec, a_inc, a_dec, low, high, found) in zip(
            self.detectors, state, strict=True
        ):
            if not found:
                d._n, d._shift, d._sum = n, shift, total
                d._base_inc, d._base_dec, d._acc_inc, d._acc_dec = b_inc, b_dec, a_inc, a_dec
                d._min_inc, d._max_dec, d._drift = low, high, False


class _Faded:
    """The powers of ``alpha`` one round of ``_PageHinkleyPass`` applies, if any.

    With ``alpha == 1`` every power is exactly 1.0 and every product with one
    exact, so they are left out.
    """

    def __init__(self, bank: _PageHinkleyPass, a: IntArray, phase: IntArray, width: int) -> None:
        self.base = np.stack((bank.base_inc[a], bank.base_dec[a]))
        self.power: FloatArray | None = None
        self.inverse: FloatArray | None = None
        if bank.tables is not None:
            power_table, inverse_table, which = bank.tables
            j = np.minimum(phase + 1 + np.arange(width)[:, None], power_table.shape[1] - 1)
            self.power = power_table[which[a], j][:, None, :]
            self.inverse = inverse_table[which[a], j][:, None, :]

    def scale(self, terms: FloatArray) -> None:
        """Multiply (time, 2, detector) ``terms`` by the inverse powers, in place."""
        if self.inverse is not None:
            terms *= self.inverse[: len(terms)]

    def sums(self, acc: FloatArray, cols: IntArray, rows: IntArray | None = None) -> FloatArray:
        """``s = power * (base + acc)`` for detectors ``cols`` of the round (at ``rows``)."""
        s: FloatArray = self.base[:, cols] + acc
        if self.power is not None:
            power = self.power[:, :, cols] if rows is None else self.power[rows, :, cols].T[None]
            s *= power
        return s

    def bounds(
        self, acc: FloatArray, seg: IntArray, span: int, min_inc: FloatArray, max_dec: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """New ``min_inc`` and ``max_dec``, and upper bounds of the two statistics.

        ``acc`` holds the folded sums, (time, 2, detector), ``seg`` points per
        detector, then leftovers, which this overwrites. Over each span of
        ``span`` points, ``s_inc - min_inc`` is at most the span's largest
        ``s_inc`` less the smallest ``s_inc`` up to the span's end, and
        likewise for ``max_dec - s_dec``; rounding is monotonic, so the
        computed statistics obey the same bounds.
        """
        # s = base + acc rounds monotonically in acc, so the extremes of s are
        # base plus the extremes of acc, when there are no powers.
        s = acc if self.power is None else self.sums(acc, np.arange(acc.shape[2]))
        cols = np.arange(s.shape[2])
        # A detector's leftovers repeat its last point, which changes no extreme.
        after = (np.arange(len(s))[:, None] >= seg)[:, None, :]
        np.copyto(s, s[seg - 1, :, cols].T[None], where=after)
        spans = s.reshape(len(s) // span, span, *s.shape[1:])
        lo, hi = spans.min(axis=1), spans.max(axis=1)
        if self.power is None:
            lo += self.base
            hi += self.base
        low = np.minimum.accumulate(np.concatenate((min_inc[None], lo[:, 0])), axis=0)[1:]
        high = np.maximum.accumulate(np.concatenate((max_dec[None], hi[:, 1])), axis=0)[1:]
        up = (hi[:, 0] - low).max(axis=0)
        down = (high - lo[:, 1]).max(axis=0)
        return low[-1], high[-1], up, down


_SCRATCH = threading.local()


def _scratch(name: str, size: int, dtype: type[np.generic], limit: int = _SCRATCH_LIMIT) -> Any:
    """A 1-d buffer of ``size`` elements, kept for the next call in this thread.

    Memory the process has not touched yet costs a page fault per 4 KiB on
    first use, more than the arithmetic done in it; reusing the buffers from
    call to call avoids that. Their contents are left from earlier use. Larger
    requests than ``limit`` get fresh memory: ``_SCRATCH_LIMIT`` elements keeps
    a few MiB per thread for these banks; ``cusum_bank`` asks for more (about
    16 MiB, see its ``_SCRATCH_LIMIT``).
    """
    if size > limit:
        return np.empty(size, dtype=dtype)
    buffers: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.size < size:
        buffer = buffers[name] = np.empty(size, dtype=dtype)
    return buffer[:size]


def _zeros(name: str, size: int) -> FloatArray:
    """``_scratch`` filled with zeros."""
    buffer: FloatArray = _scratch(name, size, np.float64)
    buffer.fill(0.0)
    return buffer


def _scan(op: np.ufunc, first: FloatArray, values: FloatArray) -> FloatArray:
    """``op`` folded down each column from ``first``: row ``k`` is after ``k`` values."""
    out = np.empty((values.shape[0] + 1, values.shape[1]))
    out[0] = first
    out[1:] = values
    _fold(op, out)
    return out


def _fold(op: np.ufunc, a: FloatArray) -> None:
    """``op.accumulate(a, axis=0, out=a)``: the same order, left to right down each column.

    ``accumulate`` runs one column at a time, slowly when it must stride; a
    loop over rows works on all columns at once, which pays when there are
    many.
    """
    if a.shape[1] >= _LOOP_WIDTH:
        for k in range(1, len(a)):
            op(a[k - 1], a[k], out=a[k])
    elif a.shape[1] <= 16:
        op.accumulate(a, axis=0, out=a)
    else:
        t = np.ascontiguousarray(a.T)
        op.accumulate(t, axis=1, out=t)
        a[...] = t.T


def _power_tables(
    detectors: list[PageHinkley],
) -> tuple[FloatArray, FloatArray, IntArray] | None:
    """Each distinct ``alpha``'s powers and inverse powers as rows, and each detector's row.

    None when every ``alpha`` is 1: then all powers are exactly 1.0 and the
    products they enter are exact, so they can be left out.
    """
    if all(d.alpha == 1.0 for d in detectors):
        return None
    index: dict[float, int] = {}
    power: list[FloatArray] = []
    inverse: list[FloatArray] = []
    which = np.empty(len(detectors), dtype=np.int64)
    for r, d in enumerate(detectors):
        if d.alpha not in index:
            index[d.alpha] = len(power)
            power.append(d._power)
            inverse.append(d._inverse)
        which[r] = index[d.alpha]
    width = max(p.size for p in power)
    power_table = np.ones((len(power), width))
    inverse_table = np.ones((len(power), width))
    for k, (p, q) in enumerate(zip(power, inverse, strict=True)):
        power_table[k, : p.size] = p
        inverse_table[k, : q.size] = q
    return power_table, inverse_table, which
