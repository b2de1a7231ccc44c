import base64
import json
import math
import re
from dataclasses import replace

import numpy as np
import orjson
import pytest

from driftstream.core.baseline import build_profile
from driftstream.core.batch import Batch
from driftstream.core.monitor import ModelMonitor, settings_from_baseline
from driftstream.core.settings import PREDICTION, SCORE, FeatureSettings, WindowSettings
from driftstream.synthetic import frame, monitor_columns

DRIFTED = {"amount", "country"}
# The score is computed from the amount, so it legitimately moves with it.
MAY_FOLLOW = {"__score__", "__prediction__"}


@pytest.fixture(scope="module")
def baseline():
    data = frame(50_000, seed=1)
    return build_profile(
        data, model_id="fraud", prediction="prediction", score="score", target="label"
    )


def stream(n_stable, n_drifted, seed, drift=DRIFTED, start=1_700_000_000.0, step=0.01):
    """Stable traffic, then drifted traffic; returns (ts, columns, first drifted ts)."""
    parts = [monitor_columns(frame(n_stable, seed))]
    if n_drifted:
        parts.append(monitor_columns(frame(n_drifted, seed + 1000, drift=drift)))
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ts = start + step * np.arange(n_stable + n_drifted)
    return ts, columns, ts[n_stable] if n_drifted else None


def feed(monitor, ts, columns, cuts):
    """Feed the stream cut at ``cuts``; findings as (global row, finding) pairs."""
    out, start = [], 0
    for stop in [*cuts, len(ts)]:
        batch = Batch(ts[start:stop], {k: v[start:stop] for k, v in columns.items()})
        out += [(start + f.row, replace(f, row=0)) for f in monitor.update(batch)]
        start = stop
    return out


def even_cuts(n, size):
    return list(range(size, n, size))


def test_no_drift_stream_raises_nothing(baseline):
    monitor = ModelMonitor(settings_from_baseline(baseline), baseline)
    ts, columns, _ = stream(150_000, 0, seed=11)
    assert feed(monitor, ts, columns, even_cuts(len(ts), 2000)) == []
    assert monitor.events == 150_000
    psi = {k: v for k, v in monitor.last_values.items() if k[1] == "psi"}
    assert len(psi) == 9 and max(psi.values()) < 0.02


def test_drift_alerts_only_drifted_features_and_only_after_the_drift(baseline):
    monitor = ModelMonitor(settings_from_baseline(baseline), baseline)
    ts, columns, drift_ts = stream(30_000, 30_000, seed=21)
    findings = [f for _, f in feed(monitor, ts, columns, even_cuts(len(ts), 1000))]
    drifts = [f for f in findings if f.kind == "drift"]
    assert {f.feature for f in drifts} - MAY_FOLLOW == DRIFTED
    assert all(f.event_time >= drift_ts for f in drifts)
    by_detector = {(f.feature, f.detector) for f in drifts}
    assert {
        ("amount", "window"),
        ("amount", "adwin"),
        ("amount", "page_hinkley"),
        ("country", "window"),
    } <= by_detector
    window = next(f for f in drifts if f.feature == "amount" and f.statistic == "psi")
    assert window.severity == "critical" and window.value > 0.25
    assert window.window_count == 5000 and window.window_start >= drift_ts - 50


def test_one_shift_is_one_episode_and_it_resolves_when_traffic_recovers(baseline):
    monitor = ModelMonitor(settings_from_baseline(baseline), baseline)
    ts, columns, _ = stream(20_000, 30_000, seed=31)
    recovered = monitor_columns(frame(30_000, seed=32))
    columns = {k: np.concatenate([v, recovered[k]]) for k, v in columns.items()}
    ts = 1_700_000_000.0 + 0.01 * np.arange(80_000)
    findings = [f for _, f in feed(monitor, ts, columns, even_cuts(80_000, 5000))]
    window = [f for f in findings if f.detector == "window"]
    for key in {(f.feature, f.statistic) for f in window}:
        kinds = [f.kind for f in window if (f.feature, f.statistic) == key]
        assert kinds == ["drift", "resolved"], key
    resolved = [f for f in window if f.kind == "resolved"]
    assert min(f.event_time for f in resolved) > ts[50_000]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_findings_and_state_do_not_depend_on_how_the_stream_is_batched(baseline, seed):
    ts, columns, _ = stream(15_000, 25_000, seed=41)
    first = ModelMonitor(settings_from_baseline(baseline), baseline)
    reference = feed(first, ts, columns, even_cuts(len(ts), 1000))
    cuts = sorted(np.random.default_rng(seed).choice(len(ts), 60, replace=False).tolist())
    second = ModelMonitor(settings_from_baseline(baseline), baseline)
    again = feed(second, ts, columns, cuts)
    assert again == reference
    assert len(reference) > 10
    # Bit-identical state too: a restarted worker cuts its batches elsewhere.
    assert json.dumps(second.to_state()) == json.dumps(first.to_state())


@pytest.mark.parametrize(
    "window", [WindowSettings(size=3000), WindowSettings(kind="time", seconds=45.0)]
)
def test_save_restore_continue_gives_identical_findings_and_state(baseline, window):
    settings = replace(settings_from_baseline(baseline), window=window, compare_previous=True)
    ts, columns, _ = stream(20_000, 20_000, seed=51)
    cuts = even_cuts(len(ts), 1700)
    uninterrupted = ModelMonitor(settings, baseline)
    expected = feed(uninterrupted, ts, columns, cuts)

    monitor, got, start = ModelMonitor(settings, baseline), [], 0
    for stop in [*cuts, len(ts)]:
        part = {k: v[start:stop] for k, v in columns.items()}
        got += [(row + start, f) for row, f in feed(monitor, ts[start:stop], part, [])]
        state = json.loads(json.dumps(monitor.to_state()))
        monitor = ModelMonitor.from_state(settings, baseline, state)
        start = stop
    assert got == expected
    assert monitor.to_state() == uninterrupted.to_state()
    assert any(f.reference == "previous_window" for _, f in expected)


def test_state_is_bounded(baseline):
    monitor = ModelMonitor(settings_from_baseline(baseline), baseline)
    ts, columns, _ = stream(200_000, 0, seed=61)
    feed(monitor, ts[:20_000], {k: v[:20_000] for k, v in columns.items()}, [])
    small = len(json.dumps(monitor.to_state()))
    rest = {k: v[20_000:] for k, v in columns.items()}
    feed(monitor, ts[20_000:], rest, even_cuts(180_000, 5000))
    large = len(json.dumps(monitor.to_state()))
    assert large < 1.5 * small


def test_time_windows_report_aligned_bounds(baseline):
    settings = replace(
        settings_from_baseline(baseline),
        window=WindowSettings(kind="time", seconds=60.0, min_count=100),
    )
    monitor = ModelMonitor(settings, baseline)
    ts, columns, drift_ts = stream(12_000, 12_000, seed=71, step=0.02)
    findings = [f for _, f in feed(monitor, ts, columns, even_cuts(len(ts), 1000))]
    window = [f for f in findings if f.detector == "window"]
    assert window and {f.feature for f in window} - MAY_FOLLOW == DRIFTED
    for f in window:
        assert f.window_end - f.window_start == 60.0 and f.window_start % 60.0 == 0
        assert f.event_time >= f.window_end and f.window_end > drift_ts


def test_settings_must_match_the_baseline(baseline):
    settings = settings_from_baseline(baseline)
    missing = replace(settings, features=(FeatureSettings("nope", "numeric", ()),))
    with pytest.raises(ValueError, match="'nope' is not in the baseline"):
        ModelMonitor(missing, baseline)
    wrong = replace(settings, features=(FeatureSettings("country", "numeric", ()),))
    with pytest.raises(ValueError, match="'country' is configured as numeric"):
        ModelMonitor(wrong, baseline)


def test_bad_state_is_refused_with_a_reason(baseline):
    settings = settings_from_baseline(baseline)
    state = ModelMonitor(settings, baseline).to_state()
    with pytest.raises(ValueError, match="model 'other'"):
        ModelMonitor.from_state(settings, baseline, {**state, "model_id": "other"})
    with pytest.raises(ValueError, match="version"):
        ModelMonitor.from_state(settings, baseline, {**state, "version": 9})
    del state["clock"]
    with pytest.raises(ValueError, match="'clock'"):
        ModelMonitor.from_state(settings, baseline, state)


def test_recent_values_are_packed_and_older_lists_still_load(baseline):
    settings = settings_from_baseline(baseline)
    ts, columns, _ = stream(6000, 3000, seed=83)
    monitor = ModelMonitor(settings, baseline)
    feed(monitor, ts, columns, [])
    state = json.loads(json.dumps(monitor.to_state()))
    packed = state["features"]["amount"]["recent"]
    steps = np.frombuffer(base64.b64decode(packed), dtype="<i2")
    assert len(steps) == 64 and np.array_equal(steps / 4096, monitor.watches["amount"].recent)
    # A state saved before the packing held a list of integer steps.
    state["features"]["amount"]["recent"] = steps.tolist()
    restored = ModelMonitor.from_state(settings, baseline, state)
    assert restored.to_state() == monitor.to_state()
    for bad, problem in [
        ("not base64!", "base64 of at most 64"),
        (base64.b64encode(b"abc").decode(), "whole int16 values"),
        (base64.b64encode(np.full(65, 1, "<i2").tobytes()).decode(), "at most 64 values"),
        (base64.b64encode(np.full(3, 9000, "<i2").tobytes()).decode(), "beyond"),
    ]:
        state["features"]["amount"]["recent"] = bad
        with pytest.raises(ValueError, match=re.escape(problem)):
            ModelMonitor.from_state(settings, baseline, state)


def test_page_hinkley_floats_are_packed_and_older_states_still_load(baseline):
    settings = settings_from_baseline(baseline)
    fresh = ModelMonitor(settings, baseline).to_state()  # min_increase is None before any value
    assert ModelMonitor.from_state(settings, baseline, fresh).to_state() == fresh
    ts, columns, _ = stream(6000, 3000, seed=84)
    monitor = ModelMonitor(settings, baseline)
    feed(monitor, ts, columns, [])
    state = json.loads(json.dumps(monitor.to_state()))
    saved = state["features"]["amount"]["detectors"]["page_hinkley"]
    full = monitor.watches["amount"].detectors["page_hinkley"].to_state()
    assert set(saved) == {"kind", "version", "n_seen", "running", "drift_detected"}
    assert np.frombuffer(base64.b64decode(saved["running"]), "<f8")[1] == full["sum"]
    # A state saved before the packing held the named floats.
    older = {key: full[key] for key in full if key not in ("min_instances", "delta", "threshold")}
    del older["alpha"], older["mode"]
    state["features"]["amount"]["detectors"]["page_hinkley"] = older
    assert ModelMonitor.from_state(settings, baseline, state).to_state() == monitor.to_state()
    state["features"]["amount"]["detectors"]["page_hinkley"] = {**saved, "running": "AAAA"}
    with pytest.raises(ValueError, match="base64 of 8 float64 values"):
        ModelMonitor.from_state(settings, baseline, state)


def test_huge_finite_values_leave_a_state_that_loads_and_continues(baseline):
    # 1e200 squared is not a finite double; JSON writers turn inf into null.
    settings = settings_from_baseline(baseline)
    ts, columns, _ = stream(6000, 0, seed=81)
    columns["amount"][100:103] = [1e200, -1e300, 1.7e308]
    first = {k: v[:3000] for k, v in columns.items()}
    rest = {k: v[3000:] for k, v in columns.items()}
    steady, monitor = ModelMonitor(settings, baseline), ModelMonitor(settings, baseline)
    for m in (steady, monitor):
        feed(m, ts[:3000], first, [])
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    sketch = state["features"]["amount"]["sketch"]
    assert (sketch["min"], sketch["max"]) == (-1e300, 1.7e308)
    assert all(math.isfinite(sketch[key]) for key in ("shift", "sum", "sumsq"))
    monitor = ModelMonitor.from_state(settings, baseline, state)
    expected = feed(steady, ts[3000:], rest, [])
    assert feed(monitor, ts[3000:], rest, []) == expected
    assert orjson.dumps(monitor.to_state()) == orjson.dumps(steady.to_state())


def test_settings_decide_which_columns_a_restored_state_fills(baseline):
    settings = settings_from_baseline(baseline)
    monitor = ModelMonitor(settings, baseline)
    ts, columns, _ = stream(3000, 0, seed=91)
    feed(monitor, ts, columns, [])
    state = monitor.to_state()
    fewer = replace(settings, features=settings.features[1:])
    dropped = ModelMonitor.from_state(fewer, baseline, state)
    assert settings.features[0].name not in dropped.to_state()["features"]
    del state["features"]["amount"]
    state["features"]["latency_ms"]["detectors"].pop("page_hinkley")
    fresh = ModelMonitor.from_state(settings, baseline, state)
    assert fresh.watches["amount"].sketch.count == 0
    assert fresh.watches["latency_ms"].detectors["page_hinkley"].n_seen == 0
    assert fresh.watches["latency_ms"].detectors["adwin"].width == 3000


def with_amount_edges(baseline, edges):
    amount = baseline.features["amount"]
    counts = (1,) * (len(edges) + 1)
    changed = replace(amount, edges=tuple(edges), counts=counts, count=len(counts))
    return replace(baseline, features={**baseline.features, "amount": changed})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda edges: [edges[0] - 1.0, *edges[1:]], "'features.amount.sketch.edges_digest'"),
        (lambda edges: edges[1:], "'features.amount.sketch.counts' holds"),
    ],
)
def test_a_sketch_saved_with_another_baseline_is_refused(baseline, change, message):
    settings = settings_from_baseline(baseline)
    other = with_amount_edges(baseline, change(list(baseline.features["amount"].edges)))
    ts, columns, _ = stream(3000, 0, seed=93)
    monitor = ModelMonitor(settings, other)
    feed(monitor, ts, columns, [1000])
    state = orjson.loads(orjson.dumps(monitor.to_state()))
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        ModelMonitor.from_state(settings, baseline, state)
    assert str(err.value).endswith("saved with another baseline")
    ModelMonitor.from_state(settings, other, state)


def test_a_sketch_of_another_kind_or_an_unknown_detector_is_refused(baseline):
    settings = settings_from_baseline(baseline)
    state = ModelMonitor(settings, baseline).to_state()
    state["features"]["amount"]["sketch"] = state["features"]["country"]["sketch"]
    with pytest.raises(ValueError, match=re.escape("'features.amount.sketch.kind'")):
        ModelMonitor.from_state(settings, baseline, state)
    state = ModelMonitor(settings, baseline).to_state()
    detectors = state["features"]["amount"]["detectors"]
    detectors["kalman"] = detectors["adwin"]
    with pytest.raises(ValueError, match="unknown detector 'kalman'"):
        ModelMonitor.from_state(settings, baseline, state)


def test_committed_state_of_a_reference_monitor_stays_within_32_kb():
    from driftstream.synthetic import REFERENCE_CATEGORICAL, REFERENCE_NUMERIC, reference_frame

    data = reference_frame(20_000, seed=1)
    profile = build_profile(data, model_id="m", prediction="prediction", score="score")
    monitor = ModelMonitor(settings_from_baseline(profile), profile)
    events = reference_frame(200_000, seed=2)
    columns = {name: events[name] for name in (*REFERENCE_NUMERIC, *REFERENCE_CATEGORICAL)}
    columns.update({PREDICTION: events["prediction"], SCORE: events["score"]})
    whole = Batch(np.arange(200_000, dtype=np.float64), columns)
    for start in range(0, 200_000, 20_000):
        monitor.update(whole.slice(start, start + 20_000))
    # ADWIN adds about 100 bytes per numeric column each time its window
    # doubles; 200,000 events leave about 4 KB of room (README, Performance).
    assert len(orjson.dumps(monitor.to_state())) <= 32 * 1024
