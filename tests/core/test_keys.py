"""Monitor keys: versions admitted and retired event by event, segment values capped."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftstream.core.keys import OTHER, KeyRegistry, KeySettings, MonitorKey
from driftstream.core.state import StatePath


def reference(config: KeySettings, ts: list[float], versions: list[str]) -> list[list[str]]:
    """The rule, one event at a time: what retires at each row."""
    active: dict[str, float] = {}
    watermark = -math.inf
    retired: list[list[str]] = []
    for t, version in zip(ts, versions, strict=True):
        watermark = max(watermark, t)
        gone = []
        after = config.retire_after_seconds
        if after is not None:
            gone = sorted(
                v for v, last in active.items() if v != version and watermark > last + after
            )
            for v in gone:
                del active[v]
        if version not in active and len(active) >= config.max_versions:
            oldest = min(active, key=lambda v: (active[v], v))
            del active[oldest]
            gone.append(oldest)
        active[version] = max(active.get(version, -math.inf), t)
        retired.append(gone)
    return retired


def planned(registry: KeyRegistry, ts: np.ndarray, versions: np.ndarray, cuts: list[int]) -> tuple:
    """Retirements per row and the version of each row's monitor, fed in pieces."""
    retired: list[list[str]] = [[] for _ in range(len(ts))]
    owner: list[str] = [""] * len(ts)
    bounds = [0, *sorted(cuts), len(ts)]
    for start, stop in itertools.pairwise(bounds):
        plan = registry.plan(ts[start:stop], versions[start:stop], {})
        for run in plan.runs:
            if run.retired:
                retired[start + run.start] = run.retired
            for key, rows in run.groups():
                for row in rows.tolist():
                    owner[start + row] = key.version
    return retired, owner


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.floats(0, 50)), min_size=1, max_size=60),
    st.integers(1, 3),
    st.sampled_from([None, 5.0, 20.0]),
    st.lists(st.integers(1, 59), max_size=4),
)
def test_versions_follow_the_event_by_event_rule(events, cap, after, cuts):
    config = KeySettings(versions=True, max_versions=cap, retire_after_seconds=after)
    versions = np.array([f"v{v}" for v, _ in events], dtype=object)
    ts = np.array([t for _, t in events])
    cuts = [c for c in cuts if c < len(ts)]
    whole = KeyRegistry(config)
    retired, owner = planned(whole, ts, versions, [])
    assert retired == reference(config, ts.tolist(), versions.tolist())
    assert owner == versions.tolist()
    pieces = KeyRegistry(config)
    assert planned(pieces, ts, versions, cuts) == (retired, owner)
    assert pieces.to_state() == whole.to_state()


def test_least_recently_seen_version_retires_when_a_new_one_arrives():
    registry = KeyRegistry(KeySettings(versions=True, max_versions=2))
    ts = np.array([1.0, 2.0, 3.0, 4.0])
    versions = np.array(["a", "b", "a", "c"], dtype=object)
    plan = registry.plan(ts, versions, {})
    assert [(run.start, run.retired) for run in plan.runs] == [(0, []), (3, ["b"])]
    assert registry.versions == {"a": 3.0, "c": 4.0}


def test_a_quiet_version_retires_after_the_configured_event_time():
    registry = KeyRegistry(KeySettings(versions=True, retire_after_seconds=10.0))
    registry.plan(np.array([0.0, 1.0]), np.array(["old", "new"], dtype=object), {})
    plan = registry.plan(np.array([5.0, 10.5, 11.0]), np.array(["new"] * 3, dtype=object), {})
    assert [(run.start, run.retired) for run in plan.runs] == [(0, []), (1, ["old"])]
    assert list(registry.versions) == ["new"]


def test_segment_values_past_the_cap_share_other():
    registry = KeyRegistry(KeySettings(segment_keys=("country",), max_values=2))
    column = np.array(["US", "GB", None, "DE", "US", "FR"], dtype=object)
    plan = registry.plan(np.arange(6.0), np.array(["v"] * 6, dtype=object), {"country": column})
    groups = {(k.segment_key, k.segment_value): rows.tolist() for k, rows in plan.runs[0].groups()}
    assert groups == {
        ("", ""): [0, 1, 2, 3, 4, 5],
        ("country", "US"): [0, 4],
        ("country", "GB"): [1],
        ("country", OTHER): [3, 5],
    }
    assert plan.overflow == {"country": 2}
    assert registry.values == {"country": ["US", "GB"]}


def test_a_flood_of_segment_values_keeps_the_registry_bounded():
    registry = KeyRegistry(KeySettings(segment_keys=("user",), max_values=50))
    column = np.array([f"u{i}" for i in range(5000)], dtype=object)
    plan = registry.plan(np.arange(5000.0), np.array(["v"] * 5000, dtype=object), {"user": column})
    assert len(registry.values["user"]) == 50
    assert len(plan.runs[0].groups()) == 1 + 51
    assert plan.overflow == {"user": 4950}


def test_compound_keys_split_by_pairs_and_name_each_part():
    registry = KeyRegistry(KeySettings(segment_keys=("country+device",)))
    segments = {
        "country": np.array(["US", "US", "GB", None], dtype=object),
        "device": np.array(["ios", "web", "ios", "ios"], dtype=object),
    }
    plan = registry.plan(np.arange(4.0), np.array(["v"] * 4, dtype=object), segments)
    keys = [key for key, _ in plan.runs[0].groups() if key.segment_key]
    assert [key.segment() for key in keys] == [
        {"country": "US", "device": "ios"},
        {"country": "US", "device": "web"},
        {"country": "GB", "device": "ios"},
    ]
    assert MonitorKey("v", "country+device", OTHER).segment() == {
        "country": OTHER,
        "device": OTHER,
    }


def test_versions_and_segments_combine():
    registry = KeyRegistry(KeySettings(versions=True, segment_keys=("country",)))
    versions = np.array(["v1", "v2", "v1"], dtype=object)
    segments = {"country": np.array(["US", "US", "GB"], dtype=object)}
    plan = registry.plan(np.arange(3.0), versions, segments)
    rows = {(k.version, k.segment_value): r.tolist() for run in plan.runs for k, r in run.groups()}
    assert rows == {
        ("v1", ""): [0, 2],
        ("v2", ""): [1],
        ("v1", "US"): [0],
        ("v2", "US"): [1],
        ("v1", "GB"): [2],
    }
    assert {k.suffix() for k in registry.monitors_of("v1")} >= {
        '|["v1", "", ""]',
        '|["v1", "country", "US"]',
        f'|["v1", "country", "{OTHER}"]',
    }


def test_state_round_trips_and_refuses_bad_parts():
    config = KeySettings(versions=True, segment_keys=("country",))
    registry = KeyRegistry(config)
    registry.plan(
        np.array([1.0, 2.0]),
        np.array(["v1", "v2"], dtype=object),
        {"country": np.array(["US", "GB"], dtype=object)},
    )
    state = registry.to_state()
    assert KeyRegistry.from_state(config, state).to_state() == state
    bad = {**state, "versions": [["v1", float("nan")]]}
    with pytest.raises(ValueError, match="keys state key 'versions'"):
        KeyRegistry.from_state(config, bad, StatePath("keys"))
    bad = {**state, "values": {"country": [1]}}
    with pytest.raises(ValueError, match="values"):
        KeyRegistry.from_state(config, bad)


def test_without_splits_every_row_feeds_the_whole_monitor():
    registry = KeyRegistry(KeySettings())
    plan = registry.plan(np.arange(3.0), np.array(["a", "b", "a"], dtype=object), {})
    assert [(k, r.tolist()) for k, r in plan.runs[0].groups()] == [(MonitorKey(), [0, 1, 2])]


def test_a_lowered_cap_retires_down_to_it_at_the_next_new_version():
    wide = KeyRegistry(KeySettings(versions=True, max_versions=3))
    wide.plan(np.array([1.0, 2.0, 3.0]), np.array(["a", "b", "c"], dtype=object), {})
    narrow = KeyRegistry.from_state(KeySettings(versions=True, max_versions=1), wide.to_state())
    plan = narrow.plan(np.array([4.0]), np.array(["d"], dtype=object), {})
    assert plan.runs[-1].retired == ["a", "b", "c"]
    assert list(narrow.versions) == ["d"]
