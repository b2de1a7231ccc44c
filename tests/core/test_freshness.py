"""Freshness: a model that goes silent pages once and resolves once; old baselines page once.

Streams are built in event order, then cut into batches the way a worker
would read them. A finding's position is reported as a global event index
(its batch's start plus its row), so runs cut differently can be compared.
Run with ``-s`` to see the measured false-alarm counts.
"""

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statepaths import dotted, edited, walk

from driftstream.core.findings import BASELINE, RESOLVED
from driftstream.core.freshness import (
    DAY,
    FRESHNESS,
    MODEL_AGE,
    SILENCE,
    FreshnessSettings,
    FreshnessWatch,
)
from driftstream.core.quality import QUALITY

HOUR = 3600.0
START = 1_700_000_000.0
SILENCE_ONLY = FreshnessSettings(max_model_age_days=None)
AGE_ONLY = FreshnessSettings(max_silence_seconds=None)


def merge(*models: tuple[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Event times, model codes and model names, in time order (stable)."""
    names = [name for name, _ in models]
    ts = np.concatenate([times for _, times in models])
    codes = np.concatenate([np.full(times.size, i) for i, (_, times) in enumerate(models)])
    order = np.argsort(ts, kind="stable")
    return ts[order], codes[order], names


def silence_stream() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """churn: an event a second for 4 hours; fraud: every 2 s, silent from 1,000 s to 6,000 s."""
    churn = START + np.arange(0.0, 4 * HOUR, 1.0)
    fraud = START + np.arange(0.0, 4 * HOUR, 2.0) + 0.5
    fraud = fraud[(fraud < START + 1000) | (fraud >= START + 6000)]
    return merge(("churn", churn), ("fraud", fraud))


def batch(ts, codes, names, start, stop):
    part = codes[start:stop]
    rows = {name: np.flatnonzero(part == i) for i, name in enumerate(names)}
    return ts[start:stop], {name: r for name, r in rows.items() if r.size}


def run(watch, ts, codes, names, cuts, created=None, restore_at=()):
    """Feed the stream cut at ``cuts``; (findings with global rows, the watch at the end)."""
    created = created if created is not None else dict.fromkeys(names)
    found, start = [], 0
    for i, stop in enumerate([*cuts, ts.size]):
        if i in restore_at:
            state = json.loads(json.dumps(watch.to_state()))
            watch = FreshnessWatch.from_state(watch.settings, state)
        times, rows = batch(ts, codes, names, start, stop)
        for finding in watch.observe(times, rows, created):
            assert 0 <= finding.row < times.size  # a row of the batch being observed
            assert finding.event_time == times[finding.row]
            found.append((finding, start + finding.row))
        start = stop
    return found, watch


def every(n, size, extra=()):
    """Cut points every ``size`` events, plus ``extra``."""
    return sorted(set(range(size, n, size)) | {c for c in extra if 0 < c < n})


# --- silence -----------------------------------------------------------------------


def test_a_silent_model_opens_once_and_resolves_once():
    ts, codes, names = silence_stream()
    found, watch = run(FreshnessWatch(SILENCE_ONLY), ts, codes, names, every(ts.size, 300))
    assert [(f.kind, f.model_id, f.statistic) for f, _ in found] == [
        (QUALITY, "fraud", SILENCE),
        (RESOLVED, "fraud", SILENCE),
    ]
    (opened, opened_at), (resolved, resolved_at) = found
    last = START + 998.5  # fraud's last event before the gap
    # the first event more than an hour past it (a churn event) opens the episode
    assert ts[opened_at] == opened.event_time == START + 4599.0
    assert codes[opened_at] == names.index("churn")
    assert opened.window_start == last
    assert opened.details == {"last_event_time": last}
    assert HOUR < opened.value <= HOUR + 300  # seconds behind at the end of that batch
    # fraud's first event back closes it
    assert ts[resolved_at] == resolved.event_time == START + 6000.5
    assert codes[resolved_at] == names.index("fraud")
    assert resolved.window_start == last
    assert resolved.value <= HOUR
    assert not watch.to_state()["models"]["fraud"]["silent"]


def test_silence_findings_carry_what_an_alert_needs():
    ts, codes, names = silence_stream()
    found, _ = run(FreshnessWatch(SILENCE_ONLY), ts, codes, names, every(ts.size, 300))
    for finding, _ in found:
        assert finding.detector == QUALITY
        assert finding.feature == FRESHNESS
        assert (finding.model_version, finding.reference) == ("", BASELINE)
        assert finding.threshold == HOUR
        assert finding.window_count == 0
        assert finding.severity == ("warning" if finding.kind == QUALITY else "info")
        assert finding.window_start <= finding.window_end
        json.dumps(finding.to_dict())


def test_a_silence_within_the_limit_raises_nothing():
    churn = START + np.arange(0.0, 4 * HOUR, 1.0)
    fraud = START + np.arange(0.0, 4 * HOUR, 2.0)
    fraud = fraud[(fraud < START + 1000) | (fraud >= START + 1000 + HOUR - 10)]
    ts, codes, names = merge(("churn", churn), ("fraud", fraud))
    found, _ = run(FreshnessWatch(SILENCE_ONLY), ts, codes, names, every(ts.size, 300))
    assert found == []


def test_a_model_that_returns_within_the_crossing_batch_raises_nothing():
    """Judged at the end of each batch: one batch holds the crossing and the return."""
    ts = START + np.array([0.0, 1.0, HOUR + 5, HOUR + 6])
    codes = np.array([0, 1, 0, 1])
    found, _ = run(FreshnessWatch(SILENCE_ONLY), ts, codes, ["a", "b"], [2])
    assert found == []


def test_a_model_never_seen_in_this_unit_never_raises_silence():
    ts, codes, names = silence_stream()
    created = {"fraud": None, "churn": None, "elsewhere": None}
    found, watch = run(FreshnessWatch(), ts, codes, names, every(ts.size, 300), created)
    assert "elsewhere" not in watch.to_state()["models"]
    assert {f.model_id for f, _ in found} == {"fraud"}


def test_a_model_that_stops_for_good_pages_once():
    churn = START + np.arange(0.0, 6 * HOUR, 1.0)
    fraud = START + np.arange(0.0, 600.0, 1.0)
    ts, codes, names = merge(("churn", churn), ("fraud", fraud))
    found, _ = run(FreshnessWatch(SILENCE_ONLY), ts, codes, names, every(ts.size, 250))
    assert [(f.kind, f.model_id) for f, _ in found] == [(QUALITY, "fraud")]


def test_a_lowered_limit_opens_at_the_next_batch():
    ts = START + np.arange(0.0, 100.0)
    codes = np.where(np.arange(100) < 10, 1, 0)  # model b stops after 10 events
    watch = FreshnessWatch(SILENCE_ONLY)
    watch.observe(ts[:60], batch(ts, codes, ["a", "b"], 0, 60)[1], {"a": None, "b": None})
    strict = FreshnessSettings(max_silence_seconds=30.0, max_model_age_days=None)
    watch = FreshnessWatch.from_state(strict, watch.to_state())
    found = watch.observe(ts[60:], batch(ts, codes, ["a", "b"], 60, 100)[1], {"a": None, "b": None})
    # b was already 50 s behind: the batch's first event past 30 s after b's last is cited
    assert [(f.kind, f.model_id, f.row, f.value) for f in found] == [(QUALITY, "b", 0, 90.0)]


# --- model age -------------------------------------------------------------------------


def age_stream() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two models, an event every 10 s each, for 3 days."""
    span = np.arange(0.0, 3 * DAY, 10.0)
    return merge(("fraud", START + span), ("churn", START + span + 5))


def test_an_old_baseline_fires_once():
    ts, codes, names = age_stream()
    created = {"fraud": START - 89 * DAY, "churn": START - 10 * DAY}
    found, watch = run(FreshnessWatch(AGE_ONLY), ts, codes, names, every(ts.size, 1000), created)
    assert [(f.kind, f.model_id, f.statistic) for f, _ in found] == [(QUALITY, "fraud", MODEL_AGE)]
    finding, at = found[0]
    assert ts[at] == finding.event_time == START + DAY + 5  # first event past 90 days
    assert finding.threshold == 90.0
    assert 90.0 < finding.value < 90.1  # days, at the end of that batch
    assert finding.window_start == created["fraud"]
    assert finding.details == {"created": created["fraud"]}
    assert watch.to_state()["models"]["fraud"]["aged"]


def test_a_new_baseline_resolves_the_age_episode():
    ts, codes, names = age_stream()
    old = {"fraud": START - 89 * DAY, "churn": None}
    half = ts.size // 2
    found, watch = run(FreshnessWatch(AGE_ONLY), ts[:half], codes[:half], names, [], old)
    assert [f.kind for f, _ in found] == [QUALITY]
    retrained = {"fraud": START + DAY, "churn": None}
    times, rows = batch(ts, codes, names, half, ts.size)
    resolved = watch.observe(times, rows, retrained)
    assert [(f.kind, f.statistic, f.model_id) for f in resolved] == [(RESOLVED, MODEL_AGE, "fraud")]
    assert resolved[0].row == int(np.argmax(times))  # the batch's latest event
    assert resolved[0].value < 90.0
    assert watch.observe(times[-1:] + 10, {"fraud": [0]}, retrained) == []


def test_an_unknown_creation_time_skips_the_age_check():
    ts, codes, names = age_stream()
    unknown = {"fraud": None, "churn": None}
    found, _ = run(FreshnessWatch(AGE_ONLY), ts, codes, names, every(ts.size, 1000), unknown)
    assert found == []


def test_turned_off_checks_raise_nothing():
    ts, codes, names = silence_stream()
    off = FreshnessSettings(max_silence_seconds=None, max_model_age_days=None)
    created = {"fraud": START - 1000 * DAY, "churn": START - 1000 * DAY}
    found, _ = run(FreshnessWatch(off), ts, codes, names, every(ts.size, 300), created)
    assert found == []


# --- false alarms ------------------------------------------------------------------------


def test_steady_traffic_with_jitter_raises_no_silence():
    """Four models from 1 event/s down to 1 per 2 minutes, delivered up to 2 minutes late."""
    rng = np.random.default_rng(5)
    span = 30 * DAY
    models = []
    for i, gap in enumerate([1.0, 10.0, 60.0, 120.0]):
        n = int(span / gap * 1.1)
        times = np.cumsum(rng.exponential(gap, n))
        models.append((f"m{i}", START + times[times < span]))
    ts, codes, names = merge(*models)
    ts = ts + rng.exponential(20.0, ts.size).clip(max=120.0)  # delivery jitter, order kept
    found, _ = run(FreshnessWatch(SILENCE_ONLY), ts, codes, names, every(ts.size, 5000))
    print(f"\n{ts.size} events over 30 days, 4 models: {len(found)} silence findings")
    assert found == []


# --- batching and restarts ----------------------------------------------------------------


def summary(found):
    return sorted((at, f.kind, f.model_id, f.statistic, f.event_time) for f, at in found)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(1, 2 * 14_400), max_size=40))
def test_cited_events_do_not_depend_on_where_batches_are_cut(extra):
    """Batches of at most 300 events (5 minutes), cut anywhere in between."""
    ts, codes, names = silence_stream()
    created = {"fraud": START - 90 * DAY + 4321.5, "churn": None}
    expected, _ = run(FreshnessWatch(), ts, codes, names, every(ts.size, 300), created)
    cuts = every(ts.size, 300, extra)
    found, _ = run(FreshnessWatch(), ts, codes, names, cuts, created)
    assert summary(found) == summary(expected)
    assert [row[1:4] for row in summary(found)] == [
        (QUALITY, "fraud", MODEL_AGE),  # at the first event past START + 4321.5
        (QUALITY, "fraud", SILENCE),
        (RESOLVED, "fraud", SILENCE),
    ]


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.sets(st.integers(0, 80), max_size=10))
def test_save_and_restore_anywhere_equals_never_stopping(restore_at):
    ts, codes, names = silence_stream()
    created = {"fraud": START - 90 * DAY + 4321.5, "churn": START - DAY}
    cuts = every(ts.size, 250)
    expected, steady = run(FreshnessWatch(), ts, codes, names, cuts, created)
    found, restored = run(FreshnessWatch(), ts, codes, names, cuts, created, restore_at)
    assert found == expected
    assert orjson.dumps(restored.to_state()) == orjson.dumps(steady.to_state())


# --- state -------------------------------------------------------------------------------


def fed_state() -> dict:
    ts, codes, names = silence_stream()
    stop = int(np.searchsorted(ts, START + 5000))  # fraud silent, its episode open
    created = {"fraud": START - 100 * DAY, "churn": None}
    _, watch = run(FreshnessWatch(), ts[:stop], codes[:stop], names, [1000], created)
    return watch.to_state()


def test_state_is_plain_data_that_round_trips():
    state = fed_state()
    assert orjson.loads(orjson.dumps(state)) == state
    assert state["models"]["fraud"] == {
        "latest": START + 998.5,
        "silent": True,
        "aged": True,
    }
    restored = FreshnessWatch.from_state(FreshnessSettings(), orjson.loads(orjson.dumps(state)))
    assert orjson.dumps(restored.to_state()) == orjson.dumps(state)
    assert restored.watermark == state["watermark"]
    assert restored.latest("fraud") == START + 998.5
    assert restored.latest("nobody") is None


def test_a_new_watch_saves_an_empty_state():
    state = FreshnessWatch().to_state()
    assert state == {"kind": "freshness", "version": 1, "watermark": None, "models": {}}
    assert FreshnessWatch.from_state(FreshnessSettings(), state).to_state() == state


def damages(state):
    """(what, damaged state, key path the error must name) for every field."""
    for path, value in walk(state):
        if isinstance(value, dict):
            if path:
                yield "list for mapping", edited(state, path, []), dotted(path)
            if path != ("models",):
                for key in value:
                    yield "missing", edited(state, (*path, key), delete=True), dotted((*path, key))
                yield "unknown", edited(state, (*path, "surplus"), 0), dotted((*path, "surplus"))
        elif isinstance(value, bool):
            yield "int for flag", edited(state, path, int(value)), dotted(path)
        elif isinstance(value, float):
            for bad in (math.nan, math.inf, -math.inf, True, "1.0", None):
                if not (bad is None and path == ("watermark",)):
                    yield f"{bad!r} for number", edited(state, path, bad), dotted(path)
        elif path[-1:] == ("version",):
            yield "other version", edited(state, path, 2), dotted(path)
            yield "version as bool", edited(state, path, True), dotted(path)
        elif path[-1:] == ("kind",):
            yield "other kind", edited(state, path, "nonsense"), dotted(path)


def test_every_damaged_field_is_refused_naming_its_key():
    state = fed_state()
    checked, wrong = 0, []
    for what, damaged, key in damages(state):
        checked += 1
        try:
            FreshnessWatch.from_state(FreshnessSettings(), damaged)
        except ValueError as err:
            if f"'{key}'" not in str(err):
                wrong.append(f"{what} at {key}: {err}")
        else:
            wrong.append(f"{what} at {key}: accepted")
    assert not wrong, "\n".join(wrong)
    assert checked > 20


def test_a_latest_time_past_the_watermark_is_refused():
    state = fed_state()
    state["models"]["churn"]["latest"] = state["watermark"] + 1
    with pytest.raises(ValueError, match=r"'models\.churn\.latest' must be at most the watermark"):
        FreshnessWatch.from_state(FreshnessSettings(), state)
    state["watermark"] = None
    with pytest.raises(ValueError, match=r"'models\.churn\.latest'"):
        FreshnessWatch.from_state(FreshnessSettings(), state)


@pytest.mark.parametrize("bad", [None, [], "state", 1.0])
def test_a_state_that_is_not_a_mapping_is_refused(bad):
    with pytest.raises(ValueError, match="mapping"):
        FreshnessWatch.from_state(FreshnessSettings(), bad)


def test_models_no_longer_served_are_dropped():
    ts, codes, names = silence_stream()
    _, watch = run(FreshnessWatch(), ts[:1000], codes[:1000], names, [])
    assert set(watch.to_state()["models"]) == {"churn", "fraud"}
    times, rows = batch(ts, codes, names, 1000, 1010)
    with pytest.raises(ValueError, match="'fraud' has events but no entry in created"):
        watch.observe(times, rows, {"churn": None})
    watch.observe(times, {"churn": rows["churn"]}, {"churn": None})
    assert set(watch.to_state()["models"]) == {"churn"}


def test_state_size_does_not_grow_with_the_stream():
    ts, codes, names = silence_stream()
    short = ts.size // 10
    _, small = run(FreshnessWatch(), ts[:short], codes[:short], names, every(short, 300))
    _, large = run(FreshnessWatch(), ts, codes, names, every(ts.size, 300))
    assert len(orjson.dumps(large.to_state())) <= len(orjson.dumps(small.to_state())) + 8


# --- inputs and settings ------------------------------------------------------------------


def test_an_empty_batch_changes_nothing():
    watch = FreshnessWatch()
    assert watch.observe(np.array([]), {}, {"a": None}) == []
    assert watch.watermark is None


@pytest.mark.parametrize(
    ("ts", "rows", "created", "message"),
    [
        ([1.0, math.nan], {"a": [0, 1]}, {"a": None}, "finite"),
        ([1.0], {"a": [0]}, {}, "'a' has events but no entry in created"),
        ([1.0], {"a": [1]}, {"a": None}, "indices into ts"),
        ([1.0], {"a": []}, {"a": None}, "indices into ts"),
        ([1.0], {"": [0]}, {"": None}, "non-empty"),
        ([1.0], {"a": [0]}, {"a": math.inf}, "created time of model 'a'"),
        ([1.0], {"a": [0]}, {"a": True}, "created time of model 'a'"),
    ],
)
def test_bad_input_is_refused(ts, rows, created, message):
    with pytest.raises(ValueError, match=message):
        FreshnessWatch().observe(np.array(ts), rows, created)


def test_defaults():
    assert FreshnessSettings() == FreshnessSettings(3600.0, 90.0)
    assert FreshnessSettings(None, None).max_silence_seconds is None


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "60"])
@pytest.mark.parametrize("name", ["max_silence_seconds", "max_model_age_days"])
def test_settings_refuse_nonsense(name, value):
    with pytest.raises(ValueError, match=rf"quality\.{name}"):
        FreshnessSettings(**{name: value})
