"""Per-event anomaly scores and the event-time token bucket.

The baseline is profiled from ``synthetic.frame``; held-out traffic is a
fresh draw from the same distributions, so the measured flagged share
includes the baseline's own sampling error. Run with ``-s`` to see it.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import orjson
import pytest
from statepaths import dotted, edited, walk

from driftstream import synthetic
from driftstream.core.anomaly import AnomalyScorer, TokenBucket
from driftstream.core.baseline import BaselineProfile, NumericProfile, build_profile
from driftstream.core.batch import Batch

FEATURES = (*synthetic.NUMERIC_FEATURES, *synthetic.CATEGORICAL_FEATURES)


@cache
def baseline() -> BaselineProfile:
    train = synthetic.frame(100_000, seed=1)
    return build_profile({name: train[name] for name in FEATURES}, model_id="fraud")


@cache
def scorer(rate: float = 1e-4) -> AnomalyScorer:
    return AnomalyScorer(baseline(), rate=rate)


def held_out(n: int, seed: int) -> Batch:
    data = synthetic.frame(n, seed=seed)
    return Batch(np.arange(n, dtype=np.float64), {name: data[name] for name in FEATURES})


# --- scores ---------------------------------------------------------------------------


def test_scores_are_finite_on_hostile_input() -> None:
    numeric = [np.nan, 1e300, -1e300, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308]
    labels = [None, "true", "false", "MX", "", "US", "💥" * 50, "nan", "1"]
    n = len(numeric)
    columns: dict[str, np.ndarray] = {}
    for name in synthetic.NUMERIC_FEATURES:
        columns[name] = np.array(numeric, dtype=np.float64)
    for name in synthetic.CATEGORICAL_FEATURES:
        columns[name] = np.array(labels, dtype=object)
    with np.errstate(all="raise"):
        result = scorer().score(Batch(np.zeros(n), columns))
    assert np.all(np.isfinite(result.scores))
    assert all(math.isfinite(value) for top in result.top for _, value in top)
    # A batch lacking every column (all missing) and an empty batch score too.
    empty = scorer().score(Batch(np.zeros(3), {}))
    assert np.all(np.isfinite(empty.scores))
    assert scorer().score(Batch(np.zeros(0), {})).scores.shape == (0,)


def test_far_values_score_higher_than_near_ones() -> None:
    profile = baseline().features["amount"]
    assert isinstance(profile, NumericProfile)
    values = np.array([profile.mean, profile.max * 1.01, profile.max * 2, profile.max * 100, 1e300])
    amounts = scorer().contributions(Batch(np.zeros(5), {"amount": values}))[0]
    assert np.all(np.diff(amounts) >= 0)
    assert amounts[0] < 1.0 < amounts[1] < amounts[-1] < 100


@pytest.mark.parametrize("seed", [2, 3])
def test_flagged_share_on_held_out_baseline_like_data(seed: int) -> None:
    rate = 1e-4
    result = scorer(rate).score(held_out(1_000_000, seed))
    share = result.rows.size / 1_000_000
    print(f"seed {seed}: flagged share {share:.2e} = {share / rate:.2f} x rate")
    assert 0.3 * rate <= share <= 3 * rate


@pytest.mark.parametrize("rate", [1e-3, 1e-2, 0.1])
def test_flagged_share_at_larger_rates(rate: float) -> None:
    result = AnomalyScorer(baseline(), rate=rate).score(held_out(200_000, seed=5))
    share = result.rows.size / 200_000
    print(f"rate {rate}: flagged share {share:.2e} = {share / rate:.2f} x rate")
    assert 0.3 * rate <= share <= 3 * rate


def test_injected_outlier_is_flagged_with_its_features_named() -> None:
    batch = held_out(2_000, seed=7)
    amount = batch.numeric("amount").copy()
    country = batch.categorical("country").copy()
    amount[100] *= 100
    country[100] = "MX"
    columns = dict(batch.columns) | {"amount": amount, "country": country}
    result = scorer().score(Batch(batch.ts, columns))
    assert result.scores[100] > result.threshold
    assert 100 in result.rows.tolist()
    top = result.top[result.rows.tolist().index(100)]
    assert [name for name, _ in top][:2] == ["amount", "country"]
    assert len(top) == 3
    assert [value for _, value in top] == sorted((value for _, value in top), reverse=True)


def test_top_features_are_given_only_for_flagged_rows() -> None:
    result = scorer(0.01).score(held_out(5_000, seed=8))
    assert len(result.top) == result.rows.size > 0
    assert np.array_equal(np.flatnonzero(result.flagged), result.rows)
    parts = scorer(0.01).contributions(held_out(5_000, seed=8))
    assert np.allclose(parts.sum(axis=0), result.scores)


def test_an_unseen_category_and_an_unexpected_null_are_surprising() -> None:
    columns = {
        "country": np.array(["US", "JP", None, "MX"], dtype=object),
        "device": np.array(["ios", "web", None, "tv"], dtype=object),
    }
    parts = scorer().contributions(Batch(np.zeros(4), columns))
    country = parts[FEATURES.index("country")]
    device = parts[FEATURES.index("device")]
    assert country[0] < country[1] < country[2] < country[3]
    assert device[3] > 10  # "tv" was never seen, and the profile has no "other" mass
    assert device[2] > 10  # device was never missing in training


def test_calibration_is_deterministic() -> None:
    again = AnomalyScorer(baseline())
    assert again.threshold == scorer().threshold


def test_columns_select_features() -> None:
    only = AnomalyScorer(baseline(), columns=["amount", "country"], rate=1e-3)
    assert only.contributions(held_out(10, seed=9)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"anomaly\.columns"):
        AnomalyScorer(baseline(), columns=["amount", "nope"])


@pytest.mark.parametrize("rate", [0, 0.0, -1e-4, 0.1000001, 0.5, 1.0, math.nan, math.inf, True])
def test_rate_outside_its_range_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=r"anomaly\.rate"):
        AnomalyScorer(baseline(), rate=rate)


def test_rate_at_its_upper_bound_is_accepted() -> None:
    assert AnomalyScorer(baseline(), rate=0.1).rate == 0.1


def test_scoring_speed_is_measured() -> None:
    """Reported, not asserted: timing belongs to the benchmarks."""
    import time

    batch = held_out(20_000, seed=10)
    scorer().score(batch)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        scorer().score(batch)
        best = min(best, time.perf_counter() - start)
    print(f"anomaly scoring: {20_000 / best:,.0f} events/s on 20,000-row batches")


# --- token bucket ---------------------------------------------------------------------


def test_bucket_admits_a_burst_then_refills_in_event_time() -> None:
    bucket = TokenBucket(per_minute=2, burst=2)
    admitted = bucket.admit(np.array([0.0, 1.0, 2.0, 3.0, 31.0, 32.0, 90.0, 91.0, 92.0]))
    assert admitted.tolist() == [True, True, False, False, True, False, True, True, False]
    assert bucket.suppressed == 1


def test_bucket_reports_what_it_suppressed_before_each_admission() -> None:
    bucket = TokenBucket(per_minute=1)
    admitted, dropped = bucket.admit_reporting(np.array([0.0, 5.0, 6.0, 7.0, 60.0, 61.0, 200.0]))
    assert admitted.tolist() == [True, False, False, False, True, False, True]
    assert dropped.tolist() == [0, 0, 0, 0, 3, 0, 1]
    assert bucket.suppressed == 0


def test_late_events_refill_nothing() -> None:
    bucket = TokenBucket(per_minute=1)
    assert bucket.take(100.0)
    assert not bucket.take(10.0)
    assert not bucket.take(150.0)
    assert bucket.take(160.0)


def stream(seed: int, n: int = 3_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(2.0, size=n))
    late = rng.random(n) < 0.1
    times[late] -= rng.uniform(0, 30, size=int(late.sum()))
    return times


@pytest.mark.parametrize("seed", range(5))
def test_bucket_does_not_depend_on_how_events_are_cut(seed: int) -> None:
    times = stream(seed)
    whole = TokenBucket(per_minute=3, burst=4)
    expected, expected_dropped = whole.admit_reporting(times)
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, times.size), size=40, replace=False))
    pieces = TokenBucket(per_minute=3, burst=4)
    got: list[np.ndarray] = []
    dropped: list[np.ndarray] = []
    for i, part in enumerate(np.split(times, cuts)):
        if i % 3 == 0:  # a restart between batches, through JSON
            pieces = TokenBucket.from_state(orjson.loads(orjson.dumps(pieces.to_state())))
        if i % 2:
            admitted, before = pieces.admit_reporting(part)
        else:
            taken, counts = [], []
            for t in part.tolist():
                suppressed = pieces.suppressed
                taken.append(pieces.take(t))
                counts.append(suppressed if taken[-1] else 0)
            admitted, before = np.array(taken, dtype=bool), np.array(counts, dtype=np.int64)
        got.append(admitted)
        dropped.append(before)
    assert np.array_equal(np.concatenate(got), expected)
    assert np.array_equal(np.concatenate(dropped), expected_dropped)
    assert pieces.to_state() == whole.to_state()
    assert 0 < expected.sum() < times.size


def test_bucket_state_round_trip() -> None:
    bucket = TokenBucket(per_minute=0.5, burst=3)
    bucket.admit(stream(9, 50))
    state = orjson.loads(orjson.dumps(bucket.to_state()))
    restored = TokenBucket.from_state(state)
    assert restored.to_state() == bucket.to_state()
    later = stream(10, 50) + 200_000
    assert np.array_equal(restored.admit(later), bucket.admit(later))
    assert TokenBucket.from_state(TokenBucket(1).to_state()).to_state() == TokenBucket(1).to_state()


def saved_bucket() -> dict[str, object]:
    bucket = TokenBucket(per_minute=2, burst=3)
    bucket.admit(np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    state = bucket.to_state()
    assert state["clock"] is not None and state["suppressed"] == 2
    return state


def damaged() -> list[tuple[str, tuple[object, ...], object, bool]]:
    cases: list[tuple[str, tuple[object, ...], object, bool]] = []
    for path, value in walk(saved_bucket()):
        if not path:
            continue
        key = dotted(path)
        cases.append((key, path, None, True))
        if key in ("kind", "version"):
            cases.append((key, path, "other", False))
            continue
        for bad in (math.nan, math.inf, True, "1", [1]):
            cases.append((key, path, bad, False))
        if isinstance(value, int):
            cases.append((key, path, -1, False))
    return cases


@pytest.mark.parametrize(("key", "path", "bad", "delete"), damaged())
def test_bucket_refuses_damaged_state_naming_the_key(
    key: str, path: tuple[object, ...], bad: object, delete: bool
) -> None:
    state = edited(saved_bucket(), path, bad, delete=delete)
    with pytest.raises(ValueError, match=f"token_bucket state .*'{key}'"):
        TokenBucket.from_state(state)


def test_bucket_refuses_unknown_keys_and_impossible_values() -> None:
    state = saved_bucket()
    with pytest.raises(ValueError, match="unknown key 'extra'"):
        TokenBucket.from_state({**state, "extra": 1})
    with pytest.raises(ValueError, match="'tokens'"):
        TokenBucket.from_state({**state, "tokens": 3.5})
    with pytest.raises(ValueError, match="'per_minute'"):
        TokenBucket.from_state({**state, "per_minute": 0})
    with pytest.raises(ValueError, match="'burst'"):
        TokenBucket.from_state({**state, "burst": 0})
    with pytest.raises(ValueError, match="must be a mapping"):
        TokenBucket.from_state([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("per_minute", "burst"),
    [(0, None), (-1, None), (math.nan, None), (True, None), (1, 0), (1, 1.5)],
)
def test_bucket_refuses_bad_settings(per_minute: float, burst: int | None) -> None:
    with pytest.raises(ValueError, match=r"anomaly\.(per_minute|burst)"):
        TokenBucket(per_minute, burst)


def test_bucket_refuses_non_finite_times() -> None:
    with pytest.raises(ValueError, match="finite"):
        TokenBucket(1).admit(np.array([0.0, math.nan]))
    with pytest.raises(ValueError, match="finite"):
        TokenBucket(1).take(math.inf)
