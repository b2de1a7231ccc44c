"""Labels through the worker: on the in-memory broker, then on the real broker with faults."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import redis
from fakes import fake_broker, fake_config, fake_worker
from pipeline import (
    LABELS,
    START_TS,
    WorkerProcess,
    alert_ids,
    committed,
    events,
    first_difference,
    killed_run,
    label_events,
    produce,
    read_topic,
    run_in_thread,
    snapshot,
    wait_for,
    write_config,
)

from driftstream.core.baseline import build_profile
from driftstream.runtime.alerts import HEADER_REASON

KEY = b"fraud-detector"
CONCEPT_FROM = 9_000  # the index of the first prediction whose label ignores the model


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def drain(worker, broker, steps=2_000):
    worker.start()
    for _ in range(steps):
        if not worker.step() and not worker.pending_outbox():
            break
    worker.close()


def alerts_of(broker, config, kind=None):
    found = [orjson.loads(m.value()) for m in broker.messages(config.kafka.topics.alerts)]
    return [a for a in found if kind is None or a["kind"] == kind]


def sample(worker, name, **labels):
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_concept_drift_raises_performance_alerts_after_it_and_none_before(
    tmp_path, redis_url, unique, client
):
    config = fake_config(tmp_path, redis_url, unique, labels=LABELS)
    broker = fake_broker(config)
    broker.produce(config.kafka.topics.predictions, events(15_000, 0, seed=3), KEY)
    labels = label_events(15_000, seed=3, concept_from=CONCEPT_FROM)
    broker.produce(config.kafka.topics.labels, labels, KEY)
    worker = fake_worker(config, broker, client)
    drain(worker, broker)

    performance = alerts_of(broker, config, "performance")
    concept_ts = START_TS + CONCEPT_FROM * 0.01
    assert performance, "the concept drift went unnoticed"
    assert all(a["event_time"] >= concept_ts for a in performance)
    assert {a["statistic"] for a in performance} & {"accuracy", "error_rate", "brier", "f1"}
    first = performance[0]
    assert first["feature"] == "__performance__"
    assert first["details"]["role"] == "labels"
    assert first["details"]["joined"] == first["window"]["count"] > 0
    assert first["source"]["topic"] == config.kafka.topics.predictions
    # No feature moved, so nothing else alerts.
    assert not alerts_of(broker, config, "drift")

    model = "fraud-detector"
    joined = sample(worker, "driftstream_labels_total", model=model, outcome="joined")
    assert joined > 0.85 * len(labels)
    assert sample(worker, "driftstream_label_delay_seconds_count", model=model) == joined
    assert 0 < sample(worker, "driftstream_label_coverage_ratio", model=model) <= 1
    assert sample(worker, "driftstream_performance_metric", model=model, metric="accuracy") > 0


def test_bad_labels_go_to_the_dead_letter_topic_with_their_reason(
    tmp_path, redis_url, unique, client
):
    config = fake_config(tmp_path, redis_url, unique, labels=LABELS)
    broker = fake_broker(config)
    topic = config.kafka.topics.labels
    good = {"event_id": "e1", "model_id": "fraud-detector", "ts": START_TS, "label": "ok"}
    bad = {
        "missing_field": {k: v for k, v in good.items() if k != "event_id"},
        "wrong_type": {**good, "label": {"class": "ok"}},
        "bad_timestamp": {**good, "ts": "yesterday"},
        "unknown_model": {**good, "model_id": "nobody"},
    }
    for value in bad.values():
        broker.produce(topic, [orjson.dumps(value)], KEY)
    broker.produce(topic, [orjson.dumps(good)], KEY)
    worker = fake_worker(config, broker, client)
    drain(worker, broker)
    reasons = [
        dict(m.headers())[HEADER_REASON].decode() for m in broker.messages(config.kafka.topics.dlq)
    ]
    assert sorted(reasons) == sorted(bad)
    assert sample(worker, "driftstream_labels_pending", model="fraud-detector", side="labels") == 1


def test_labels_of_a_model_without_a_labels_section_are_refused(
    tmp_path, redis_url, unique, client
):
    config = fake_config(tmp_path, redis_url, unique)
    broker = fake_broker(config)
    label = {"event_id": "e1", "model_id": "fraud-detector", "ts": START_TS, "label": "ok"}
    # Labels are only read when some model has a labels section: this topic is not consumed.
    broker.produce(config.kafka.topics.labels, [orjson.dumps(label)], KEY)
    worker = fake_worker(config, broker, client)
    assert config.kafka.topics.labels not in worker.inputs


def regression_frame(n, seed, bias=0.0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    size = rng.choice(np.array(["s", "m", "l"], dtype=object), n)
    truth = 3.0 * x + rng.normal(0, 0.5, n)
    prediction = 3.0 * x + rng.normal(0, 0.5, n)
    return {"x": x, "size": size, "prediction": prediction, "target": truth + bias}


def test_a_regression_model_gets_mae_and_rmse_alerts_when_its_errors_grow(
    tmp_path, redis_url, unique, client
):
    training = regression_frame(20_000, 1)
    profile = build_profile(training, model_id="price", prediction="prediction", target="target")
    assert profile.performance is not None and profile.performance.task == "regression"
    labels = {**LABELS, "positive": None}
    config = fake_config(tmp_path, redis_url, unique, labels=labels, baseline=profile)
    broker = fake_broker(config)
    n, change = 12_000, 6_000
    live = regression_frame(n, 2)
    predictions, truths = [], []
    for i in range(n):
        ts = START_TS + i * 0.01
        predictions.append(
            orjson.dumps(
                {
                    "event_id": f"p{i}",
                    "model_id": "price",
                    "model_version": "v1",
                    "ts": ts,
                    "features": {"x": float(live["x"][i]), "size": live["size"][i]},
                    "prediction": float(live["prediction"][i]),
                }
            )
        )
        error = 2.0 if i >= change else 0.0  # the model starts to overestimate prices
        truths.append(
            orjson.dumps(
                {
                    "event_id": f"p{i}",
                    "model_id": "price",
                    "ts": ts + 5.0,
                    "label": float(live["target"][i]) - error,
                }
            )
        )
    broker.produce(config.kafka.topics.predictions, predictions, b"price")
    broker.produce(config.kafka.topics.labels, truths, b"price")
    worker = fake_worker(config, broker, client)
    drain(worker, broker)
    performance = alerts_of(broker, config, "performance")
    statistics = {a["statistic"] for a in performance}
    assert {"mae", "rmse"} <= statistics, statistics
    assert all(a["event_time"] >= START_TS + change * 0.01 for a in performance)
    mae = next(a for a in performance if a["statistic"] == "mae")
    assert mae["value"] > mae["threshold"] > mae["details"]["baseline"]
    assert mae["details"]["task"] == "regression"


@pytest.mark.integration
def test_sigkill_with_labels_flowing_gives_the_same_state_joins_and_alert_ids(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    common = {"inputs": inputs, "batch_size": 250, "labels": LABELS}
    _, config_a = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-a", **common)
    path_b, config_b = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-b", **common)
    labels = label_events(15_000, seed=4, concept_from=CONCEPT_FROM)
    total = 15_000 + len(labels)
    produce(kafka_bootstrap, config_a.kafka.topics.predictions, events(15_000, 0, 4), KEY)
    produce(kafka_bootstrap, config_a.kafka.topics.labels, labels, KEY)
    run_in_thread(config_a, total)
    reference = snapshot(redis_url, config_a.redis.key_prefix, config_a.kafka.group_id)
    reference_ids = alert_ids(read_topic(kafka_bootstrap, config_a.kafka.topics.alerts, 1))

    killed_run(kafka_bootstrap, redis_url, path_b, config_b, total, len(reference_ids))
    final = snapshot(redis_url, config_b.redis.key_prefix, config_b.kafka.group_id)
    assert final == reference, first_difference(final, reference)
    assert alert_ids(read_topic(kafka_bootstrap, config_b.kafka.topics.alerts)) == reference_ids
    assert any(
        orjson.loads(m.value())["kind"] == "performance"
        for m in read_topic(kafka_bootstrap, config_a.kafka.topics.alerts, 1)
    )
    assert any(s["states"].get("labels:fraud-detector") for s in reference.values())


@pytest.mark.integration
def test_a_takeover_with_labels_flowing_loses_and_doubles_nothing(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    models = ("m0", "m1")
    inputs = f"{unique}-in"
    common = {
        "inputs": inputs,
        "models": models,
        "partitions": 2,
        "batch_size": 200,
        "labels": LABELS,
    }
    _, config_r = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-r", **common)
    path_g, config_g = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-g", **common)
    first, second = WorkerProcess(path_g, "first"), WorkerProcess(path_g, "second")
    wait_for(
        lambda: first.owned and second.owned and len(first.owned | second.owned) == 2,
        60,
        f"both workers assigned\n{first.log()}\n{second.log()}",
    )
    total = 0
    for number, model_id in enumerate(models):
        traffic = events(10_000, 0, seed=30 + number, model_id=model_id)
        labels = label_events(10_000, seed=30 + number, model_id=model_id, concept_from=6_000)
        produce(
            kafka_bootstrap,
            config_g.kafka.topics.predictions,
            traffic,
            model_id.encode(),
            partition=number,
        )
        produce(
            kafka_bootstrap,
            config_g.kafka.topics.labels,
            labels,
            model_id.encode(),
            partition=number,
        )
        total += len(traffic) + len(labels)
    prefix, group = config_g.redis.key_prefix, config_g.kafka.group_id
    wait_for(lambda: committed(redis_url, prefix, group) >= 0.3 * total, 60, "progress")
    first.kill()
    assert committed(redis_url, prefix, group) < total
    wait_for(lambda: second.owned == {0, 1}, 60, f"takeover\n{second.log()}")
    wait_for(lambda: committed(redis_url, prefix, group) >= total, 90, "everything committed")
    assert second.stop() == 0, second.log()

    run_in_thread(config_r, total)
    reference = snapshot(redis_url, config_r.redis.key_prefix, config_r.kafka.group_id)
    final = snapshot(redis_url, prefix, group)
    assert final == reference, first_difference(final, reference)
    ids = alert_ids(read_topic(kafka_bootstrap, config_g.kafka.topics.alerts))
    assert ids == alert_ids(read_topic(kafka_bootstrap, config_r.kafka.topics.alerts))
    assert ids


def test_a_challenger_that_got_worse_on_its_labels_is_compared_with_its_champion(
    tmp_path, redis_url, unique, client
):
    # Every third prediction is the challenger's; from CONCEPT_FROM on its
    # labels ignore its score, while the champion's stay as they were.
    def challenger(index):
        return index % 3 == 0

    predictions = []
    for index, value in enumerate(events(15_000, 0, seed=3)):
        event = orjson.loads(value)
        event["model_version"] = "v2" if challenger(index) else "v1"
        predictions.append(orjson.dumps(event))
    rng = np.random.default_rng(8)
    labels = []
    for value in label_events(15_000, seed=3):
        event = orjson.loads(value)
        index = int(event["event_id"].rsplit("-", 1)[1])
        if challenger(index) and index >= CONCEPT_FROM:
            event["label"] = "fraud" if rng.random() < 0.5 else "ok"
        labels.append(orjson.dumps(event))
    options = {"versions": {"monitor": True}}
    labelled = {**LABELS, "min_count": 100}  # the challenger has ~160 pairs a window
    config = fake_config(tmp_path, redis_url, unique, labels=labelled, model_options=options)
    broker = fake_broker(config)
    broker.produce(config.kafka.topics.predictions, predictions, KEY)
    broker.produce(config.kafka.topics.labels, labels, KEY)
    drain(fake_worker(config, broker, client), broker)

    compared = [
        a for a in alerts_of(broker, config, "comparison") if a["details"]["role"] == "labels"
    ]
    assert compared, "the challenger's worse performance went unnoticed"
    assert {a["model_version"] for a in compared} == {"v2"}
    assert all(a["event_time"] >= START_TS + CONCEPT_FROM * 0.01 for a in compared)
    assert {a["details"]["champion"] for a in compared} == {"v1"}
    assert {a["statistic"] for a in compared} & {"accuracy", "brier", "log_loss", "roc_auc"}
    ids = [a["alert_id"] for a in alerts_of(broker, config)]
    assert len(ids) == len(set(ids))
