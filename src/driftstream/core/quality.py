"""Data-quality checks on one closed window of one column, against its baseline.

Drift statistics ask whether a column's distribution moved; these checks ask
whether the data itself broke: a column suddenly missing, values far outside
anything seen in training, a category nobody has seen before, a feature
stuck at one value. Each check is a small pure function of the window's
sketch and the column's baseline profile and returns a :class:`QualityResult`
(value, threshold, failed), from which :func:`quality_finding` builds a
``Finding`` of kind ``"quality"``. :func:`judge_quality` runs every check
that applies to a column.

Three checks count values that should be rare (nulls, values beyond the
training set's range, unseen categories) and test the count against a binomial with the
baseline's rate. The test is one-sided, at a per-window false-alarm
probability ``false_alarm`` (1e-6 by default), through the Chernoff bound
in its relative-entropy form (Hoeffding, "Probability inequalities for sums
of bounded random variables", 1963, Theorem 1): for ``k`` successes in ``n``
draws of rate ``p`` and any share ``q > p``,
``P(k >= n q) <= exp(-n KL(q || p))``. So the check fails only when
``n KL(k/n || p) >= ln(1 / false_alarm)``, which holds the false-alarm
rate under ``false_alarm`` for any ``n`` and any rate, tiny ones included
(where the normal approximation is far too optimistic). The bound is loose
by a factor of about 10 at 1e-6, slack that also covers the sampling error
of the baseline's own rate. On top of the test each check needs a minimum
excess over the baseline rate, so a large window never fails for a
statistically clear but harmless excess (3.2% nulls where training had 3%).

>>> import numpy as np
>>> from driftstream.core.baseline import build_profile
>>> from driftstream.core.sketches import NumericSketch
>>> rng = np.random.default_rng(0)
>>> training = rng.normal(size=20_000)
>>> training[rng.random(20_000) < 0.03] = np.nan
>>> profile = build_profile({"x": training}, model_id="m").features["x"]
>>> live = rng.normal(size=5000)
>>> live[rng.random(5000) < 0.3] = np.nan
>>> window = NumericSketch(profile.edges).update(live, nulls=np.isnan(live))
>>> result = missing(window, profile)
>>> result.failed, round(result.value, 2), round(result.threshold, 2)
(True, 0.3, 0.08)
>>> [r.check for r in judge_quality(window, profile) if r.failed]
['missing']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from driftstream.core.baseline import CategoricalProfile, NumericProfile
from driftstream.core.findings import BASELINE, Finding
from driftstream.core.sketches import CategorySketch, NumericSketch

QUALITY = "quality"
"""The ``kind`` of a quality finding (and its ``detector``)."""

MISSING = "missing"
OUT_OF_RANGE = "out_of_range"
NEW_CATEGORY = "new_category"
STUCK = "stuck"
CHECKS = (MISSING, OUT_OF_RANGE, NEW_CATEGORY, STUCK)
CHECKS_PER_COLUMN = 3
"""Checks one column's window runs at most (missing, out_of_range or new_category, stuck)."""

Profile = NumericProfile | CategoricalProfile
Sketch = NumericSketch | CategorySketch


@dataclass(frozen=True, kw_only=True)
class QualitySettings:
    """Thresholds of the quality checks; the defaults suit windows of 200 events and up."""

    # Probability that one check fails on one window of clean data. At 1e-6 a
    # monitor with 20 columns and 4 checks each, closing a window a minute,
    # expects one false page in about 8 years; the faults these checks look
    # for (a broken join, a unit change, a new enum value) are blatant, so
    # so strict a test costs little power.
    false_alarm: float = 1e-6
    # The null share must exceed the baseline's by 5 points: a few extra
    # nulls in a big window are statistically clear but nobody acts on them.
    missing_min_excess: float = 0.05
    # Values beyond the training set's extremes must make up 1% of a window:
    # 1 value in 100 that nobody has ever seen (a unit change, a sentinel
    # like -999) is a broken feed; a rare new extreme is normal life.
    range_min_excess: float = 0.01
    # Unseen categories must make up at least 1% of a window: an occasional
    # new value is normal life for an open-ended field; 1 in 100 is a change.
    new_category_min_excess: float = 0.01
    # The smallest rate the binomial tests assume. A baseline that never saw
    # a null or an unseen category estimates that rate at 0, under which any
    # single occurrence would be "impossible"; a training set of 10,000 rows
    # misses a value of share 1e-4 with probability 37%, so 1e-4 is about
    # the least a finite baseline can rule out.
    floor_rate: float = 1e-4
    # A window needs this many values before it can be called stuck: a
    # handful of identical values is not evidence of a broken feed.
    stuck_min_count: int = 20
    # The stuck check is skipped for a column whose baseline may hold one
    # value at more than 99% share: such a column is constant most of the time.
    stuck_max_share: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 < self.false_alarm < 1.0:
            msg = f"false_alarm must be in (0, 1), got {self.false_alarm!r}"
            raise ValueError(msg)
        for name in ("missing_min_excess", "range_min_excess", "new_category_min_excess"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                msg = f"{name} must be in [0, 1), got {value!r}"
                raise ValueError(msg)
        if not 0.0 < self.floor_rate < 1.0:
            msg = f"floor_rate must be in (0, 1), got {self.floor_rate!r}"
            raise ValueError(msg)
        if isinstance(self.stuck_min_count, bool) or not isinstance(self.stuck_min_count, int):
            msg = f"stuck_min_count must be an int, got {self.stuck_min_count!r}"
            raise ValueError(msg)
        if self.stuck_min_count < 2:
            msg = f"stuck_min_count must be at least 2, got {self.stuck_min_count}"
            raise ValueError(msg)
        if not 0.0 < self.stuck_max_share < 1.0:
            msg = f"stuck_max_share must be in (0, 1), got {self.stuck_max_share!r}"
            raise ValueError(msg)


DEFAULTS = QualitySettings()


@dataclass(frozen=True)
class QualityResult:
    """One check's verdict on one window.

    ``value`` is what the window shows and ``threshold`` where the check
    fails: at ``value >= threshold``, or for ``stuck`` (the one check where
    lower is worse) at ``value <= threshold``. ``expected`` is the
    baseline's side (its rate, or for ``stuck`` the largest share one value
    may have held) and ``count`` the values the check looked at. A check
    that cannot judge this window (too few values, or a baseline that rules
    nothing out) has ``applicable`` false and never fails.
    """

    check: str
    value: float
    threshold: float
    failed: bool
    expected: float
    count: int
    applicable: bool = True
    higher_is_worse: bool = True


def relative_entropy(q: float, p: float) -> float:
    """``KL(q || p)`` between Bernoulli distributions, in nats (``p`` in (0, 1)).

    >>> relative_entropy(0.5, 0.5), round(relative_entropy(1.0, 0.5), 4)
    (0.0, 0.6931)
    """
    total = 0.0
    if q > 0.0:
        total += q * math.log(q / p)
    if q < 1.0:
        total += (1.0 - q) * math.log((1.0 - q) / (1.0 - p))
    return total


@lru_cache(maxsize=4096)
def critical_share(n: int, rate: float, false_alarm: float) -> float:
    """The least share ``q > rate`` with ``n KL(q || rate) >= ln(1 / false_alarm)``.

    Under a binomial with ``rate``, a window of ``n`` reaches that share with
    probability at most ``false_alarm`` (Chernoff). Returns ``inf`` when no
    share can, because the window is too small for so strict a test.

    >>> round(critical_share(5000, 0.03, 1e-6), 4)
    0.0435
    >>> critical_share(3, 0.5, 1e-6)
    inf
    """
    if n <= 0:
        return math.inf
    bound = math.log(1.0 / false_alarm) / n
    if relative_entropy(1.0, rate) < bound:
        return math.inf
    low, high = rate, 1.0  # KL(low) < bound <= KL(high); KL rises on [rate, 1]
    for _ in range(100):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if relative_entropy(middle, rate) >= bound:
            high = middle
        else:
            low = middle
    return high


def binomial_excess(
    check: str,
    hits: int,
    n: int,
    baseline_rate: float,
    min_excess: float,
    settings: QualitySettings,
) -> QualityResult:
    """Fail when ``hits`` of ``n`` is improbably many at the baseline rate, and clearly more.

    The test every counting check shares (see the module docstring); other
    counts of rare events (anomalies, dead letters) use it too.
    """
    if n <= 0:
        return QualityResult(check, math.nan, math.nan, False, baseline_rate, 0, applicable=False)
    rate = min(max(baseline_rate, settings.floor_rate), 1.0 - settings.floor_rate)
    threshold = max(critical_share(n, rate, settings.false_alarm), baseline_rate + min_excess)
    value = hits / n
    if threshold > 1.0:  # no window of this size could fail
        return QualityResult(check, value, 1.0, False, baseline_rate, n, applicable=False)
    return QualityResult(check, value, threshold, value >= threshold, baseline_rate, n)


def missing(
    sketch: Sketch, profile: Profile, settings: QualitySettings = DEFAULTS
) -> QualityResult:
    """The window's null share against the baseline's null rate.

    A null is a missing value, or for a numeric column also NaN or ±inf
    (``nonfinite_count``): the baseline counted all of them as nulls. The
    share is over every row of the window. Fails when the share is at least
    ``missing_min_excess`` above the baseline's and improbably high for a
    binomial at the baseline's rate (see the module docstring).
    """
    _check_pair(sketch, profile)
    nulls = sketch.null_count
    if isinstance(sketch, NumericSketch):
        nulls += sketch.nonfinite_count
    return binomial_excess(
        MISSING, nulls, sketch.total, profile.null_rate, settings.missing_min_excess, settings
    )


def count_outside(values: npt.NDArray[np.float64], profile: NumericProfile) -> int:
    """How many finite ``values`` lie beyond the baseline's ``[min, max]``.

    NaN and ±inf are nulls to the quality checks (see :func:`missing`), so
    they are not counted here.
    """
    below = np.count_nonzero(values < profile.min) - np.count_nonzero(values == -np.inf)
    above = np.count_nonzero(values > profile.max) - np.count_nonzero(values == np.inf)
    return int(below + above)


def out_of_range(
    sketch: NumericSketch,
    profile: NumericProfile,
    outside: int,
    settings: QualitySettings = DEFAULTS,
) -> QualityResult:
    """The share of the window's finite values beyond anything seen in training.

    ``outside`` counts the window's finite values below the baseline's
    ``min`` or above its ``max`` (:func:`count_outside`, which the monitor
    keeps per window). Under no drift, a fresh value is the largest of
    ``n + 1`` exchangeable draws with probability ``1 / (n + 1)`` (``n``
    finite training values), and likewise the smallest, whatever the
    distribution: so the expected share is ``2 / (n + 1)``, at least
    ``floor_rate``. Fails when the share is at least ``range_min_excess``
    above that and improbably high for a binomial at that rate.

    The range is the training set's own extremes rather than inner
    quantiles: a shift of the whole distribution moves few values past them
    (a 1 sd shift of a normal column trained on 20,000 rows puts about 0.2%
    beyond the old maximum), so this check answers "values nobody has seen"
    and leaves shifts to the drift statistics. A training outlier widens the
    range and so only costs power, never a false alarm.
    """
    _check_pair(sketch, profile)
    n = sketch.count
    if not 0 <= outside <= n:
        msg = f"outside must be a count of the window's {n} finite values, got {outside}"
        raise ValueError(msg)
    expected = 2.0 / (profile.count + 1)
    return binomial_excess(OUT_OF_RANGE, outside, n, expected, settings.range_min_excess, settings)


def new_category(
    sketch: CategorySketch, profile: CategoricalProfile, settings: QualitySettings = DEFAULTS
) -> QualityResult:
    """The share of non-null values in categories outside the baseline's list.

    Counts every value the sketch holds outside ``profile.categories``:
    named categories the baseline did not keep, plus the sketch's
    ``other_count`` overflow. The expected share is the baseline's own
    ``other`` share (training categories beyond its top K also read as
    unlisted), at least ``floor_rate``. Fails when the share is at least
    ``new_category_min_excess`` above the baseline's and improbably high
    for a binomial at that rate.
    """
    _check_pair(sketch, profile)
    unseen = int(sketch.vector(profile.categories)[-1])
    expected = profile.other_count / profile.count if profile.count else 0.0
    return binomial_excess(
        NEW_CATEGORY, unseen, sketch.count, expected, settings.new_category_min_excess, settings
    )


def stuck(sketch: Sketch, profile: Profile, settings: QualitySettings = DEFAULTS) -> QualityResult:
    """Whether a varied column shows one single value over a whole window.

    ``value`` is the number of distinct non-null values in the window: for a
    numeric column 1 when ``min == max`` and 2 (meaning "more than one")
    otherwise. The check fails at 1 (``threshold``), provided it applies:

    * the window holds at least ``stuck_min_count`` non-null values;
    * the baseline held more than one value and no value above
      ``stuck_max_share``. A numeric baseline knows only bin counts, so the
      largest bin share stands in for the largest value share (an upper
      bound); a categorical one knows its top category's share;
    * a constant window is rare under the baseline: one value at share at
      most ``s`` fills ``n`` draws with probability at most ``s**(n - 1)``,
      which must be below ``false_alarm``.

    ``expected`` is that largest share.
    """
    _check_pair(sketch, profile)
    n = sketch.count
    if isinstance(sketch, NumericSketch):
        assert isinstance(profile, NumericProfile)
        value = 1.0 if n and sketch.min == sketch.max else 2.0
        varied = profile.min < profile.max
        top = max(profile.counts) / profile.count if profile.count else 1.0
    else:
        assert isinstance(profile, CategoricalProfile)
        tracked = sum(1 for count in sketch.counts.values() if count)
        value = float(tracked + (sketch.other_count > 0))
        varied = len(profile.categories) + (profile.other_count > 0) > 1
        top = max(profile.counts, default=0) / profile.count if profile.count else 1.0
    applicable = (
        n >= settings.stuck_min_count
        and varied
        and top <= settings.stuck_max_share
        and (n - 1) * math.log(top) <= math.log(settings.false_alarm)
    )
    failed = applicable and value <= 1.0
    return QualityResult(STUCK, value, 1.0, failed, top, n, applicable, higher_is_worse=False)


def judge_quality(
    sketch: Sketch,
    profile: Profile,
    settings: QualitySettings = DEFAULTS,
    *,
    outside: int | None = None,
) -> list[QualityResult]:
    """Every check that applies to this column's window, passed or failed.

    Numeric columns get ``missing``, ``out_of_range`` (given ``outside``,
    see :func:`out_of_range`) and ``stuck``; categorical ones ``missing``,
    ``new_category`` and ``stuck``. Checks that cannot judge the window
    (see :class:`QualityResult`) are left out.
    """
    results = [missing(sketch, profile, settings)]
    if isinstance(sketch, NumericSketch):
        assert isinstance(profile, NumericProfile)
        if outside is not None:
            results.append(out_of_range(sketch, profile, outside, settings))
    else:
        assert isinstance(profile, CategoricalProfile)
        results.append(new_category(sketch, profile, settings))
    results.append(stuck(sketch, profile, settings))
    return [result for result in results if result.applicable]


def quality_finding(
    result: QualityResult,
    *,
    kind: str = QUALITY,
    model_id: str,
    model_version: str,
    feature: str,
    window_start: float,
    window_end: float,
    window_count: int,
    event_time: float,
    row: int,
) -> Finding:
    """The ``Finding`` for a check's episode on one window: opened or ``"resolved"``.

    An episode opens (kind ``"quality"``) only on a failed check.
    ``statistic`` names the check; the baseline's side and the number of
    values judged go in ``details``.
    """
    if kind == QUALITY and not result.failed:
        msg = f"check {result.check!r} passed; only a failed check makes a finding"
        raise ValueError(msg)
    return Finding(
        kind=kind,
        model_id=model_id,
        model_version=model_version,
        feature=feature,
        detector=QUALITY,
        statistic=result.check,
        value=result.value,
        threshold=result.threshold,
        severity="warning" if kind == QUALITY else "info",
        reference=BASELINE,
        window_start=window_start,
        window_end=window_end,
        window_count=window_count,
        event_time=event_time,
        row=row,
        details={"expected": result.expected, "count": result.count},
    )


def _check_pair(sketch: Sketch, profile: Profile) -> None:
    numeric = isinstance(sketch, NumericSketch)
    if numeric != isinstance(profile, NumericProfile):
        kind = "numeric" if numeric else "categorical"
        msg = f"a {kind} sketch cannot be judged against the profile of {profile.name!r}"
        raise TypeError(msg)
