"""DDM against river 0.26 (the oracle), batch against scalar, and saved state."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_restore, feed_in_random_splits, round_trip
from river import drift

from driftstream.core.detectors import DDM


class Case:
    """A 0/1 error stream: a rate, then (maybe) another, from a seed."""

    def __init__(self, seed: int, params: dict | None = None, schedule: str = "step") -> None:
        self.seed = seed
        self.params = params or {}
        self.schedule = schedule

    def values(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        n = 4_000
        if self.schedule == "stable":
            rate = np.full(n, rng.uniform(0.01, 0.4))
        elif self.schedule == "step":
            before, after = rng.uniform(0.01, 0.3), rng.uniform(0.05, 0.8)
            rate = np.where(np.arange(n) < rng.integers(100, n), before, after)
        else:  # a gradual rise
            rate = np.linspace(rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.9), n)
        return (rng.random(n) < rate).astype(np.float64)

    def __repr__(self) -> str:
        return f"Case({self.seed}, {self.params}, {self.schedule!r})"


PARAMS = [
    {},
    {"warm_start": 0},
    {"warm_start": 100, "warning_threshold": 1.5, "drift_threshold": 2.5},
]
CASES = [
    Case(seed, params, schedule)
    for seed in range(12)
    for params in PARAMS
    for schedule in ("stable", "step", "gradual")
]


def river_run(case: Case) -> tuple[list[int], list[bool]]:
    detector = drift.binary.DDM(**case.params)
    hits, warnings = [], []
    for i, x in enumerate(case.values()):
        detector.update(int(x))
        if detector.drift_detected:
            hits.append(i)
        warnings.append(detector.warning_detected)
    return hits, warnings


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_detections_and_warnings_equal_rivers(case):
    expected_hits, expected_warnings = river_run(case)
    assert DDM(**case.params).update_many(case.values()).tolist() == expected_hits
    scalar = DDM(**case.params)
    warnings = [scalar.update(x).warning_detected for x in case.values()]
    assert warnings == expected_warnings


def test_a_rising_error_rate_is_detected_soon_after_the_change():
    case = Case(3, schedule="step")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(3000) < 0.05, rng.random(1000) < 0.4])
    hits = DDM().update_many(values).tolist()
    assert hits and 3000 <= hits[0] < 3100
    assert case.values().size == 4000


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_give_the_same_detections(seed):
    case = Case(seed, schedule="gradual")
    expected = DDM().update_many(case.values()).tolist()
    rng = np.random.default_rng(seed)
    assert feed_in_random_splits(DDM(), case.values(), rng, [1, 2, 7, 50, 400]) == expected


@pytest.mark.parametrize("codec", ["json", "orjson"])
@pytest.mark.parametrize("case", CASES[::7], ids=repr)
def test_restored_state_continues_as_if_never_stopped(case, codec):
    check_restore(
        DDM, case, codec, lambda values, hits: (hits[0] + 1) if hits else len(values) // 2
    )
    check_restore(DDM, case, codec, lambda values, hits: len(values) // 3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"warm_start": -1}, "warm_start"),
        ({"warm_start": 1.5}, "warm_start"),
        ({"warning_threshold": 0}, "warning_threshold"),
        ({"drift_threshold": float("nan")}, "drift_threshold"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        DDM(**params)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, float("nan")])
def test_values_other_than_zero_and_one_are_refused(value):
    with pytest.raises(ValueError, match="0 or 1"):
        DDM().update_many([0.0, value])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("mean", 1.5, "mean"),
        ("n_seen", -3, "n_seen"),
        ("p_min", None, "together"),
        ("warning_detected", 1, "warning_detected"),
    ],
)
def test_a_damaged_state_is_refused_naming_the_key(key, value, message):
    detector = DDM()
    detector.update_many(Case(1).values())
    state = round_trip(detector.to_state(), "json")
    state[key] = value
    with pytest.raises(ValueError, match=message):
        DDM.from_state(state)
