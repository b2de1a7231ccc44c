"""Page-Hinkley against river 0.26.1 (the oracle), batch against scalar, and saved state."""

from __future__ import annotations

import numpy as np
import pytest
from harness import check_restore, feed_in_random_splits, river_positions, round_trip
from river import drift

from driftstream.core.detectors import PageHinkley


def river_state(detector: drift.PageHinkley) -> dict[str, float]:
    return {
        "mean": detector._x_mean.get(),
        "sum_increase": detector._sum_increase,
        "sum_decrease": detector._sum_decrease,
        "min_increase": detector._min_increase,
        "max_decrease": float(detector._max_decrease),
    }


def our_state(detector: PageHinkley) -> dict[str, float]:
    state = detector.to_state()
    low = state["min_increase"]
    return {
        "mean": detector.mean,
        "sum_increase": detector.sum_increase,
        "sum_decrease": detector.sum_decrease,
        "min_increase": float("inf") if low is None else low,
        "max_decrease": state["max_decrease"],
    }


def gap(ours: dict[str, float], river: dict[str, float]) -> float:
    """Largest difference, relative to the value's size (or to 1 for small values)."""
    worst = 0.0
    for key, expected in river.items():
        if ours[key] != expected:
            worst = max(worst, abs(ours[key] - expected) / max(1.0, abs(expected)))
    return worst


def test_update_matches_river_within_the_documented_bound(ph_case):
    river = drift.PageHinkley(**ph_case.params)
    ours = PageHinkley(**ph_case.params)
    river_hits, hits, worst = [], [], 0.0
    for i, x in enumerate(ph_case.values().tolist()):
        river.update(x)
        if ours.update(x).drift_detected:
            hits.append(i)
        if river.drift_detected:
            river_hits.append(i)
        assert ours.n_seen == river._x_mean.n
        worst = max(worst, gap(our_state(ours), river_state(river)))
    assert hits == river_hits
    assert len(river_hits) >= ph_case.min_detections
    assert worst <= ph_case.tolerance


def test_update_many_matches_river_and_the_scalar_loop_bit_for_bit(ph_case):
    values = ph_case.values()
    loop = PageHinkley(**ph_case.params)
    loop_hits = [i for i, x in enumerate(values.tolist()) if loop.update(x).drift_detected]
    batch = PageHinkley(**ph_case.params)
    hits = batch.update_many(values).tolist()
    assert hits == river_positions(drift.PageHinkley, values, ph_case.params) == loop_hits
    assert batch.to_state() == loop.to_state()


@pytest.mark.parametrize("seed", range(3))
def test_arbitrary_splits_give_the_same_positions_and_state(ph_case, seed):
    values = ph_case.values()
    whole = PageHinkley(**ph_case.params)
    expected = whole.update_many(values).tolist()
    rng = np.random.default_rng(seed)
    split = PageHinkley(**ph_case.params)
    hits = feed_in_random_splits(split, values, rng, [0, 1, 1, 2, 15, 16, 17, 255, 1000, 4097])
    assert hits == expected
    assert split.to_state() == whole.to_state()


@pytest.mark.parametrize("codec", ["json", "orjson"])
def test_restore_at_half_equals_uninterrupted(ph_case, codec):
    check_restore(PageHinkley, ph_case, codec, lambda values, hits: values.size // 2)


@pytest.mark.parametrize("codec", ["json", "orjson"])
def test_restore_right_after_a_detection_equals_uninterrupted(ph_drift_case, codec):
    # The saved detector still owes the reset that river does on the next update.
    check_restore(PageHinkley, ph_drift_case, codec, lambda values, hits: hits[0] + 1)


def test_restore_before_the_first_point_keeps_the_infinite_minimum():
    state = round_trip(PageHinkley().to_state(), "json")
    assert state["min_increase"] is None
    restored = PageHinkley.from_state(state)
    values = np.random.default_rng(3).normal(size=3000) + np.repeat([0.0, 3.0], 1500)
    assert restored.update_many(values).tolist() == PageHinkley().update_many(values).tolist()


def test_state_is_plain_bounded_json_data():
    detector = PageHinkley()
    detector.update_many(np.random.default_rng(0).normal(size=100_000))
    state = detector.to_state()
    assert all(type(v) in (int, float, str, bool, type(None)) for v in state.values())
    assert len(state) < 20
    assert (state["kind"], state["version"]) == ("page_hinkley", 1)
    assert round_trip(state, "orjson") == state


@pytest.mark.parametrize("key", ["kind", "version", "alpha", "mode", "n_seen", "min_increase"])
def test_from_state_names_a_missing_key(key):
    detector = PageHinkley()
    detector.update_many(np.arange(100.0))
    state = detector.to_state()
    del state[key]
    with pytest.raises(ValueError, match=key):
        PageHinkley.from_state(state)


def test_from_state_rejects_wrong_kind_and_version():
    state = PageHinkley().to_state()
    with pytest.raises(ValueError, match="kind"):
        PageHinkley.from_state({**state, "kind": "adwin"})
    with pytest.raises(ValueError, match="version"):
        PageHinkley.from_state({**state, "version": 0})


@pytest.mark.parametrize(
    ("name", "value"),
    [("mode", "sideways"), ("alpha", 0.0), ("alpha", 1.5), ("min_instances", -1)],
)
def test_bad_parameters_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        PageHinkley(**{name: value})


@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_non_finite_input_is_refused(bad):
    detector = PageHinkley()
    with pytest.raises(ValueError, match="finite"):
        detector.update(bad)
    with pytest.raises(ValueError, match="position 1"):
        detector.update_many([0.0, bad])
    assert detector.n_seen == 0


def test_statistic_is_the_value_compared_with_the_threshold():
    values = np.random.default_rng(4).normal(size=2000) + np.repeat([0.0, 2.0], 1000)
    for mode in ("up", "down", "both"):
        detector = PageHinkley(mode=mode)
        for x in values.tolist():
            if detector.update(x).drift_detected:
                assert detector.statistic > detector.threshold
                break
        else:
            pytest.fail(f"no detection in mode {mode}")
    assert PageHinkley().statistic == 0.0


def test_api_follows_river():
    detector = PageHinkley()
    assert detector.update(1.0) is detector
    assert detector.n_seen == 1
    assert (detector.min_instances, detector.delta, detector.threshold) == (30, 0.005, 50.0)
    assert (detector.alpha, detector.mode) == (1 - 0.0001, "both")
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(30))
def test_random_parameters_and_streams_match_river(seed):
    rng = np.random.default_rng(2000 + seed)
    params = {
        "min_instances": int(rng.integers(0, 100)),
        "delta": float(rng.choice([0.0, 0.005, 0.05, 0.5])),
        "threshold": float(rng.choice([1.0, 5.0, 20.0, 50.0])),
        "alpha": float(rng.choice([0.5, 0.9, 0.999, 1 - 0.0001, 1.0])),
        "mode": str(rng.choice(["up", "down", "both"])),
    }
    means = np.repeat(rng.normal(0.0, 2.0, 8), 500)
    values = means + rng.normal(0.0, rng.choice([0.1, 1.0, 5.0]), means.size)
    if seed % 3 == 0:
        values = (values > means.mean()).astype(np.float64)
    loop = PageHinkley(**params)
    loop_hits = [i for i, x in enumerate(values.tolist()) if loop.update(x).drift_detected]
    batch = PageHinkley(**params)
    assert (
        batch.update_many(values).tolist()
        == river_positions(drift.PageHinkley, values, params)
        == loop_hits
    )
    assert batch.to_state() == loop.to_state()


def test_two_dimensional_input_is_refused():
    with pytest.raises(ValueError, match="1-d"):
        PageHinkley().update_many(np.zeros((2, 3)))
