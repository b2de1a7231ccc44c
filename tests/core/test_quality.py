"""Quality checks: they fire on injected faults and stay quiet on clean windows.

The baseline is profiled from ``synthetic.frame``; clean windows are fresh
draws from the same distributions (not resamples of the training rows), so
the false-alarm counts include the baseline's own sampling error. Run with
``-s`` to see the measured counts.
"""

import math
from collections import Counter

import numpy as np
import pytest

from driftstream import synthetic
from driftstream.core.baseline import (
    BaselineProfile,
    CategoricalProfile,
    NumericProfile,
    build_profile,
)
from driftstream.core.quality import (
    MISSING,
    NEW_CATEGORY,
    OUT_OF_RANGE,
    QUALITY,
    STUCK,
    QualitySettings,
    count_outside,
    critical_share,
    judge_quality,
    missing,
    new_category,
    out_of_range,
    quality_finding,
    stuck,
)
from driftstream.core.sketches import CategorySketch, NumericSketch

COLUMNS = ("amount", "customer_age", "items", "country", "device")
WINDOWS = 10_000
CHUNK = 500  # windows drawn at once
AGE_NULL_RATE = 0.03
COUNTRY_NULL_RATE = 0.02
DEVICE_WEIGHTS = (0.45, 0.35, 0.2)


@pytest.fixture(scope="module")
def baseline() -> BaselineProfile:
    data = synthetic.frame(50_000, seed=11)
    return build_profile({name: data[name] for name in COLUMNS}, model_id="quality")


def draw(column: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Clean values of ``column``, drawn as ``synthetic.frame`` draws them."""
    if column == "amount":
        return np.round(rng.lognormal(mean=4.0, sigma=0.8, size=shape), 2)
    if column == "customer_age":
        age = np.round(rng.normal(42, 12, size=shape).clip(18, 95))
        age[rng.random(shape) < AGE_NULL_RATE] = np.nan
        return age
    if column == "items":
        return rng.poisson(3.0, size=shape).astype(np.float64)
    if column == "country":
        countries = np.array(synthetic.COUNTRIES, dtype=object)
        values = rng.choice(countries, size=shape, p=synthetic.COUNTRY_WEIGHTS)
        values[rng.random(shape) < COUNTRY_NULL_RATE] = None
        return values
    assert column == "device"
    return rng.choice(np.array(synthetic.DEVICES, dtype=object), size=shape, p=DEVICE_WEIGHTS)


def sketch_of(
    profile: NumericProfile | CategoricalProfile, values: np.ndarray
) -> NumericSketch | CategorySketch:
    """A closed window's sketch, filled as the monitor fills it."""
    if isinstance(profile, NumericProfile):
        column = np.asarray(values, dtype=np.float64)
        return NumericSketch(profile.edges).update(column, nulls=np.isnan(column))
    return CategorySketch(cap=50, categories=profile.categories).update(values)


def outside_of(profile: NumericProfile | CategoricalProfile, values: np.ndarray) -> int | None:
    """The monitor's count of values beyond the training range (numeric columns only)."""
    if isinstance(profile, NumericProfile):
        return count_outside(np.asarray(values, dtype=np.float64), profile)
    return None


def window(baseline: BaselineProfile, column: str, size: int = 5000, seed: int = 0):
    profile = baseline.features[column]
    values = draw(column, np.random.default_rng(seed), (size,))
    return profile, values


# No minimum excess and 1% per window: the binomial test alone, at a level
# loose enough for the 10,000 windows to show whether it is honoured.
LOOSE = QualitySettings(
    false_alarm=0.01, missing_min_excess=0.0, range_min_excess=0.0, new_category_min_excess=0.0
)


def false_alarms(
    profile: NumericProfile | CategoricalProfile,
    column: str,
    size: int,
    seed: int,
    settings: tuple[QualitySettings, ...],
) -> list[tuple[Counter[str], Counter[str]]]:
    """Failed and judged checks, per settings, over ``WINDOWS`` clean windows of ``size``."""
    rng = np.random.default_rng(seed)
    tallies: list[tuple[Counter[str], Counter[str]]] = [(Counter(), Counter()) for _ in settings]
    for _ in range(WINDOWS // CHUNK):
        for values in draw(column, rng, (CHUNK, size)):
            sketch, outside = sketch_of(profile, values), outside_of(profile, values)
            for (failed, judged), chosen in zip(tallies, settings, strict=True):
                for result in judge_quality(sketch, profile, chosen, outside=outside):
                    judged[result.check] += 1
                    failed[result.check] += result.failed
    return tallies


# --- no-drift false alarms -------------------------------------------------------


@pytest.mark.parametrize("size", [5000, 200])
@pytest.mark.parametrize("column", COLUMNS)
def test_clean_windows_raise_at_most_one_alert_per_ten_thousand(baseline, column, size):
    profile = baseline.features[column]
    seed = COLUMNS.index(column) * 10 + (size == 200)
    (failed, judged), (loose_failed, loose_judged) = false_alarms(
        profile, column, size, seed, (QualitySettings(), LOOSE)
    )
    print(f"\n{column} x {WINDOWS} windows of {size}: failed {dict(failed)}")
    print(f"  at false_alarm=0.01 and no minimum excess: failed {dict(loose_failed)}")
    kind_checks = (OUT_OF_RANGE,) if isinstance(profile, NumericProfile) else (NEW_CATEGORY,)
    for check in (MISSING, *kind_checks, STUCK):
        assert judged[check] == WINDOWS, f"{check} judged only {judged[check]} windows"
        assert failed[check] <= 1, f"{check}: {failed[check]} alerts in {WINDOWS} clean windows"
    # the test's level holds at a loose setting too, not only far out in the tail
    for check, count in loose_judged.items():
        assert loose_failed[check] <= 0.01 * count, f"{check}: {loose_failed[check]} of {count}"


# --- injected faults ---------------------------------------------------------------


def failures(profile, values, settings=None):
    sketch, outside = sketch_of(profile, values), outside_of(profile, values)
    results = judge_quality(sketch, profile, settings or QualitySettings(), outside=outside)
    return {result.check for result in results if result.failed}


@pytest.mark.parametrize("size", [5000, 200])
@pytest.mark.parametrize("column", ["customer_age", "country"])
def test_thirty_percent_nulls_fail_missing(baseline, column, size):
    profile, values = window(baseline, column, size, seed=1)
    rng = np.random.default_rng(2)
    values[rng.permutation(size)[: int(0.3 * size)]] = np.nan if column == "customer_age" else None
    result = missing(sketch_of(profile, values), profile)
    assert result.failed
    assert result.value >= 0.3
    assert 0.01 < result.expected < 0.04
    assert failures(profile, values) == {MISSING}


def test_non_finite_values_count_as_missing(baseline):
    profile, values = window(baseline, "customer_age", seed=3)
    values[:1500] = np.inf
    result = missing(sketch_of(profile, values), profile)
    assert result.failed
    assert result.value >= 0.3


def test_a_column_never_null_in_training_fails_on_nulls(baseline):
    profile, values = window(baseline, "device", seed=4)
    assert profile.null_count == 0
    values[:500] = None  # 10%
    result = missing(sketch_of(profile, values), profile)
    assert result.failed
    assert result.threshold == pytest.approx(0.05)  # the minimum excess over 0 decides


def test_a_small_excess_of_nulls_does_not_page_on_a_large_window(baseline):
    """4% nulls where training had 3%: significant over 100k rows, yet below the excess."""
    profile, values = window(baseline, "customer_age", 100_000, seed=5)
    nulls = np.isnan(values)
    values[np.flatnonzero(~nulls)[: int(0.012 * values.size)]] = np.nan
    result = missing(sketch_of(profile, values), profile)
    assert result.value == pytest.approx(0.042, abs=0.003)
    assert critical_share(result.count, result.expected, 1e-6) < result.value
    assert not result.failed


@pytest.mark.parametrize("column", ["amount", "customer_age", "items"])
@pytest.mark.parametrize("side", [1, -1])
def test_five_percent_far_out_of_range_fails(baseline, column, side):
    profile, values = window(baseline, column, seed=6)
    far = side * 1000 * (abs(profile.max) + abs(profile.min) + 1)
    values[np.random.default_rng(7).permutation(values.size)[:250]] = far
    result = out_of_range(sketch_of(profile, values), profile, outside_of(profile, values))
    assert result.failed, result
    assert result.value >= result.expected + 0.03
    assert failures(profile, values) == {OUT_OF_RANGE}


def test_out_of_range_reads_the_training_range(baseline):
    profile = baseline.features["amount"]
    assert isinstance(profile, NumericProfile)
    # the extremes themselves are in range; anything beyond either is not
    edges = np.array([profile.min, profile.max] * 2500)
    result = out_of_range(sketch_of(profile, edges), profile, outside_of(profile, edges))
    assert (result.value, result.failed) == (0.0, False)
    assert result.expected == pytest.approx(2 / (profile.count + 1))
    beyond = np.concatenate([np.full(2500, profile.min - 0.01), np.full(2500, profile.max * 2)])
    assert out_of_range(sketch_of(profile, beyond), profile, outside_of(profile, beyond)).value == 1


def test_nulls_and_infinities_are_not_out_of_range(baseline):
    profile = baseline.features["amount"]
    values = np.array([np.nan, np.inf, -np.inf, profile.max + 1])
    assert outside_of(profile, values) == 1


def test_a_one_sd_shift_is_drift_not_out_of_range():
    """The range is the training extremes: a shift leaves it to the drift statistics."""
    rng = np.random.default_rng(12)
    profile = build_profile({"x": rng.normal(size=20_000)}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    shifted = rng.normal(loc=1.0, size=5000)
    result = out_of_range(sketch_of(profile, shifted), profile, outside_of(profile, shifted))
    assert not result.failed
    assert result.value < 0.01


@pytest.mark.parametrize("size", [5000, 200])
def test_ten_percent_new_category_fails(baseline, size):
    profile, values = window(baseline, "country", size, seed=8)
    values[np.random.default_rng(9).permutation(size)[: size // 10]] = "MX"
    result = new_category(sketch_of(profile, values), profile)
    assert result.failed
    assert result.value == pytest.approx(0.1 / 0.98, abs=0.03)
    assert failures(profile, values) == {NEW_CATEGORY}


def test_new_categories_past_the_sketch_cap_count_as_unseen(baseline):
    profile, values = window(baseline, "country", seed=10)
    values[:600] = np.array([f"new-{i}" for i in range(600)], dtype=object)
    sketch = CategorySketch(cap=10, categories=profile.categories).update(values)
    assert sketch.other_count > 0
    result = new_category(sketch, profile)
    assert result.failed
    assert result.value == pytest.approx(600 / sketch.count)


def test_the_baseline_other_share_is_expected():
    """Training categories past the top K read as unlisted live, and are no news."""
    rng = np.random.default_rng(11)
    names = np.array([f"c{i}" for i in range(40)], dtype=object)
    training = rng.choice(names, size=40_000)
    profile = build_profile({"c": training}, model_id="m", top_k=30).features["c"]
    assert isinstance(profile, CategoricalProfile)
    live = rng.choice(names, size=5000)
    result = new_category(sketch_of(profile, live), profile)
    assert result.expected == pytest.approx(0.25, abs=0.01)
    assert result.value == pytest.approx(0.25, abs=0.03)
    assert not result.failed


@pytest.mark.parametrize("size", [5000, 200])
@pytest.mark.parametrize(
    ("column", "value"),
    [("amount", 49.99), ("customer_age", 42.0), ("items", 3.0), ("country", "US")],
)
def test_a_stuck_feature_fails(baseline, column, size, value):
    profile = baseline.features[column]
    values = np.full(size, value, dtype=object if isinstance(value, str) else np.float64)
    result = stuck(sketch_of(profile, values), profile)
    assert (result.value, result.threshold, result.failed) == (1.0, 1.0, True)
    assert failures(profile, values) == {STUCK}


def test_stuck_ignores_nulls_in_the_window(baseline):
    profile = baseline.features["customer_age"]
    values = np.full(5000, 42.0)
    values[::10] = np.nan
    assert stuck(sketch_of(profile, values), profile).failed


def test_stuck_needs_enough_values(baseline):
    profile = baseline.features["customer_age"]
    result = stuck(sketch_of(profile, np.full(10, 42.0)), profile)
    assert not result.applicable
    assert not result.failed
    assert STUCK not in {
        r.check for r in judge_quality(sketch_of(profile, np.full(10, 42.0)), profile)
    }


def test_stuck_skips_columns_that_are_nearly_constant_in_training():
    rng = np.random.default_rng(12)
    training = np.where(rng.random(20_000) < 0.995, 0.0, rng.normal(size=20_000))
    profile = build_profile({"x": training}, model_id="m").features["x"]
    assert isinstance(profile, NumericProfile)
    result = stuck(sketch_of(profile, np.zeros(5000)), profile)
    assert result.expected > 0.99
    assert not result.applicable
    assert not result.failed


def test_stuck_skips_columns_that_were_constant_in_training():
    profile = build_profile({"c": np.array(["a"] * 100, dtype=object)}, model_id="m")
    column = profile.features["c"]
    result = stuck(sketch_of(column, np.array(["a"] * 500, dtype=object)), column)
    assert not result.applicable
    assert not result.failed


def test_stuck_on_a_small_window_needs_a_rare_constant():
    """At a top share of 90%, 50 equal values happen too often to call stuck."""
    rng = np.random.default_rng(13)
    training = np.where(rng.random(20_000) < 0.9, "a", "b").astype(object)
    column = build_profile({"c": training}, model_id="m").features["c"]
    assert not stuck(sketch_of(column, np.array(["a"] * 50, dtype=object)), column).applicable
    assert stuck(sketch_of(column, np.array(["a"] * 500, dtype=object)), column).failed


# --- results, findings and settings -------------------------------------------------


def test_an_empty_window_is_judged_by_nothing(baseline):
    for column in ("amount", "country"):
        profile = baseline.features[column]
        empty = sketch_of(profile, np.array([], dtype=object if column == "country" else float))
        assert judge_quality(empty, profile) == []


def test_failed_results_make_quality_findings(baseline):
    profile, values = window(baseline, "country", seed=14)
    values[:1000] = "MX"
    result = new_category(sketch_of(profile, values), profile)
    finding = quality_finding(
        result,
        model_id="m",
        model_version="v1",
        feature="country",
        window_start=0.0,
        window_end=60.0,
        window_count=5000,
        event_time=60.0,
        row=7,
    )
    assert (finding.kind, finding.detector, finding.statistic) == (QUALITY, QUALITY, NEW_CATEGORY)
    assert (finding.value, finding.threshold) == (result.value, result.threshold)
    assert finding.details == {"expected": result.expected, "count": result.count}
    clean = new_category(sketch_of(profile, window(baseline, "country", seed=15)[1]), profile)
    with pytest.raises(ValueError, match="passed"):
        quality_finding(clean, **{k: getattr(finding, k) for k in _FINDING_ARGS})


_FINDING_ARGS = (
    "model_id",
    "model_version",
    "feature",
    "window_start",
    "window_end",
    "window_count",
    "event_time",
    "row",
)


def test_a_sketch_of_the_wrong_kind_is_refused(baseline):
    numeric = baseline.features["amount"]
    categorical = baseline.features["country"]
    with pytest.raises(TypeError, match="numeric sketch"):
        missing(sketch_of(numeric, np.ones(10)), categorical)
    with pytest.raises(TypeError, match="categorical sketch"):
        stuck(sketch_of(categorical, np.array(["US"], dtype=object)), numeric)


@pytest.mark.parametrize(
    "bad",
    [
        {"false_alarm": 0.0},
        {"false_alarm": 1.0},
        {"missing_min_excess": -0.1},
        {"range_min_excess": 1.0},
        {"floor_rate": 0.0},
        {"stuck_min_count": 1},
        {"stuck_min_count": 20.0},
        {"stuck_max_share": 1.0},
    ],
)
def test_settings_refuse_nonsense(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        QualitySettings(**bad)


def test_critical_share_keeps_its_tail_bound():
    """The exact binomial tail at the critical share is below the level."""
    for n, rate in [(200, 0.03), (200, 0.0001), (5000, 0.1), (1000, 0.5)]:
        share = critical_share(n, rate, 1e-6)
        k = int(np.ceil(share * n - 1e-9))
        j = np.arange(k, n + 1)
        log_pmf = (
            math.lgamma(n + 1)
            - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in j])
            + j * math.log(rate)
            + (n - j) * math.log1p(-rate)
        )
        tail = float(np.exp(log_pmf).sum())
        assert tail <= 1e-6, (n, rate, share, tail)
