"""Multi-chart CUSUM: batch against scalar, saved state, detection on shifts."""

from __future__ import annotations

import base64
import copy
import doctest
import json
import math
import pickle
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from harness import feed_in_random_splits, round_trip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftstream.core.detectors import CUSUM
from driftstream.core.detectors import cusum as cusum_module

SQRT3 = math.sqrt(3.0)
SPLITS = [0, 1, 1, 2, 15, 16, 17, 31, 33, 255, 1000, 4095, 4097]
PARAMETERS = ("shifts", "threshold", "min_instances")
CAP = 2**46


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


def running_state(detector: CUSUM) -> dict[str, Any]:
    """``to_state()`` as the monitor keeps it: without the parameters."""
    state = detector.to_state()
    for key in PARAMETERS:
        del state[key]
    return state


def with_running(state: dict[str, Any], raw: bytes) -> dict[str, Any]:
    return {**state, "running": base64.b64encode(raw).decode("ascii")}


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def raw_running(anchor: float, total: float, squares: float, charts: list[int]) -> bytes:
    return struct.pack("<3d", anchor, total, squares) + b"".join(map(varint, charts))


# -- update, update_many and saved states agree bit for bit -------------------------


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("stream", list(STREAMS))
def test_update_many_equals_the_scalar_loop_bit_for_bit(
    stream: str, params: dict[str, Any]
) -> None:
    values = STREAMS[stream]()
    loop = CUSUM(**params)
    expected = scalar_hits(loop, values)
    batch = CUSUM(**params)
    assert batch.update_many(values).tolist() == expected
    assert batch.to_state() == loop.to_state()
    assert batch._record == loop._record
    if params.get("threshold") == 3.0 and stream != "constant-steps":
        assert len(expected) >= 5


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("params", PARAMS[:2])
def test_random_splits_give_the_same_positions_and_state(seed: int, params: dict[str, Any]) -> None:
    values = shifting(10 + seed, length=2500)
    whole = CUSUM(**params)
    expected = whole.update_many(values).tolist()
    split = CUSUM(**params)
    hits = feed_in_random_splits(split, values, np.random.default_rng(seed), SPLITS)
    assert hits == expected
    assert split.to_state() == whole.to_state()


@pytest.mark.parametrize("codec", ["json", "orjson"])
@pytest.mark.parametrize("where", ["start", "half", "after-detection", "on-detection", "4096"])
def test_restore_continues_identically(codec: str, where: str) -> None:
    values = shifting(20)
    whole = CUSUM()
    expected = whole.update_many(values).tolist()
    assert expected
    cut = {
        "start": 0,
        "half": values.size // 2,
        "after-detection": expected[0] + 1,
        "on-detection": expected[0],
    }.get(where, 4096)
    first = CUSUM()
    hits = first.update_many(values[:cut]).tolist()
    restored = CUSUM.from_state(round_trip(first.to_state(), codec))
    hits += (restored.update_many(values[cut:]) + cut).tolist()
    assert hits == expected
    assert restored.to_state() == whole.to_state()


stream_kinds = st.sampled_from(["shifting", "ties", "offset", "tiny", "constant"])
cusum_params = st.fixed_dictionaries(
    {
        "shifts": st.sampled_from([(0.25, 0.5, 1.0, 2.0), (1.0,), (0.1, 0.3, 3.0), (2.0, 0.5)]),
        "threshold": st.sampled_from([1.0, 3.0, 14.0]),
        "min_instances": st.integers(0, 80),
    }
)


def make_stream(kind: str, seed: int, n: int) -> np.ndarray:
    if kind == "shifting":
        return shifting(seed, segments=3, length=n // 3 + 1)[:n]
    if kind == "ties":
        return poisson_like(seed, n)
    if kind == "offset":
        return -1e6 + 1e3 * shifting(seed, segments=3, length=n // 3 + 1)[:n]
    if kind == "tiny":
        return 1e-9 * shifting(seed, segments=3, length=n // 3 + 1)[:n]
    return np.repeat([3.0, 3.0 + 2**-30], [n // 2, n - n // 2])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cusum_params,
    stream_kinds,
    st.integers(0, 2**16),
    st.integers(1, 6000),
    st.lists(st.integers(0, 6000), min_size=1, max_size=6),
)
def test_restore_at_random_cuts_equals_never_stopping(
    params: dict[str, Any], kind: str, seed: int, n: int, cuts: list[int]
) -> None:
    """Save, JSON round trip, restore at arbitrary points: the same detections and states."""
    values = make_stream(kind, seed, n)
    whole = CUSUM(**params)
    expected = whole.update_many(values).tolist()
    detector, hits, start = CUSUM(**params), [], 0
    for stop in [*sorted({min(c, n) for c in cuts}), n]:
        hits += (detector.update_many(values[start:stop]) + start).tolist()
        detector = CUSUM.from_state(json.loads(json.dumps(detector.to_state())))
        start = stop
    assert hits == expected
    assert detector.to_state() == whole.to_state()
    assert detector._record == whole._record


def test_charts_near_the_cap_take_the_clamp_in_every_path() -> None:
    # Charts only grow this large before min_instances; a state may hold them.
    state = CUSUM(min_instances=10**9).to_state()
    state["n_seen"] = 5
    state["running"] = base64.b64encode(raw_running(0.0, 0.0, 10.0, [CAP - 5] * 8)).decode()
    loop, batch = CUSUM.from_state(state), CUSUM.from_state(state)
    units = [256, 512, 1024, 2048]
    assert loop.update(100.0).charts["up"] == [math.ldexp(u * CAP, -24) for u in units]
    batch.update_many([100.0])
    values = uniform(np.random.default_rng(3), 5000) + 0.5
    assert scalar_hits(loop, values) == batch.update_many(values).tolist() == []
    assert loop.to_state() == batch.to_state()


def test_scores_are_clipped_far_out() -> None:
    # After many points an outlier lies more than 1024 standard deviations out.
    detector = CUSUM(min_instances=0)
    detector.update_many(np.tile([-1.0, 1.0], 600_000))
    loop = copy.deepcopy(detector)
    values = np.array([1e9, 0.5, -0.5])
    assert detector.update_many(values).tolist() == scalar_hits(loop, values) == [0]
    assert detector.to_state() == loop.to_state()


def test_constant_values_score_zero() -> None:
    detector = CUSUM(min_instances=0, threshold=0.5)
    assert detector.update_many(np.full(5000, 7.25)).size == 0
    assert detector.statistic == 0.0
    assert (detector.mean, detector.std) == (7.25, 0.0)


def test_shifts_are_rounded_to_multiples_of_2_to_the_minus_10() -> None:
    values = shifting(6)
    rounded = CUSUM(shifts=(307 / 1024, 2.0))
    exact = CUSUM(shifts=(0.3, 2.0))
    assert rounded.update_many(values).tolist() == exact.update_many(values).tolist()
    assert running_state(rounded) == running_state(exact)


# -- detection ----------------------------------------------------------------------

# Detections pinned on seeded streams, so that a change to the arithmetic shows.
Golden = tuple[str, Callable[[], np.ndarray], dict[str, Any], list[int]]
GOLDEN: list[Golden] = [
    ("shifting-0", lambda: shifting(0), {}, [3056, 6093, 9127, 12048, 15081, 18032, 21040]),
    (
        "shifting-small",
        lambda: shifting(1, shift=0.4, length=5000),
        {},
        [5084, 10093, 15249, 20248, 25343, 30173, 35220],
    ),
    ("offset", lambda: 1e6 + shifting(3), {}, [3092, 6082, 9064, 12068, 15084, 18063, 21048]),
    (
        "ties-shifted",
        lambda: np.concatenate([poisson_like(2, 20000), poisson_like(3, 10000) + 0.4]),
        {},
        [20253],
    ),
]
GOLDEN_MANY = [
    # (name, stream, parameters, detections, the first ten)
    (
        "low-threshold",
        lambda: shifting(4, length=1500),
        {"threshold": 3.0, "min_instances": 0},
        200,
        [42, 89, 256, 279, 295, 507, 606, 690, 757, 857],
    ),
    (
        "odd-shifts",
        lambda: shifting(5),
        {"shifts": (0.1, 0.3, 3.0), "threshold": 2.0, "min_instances": 500},
        44,
        [737, 1298, 1798, 2384, 2886, 3386, 3886, 4388, 4888, 5429],
    ),
]


@pytest.mark.parametrize(("name", "make", "params", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_detections(
    name: str, make: Callable[[], np.ndarray], params: dict[str, Any], expected: list[int]
) -> None:
    values = make()
    assert CUSUM(**params).update_many(values).tolist() == expected
    assert scalar_hits(CUSUM(**params), values) == expected


@pytest.mark.parametrize(
    ("name", "make", "params", "count", "first"), GOLDEN_MANY, ids=[g[0] for g in GOLDEN_MANY]
)
def test_golden_detection_counts(
    name: str, make: Callable[[], np.ndarray], params: dict[str, Any], count: int, first: list[int]
) -> None:
    hits = CUSUM(**params).update_many(make()).tolist()
    assert (len(hits), hits[:10]) == (count, first)


@pytest.mark.parametrize(("shift", "low", "high"), [(1.0, 5, 80), (-1.0, 5, 80), (0.5, 30, 400)])
def test_a_clear_shift_is_found_with_a_sane_delay(shift: float, low: int, high: int) -> None:
    delays = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        values = np.concatenate([uniform(rng, 20_000), uniform(rng, 5000, shift)])
        hits = CUSUM().update_many(values)
        assert not (hits < 20_000).any()
        assert hits.size
        delays.append(int(hits[0]) - 20_000)
    assert low <= np.median(delays) <= high


def test_no_detection_on_a_long_no_drift_stream() -> None:
    values = uniform(np.random.default_rng(12345), 200_000)
    assert CUSUM().update_many(values).size == 0


def test_no_detection_on_tied_values_off_centre() -> None:
    # A count standardised through its baseline CDF: mean about -0.3, heavy ties.
    assert CUSUM().update_many(poisson_like(7, 200_000)).size == 0


def test_statistic_and_charts_report_what_is_compared() -> None:
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


def test_min_instances_holds_back_the_first_detection() -> None:
    values = np.concatenate(
        [[0.0, 0.0, 0.0], np.full(60, 9.0), uniform(np.random.default_rng(1), 40)]
    )
    early = CUSUM(min_instances=0, threshold=3.0).update_many(values).tolist()
    late = CUSUM(min_instances=50, threshold=3.0)
    hits = late.update_many(values).tolist()
    assert early and early[0] < 49
    assert not hits or hits[0] >= 49
    assert hits == scalar_hits(CUSUM(min_instances=50, threshold=3.0), values)


# -- state ----------------------------------------------------------------------------


def test_state_is_plain_compact_json_data() -> None:
    detector = CUSUM()
    detector.update_many(uniform(np.random.default_rng(0), 100_000))
    state = detector.to_state()
    assert (state["kind"], state["version"]) == ("cusum", 2)
    assert set(state) == {"kind", "version", *PARAMETERS, "n_seen", "running", "drift_detected"}
    assert round_trip(state, "json") == state
    assert round_trip(state, "orjson") == state
    assert CUSUM.from_state(state)._record == detector._record


@pytest.mark.parametrize("n", [10_000, 1_000_000])
def test_running_state_fits_the_monitor_budget(n: int) -> None:
    # The monitor keeps the running part; at most ~150 bytes per detector.
    detector = CUSUM()
    detector.update_many(uniform(np.random.default_rng(n), n))
    assert len(orjson.dumps(running_state(detector))) <= 150


def test_a_fresh_state_reads_back() -> None:
    state = CUSUM().to_state()
    assert state["n_seen"] == 0
    assert CUSUM.from_state(state).to_state() == state
    assert base64.b64decode(state["running"]) == bytes(24 + 8)


@pytest.mark.parametrize(
    "key",
    [
        "kind",
        "version",
        "shifts",
        "threshold",
        "min_instances",
        "n_seen",
        "running",
        "drift_detected",
    ],
)
def test_from_state_names_a_missing_key(key: str) -> None:
    detector = CUSUM()
    detector.update_many(np.arange(100.0))
    state = detector.to_state()
    del state[key]
    with pytest.raises(ValueError, match=key):
        CUSUM.from_state(state)


def test_a_version_1_state_is_refused() -> None:
    old = {
        "kind": "cusum",
        "version": 1,
        "shifts": [0.25],
        "threshold": 14.0,
        "min_instances": 30,
        "n_seen": 1,
        "anchor": 0.0,
        "sum": 0.0,
        "squares": 0.0,
        "climb": [0.0, 0.0],
        "floor": [0.0, 0.0],
        "drift_detected": False,
    }
    with pytest.raises(ValueError, match=r"'version' must be 2, got 1"):
        CUSUM.from_state(old)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kind", "page_hinkley"),
        ("version", 1),
        ("version", True),
        ("shifts", []),
        ("shifts", [0.5, "1"]),
        ("shifts", [0.5, float("nan")]),
        ("shifts", [0.0001]),
        ("shifts", [0.5] * 17),
        ("threshold", -1.0),
        ("threshold", float("nan")),
        ("threshold", True),
        ("min_instances", -1),
        ("min_instances", 1.5),
        ("n_seen", -1),
        ("n_seen", True),
        ("n_seen", 2**53 + 1),
        ("running", 12),
        ("running", "not base64!"),
        ("running", "AAAA\n"),
        ("drift_detected", 1),
        ("extra", 0),
    ],
)
def test_from_state_refuses_bad_values_naming_the_key(key: str, value: Any) -> None:
    state = CUSUM().update(0.1).to_state()
    with pytest.raises(ValueError, match=key):
        CUSUM.from_state({**state, key: value})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "must start with 3 float64 values"),
        (struct.pack("<3d", 0.0, 0.0, 0.0), "ends inside chart 0 of 8"),
        (raw_running(0.0, 0.0, 0.0, [1] * 7), "ends inside chart 7 of 8"),
        (raw_running(0.0, 0.0, 0.0, [1] * 8) + b"\x00", "1 bytes after the 8 charts"),
        (raw_running(math.inf, 0.0, 0.0, [0] * 8), "non-finite anchor"),
        (raw_running(0.0, math.nan, 0.0, [0] * 8), "non-finite sum"),
        (raw_running(0.0, 0.0, -1.0, [0] * 8), "negative sum of squares"),
        (raw_running(0.0, 0.0, 0.0, [CAP + 1] + [0] * 7), "chart 0 above the cap"),
        (struct.pack("<3d", 0, 0, 0) + b"\x80\x00" + bytes(7), "chart 0 in a longer form"),
    ],
)
def test_a_damaged_running_value_is_refused(raw: bytes, problem: str) -> None:
    state = CUSUM().to_state()
    state["n_seen"] = 50
    with pytest.raises(ValueError, match=r"cusum state key 'running' .*" + problem):
        CUSUM.from_state(with_running(state, raw))


def test_a_reset_state_must_hold_reset_values() -> None:
    state = CUSUM().to_state()
    bad = with_running(state, raw_running(0.0, 0.0, 0.0, [3] + [0] * 7))
    with pytest.raises(ValueError, match="'n_seen' is 0"):
        CUSUM.from_state(bad)
    with pytest.raises(ValueError, match="'n_seen' is 0"):
        CUSUM.from_state({**state, "drift_detected": True})


def test_errors_name_the_full_key_path() -> None:
    at = cusum_module.StatePath("monitor", ("features", "amount", "detectors", "cusum"))
    state = CUSUM().to_state()
    with pytest.raises(ValueError, match=r"'features\.amount\.detectors\.cusum\.running'"):
        CUSUM.from_state({**state, "running": "###"}, at)


DAMAGES: dict[str, list[Any]] = {
    "kind": ["nonsense", 1, None],
    "version": [3, True, "2", None],
    "shifts": [[], "0.5", [float("nan")], [True], [0.0], None, 1.0],
    "threshold": [float("nan"), float("inf"), True, "14", None, -1.0, 1e6],
    "min_instances": [-1, 1.5, True, None, "30"],
    "n_seen": [-1, 1.5, True, None, 2**53 + 1],
    "running": [1, None, [], True, "@@@@", "AAAA"],
    "drift_detected": [1, 0, None, "true"],
}


@pytest.mark.parametrize("key", list(DAMAGES))
def test_every_saved_field_is_read_strictly(key: str) -> None:
    """Each field of a fed state, damaged, is refused with its name."""
    detector = CUSUM()
    detector.update_many(shifting(8, segments=2))
    state = detector.to_state()
    assert set(DAMAGES) == set(state)
    for bad in DAMAGES[key]:
        with pytest.raises(ValueError, match=f"'{key}"):
            CUSUM.from_state({**state, key: bad})


# -- parameters, input and API ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("shifts", ()),
        ("shifts", (0.5, -1.0)),
        ("shifts", (2.0**-11,)),
        ("shifts", (10.5,)),
        ("threshold", 0.0),
        ("min_instances", -1),
    ],
)
def test_bad_parameters_name_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        CUSUM(**{name: value})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e101])
def test_non_finite_input_is_refused(bad: float) -> None:
    detector = CUSUM()
    with pytest.raises(ValueError, match="detector input must be"):
        detector.update(bad)
    with pytest.raises(ValueError, match="position 1"):
        detector.update_many([0.0, bad])
    assert detector.n_seen == 0


def test_api_follows_the_other_detectors() -> None:
    detector = CUSUM()
    assert detector.update(1.0) is detector
    assert detector.n_seen == 1
    assert detector.shifts == cusum_module.DEFAULT_SHIFTS
    assert detector.threshold == cusum_module.DEFAULT_THRESHOLD
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        detector.threshold = 3.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        detector.shifts = (1.0,)  # type: ignore[misc]
    with pytest.raises(ValueError, match="1-d"):
        detector.update_many(np.zeros((2, 3)))
    assert detector.update_many([]).dtype == np.int64


def test_copies_are_independent() -> None:
    detector = CUSUM()
    detector.update_many(shifting(9, segments=1))
    copies = [copy.deepcopy(detector), copy.copy(detector), pickle.loads(pickle.dumps(detector))]
    for twin in copies:
        twin.update_many(np.full(100, 50.0))
        assert twin.to_state() != detector.to_state()
        assert twin._grid is detector._grid


def test_docstring_example() -> None:
    result = doctest.testmod(cusum_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_retune_keeps_the_charts_and_moves_the_limit() -> None:
    values = shifting(3)
    retuned, fixed = CUSUM(threshold=30.0), CUSUM(threshold=30.0)
    retuned.update_many(values[:5000])
    fixed.update_many(values[:5000])
    retuned.retune(10.0)
    assert retuned.charts == fixed.charts
    assert retuned.threshold == 10.0
    assert json.loads(json.dumps(retuned.to_state()))["threshold"] == 10.0
    # From here on it fires exactly where a detector built with 10 would.
    fresh = CUSUM(threshold=10.0)
    fresh.update_many(values[:5000])
    fresh._store(*fixed._running()[:5], fixed._running()[5])
    assert retuned.update_many(values[5000:]).tolist() == fresh.update_many(values[5000:]).tolist()
    with pytest.raises(ValueError, match="threshold"):
        retuned.retune(0.0)


def test_threshold_for_rate_follows_the_calibration() -> None:
    at_default = cusum_module.threshold_for_rate(cusum_module.DEFAULT_RATE)
    assert at_default == cusum_module.DEFAULT_THRESHOLD
    # Ten times fewer alarms cost ln(10) / slope more threshold, rounded up to a quarter.
    tenfold = cusum_module.threshold_for_rate(cusum_module.DEFAULT_RATE / 10)
    step = math.log(10) / cusum_module.RATE_SLOPE
    assert at_default + step <= tenfold < at_default + step + 0.25
    assert cusum_module.threshold_for_rate(1.0, floor=20.0) == 20.0
    with pytest.raises(ValueError, match="rate"):
        cusum_module.threshold_for_rate(0.0)
