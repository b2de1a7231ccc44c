"""Quality alerts and anomaly events from the worker, on the in-memory broker and real Redis.

Injected nulls, values beyond the training range and unseen categories each
open one ``quality`` episode for the feature at fault, and resolve once the
feed is clean; injected outliers become ``anomaly`` events that name their
event ids, no more per minute of event time than configured, the held-back
ones counted in the next event and in a metric. Stopping and resuming the
worker changes none of it.
"""

import uuid
from collections import Counter

import pytest
import redis
from fakes import fake_broker, fake_config, published, run_stopping
from pipeline import START_TS, prediction_events

from driftstream.config import ConfigError
from driftstream.runtime.models import load_models

MODEL = "fraud-detector"
KEY = MODEL.encode()
STEP = 0.01  # seconds of event time between events
WINDOW = 2000


def traffic(n, seed, fault=lambda row, features: None):
    """Prediction events one STEP apart, each passed through ``fault`` to break it in place."""
    return [
        value for _, _, value in prediction_events(MODEL, [STEP * i for i in range(n)], seed, fault)
    ]


def run(tmp_path, redis_url, values, options=None, stops=()):
    """Alerts and metrics after feeding ``values``, stopping the worker after each of ``stops``."""
    prefix = f"q{uuid.uuid4().hex[:10]}"
    config = fake_config(tmp_path, redis_url, prefix, window=WINDOW, model_options=options)
    broker = fake_broker(config)
    for value in values:
        broker.append(config.kafka.topics.predictions, 0, KEY, value)
    client = redis.Redis.from_url(redis_url)
    metrics = run_stopping(config, broker, client, len(values), stops)
    alerts = published(config, broker)
    return alerts, metrics


def counter(metrics, name):
    total = 0.0
    for registry in (m.registry for m in metrics):
        value = registry.get_sample_value(name, {"model": MODEL})
        total += value or 0.0
    return total


FAULTY = range(6000, 14_000)  # four windows of broken data, then clean again


def broken(row, features):
    """Nulls in customer_age, latency beyond any training value, a new country."""
    if row in FAULTY:
        if row % 10 < 4:
            features["customer_age"] = None
        if row % 10 == 4:
            features["latency_ms"] = 50_000.0 + row
        if row % 10 == 5:
            features["country"] = "ZZ"


def test_each_fault_raises_one_quality_alert_for_its_feature(tmp_path, redis_url):
    alerts, _ = run(tmp_path, redis_url, traffic(22_000, seed=5, fault=broken))
    quality = [a for a in alerts if a["detector"] == "quality"]
    opened = Counter((a["feature"], a["statistic"]) for a in quality if a["kind"] == "quality")
    assert opened == {
        ("customer_age", "missing"): 1,
        ("latency_ms", "out_of_range"): 1,
        ("country", "new_category"): 1,
        # a tenth of the events far beyond the range are anomalies, too many for chance
        ("__anomaly__", "anomaly_rate"): 1,
    }
    resolved = Counter((a["feature"], a["statistic"]) for a in quality if a["kind"] == "resolved")
    assert resolved == opened, "each episode resolves once the feed is clean"
    first_fault = START_TS + FAULTY.start * STEP
    for alert in quality:
        assert alert["event_time"] > first_fault
        assert alert["window"]["count"] == WINDOW
        if alert["feature"] != "__anomaly__":
            assert alert["model_version"] == "v1"
    missing = next(a for a in quality if a["statistic"] == "missing" and a["kind"] == "quality")
    assert missing["value"] == pytest.approx(0.4, abs=0.05)
    assert missing["value"] >= missing["threshold"] > missing["details"]["expected"]
    assert len({a["alert_id"] for a in alerts}) == len(alerts)


def test_quality_checks_can_be_turned_off(tmp_path, redis_url):
    options = {"quality": {"enabled": False}}
    alerts, _ = run(tmp_path, redis_url, traffic(10_000, seed=5, fault=broken), options)
    assert not [a for a in alerts if a["detector"] == "quality"]


OUTLIERS = [3000 + 10 * i for i in range(40)] + [12_000]  # 40 within 4 s, one a minute on


def outliers(row, features):
    if row in OUTLIERS:
        features["amount"] = 1e12


ANOMALY = {"anomaly": {"rate": 1e-6, "max_per_minute": 5}}


@pytest.mark.parametrize("stops", [(), (3_100, 3_250, 9_000)])
def test_outliers_become_rate_limited_anomaly_events(tmp_path, redis_url, stops):
    values = traffic(15_000, seed=6, fault=outliers)
    alerts, metrics = run(tmp_path, redis_url, values, ANOMALY, stops)
    anomalies = [a for a in alerts if a["kind"] == "anomaly"]
    # a burst of 5 goes out at once; the 35 after it within the minute are held back
    published = [*OUTLIERS[:5], 12_000]
    assert [a["details"]["event_id"] for a in anomalies] == [f"{MODEL}-{row}" for row in published]
    assert [a["details"]["suppressed"] for a in anomalies] == [0, 0, 0, 0, 0, 35]
    for alert in anomalies:
        assert alert["feature"] == "amount"
        assert alert["details"]["top_features"][0]["feature"] == "amount"
        assert alert["value"] > alert["threshold"]
        assert alert["details"]["event_id"] == f"{MODEL}-{alert['source']['offset']}"
    assert counter(metrics, "driftstream_anomaly_events_flagged_total") == len(OUTLIERS)
    assert counter(metrics, "driftstream_anomaly_events_suppressed_total") == 35


def test_a_flood_of_anomalies_raises_one_anomaly_rate_alert(tmp_path, redis_url):
    flood = range(4000, 10_000)

    def upstream_outage(row, features):
        if row in flood and row % 20 == 0:  # 5% of events far out
            features["amount"] = 1e12

    values = traffic(16_000, seed=7, fault=upstream_outage)
    alerts, _ = run(tmp_path, redis_url, values, ANOMALY)
    rate = [a for a in alerts if a["statistic"] == "anomaly_rate"]
    assert [a["kind"] for a in rate] == ["quality", "resolved"]
    assert rate[0]["value"] == pytest.approx(0.05, abs=0.01)
    assert len([a for a in alerts if a["kind"] == "anomaly"]) <= 5 + 60 * 5 / 60 + 1


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"rate": 0.5}, r"anomaly\.rate"),
        ({"rate": 0}, r"anomaly\.rate"),
        ({"max_per_minute": -1}, r"anomaly\.max_per_minute"),
        ({"columns": ["no_such_feature"]}, r"anomaly\.columns"),
    ],
)
def test_a_bad_anomaly_setting_is_refused_naming_the_key(tmp_path, redis_url, section, match):
    with pytest.raises(ConfigError, match=match):
        config = fake_config(tmp_path, redis_url, "bad", model_options={"anomaly": section})
        load_models(config)
