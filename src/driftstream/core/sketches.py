"""Bounded, mergeable window summaries with explicit, JSON-able state.

A window of live traffic is reduced to a sketch one micro-batch at a time and
later compared with the baseline by :mod:`driftstream.core.stats`. Every sketch
is fixed-size (a histogram on the baseline bins, or category counts under a
cap), merges with another sketch of the same shape, and saves to plain data
with ``to_state()`` so a restarted worker continues exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftstream.core.baseline import category_label
from driftstream.core.binning import FloatArray, IntArray, bin_counts, validate_edges
from driftstream.core.state import STATE_VERSION, StatePath, StateReader, read_kind

OTHER_KEY = "__other__"
"""Name of the trailing element of :meth:`CategorySketch.vector`."""

MOMENT_LIMIT = 1e100
"""Values enter a numeric sketch's moments clipped to ``[-MOMENT_LIMIT, MOMENT_LIMIT]``.

Any finite double is a valid value, but the square of a deviation of 1e200
is not a finite double: one such value would turn the sum of squares into
infinity, which JSON cannot hold. Clipped deviations stay below 2e100 and
their squares below 4e200, so the sums stay finite for 1e107 values. No
measured quantity comes near the limit; counts, ``min`` and ``max`` keep the
exact values.
"""
NUMERIC_STATE_VERSION = 2
"""Version of a numeric sketch's state. Version 2 leaves the edges out (the
baseline holds them) and keeps their digest; version 1 saved the edges."""

# A restored state may claim at most this much per value, with room for the
# rounding of merges, so continuing from it can never overflow either.
_SUM_PER_VALUE = 4 * MOMENT_LIMIT
_SUMSQ_PER_VALUE = _SUM_PER_VALUE**2


def _is_int(value: object) -> bool:
    # bool is an int subclass, but a bool count is always a corrupt state
    return isinstance(value, int) and not isinstance(value, bool)


def _running_sum(start: float, values: FloatArray) -> float:
    """``start + v0 + v1 + ...`` added strictly left to right.

    ``np.add.accumulate`` is sequential, unlike ``np.sum``'s pairwise order,
    so the result is the same however a stream is cut into batches: a
    restarted worker ends with bit-identical state.
    """
    return float(np.add.accumulate(np.concatenate(([start], values)))[-1])


class NumericSketch:
    """Histogram on baseline bins plus count, mean, variance, min and max.

    ``edges`` are the baseline's inner bin edges (see
    :mod:`driftstream.core.binning`). Nulls are counted apart; NaN and ±inf are
    counted in ``nonfinite_count`` and kept out of the histogram and moments,
    so one bad value cannot poison a window's mean.

    Moments are running sums of ``x - shift`` and its square, where
    ``shift`` is the first value the sketch saw, all values clipped to
    ``±MOMENT_LIMIT`` so the sums stay finite whatever the input: shifting avoids the
    cancellation of a plain sum of squares on data far from zero (the
    "shifted data" algorithm, Chan, Golub & LeVeque, "Algorithms for
    computing the sample variance", 1983). The sums are added strictly in
    stream order, so they do not depend on how the stream was batched;
    pooling per-batch moments would, in the last bits. Merging translates
    one sketch's sums to the other's shift, exact up to rounding.

    >>> import numpy as np
    >>> sketch = NumericSketch([0.0, 1.0]).update(np.array([-1.0, 0.5, 2.0, np.nan]))
    >>> sketch.counts.tolist(), sketch.count, sketch.nonfinite_count, sketch.total
    ([1, 1, 1], 3, 1, 4)
    >>> round(sketch.mean, 3), sketch.min, sketch.max
    (0.5, -1.0, 2.0)
    """

    _counts: IntArray
    _shift: float
    _sum: float
    _sumsq: float
    _min: float
    _max: float
    _null_count: int
    _nonfinite_count: int

    def __init__(self, edges: npt.ArrayLike) -> None:
        self.edges: FloatArray = np.array(validate_edges(edges))
        # shared between copies and merges, so nobody may edit it in place
        self.edges.flags.writeable = False
        self.reset()

    def reset(self) -> None:
        """Forget every value seen; keep the edges."""
        self._counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self._shift = 0.0
        self._sum = 0.0
        self._sumsq = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._null_count = 0
        self._nonfinite_count = 0

    def update(self, values: npt.ArrayLike, nulls: npt.ArrayLike | None = None) -> Self:
        """Add a batch of values; ``nulls`` marks entries to count as null and ignore."""
        column = np.asarray(values, dtype=np.float64)
        if column.ndim != 1:
            msg = f"values must be 1-d, got shape {column.shape}"
            raise ValueError(msg)
        if nulls is not None:
            column = self._drop_nulls(column, nulls)
        finite = np.isfinite(column)
        kept = column if finite.all() else column[finite]
        self._nonfinite_count += column.size - kept.size
        if kept.size:
            self._absorb(kept)
        return self

    def _drop_nulls(self, column: FloatArray, nulls: npt.ArrayLike) -> FloatArray:
        mask = np.asarray(nulls, dtype=bool)
        if mask.shape != column.shape:
            msg = f"nulls must have the shape of values {column.shape}, got {mask.shape}"
            raise ValueError(msg)
        self._null_count += int(np.count_nonzero(mask))
        return column[~mask]

    def _absorb(self, kept: FloatArray) -> None:
        clipped = np.clip(kept, -MOMENT_LIMIT, MOMENT_LIMIT)
        if self.count == 0:
            self._shift = float(clipped[0])
        deviations = clipped - self._shift
        self._sum = _running_sum(self._sum, deviations)
        self._sumsq = _running_sum(self._sumsq, deviations * deviations)
        self._counts += bin_counts(self.edges, kept)
        self._min = min(self._min, float(kept.min()))
        self._max = max(self._max, float(kept.max()))

    @property
    def counts(self) -> IntArray:
        """Counts per bin, ``len(edges) + 1`` of them (a copy)."""
        return self._counts.copy()

    @property
    def count(self) -> int:
        """Number of finite values seen."""
        return int(self._counts.sum())

    @property
    def null_count(self) -> int:
        return self._null_count

    @property
    def nonfinite_count(self) -> int:
        return self._nonfinite_count

    @property
    def total(self) -> int:
        """All rows seen: finite, non-finite and null."""
        return self.count + self._null_count + self._nonfinite_count

    @property
    def mean(self) -> float:
        count = self.count
        return self._shift + self._sum / count if count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values."""
        count = self.count
        if not count:
            return math.nan
        centred = self._sum / count
        return math.sqrt(max(self._sumsq / count - centred * centred, 0.0))

    @property
    def min(self) -> float:
        return self._min if self.count else math.nan

    @property
    def max(self) -> float:
        return self._max if self.count else math.nan

    def merge(self, other: NumericSketch) -> NumericSketch:
        """A new sketch holding both; the edges must be identical."""
        if not np.array_equal(self.edges, other.edges):
            msg = "cannot merge numeric sketches with different 'edges'"
            raise ValueError(msg)
        merged = other.copy() if self.count == 0 else self.copy()
        if self.count and other.count:
            delta, n = other._shift - self._shift, other.count
            merged._sum += other._sum + n * delta
            merged._sumsq += other._sumsq + 2 * delta * other._sum + n * delta * delta
        merged._counts = self._counts + other._counts
        merged._min = min(self._min, other._min)
        merged._max = max(self._max, other._max)
        merged._null_count = self._null_count + other._null_count
        merged._nonfinite_count = self._nonfinite_count + other._nonfinite_count
        return merged

    def copy(self) -> NumericSketch:
        clone = NumericSketch(self.edges)
        clone._counts = self._counts.copy()
        clone._shift, clone._sum, clone._sumsq = self._shift, self._sum, self._sumsq
        clone._min, clone._max = self._min, self._max
        clone._null_count = self._null_count
        clone._nonfinite_count = self._nonfinite_count
        return clone

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able data; ``min``/``max`` are None while empty (JSON has no inf).

        The edges are not saved, only their digest (see :func:`edges_digest`):
        they are the baseline's, so whoever restores the sketch passes them
        back to :meth:`from_state`.
        """
        empty = self.count == 0
        return {
            "kind": "numeric",
            "version": NUMERIC_STATE_VERSION,
            "edges_digest": edges_digest(self.edges),
            "counts": self._counts.tolist(),
            "shift": self._shift,
            "sum": self._sum,
            "sumsq": self._sumsq,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
            "null_count": self._null_count,
            "nonfinite_count": self._nonfinite_count,
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], at: StatePath | None = None, *, edges: npt.ArrayLike
    ) -> Self:
        """Rebuild a sketch saved by :meth:`to_state` on ``edges``; ValueError names a bad key.

        ``edges`` are the inner edges of the baseline the sketch belongs to. A
        state whose bin count or edges digest differs was saved with another
        baseline and is refused.
        """
        at = at or StatePath("sketch")
        reader = StateReader(state, "numeric", _NUMERIC_KEYS, at, version=NUMERIC_STATE_VERSION)
        sketch = cls(edges)
        counts = reader.counts("counts")
        bins = sketch.edges.size + 1
        if len(counts) != bins:
            problem = f"holds {len(counts)} bins where the baseline has {bins}"
            reader.fail("counts", f"{problem}: saved with another baseline")
        if reader.text("edges_digest") != edges_digest(sketch.edges):
            problem = "does not match the baseline's edges: saved with another baseline"
            reader.fail("edges_digest", problem)
        sketch._counts = np.array(counts, dtype=np.int64)
        sketch._null_count = reader.count("null_count")
        sketch._nonfinite_count = reader.count("nonfinite_count")
        sketch._shift, sketch._sum, sketch._sumsq = _load_moments(reader, sketch.count)
        sketch._min, sketch._max = _load_range(reader, empty=sketch.count == 0)
        return sketch


_NUMERIC_KEYS = (
    "edges_digest",
    "counts",
    "shift",
    "sum",
    "sumsq",
    "min",
    "max",
    "null_count",
    "nonfinite_count",
)


def edges_digest(edges: npt.ArrayLike) -> str:
    """A short fingerprint of inner bin edges, saved in place of the edges.

    8 hex digits of BLAKE2b over the edges as little-endian float64 bytes
    (``-0.0`` read as ``0.0``, as the two compare equal): enough to catch a
    state saved with another baseline, short enough to repeat in every
    saved sketch.

    >>> edges_digest([0.0, 1.0]) == edges_digest(np.array([-0.0, 1.0]))
    True
    >>> edges_digest([0.0, 1.0]) == edges_digest([0.0, 1.5])
    False
    """
    data = (np.asarray(edges, dtype=np.float64) + 0.0).astype("<f8").tobytes()
    return hashlib.blake2b(data, digest_size=4).hexdigest()


def _load_moments(reader: StateReader, count: int) -> tuple[float, float, float]:
    shift, total, sumsq = reader.number("shift"), reader.number("sum"), reader.number("sumsq")
    if abs(shift) > MOMENT_LIMIT:
        reader.fail("shift", f"must be within ±{MOMENT_LIMIT:g}, got {shift!r}")
    if abs(total) > count * _SUM_PER_VALUE:
        reader.fail("sum", f"is too large for {count} values: {total!r}")
    if not 0 <= sumsq <= count * _SUMSQ_PER_VALUE:
        reader.fail("sumsq", f"must be >= 0 and fit {count} values, got {sumsq!r}")
    return shift, total, sumsq


def _load_range(reader: StateReader, *, empty: bool) -> tuple[float, float]:
    low, high = reader.optional_number("min"), reader.optional_number("max")
    if empty:
        for key, value in (("min", low), ("max", high)):
            if value is not None:
                reader.fail(key, "must be None when counts are all zero")
        return math.inf, -math.inf
    if low is None or high is None:
        key = "min" if low is None else "max"
        reader.fail(key, "must be a finite number, got None")
    if low > high:
        reader.fail("min", f"({low!r}) exceeds 'max' ({high!r})")
    return low, high


def _distinct(column: npt.NDArray[Any]) -> Iterable[tuple[object, int]]:
    """Each distinct raw value of ``column`` with its count, in order of first appearance."""
    if column.dtype.kind in "biufU":
        values, first, counts = np.unique(column, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        return zip(values[order].tolist(), counts[order].tolist(), strict=True)
    items = column.tolist()
    # np.unique cannot order mixed types, and casting to a fixed-width str dtype
    # sizes every row like the longest value; hashing in C has neither problem,
    # and a Counter keeps keys in order of first appearance. Counting the
    # values themselves is fastest (also faster than integer codes and
    # np.bincount), but True, 1 and 1.0 are one key while their labels differ:
    # unless every key is a str or None, count again keyed on the type too.
    try:
        tally = Counter(items)
    except TypeError:  # an unhashable value (a list or dict) slipped past validation
        return Counter(map(category_label, items)).items()
    if all(type(value) is str or value is None for value in tally):
        return tally.items()
    typed = Counter(zip(map(type, items), items, strict=True))
    return ((value, count) for (_, value), count in typed.items())


def _label_counts(values: npt.ArrayLike) -> tuple[dict[str, int], int]:
    """Counts per category label in order of first appearance, and the number of nulls."""
    column = np.asarray(values)
    if column.ndim != 1:
        msg = f"values must be 1-d, got shape {column.shape}"
        raise ValueError(msg)
    labels: dict[str, int] = {}
    nulls = 0
    for value, count in _distinct(column):
        label = value if type(value) is str else category_label(value)
        if label is None:
            nulls += count
        else:
            labels[label] = labels.get(label, 0) + count
    return labels, nulls


class CategorySketch:
    """Counts of at most ``cap`` distinct categories, the rest pooled as other.

    ``categories`` (usually the baseline's top-K) are tracked from the start,
    so they always have a slot. Other categories take the free slots first
    come, first served, in stream order, so the tracked set does not depend
    on how the stream was cut into batches (a restarted worker cuts it
    elsewhere). Once ``cap`` names are tracked, every unseen name is added
    to ``other_count``. Memory is bounded by ``cap``.

    Values are labelled by :func:`driftstream.core.baseline.category_label`,
    the rule the baseline was built with, so live and training labels agree:
    bools read ``"true"``/``"false"``, integral floats lose their ``.0``, and
    ``None``, NaN and ±inf are nulls.

    >>> import numpy as np
    >>> sketch = CategorySketch(cap=2).update(np.array(["b", "a", "c", "c", None], dtype=object))
    >>> sketch.counts, sketch.other_count, sketch.null_count
    ({'b': 1, 'a': 1}, 2, 1)
    >>> sketch.vector(["a", "z"]).tolist()
    [1, 0, 3]
    """

    _counts: dict[str, int]
    _other_count: int
    _null_count: int

    def __init__(self, cap: int = 50, categories: Sequence[str] = ()) -> None:
        if not _is_int(cap) or cap < 1:
            msg = f"cap must be a positive int, got {cap!r}"
            raise ValueError(msg)
        seeds = tuple(dict.fromkeys(categories))
        if not all(isinstance(name, str) for name in seeds):
            msg = f"categories must be str labels, got {seeds!r}"
            raise ValueError(msg)
        if len(seeds) > cap:
            msg = f"categories holds {len(seeds)} distinct names, more than cap={cap}"
            raise ValueError(msg)
        self.cap = cap
        self.categories = seeds
        self.reset()

    def reset(self) -> None:
        """Forget every value seen; keep the cap and the seeded categories."""
        self._counts = dict.fromkeys(self.categories, 0)
        self._other_count = 0
        self._null_count = 0

    def update(self, values: npt.ArrayLike) -> Self:
        """Add a batch of categories (a 1-d object, str, bool or number array)."""
        labels, nulls = _label_counts(values)
        self._null_count += nulls
        self._absorb(labels)
        return self

    def _absorb(self, labels: Mapping[str, int]) -> None:
        """Add counts, admitting new names in the order of ``labels`` while slots last.

        Plain dicts rather than str arrays: a fixed-width str dtype would size
        every name like the longest one.
        """
        fresh = []
        for name, count in labels.items():
            if name in self._counts:
                self._counts[name] += count
            else:
                fresh.append((name, count))
        free = self.cap - len(self._counts)
        self._counts.update(fresh[:free])
        self._other_count += sum(count for _, count in fresh[free:])

    @property
    def counts(self) -> dict[str, int]:
        """Counts of the tracked categories (a copy)."""
        return dict(self._counts)

    @property
    def other_count(self) -> int:
        """Non-null values whose category found no free slot."""
        return self._other_count

    @property
    def null_count(self) -> int:
        return self._null_count

    @property
    def count(self) -> int:
        """Non-null values seen."""
        return sum(self._counts.values()) + self._other_count

    @property
    def total(self) -> int:
        """All rows seen, null or not."""
        return self.count + self._null_count

    @property
    def distinct(self) -> int:
        """Number of tracked categories, seeded ones included."""
        return len(self._counts)

    def vector(self, categories: Sequence[str]) -> IntArray:
        """Counts aligned with ``categories`` plus a trailing ``__other__`` count.

        The trailing element holds every non-null value not in the list: tracked
        names outside it and ``other_count``. A listed name that never got a
        slot reads 0, its values being in ``other_count``; seed the baseline's
        categories to avoid that.
        """
        names = list(categories)
        if len(set(names)) != len(names):
            msg = f"categories must be distinct, got {names!r}"
            raise ValueError(msg)
        listed = np.array([self._counts.get(name, 0) for name in names], dtype=np.int64)
        return np.append(listed, np.int64(self.count - int(listed.sum())))

    def merge(self, other: CategorySketch) -> CategorySketch:
        """A new sketch holding both; ``cap`` and ``categories`` must match.

        The result starts from this sketch's tracked set; the other sketch's
        names not tracked here take the free slots in descending count, then
        name, order, and the rest go to ``other_count``. The rule is
        deterministic but, once the cap is hit, not symmetric.
        """
        for key in ("cap", "categories"):
            if getattr(self, key) != getattr(other, key):
                msg = f"cannot merge category sketches with different {key!r}"
                raise ValueError(msg)
        merged = self.copy()
        merged._absorb(dict(sorted(other._counts.items(), key=lambda item: (-item[1], item[0]))))
        merged._other_count += other._other_count
        merged._null_count += other._null_count
        return merged

    def copy(self) -> CategorySketch:
        clone = CategorySketch(self.cap, self.categories)
        clone._counts = dict(self._counts)
        clone._other_count = self._other_count
        clone._null_count = self._null_count
        return clone

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "kind": "categorical",
            "version": STATE_VERSION,
            "cap": self.cap,
            "categories": list(self.categories),
            "counts": dict(self._counts),
            "other_count": self._other_count,
            "null_count": self._null_count,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> Self:
        """Rebuild a sketch saved by :meth:`to_state`; ValueError names a bad key."""
        keys = ("cap", "categories", "counts", "other_count", "null_count")
        reader = StateReader(state, "categorical", keys, at or StatePath("sketch"))
        cap, seeds = reader.count("cap", minimum=1), reader.texts("categories")
        if len(set(seeds)) != len(seeds):
            reader.fail("categories", f"must not repeat a name, got {seeds!r}")
        try:
            sketch = cls(cap, seeds)
        except ValueError as err:
            reader.fail("categories", f"is invalid: {err}")
        counts = reader.count_map("counts")
        if len(counts) > sketch.cap or not set(sketch.categories) <= counts.keys():
            reader.fail("counts", "must hold every seeded category and at most cap names")
        sketch._counts = counts
        sketch._other_count = reader.count("other_count")
        sketch._null_count = reader.count("null_count")
        return sketch


def sketch_from_state(
    state: Mapping[str, Any],
    at: StatePath | None = None,
    edges: npt.ArrayLike | None = None,
) -> NumericSketch | CategorySketch:
    """Rebuild whichever sketch ``state["kind"]`` names.

    A numeric sketch's state does not hold its edges: pass the baseline's
    inner ``edges``. Without them a numeric state is refused.

    >>> sketch_from_state(CategorySketch(cap=3).to_state()).cap
    3
    >>> sketch_from_state(NumericSketch([0.0, 1.0]).to_state(), edges=[0.0, 1.0]).counts.size
    3
    """
    at = at or StatePath("sketch")
    kind = read_kind(state, ("numeric", "categorical"), at)
    if kind == "categorical":
        return CategorySketch.from_state(state, at)
    if edges is None:
        at.fail("kind", "is 'numeric', but no baseline edges were given to restore it on")
    return NumericSketch.from_state(state, at, edges=edges)
