"""Multi-chart CUSUM: batch against scalar, saved state, detection on shifts."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from harness import feed_in_random_splits, round_trip

from driftstream.core.detectors import CUSUM
from driftstream.core.detectors import cusum as cusum_module

SQRT3 = math.sqrt(3.0)
SPLITS = [0, 1, 1, 2, 15, 16, 17, 31, 33, 255, 1000, 4095, 4097]


def uniform(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Standardised no-drift values as the monitor feeds them: uniform, unit variance."""
    return rng.uniform(-SQRT3, SQRT3, n) + shift


def shifting(seed: int, shift: float = 0.7, segments: int = 8, length: int = 3000) -> np.ndarray:
    """Unit-variance noise whose mean steps up and down by ``shift``: many detections."""
    rng = np.random.default_rng(seed)
    means = np.repeat(np.cumsum(rng.choice([-shift, shift], segments)), length)
    return means + uniform(rng, means.size)


def poisson_like(seed: int, n: int = 30000) -> np.ndarray:
    """Tied values away from zero mean, as a count standardised through its baseline CDF."""
    rng = np.random.default_rng(seed)
    levels = np.array([-1.73, -1.56, -1.04, -0.27, 0.51, 1.09, 1.44, 1.6])
    return levels[np.minimum(rng.poisson(3.0, n), levels.size - 1)]


STREAMS = {
    "shifting": lambda: shifting(0),
    "shifting-small": lambda: shifting(1, shift=0.4, length=5000),
    "ties": lambda: poisson_like(2),
    "constant-steps": lambda: np.repeat([0.0, 1.0, 1.0, 0.0, 2.0], 700),
    "offset": lambda: 1e6 + shifting(3),
}
PARAMS = [
    {},
    {"threshold": 3.0, "min_instances": 0},
    {"shifts": (1.0,), "threshold": 5.0},
    {"shifts": (0.1, 0.3, 3.0), "threshold": 2.0, "min_instances": 500},
]


def scalar_hits(detector: CUSUM, values: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(values.tolist()) if detector.update(x).drift_detected]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("stream", list(STREAMS))
def test_update_many_equals_the_scalar_loop_bit_for_bit(stream, params):
    values = STREAMS[stream]()
    loop = CUSUM(**params)
    expected = scalar_hits(loop, values)
    batch = CUSUM(**params)
    assert batch.update_many(values).tolist() == expected
    assert batch.to_state() == loop.to_state()
    if params.get("threshold") == 3.0 and stream != "constant-steps":
        assert len(expected) >= 5


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("params", PARAMS[:2])
def test_random_splits_give_the_same_positions_and_state(seed, params):
    values = shifting(10 + seed, length=2500)
    whole = CUSUM(**params)
    expected = whole.update_many(values).tolist()
    split = CUSUM(**params)
    hits = feed_in_random_splits(split, values, np.random.default_rng(seed), SPLITS)
    assert hits == expected
    assert split.to_state() == whole.to_state()


@pytest.mark.parametrize("codec", ["json", "orjson"])
@pytest.mark.parametrize("where", ["start", "half", "after-detection", "block-end"])
def test_restore_continues_identically(codec, where):
    values = shifting(20)
    whole = CUSUM()
    expected = whole.update_many(values).tolist()
    assert expected
    cut = {"start": 0, "half": values.size // 2, "after-detection": expected[0] + 1}.get(
        where, 4096
    )
    first = CUSUM()
    hits = first.update_many(values[:cut]).tolist()
    restored = CUSUM.from_state(round_trip(first.to_state(), codec))
    hits += (restored.update_many(values[cut:]) + cut).tolist()
    assert hits == expected
    assert restored.to_state() == whole.to_state()


def test_state_is_plain_bounded_json_data():
    detector = CUSUM()
    detector.update_many(uniform(np.random.default_rng(0), 100_000))
    state = detector.to_state()
    assert (state["kind"], state["version"]) == ("cusum", 1)
    assert len(state["climb"]) == len(state["floor"]) == 2 * len(detector.shifts)
    assert round_trip(state, "json") == state
    assert len(round_trip(state, "orjson")) < 20


@pytest.mark.parametrize(
    "key", ["kind", "version", "shifts", "threshold", "n_seen", "squares", "climb", "floor"]
)
def test_from_state_names_a_missing_key(key):
    detector = CUSUM()
    detector.update_many(np.arange(100.0))
    state = detector.to_state()
    del state[key]
    with pytest.raises(ValueError, match=key):
        CUSUM.from_state(state)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kind", "page_hinkley"),
        ("version", 0),
        ("shifts", []),
        ("shifts", [0.5, "1"]),
        ("threshold", -1.0),
        ("threshold", float("nan")),
        ("n_seen", -1),
        ("squares", -1.0),
        ("climb", [0.0]),
        ("floor", [1.0] * 8),
        ("drift_detected", 1),
        ("extra", 0),
    ],
)
def test_from_state_refuses_bad_values_naming_the_key(key, value):
    state = CUSUM().update(0.1).to_state()
    with pytest.raises(ValueError, match=key):
        CUSUM.from_state({**state, key: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [("shifts", ()), ("shifts", (0.5, -1.0)), ("threshold", 0.0), ("min_instances", -1)],
)
def test_bad_parameters_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        CUSUM(**{name: value})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_refused(bad):
    detector = CUSUM()
    with pytest.raises(ValueError, match="finite"):
        detector.update(bad)
    with pytest.raises(ValueError, match="position 1"):
        detector.update_many([0.0, bad])
    assert detector.n_seen == 0


@pytest.mark.parametrize(("shift", "low", "high"), [(1.0, 5, 80), (-1.0, 5, 80), (0.5, 30, 400)])
def test_a_clear_shift_is_found_with_a_sane_delay(shift, low, high):
    delays = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        values = np.concatenate([uniform(rng, 20_000), uniform(rng, 5000, shift)])
        hits = CUSUM().update_many(values)
        assert not (hits < 20_000).any()
        assert hits.size
        delays.append(int(hits[0]) - 20_000)
    assert low <= np.median(delays) <= high


def test_no_detection_on_a_long_no_drift_stream():
    values = uniform(np.random.default_rng(12345), 200_000)
    assert CUSUM().update_many(values).size == 0


def test_no_detection_on_tied_values_off_centre():
    # A count standardised through its baseline CDF: mean about -0.3, heavy ties.
    assert CUSUM().update_many(poisson_like(7, 200_000)).size == 0


def test_statistic_and_charts_report_what_is_compared():
    values = shifting(5)
    detector = CUSUM()
    for x in values.tolist():
        if detector.update(x).drift_detected:
            assert detector.statistic > detector.threshold
            charts = detector.charts
            assert max(charts["up"] + charts["down"]) == detector.statistic
            break
    else:
        pytest.fail("no detection")
    fresh = CUSUM()
    assert (fresh.statistic, fresh.mean, fresh.std) == (0.0, 0.0, 0.0)


def test_api_follows_the_other_detectors():
    detector = CUSUM()
    assert detector.update(1.0) is detector
    assert detector.n_seen == 1
    assert detector.shifts == cusum_module.DEFAULT_SHIFTS
    assert detector.threshold == cusum_module.DEFAULT_THRESHOLD
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="1-d"):
        detector.update_many(np.zeros((2, 3)))


def test_docstring_example():
    result = doctest.testmod(cusum_module)
    assert result.attempted > 0
    assert result.failed == 0
