"""Dead-letter share: one alert per producer fault, none on a normal trickle.

Streams are drawn per event: each event is dead for a reason with that
reason's share (for the window it falls in), accepted otherwise. They are fed
in calls the way a worker would make them, and a finding's position is
reported as a global event index (the call's start plus its row). Run with
``-s`` to see the measured false-alarm counts.
"""

import json
import math
from functools import cache

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statepaths import dotted, edited, walk

from driftstream.contract import BAD_TIMESTAMP, MISSING_FIELD, NON_FINITE, REASONS, WRONG_TYPE
from driftstream.core.dead_letter_rate import (
    DEAD_LETTER_RATE,
    DeadLetterRate,
    DeadLetterSettings,
)
from driftstream.core.findings import BASELINE, RESOLVED
from driftstream.core.quality import QUALITY, critical_share
from driftstream.core.settings import EpisodeSettings

WINDOW = 5000
BASE = 0.002  # a healthy producer's share per reason
NOISE = (WRONG_TYPE, MISSING_FIELD, NON_FINITE, BAD_TIMESTAMP)


def limits(**changes) -> DeadLetterSettings:
    return DeadLetterSettings(reasons=REASONS, **changes)


DEFAULTS = limits()


def draw(shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per event, a reason code (an index into ``NOISE``) or -1 for an accepted event.

    ``shares`` holds one row per event: each reason's share.
    """
    u = rng.random(shares.shape[0])
    codes = (u[:, None] >= np.cumsum(shares, axis=1)).sum(axis=1)
    return np.where(codes < len(NOISE), codes, -1)


def constant_stream(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum([BASE] * len(NOISE))
    codes = np.searchsorted(cumulative, rng.random(n), side="right")
    return np.where(codes < len(NOISE), codes, -1)


# Fault episodes on top of the base share: (first window, windows, reason, share).
FAULTS = ((20, 5, WRONG_TYPE, 0.05), (50, 2, BAD_TIMESTAMP, 0.3), (80, 10, MISSING_FIELD, 0.02))
WINDOWS = 100


@cache
def faulty_stream(seed: int = 0) -> np.ndarray:
    shares = np.full((WINDOWS, len(NOISE)), BASE)
    for first, count, reason, share in FAULTS:
        shares[first : first + count, NOISE.index(reason)] = share
    return draw(np.repeat(shares, WINDOW, axis=0), np.random.default_rng(seed))


def call(codes: np.ndarray) -> tuple[int, list[tuple[str, int]]]:
    """The arguments of one ``update`` for these events."""
    dead = np.flatnonzero(codes >= 0)
    reasons = np.array(NOISE, dtype=object)[codes[dead]]
    return codes.size - dead.size, list(zip(reasons.tolist(), dead.tolist(), strict=True))


def feed(rate, codes, cuts, model="fraud", restore_at=()):
    """Feed the stream in calls cut at ``cuts``; (findings with global rows, the tracker)."""
    found, start = [], 0
    for i, stop in enumerate([*cuts, codes.size]):
        if i in restore_at:
            state = json.loads(json.dumps(rate.to_state()))
            rate = DeadLetterRate.from_state(rate.settings, state)
        accepted, dead = call(codes[start:stop])
        for finding in rate.update(model, accepted, dead):
            assert 0 <= finding.row < stop - start
            found.append((finding, start + finding.row))
        start = stop
    return found, rate


def summary(found):
    return [(f.kind, f.feature, at, f.details["count"]) for f, at in found]


def plain(found):
    """Findings as JSON bytes: NaN times compare equal there."""
    return orjson.dumps([(f.to_dict(), at) for f, at in found])


# --- no-fault false alarms ------------------------------------------------------------


def test_a_normal_trickle_raises_at_most_one_alert_in_ten_thousand_windows():
    windows, chunk = 10_000, 100
    rate, alerts, peak = DeadLetterRate(DEFAULTS), 0, 0
    for i in range(windows // chunk):
        codes = constant_stream(chunk * WINDOW, seed=i)
        accepted, dead = call(codes)
        alerts += sum(f.kind == QUALITY for f in rate.update("fraud", accepted, dead))
        dead = np.flatnonzero(codes >= 0)
        cells = np.bincount(dead // WINDOW * len(NOISE) + codes[dead])
        peak = max(peak, int(cells.max()))
    print(
        f"\n{windows} windows of {WINDOW}, {len(NOISE)} reasons at {BASE:.1%} each: {alerts} "
        f"alerts; most of one reason in one window {peak} ({peak / WINDOW:.2%}), limit 1%"
    )
    assert alerts <= 1


@pytest.mark.parametrize("window", [100, 500, 2000])
def test_the_binomial_bound_holds_its_level_at_the_floor_rate(window):
    """No minimum share and 1% per window: the test alone, at a level 100,000 windows can show."""
    loose = limits(max_share=1e-9, window=window, false_alarm=0.01, floor_rate=BASE)
    counts = np.random.default_rng(window).binomial(window, BASE, size=100_000)
    failed = np.count_nonzero(counts / window >= loose.threshold)
    print(f"\nwindow {window}: threshold {loose.threshold:.4f}, failed {failed} of 100000")
    assert failed <= 0.01 * counts.size


def test_small_windows_need_more_than_the_minimum_share():
    """A handful of dead letters in a small window is no evidence of a fault."""
    assert DEFAULTS.threshold == 0.01
    small = limits(window=100)
    assert small.threshold == critical_share(100, small.floor_rate, small.false_alarm) > 0.05
    rate = DeadLetterRate(small)
    assert rate.update("fraud", 97, [(WRONG_TYPE, 0), (WRONG_TYPE, 1), (WRONG_TYPE, 2)]) == []


# --- faults --------------------------------------------------------------------------------


def test_each_fault_episode_raises_one_alert_and_one_resolution():
    codes = faulty_stream()
    found, _ = feed(DeadLetterRate(DEFAULTS), codes, list(range(7_000, codes.size, 7_000)))
    closing = {first: (first + 1) * WINDOW - 1 for first, _, _, _ in FAULTS}
    expected = []
    for first, count, reason, _ in FAULTS:
        expected.append((QUALITY, reason, closing[first]))
        # two clean windows in a row resolve it, at the close of the second
        expected.append((RESOLVED, reason, (first + count + 2) * WINDOW - 1))
    assert [(f.kind, f.feature, at) for f, at in found] == expected


def test_findings_carry_what_an_alert_needs():
    codes = faulty_stream()
    found, _ = feed(DeadLetterRate(DEFAULTS), codes, [])
    opened, resolved = found[0][0], found[1][0]
    assert (opened.detector, opened.statistic, opened.feature) == (
        QUALITY,
        DEAD_LETTER_RATE,
        WRONG_TYPE,
    )
    assert (opened.model_id, opened.model_version, opened.reference) == ("fraud", "", BASELINE)
    assert (opened.severity, resolved.severity) == ("warning", "info")
    assert opened.threshold == resolved.threshold == 0.01
    assert opened.details == {"reason": WRONG_TYPE, "count": round(opened.value * WINDOW)}
    assert opened.value == pytest.approx(0.05, abs=0.01)
    assert resolved.value < 0.008
    assert opened.window_count == WINDOW
    assert math.isnan(opened.event_time)  # a dead letter may have no time: the caller's to fill
    json.dumps(opened.to_dict(), allow_nan=True)


def test_a_share_hovering_near_the_limit_stays_one_episode():
    """1.2%, 0.9%, 1.2%, 0.9%: 0.9% is below the limit but above 0.8 of it, so not calm."""
    rate = DeadLetterRate(DEFAULTS)
    kinds = []
    for count in (60, 45, 60, 45, 0, 0):
        found = rate.update("fraud", WINDOW - count, [(WRONG_TYPE, p) for p in range(count)])
        kinds += [(f.kind, f.row) for f in found]
    assert kinds == [(QUALITY, WINDOW - 1), (RESOLVED, WINDOW - 1)]


def test_models_and_reasons_are_judged_apart():
    rate = DeadLetterRate(limits(window=1000))
    dead = [(WRONG_TYPE, p) for p in range(20)] + [(NON_FINITE, p) for p in range(20, 25)]
    assert [(f.model_id, f.feature) for f in rate.update("fraud", 975, dead)] == [
        ("fraud", WRONG_TYPE)
    ]
    assert rate.update("churn", 999, []) == []  # churn's window is not full
    assert [f.model_id for f in rate.update("churn", 1, [])] == []
    state = rate.to_state()
    assert state["models"]["churn"]["episodes"]["open"] == {}
    assert state["models"]["fraud"]["episodes"]["open"] == {WRONG_TYPE: 0}


def test_the_row_is_the_event_that_closed_the_window():
    """Positions count this call's events, accepted and dead, in the caller's order."""
    rate = DeadLetterRate(limits(window=1000))
    assert rate.update("fraud", 300, []) == []
    dead = [(WRONG_TYPE, p) for p in range(600, 650)]
    found = rate.update("fraud", 950, dead)  # 1000 events: the window closes at position 699
    assert [(f.kind, f.row, f.details["count"]) for f in found] == [(QUALITY, 699, 50)]


# --- batching and restarts ------------------------------------------------------------------


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(1, WINDOWS * WINDOW - 1), max_size=60, unique=True))
def test_findings_do_not_depend_on_how_the_stream_is_cut(cuts):
    codes = faulty_stream(seed=1)
    expected, whole = feed(DeadLetterRate(DEFAULTS), codes, [])
    found, split = feed(DeadLetterRate(DEFAULTS), codes, sorted(cuts))
    assert summary(found) == summary(expected)
    assert orjson.dumps(split.to_state()) == orjson.dumps(whole.to_state())


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(st.sets(st.integers(0, 70), max_size=12), st.integers(0, 1000))
def test_save_and_restore_anywhere_equals_never_stopping(restore_at, shift):
    codes = faulty_stream(seed=2)
    cuts = list(range(3_000 + shift, codes.size, 7_000))
    expected, steady = feed(DeadLetterRate(DEFAULTS), codes, cuts)
    found, restored = feed(DeadLetterRate(DEFAULTS), codes, cuts, restore_at=restore_at)
    assert plain(found) == plain(expected)
    assert orjson.dumps(restored.to_state()) == orjson.dumps(steady.to_state())


# --- state -------------------------------------------------------------------------------


def fed_state() -> dict:
    """Mid-window, with an episode open and dead letters counted in the open window."""
    codes = faulty_stream(seed=3)[: 22 * WINDOW + 1234]
    _, rate = feed(DeadLetterRate(DEFAULTS), codes, [50_000])
    return rate.to_state()


def test_state_is_plain_data_that_round_trips():
    state = fed_state()
    assert orjson.loads(orjson.dumps(state)) == state
    fraud = state["models"]["fraud"]
    assert fraud["filled"] == 1234
    assert fraud["counts"][WRONG_TYPE] > 30
    assert fraud["episodes"]["open"] == {WRONG_TYPE: 0}
    restored = DeadLetterRate.from_state(DEFAULTS, orjson.loads(orjson.dumps(state)))
    assert orjson.dumps(restored.to_state()) == orjson.dumps(state)


def damages(state):
    """(what, damaged state, key path the error must name) for every field."""
    data_maps = {
        ("models",),
        ("models", "fraud", "counts"),
        ("models", "fraud", "episodes", "open"),
    }
    for path, value in walk(state):
        if isinstance(value, dict):
            if path:
                yield "list for mapping", edited(state, path, []), dotted(path)
            if path not in data_maps:
                for key in value:
                    yield "missing", edited(state, (*path, key), delete=True), dotted((*path, key))
                yield "unknown", edited(state, (*path, "surplus"), 0), dotted((*path, "surplus"))
        elif path[-1] == "kind":
            yield "other kind", edited(state, path, "nonsense"), dotted(path)
        elif path[-1] == "version":
            yield "other version", edited(state, path, 2), dotted(path)
            yield "version as bool", edited(state, path, True), dotted(path)
        elif isinstance(value, int):
            for bad in (True, value + 0.5, -1, None, "1"):
                yield f"{bad!r} for count", edited(state, path, bad), dotted(path)


def test_every_damaged_field_is_refused_naming_its_key():
    state = fed_state()
    checked, wrong = 0, []
    for what, damaged, key in damages(state):
        checked += 1
        try:
            DeadLetterRate.from_state(DEFAULTS, damaged)
        except ValueError as err:
            if f"'{key}'" not in str(err):
                wrong.append(f"{what} at {key}: {err}")
        else:
            wrong.append(f"{what} at {key}: accepted")
    assert not wrong, "\n".join(wrong)
    assert checked > 30


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("counts", "gremlins", 3),
            r"'models\.fraud\.counts\.gremlins' is not a dead-letter reason",
        ),
        (("counts", WRONG_TYPE, 0), r"'models\.fraud\.counts\.wrong_type' must be an int >= 1"),
        (("counts", WRONG_TYPE, 5000), r"'models\.fraud\.counts' must add up to at most filled"),
        (("filled", None, 5000), r"'models\.fraud\.filled' must be below the window of 5000"),
        (
            ("episodes", "gremlins", 0),
            r"'models\.fraud\.episodes\.open\.gremlins' is not a dead-letter reason",
        ),
    ],
)
def test_states_a_healthy_writer_cannot_have_written_are_refused(edit, message):
    state = fed_state()
    part, key, value = edit
    fraud = state["models"]["fraud"]
    if part == "filled":
        fraud["filled"] = value
    elif part == "episodes":
        fraud["episodes"]["open"][key] = value
    else:
        fraud["counts"][key] = value
    with pytest.raises(ValueError, match=message):
        DeadLetterRate.from_state(DEFAULTS, state)


@pytest.mark.parametrize("bad", [None, [], "state", 1.0])
def test_a_state_that_is_not_a_mapping_is_refused(bad):
    with pytest.raises(ValueError, match="mapping"):
        DeadLetterRate.from_state(DEFAULTS, bad)


def test_a_new_window_size_starts_the_open_window_over_and_keeps_episodes():
    state = fed_state()
    restored = DeadLetterRate.from_state(limits(window=2000), state)
    fraud = restored.to_state()["models"]["fraud"]
    assert (fraud["filled"], fraud["counts"]) == (0, {})
    assert fraud["episodes"]["open"] == {WRONG_TYPE: 0}
    assert restored.to_state()["window"] == 2000


def test_state_size_does_not_grow_with_the_stream():
    codes = faulty_stream(seed=4)
    _, short = feed(DeadLetterRate(DEFAULTS), codes[: 10 * WINDOW + 17], [])
    _, long = feed(DeadLetterRate(DEFAULTS), codes[: 99 * WINDOW + 17], [])
    assert len(orjson.dumps(long.to_state())) <= len(orjson.dumps(short.to_state())) + 64


# --- inputs and settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "accepted", "dead", "message"),
    [
        ("fraud", 10, [("gremlins", 0)], "'gremlins' is not one of the known reasons"),
        ("fraud", 10, [(WRONG_TYPE, 11)], r"position must be an int in \[0, 11\)"),
        ("fraud", 10, [(WRONG_TYPE, -1)], "position"),
        ("fraud", 10, [(WRONG_TYPE, True)], "position"),
        ("fraud", 10, [(WRONG_TYPE, 3), (NON_FINITE, 3)], "share a position"),
        ("fraud", -1, [], "accepted"),
        ("fraud", 2.0, [], "accepted"),
        ("", 10, [], "non-empty"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(model, accepted, dead, message):
    rate = DeadLetterRate(DEFAULTS)
    rate.update("fraud", 100, [(WRONG_TYPE, 5)])
    before = rate.to_state()
    with pytest.raises(ValueError, match=message):
        rate.update(model, accepted, dead)
    assert rate.to_state() == before


def test_numpy_integers_are_accepted():
    rate = DeadLetterRate(limits(window=100))
    found = rate.update("fraud", np.int64(90), [(WRONG_TYPE, np.int64(p)) for p in range(10)])
    assert [f.row for f in found] == [99]


def test_every_contract_reason_is_counted():
    rate = DeadLetterRate(limits(window=len(REASONS) * 10))
    dead = [(reason, i * 10 + j) for i, reason in enumerate(REASONS) for j in range(10)]
    found = rate.update("fraud", 0, dead)
    assert [f.feature for f in found] == list(REASONS)


@pytest.mark.parametrize(
    ("bad", "name"),
    [
        ({"max_share": 0.0}, "quality.max_dead_letter_share"),
        ({"max_share": 1.0}, "quality.max_dead_letter_share"),
        ({"max_share": True}, "quality.max_dead_letter_share"),
        ({"false_alarm": 0.0}, "quality.dead_letter_false_alarm"),
        ({"floor_rate": math.nan}, "quality.dead_letter_floor_rate"),
        ({"window": 0}, "quality.dead_letter_window"),
        ({"window": 100.0}, "quality.dead_letter_window"),
        ({"window": 2}, "quality.dead_letter_window of 2 events is too small"),
    ],
)
def test_settings_refuse_nonsense(bad, name):
    with pytest.raises(ValueError, match=name):
        limits(**bad)


@pytest.mark.parametrize("reasons", [(), [WRONG_TYPE], (WRONG_TYPE, WRONG_TYPE), ("",), (1,)])
def test_settings_refuse_bad_reasons(reasons):
    with pytest.raises(ValueError, match="reasons"):
        DeadLetterSettings(reasons=reasons)


def test_defaults():
    defaults = DEFAULTS
    assert (defaults.max_share, defaults.window, defaults.false_alarm) == (0.01, 5000, 1e-6)
    assert defaults.floor_rate == BASE
    assert defaults.episodes == EpisodeSettings()
