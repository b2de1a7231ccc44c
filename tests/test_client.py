import math
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from driftstream.client import DeliveryError, DriftClient, QueueFullError

PARTITIONS = 3
# Nothing listens on port 1: every message times out, quickly.
UNREACHABLE = "127.0.0.1:1"
QUIET = {"log_level": 0}


@pytest.fixture
def topics(kafka_bootstrap, unique):
    names = {kind: f"{unique}.{kind}" for kind in ("predictions", "features", "labels")}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(name, PARTITIONS) for name in names.values()])
    for future in futures.values():
        future.result(timeout=15)
    return names


@pytest.fixture
def client(kafka_bootstrap, topics):
    with DriftClient(
        kafka_bootstrap,
        predictions_topic=topics["predictions"],
        features_topic=topics["features"],
        labels_topic=topics["labels"],
        model_version="v1",
    ) as client:
        yield client


@pytest.fixture
def offline():
    """A client whose broker never answers, for checks that stop before Kafka."""
    client = DriftClient(UNREACHABLE, config=QUIET)
    yield client
    client.close(timeout=1)


def consume(bootstrap, topic, count, timeout=20.0):
    """``count`` messages from every partition of ``topic``, read from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"got {len(messages)} of {count} messages from {topic}"
    return messages


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java client's default partition for a non-null key."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(key)) & mask
    whole = len(key) - len(key) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = key[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


@pytest.mark.integration
def test_prediction_is_written_as_the_contract_says(client, kafka_bootstrap, topics):
    event_id = client.log_prediction(
        "churn",
        {"age": 41, "income": 52_000.5, "city": "Lyon", "vip": True, "referrer": None},
        0.87,
        score=0.87,
        event_id="e-1",
        model_version="v2",
        segment={"region": "eu"},
        ts=1_714_560_000.25,
    )
    assert client.flush() == 0

    [message] = consume(kafka_bootstrap, topics["predictions"], 1)
    assert event_id == "e-1"
    assert message.key() == b"churn"
    assert orjson.loads(message.value()) == {
        "event_id": "e-1",
        "model_id": "churn",
        "model_version": "v2",
        "ts": 1_714_560_000.25,
        "features": {"age": 41, "income": 52_000.5, "city": "Lyon", "vip": True, "referrer": None},
        "prediction": 0.87,
        "score": 0.87,
        "segment": {"region": "eu"},
    }


@pytest.mark.integration
def test_optional_fields_are_left_out_and_defaults_filled_in(client, kafka_bootstrap, topics):
    before = time.time()
    event_id = client.log_prediction("churn", {"age": 41}, "stay")
    client.flush()

    [message] = consume(kafka_bootstrap, topics["predictions"], 1)
    event = orjson.loads(message.value())
    assert event_id == uuid.UUID(hex=event_id).hex
    assert uuid.UUID(hex=event_id).version == 4
    assert before <= event.pop("ts") <= time.time()
    assert event == {
        "event_id": event_id,
        "model_id": "churn",
        "model_version": "v1",
        "features": {"age": 41},
        "prediction": "stay",
    }


@pytest.mark.integration
def test_features_and_labels_round_trip(client, kafka_bootstrap, topics):
    paris = timezone(timedelta(hours=2))
    event_id = client.log_features(
        "churn",
        {"age": np.int64(41), "income": np.float32(0.5), "vip": np.bool_(False)},
        segment={"region": "eu"},
        ts=datetime(2024, 5, 1, 14, 0, 0, 500_000, tzinfo=paris),
    )
    client.log_label("churn", event_id, True, ts="2024-05-02T09:30:00+02:00")
    client.flush()

    [features] = consume(kafka_bootstrap, topics["features"], 1)
    [label] = consume(kafka_bootstrap, topics["labels"], 1)
    assert features.key() == label.key() == b"churn"
    assert orjson.loads(features.value()) == {
        "event_id": event_id,
        "model_id": "churn",
        "model_version": "v1",
        "ts": "2024-05-01T12:00:00.500000Z",
        "features": {"age": 41, "income": 0.5, "vip": False},
        "segment": {"region": "eu"},
    }
    assert orjson.loads(label.value()) == {
        "event_id": event_id,
        "model_id": "churn",
        "ts": "2024-05-02T09:30:00+02:00",
        "label": True,
    }


@pytest.mark.integration
def test_a_model_keeps_one_partition_on_every_topic(client, kafka_bootstrap, topics):
    models = [f"model-{i}" for i in range(12)]
    for model in models:
        for i in range(3):
            event_id = client.log_prediction(model, {"x": i}, i)
            client.log_label(model, event_id, i)
    client.flush()

    def partitions(topic):
        seen: dict[bytes, set[int]] = {}
        for message in consume(kafka_bootstrap, topic, len(models) * 3):
            seen.setdefault(message.key(), set()).add(message.partition())
        return seen

    predictions, labels = partitions(topics["predictions"]), partitions(topics["labels"])
    assert predictions == labels
    assert all(len(used) == 1 for used in predictions.values())
    assert len(set().union(*predictions.values())) > 1, "keys should spread over partitions"
    # The same partitions the Java client (and kcat with -X partitioner=murmur2_random) picks.
    for key, [partition] in predictions.items():
        assert partition == murmur2_partition(key, PARTITIONS)


@pytest.mark.integration
def test_close_flushes_what_is_queued(kafka_bootstrap, topics):
    client = DriftClient(kafka_bootstrap, predictions_topic=topics["predictions"])
    ids = [client.log_prediction("churn", {"x": i}, i) for i in range(50)]
    client.close()

    messages = consume(kafka_bootstrap, topics["predictions"], 50)
    assert sorted(orjson.loads(m.value())["event_id"] for m in messages) == sorted(ids)
    assert client.delivery_errors == 0
    with pytest.raises(RuntimeError, match="closed"):
        client.log_prediction("churn", {"x": 1}, 1)
    client.close()


def test_close_names_how_many_messages_never_arrived():
    client = DriftClient(UNREACHABLE, config={**QUIET, "message.timeout.ms": 300})
    for i in range(3):
        client.log_prediction("churn", {"x": i}, i)

    with pytest.raises(DeliveryError, match="3 messages were not delivered") as raised:
        client.close(timeout=1)
    assert client.delivery_errors == 3
    assert raised.value.failed + raised.value.queued == 3


def test_close_discards_what_is_still_queued_at_its_timeout():
    client = DriftClient(UNREACHABLE, config={**QUIET, "message.timeout.ms": 60_000})
    client.log_features("churn", {"x": 1})

    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"1 still queued after 0\.2 s") as raised:
        client.close(timeout=0.2)
    assert time.monotonic() - started < 5
    assert raised.value.queued == 1


def test_a_full_local_queue_is_reported_after_one_retry():
    client = DriftClient(
        UNREACHABLE,
        config={**QUIET, "queue.buffering.max.messages": 1, "message.timeout.ms": 60_000},
    )
    client.log_features("churn", {"x": 1})

    with pytest.raises(QueueFullError, match="queue is full"):
        client.log_features("churn", {"x": 2})
    with pytest.raises(DeliveryError, match="1 still queued"):
        client.close(timeout=0.1)


def test_context_manager_does_not_hide_the_error_that_ended_the_block():
    with (
        pytest.raises(KeyError),
        DriftClient(UNREACHABLE, config={**QUIET, "message.timeout.ms": 300}) as client,
    ):
        client.log_features("churn", {"x": 1})
        raise KeyError("boom")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: c.log_prediction("", {"x": 1}, 1), ValueError, "model_id"),
        (lambda c: c.log_prediction(7, {"x": 1}, 1), ValueError, "model_id"),
        (lambda c: c.log_features("m", [("x", 1)]), TypeError, "features must be a mapping"),
        (lambda c: c.log_features("m", {"x": math.nan}), ValueError, "feature 'x' is nan"),
        (lambda c: c.log_features("m", {"y": -math.inf}), ValueError, "feature 'y' is -inf"),
        (lambda c: c.log_features("m", {"z": np.float32("inf")}), ValueError, "feature 'z'"),
        (lambda c: c.log_features("m", {"x": [1, 2]}), TypeError, "feature 'x' must be"),
        (lambda c: c.log_features("m", {1: 1.0}), TypeError, "feature names"),
        (lambda c: c.log_prediction("m", {}, math.nan), ValueError, "prediction is nan"),
        (lambda c: c.log_prediction("m", {}, True), TypeError, "prediction must be"),
        (lambda c: c.log_prediction("m", {}, None), TypeError, "prediction must be"),
        (lambda c: c.log_prediction("m", {}, 1, score=math.inf), ValueError, "score is inf"),
        (lambda c: c.log_prediction("m", {}, 1, score="high"), TypeError, "score must be"),
        (lambda c: c.log_prediction("m", {}, 1, event_id=""), ValueError, "event_id"),
        (lambda c: c.log_prediction("m", {}, 1, model_version=2), TypeError, "model_version"),
        (lambda c: c.log_prediction("m", {}, 1, segment={"r": 1}), TypeError, "segment"),
        (lambda c: c.log_features("m", {}, ts=datetime(2024, 5, 1)), ValueError, "ts is a naive"),
        (lambda c: c.log_features("m", {}, ts="yesterday"), ValueError, "ts 'yesterday'"),
        (lambda c: c.log_features("m", {}, ts="2024-05-01T12:00:00"), ValueError, "offset"),
        (lambda c: c.log_features("m", {}, ts=math.nan), ValueError, "ts nan is not a finite"),
        (lambda c: c.log_features("m", {}, ts=True), TypeError, "ts must be"),
        (lambda c: c.log_label("m", "e-1", None), TypeError, "label"),
        (lambda c: c.log_label("m", None, 1), ValueError, "event_id"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(offline, call, error, match):
    with pytest.raises(error, match=match):
        call(offline)


def test_valid_timestamps_are_queued():
    client = DriftClient(UNREACHABLE, config=QUIET)
    client.log_features("m", {}, ts=datetime(2024, 5, 1, tzinfo=UTC))
    client.log_features("m", {}, ts="2024-05-01T12:00:00.123Z")
    client.log_features("m", {}, ts=1_714_560_000)

    with pytest.raises(DeliveryError, match="3 still queued"):
        client.close(timeout=0)


def test_the_broker_address_is_required_once():
    with pytest.raises(ValueError, match="no broker"):
        DriftClient()
    with pytest.raises(ValueError, match="conflicts"):
        DriftClient("a:9092", config={"bootstrap.servers": "b:9092"})
    DriftClient(config={**QUIET, "bootstrap.servers": UNREACHABLE}).close(timeout=0)
