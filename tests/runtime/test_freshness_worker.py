"""Freshness, dead-letter share and unknown features from the worker, on the in-memory broker.

Two models share partition 0: ``fraud-detector`` flows throughout while
``churn`` falls silent for five minutes of event time, which opens one
``silence`` episode when the watermark passes its last event by
``quality.max_silence_seconds`` and resolves it when it is back. The fraud
model's baseline is 100 days old, over the 90 of ``max_model_age_days``,
and a release of its producer writes a string for ``amount`` for a while:
one ``dead_letter_rate`` episode for ``wrong_type``. Every alert cites a
real input record, and stopping and resuming the worker changes no id.
"""

import logging
import uuid
from collections import Counter

import orjson
import pytest
import redis
from fakes import fake_broker, fake_config, fake_worker, published, run_stopping
from pipeline import START_TS, fraud_profile, prediction_events
from test_schemas import validator

from driftstream.config import ConfigError
from driftstream.runtime.models import load_models
from driftstream.runtime.store import PartitionStore

FRAUD, CHURN = "fraud-detector", "churn"
DAY = 86_400.0
STEP = 0.1  # seconds of event time between one model's events
GAP = (200.0, 500.0)  # churn sends nothing in between
DEAD = range(1000, 1100)  # fraud's events with a string for amount
WINDOW = 1000  # quality.dead_letter_window
QUALITY = {"max_silence_seconds": 60, "dead_letter_window": WINDOW}
CHECKS = ("silence", "model_age", "dead_letter_rate")


@pytest.fixture(scope="module")
def baselines():
    return {FRAUD: fraud_profile(FRAUD, START_TS - 100 * DAY), CHURN: fraud_profile(CHURN)}


def wrong_amount(row, features):
    if row in DEAD:
        features["amount"] = "a lot"


def traffic():
    """Both models' events in event-time order: the order of partition 0."""
    fraud = prediction_events(
        FRAUD, [0.05 + i * STEP for i in range(6000)], seed=11, fault=wrong_amount
    )
    churn_times = [i * STEP for i in range(2000)] + [GAP[1] + i * STEP for i in range(1000)]
    churn = prediction_events(CHURN, churn_times, seed=12)
    return sorted(fraud + churn)


def run(
    tmp_path,
    redis_url,
    baselines,
    records,
    *,
    options=None,
    stops=(),
    others=None,
    batch=500,
    routing="by_key",
    keys=None,
):
    """Alerts and the workers' metrics after feeding ``records`` (ts, model, value).

    The worker stops after each of ``stops`` records (at the end of a batch
    of ``batch``) and a new one takes over. ``keys`` gives each record's key
    (default: its model id).
    """
    prefix = f"f{uuid.uuid4().hex[:10]}"
    options = {"quality": QUALITY} if options is None else options
    config = fake_config(
        tmp_path,
        redis_url,
        prefix,
        batch_size=batch,
        partitions=1 if routing == "repartition" else 2,
        routing=routing,
        baseline=baselines[FRAUD],
        model_options=options,
        others={CHURN: (baselines[CHURN], options)} if others is None else others,
    )
    broker = fake_broker(config)
    for n, (_, model_id, value) in enumerate(records):
        key = model_id.encode() if keys is None else keys(n)
        broker.append(config.kafka.topics.predictions, 0, key, value)
    client = redis.Redis.from_url(redis_url)
    # With repartition a record is committed twice: read as input, then as forwarded.
    reads = 2 if routing == "repartition" else 1
    metrics = run_stopping(config, broker, client, reads * len(records), stops)
    alerts = published(config, broker)
    return alerts, metrics


def checks(alerts):
    return [a for a in alerts if a["statistic"] in CHECKS]


def total(metrics, name, **labels):
    return sum(m.registry.get_sample_value(name, labels) or 0.0 for m in metrics)


def test_a_silent_model_an_old_baseline_and_a_burst_of_bad_events_raise_one_episode_each(
    tmp_path, redis_url, baselines
):
    records = traffic()
    alerts, metrics = run(tmp_path, redis_url, baselines, records)
    found = checks(alerts)
    assert Counter((a["kind"], a["model_id"], a["statistic"]) for a in found) == {
        ("quality", CHURN, "silence"): 1,
        ("resolved", CHURN, "silence"): 1,
        ("quality", FRAUD, "model_age"): 1,
        ("quality", FRAUD, "dead_letter_rate"): 1,
        ("resolved", FRAUD, "dead_letter_rate"): 1,
    }
    check = validator("alert")
    for alert in found:
        check.validate(alert)
        assert alert["source"]["topic"] == "in.predictions" and alert["source"]["partition"] == 0
        assert alert["details"]["role"] == "predictions" and alert["model_version"] == ""
    ts = [at for at, _, _ in records]
    models = [model_id for _, model_id, _ in records]
    by = {(a["kind"], a["statistic"]): a for a in found}

    # Silence: cited by the first event (a fraud one) more than a minute past churn's last.
    silent = by["quality", "silence"]
    last = max(at for at, model_id, _ in records if model_id == CHURN and at < START_TS + GAP[1])
    cited = next(i for i, at in enumerate(ts) if at > last + 60)
    assert models[cited] == FRAUD
    assert silent["source"]["offset"] == cited and silent["event_time"] == ts[cited]
    assert silent["feature"] == "__freshness__" and silent["threshold"] == 60
    assert silent["value"] > 60 and silent["window"]["start"] == last
    assert silent["details"]["last_event_time"] == last
    back = by["resolved", "silence"]
    first_back = models.index(CHURN, cited)
    assert back["source"]["offset"] == first_back and ts[first_back] == START_TS + GAP[1]

    # Model age: the very first event of the partition (churn's) is already past 90 days.
    aged = by["quality", "model_age"]
    assert aged["source"]["offset"] == 0 and models[0] == CHURN
    assert aged["value"] == pytest.approx(100.0, abs=0.01) and aged["threshold"] == 90
    assert aged["details"]["created"] == START_TS - 100 * DAY

    # Dead letters: the window of fraud's events 1000-1999 held 100 wrong types.
    fraud_offsets = [i for i, model_id in enumerate(models) if model_id == FRAUD]
    burst = by["quality", "dead_letter_rate"]
    assert burst["feature"] == "wrong_type" and burst["details"]["reason"] == "wrong_type"
    assert burst["value"] == pytest.approx(len(DEAD) / WINDOW)
    assert burst["details"]["count"] == len(DEAD) and burst["window"]["count"] == WINDOW
    assert burst["source"]["offset"] == fraud_offsets[2 * WINDOW - 1]
    assert burst["event_time"] == ts[fraud_offsets[2 * WINDOW - 1]]
    calm = by["resolved", "dead_letter_rate"]  # two clean windows later
    assert calm["source"]["offset"] == fraud_offsets[4 * WINDOW - 1]

    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    dead = total(metrics, "driftstream_model_dead_letters_total", model=FRAUD, reason="wrong_type")
    assert dead == len(DEAD)
    registry = metrics[-1].registry
    assert registry.get_sample_value("driftstream_model_silence_seconds", {"model": CHURN}) < 1
    age = registry.get_sample_value("driftstream_baseline_age_seconds", {"model": FRAUD})
    assert age == pytest.approx(100 * DAY + ts[-1] - START_TS)
    assert registry.get_sample_value("driftstream_baseline_age_seconds", {"model": CHURN}) is None


def test_stopping_and_resuming_the_worker_gives_the_same_alert_ids(tmp_path, redis_url, baselines):
    records = traffic()
    whole, _ = run(tmp_path, redis_url, baselines, records)
    # Other batch cuts, and stops within each episode.
    stops = (1_234, 3_000, 4_321, 5_555, 7_000)
    stopped, _ = run(tmp_path, redis_url, baselines, records, stops=stops, batch=317)
    assert len(checks(whole)) == 5
    assert {a["alert_id"] for a in checks(stopped)} == {a["alert_id"] for a in checks(whole)}
    assert {a["alert_id"] for a in stopped} == {a["alert_id"] for a in whole}


def test_with_repartition_the_alerts_cite_the_same_input_records(tmp_path, redis_url, baselines):
    records = traffic()
    whole, _ = run(tmp_path, redis_url, baselines, records)
    routed, _ = run(
        tmp_path, redis_url, baselines, records, routing="repartition", keys=lambda n: b"%d" % n
    )
    assert len(checks(routed)) == 5
    assert [(a["alert_id"], a["source"]) for a in checks(routed)] == [
        (a["alert_id"], a["source"]) for a in checks(whole)
    ]


@pytest.mark.parametrize(
    ("quality", "left"),
    [
        ({"enabled": False}, set()),
        ({**QUALITY, "max_silence_seconds": None}, {"model_age", "dead_letter_rate"}),
        ({**QUALITY, "max_model_age_days": None}, {"silence", "dead_letter_rate"}),
        ({**QUALITY, "max_model_age_days": 120, "max_dead_letter_share": 0.2}, {"silence"}),
    ],
)
def test_the_checks_follow_the_config(tmp_path, redis_url, baselines, quality, left):
    alerts, _ = run(tmp_path, redis_url, baselines, traffic(), options={"quality": quality})
    assert {a["statistic"] for a in checks(alerts)} == left


def test_a_baseline_without_created_at_is_never_too_old(tmp_path, redis_url, baselines):
    young = {FRAUD: fraud_profile(FRAUD), CHURN: baselines[CHURN]}
    alerts, _ = run(tmp_path, redis_url, young, traffic())
    assert "model_age" not in {a["statistic"] for a in alerts}


def clean(n, missing_from=None, extra=None):
    """fraud's events only: ``customer_age`` left out from ``missing_from`` on, ``extra`` added."""

    def change(row, features):
        if missing_from is not None and row >= missing_from:
            del features["customer_age"]
        if extra is not None:
            features.update(extra(row))

    return prediction_events(FRAUD, [i * 0.01 for i in range(n)], seed=13, fault=change)


def test_a_feature_events_no_longer_carry_is_100_percent_missing(tmp_path, redis_url, baselines):
    alerts, _ = run(tmp_path, redis_url, baselines, clean(8000, missing_from=3000), others={})
    [missing] = [a for a in alerts if a["statistic"] == "missing" and a["kind"] == "quality"]
    assert missing["feature"] == "customer_age" and missing["value"] == 1.0
    assert not [a for a in alerts if a["statistic"] == "missing" and a["feature"] != "customer_age"]


def test_feature_names_the_baseline_lacks_are_counted_and_logged_once(
    tmp_path, redis_url, baselines, caplog
):
    def extra(row):
        return {"new_signal": 1.0} if row % 2 else {"new_signal": 2.0, f"tag_{row % 3}": "x"}

    records = clean(3000, extra=extra)
    with caplog.at_level(logging.WARNING, logger="driftstream.runtime.worker"):
        alerts, metrics = run(tmp_path, redis_url, baselines, records, others={})
    expected = 1500 + 1500 * 2  # every event has new_signal, the even ones a tag too
    assert total(metrics, "driftstream_unknown_features_total", model=FRAUD) == expected
    lines = [r.getMessage() for r in caplog.records if "baseline does not have" in r.getMessage()]
    for name in ("new_signal", "tag_0", "tag_1", "tag_2"):
        assert sum(line.count(repr(name)) for line in lines) == 1, name
    assert {a["statistic"] for a in checks(alerts)} == {"model_age"}  # no dead letters


def test_a_freshness_state_that_cannot_be_loaded_is_quarantined(tmp_path, redis_url, baselines):
    prefix = f"f{uuid.uuid4().hex[:10]}"
    config = fake_config(
        tmp_path,
        redis_url,
        prefix,
        baseline=baselines[FRAUD],
        model_options={"quality": QUALITY},
    )
    client = redis.Redis.from_url(redis_url)
    store = PartitionStore(client, prefix=prefix, group=config.kafka.group_id, partition=0)
    epoch = store.claim().epoch
    bad = orjson.dumps({"kind": "freshness", "version": 1, "watermark": None, "models": {"x": 1}})
    store.commit(epoch, {config.kafka.topics.predictions: 0}, {"freshness": bad}, [])
    broker = fake_broker(config)
    for _, model_id, value in clean(1000):
        broker.append(config.kafka.topics.predictions, 0, model_id.encode(), value)
    worker = fake_worker(config, broker, client)
    worker.start()
    for _ in range(50):
        worker.step()
    assert worker.processed == 1000
    assert (
        worker.metrics.registry.get_sample_value(
            "driftstream_state_quarantined_total", {"model": ""}
        )
        == 1
    )
    states = store.snapshot()["states"]
    assert states[f"quarantined:freshness:epoch-{epoch + 1}"] == bad
    assert orjson.loads(states["freshness"])["models"][FRAUD]["latest"] == START_TS + 9.99
    assert worker.close()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"max_silence_seconds": 0}, "max_silence_seconds"),
        ({"max_silence_seconds": "soon"}, "max_silence_seconds"),
        ({"max_model_age_days": -1}, "max_model_age_days"),
        ({"max_dead_letter_share": 0}, "max_dead_letter_share"),
        ({"max_dead_letter_share": 1.5}, "max_dead_letter_share"),
        ({"dead_letter_window": 0}, "dead_letter_window"),
        ({"dead_letter_window": 2}, "dead_letter_window"),  # no share could fail
    ],
)
def test_a_bad_freshness_or_dead_letter_setting_is_refused_naming_the_key(
    tmp_path, redis_url, section, key
):
    with pytest.raises(ConfigError, match=rf"models\.fraud-detector\.quality\.{key}"):
        config = fake_config(tmp_path, redis_url, "bad", model_options={"quality": section})
        load_models(config)
