"""DDM against river 0.26.1 (the oracle), batch against scalar, and saved state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from harness import check_restore, feed_in_random_splits, round_trip
from river import drift

from driftstream.core.detectors import DDM

N = 4_000


def rates(schedule: str, rng: np.random.Generator) -> np.ndarray:
    """The error rate at each point of a stream of ``N``."""
    t = np.arange(N)
    if schedule == "stable":
        return np.full(N, rng.uniform(0.0, 0.4))
    if schedule == "step":
        before, after = rng.uniform(0.01, 0.3), rng.uniform(0.05, 0.9)
        return np.where(t < rng.integers(100, N), before, after)
    if schedule == "gradual":
        return np.linspace(rng.uniform(0.0, 0.2), rng.uniform(0.3, 1.0), N)
    if schedule == "levels":
        return np.repeat(rng.uniform(0.0, 1.0, 8), N // 8)
    # "low": a nearly perfect model, so p_min is often 0 and any error detects.
    return np.full(N, rng.uniform(0.0, 0.03))


@dataclass(frozen=True)
class Case:
    """A 0/1 error stream drawn from a seed and a rate schedule, and the parameters."""

    seed: int
    schedule: str
    params: dict[str, Any] = field(default_factory=dict)

    def values(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        rate = rates(self.schedule, rng)
        return (rng.random(N) < rate).astype(np.float64)

    def __str__(self) -> str:
        return f"{self.schedule}-{self.seed}-{self.params}"


SCHEDULES = ("stable", "step", "gradual", "levels", "low")
PARAMS: list[dict[str, Any]] = [
    {},
    {"warm_start": 0},
    {"warm_start": 100, "warning_threshold": 1.5, "drift_threshold": 2.5},
    {"warm_start": 5, "warning_threshold": 3.0, "drift_threshold": 4},
]
CASES = [
    Case(seed, schedule, params) for seed in range(8) for schedule in SCHEDULES for params in PARAMS
]


def river_run(values: np.ndarray, params: dict[str, Any]) -> tuple[list[int], list[bool]]:
    """River's detection positions and its warning flag after every point."""
    detector = drift.binary.DDM(**params)
    hits, warnings = [], []
    for i, x in enumerate(values.tolist()):
        detector.update(int(x))
        if detector.drift_detected:
            hits.append(i)
        warnings.append(detector.warning_detected)
    return hits, warnings


def scalar_run(detector: DDM, values: np.ndarray) -> tuple[list[int], list[bool]]:
    hits, warnings = [], []
    for i, x in enumerate(values.tolist()):
        if detector.update(x).drift_detected:
            hits.append(i)
        warnings.append(detector.warning_detected)
    return hits, warnings


def test_the_golden_streams_detect_something():
    found = [bool(river_run(case.values(), case.params)[0]) for case in CASES]
    assert sum(found) > len(CASES) // 2


@pytest.mark.parametrize("case", CASES, ids=str)
def test_detections_and_warnings_equal_rivers_update_by_update(case):
    values = case.values()
    assert scalar_run(DDM(**case.params), values) == river_run(values, case.params)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_update_many_equals_river_and_the_scalar_loop_bit_for_bit(case):
    values = case.values()
    loop = DDM(**case.params)
    loop_hits, _ = scalar_run(loop, values)
    batch = DDM(**case.params)
    hits = batch.update_many(values).tolist()
    assert hits == river_run(values, case.params)[0] == loop_hits
    assert batch.to_state() == loop.to_state()
    assert batch.warning_detected == loop.warning_detected


@pytest.mark.parametrize("seed", range(40))
def test_random_parameters_and_long_streams_equal_river(seed):
    rng = np.random.default_rng(500 + seed)
    params = {
        "warm_start": int(rng.integers(0, 300)),
        "warning_threshold": float(rng.uniform(0.5, 3.0)),
        "drift_threshold": float(rng.uniform(1.0, 5.0)),
    }
    rate = np.repeat(rng.uniform(0.0, 1.0, 6) ** 2, 3_000)
    values = rng.random(rate.size) < rate
    river_hits, river_warnings = river_run(values.astype(np.float64), params)
    assert DDM(**params).update_many(values).tolist() == river_hits
    assert scalar_run(DDM(**params), values.astype(np.float64))[1] == river_warnings


def test_the_error_rate_is_rivers_running_mean_to_rounding():
    values = Case(1, "levels").values()
    river, ours = drift.binary.DDM(), DDM()
    for x in values.tolist():
        river.update(int(x))
        ours.update(x)
        assert ours.n_seen == river._p.n
        assert ours.error_rate == pytest.approx(river._p.get(), rel=1e-12, abs=1e-15)
    assert DDM().error_rate == 0.0


def test_frequent_detections_equal_rivers():
    # With warm_start 0, a success then an error detects: a detection every other point.
    values = np.tile([0.0, 1.0], 3_000)
    expected, _ = river_run(values, {"warm_start": 0})
    assert len(expected) == 3_000
    assert DDM(warm_start=0).update_many(values).tolist() == expected
    # Runs of successes past the warm start pin p_min at 0, so the next error detects.
    values = np.tile(np.r_[np.zeros(40), 1.0], 200)
    expected, _ = river_run(values, {})
    assert len(expected) == 200
    assert DDM().update_many(values).tolist() == expected


def test_a_rising_error_rate_is_detected_and_a_falling_one_is_not():
    rng = np.random.default_rng(0)
    rising = np.r_[rng.random(3_000) < 0.05, rng.random(1_000) < 0.4]
    hits = DDM().update_many(rising).tolist()
    assert hits and 3_000 <= hits[0] < 3_100
    falling = np.r_[rng.random(3_000) < 0.4, rng.random(3_000) < 0.05]
    assert DDM().update_many(falling).tolist() == []


def test_warnings_precede_a_detection_and_a_detection_clears_them():
    rng = np.random.default_rng(5)
    values = np.r_[rng.random(2_000) < 0.1, rng.random(2_000) < 0.3].astype(np.float64)
    detector = DDM()
    hits, warnings = scalar_run(detector, values)
    assert hits
    assert warnings[hits[0] - 1] and not warnings[hits[0]]
    assert not any(warnings[:30])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("schedule", ["gradual", "levels", "low"])
def test_arbitrary_splits_give_the_same_positions_and_state(seed, schedule):
    values = Case(seed, schedule).values()
    whole = DDM()
    expected = whole.update_many(values).tolist()
    rng = np.random.default_rng(seed)
    split = DDM()
    sizes = [0, 1, 1, 2, 7, 16, 17, 31, 33, 255, 1000, 8193]
    assert feed_in_random_splits(split, values, rng, sizes) == expected
    assert split.to_state() == whole.to_state()
    assert split.n_detections == len(expected)


RESTORE_CASES = [Case(seed, schedule) for seed in range(3) for schedule in SCHEDULES]
DRIFT_CASES = [c for c in CASES if DDM(**c.params).update_many(c.values()).size][::9]


@pytest.mark.parametrize("codec", ["json", "orjson"])
@pytest.mark.parametrize("case", RESTORE_CASES, ids=str)
def test_restore_mid_stream_equals_uninterrupted(case, codec):
    check_restore(DDM, case, codec, lambda values, hits: values.size // 3)
    # Inside the warm start: p_min is not tracked yet.
    check_restore(DDM, case, codec, lambda values, hits: 17)


@pytest.mark.parametrize("codec", ["json", "orjson"])
@pytest.mark.parametrize("case", DRIFT_CASES, ids=str)
def test_restore_right_after_a_detection_equals_uninterrupted(case, codec):
    # The saved detector still owes the reset that river does on the next update.
    check_restore(DDM, case, codec, lambda values, hits: hits[0] + 1)


def test_restore_before_the_first_point():
    restored = DDM.from_state(round_trip(DDM(warm_start=3).to_state(), "json"))
    values = Case(2, "step").values()
    expected = DDM(warm_start=3).update_many(values).tolist()
    assert restored.update_many(values).tolist() == expected


def test_detections_are_counted_across_resets_and_restores():
    values = np.tile(np.r_[np.zeros(40), 1.0], 100)
    detector = DDM()
    first = detector.update_many(values[:2_000]).size
    detector = DDM.from_state(round_trip(detector.to_state(), "json"))
    second = detector.update_many(values[2_000:]).size
    assert (first, second) == (48, 52)
    assert detector.n_detections == 100


def test_state_is_plain_bounded_json_data():
    detector = DDM()
    detector.update_many(Case(3, "gradual").values())
    state = detector.to_state()
    assert all(type(v) in (int, float, str, bool, type(None)) for v in state.values())
    assert (state["kind"], state["version"]) == ("ddm", 1)
    assert round_trip(state, "json") == state
    assert round_trip(state, "orjson") == state


def test_api_follows_river():
    detector = DDM()
    assert detector.update(1) is detector
    assert (detector.warm_start, detector.warning_threshold, detector.drift_threshold) == (
        30,
        2.0,
        3.0,
    )
    assert (detector.drift_detected, detector.warning_detected) == (False, False)
    assert (detector.n_seen, detector.error_rate, detector.n_detections) == (1, 1.0, 0)
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]


def test_bools_ints_and_floats_are_the_same_input():
    values = Case(4, "step").values()
    expected = DDM().update_many(values).tolist()
    assert DDM().update_many(values.astype(bool)).tolist() == expected
    assert DDM().update_many(values.astype(np.int64).tolist()).tolist() == expected
    assert DDM().update(True).error_rate == 1.0


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"warm_start": -1}, "'warm_start' must be an integer >= 0, got -1"),
        ({"warm_start": 1.5}, "'warm_start' must be an integer"),
        ({"warm_start": True}, "'warm_start' must be an integer"),
        ({"warning_threshold": 0}, "'warning_threshold' must be positive"),
        ({"warning_threshold": "2"}, "'warning_threshold' must be a number"),
        ({"drift_threshold": float("nan")}, "'drift_threshold' must be positive and finite"),
        ({"drift_threshold": float("inf")}, "'drift_threshold' must be positive and finite"),
        ({"drift_threshold": -3.0}, "'drift_threshold' must be positive"),
    ],
)
def test_bad_parameters_name_the_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        DDM(**params)


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan"), float("inf")])
def test_values_other_than_zero_and_one_are_refused_naming_them(bad):
    detector = DDM()
    detector.update_many(np.zeros(50))
    before = detector.to_state()
    with pytest.raises(ValueError, match=rf"0 or 1 .*got {bad!r} at position 2"):
        detector.update_many([0.0, 1.0, bad, 0.0])
    with pytest.raises(ValueError, match=rf"0 or 1 .*got {bad!r}"):
        detector.update(bad)
    assert detector.to_state() == before


def test_two_dimensional_input_is_refused():
    with pytest.raises(ValueError, match="1-d"):
        DDM().update_many(np.zeros((2, 3)))


def fed_state() -> dict[str, Any]:
    detector = DDM()
    detector.update_many(Case(1, "stable").values())
    return round_trip(detector.to_state(), "json")


@pytest.mark.parametrize("key", ["kind", "version", "warm_start", "n_errors", "p_min"])
def test_from_state_names_a_missing_key(key):
    state = fed_state()
    del state[key]
    with pytest.raises(ValueError, match=key):
        DDM.from_state(state)


def test_from_state_rejects_wrong_kind_and_version():
    state = fed_state()
    with pytest.raises(ValueError, match="kind"):
        DDM.from_state({**state, "kind": "page_hinkley"})
    with pytest.raises(ValueError, match="version"):
        DDM.from_state({**state, "version": 2})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_seen": -3}, "'n_seen' must be"),
        ({"n_errors": 1.5}, "'n_errors' must be"),
        ({"n_detections": True}, "'n_detections' must be"),
        ({"n_errors": 10**6}, "'n_errors' must not exceed n_seen"),
        ({"p_min": float("nan")}, "'p_min' must be a finite number"),
        ({"s_min": float("inf")}, "'s_min' must be a finite number"),
        ({"p_min": 1.5}, r"'p_min' must lie in \[0, 1\]"),
        ({"s_min": -0.1}, r"'s_min' must lie in \[0, 0.5\]"),
        ({"p_min": None}, "'p_min' must be a number with n_seen"),
        ({"n_seen": 10, "n_errors": 1}, "'p_min' must be null with n_seen 10"),
        ({"warning_detected": 1}, "'warning_detected' must be true or false"),
        ({"warning_detected": True, "drift_detected": True}, "'warning_detected' must be false"),
        ({"warning_threshold": -1.0}, "invalid parameters.*warning_threshold"),
        ({"warm_start": True}, "'warm_start' must be"),
    ],
)
def test_from_state_refuses_a_damaged_state_naming_the_key(changes, message):
    with pytest.raises(ValueError, match=message):
        DDM.from_state({**fed_state(), **changes})


def test_from_state_refuses_a_warning_before_the_warm_start_ends():
    state = round_trip(DDM().update(1).to_state(), "json")
    with pytest.raises(ValueError, match="cannot warn or detect with n_seen 1"):
        DDM.from_state({**state, "drift_detected": True})
