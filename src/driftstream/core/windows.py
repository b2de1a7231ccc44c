"""Tumbling windows over a stream of batches, by event count or event time.

A window clock cuts each batch into segments: rows that fall into the open
window, and the points where that window closes. Cuts depend only on the
events (their order and ``ts``), never on the wall clock or on how the
stream was split into batches, so a replay gives the same windows.

Event-time windows follow a watermark: the largest ``ts`` seen so far. A
window ``[k * seconds, (k + 1) * seconds)`` closes when the watermark passes
its end. An event that arrives after its own window closed (late) is
counted in the open window; ``late`` counts how many did. Window numbers
are capped at ±2**53, so an absurd event time lands in the outermost
window instead of overflowing.

>>> import numpy as np
>>> clock = CountClock(size=3)
>>> [(s.start, s.stop, s.closes) for s in clock.plan(np.zeros(7))]
[(0, 3, True), (3, 6, True), (6, 7, False)]
>>> clock = TimeClock(seconds=10.0)
>>> [(s.start, s.stop, s.closes) for s in clock.plan(np.array([1.0, 5.0, 12.0, 3.0, 25.0]))]
[(0, 2, True), (2, 4, True), (4, 5, False)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.settings import WindowSettings
from driftstream.core.state import MAX_COUNT, STATE_VERSION, StatePath, StateReader, read_kind


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of a batch that belong to the open window.

    When ``closes`` is true the window closes after these rows, and
    ``trigger`` is the row of the event that closed it.
    """

    start: int
    stop: int
    closes: bool
    trigger: int


@dataclass(frozen=True)
class Bounds:
    """Event-time bounds and size of a closed window."""

    start: float
    end: float
    count: int


class CountClock:
    """Windows of ``size`` events each."""

    def __init__(self, size: int) -> None:
        if size < 1:
            msg = f"window size must be >= 1, got {size}"
            raise ValueError(msg)
        self.size = size
        self._filled = 0
        self._first_ts = math.nan
        self._last_ts = math.nan

    def plan(self, ts: npt.NDArray[np.float64]) -> list[Segment]:
        """Cut a batch into segments; does not change the clock."""
        segments, start, filled = [], 0, self._filled
        while start < len(ts):
            stop = min(len(ts), start + self.size - filled)
            closes = filled + stop - start == self.size
            segments.append(Segment(start, stop, closes, stop - 1))
            filled = 0 if closes else filled + stop - start
            start = stop
        return segments

    def add(self, ts: npt.NDArray[np.float64]) -> None:
        """Record the event times of rows added to the open window."""
        if len(ts) == 0:
            return
        self._first_ts = float(np.fmin(self._first_ts, np.min(ts)))
        self._last_ts = float(np.fmax(self._last_ts, np.max(ts)))
        self._filled += len(ts)

    def close(self) -> Bounds:
        """Bounds of the window that just closed; opens the next one."""
        bounds = Bounds(self._first_ts, self._last_ts, self._filled)
        self._filled = 0
        self._first_ts = self._last_ts = math.nan
        return bounds

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "count",
            "version": STATE_VERSION,
            "size": self.size,
            "filled": self._filled,
            "first_ts": _finite_or_none(self._first_ts),
            "last_ts": _finite_or_none(self._last_ts),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> CountClock:
        """Rebuild a clock saved by :meth:`to_state`; ValueError names the key at fault."""
        keys = ("size", "filled", "first_ts", "last_ts")
        reader = StateReader(state, "count", keys, at or StatePath("clock"))
        clock = cls(reader.count("size", minimum=1))
        # A full window closes in the update that fills it, so none is ever saved.
        filled = reader.count("filled")
        if filled >= clock.size:
            reader.fail("filled", f"must be below 'size' ({clock.size}), got {filled}")
        clock._filled = filled
        clock._first_ts = _none_to_nan(reader.optional_number("first_ts"))
        clock._last_ts = _none_to_nan(reader.optional_number("last_ts"))
        if filled == 0 and not (math.isnan(clock._first_ts) and math.isnan(clock._last_ts)):
            reader.fail("first_ts", "and 'last_ts' must be None while 'filled' is 0")
        return clock


class TimeClock:
    """Windows of ``seconds`` of event time, aligned on multiples of it."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            msg = f"window seconds must be > 0, got {seconds}"
            raise ValueError(msg)
        self.seconds = seconds
        self._watermark = -math.inf
        self._index: int | None = None
        self._count = 0
        self.late = 0

    def _window_index(self, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        watermark = np.maximum.accumulate(np.maximum(ts, self._watermark))
        # Absurd event times share the outermost window rather than wrap around int64.
        index = np.clip(np.floor(watermark / self.seconds), -MAX_COUNT, MAX_COUNT)
        return index.astype(np.int64)

    def plan(self, ts: npt.NDArray[np.float64]) -> list[Segment]:
        """Cut a batch into segments; does not change the clock."""
        if len(ts) == 0:
            return []
        index = self._window_index(ts)
        open_index = int(index[0]) if self._index is None else self._index
        cuts = np.flatnonzero(np.diff(index, prepend=open_index) > 0).tolist()
        segments, start = [], 0
        for cut in cuts:
            segments.append(Segment(start, cut, True, cut))
            start = cut
        segments.append(Segment(start, len(ts), False, len(ts) - 1))
        return segments

    def add(self, ts: npt.NDArray[np.float64]) -> None:
        """Record rows of one segment; they all share one window."""
        if len(ts) == 0:
            return
        self._index = int(self._window_index(ts)[-1])
        self._watermark = max(self._watermark, float(np.max(ts)))
        self.late += int(np.count_nonzero(ts < self._index * self.seconds))
        self._count += len(ts)

    def close(self) -> Bounds:
        """Bounds of the window that just closed."""
        index = self._index if self._index is not None else 0
        bounds = Bounds(index * self.seconds, (index + 1) * self.seconds, self._count)
        self._count = 0
        return bounds

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "time",
            "version": STATE_VERSION,
            "seconds": self.seconds,
            "watermark": None if math.isinf(self._watermark) else self._watermark,
            "index": self._index,
            "count": self._count,
            "late": self.late,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> TimeClock:
        """Rebuild a clock saved by :meth:`to_state`; ValueError names the key at fault."""
        keys = ("seconds", "watermark", "index", "count", "late")
        reader = StateReader(state, "time", keys, at or StatePath("clock"))
        seconds = reader.number("seconds")
        if seconds <= 0:
            reader.fail("seconds", f"must be > 0, got {seconds!r}")
        clock = cls(seconds)
        watermark = reader.optional_number("watermark")
        clock._watermark = -math.inf if watermark is None else watermark
        clock._index = reader.optional_integer("index")
        clock._count = reader.count("count")
        clock.late = reader.count("late")
        return clock


Clock = CountClock | TimeClock


def new_clock(window: WindowSettings) -> Clock:
    """An empty clock for the configured windows."""
    if window.kind == "time":
        return TimeClock(window.seconds)
    return CountClock(window.size)


def clock_from_state(state: Mapping[str, Any], at: StatePath | None = None) -> Clock:
    """Rebuild either kind of clock from its state."""
    at = at or StatePath("clock")
    kinds: dict[str, type[CountClock] | type[TimeClock]] = {
        "count": CountClock,
        "time": TimeClock,
    }
    return kinds[read_kind(state, kinds, at)].from_state(state, at)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
