import copy
import json
import math
from dataclasses import replace

import numpy as np
import orjson
import pytest
from statepaths import dotted, edited, walk

from driftstream.core.baseline import build_profile
from driftstream.core.comparison import (
    VersionComparison,
    comparison_settings_from_baseline,
    reading_reference,
)
from driftstream.core.findings import Finding
from driftstream.core.settings import FeatureSettings, StatisticSetting
from driftstream.synthetic import frame

T0 = 1_700_000_000.0
SECONDS = 10.0
PER_WINDOW = 8000  # events per window: a 25% challenger holds about 2,000 of them


@pytest.fixture(scope="module")
def baseline():
    return build_profile(
        frame(50_000, seed=1),
        model_id="fraud",
        prediction="prediction",
        score="score",
        target="label",
    )


def settings_for(baseline, **overrides):
    return comparison_settings_from_baseline(baseline, **{"seconds": SECONDS, **overrides})


def traffic(windows, seed, shares, shifted=None, per_window=PER_WINDOW, late=0.0):
    """``windows`` full windows of traffic, then the event that closes the last one.

    ``shares`` gives each version's share of the traffic; ``shifted`` maps a
    version to the windows ``range`` in which its model scores 1.6 times
    higher (predictions follow). ``late`` moves that share of events 3 s
    back in event time.
    """
    n = windows * per_window + 1
    rng = np.random.default_rng(seed)
    names = np.array(list(shares), dtype=object)
    versions = rng.choice(names, size=n, p=list(shares.values()))
    data = frame(n, seed)
    score = data["score"].astype(np.float64)
    ts = T0 + (np.arange(n) + 0.5) * (SECONDS / per_window)
    for version, span in (shifted or {}).items():
        window = np.floor((ts - T0) / SECONDS)
        mask = (versions == version) & (window >= span.start) & (window < span.stop)
        score[mask] = np.minimum(score[mask] * 1.6, 1.0)
    prediction = np.where(score > 0.5, "fraud", "ok").astype(object)
    moved = rng.random(n) < late
    ts[moved] -= 3.0
    return ts, versions, {"__score__": score, "__prediction__": prediction}


def feed(comparison, ts, versions, columns, cuts=()):
    """Feed the stream cut at ``cuts``: (global row, finding) pairs and every reading."""
    found, readings, start = [], [], 0
    for stop in [*cuts, len(ts)]:
        part = {name: column[start:stop] for name, column in columns.items()}
        for finding in comparison.update(ts[start:stop], versions[start:stop], part):
            found.append((start + finding.row, replace(finding, row=0)))
        readings += comparison.readings
        start = stop
    return found, readings


def random_cuts(n, seed, count=40):
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.arange(1, n), size=count, replace=False).tolist())


def score_only(baseline, *statistics, **overrides):
    """Settings comparing the score only, with drift's default thresholds."""
    columns = settings_for(baseline).columns
    score = next(c for c in columns if c.name == "__score__")
    if statistics:
        score = replace(
            score, statistics=tuple(s for s in score.statistics if s.name in statistics)
        )
    return settings_for(baseline, columns=(score,), **overrides)


# ------------------------------------------------------------------ findings


def test_a_shifted_challenger_opens_one_comparison_and_resolves_after_it_returns(baseline):
    comparison = VersionComparison(score_only(baseline), baseline)
    ts, versions, columns = traffic(16, 1, {"v1": 0.75, "v2": 0.25}, {"v2": range(4, 10)})
    found, _ = feed(comparison, ts, versions, columns, cuts=range(3000, len(ts), 3000))
    findings = [f for _, f in found]
    opened = [f for f in findings if f.kind == "comparison"]
    assert {f.statistic for f in opened} >= {"psi", "wasserstein"}
    for statistic in {f.statistic for f in findings}:
        kinds = [f.kind for f in findings if f.statistic == statistic]
        assert kinds == ["comparison", "resolved"], statistic
    for finding in findings:
        assert finding.model_version == "v2"
        assert finding.reference == "champion"
        assert finding.detector == "comparison"
        assert finding.feature == "__score__"
        assert finding.details["champion"] == "v1"
        assert finding.details["challenger"] == "v2"
        assert finding.details["challenger_count"] == finding.window_count
        assert finding.details["champion_count"] > 2 * finding.window_count
    first = min(opened, key=lambda f: f.event_time)
    assert (first.window_start, first.window_end) == (T0 + 40.0, T0 + 50.0)
    assert first.event_time == ts[5 * PER_WINDOW] and first.severity in {"warning", "critical"}
    resolved = [f for f in findings if f.kind == "resolved"]
    assert all(f.severity == "info" and f.window_start >= T0 + 100.0 for f in resolved)


def test_a_configured_champion_is_the_reference_even_with_less_traffic(baseline):
    settings = score_only(baseline, "psi", champion="v2")
    comparison = VersionComparison(settings, baseline)
    ts, versions, columns = traffic(6, 2, {"v1": 0.7, "v2": 0.3}, {"v2": range(0, 6)})
    found, readings = feed(comparison, ts, versions, columns)
    assert [(f.kind, f.model_version, f.details["champion"]) for _, f in found] == [
        ("comparison", "v1", "v2")
    ]
    assert found[0][1].window_count > found[0][1].details["champion_count"]
    assert {r.reference for r in readings} == {reading_reference("v1", "v2")} == {"v1 vs v2"}
    assert len(readings) == 6


def test_without_the_configured_champion_a_window_is_not_judged(baseline):
    comparison = VersionComparison(score_only(baseline, champion="v0"), baseline)
    ts, versions, columns = traffic(4, 3, {"v1": 0.5, "v2": 0.5}, {"v2": range(0, 4)})
    assert feed(comparison, ts, versions, columns) == ([], [])


def test_the_busiest_version_is_champion_and_a_tie_goes_to_the_smallest_name(baseline):
    comparison = VersionComparison(score_only(baseline, "psi"), baseline)
    ts, _, columns = traffic(3, 4, {"v": 1.0})
    versions = np.tile(np.array(["b", "a"], dtype=object), len(ts) // 2 + 1)[: len(ts)]
    _, readings = feed(comparison, ts, versions, columns)
    # Every window holds 4,000 of each: a tie, so the smallest name is champion.
    assert [r.reference for r in readings] == ["b vs a"] * 3
    ts, versions, columns = traffic(3, 5, {"b": 0.6, "a": 0.4})
    _, readings = feed(
        VersionComparison(score_only(baseline, "psi"), baseline), ts, versions, columns
    )
    assert [r.reference for r in readings] == ["a vs b"] * 3


def test_a_challenger_like_the_champion_stays_quiet_for_200_windows(baseline):
    comparison = VersionComparison(settings_for(baseline), baseline)
    ts, versions, columns = traffic(200, 6, {"v1": 0.75, "v2": 0.25})
    found, readings = feed(comparison, ts, versions, columns, cuts=range(50_000, len(ts), 50_000))
    assert found == []
    # Four statistics on the score and three on the prediction, every window.
    assert len(readings) == 200 * 7
    assert {r.count for r in readings} <= set(range(1700, 2300))


def test_versions_below_min_count_are_not_judged(baseline):
    settings = score_only(baseline, min_count=2500)
    shifted = {"v2": range(0, 5)}
    ts, versions, columns = traffic(5, 7, {"v1": 0.75, "v2": 0.25}, shifted)
    comparison = VersionComparison(settings, baseline)
    assert feed(comparison, ts, versions, columns) == ([], [])
    # The champion below min_count: nothing is judged either.
    settings = score_only(baseline, min_count=2500, champion="v2")
    assert feed(VersionComparison(settings, baseline), ts, versions, columns) == ([], [])
    # Enough events on both sides: the same traffic is judged.
    comparison = VersionComparison(score_only(baseline, min_count=1500), baseline)
    found, readings = feed(comparison, ts, versions, columns)
    assert found and len(readings) == 5 * 4


def test_a_column_with_too_few_values_is_not_judged(baseline):
    ts, versions, columns = traffic(3, 8, {"v1": 0.75, "v2": 0.25})
    columns["__score__"] = np.where(versions == "v2", np.nan, columns["__score__"])
    comparison = VersionComparison(settings_for(baseline), baseline)
    _, readings = feed(comparison, ts, versions, columns)
    assert {r.column for r in readings} == {"__prediction__"}
    del columns["__score__"]  # an absent column is all missing
    comparison = VersionComparison(settings_for(baseline), baseline)
    assert {r.column for r in feed(comparison, ts, versions, columns)[1]} == {"__prediction__"}


# ------------------------------------------------------------------- bounds


def test_versions_beyond_max_versions_are_ignored_and_counted(baseline):
    shares = {"a": 0.3, "b": 0.25, "c": 0.2, "d": 0.15, "e": 0.1}
    ts, versions, columns = traffic(2, 9, shares, per_window=20_000)
    comparison = VersionComparison(score_only(baseline, "psi", max_versions=3), baseline)
    part = {k: v[:15_000] for k, v in columns.items()}
    comparison.update(ts[:15_000], versions[:15_000], part)
    # The first three versions to appear in the window hold the slots.
    first_seen = list(dict.fromkeys(versions[:15_000].tolist()))[:3]
    assert sorted(comparison.versions) == sorted(first_seen)
    ignored = int(np.isin(versions[:15_000], first_seen, invert=True).sum())
    assert comparison.ignored == ignored
    # The window closes at row 20,000; the next one admits versions afresh.
    rest = {k: v[15_000:20_001] for k, v in columns.items()}
    _, readings = feed(comparison, ts[15_000:20_001], versions[15_000:20_001], rest)
    champion = max(first_seen, key=lambda v: (versions[:20_000] == v).sum())
    expected = {reading_reference(v, champion) for v in first_seen if v != champion}
    assert {r.reference for r in readings} == expected
    assert len(comparison.to_state()["versions"]) <= 3


def test_a_configured_champion_always_has_a_slot(baseline):
    ts, versions, columns = traffic(1, 10, {"v": 1.0})
    versions = np.array(["a"] * 3000 + ["b"] * 3000 + ["c"] * (len(ts) - 6000), dtype=object)
    settings = score_only(baseline, "psi", max_versions=2, champion="c", min_count=100)
    comparison = VersionComparison(settings, baseline)
    _, readings = feed(comparison, ts, versions, columns)
    assert [r.reference for r in readings] == ["a vs c"]
    assert comparison.ignored == 3000


def test_a_new_version_evicts_the_least_recently_seen_idle_one(baseline):
    settings = score_only(baseline, "psi", max_versions=2)
    comparison = VersionComparison(settings, baseline)
    ts, versions, columns = traffic(1, 11, {"v1": 0.75, "v2": 0.25}, {"v2": range(0, 1)})
    first = {k: v[:-1] for k, v in columns.items()}
    assert feed(comparison, ts[:-1], versions[:-1], first) == ([], [])
    ts2, versions2, columns2 = traffic(1, 12, {"v1": 0.75, "v3": 0.25})
    ts2 += SECONDS
    versions2[0] = "v1"
    # Its first event closes window 0: v2's episode opens, and keeps v2 held.
    head = {k: v[:1] for k, v in columns2.items()}
    found, _ = feed(comparison, ts2[:1], versions2[:1], head)
    assert [(f.kind, f.model_version) for _, f in found] == [("comparison", "v2")]
    assert comparison.versions == ["v2", "v1"]
    # v3 finds both slots held: v2, idle, makes room.
    rest = {k: v[1:-1] for k, v in columns2.items()}
    comparison.update(ts2[1:-1], versions2[1:-1], rest)
    assert comparison.evicted == 1 and comparison.versions == ["v1", "v3"]


def test_retire_forgets_a_version_and_its_episodes(baseline):
    comparison = VersionComparison(score_only(baseline, "psi"), baseline)
    ts, versions, columns = traffic(4, 13, {"v1": 0.75, "v2": 0.25}, {"v2": range(0, 4)})
    cut = PER_WINDOW + 1
    found, _ = feed(comparison, ts[:cut], versions[:cut], {k: v[:cut] for k, v in columns.items()})
    assert [f.kind for _, f in found] == ["comparison"]
    comparison.retire("v2")
    assert "v2" not in comparison.versions
    comparison.retire("never-seen")
    rest = {k: v[cut:] for k, v in columns.items()}
    found, _ = feed(comparison, ts[cut:], versions[cut:], rest)
    # Forgotten, so the still shifted v2 opens a new episode at the next window.
    assert [f.kind for _, f in found] == ["comparison"]


def test_state_stays_bounded_while_versions_come_and_go(baseline):
    settings = score_only(baseline, "psi", max_versions=3, min_count=200)
    comparison = VersionComparison(settings, baseline)
    sizes = []
    for k in range(12):
        shares = {"main": 0.7, f"canary-{k}": 0.3}
        ts, versions, columns = traffic(1, 20 + k, shares, {f"canary-{k}": range(0, 1)}, 4000)
        comparison.update(
            ts[:-1] + k * SECONDS, versions[:-1], {n: c[:-1] for n, c in columns.items()}
        )
        state = comparison.to_state()
        assert len(state["versions"]) <= 3
        sizes.append(len(orjson.dumps(state)))
    assert comparison.evicted > 0
    assert max(sizes[3:]) <= 1.2 * min(sizes[3:])


# ---------------------------------------------------------- determinism


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_findings_readings_and_state_do_not_depend_on_batching(baseline, seed):
    shares = {"v1": 0.6, "v2": 0.25, "v3": 0.15}
    shifted = {"v2": range(2, 6), "v3": range(4, 9)}
    ts, versions, columns = traffic(10, 30, shares, shifted, late=0.02)
    whole = VersionComparison(settings_for(baseline, max_versions=2), baseline)
    expected = feed(whole, ts, versions, columns)
    split = VersionComparison(settings_for(baseline, max_versions=2), baseline)
    assert feed(split, ts, versions, columns, random_cuts(len(ts), seed)) == expected
    assert len(expected[0]) > 4 and split.ignored > 0 and split.clock.late > 0
    assert orjson.dumps(split.to_state()) == orjson.dumps(whole.to_state())


@pytest.mark.parametrize("every", [1, 3])
def test_save_restore_mid_window_continues_identically(baseline, every):
    settings = settings_for(baseline, max_versions=3)
    shares = {"v1": 0.6, "v2": 0.25, "v3": 0.15}
    ts, versions, columns = traffic(8, 31, shares, {"v2": range(2, 5)}, late=0.01)
    cuts = random_cuts(len(ts), 5, count=30)
    steady = VersionComparison(settings, baseline)
    expected = feed(steady, ts, versions, columns, cuts)
    comparison, got, start = VersionComparison(settings, baseline), ([], []), 0
    for i, stop in enumerate([*cuts, len(ts)]):
        part = {k: v[start:stop] for k, v in columns.items()}
        found, readings = feed(comparison, ts[start:stop], versions[start:stop], part)
        got[0].extend((row + start, f) for row, f in found)
        got[1].extend(readings)
        if i % every == 0:
            state = orjson.loads(orjson.dumps(comparison.to_state()))
            comparison = VersionComparison.from_state(settings, baseline, state)
        start = stop
    assert got == expected
    assert orjson.dumps(comparison.to_state()) == orjson.dumps(steady.to_state())


# ---------------------------------------------------------- state checks


@pytest.fixture(scope="module")
def fed(baseline):
    """A comparison mid-window, with an open episode and an idle version held."""
    settings = settings_for(baseline, max_versions=3)
    comparison = VersionComparison(settings, baseline)
    ts, versions, columns = traffic(3, 40, {"v1": 0.7, "v2": 0.3}, {"v2": range(0, 3)})
    comparison.update(ts[:-1], versions[:-1], {k: v[:-1] for k, v in columns.items()})
    # Window 3 closes window 2 and brings v1 and a new v3, while v2 stays away.
    more = slice(0, 500)
    ts2 = ts[more] + 3 * SECONDS
    versions2 = np.where(versions[more] == "v2", "v3", versions[more]).astype(object)
    versions2[0] = "v1"
    comparison.update(ts2, versions2, {k: v[more] for k, v in columns.items()})
    state = orjson.loads(orjson.dumps(comparison.to_state()))
    assert [v["name"] for v in state["versions"]] == ["v2", "v1", "v3"]
    assert state["versions"][0]["count"] == 0 and state["versions"][0]["episodes"]["open"]
    return settings, state


DATA_MAPS = ("sketches", "open", "counts")  # keyed by data: columns, episodes, categories


def damages(state):
    for path, value in walk(state):
        if isinstance(value, dict):
            if not path or path[-1] not in DATA_MAPS:
                for key in value:
                    yield edited(state, (*path, key), delete=True), (*path, key)
                yield edited(state, (*path, "surplus"), 1), (*path, "surplus")
            if path:
                yield edited(state, path, []), path
        elif isinstance(value, bool):
            yield edited(state, path, int(value)), path
        elif isinstance(value, int) and path[-1] not in ("index",):
            yield edited(state, path, True), path
            yield edited(state, path, -1), path
        elif isinstance(value, float):
            for bad in (math.nan, math.inf, True, "1.0"):
                yield edited(state, path, bad), path
        elif isinstance(value, str) and path[-1] in ("kind", "name", "model_id"):
            yield edited(state, path, 7), path


def test_every_damaged_field_is_refused_naming_its_key_path(baseline, fed):
    settings, state = fed
    VersionComparison.from_state(settings, baseline, state)  # the healthy state loads
    wrong, checked = [], 0
    for damaged, path in damages(state):
        checked += 1
        try:
            VersionComparison.from_state(settings, baseline, damaged)
        except ValueError as err:
            if f"'{dotted(path)}'" not in str(err):
                wrong.append(f"{dotted(path)}: {err}")
        else:
            wrong.append(f"{dotted(path)}: accepted")
    assert not wrong, "\n".join(wrong[:20])
    assert checked > 60


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(model_id="other"), "'model_id' is 'other', not the settings' 'fraud'"),
        (lambda s: s["clock"].update(seconds=60.0), "'clock.seconds' (60.0) differs"),
        (lambda s: s.update(version=2), "'version' must be 1"),
        (lambda s: s.update(kind="model_monitor"), "'kind' must be 'version_comparison'"),
        (lambda s: s["versions"].append(copy.deepcopy(s["versions"][1])), "'versions' must hold"),
        (lambda s: s["versions"][2].update(name="v1"), "'versions[2].name' repeats version 'v1'"),
        (lambda s: s["versions"][1].update(count=7), "'versions[1].count' (7) differs"),
        (
            lambda s: s["versions"][0]["episodes"].update(open={}),
            "'versions[0]' holds a version with neither events nor an open episode",
        ),
        (
            lambda s: s["versions"][1]["sketches"]["__score__"].update(edges_digest="0"),
            "'versions[1].sketches.__score__.edges_digest' does not match the baseline's",
        ),
        (
            lambda s: s["versions"][1]["sketches"]["__prediction__"].update(cap=3),
            "'versions[1].sketches.__prediction__.cap' must be the settings' category_cap 50",
        ),
        (
            lambda s: s["versions"][1]["sketches"].update(
                __prediction__=s["versions"][1]["sketches"]["__score__"]
            ),
            "'versions[1].sketches.__prediction__.kind' must be 'categorical'",
        ),
    ],
)
def test_inconsistent_states_are_refused_with_the_key_path(baseline, fed, edit, message):
    settings, state = fed
    state = copy.deepcopy(state)
    edit(state)
    with pytest.raises(ValueError, match=r"^comparison state") as err:
        VersionComparison.from_state(settings, baseline, state)
    assert message in str(err.value)


@pytest.mark.parametrize("bad", [None, [], "state", 1.0])
def test_a_state_that_is_not_a_mapping_is_refused(baseline, fed, bad):
    with pytest.raises(ValueError, match="must be a mapping"):
        VersionComparison.from_state(fed[0], baseline, bad)


def test_settings_decide_which_columns_a_restored_state_fills(baseline, fed):
    settings, state = fed
    narrower = replace(settings, columns=settings.columns[1:])
    restored = VersionComparison.from_state(narrower, baseline, state)
    assert set(restored.to_state()["versions"][1]["sketches"]) == {settings.columns[1].name}


# ---------------------------------------------------------- output kinds


def test_a_categorical_prediction_is_compared():
    rng = np.random.default_rng(50)
    classes = np.array(["approve", "review", "reject"], dtype=object)
    training = {"x": rng.normal(size=20_000), "y": rng.choice(classes, 20_000, p=[0.6, 0.3, 0.1])}
    profile = build_profile(training, model_id="m", prediction="y")
    settings = comparison_settings_from_baseline(profile, seconds=SECONDS)
    assert [(c.name, c.kind) for c in settings.columns] == [("__prediction__", "categorical")]
    n = 4 * PER_WINDOW + 1
    ts = T0 + (np.arange(n) + 0.5) * (SECONDS / PER_WINDOW)
    versions = rng.choice(np.array(["v1", "v2"], dtype=object), n, p=[0.7, 0.3])
    prediction = rng.choice(classes, n, p=[0.6, 0.3, 0.1])
    late = (versions == "v2") & (ts >= T0 + 2 * SECONDS)
    prediction[late] = rng.choice(classes, int(late.sum()), p=[0.2, 0.3, 0.5])
    found, readings = feed(
        VersionComparison(settings, profile), ts, versions, {"__prediction__": prediction}
    )
    assert {r.statistic for r in readings} == {"js", "linf", "psi"}
    opened = [f for _, f in found]
    assert {(f.kind, f.model_version, f.feature) for f in opened} == {
        ("comparison", "v2", "__prediction__")
    }
    assert {f.statistic for f in opened} == {"js", "linf", "psi"}
    assert min(f.window_start for f in opened) == T0 + 2 * SECONDS


def test_a_numeric_prediction_is_compared():
    rng = np.random.default_rng(51)
    profile = build_profile(
        {"x": rng.normal(size=20_000), "y": rng.normal(100.0, 15.0, 20_000)},
        model_id="m",
        prediction="y",
    )
    settings = comparison_settings_from_baseline(profile, seconds=SECONDS)
    assert [(c.name, c.kind) for c in settings.columns] == [("__prediction__", "numeric")]
    n = 4 * PER_WINDOW + 1
    ts = T0 + (np.arange(n) + 0.5) * (SECONDS / PER_WINDOW)
    versions = rng.choice(np.array(["v1", "v2"], dtype=object), n, p=[0.7, 0.3])
    prediction = rng.normal(100.0, 15.0, n) + np.where(versions == "v2", 15.0, 0.0)
    found, readings = feed(
        VersionComparison(settings, profile), ts, versions, {"__prediction__": prediction}
    )
    assert {r.statistic for r in readings} == {"psi", "js", "ks", "wasserstein"}
    assert {(f.kind, f.model_version, f.statistic) for _, f in found} == {
        ("comparison", "v2", name) for name in ("psi", "js", "ks", "wasserstein")
    }


# ------------------------------------------------------------ refusals


def test_columns_missing_from_the_baseline_are_refused():
    rng = np.random.default_rng(52)
    profile = build_profile(
        {"x": rng.normal(size=1000), "y": rng.normal(size=1000)}, model_id="m", prediction="y"
    )
    score = FeatureSettings("__score__", "numeric", (StatisticSetting("psi", 0.1, 0.25),))
    settings = replace(comparison_settings_from_baseline(profile), columns=(score,))
    with pytest.raises(ValueError, match=r"'__score__' is not in the baseline of model 'm'"):
        VersionComparison(settings, profile)
    feature = replace(score, name="x")
    with pytest.raises(ValueError, match=r"'x' is not a model output"):
        VersionComparison(replace(settings, columns=(feature,)), profile)
    categorical = FeatureSettings("__prediction__", "categorical", ())
    with pytest.raises(ValueError, match="configured as categorical"):
        VersionComparison(replace(settings, columns=(categorical,)), profile)
    no_outputs = build_profile({"x": rng.normal(size=1000)}, model_id="m")
    with pytest.raises(ValueError, match="neither prediction nor score"):
        comparison_settings_from_baseline(no_outputs)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_count": 0}, "min_count must be >= 1"),
        ({"max_versions": 1}, "max_versions must be >= 2"),
        ({"seconds": 0.0}, "seconds must be > 0"),
        ({"columns": ()}, "columns must name"),
    ],
)
def test_bad_settings_are_refused(baseline, overrides, message):
    with pytest.raises(ValueError, match=message):
        VersionComparison(settings_for(baseline, **overrides), baseline)


def test_statistics_must_suit_the_column(baseline):
    columns = settings_for(baseline).columns
    score = next(c for c in columns if c.name == "__score__")
    bad = replace(score, statistics=(StatisticSetting("linf", 0.3, 0.5),))
    with pytest.raises(ValueError, match="'linf' does not suit a numeric column"):
        VersionComparison(settings_for(baseline, columns=(bad,)), baseline)


def test_bad_versions_are_refused(baseline):
    comparison = VersionComparison(settings_for(baseline), baseline)
    ts = np.array([T0, T0 + 1.0])
    with pytest.raises(ValueError, match="one entry per row"):
        comparison.update(ts, np.array(["v1"], dtype=object), {})
    with pytest.raises(ValueError, match="versions must be strings"):
        comparison.update(ts, np.array(["v1", None], dtype=object), {})
    with pytest.raises(ValueError, match="versions must be strings"):
        comparison.update(ts, np.array([1, 2]), {})
    assert comparison.update(np.zeros(0), np.zeros(0, dtype=object), {}) == []
    assert comparison.update(ts, np.array(["v1", "v2"]), {}) == []  # a str dtype works


def test_comparison_findings_serialise_with_their_details(baseline):
    comparison = VersionComparison(score_only(baseline, "psi"), baseline)
    ts, versions, columns = traffic(1, 53, {"v1": 0.75, "v2": 0.25}, {"v2": range(0, 1)})
    (finding,) = comparison.update(ts, versions, columns)
    data = json.loads(json.dumps(finding.to_dict(), allow_nan=False))
    assert data["details"] == {
        "champion": "v1",
        "challenger": "v2",
        "champion_count": finding.details["champion_count"],
        "challenger_count": finding.window_count,
    }
    assert hash(finding) == hash(replace(finding, details=None))
    plain = Finding(
        "drift",
        "m",
        "v",
        "x",
        "window",
        "psi",
        0.2,
        0.1,
        "warning",
        "baseline",
        0.0,
        1.0,
        10,
        1.0,
        0,
    )
    assert plain.details is None and plain.to_dict()["details"] is None
