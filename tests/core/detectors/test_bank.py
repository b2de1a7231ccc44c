"""Banks of detectors against each detector's own ``update_many``, and against river."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from harness import assert_identical, river_positions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river import drift

from driftstream.core.detectors import ADWIN, PageHinkley, update_adwins, update_page_hinkleys
from driftstream.core.settings import DEFAULT_ADWIN, DEFAULT_PAGE_HINKLEY

Detector = Any
Bank = Callable[[list[Any], list[np.ndarray]], list[np.ndarray]]

ADWIN_PARAMS = [
    dict(DEFAULT_ADWIN),
    dict(DEFAULT_ADWIN),
    {},
    {"clock": 1, "delta": 0.01},
    {"clock": 32, "max_buckets": 2},
    {"clock": 128, "max_buckets": 3, "min_window_length": 1, "grace_period": 0},
    {"clock": 32, "max_buckets": 4, "min_window_length": 20, "grace_period": 1000},
    {"clock": 7, "delta": 0.1},
]
PH_PARAMS = [
    dict(DEFAULT_PAGE_HINKLEY),
    dict(DEFAULT_PAGE_HINKLEY),
    {},
    {"mode": "up", "threshold": 10.0, "alpha": 1.0},
    {"mode": "down", "threshold": 10.0, "min_instances": 500},
    {"alpha": 0.999, "threshold": 5.0},
    {"alpha": 0.99, "threshold": 3.0, "delta": 0.0},
    {"alpha": 0.9, "threshold": 2.0},
    {"alpha": 0.5, "threshold": 1.5, "min_instances": 0},
    {"threshold": 2.0, "min_instances": 0, "alpha": 1.0},
]
# Lengths that straddle clock checks, rounds and the per-detector fallback for long columns.
LENGTHS = [0, 0, 1, 1, 2, 5, 31, 127, 128, 129, 200, 200, 200, 256, 700, 2100, 4500]


def column(rng: np.random.Generator, size: int) -> np.ndarray:
    """Noise of random scale and offset, some binary, some with a shift to detect."""
    kind = rng.integers(5)
    if kind == 0:
        values = (rng.random(size) < rng.choice([0.1, 0.5])).astype(np.float64)
    else:
        values = rng.normal(0.0, float(rng.choice([0.01, 1.0, 3.0])), size)
    if kind == 1:
        values += float(rng.choice([1e3, -1e6]))
    if kind == 2 and size > 4:
        cut = int(rng.integers(1, size))
        values[cut:] += float(rng.choice([-6.0, 4.0, 8.0])) * max(1.0, float(values.std()))
    return values


_WARM: dict[tuple[Any, ...], Detector] = {}


def warmed(cls: type, params: dict[str, Any], n: int, seed: int) -> Detector:
    """A detector after ``n`` points of unit noise (cached; the caller gets a copy)."""
    key = (cls, tuple(sorted(params.items())), n, seed)
    if key not in _WARM:
        detector = cls(**params)
        detector.update_many(np.random.default_rng(seed).normal(size=n))
        _WARM[key] = detector
    return copy.deepcopy(_WARM[key])


def after_a_detection(cls: type, params: dict[str, Any], seed: int) -> Detector:
    """A detector whose last update detected drift, so its next one starts with a reset."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0.0, 1.0, 1500), rng.normal(8.0, 1.0, 3000)])
    hits = cls(**params).update_many(values)
    detector = cls(**params)
    detector.update_many(values[: int(hits[0]) + 1])
    assert detector.drift_detected
    return detector


def random_detector(cls: type, pool: list[dict[str, Any]], rng: np.random.Generator) -> Detector:
    params = pool[int(rng.integers(len(pool)))]
    state = rng.integers(6)
    if state == 0:
        return cls(**params)
    if state == 1:
        return after_a_detection(cls, params, int(rng.integers(3)))
    if state == 2:
        # Wide windows: 10^5 or 10^6 points.
        return warmed(cls, params, int(rng.choice([100_000, 1_000_000])), 0)
    if state == 3 and cls is PageHinkley:
        # Next to the end of a block of faded sums, which the batch may cross.
        block = cls(**params)._block
        n = max(0, block * int(rng.integers(1, 4)) - int(rng.choice([1, 50, 200])))
        return warmed(cls, params, n, 1)
    detector = cls(**params)
    detector.update_many(rng.normal(size=int(rng.integers(1, 6000))))
    return detector


def check_against_update_many(
    bank: Bank, detectors: list[Detector], batches: list[list[np.ndarray]]
) -> int:
    """Feed ``batches`` to the bank and to each detector's ``update_many``; count detections."""
    looped = copy.deepcopy(detectors)
    found = 0
    for columns in batches:
        bank_hits = bank(detectors, columns)
        loop_hits = [d.update_many(c) for d, c in zip(looped, columns, strict=True)]
        assert_identical(bank_hits, detectors, loop_hits, looped)
        found += sum(h.size for h in loop_hits)
    return found


def random_batches(rng: np.random.Generator, count: int, rounds: int) -> list[list[np.ndarray]]:
    return [[column(rng, int(rng.choice(LENGTHS))) for _ in range(count)] for _ in range(rounds)]


@pytest.mark.parametrize("seed", range(24))
def test_adwin_bank_equals_update_many(seed):
    rng = np.random.default_rng(seed)
    detectors = [random_detector(ADWIN, ADWIN_PARAMS, rng) for _ in range(24)]
    found = check_against_update_many(update_adwins, detectors, random_batches(rng, 24, 3))
    assert found > 0


@pytest.mark.parametrize("seed", range(24))
def test_page_hinkley_bank_equals_update_many(seed):
    rng = np.random.default_rng(100 + seed)
    detectors = [random_detector(PageHinkley, PH_PARAMS, rng) for _ in range(24)]
    found = check_against_update_many(update_page_hinkleys, detectors, random_batches(rng, 24, 3))
    assert found > 0


@pytest.mark.parametrize(
    ("bank", "cls", "params"),
    [
        (update_adwins, ADWIN, DEFAULT_ADWIN),
        (update_page_hinkleys, PageHinkley, DEFAULT_PAGE_HINKLEY),
    ],
)
def test_the_production_shape_matches(bank, cls, params):
    # Many detectors with the defaults, long windows, 200 values each, mostly no drift.
    rng = np.random.default_rng(7)
    detectors = [warmed(cls, dict(params), 50_000, int(rng.integers(4))) for _ in range(300)]
    for d in detectors:
        d.update_many(rng.normal(size=int(rng.integers(0, 300))))
    batches = [[rng.normal(size=200) for _ in detectors] for _ in range(3)]
    batches[1][5][100:] += 5.0
    assert check_against_update_many(bank, detectors, batches) > 0


def abrupt(seed: int, segments: int = 12, length: int = 1500) -> np.ndarray:
    """Unit noise around a mean that jumps by ±1.5 every ``length`` points."""
    rng = np.random.default_rng(seed)
    means = np.cumsum(rng.choice([-1.5, 1.5], size=segments))
    return np.repeat(means, length) + rng.normal(0.0, 1.0, segments * length)


def binary(seed: int, n: int = 18_000, period: int = 2500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.repeat(np.tile([0.1, 0.6, 0.3, 0.9], n // (4 * period) + 1), period)[:n]
    return (rng.random(n) < p).astype(np.float64)


# (parameters, stream) pairs, each with several detections.
GOLDEN_ADWIN = [
    ({}, abrupt(0)),
    (dict(DEFAULT_ADWIN), abrupt(1)),
    ({"clock": 1, "delta": 0.01}, abrupt(2, length=800)),
    ({"max_buckets": 2}, abrupt(3)),
    ({"clock": 4, "delta": 0.05, "max_buckets": 3, "grace_period": 0}, binary(4)),
]
GOLDEN_PAGE_HINKLEY = [
    ({}, abrupt(5)),
    (dict(DEFAULT_PAGE_HINKLEY), abrupt(6)),
    ({"mode": "up", "threshold": 20.0}, abrupt(7)),
    ({"mode": "down", "threshold": 20.0, "min_instances": 500}, abrupt(8)),
    ({"alpha": 0.99, "threshold": 5.0}, binary(9)),
]


@pytest.mark.parametrize(
    ("bank", "cls", "golden"),
    [
        (update_adwins, ADWIN, GOLDEN_ADWIN),
        (update_page_hinkleys, PageHinkley, GOLDEN_PAGE_HINKLEY),
    ],
)
def test_columns_that_end_on_a_detection(bank, cls, golden):
    # update_many shrinks the window when a batch ends on a detection; the bank must too.
    detectors, columns = [], []
    for params, values in golden:
        hits = cls(**params).update_many(values)
        end = int(hits[len(hits) // 2]) + 1
        detector = cls(**params)
        detector.update_many(values[: end - 150])
        detectors.append(detector)
        columns.append(values[end - 150 : end])
    assert check_against_update_many(bank, detectors, [columns]) >= len(golden)
    assert all(d.drift_detected for d in detectors)


@pytest.mark.parametrize("clock", [1, 32, 128])
def test_adwin_with_every_clock_phase(clock):
    # Detectors that have seen 0..clock-1 points more than each other, fed the same lengths.
    rng = np.random.default_rng(clock)
    detectors = []
    for phase in range(0, clock, max(1, clock // 16)):
        detector = warmed(ADWIN, {"clock": clock}, 20_000, 2)
        detector.update_many(rng.normal(size=phase))
        detectors.append(detector)
    batches = [[rng.normal(size=size) for _ in detectors] for size in (1, clock - 1, clock, 300)]
    check_against_update_many(update_adwins, detectors, batches)


def test_adwin_first_check_follows_the_grace_period():
    # Each column ends at the first clock check past the grace period, on a jump
    # so large that the check must cut: a check skipped there is a missed detection.
    detectors, columns = [], []
    for grace in (3, 5, 19, 20, 21, 64):
        for clock in (1, 4):
            end = max(4, (grace // clock + 1) * clock)
            detectors.append(ADWIN(delta=0.5, clock=clock, min_window_length=1, grace_period=grace))
            columns.append(np.repeat([0.0, 1000.0], [end // 2, end - end // 2]))
    found = check_against_update_many(update_adwins, detectors, [columns])
    assert found == len(detectors)
    assert all(d.drift_detected for d in detectors)


ph_params = st.fixed_dictionaries(
    {
        "min_instances": st.integers(0, 60),
        "delta": st.sampled_from([0.0, 0.005, 0.1]),
        "threshold": st.sampled_from([0.5, 3.0, 20.0]),
        "alpha": st.sampled_from([1.0, 0.9999, 0.99, 0.8]),
        "mode": st.sampled_from(["up", "down", "both"]),
    }
)
adwin_params = st.fixed_dictionaries(
    {
        "delta": st.sampled_from([0.002, 0.1, 0.5]),
        "clock": st.sampled_from([1, 3, 32]),
        "max_buckets": st.integers(2, 5),
        "min_window_length": st.integers(1, 8),
        "grace_period": st.integers(0, 40),
    }
)
values = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.0]), max_size=300
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(adwin_params, values, values, values), min_size=1, max_size=6))
def test_adwin_bank_on_arbitrary_streams(rows):
    detectors = [ADWIN(**params) for params, *_ in rows]
    batches = [[np.array(row[k], dtype=np.float64) for row in rows] for k in (1, 2, 3)]
    check_against_update_many(update_adwins, detectors, batches)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ph_params, values, values, values), min_size=1, max_size=6))
def test_page_hinkley_bank_on_arbitrary_streams(rows):
    detectors = [PageHinkley(**params) for params, *_ in rows]
    batches = [[np.array(row[k], dtype=np.float64) for row in rows] for k in (1, 2, 3)]
    check_against_update_many(update_page_hinkleys, detectors, batches)


@pytest.mark.parametrize(
    ("bank", "ours", "theirs", "golden"),
    [
        (update_adwins, ADWIN, drift.ADWIN, GOLDEN_ADWIN),
        (update_page_hinkleys, PageHinkley, drift.PageHinkley, GOLDEN_PAGE_HINKLEY),
    ],
)
def test_the_bank_finds_rivers_detections(bank, ours, theirs, golden):
    # All golden streams at once, in chunks of random sizes, as a worker would feed them.
    rng = np.random.default_rng(11)
    detectors = [ours(**params) for params, _ in golden]
    streams = [values for _, values in golden]
    found: list[list[int]] = [[] for _ in golden]
    pos = [0] * len(golden)
    while any(p < s.size for p, s in zip(pos, streams, strict=True)):
        sizes = [int(rng.choice([0, 1, 200, 200, 1000])) for _ in golden]
        columns = [s[p : p + k] for s, p, k in zip(streams, pos, sizes, strict=True)]
        for i, hits in enumerate(bank(detectors, columns)):
            found[i] += (hits + pos[i]).tolist()
            pos[i] += columns[i].size
    for (params, values), hits in zip(golden, found, strict=True):
        expected = river_positions(theirs, values, params)
        assert hits == expected, params
        assert len(expected) >= 3, params


@pytest.mark.parametrize("bank", [update_adwins, update_page_hinkleys])
def test_empty_banks_and_empty_columns_change_nothing(bank):
    assert bank([], []) == []
    cls = ADWIN if bank is update_adwins else PageHinkley
    detectors = [warmed(cls, {}, 500, 0), after_a_detection(cls, {}, 0)]
    before = [d.to_state() for d in detectors]
    hits = bank(detectors, [np.array([]), []])
    assert [h.tolist() for h in hits] == [[], []]
    assert all(h.dtype == np.int64 for h in hits)
    assert [d.to_state() for d in detectors] == before


@pytest.mark.parametrize("bank", [update_adwins, update_page_hinkleys])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e101])
def test_a_bad_value_anywhere_changes_no_detector(bank, bad):
    cls = ADWIN if bank is update_adwins else PageHinkley
    detectors = [warmed(cls, {}, 500, 0), warmed(cls, {}, 900, 1)]
    before = [d.to_state() for d in detectors]
    with pytest.raises(ValueError, match="position 3 of column 1"):
        bank(detectors, [np.zeros(10), [0.0, 1.0, 2.0, bad]])
    assert [d.to_state() for d in detectors] == before


@pytest.mark.parametrize("bank", [update_adwins, update_page_hinkleys])
def test_malformed_calls_are_refused(bank):
    cls = ADWIN if bank is update_adwins else PageHinkley
    detector = cls()
    with pytest.raises(ValueError, match="2 detectors but 1 columns"):
        bank([detector, cls()], [np.zeros(3)])
    with pytest.raises(ValueError, match="more than once"):
        bank([detector, detector], [np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="1-d"):
        bank([detector], [np.zeros((2, 3))])
