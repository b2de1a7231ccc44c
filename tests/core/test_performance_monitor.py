"""The performance monitor and the join's bookkeeping: findings, and state saved and restored."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from driftstream.core import performance
from driftstream.core.join import JoinState
from driftstream.core.performance_monitor import (
    PerformanceMonitor,
    PerformanceSettings,
    WindowPairs,
)

SIZE = 500


def classifier_windows(count, seed, worse_from=None):
    """Windows of a calibrated binary classifier; from ``worse_from`` labels ignore the score."""
    rng = np.random.default_rng(seed)
    windows = []
    for number in range(count):
        score = rng.beta(2, 5, SIZE)
        truth = np.full(SIZE, 0.5) if worse_from is not None and number >= worse_from else score
        labels = np.where(rng.random(SIZE) < truth, "1", "0").astype(object)
        predictions = np.where(score > 0.5, "1", "0").astype(object)
        ts = number * 60.0 + np.sort(rng.uniform(0, 60, SIZE))
        windows.append(
            WindowPairs(number, number * 60.0, (number + 1) * 60.0, labels, predictions, score, ts)
        )
    return windows


@pytest.fixture(scope="module")
def reference():
    baseline = classifier_windows(40, 99)
    labels = np.concatenate([w.labels for w in baseline])
    predictions = np.concatenate([w.predictions for w in baseline])
    scores = np.concatenate([w.scores for w in baseline])
    return performance.reference(performance.CLASSIFICATION, labels, predictions, scores, "1")


def settings():
    return PerformanceSettings("m", performance.CLASSIFICATION, "1", min_count=200)


def kinds(findings):
    return [(f.kind, f.detector, f.statistic, f.row) for f in findings]


def test_a_worse_model_opens_episodes_and_a_steady_one_does_not(reference):
    monitor = PerformanceMonitor(settings(), reference)
    steady = [f for w in classifier_windows(30, 1) for f in monitor.judge(w)]
    assert steady == []
    worse = [f for w in classifier_windows(6, 2, worse_from=2) for f in monitor.judge(w)]
    opened = {(f.detector, f.statistic) for f in worse if f.kind == "performance"}
    assert ("window", "accuracy") in opened
    assert all(f.event_time >= 120.0 for f in worse)
    assert monitor.last_values["accuracy"] < reference.values["accuracy"]


def test_an_episode_resolves_after_good_windows(reference):
    monitor = PerformanceMonitor(settings(), reference)
    for window in classifier_windows(3, 3, worse_from=0):
        monitor.judge(window)
    found = [f for w in classifier_windows(4, 4) for f in monitor.judge(w)]
    assert ("resolved", "window", "accuracy") in {(f.kind, f.detector, f.statistic) for f in found}


def test_small_windows_are_not_judged_but_feed_the_detectors(reference):
    monitor = PerformanceMonitor(settings(), reference)
    window = classifier_windows(1, 5, worse_from=0)[0]
    tiny = WindowPairs(
        0,
        0.0,
        60.0,
        window.labels[:50],
        window.predictions[:50],
        window.scores[:50],
        window.ts[:50],
    )
    assert [f for f in monitor.judge(tiny) if f.detector == "window"] == []
    assert monitor.seen == 50


@pytest.mark.parametrize("cut", [1, 4, 7])
def test_save_restore_continue_equals_never_stopping(reference, cut):
    windows = classifier_windows(12, 6, worse_from=5)
    steady = PerformanceMonitor(settings(), reference)
    expected = [kinds(steady.judge(w)) for w in windows]
    first = PerformanceMonitor(settings(), reference)
    found = [kinds(first.judge(w)) for w in windows[:cut]]
    state = orjson.loads(orjson.dumps(first.to_state()))
    restored = PerformanceMonitor.from_state(settings(), reference, state)
    found += [kinds(restored.judge(w)) for w in windows[cut:]]
    assert found == expected
    assert restored.to_state() == steady.to_state()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("seen", -1, "seen"), ("open", {"accuracy": "x"}, "open"), ("adwin", 3, "adwin")],
)
def test_a_damaged_state_is_refused_naming_the_key(reference, key, value, message):
    monitor = PerformanceMonitor(settings(), reference)
    monitor.judge(classifier_windows(1, 7)[0])
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    state[key] = value
    with pytest.raises(ValueError, match=message):
        PerformanceMonitor.from_state(settings(), reference, state)


def test_join_state_round_trips_and_refuses_damage():
    state = JoinState(pred_max=100.0, judged=3, shards=16, pending_predictions=5)
    state.predictions.add([3, 4])
    state.paired.add([4])
    state.versions.encode(["v1", "v2", "v1"])
    saved = orjson.loads(orjson.dumps(state.to_state()))
    assert JoinState.from_state(saved) == state
    assert JoinState.from_state(JoinState().to_state()).pred_max == -math.inf
    for key, value in (("pending_labels", -2), ("prediction_buckets", [[1]]), ("versions", [1])):
        damaged = {**saved, key: value}
        with pytest.raises(ValueError, match=key):
            JoinState.from_state(damaged)


def two_versions(champion, challenger, seed):
    """One window's pairs: a champion's, then a challenger's, mixed in time."""
    both = np.concatenate
    names = np.array(["v1"] * len(champion) + ["v2"] * len(challenger), dtype=object)
    ts = both([champion.ts, challenger.ts])
    order = np.argsort(ts, kind="stable")
    return WindowPairs(
        champion.number,
        champion.start,
        champion.end,
        both([champion.labels, challenger.labels])[order],
        both([champion.predictions, challenger.predictions])[order],
        both([champion.scores, challenger.scores])[order],
        ts[order],
        names[order],
    )


def test_a_worse_challenger_is_compared_with_its_champion(reference):
    compared = PerformanceSettings(
        "m", performance.CLASSIFICATION, "1", min_count=200, compare_versions=True
    )
    monitor = PerformanceMonitor(compared, reference)
    champion = classifier_windows(12, 3)
    steady = classifier_windows(12, 4)
    worse = classifier_windows(12, 5, worse_from=4)
    found = []
    for number in range(12):
        challenger = worse[number] if number < 8 else steady[number]
        found += monitor.judge(two_versions(champion[number], challenger, number))
    opened = [f for f in found if f.kind == "comparison"]
    assert opened, "the challenger's metrics fell away from the champion's"
    assert {f.model_version for f in opened} == {"v2"}
    assert all(f.event_time >= 4 * 60.0 for f in opened)
    assert all(f.details["champion"] == "v1" and f.details["challenger"] == "v2" for f in opened)
    resolved = [f for f in found if f.kind == "resolved" and f.detector == "comparison"]
    assert {f.statistic for f in resolved} == {f.statistic for f in opened}

    quiet = PerformanceMonitor(compared, reference)
    pairs = zip(classifier_windows(30, 6), classifier_windows(30, 7), strict=True)
    alike = [
        f
        for number, (a, b) in enumerate(pairs)
        for f in quiet.judge(two_versions(a, b, number))
        if f.detector == "comparison"
    ]
    assert alike == [], "two versions of one model must not be told apart"
