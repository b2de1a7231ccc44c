"""``update_cusums`` against each CUSUM's own ``update_many``, bit for bit."""

from __future__ import annotations

import base64
import copy
import doctest
import struct
from typing import Any

import numpy as np
import pytest
from harness import assert_identical as identical
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cusum import GOLDEN, poisson_like, shifting, uniform

from driftstream.core.detectors import CUSUM, update_cusums
from driftstream.core.detectors import cusum_bank as bank_module

CAP = 2**46
PARAMS: list[dict[str, Any]] = [
    {},
    {},
    {"threshold": 3.0, "min_instances": 0},
    {"threshold": 6.0, "min_instances": 200},
    {"shifts": (1.0,), "threshold": 5.0},
    {"shifts": (0.1, 0.3, 3.0), "threshold": 2.0, "min_instances": 500},
    {"shifts": (2.0, 0.25, 1.0, 0.5), "threshold": 9.0},
    {"shifts": (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4), "threshold": 20.0},
]
# Lengths around spans (32), one-span rounds (2048 points in all), the point-by-point
# threshold (16) and rounds (4096).
LENGTHS = [0, 0, 1, 2, 16, 17, 31, 32, 33, 64, 200, 200, 200, 257, 700, 2049, 4097, 9000]


def column(rng: np.random.Generator, size: int) -> np.ndarray:
    """Noise of random scale and offset, some tied, some with a shift to detect."""
    kind = int(rng.integers(6))
    if kind == 0:
        values = poisson_like(int(rng.integers(1000)), size)
    elif kind == 1:
        values = (rng.random(size) < 0.3).astype(np.float64)
    else:
        values = rng.normal(0.0, float(rng.choice([1e-6, 1.0, 300.0])), size)
    if kind == 2:
        values += float(rng.choice([1e6, -1e3]))
    if kind >= 3 and size > 4:
        cut = int(rng.integers(1, size))
        values[cut:] += float(rng.choice([-3.0, 1.0, 4.0])) * max(1e-9, float(values.std()))
    return values


_WARM: dict[tuple[Any, ...], CUSUM] = {}


def warmed(params: dict[str, Any], n: int, seed: int) -> CUSUM:
    """A detector after ``n`` points of unit noise (cached; the caller gets a copy)."""
    key = (tuple(sorted(params.items())), n, seed)
    if key not in _WARM:
        detector = CUSUM(**params)
        detector.update_many(np.random.default_rng(seed).normal(size=n))
        _WARM[key] = detector
    return copy.deepcopy(_WARM[key])


def after_a_detection(params: dict[str, Any], seed: int) -> CUSUM:
    """A detector whose last update detected drift, so its next one starts with a reset."""
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0.0, 1.0, 1500), rng.normal(8.0, 1.0, 3000)])
    hits = CUSUM(**params).update_many(values)
    detector = CUSUM(**params)
    detector.update_many(values[: int(hits[0]) + 1])
    assert detector.drift_detected
    return detector


def near_the_cap(params: dict[str, Any]) -> CUSUM:
    """Charts a little under the cap, as only a long wait for min_instances gives."""
    state = CUSUM(**params).to_state()
    charts = 2 * len(state["shifts"])
    raw = struct.pack("<3d", 0.0, 0.0, 10.0)
    for value in [CAP - 1000] * charts:
        while value > 0x7F:
            raw += bytes([value & 0x7F | 0x80])
            value >>= 7
        raw += bytes([value])
    state.update(n_seen=5, min_instances=10**9, running=base64.b64encode(raw).decode())
    return CUSUM.from_state(state)


def random_detector(rng: np.random.Generator) -> CUSUM:
    params = PARAMS[int(rng.integers(len(PARAMS)))]
    kind = int(rng.integers(7))
    if kind == 0:
        return CUSUM(**params)
    if kind == 1:
        return after_a_detection(params, int(rng.integers(3)))
    if kind == 2:
        return warmed(params, int(rng.choice([100_000, 1_000_000])), 0)
    if kind == 3 and rng.random() < 0.3:
        return near_the_cap(params)
    detector = CUSUM(**params)
    detector.update_many(rng.normal(size=int(rng.integers(1, 6000))))
    return detector


def assert_identical(
    bank_hits: list[np.ndarray],
    banked: list[CUSUM],
    loop_hits: list[np.ndarray],
    looped: list[CUSUM],
) -> None:
    """Same positions, same dtype, same state, to the bit (the packed records too)."""
    identical(bank_hits, banked, loop_hits, looped)
    for i, (ours, theirs) in enumerate(zip(banked, looped, strict=True)):
        assert ours._record == theirs._record, i


def check_against_update_many(detectors: list[CUSUM], batches: list[list[np.ndarray]]) -> int:
    """Feed ``batches`` to the bank and to each detector's ``update_many``; count detections."""
    looped = copy.deepcopy(detectors)
    found = 0
    for columns in batches:
        bank_hits = update_cusums(detectors, columns)
        loop_hits = [d.update_many(c) for d, c in zip(looped, columns, strict=True)]
        assert_identical(bank_hits, detectors, loop_hits, looped)
        found += sum(h.size for h in loop_hits)
    return found


def random_batches(rng: np.random.Generator, count: int, rounds: int) -> list[list[np.ndarray]]:
    return [[column(rng, int(rng.choice(LENGTHS))) for _ in range(count)] for _ in range(rounds)]


@pytest.mark.parametrize("seed", range(24))
def test_the_bank_equals_update_many(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    detectors = [random_detector(rng) for _ in range(int(rng.choice([1, 2, 7, 24])))]
    found = check_against_update_many(detectors, random_batches(rng, len(detectors), 3))
    if len(detectors) > 2:
        assert found > 0


@pytest.mark.parametrize("seed", range(3))
def test_many_detectors_at_once(seed: int) -> None:
    # From 384 detectors the running sums fold row by row; some at other positions.
    rng = np.random.default_rng(seed)
    detectors = [
        warmed(PARAMS[int(rng.integers(2))], 20_000, int(rng.integers(3))) for _ in range(500)
    ]
    for d in detectors[::7]:
        d.update_many(rng.normal(size=int(rng.integers(0, 300))))
    batches = [[uniform(rng, 200) for _ in detectors] for _ in range(3)]
    batches[0][3][50:] += 3.0
    batches[1][10][:20] += 5.0
    batches[2] = [uniform(rng, int(rng.choice([150, 200, 233]))) for _ in detectors]
    assert check_against_update_many(detectors, batches) >= 2


def test_a_detection_early_in_a_long_batch_of_many() -> None:
    # Rounds of about 250 points for 500 detectors; the one that detects in the
    # first round is at another position in the next ones.
    rng = np.random.default_rng(9)
    detectors = [warmed({}, 5000, i % 2) for i in range(500)]
    columns = [uniform(rng, 750) for _ in detectors]
    columns[17][30:] += 4.0
    columns[400][100:] -= 4.0
    assert check_against_update_many(detectors, [columns]) >= 2


def test_the_production_shape_matches() -> None:
    # Many detectors with the defaults, long histories, 200 values each, mostly no drift.
    rng = np.random.default_rng(7)
    detectors = [warmed({}, 50_000, int(rng.integers(4))) for _ in range(300)]
    for d in detectors:
        d.update_many(rng.normal(size=int(rng.integers(0, 300))))
    batches = [[rng.normal(size=200) for _ in detectors] for _ in range(3)]
    batches[1][5][100:] += 5.0
    assert check_against_update_many(detectors, batches) > 0


@pytest.mark.parametrize(("count", "length"), [(12, 5000), (12, 20_000), (100, 2000), (3, 50_000)])
def test_long_columns_match(count: int, length: int) -> None:
    rng = np.random.default_rng(count + length)
    detectors = [warmed({}, 5000, i % 3) for i in range(count)]
    columns = [uniform(rng, length) for _ in range(count)]
    columns[0][length // 3 :] += 0.4
    columns[-1][length // 2 :] -= 1.0
    assert check_against_update_many(detectors, [columns]) >= 2


def test_detections_in_many_places_at_once() -> None:
    # Every detector detects, at many different points: ragged ends of rounds,
    # spans flagged everywhere, short rounds after each reset.
    rng = np.random.default_rng(5)
    detectors = [CUSUM(threshold=2.0, min_instances=int(m)) for m in rng.integers(0, 40, 60)]
    columns = [
        shifting(int(s), shift=1.5, segments=6, length=300) for s in rng.integers(1000, size=60)
    ]
    assert check_against_update_many(detectors, [columns]) > 600


def test_columns_that_end_on_a_detection() -> None:
    detectors, columns = [], []
    for _, make, params, _ in GOLDEN:
        values = make()
        hits = CUSUM(**params).update_many(values)
        end = int(hits[len(hits) // 2]) + 1
        detector = CUSUM(**params)
        detector.update_many(values[: end - 150])
        detectors.append(detector)
        columns.append(values[end - 150 : end])
    assert check_against_update_many(detectors, [columns]) >= len(GOLDEN)
    assert all(d.drift_detected for d in detectors)


def test_the_bank_finds_the_golden_detections() -> None:
    # All golden streams at once, in chunks of random sizes, as a worker would feed them.
    rng = np.random.default_rng(11)
    detectors = [CUSUM(**params) for _, _, params, _ in GOLDEN]
    streams = [make() for _, make, _, _ in GOLDEN]
    found: list[list[int]] = [[] for _ in GOLDEN]
    pos = [0] * len(GOLDEN)
    while any(p < s.size for p, s in zip(pos, streams, strict=True)):
        sizes = [int(rng.choice([0, 1, 20, 200, 200, 1000, 5000])) for _ in GOLDEN]
        columns = [s[p : p + k] for s, p, k in zip(streams, pos, sizes, strict=True)]
        for i, hits in enumerate(update_cusums(detectors, columns)):
            found[i] += (hits + pos[i]).tolist()
            pos[i] += columns[i].size
    assert found == [expected for _, _, _, expected in GOLDEN]


shift_grids = st.sampled_from([(0.25, 0.5, 1.0, 2.0), (1.0,), (0.1, 0.3, 3.0), (3.0, 0.1)])
cusum_params = st.fixed_dictionaries(
    {
        "shifts": shift_grids,
        "threshold": st.sampled_from([0.5, 2.0, 5.0, 14.0]),
        "min_instances": st.integers(0, 60),
    }
)
values = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.0]), max_size=300
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(cusum_params, values, values, values), min_size=1, max_size=8))
def test_the_bank_on_arbitrary_streams(rows: list[Any]) -> None:
    detectors = [CUSUM(**params) for params, *_ in rows]
    batches = [[np.array(row[k], dtype=np.float64) for row in rows] for k in (1, 2, 3)]
    check_against_update_many(detectors, batches)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            cusum_params,
            st.sampled_from(["noise", "shifting", "ties"]),
            st.integers(0, 2**16),
            st.lists(st.integers(0, 3000), min_size=2, max_size=2),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_bank_on_random_shapes(rows: list[Any]) -> None:
    """Ragged lengths, with detections: many detectors, two batches each."""
    detectors: list[CUSUM] = []
    batches: list[list[np.ndarray]] = [[], []]
    for params, kind, seed, lengths in rows:
        rng = np.random.default_rng(seed)
        detectors.append(CUSUM(**params))
        for k, n in enumerate(lengths):
            if kind == "noise":
                batches[k].append(rng.normal(size=n))
            elif kind == "ties":
                batches[k].append(poisson_like(seed + k, n))
            else:
                batches[k].append(shifting(seed + k, shift=1.0, segments=3, length=n // 3 + 1)[:n])
    check_against_update_many(detectors, batches)


def test_empty_banks_and_empty_columns_change_nothing() -> None:
    assert update_cusums([], []) == []
    detectors = [warmed({}, 500, 0), after_a_detection({}, 0)]
    before = [d.to_state() for d in detectors]
    hits = update_cusums(detectors, [np.array([]), []])
    assert [h.tolist() for h in hits] == [[], []]
    assert all(h.dtype == np.int64 for h in hits)
    assert [d.to_state() for d in detectors] == before


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e101])
def test_a_bad_value_anywhere_changes_no_detector(bad: float) -> None:
    detectors = [warmed({}, 500, 0), warmed({}, 900, 1)]
    before = [d.to_state() for d in detectors]
    with pytest.raises(ValueError, match="position 3 of column 1"):
        update_cusums(detectors, [np.zeros(10), [0.0, 1.0, 2.0, bad]])
    assert [d.to_state() for d in detectors] == before


def test_malformed_calls_are_refused() -> None:
    detector = CUSUM()
    with pytest.raises(ValueError, match="2 detectors but 1 columns"):
        update_cusums([detector, CUSUM()], [np.zeros(3)])
    with pytest.raises(ValueError, match="more than once"):
        update_cusums([detector, detector], [np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="1-d"):
        update_cusums([detector], [np.zeros((2, 3))])


def test_spans_split_rounds_exactly_when_they_can() -> None:
    assert bank_module._spans(200, 1200) == (25, 8)
    assert bank_module._spans(4096, 12) == (32, 128)
    assert bank_module._spans(1000, 100) == (32, 32)  # no exact split: the last span is short
    assert bank_module._spans(200, 1) == (200, 1)  # small rounds: one span


def test_docstring_example() -> None:
    result = doctest.testmod(bank_module)
    assert result.attempted > 0
    assert result.failed == 0
