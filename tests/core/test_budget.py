"""The false-alarm budget: per-test levels, the statistics' critical values, the monitor."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from driftstream import synthetic
from driftstream.core import stats
from driftstream.core.baseline import build_profile
from driftstream.core.batch import Batch
from driftstream.core.budget import Budget, critical_value, rounded_down
from driftstream.core.detectors.cusum import DEFAULT_THRESHOLD as CUSUM_THRESHOLD
from driftstream.core.detectors.cusum import RATE_SLOPE, threshold_for_rate
from driftstream.core.monitor import ModelMonitor, settings_from_baseline, window_tests
from driftstream.core.settings import WindowSettings

LEVEL = 1e-2  # loose enough to count in a few thousand windows


def test_the_level_spreads_the_day_over_the_tests():
    budget = Budget(false_alarms_per_day=0.1)
    # 1,440 one-minute windows a day, 100 tests each: 0.1 / 144,000
    level = budget.level(tests=100, span_seconds=60.0)
    assert level <= 0.1 / 144_000 < level * 10 ** (1 / 8)
    assert budget.level(tests=100, span_seconds=0.0) == budget.level(tests=100, span_seconds=1.0)
    assert budget.level(tests=1, span_seconds=1e9) == budget.max_level
    assert budget.level(tests=200, span_seconds=60.0) < level


def test_levels_round_down_to_an_eighth_of_a_decade():
    for level in (3e-7, 1e-3, 0.0424, 5.5e-12):
        rounded = rounded_down(level)
        assert rounded <= level < rounded * 10 ** (1 / 8) * (1 + 1e-12)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"false_alarms_per_day": 0.0}, "alerts.false_alarms_per_day"),
        ({"false_alarms_per_day": math.inf}, "alerts.false_alarms_per_day"),
        ({"max_level": 1.0}, "alerts.max_level"),
    ],
)
def test_a_bad_budget_names_its_key(options, key):
    with pytest.raises(ValueError, match=key):
        Budget(**options)


def null_rate(test, counts, n, windows, seed):
    """The share of no-drift windows whose gate statistic passes its critical value at LEVEL."""
    rng = np.random.default_rng(seed)
    floor = critical_value(test, LEVEL, n=n, reference=int(counts.sum()), bins=counts.size)
    live = rng.multinomial(n, counts / counts.sum(), size=windows)
    values = np.array([stats.compute(test, counts, window) for window in live])
    return float(np.mean(values >= floor)), floor


@pytest.mark.parametrize("n", [50, 200, 2000])
def test_the_numeric_gate_holds_its_level(n):
    data = synthetic.frame(20_000, seed=31)
    profile = build_profile({"amount": data["amount"]}, model_id="m").features["amount"]
    counts = np.asarray(profile.counts, dtype=np.float64)
    rate, floor = null_rate("ks", counts, n, 4000, seed=n)
    print(f"\nks n={n}: floor {floor:.4f}, no-drift windows past it {rate:.4f}")
    assert rate <= LEVEL


@pytest.mark.parametrize("n", [50, 500])
def test_the_categorical_gate_holds_its_level(n):
    # a long tail of rare categories
    counts = np.array([8000, 6000, 3000, 1500, 800, 400, 200, 60, 30, 10], dtype=np.float64)
    rate, floor = null_rate("linf", counts, n, 4000, seed=n)
    print(f"\nlinf n={n}: floor {floor:.4f}, no-drift windows past it {rate:.4f}")
    assert rate <= LEVEL


def test_an_unknown_gate_is_refused():
    with pytest.raises(ValueError, match="psi"):
        critical_value("psi", LEVEL, n=10, reference=10, bins=2)
    assert critical_value("ks", LEVEL, n=0, reference=10, bins=2) == math.inf


FEATURES = 50
WINDOW = 200


@pytest.fixture(scope="module")
def wide():
    """A model with 50 numeric features and 200-event windows: the case fixed thresholds fail."""
    rng = np.random.default_rng(5)
    columns = {f"f{i}": rng.normal(size=20_000) for i in range(FEATURES)}
    baseline = build_profile(columns, model_id="wide")
    return baseline


def window_alerts(baseline, budget, events=40_000, shift=0.0, seed=9):
    settings = settings_from_baseline(
        baseline, window=WindowSettings(size=WINDOW, min_count=WINDOW), budget=budget
    )
    rng = np.random.default_rng(seed)
    monitor = ModelMonitor(settings, baseline)
    found = []
    for start in range(0, events, 10_000):
        columns = {name: rng.normal(loc=shift, size=10_000) for name in baseline.features}
        ts = (start + np.arange(10_000)) * 0.05  # 20 events/s: a window every 10 s
        found += monitor.update(Batch(ts, columns))
    return [f for f in found if f.kind == "drift" and f.detector == "window"]


def test_the_budget_stops_small_windows_paging_on_noise(wide):
    fixed = window_alerts(wide, None)
    budgeted = window_alerts(wide, Budget(false_alarms_per_day=0.1))
    print(
        f"\n{FEATURES} features, 200 windows of {WINDOW}: {len(fixed)} window alerts fixed, "
        f"{len(budgeted)} with the budget"
    )
    assert len(fixed) > FEATURES  # noise crosses the fixed thresholds all the time
    assert budgeted == []


def test_the_budget_keeps_a_real_shift_visible(wide):
    found = window_alerts(wide, Budget(false_alarms_per_day=0.1), events=10_000, shift=1.0)
    assert {f.feature for f in found} == set(wide.features)
    for finding in found:
        assert finding.threshold == stats.STATISTICS[finding.statistic].threshold


def test_the_tests_count_every_monitor_sharing_the_budget(wide):
    settings = settings_from_baseline(wide)
    # A gate, three quality checks and the CUSUM of each (numeric) column.
    assert window_tests(settings) == (1 + 3 + 1) * FEATURES
    assert window_tests(replace(settings, budget_monitors=4)) == 4 * window_tests(settings)
    assert window_tests(replace(settings, compare_previous=True)) == (2 + 3 + 1) * FEATURES
    assert window_tests(replace(settings, quality=None)) == 2 * FEATURES
    no_cusum = tuple(replace(f, detectors=("adwin",)) for f in settings.features)
    assert window_tests(replace(settings, features=no_cusum)) == (1 + 3) * FEATURES


def cusum_thresholds(monitor):
    return {w.detectors["cusum"].threshold for w in monitor.watches.values()}


def test_the_budget_sets_the_cusum_threshold_from_the_traffic_rate(wide):
    budget = Budget(false_alarms_per_day=0.1)
    settings = settings_from_baseline(wide, window=WindowSettings(size=WINDOW), budget=budget)
    rng = np.random.default_rng(3)
    monitor = ModelMonitor(settings, wide)
    assert cusum_thresholds(monitor) == {CUSUM_THRESHOLD}  # until a window closes
    columns = {name: rng.normal(size=WINDOW) for name in wide.features}
    monitor.update(Batch(np.arange(WINDOW) * 0.05, columns))  # 20 events/s
    level = budget.level(window_tests(settings), (WINDOW - 1) * 0.05)
    slow = threshold_for_rate(level / WINDOW)
    assert cusum_thresholds(monitor) == {slow}
    assert slow > CUSUM_THRESHOLD
    # Ten times the traffic: each event's share of the budget is ten times smaller.
    fast = ModelMonitor(settings, wide)
    fast.update(Batch(np.arange(WINDOW) * 0.005, columns))
    (threshold,) = cusum_thresholds(fast)
    assert threshold >= slow + math.log(10) / RATE_SLOPE - 0.25 - 1e-9
    # The threshold in effect is part of the state: a restored monitor keeps it.
    restored = ModelMonitor.from_state(settings, wide, json.loads(json.dumps(fast.to_state())))
    assert cusum_thresholds(restored) == {threshold}


def test_without_a_budget_the_cusum_keeps_the_configured_threshold(wide):
    settings = settings_from_baseline(wide, window=WindowSettings(size=WINDOW))
    monitor = ModelMonitor(settings, wide)
    rng = np.random.default_rng(4)
    monitor.update(
        Batch(np.arange(WINDOW * 2.0), {n: rng.normal(size=2 * WINDOW) for n in wide.features})
    )
    assert cusum_thresholds(monitor) == {CUSUM_THRESHOLD}
    # A state saved under a budget restores to the configured threshold without one.
    budgeted = ModelMonitor(replace(settings, budget=Budget()), wide)
    budgeted.update(
        Batch(np.arange(WINDOW * 2.0), {n: rng.normal(size=2 * WINDOW) for n in wide.features})
    )
    assert cusum_thresholds(budgeted) != {CUSUM_THRESHOLD}
    restored = ModelMonitor.from_state(settings, wide, budgeted.to_state())
    assert cusum_thresholds(restored) == {CUSUM_THRESHOLD}


def test_the_budgeted_cusum_switches_threshold_on_the_same_event_however_batched(wide):
    budget = Budget(false_alarms_per_day=0.1)
    names = list(wide.features)[:4]
    settings = settings_from_baseline(wide, window=WindowSettings(size=1000), budget=budget)
    settings = replace(settings, features=tuple(f for f in settings.features if f.name in names))
    rng = np.random.default_rng(11)
    n = 6000
    # 20 events/s, then 2,000/s from event 2,000 (the threshold steps up), and
    # a 0.7 sd shift from event 3,500 that the CUSUM catches.
    ts = np.concatenate([np.arange(2000) * 0.05, 100 + np.arange(n - 2000) * 0.0005])
    columns = {name: rng.normal(size=n) + 0.7 * (np.arange(n) >= 3500) for name in names}
    whole = ModelMonitor(settings, wide)
    expected = whole.update(Batch(ts, columns))
    split, found, start = ModelMonitor(settings, wide), [], 0
    for stop in (700, 1999, 2000, 2001, 3100, 3600, 4999, n):
        part = Batch(ts[start:stop], {k: v[start:stop] for k, v in columns.items()})
        found += [replace(f, row=f.row + start) for f in split.update(part)]
        split = ModelMonitor.from_state(settings, wide, json.loads(json.dumps(split.to_state())))
        start = stop
    assert found == expected
    assert split.to_state() == whole.to_state()
    cusum = [f for f in expected if f.detector == "cusum" and f.kind == "drift"]
    assert {f.feature for f in cusum} == set(names)
    # Each alert reports the threshold it was judged at: raised by the fast traffic.
    assert all(f.threshold > CUSUM_THRESHOLD for f in cusum)
    assert cusum_thresholds(whole) == {cusum[0].threshold}
