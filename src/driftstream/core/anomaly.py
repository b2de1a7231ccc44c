"""Per-event anomaly scores against the baseline, and an event-time rate limit.

Drift statistics judge windows; an anomaly score judges one event: how
surprising is this row, given what the baseline says each feature looks like?

**Score.** Each feature contributes a surprise in nats, and an event's score
is their sum:

* *Numeric, inside the baseline's range* ``[min, max]``: the two-sided tail
  surprise ``-log(2 t)`` with ``t = min(F(x), 1 - F(x))`` and ``F`` the
  baseline's distribution function (:meth:`NumericProfile.cdf`, piecewise
  linear through the quantile edges). ``t`` is floored at half the mass of
  the bin holding ``x``: the profile only knows its data to the resolution
  of a bin, and without the floor an integer feature whose smallest value is
  common (``items == 0``, an age clipped at 18) would score as if that value
  were the rarest of the training set. So inside the range a feature adds at
  most ``-log(mass of its outer bin)``, about 3 nats with 20 bins.
* *Numeric, outside the range*: no training value was that far out, so the
  tail starts at ``0.5 / (n + 1)`` (``n`` the finite training values) and
  shrinks by ``exp(-d / std)`` with the distance ``d`` beyond ``min`` or
  ``max``; ``d / std`` is capped at ``OUTSIDE_CAP``, so ``±1e300`` and
  ``±inf`` score large but finite (about ``log(n) + 50``).
* *Numeric, missing (NaN)*: the surprise of missingness,
  ``-log((nulls + 1) / (rows + 2))`` from the baseline's null count (add-one
  smoothing, so a feature that was never missing adds about ``log(rows)``).
  A present value adds no missingness term.
* *Categorical*: ``-log`` of the add-one smoothed baseline frequency over the
  kept categories, the "other" lump and null: ``(count + 1) / (total + k + 2)``
  for ``k`` kept categories. A category the profile did not keep falls in
  "other", so an unseen category in a profile with no "other" mass adds
  about ``log(total)``; ``None`` scores by the baseline's null share.

All of it is numpy over whole columns; a categorical column is mapped through
one dict in C (``map(dict.get, ...)``), never a Python loop per row. Only the
rows over the threshold get their top contributing features.

**Calibration.** The threshold for ``rate`` is the ``1 - rate`` quantile of
the scores of ``samples`` events simulated from the baseline with a fixed
seed: each numeric feature draws a bin by its counts and a uniform point
inside it, or, as often as fresh data sets a record (1 in ``n + 1`` per
side), a value beyond the training range; null at the null rate. Each
categorical draws a cell by its counts. The draws are made directly as
surprises (see ``_Numeric.sample_scores``), which is what the quantile
needs. Features are drawn *independently*: real traffic whose features are
correlated has a different joint tail, so its flagged share differs from
``rate`` (correlated surprises add up more often than independent ones).
On held-out data drawn like the baseline from ``driftstream.synthetic.frame``
(4 numeric and 3 categorical features, with nulls) the flagged share at
``rate=1e-4`` was about 0.6 to 0.9 times ``rate``.

>>> import numpy as np
>>> from driftstream.core.baseline import build_profile
>>> from driftstream.core.batch import Batch
>>> rng = np.random.default_rng(0)
>>> train = {
...     "x": rng.normal(size=10_000),
...     "c": rng.choice(np.array(["a", "b"], dtype=object), size=10_000),
... }
>>> scorer = AnomalyScorer(build_profile(train, model_id="m"), rate=1e-3)
>>> batch = Batch(
...     np.array([1.0, 2.0, 3.0]),
...     {"x": np.array([0.1, np.nan, 1e300]), "c": np.array(["a", None, "zz"], dtype=object)},
... )
>>> result = scorer.score(batch)
>>> round(scorer.threshold, 1), result.scores.round(1).tolist(), result.rows.tolist()
(3.7, [0.8, 18.4, 68.4], [1, 2])
>>> [(name, round(value, 1)) for name, value in result.top[1]]
[('x', 59.2), ('c', 9.2)]

Row 1 is flagged because neither feature was ever missing in training; row 2
holds a value far beyond the range and a category never seen.

:class:`TokenBucket` then limits how many anomaly alerts go out per minute of
event time, counting what it suppressed in between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from driftstream.core.baseline import BaselineProfile, CategoricalProfile, NumericProfile
from driftstream.core.batch import Batch
from driftstream.core.state import StatePath, StateReader

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_RATE = 0.1
SAMPLES = 262_144
SEED = 20_240_601
TOP = 3
OUTSIDE_CAP = 50.0
"""Largest ``d / std`` counted for a value beyond the baseline's range."""


@dataclass(frozen=True)
class AnomalyScores:
    """The scores of one batch.

    ``scores`` has one entry per row; ``rows`` lists, ascending, the rows
    whose score exceeds ``threshold``; ``top[i]`` holds the largest
    ``(feature, contribution)`` pairs of row ``rows[i]``, largest first.
    """

    scores: FloatArray
    threshold: float
    rows: IntArray
    top: tuple[tuple[tuple[str, float], ...], ...]

    @property
    def flagged(self) -> BoolArray:
        return np.asarray(self.scores > self.threshold, dtype=bool)


class _Numeric:
    """One numeric feature's scoring tables."""

    def __init__(self, profile: NumericProfile) -> None:
        n = max(profile.count, 1)
        edges = np.asarray(profile.edges, dtype=np.float64)
        counts = np.asarray(profile.counts, dtype=np.float64)
        self.edges = edges
        self.low = min(profile.min, float(edges[0]))
        self.high = max(profile.max, float(edges[-1]))
        self.xs = np.concatenate(([self.low], edges, [self.high]))
        self.ys = np.concatenate(([0.0], np.cumsum(counts)[:-1] / n, [1.0]))
        self.half_mass = counts / (2 * n)
        self.probs = (
            counts / counts.sum() if counts.sum() > 0 else np.full(counts.size, 1 / counts.size)
        )
        self.outside_tail = 0.5 / (n + 1)
        self.new_extreme = 1.0 / (n + 1)  # chance a fresh value passes the max (or the min)
        self.scale = profile.std
        total = profile.count + profile.null_count
        self.missing = -math.log((profile.null_count + 1) / (total + 2))
        self.null_share = profile.null_count / total if total else 0.0

    def score(self, values: FloatArray) -> FloatArray:
        missing = np.isnan(values)
        x = np.where(missing, self.low, values)
        cdf = np.interp(x, self.xs, self.ys)
        tail = np.minimum(cdf, 1.0 - cdf)
        bins = np.searchsorted(self.edges, x, side="right")
        tail = np.maximum(tail, self.half_mass[bins])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            beyond = np.maximum(self.low - x, x - self.high)
            outside = beyond > 0
            if outside.any():
                far = np.minimum(beyond[outside] / self.scale, OUTSIDE_CAP)
                far = np.where(np.isnan(far), OUTSIDE_CAP, far)
                tail[outside] = self.outside_tail * np.exp(-far)
        tail = np.clip(tail, self.outside_tail * math.exp(-OUTSIDE_CAP), 0.5)
        surprise = -np.log(2.0 * tail)
        surprise[missing] = self.missing
        return surprise

    def sample_scores(self, rng: np.random.Generator, size: int) -> FloatArray:
        """Surprises of values drawn as the score models them, new extremes included.

        Drawn straight as surprises, without the values: a value drawn by
        bin mass and uniformly inside its bin sits at a uniform position
        ``u`` of the piecewise-linear distribution function, so its
        surprise is ``-log(2 max(min(u, 1 - u), half the mass of its bin))``.
        A fresh value passes the training maximum with probability
        ``1 / (n + 1)`` (and the minimum likewise), by a distance the score
        takes as exponential in ``std``: a surprise of ``log(n + 1)`` plus
        an exponential, capped like the score's. Leaving new extremes out
        would calibrate on traffic that never sets a record, and real
        traffic would be flagged more often than ``rate``.
        """
        u = rng.random(size)
        bins = np.minimum(np.searchsorted(self.ys[1:-1], u, side="right"), self.half_mass.size - 1)
        tail = np.maximum(np.minimum(u, 1.0 - u), self.half_mass[bins])
        surprise = -np.log(2.0 * np.maximum(tail, self.outside_tail * math.exp(-OUTSIDE_CAP)))
        where = rng.random(size)
        if self.scale > 0:
            extreme = where < 2 * self.new_extreme
            far = np.minimum(rng.exponential(1.0, int(np.count_nonzero(extreme))), OUTSIDE_CAP)
            surprise[extreme] = -math.log(2.0 * self.outside_tail) + far
        surprise[rng.random(size) < self.null_share] = self.missing
        return surprise


class _Categorical:
    """One categorical feature's scoring tables: a surprise per label."""

    def __init__(self, profile: CategoricalProfile) -> None:
        cells = np.array((*profile.counts, profile.other_count, profile.null_count), dtype=float)
        smoothed = (cells + 1.0) / (cells.sum() + cells.size)
        self.surprise = -np.log(smoothed)
        self.other = float(self.surprise[-2])
        self.lookup: dict[object, float] = dict(
            zip(profile.categories, self.surprise[:-2].tolist(), strict=True)
        )
        self.lookup[None] = float(self.surprise[-1])
        self.probs = cells / cells.sum() if cells.sum() > 0 else np.full(cells.size, 1 / cells.size)

    def score(self, values: npt.NDArray[Any]) -> FloatArray:
        found = map(self.lookup.get, values, repeat(self.other))
        return np.fromiter(found, dtype=np.float64, count=len(values))

    def sample_scores(self, rng: np.random.Generator, size: int) -> FloatArray:
        cells = rng.choice(self.probs.size, size=size, p=self.probs)
        return np.asarray(self.surprise[cells], dtype=np.float64)


class AnomalyScorer:
    """Scores each event of a batch by its surprise under the baseline.

    ``columns`` picks the features to score (default: all of the baseline's);
    ``rate`` is the share of baseline-like events to flag, in ``(0, 0.1]``.
    The scorer holds no running state: it is a function of the baseline and
    its arguments, so it is rebuilt rather than saved.
    """

    def __init__(
        self,
        baseline: BaselineProfile,
        columns: Sequence[str] | None = None,
        rate: float = 1e-4,
        *,
        samples: int = SAMPLES,
        seed: int = SEED,
        top: int = TOP,
    ) -> None:
        _check_rate(rate)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1_000:
            msg = f"anomaly.samples must be an int of at least 1000, got {samples!r}"
            raise ValueError(msg)
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            msg = f"anomaly.top must be an int of at least 1, got {top!r}"
            raise ValueError(msg)
        names = tuple(baseline.features) if columns is None else tuple(columns)
        unknown = [name for name in names if name not in baseline.features]
        if unknown:
            msg = f"anomaly.columns names features the baseline lacks: {unknown}"
            raise ValueError(msg)
        if not names or len(set(names)) != len(names):
            msg = f"anomaly.columns must name distinct features, got {list(names)}"
            raise ValueError(msg)
        self.baseline = baseline
        self.columns = names
        self.rate = float(rate)
        self.samples = samples
        self.seed = seed
        self.top = top
        self._features: dict[str, _Numeric | _Categorical] = {}
        for name in names:
            profile = baseline.features[name]
            if isinstance(profile, NumericProfile):
                self._features[name] = _Numeric(profile)
            else:
                self._features[name] = _Categorical(profile)
        self._threshold = self._calibrate()

    @property
    def threshold(self) -> float:
        """The score above which an event is flagged."""
        return self._threshold

    def _calibrate(self) -> float:
        rng = np.random.default_rng(self.seed)
        total = np.zeros(self.samples)
        for feature in self._features.values():
            total += feature.sample_scores(rng, self.samples)
        return float(np.quantile(total, 1.0 - self.rate))

    def contributions(self, batch: Batch) -> FloatArray:
        """Each feature's surprise per row: shape ``(len(columns), len(batch))``."""
        out = np.empty((len(self.columns), len(batch)))
        for i, (name, feature) in enumerate(self._features.items()):
            if isinstance(feature, _Numeric):
                out[i] = feature.score(batch.numeric(name))
            else:
                out[i] = feature.score(batch.categorical(name))
        return out

    def score(self, batch: Batch) -> AnomalyScores:
        """Scores of every row, and the top features of the flagged ones."""
        parts = self.contributions(batch)
        scores = parts.sum(axis=0)
        rows = np.flatnonzero(scores > self._threshold).astype(np.int64)
        top: tuple[tuple[tuple[str, float], ...], ...] = ()
        if rows.size:
            chosen = parts[:, rows]
            order = np.argsort(-chosen, axis=0, kind="stable")[: self.top]
            top = tuple(
                tuple((self.columns[f], float(chosen[f, j])) for f in order[:, j].tolist())
                for j in range(rows.size)
            )
        return AnomalyScores(scores, self._threshold, rows, top)


def _check_rate(rate: object) -> None:
    valid = isinstance(rate, int | float) and not isinstance(rate, bool)
    if not valid or not (0.0 < float(rate) <= MAX_RATE):  # type: ignore[arg-type]
        msg = f"anomaly.rate must be a number in (0, {MAX_RATE}], got {rate!r}"
        raise ValueError(msg)


_BUCKET = "token_bucket"
_BUCKET_KEYS = ("per_minute", "burst", "tokens", "clock", "suppressed")


class TokenBucket:
    """At most ``per_minute`` admissions per minute of event time, ``burst`` at once.

    The bucket holds up to ``burst`` tokens (default: ``per_minute`` rounded
    up, at least 1) and refills at ``per_minute / 60`` tokens per second of
    *event* time. Its clock is the latest ``ts`` seen, so an event that
    arrives late refills nothing. An admitted event spends a token;
    ``suppressed`` counts the events refused since the last admitted one, so
    the next admitted event can say how many were dropped before it. The
    outcome depends only on the sequence of times, not on how it is cut into
    batches.

    >>> bucket = TokenBucket(per_minute=1)
    >>> bucket.admit(np.array([0.0, 10.0, 20.0, 61.0])).tolist(), bucket.suppressed
    ([True, False, False, True], 0)
    """

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        valid = isinstance(per_minute, int | float) and not isinstance(per_minute, bool)
        if not valid or not (math.isfinite(per_minute) and per_minute > 0):
            msg = f"anomaly.per_minute must be a finite number > 0, got {per_minute!r}"
            raise ValueError(msg)
        if burst is None:
            burst = max(1, math.ceil(per_minute))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            msg = f"anomaly.burst must be an int >= 1, got {burst!r}"
            raise ValueError(msg)
        self.per_minute = float(per_minute)
        self.burst = burst
        self._tokens = float(burst)
        self._clock: float | None = None
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        """Events refused since the last admitted one."""
        return self._suppressed

    def take(self, ts: float) -> bool:
        """Admit (True) or suppress (False) one event at event time ``ts``."""
        return self._take(ts) >= 0

    def _take(self, ts: float) -> int:
        """The number suppressed before this event if admitted, else -1."""
        if not math.isfinite(ts):
            msg = f"event time must be finite, got {ts!r}"
            raise ValueError(msg)
        if self._clock is None:
            self._clock = ts
        elif ts > self._clock:
            refill = (ts - self._clock) * self.per_minute / 60.0
            self._tokens = min(float(self.burst), self._tokens + refill)
            self._clock = ts
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            dropped, self._suppressed = self._suppressed, 0
            return dropped
        self._suppressed += 1
        return -1

    def admit(self, ts: npt.ArrayLike) -> BoolArray:
        """Admit or suppress each of a batch of flagged events, in order."""
        return self.admit_reporting(ts)[0]

    def admit_reporting(self, ts: npt.ArrayLike) -> tuple[BoolArray, IntArray]:
        """Like :meth:`admit`, plus per event the number suppressed just before it.

        The count is 0 for suppressed events. Flagged events are rare, so
        this loops over them.
        """
        times = np.asarray(ts, dtype=np.float64)
        if not np.all(np.isfinite(times)):
            msg = "event times must be finite"
            raise ValueError(msg)
        dropped = np.fromiter((self._take(t) for t in times.tolist()), np.int64, times.size)
        return dropped >= 0, np.maximum(dropped, 0)

    def with_limits(self, per_minute: float, burst: int | None = None) -> TokenBucket:
        """A bucket with other limits that carries on from this one.

        It keeps the clock, the suppressed count and the tokens (at most
        the new burst): how a saved bucket meets a changed config.
        """
        bucket = TokenBucket(per_minute, burst)
        bucket._tokens = min(self._tokens, float(bucket.burst))
        bucket._clock = self._clock
        bucket._suppressed = self._suppressed
        return bucket

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": _BUCKET,
            "version": 1,
            "per_minute": self.per_minute,
            "burst": self.burst,
            "tokens": self._tokens,
            "clock": self._clock,
            "suppressed": self._suppressed,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], at: StatePath | None = None) -> TokenBucket:
        """Rebuild a bucket saved by ``to_state``; ValueError names the key at fault."""
        reader = StateReader(state, _BUCKET, _BUCKET_KEYS, at)
        per_minute = reader.number("per_minute")
        if per_minute <= 0:
            reader.fail("per_minute", f"must be > 0, got {per_minute!r}")
        bucket = cls(per_minute, reader.count("burst", minimum=1))
        burst = bucket.burst
        tokens = reader.number("tokens")
        if not 0.0 <= tokens <= burst:
            reader.fail("tokens", f"must lie in [0, {burst}], got {tokens!r}")
        bucket._tokens = tokens
        bucket._clock = reader.optional_number("clock")
        bucket._suppressed = reader.count("suppressed")
        return bucket
