"""ADWIN against river 0.26.1 (the oracle), batch against scalar, and saved state."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import numpy as np
import pytest
from harness import check_restore, feed_in_random_splits, round_trip
from river import drift

from driftstream.core.detectors import ADWIN
from driftstream.core.state import StatePath


def river_trace(values: np.ndarray, params: dict[str, Any]) -> tuple[list[int], list[tuple]]:
    """River's detection positions and its (width, total, variance, n_detections) per step."""
    detector = drift.ADWIN(**params)
    hits, trace = [], []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            hits.append(i)
        trace.append((detector.width, detector.total, detector.variance, detector.n_detections))
    return hits, trace


def our_trace(values: np.ndarray, params: dict[str, Any]) -> tuple[list[int], list[tuple]]:
    detector = ADWIN(**params)
    hits, trace = [], []
    for i, x in enumerate(values.tolist()):
        if detector.update(x).drift_detected:
            hits.append(i)
        trace.append((detector.width, detector.total, detector.variance, detector.n_detections))
    return hits, trace


def test_update_is_bit_identical_to_river_at_every_step(adwin_case):
    values = adwin_case.values()
    river_hits, river_steps = river_trace(values, adwin_case.params)
    hits, steps = our_trace(values, adwin_case.params)
    assert hits == river_hits
    assert len(river_hits) >= adwin_case.min_detections
    first_difference = next(
        (i for i, (a, b) in enumerate(zip(steps, river_steps, strict=True)) if a != b), None
    )
    assert first_difference is None


def test_update_many_matches_river(adwin_case):
    values = adwin_case.values()
    river = drift.ADWIN(**adwin_case.params)
    river_hits = []
    for i, x in enumerate(values.tolist()):
        river.update(x)
        if river.drift_detected:
            river_hits.append(i)
    detector = ADWIN(**adwin_case.params)
    assert detector.update_many(values).tolist() == river_hits
    ours = (detector.width, detector.total, detector.variance, detector.n_detections)
    assert ours == (river.width, river.total, river.variance, river.n_detections)
    assert detector.drift_detected == river.drift_detected
    assert detector.estimation == river.estimation


def test_update_many_ending_on_a_detection_has_the_shrunk_window(adwin_drift_case):
    case = adwin_drift_case
    values = case.values()
    hits = ADWIN(**case.params).update_many(values)
    end = int(hits[len(hits) // 2]) + 1
    batch, loop = ADWIN(**case.params), ADWIN(**case.params)
    batch.update_many(values[:end])
    for x in values[:end]:
        loop.update(x)
    assert batch.drift_detected
    assert batch.to_state() == loop.to_state()


@pytest.mark.parametrize("seed", range(3))
def test_arbitrary_splits_give_the_same_positions_and_state(adwin_case, seed):
    values = adwin_case.values()
    whole = ADWIN(**adwin_case.params)
    expected = whole.update_many(values).tolist()
    rng = np.random.default_rng(seed)
    split = ADWIN(**adwin_case.params)
    hits = feed_in_random_splits(split, values, rng, [0, 1, 1, 2, 31, 32, 33, 100, 1000, 5000])
    assert hits == expected
    assert split.to_state() == whole.to_state()


@pytest.mark.parametrize("codec", ["json", "orjson"])
def test_restore_at_half_equals_uninterrupted(adwin_case, codec):
    check_restore(ADWIN, adwin_case, codec, lambda values, hits: values.size // 2)


@pytest.mark.parametrize("codec", ["json", "orjson"])
def test_restore_right_after_a_detection_equals_uninterrupted(adwin_drift_case, codec):
    # The saved detector still owes the reset that river does on the next update.
    check_restore(ADWIN, adwin_drift_case, codec, lambda values, hits: hits[0] + 1)


def plain(value: Any) -> bool:
    """True if ``value`` is built only from JSON's own Python types."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return type(value) in (int, float, str, bool, type(None))


def test_state_is_plain_json_data():
    detector = ADWIN()
    detector.update_many(np.random.default_rng(0).normal(size=5000))
    state = detector.to_state()
    assert plain(state)
    assert state["kind"] == "adwin"
    assert state["version"] == 2
    assert round_trip(state, "json") == state


def test_state_stays_small_on_a_long_stream():
    detector = ADWIN()
    detector.update_many(np.random.default_rng(1).normal(size=100_000))
    assert detector.width == 100_000
    state = detector.to_state()
    assert sum(state["bucket_counts"]) < 100
    # 8 bytes a value in base64: about 11 characters, against about 20 as JSON numbers.
    assert len(state["bucket_totals"]) + len(state["bucket_variances"]) < 2 * 100 * 11


def test_batch_and_scalar_agree_on_an_empty_batch():
    detector = ADWIN()
    assert detector.update_many(np.array([])).tolist() == []
    assert detector.to_state() == ADWIN().to_state()


@pytest.mark.parametrize(
    "key", ["kind", "version", "delta", "width", "bucket_counts", "bucket_totals", "tick"]
)
def test_from_state_names_a_missing_key(key):
    detector = ADWIN()
    detector.update_many(np.arange(100.0))
    state = detector.to_state()
    del state[key]
    with pytest.raises(ValueError, match=key):
        ADWIN.from_state(state)


def test_from_state_rejects_wrong_kind_and_version():
    state = ADWIN().to_state()
    with pytest.raises(ValueError, match="kind"):
        ADWIN.from_state({**state, "kind": "page_hinkley"})
    with pytest.raises(ValueError, match="version"):
        ADWIN.from_state({**state, "version": 1})


def test_from_state_rejects_an_inconsistent_window():
    detector = ADWIN()
    detector.update_many(np.arange(50.0))
    state = detector.to_state()
    with pytest.raises(ValueError, match="width"):
        ADWIN.from_state({**state, "width": 49})
    counts = state["bucket_counts"]
    with pytest.raises(ValueError, match="'width' does not match 'bucket_counts'"):
        ADWIN.from_state({**state, "bucket_counts": [*counts[:-1], counts[-1] - 1]})
    with pytest.raises(ValueError, match="'bucket_counts' must hold one count"):
        ADWIN.from_state({**state, "bucket_counts": [6, *counts[1:]]})
    with pytest.raises(ValueError, match="'bucket_counts' must hold one count"):
        ADWIN.from_state({**state, "bucket_counts": [], "width": 0})


def buckets_state() -> dict[str, Any]:
    detector = ADWIN()
    detector.update_many(np.random.default_rng(3).normal(size=3000))
    return detector.to_state()


def encoded(values: list[float]) -> str:
    return base64.b64encode(np.array(values, dtype="<f8").tobytes()).decode("ascii")


def test_buckets_are_saved_as_base64_float64_per_level():
    detector = ADWIN()
    detector.update_many(np.random.default_rng(3).normal(size=3000))
    state = detector.to_state()
    assert len(state["bucket_counts"]) > 5
    assert state["bucket_counts"] == [len(level) for level in detector._totals]
    flat_totals = [t for level in detector._totals for t in level]
    assert state["bucket_totals"] == encoded(flat_totals)
    # Level 0 variances are always 0.0 and left out.
    assert all(v == 0.0 for v in detector._variances[0])
    assert state["bucket_variances"] == encoded([v for lv in detector._variances[1:] for v in lv])


def test_from_state_restores_the_buckets_bit_for_bit():
    detector = ADWIN()
    detector.update_many(np.random.default_rng(4).normal(size=3000) * 1e-3 + 1e6)
    restored = ADWIN.from_state(round_trip(detector.to_state(), "orjson"))
    for saved, loaded in (
        (detector._totals, restored._totals),
        (detector._variances, restored._variances),
    ):
        assert [np.array(lv).tobytes() for lv in loaded] == [np.array(lv).tobytes() for lv in saved]
        assert all(type(v) is float for level in loaded for v in level)
    assert restored.to_state() == detector.to_state()


def test_an_empty_detector_round_trips():
    state = ADWIN().to_state()
    assert state["bucket_counts"] == [0]
    assert state["bucket_totals"] == state["bucket_variances"] == ""
    restored = ADWIN.from_state(state)
    assert (restored._totals, restored._variances) == ([[]], [[]])


def decoded(text: str) -> list[float]:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").tolist()


DAMAGES = {
    "not base64": (lambda text: "not base64!", "must be base64 of little-endian float64"),
    "cut short": (lambda text: text[:-1], "must be base64 of little-endian float64"),
    "one value too many": (lambda text: encoded([*decoded(text), 1.0]), "must hold"),
    "one value too few": (lambda text: encoded(decoded(text)[1:]), "must hold"),
    "nan": (lambda text: encoded([math.nan, *decoded(text)[1:]]), "got nan at position 0"),
    "-inf": (lambda text: encoded([*decoded(text)[:-1], -math.inf]), "finite numbers, got -inf"),
    "a number": (lambda text: 12, "must be a string, got 12"),
    "a list": (lambda text: decoded(text), "must be a string, got ["),
}


@pytest.mark.parametrize("key", ["bucket_totals", "bucket_variances"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_from_state_refuses_damaged_buckets_naming_the_key_path(key, damage):
    state = buckets_state()
    change, problem = DAMAGES[damage]
    damaged = {**state, key: change(state[key])}
    at = StatePath("monitor", ("features", "x", "detectors", "adwin"))
    with pytest.raises(ValueError, match=re.escape(f"'features.x.detectors.adwin.{key}'")) as err:
        ADWIN.from_state(damaged, at)
    assert problem in str(err.value)


def test_from_state_refuses_base64_that_is_not_canonical():
    state = ADWIN().update(1.0).to_state()
    assert state["bucket_totals"] == "AAAAAAAA8D8="
    ADWIN.from_state(state)
    # The same bytes, with the unused low bits of the last character set.
    with pytest.raises(ValueError, match="'bucket_totals' must be base64"):
        ADWIN.from_state({**state, "bucket_totals": "AAAAAAAA8D9="})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("delta", 0.0),
        ("delta", 1.0),
        ("clock", 0),
        ("max_buckets", 1),
        ("min_window_length", 0),
        ("grace_period", -1),
    ],
)
def test_bad_parameters_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=name):
        ADWIN(**{name: value})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_refused(bad):
    detector = ADWIN()
    with pytest.raises(ValueError, match="finite"):
        detector.update(bad)
    with pytest.raises(ValueError, match="position 2"):
        detector.update_many([0.0, 1.0, bad])
    assert detector.width == 0


def test_api_follows_river():
    detector = ADWIN()
    assert detector.update(1.0) is detector
    assert (detector.delta, detector.clock, detector.max_buckets) == (0.002, 32, 5)
    assert (detector.min_window_length, detector.grace_period) == (5, 10)
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    assert ADWIN().estimation == 0.0


@pytest.mark.parametrize("seed", range(30))
def test_random_parameters_and_streams_match_river(seed):
    rng = np.random.default_rng(1000 + seed)
    params = {
        "delta": float(rng.choice([0.002, 0.01, 0.1, 0.5])),
        "clock": int(rng.choice([1, 2, 5, 32, 50])),
        "max_buckets": int(rng.integers(2, 8)),
        "min_window_length": int(rng.integers(1, 12)),
        "grace_period": int(rng.integers(0, 60)),
    }
    means = np.repeat(rng.normal(0.0, 2.0, 8), 400)
    values = means + rng.normal(0.0, rng.choice([0.1, 1.0, 5.0]), means.size)
    if seed % 3 == 0:
        values = (values > means.mean()).astype(np.float64)
    river_hits, river_steps = river_trace(values, params)
    detector = ADWIN(**params)
    assert detector.update_many(values).tolist() == river_hits
    final = (detector.width, detector.total, detector.variance, detector.n_detections)
    assert final == river_steps[-1]


def test_two_dimensional_input_is_refused():
    with pytest.raises(ValueError, match="1-d"):
        ADWIN().update_many(np.zeros((2, 3)))
