"""Monitors per model version and per segment value, on the in-memory broker and real Redis.

A canary that drifts while its champion does not alerts for the canary
alone, and the champion-vs-challenger comparison says so; a segment value
that drifts alerts for that value alone; a run stopped and resumed ends in
the same state and alerts as one that never stopped, retirements included.
"""

import uuid

import numpy as np
import orjson
import pytest
import redis
from fakes import fake_broker, fake_config, published, run_stopping
from pipeline import START_TS, first_difference, snapshot

from driftstream.config import ConfigError, parse_config
from driftstream.core.baseline import build_profile
from driftstream.runtime.models import load_models
from driftstream.synthetic import feature_rows, frame

MODEL = "fraud-detector"
KEY = MODEL.encode()
DRIFTED = ("amount", "latency_ms")


def traffic(n, seed, version_of, segment_of=None, drifted=lambda row: False):
    """Prediction events; each row's version, segment and drift chosen by functions of it."""
    stable, moved = frame(n, seed), frame(n, seed + 1, drift=DRIFTED)
    values = []
    for row in range(n):
        part = moved if drifted(row) else stable
        features = feature_rows({k: v[row : row + 1] for k, v in part.items()})[0]
        event = {
            "event_id": f"e{row}",
            "model_id": MODEL,
            "model_version": version_of(row),
            "ts": START_TS + row * 0.01,
            "features": features,
            "prediction": part["prediction"][row],
            "score": float(part["score"][row]),
        }
        if segment_of is not None:
            event["segment"] = segment_of(row)
        values.append(orjson.dumps(event))
    return values


def run(tmp_path, redis_url, values, options, stops=()):
    """Feed ``values`` on partition 0; stop and replace the worker after each count in ``stops``."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = fake_config(tmp_path, redis_url, prefix, window=2000, model_options=options)
    broker = fake_broker(config)
    for value in values:
        broker.append(config.kafka.topics.predictions, 0, KEY, value)
    client = redis.Redis.from_url(redis_url)
    run_stopping(config, broker, client, len(values), stops)
    alerts = published(config, broker)
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    return alerts, state, config


def drifts(alerts):
    return [a for a in alerts if a["kind"] == "drift"]


def test_a_drifting_canary_alerts_for_itself_and_against_its_champion(tmp_path, redis_url):
    canary = lambda row: row % 5 == 0  # noqa: E731  (a fifth of the traffic)
    values = traffic(
        30_000,
        seed=11,
        version_of=lambda row: "v2" if canary(row) else "v1",
        drifted=lambda row: canary(row) and row >= 10_000,
    )
    options = {"versions": {"monitor": True, "compare_seconds": 50, "min_count": 500}}
    alerts, state, _ = run(tmp_path, redis_url, values, options)

    assert drifts(alerts), "the canary's drift must alert"
    assert {a["model_version"] for a in drifts(alerts)} == {"v2"}
    assert {a["feature"] for a in drifts(alerts)} & set(DRIFTED)
    compared = [a for a in alerts if a["kind"] == "comparison"]
    assert compared, "the canary's outputs moved away from the champion's"
    assert {a["model_version"] for a in compared} == {"v2"}
    assert {(a["details"]["champion"], a["details"]["challenger"]) for a in compared} == {
        ("v1", "v2")
    }
    assert all(a["event_time"] >= START_TS + 100 for a in compared)
    names = set(state[0]["states"])
    assert 'predictions:fraud-detector|["v1", "", ""]' in names
    assert 'predictions:fraud-detector|["v2", "", ""]' in names
    assert "compare:fraud-detector" in names
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_a_version_with_its_own_baseline_is_judged_against_it(tmp_path, redis_url):
    # v2 was trained on the shifted data it serves: against the model's
    # baseline it drifts, against its own it does not.
    data = frame(20_000, seed=21, drift=DRIFTED)
    del data["label"]
    own = build_profile(data, model_id=MODEL, prediction="prediction", score="score")
    path = tmp_path / "v2-baseline.json"
    path.write_bytes(own.to_json())
    values = traffic(
        20_000,
        seed=14,
        version_of=lambda row: "v2" if row % 2 else "v1",
        drifted=lambda row: bool(row % 2),
    )
    versions = {"monitor": True, "compare": False}
    plain, _, _ = run(tmp_path, redis_url, values, {"versions": versions})
    assert {a["model_version"] for a in drifts(plain)} == {"v2"}
    versions["baselines"] = {"v2": str(path)}
    alerts, _, _ = run(tmp_path, redis_url, values, {"versions": versions})
    assert drifts(alerts) == []


def test_a_version_baseline_with_other_columns_is_refused(tmp_path, redis_url):
    data = frame(5_000, seed=1)
    del data["items"], data["label"]
    other = build_profile(data, model_id=MODEL, prediction="prediction", score="score")
    path = tmp_path / "other.json"
    path.write_bytes(other.to_json())
    versions = {"monitor": True, "baselines": {"v2": str(path)}}
    config = fake_config(tmp_path, redis_url, "other", model_options={"versions": versions})
    with pytest.raises(ConfigError, match=r"versions\.baselines\.v2: .* other columns"):
        load_models(config)


def test_a_drifting_segment_alerts_for_that_segment_alone(tmp_path, redis_url):
    regions = ("north", "south", "east")
    region = lambda row: regions[row % 3]  # noqa: E731
    values = traffic(
        30_000,
        seed=12,
        version_of=lambda row: "v1",
        segment_of=lambda row: {"region": region(row)},
        drifted=lambda row: region(row) == "south" and row >= 12_000,
    )
    options = {"segments": {"keys": ["region"], "min_count": 200}}
    alerts, state, _ = run(tmp_path, redis_url, values, options)

    segmented = [a for a in drifts(alerts) if a["segment"]]
    assert segmented, "the south's drift must alert"
    assert {a["segment"]["region"] for a in segmented} == {"south"}
    assert all(a["model_version"] == "v1" for a in segmented)
    names = set(state[0]["states"])
    for value in regions:
        assert f'predictions:fraud-detector|["", "region", "{value}"]' in names
    assert "predictions:fraud-detector" in names
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_restart_equivalence_holds_with_versions_segments_and_retirements(tmp_path, redis_url):
    rng = np.random.default_rng(3)
    versions = np.array(["v1", "v2", "v3"])[np.minimum(np.arange(20_000) // 5_000, 2)]
    versions[rng.random(20_000) < 0.1] = "v1"  # the champion keeps a trickle throughout
    countries = rng.choice(["US", "GB", "DE", "FR", "JP"], size=20_000)
    values = traffic(
        20_000,
        seed=13,
        version_of=lambda row: str(versions[row]),
        segment_of=lambda row: {"country": str(countries[row])} if row % 7 else None,
        drifted=lambda row: row >= 8_000 and countries[row] == "GB",
    )
    options = {
        "versions": {"monitor": True, "max_active": 2, "compare_seconds": 20, "min_count": 300},
        "segments": {"keys": ["country"], "max_values": 3, "min_count": 100},
    }
    whole_alerts, whole_state, _ = run(tmp_path, redis_url, values, options)
    split_alerts, split_state, _ = run(
        tmp_path, redis_url, values, options, stops=(3_300, 9_100, 14_700)
    )

    assert whole_alerts, "the input must raise alerts"
    assert {a["alert_id"] for a in split_alerts} == {a["alert_id"] for a in whole_alerts}
    difference = first_difference(whole_state, split_state)
    assert difference is None, difference
    names = set(whole_state[0]["states"])
    # v2 retired when v3 arrived (two slots: v1 stayed, seen more recently).
    assert not any('["v2"' in name for name in names)
    assert any('["v3", "country", "__other__"]' in name for name in names)


def test_caps_that_could_flood_the_metrics_are_refused_with_the_arithmetic(tmp_path, redis_url):
    config = fake_config(
        tmp_path,
        redis_url,
        "caps",
        model_options={
            "versions": {"monitor": True, "max_active": 4},
            "segments": {"keys": ["country"], "max_values": 100},
        },
    )
    # The fraud model watches 4 numeric columns and the score (4 statistics
    # each) and 3 categorical ones and the prediction (3 each): 32 series.
    expected = r"4 version\(s\) x 102 monitor\(s\) x 32 series = 13,056"
    with pytest.raises(ConfigError, match=expected):
        load_models(config)
    raised = config.model_copy(
        update={"metrics": config.metrics.model_copy(update={"max_series": 20_000})}
    )
    assert load_models(raised)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"segments": {"keys": ["a+"]}}, "segments.keys"),
        ({"segments": {"max_values": 0}}, "segments.max_values"),
        ({"versions": {"max_active": 0}}, "versions.max_active"),
        ({"versions": {"champion": "x" * 129}}, "versions.champion"),
    ],
)
def test_bad_version_and_segment_settings_name_the_key(section, message):
    document = {"models": {MODEL: {"baseline": "b.json", **section}}}
    with pytest.raises(ConfigError, match=message):
        parse_config(document)
