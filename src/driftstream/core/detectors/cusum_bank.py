"""Many CUSUM detectors updated together: ``update_cusums``.

A micro-batch gives each of hundreds of detectors (every numeric column of
every monitor) a few hundred new values; ``update_cusums`` does each step
once for all of them, in rounds of (point x detector) arrays (see
``_Pass``). Its arithmetic is ``CUSUM.update``'s: the float sums in stream
order, then the same elementwise operations, and the charts in exact
integers, so the results and final states equal those of each detector's
own ``update_many``, bit for bit. Every column is checked before any
detector changes: one bad value raises ``ValueError`` and leaves all
detectors as they were.

Examples
--------
Three streams in micro-batches of 200; the second one shifts at index 600.

>>> import numpy as np
>>> from driftstream.core.detectors import CUSUM
>>> rng = np.random.default_rng(2)
>>> streams = [rng.normal(0.0, 1.0, 1000) for _ in range(3)]
>>> streams[1][600:] += 1.0
>>> cusums = [CUSUM() for _ in streams]
>>> for start in range(0, 1000, 200):
...     batch = [s[start : start + 200] for s in streams]
...     for i, hits in enumerate(update_cusums(cusums, batch)):
...         for k in hits.tolist():
...             print(f"stream {i}: drift at index {start + k}")
stream 1: drift at index 631
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.detectors._state import INPUT_LIMIT, FloatArray, IntArray, step_after_reset
from driftstream.core.detectors.bank import _no_hits, _refuse, _scratch
from driftstream.core.detectors.cusum import (
    _CHART_CAP,
    _STEP_LIMIT,
    CUSUM,
    Scratch,
    _charts_through,
    _fresh,
    _scores,
)

__all__ = ["update_cusums"]

# Rounds: at most this many points per detector and round, and about this
# many in all (a round's arrays then stay in the last-level cache).
_MAX_ROUND = 4096
_MIN_ROUND = 64
_ROUND_CELLS = 1 << 17
# Steps after a reset: work past a detection is thrown away.
_FIRST_STEP = 256
_MIN_STEP = 16
# Rounds of at most this many points in all run ``update`` point by point.
_LOOP_CELLS = 16
# Rounds of at most this many points in all are solved as one span.
_ONE_SPAN = 2048
# Points per span: a span's sums of at most 2**24 stay within int32.
_SPAN = 32
# From this many detectors, the running sums fold row by row.
_WIDE = 384
# A chart whose reference value adds at most 1/_BOUND_SHARE of its limit over a
# span is bounded by the span's extremes instead of folded.
_BOUND_SHARE = 2
# Up to this many spans, with this many charts or more, running maxima over
# spans are taken span by span.
_SCAN_LOOP = 32
_SCAN_LANES = 256
# Up to this many distinct last points in a round, charts are read by slicing.
_FEW_ENDS = 8
# Windows: at most one detector in this many away from the others' position.
_FEW_OFF = 8
# Elements of the largest buffer kept from call to call (bank._scratch): a
# round's charts are 4 x 2**17 int32 and a batch of up to 2**19 values is
# laid end to end, so a thread keeps about 16 MiB.
_SCRATCH_LIMIT = 1 << 19


def update_cusums(detectors: Sequence[CUSUM], columns: Sequence[npt.ArrayLike]) -> list[IntArray]:
    """``[d.update_many(c) for d, c in zip(detectors, columns)]``, bit for bit, in one pass.

    The detectors must be distinct objects; they are updated in place.
    Detectors whose shifts round to the same grid go through together;
    thresholds and ``min_instances`` may differ.
    """
    cols, values = _checked(detectors, columns)
    if not cols:
        return []
    grids = list(map(attrgetter("_grid"), detectors))
    if grids.count(grids[0]) == len(grids):
        return _Pass(detectors, cols, _buffer, values).run()
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, grid in enumerate(grids):
        groups.setdefault(grid.refs, []).append(i)
    hits = _no_hits(len(cols))
    for rows in groups.values():
        found = _Pass([detectors[i] for i in rows], [cols[i] for i in rows], _buffer).run()
        for i, h in zip(rows, found, strict=True):
            hits[i] = h
    return hits


def _checked(
    detectors: Sequence[CUSUM], columns: Sequence[npt.ArrayLike]
) -> tuple[list[FloatArray], FloatArray]:
    """The columns as 1-d float64 arrays and laid end to end, checked as ``bank._columns`` does."""
    if len(detectors) != len(columns):
        msg = f"got {len(detectors)} detectors but {len(columns)} columns"
        raise ValueError(msg)
    if len({id(d) for d in detectors}) != len(detectors):
        msg = "a detector appears more than once"
        raise ValueError(msg)
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    if any(ndim != 1 for ndim in map(attrgetter("ndim"), cols)):
        i = next(i for i, c in enumerate(cols) if c.ndim != 1)
        msg = f"detector input must be 1-d, got shape {cols[i].shape} in column {i}"
        raise ValueError(msg)
    total = sum(map(len, cols))
    values = _buffer("cusum.values", total, np.float64)
    if cols:
        np.concatenate(cols, out=values)
    # NaN fails both comparisons.
    if total and not (values.min() >= -INPUT_LIMIT and values.max() <= INPUT_LIMIT):
        _refuse(cols)
    return cols, values


def _buffer(name: str, size: int, dtype: Any) -> Any:
    """``bank._scratch``, keeping buffers of up to 2**19 elements (see _SCRATCH_LIMIT)."""
    return _scratch(name, size, dtype, limit=_SCRATCH_LIMIT)


class _Pass:
    """CUSUM detectors with the same shift grid, each with a checked column; ``run`` feeds them.

    The detectors' running records (see ``cusum._Grid``) are read into arrays,
    one entry per detector, and written back at the end. The points go
    through in rounds, all detectors at once, up to 4096 points per detector
    and about 2**17 in all per round:

    - Scores (``cusum._scores``): the running sums of each detector's
      differences and squared differences from its anchor fold left to right
      as ``update`` adds them (the real and imaginary parts of one complex
      accumulation), then ``update``'s elementwise operations give the
      rounded score steps.
    - Charts (``_Scan``): a round is cut into spans of at most 32 points.
      Within a span each chart's cumulative sum, and the chart restarted
      from 0, are integers found by folding the span's rows; each chart's
      value at every span start then follows from the previous one by the
      CUSUM recursion, at span level. Charts whose reference value grows
      little over a span are bounded by the spans' extremes, the others get
      exact span maxima from the fold. Spans whose bound exceeds a limit
      (rare without drift) are solved point by point, as is each detector's
      last point. Small rounds are one span, solved point by point at once.
    - A detection cuts a detector's round short; it resets and carries on in
      the next round from the following point. Rounds after a detection are
      short at first (work past a detection is thrown away).
    - A detector with a chart near the cap, and rounds of a few points, go
      through ``update`` itself.

    Arrays of a round are (row in span, span, detector), so a fold runs over
    all spans of all detectors at once. A span's integers stay below 2**31
    (32 steps of at most 2**24, and reference values), so they are int32;
    values across spans are int64.
    """

    def __init__(
        self,
        detectors: Sequence[CUSUM],
        columns: Sequence[FloatArray],
        scratch: Scratch = _fresh,
        values: FloatArray | None = None,
    ) -> None:
        grid = detectors[0]._grid
        count = len(detectors)
        self.detectors = detectors
        self.grid = grid
        self.scratch = scratch
        if values is None:
            values = columns[0] if count == 1 else np.concatenate(columns)
        self.values = values
        self.size = np.fromiter(map(len, columns), dtype=np.int64, count=count)
        self.origin = np.cumsum(self.size) - self.size
        self.pos = np.zeros(count, dtype=np.int64)
        records = b"".join(map(attrgetter("_record"), detectors))
        running = np.frombuffer(records, dtype=grid.record_dtype)
        self.n = running["n"].copy()
        self.anchor = running["anchor"].copy()
        self.total = running["sum"].copy()
        self.squares = running["squares"].copy()
        self.drift = running["drift"].copy()
        # (direction, shift by increasing reference value, detector)
        charts = running["charts"][:, :, grid.order]
        self.charts = np.ascontiguousarray(charts.transpose(1, 2, 0))
        grids = list(map(attrgetter("_grid"), detectors))
        if all(g is grid for g in grids):
            self.limits = np.repeat(grid.sorted_limits[:, None], count, axis=1)
        else:
            self.limits = np.stack([g.sorted_limits for g in grids], axis=1)
        self.min_instances = np.fromiter(
            map(attrgetter("min_instances"), detectors), dtype=np.int64, count=count
        )
        self.step = np.full(count, _MAX_ROUND, dtype=np.int64)
        self.hits: dict[int, list[int]] = {}

    def run(self) -> list[IntArray]:
        """Feed every detector its column; the positions that detected drift, per detector."""
        live = np.flatnonzero(self.size)
        while live.size:
            live = self._round(live)
        self._write_back()
        found: list[IntArray] = list(np.empty((len(self.detectors), 0), dtype=np.int64))
        for i, hits in self.hits.items():
            found[i] = np.asarray(hits, dtype=np.int64)
        return found

    def _round(self, a: IntArray) -> IntArray:
        """Advance detectors ``a`` by one round; return those with points left."""
        fresh = a[self.drift[a]]
        if fresh.size:
            self.n[fresh] = 0
            self.anchor[fresh] = self.total[fresh] = self.squares[fresh] = 0.0
            self.charts[:, :, fresh] = 0
            self.drift[fresh] = False
        wanted = np.minimum(self.size[a] - self.pos[a], self.step[a])
        longest = int(wanted.max())
        cap = max(_MIN_ROUND, min(_MAX_ROUND, _ROUND_CELLS // a.size))
        # Equal rounds rather than full ones and a short last one.
        cap = -(-longest // -(-longest // cap))
        seg = np.minimum(wanted, cap)
        # A chart that could reach the cap in this round needs update's clamp.
        near = self.charts[:, :, a].max(axis=(0, 1)) > _CHART_CAP - seg * _STEP_LIMIT
        if a.size * min(longest, cap) <= _LOOP_CELLS:
            near[:] = True
        for i, count in zip(a[near].tolist(), seg[near].tolist(), strict=True):
            self._loop(i, count)
        if not near.all():
            self._advance(a[~near], seg[~near])
        return a[self.pos[a] < self.size[a]]

    # -- one detector at a time ----------------------------------------------

    def _loop(self, i: int, count: int) -> None:
        """``update`` on detector ``i``'s next ``count`` points, up to a detection."""
        detector = self.detectors[i]
        detector._record = self._records(np.array([i]))[0]
        start = int(self.origin[i] + self.pos[i])
        used = count
        for k, value in enumerate(self.values[start : start + count].tolist()):
            if detector.update(value).drift_detected:
                used = k + 1
                break
        running = np.frombuffer(detector._record, dtype=self.grid.record_dtype)
        self.n[i], self.anchor[i] = running["n"][0], running["anchor"][0]
        self.total[i], self.squares[i] = running["sum"][0], running["squares"][0]
        self.drift[i] = running["drift"][0]
        self.charts[:, :, i] = running["charts"][0][:, self.grid.order]
        self._moved(np.array([i]), np.array([used]), self.drift[i : i + 1].copy())

    def _records(self, rows: Any) -> list[bytes]:
        """The running records of detectors ``rows`` (see ``cusum._Grid``)."""
        running = np.empty(len(self.n[rows]), dtype=self.grid.record_dtype)
        running["n"], running["anchor"] = self.n[rows], self.anchor[rows]
        running["sum"], running["squares"] = self.total[rows], self.squares[rows]
        running["drift"] = self.drift[rows]
        back = np.argsort(self.grid.order)
        running["charts"] = self.charts[:, back][:, :, rows].transpose(2, 0, 1)
        raw, size = running.tobytes(), running.itemsize
        return [raw[k : k + size] for k in range(0, len(raw), size)]

    def _moved(self, a: IntArray, used: IntArray, hit: npt.NDArray[np.bool_]) -> None:
        """Detectors ``a`` consumed ``used`` points; ``hit`` says which ended on a detection."""
        for i, k in zip(a[hit].tolist(), used[hit].tolist(), strict=True):
            hits = self.hits.setdefault(i, [])
            hits.append(int(self.pos[i]) + k - 1)
            self.step[i] = step_after_reset(hits, _FIRST_STEP, _MIN_STEP, _MAX_ROUND)
        calm = a[~hit]
        self.step[calm] = np.minimum(2 * self.step[calm], _MAX_ROUND)
        self.pos[a] += used

    def _write_back(self) -> None:
        for d, record in zip(self.detectors, self._records(slice(None)), strict=True):
            d._record = record

    # -- a round of many detectors -------------------------------------------

    def _advance(self, a: IntArray, seg: IntArray) -> None:
        """Feed detectors ``a`` their next ``seg`` points (fewer if one detects)."""
        width = int(seg.max())
        m, spans = _spans(width, a.size)
        n0 = self.n[a]
        wide = a.size >= _WIDE
        x = self._window(a, width)
        anchor = np.where(n0 == 0, x[:, 0], self.anchor[a])
        row = (anchor, self.total[a], self.squares[a], n0)
        scores, totals, squares = _scores(x, *row, wide, self.scratch)
        steps = self._steps(scores, seg, m, spans, wide)
        scan = _Scan(steps, self.grid.sorted_refs, self.limits[:, a], self.charts[:, :, a], seg - 1)
        scan.run(self.scratch)
        kend, hit = self._first_hits(scan, a, seg, n0)
        charts = scan.final
        if hit.any():
            charts[:, :, hit] = scan.exact_at(np.flatnonzero(hit), kend[hit] - 1)
        end = kend - 1
        cols = np.arange(a.size)
        self.charts[:, :, a] = charts
        self.n[a] = n0 + kend
        self.anchor[a] = anchor
        if wide:
            self.total[a], self.squares[a] = totals[end, cols], squares[end, cols]
        else:
            self.total[a], self.squares[a] = totals[cols, end], squares[cols, end]
        self.drift[a] = hit
        self._moved(a, kend, hit)

    def _window(self, a: IntArray, width: int) -> FloatArray:
        """Each detector's next ``width`` points as a row (past its column: any other values).

        Columns of one length fed from one position are rows evenly spaced in
        the values: a view. A few detectors at other positions (after a
        detection) are patched into a copy of it.
        """
        origin, pos = self.origin[a], self.pos[a]
        values = self.values
        spacing = int(origin[1] - origin[0]) if a.size > 1 else 0
        first = int(pos[0])
        if (
            spacing >= 0
            and int(origin[-1]) + first + width <= values.size
            and (np.diff(origin) == spacing).all()
        ):
            item = values.itemsize
            view = np.ndarray(
                (a.size, width),
                dtype=np.float64,
                buffer=values,
                offset=(int(origin[0]) + first) * item,
                strides=(spacing * item, item),
            )
            view.flags.writeable = False
            off = np.flatnonzero(pos != first)
            if not off.size:
                return view
            if off.size <= a.size // _FEW_OFF:
                window = self.scratch("cusum.window", a.size * width, np.float64)
                window = window.reshape(a.size, width)
                np.copyto(window, view)
                for r, start in zip(off.tolist(), (origin[off] + pos[off]).tolist(), strict=True):
                    part = values[start : start + width]
                    window[r, : part.size] = part
                return window
        index = self.scratch("cusum.index", a.size * width, np.int64).reshape(a.size, width)
        np.add((origin + pos)[:, None], np.arange(width), out=index)
        window = self.scratch("cusum.window", a.size * width, np.float64).reshape(a.size, width)
        np.take(values, index, out=window, mode="clip")
        return window

    def _steps(self, scores: FloatArray, seg: IntArray, m: int, spans: int, wide: bool) -> Any:
        """Score steps as (row, span, detector), summed within spans; 0 past ``seg``.

        int32 for spans of at most 32 points, else (one span: the whole round) int64.
        """
        count = seg.size
        width = scores.size // count
        dtype = np.int32 if m <= _SPAN else np.int64
        steps = self.scratch("cusum.steps", m * spans * count, dtype).reshape(m, spans, count)
        whole = width // m
        tail = width - whole * m
        if wide:
            body = scores[: whole * m].reshape(whole, m, count).transpose(1, 0, 2)
            rest = scores[whole * m :]
        else:
            body = scores[:, : whole * m].reshape(count, whole, m).transpose(2, 1, 0)
            rest = scores[:, whole * m :].T
        np.copyto(steps[:, :whole], body, casting="unsafe")
        if whole < spans:
            np.copyto(steps[:tail, whole], rest, casting="unsafe")
            steps[tail:, whole] = 0
        if int(seg.min()) < width:
            k = np.arange(1, m + 1)[:, None, None] + m * np.arange(spans)[:, None]
            np.copyto(steps, 0, where=k > seg)
        if m > _SPAN:
            np.cumsum(steps, axis=0, out=steps)
        else:
            for r in range(1, m):
                np.add(steps[r - 1], steps[r], out=steps[r])
        return steps

    def _first_hits(
        self, scan: _Scan, a: IntArray, seg: IntArray, n0: IntArray
    ) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """Points used by each detector (up to its first detection) and whether it detected."""
        span, col = np.nonzero(scan.flagged)
        if not span.size:
            return seg, np.zeros(a.size, dtype=np.bool_)
        m = scan.m
        charts = scan.exact(span, col)
        over = (charts > scan.limits[:, col]).any(axis=(1, 2))
        k = m * span + np.arange(1, m + 1)[:, None]
        over &= (k <= seg[col]) & (n0[col] + k >= self.min_instances[a[col]])
        found = over.any(axis=0)
        none = np.iinfo(np.int64).max
        first = np.where(found, m * span + over.argmax(axis=0) + 1, none)
        best = np.full(a.size, none, dtype=np.int64)
        np.minimum.at(best, col, first)
        hit = best < none
        return np.where(hit, best, seg), hit


class _Scan:
    """One round's charts, span by span, from the detectors' within-span score sums.

    ``steps`` is (row, span, detector): the score steps summed from the
    span's start. Chart ``j`` upward, restarted from 0 at a span's start, has
    cumulative sum ``climb = steps - ref_j * (row + 1)`` (downward: ``-steps
    - ref_j * (row + 1)``), and is ``climb`` less the running minimum of
    ``climb`` and 0. ``run`` finds every chart at every span start
    (``starts``, (direction, shift, span, detector)), the spans where a chart
    may exceed its limit (``flagged``) and every chart after each detector's
    point ``end`` (``final``, (direction, shift, detector)).
    """

    def __init__(
        self, steps: Any, refs: IntArray, limits: IntArray, charts: IntArray, end: IntArray
    ) -> None:
        self.steps, self.refs, self.limits, self.charts, self.end = steps, refs, limits, charts, end
        self.m = steps.shape[0]
        self.final: IntArray = np.empty(charts.shape, dtype=np.int64)
        self.starts: IntArray = np.empty(0, dtype=np.int64)
        self.flagged: npt.NDArray[np.bool_] = np.empty(0, dtype=np.bool_)
        self.dense: IntArray | None = None

    def run(self, scratch: Scratch) -> None:
        steps = self.steps
        m, spans, count = steps.shape
        if spans == 1:
            # One span: every chart after every point, directly.
            self.dense = _charts_through(steps[:, 0].astype(np.int64), self.refs, self.charts)
            over = np.any(self.dense > self.limits, axis=(1, 2))
            self.flagged = np.any(over, axis=0)[None]
            self.final = self.dense[self.end, :, :, np.arange(count)].transpose(1, 2, 0)
            self.starts = self.charts[:, :, None]
            return
        half = self.refs.size
        shape = (2, half, spans, count)
        # Span-level values: (direction, shift, span, detector).
        size = 2 * half * spans * count
        high = scratch("cusum.high", size, np.int64).reshape(shape)
        rise = scratch("cusum.rise", size, np.int64).reshape(shape)
        rise_end = scratch("cusum.rise_end", size, np.int64).reshape(shape)
        change = scratch("cusum.change", size, np.int64).reshape(shape)
        # Charts whose reference value adds up to little over a span: extremes bound them.
        bounded = int(np.sum(self.refs * (m - 1) * _BOUND_SHARE <= self.limits.min(axis=1)))
        # Each detector's last point: the restarted chart and the cumulative sum
        # there, within its span, for a few distinct last points read by slicing.
        ends, which = np.unique(self.end, return_inverse=True)
        lasts = [
            (e // m, e % m, slice(None) if ends.size == 1 else np.flatnonzero(which == i))
            for i, e in enumerate(ends.tolist())
        ]
        if ends.size > _FEW_ENDS:
            lasts = []
        last = np.empty((2, half, count), dtype=np.int64)
        last_rise = np.empty((2, half, count), dtype=np.int64)
        cells = m * spans * count
        for lo, hi in _groups(bounded, half):
            k = hi - lo
            climb = scratch("cusum.climb", 2 * k * cells, steps.dtype)
            climb = climb.reshape(m, 2, k, spans, count)
            ref_rows = self.refs[lo:hi] * np.arange(1, m + 1)[:, None]
            ref_rows = ref_rows.astype(steps.dtype)[:, :, None, None]
            np.subtract(steps[:, None], ref_rows, out=climb[:, 0])
            np.subtract(-ref_rows, steps[:, None], out=climb[:, 1])
            part = (slice(None), slice(lo, hi))
            # Reductions in the arrays' own type (a cast inside them is slow).
            high[part] = np.maximum.reduce(climb, axis=0)
            change[part] = climb[m - 1]
            at, at_rise = last[part], last_rise[part]
            for span, row, cols in lasts:
                at[..., cols] = climb[row, :, :, span][..., cols]
            if hi <= bounded:
                low = np.minimum.reduce(climb, axis=0)
                np.minimum(low, 0, out=low)
                np.subtract(high[part], low, out=rise[part])
                np.subtract(climb[m - 1], low, out=rise_end[part])
                for span, row, cols in lasts:
                    low = np.minimum.reduce(climb[: row + 1, :, :, span][..., cols], axis=0)
                    at_rise[..., cols] = at[..., cols] - np.minimum(low, 0)
                continue
            # The running minimum of climb and 0, row by row, then the restarted charts.
            drawup = scratch("cusum.drawup", 2 * k * cells, steps.dtype).reshape(climb.shape)
            np.minimum(climb[0], 0, out=drawup[0])
            for r in range(1, m):
                np.minimum(drawup[r - 1], climb[r], out=drawup[r])
            np.subtract(climb, drawup, out=drawup)
            rise[part] = np.maximum.reduce(drawup, axis=0)
            rise_end[part] = drawup[m - 1]
            for span, row, cols in lasts:
                at_rise[..., cols] = drawup[row, :, :, span][..., cols]
        starts = scratch("cusum.starts", size + 2 * half * count, np.int64)
        self.starts = starts.reshape(2, half, spans + 1, count)
        _span_starts(self.starts, change, rise_end, self.charts)
        peak = np.add(self.starts[:, :, :spans], high, out=high)
        np.maximum(peak, rise, out=peak)
        self.flagged = np.any(peak > self.limits[None, :, None], axis=(0, 1))
        if lasts:
            start = self.starts[:, :, self.end // m, np.arange(count)]
            self.final = np.maximum(start + last, last_rise)
        else:
            self.final = self.exact_at(np.arange(count), self.end)

    def exact(self, span: IntArray, col: IntArray) -> IntArray:
        """Every row's charts in spans ``span`` of detectors ``col``: (row, direction, shift, i)."""
        if self.dense is not None:
            return self.dense[:, :, :, col]
        q = self.steps[:, span, col].astype(np.int64)
        ref_rows = (self.refs * np.arange(1, self.m + 1)[:, None])[:, :, None]
        climb = np.empty((self.m, 2, self.refs.size, span.size), dtype=np.int64)
        np.subtract(q[:, None], ref_rows, out=climb[:, 0])
        np.subtract(-ref_rows, q[:, None], out=climb[:, 1])
        low = np.minimum.accumulate(np.minimum(climb, 0), axis=0)
        charts: IntArray = np.maximum(self.starts[:, :, span, col] + climb, climb - low)
        return charts

    def exact_at(self, cols: IntArray, end: IntArray) -> IntArray:
        """Charts of detectors ``cols`` after their points ``end``: (direction, shift, i)."""
        span, row = end // self.m, end % self.m
        charts = self.exact(span, cols)
        return charts[row, :, :, np.arange(cols.size)].transpose(1, 2, 0)


def _spans(width: int, count: int) -> tuple[int, int]:
    """Points per span and spans, for rounds of ``width`` points of ``count`` detectors.

    Spans of at most 32 points, splitting ``width`` exactly when a few more
    spans allow it; small rounds are one span (numpy's accumulations beat
    folding row by row there).
    """
    if width * count <= _ONE_SPAN:
        return width, 1
    fewest = -(-width // _SPAN)
    for spans in range(fewest, fewest + 4):
        if width % spans == 0:
            return width // spans, spans
    return -(-width // fewest), fewest


def _groups(bounded: int, half: int) -> list[tuple[int, int]]:
    """Shift ranges computed together: bounded and folded ones apart, at most 2 at once
    (4 charts: both directions)."""
    groups = []
    for lo, hi in ((0, bounded), (bounded, half)):
        groups += [(i, min(hi, i + 2)) for i in range(lo, hi, 2)]
    return groups


def _span_starts(starts: IntArray, change: IntArray, rise_end: IntArray, charts: IntArray) -> None:
    """Charts at each span start, and after the last: ``B[s + 1] = max(B[s] + change[s],
    rise_end[s])``.

    ``change[s]`` is a chart's cumulative sum over span ``s``, ``rise_end[s]``
    the chart restarted from 0 at its end; arrays are (direction, shift,
    span, detector). With ``C[s]`` the total of ``change`` before span ``s``,
    ``B[s] = C[s] + max(B[0], max over t < s of (rise_end[t] - C[t + 1]))``:
    a running maximum, for many spans.
    """
    spans = change.shape[2]
    starts[:, :, 0] = charts
    if spans <= _SCAN_LOOP and change[:, :, 0].size >= _SCAN_LANES:
        for s in range(spans):
            np.add(starts[:, :, s], change[:, :, s], out=starts[:, :, s + 1])
            np.maximum(starts[:, :, s + 1], rise_end[:, :, s], out=starts[:, :, s + 1])
        return
    total = np.cumsum(change, axis=2)
    np.subtract(rise_end, total, out=starts[:, :, 1:])
    np.maximum.accumulate(starts, axis=2, out=starts)
    starts[:, :, 1:] += total
