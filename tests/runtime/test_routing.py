"""Routing: by_key finds a model split across partitions; repartition gives it one home."""

import ctypes
import re

import orjson
import pytest
from confluent_kafka import Producer
from fakes import FlakyRedis, fake_broker, fake_config, fake_worker
from pipeline import (
    alert_ids,
    events,
    first_difference,
    killed_run,
    read_topic,
    run_in_thread,
    snapshot,
    write_config,
)

from driftstream.client import DriftClient
from driftstream.runtime.alerts import Source
from driftstream.runtime.app import create_topics
from driftstream.runtime.routing import (
    RoutingState,
    murmur2,
    murmur2_partition,
    source_of,
)

MODEL = "fraud-detector"


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("key", "java"),
    [  # the Java client's own test vectors (signed 32-bit results)
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_is_the_java_clients(key, java):
    assert ctypes.c_int32(murmur2(key)).value == java


def test_marks_drop_what_was_seen_and_survive_a_restore():
    state = RoutingState()
    assert state.fresh(Source("t", 0, 5))
    assert not state.fresh(Source("t", 0, 5))
    assert not state.fresh(Source("t", 0, 3))
    assert state.fresh(Source("t", 1, 0))  # marks are per source partition
    restored = RoutingState.from_state(orjson.loads(orjson.dumps(state.to_state())))
    assert restored == state
    assert not restored.fresh(Source("t", 0, 4))
    assert restored.report("a") and not restored.report("a")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"marks": {"t:0": True}}, "'marks.t:0'"),
        ({"marks": {"t:0": -1}}, "'marks.t:0'"),
        ({"marks": {"t:0": 1.5}}, "'marks.t:0'"),
        ({"reported": [3]}, "'reported[0]'"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"version": 2}, "'version'"),
    ],
)
def test_routing_state_is_read_strictly(damage, message):
    state = {**RoutingState({"t:0": 4}, ["x"]).to_state(), **damage}
    with pytest.raises(ValueError, match=re.escape(message)):
        RoutingState.from_state(state)


def test_source_headers_round_trip_and_foreign_records_have_none():
    headers = [
        ("driftstream.source.topic", b"in"),
        ("driftstream.source.partition", b"3"),
        ("driftstream.source.offset", b"17"),
    ]
    assert source_of(headers) == Source("in", 3, 17)
    assert source_of(None) is None
    assert source_of(headers[:2]) is None


# ------------------------------------------------- the worker, on a fake broker


@pytest.fixture
def client(redis_url):
    connection = FlakyRedis.from_url(redis_url)
    yield connection
    connection.close()


def drain(worker, condition, steps=400):
    for _ in range(steps):
        if condition():
            return
        worker.step()
    assert condition()


def sample(worker, name, **labels):
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


def states(redis_url, config):
    found = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    return {
        (p, name): state
        for p, unit in found.items()
        for name, state in unit["states"].items()
        if name.startswith("predictions:")
    }


def test_repartition_gives_a_model_one_home_whatever_the_keys(tmp_path, redis_url, client, unique):
    config = fake_config(tmp_path, redis_url, unique, routing="repartition")
    broker = fake_broker(config)
    values = events(1500, 0, seed=3)
    for index, value in enumerate(values):
        # keyed by event id, spread over both partitions, as a careless producer would
        broker.append(config.kafka.topics.predictions, index % 2, b"e%d" % index, value)
    broker.append(config.kafka.topics.predictions, 1, b"x", b"{broken")
    worker = fake_worker(config, broker, client)
    worker.start()
    topic = config.kafka.topics.predictions
    counted = lambda: sample(  # noqa: E731
        worker, "driftstream_events_consumed_total", model=MODEL, topic=topic
    )
    # every input record once, then each good one again from its home
    drain(worker, lambda: worker.processed >= 1501 + 1500 and worker.pending_outbox() == 0)

    home = murmur2_partition(MODEL.encode(), config.kafka.partitions)
    found = states(redis_url, config)
    assert list(found) == [(home, f"predictions:{MODEL}")]
    assert found[(home, f"predictions:{MODEL}")]["events"] == 1500
    assert counted() == 1500
    assert sample(worker, "driftstream_repartition_forwarded_total") == 1500
    letters = broker.messages(config.kafka.topics.dlq)
    assert [dict(m.headers())["driftstream.dlq.reason"] for m in letters] == [b"malformed_json"]
    assert dict(letters[0].headers())["driftstream.dlq.topic"] == topic.encode()

    # The relay re-sends after a crash: copies are dropped, nothing counts twice.
    forwarded = broker.messages(config.kafka.topics.repartition)
    for message in forwarded[:300]:
        broker.append(
            message.topic(), message.partition(), message.key(), message.value(), message.headers()
        )
    before = found[(home, f"predictions:{MODEL}")]
    drain(worker, lambda: sample(worker, "driftstream_repartition_duplicates_total") >= 300)
    assert counted() == 1500
    after = states(redis_url, config)[(home, f"predictions:{MODEL}")]
    assert after == before, first_difference(after, before)


def test_by_key_raises_one_quality_alert_for_a_model_split_across_partitions(
    tmp_path, redis_url, client, unique
):
    config = fake_config(tmp_path, redis_url, unique)
    broker = fake_broker(config)
    values = events(600, 0, seed=4)
    topic = config.kafka.topics.predictions
    for index, value in enumerate(values):
        broker.append(topic, index % 2, MODEL.encode(), value)
    worker = fake_worker(config, broker, client)
    worker.start()
    drain(worker, lambda: worker.processed >= 600 and worker.pending_outbox() == 0)

    def splits():
        alerts = [orjson.loads(m.value()) for m in broker.messages(config.kafka.topics.alerts)]
        return [a for a in alerts if a["statistic"] == "partition_split"]

    found = splits()
    assert len(found) == 1
    assert found[0]["kind"] == "quality" and found[0]["details"]["partitions"] == [0, 1]
    assert sample(worker, "driftstream_partition_splits_total", model=MODEL) == 1

    # A restarted worker remembers the split it reported.
    worker.close()
    for value in events(200, 0, seed=5, start=600):
        broker.append(topic, 0, MODEL.encode(), value)
        broker.append(topic, 1, MODEL.encode(), value)
    again = fake_worker(config, broker, client)
    again.start()
    drain(again, lambda: again.processed >= 400 and again.pending_outbox() == 0)
    assert {a["alert_id"] for a in splits()} == {found[0]["alert_id"]}


# ---------------------------------------------------------- on the real broker


def repartitioned(path):
    """Switch a test config to routing by repartition, with a repartition topic of its own."""
    import yaml

    from driftstream.config import load_config

    document = yaml.safe_load(path.read_text())
    document["kafka"]["routing"] = "repartition"
    prefix = document["redis"]["key_prefix"]
    document["kafka"]["topics"]["repartition"] = f"{prefix}.repartition"
    path.write_text(yaml.safe_dump(document))
    config = load_config(path)
    create_topics(config)
    return config


def comparable(found, config):
    """A snapshot without the repartition topic's offsets.

    A kill between delivery and the outbox delete re-sends forwards, so the
    repartition topic may hold extra copies: its offsets may run ahead of an
    uninterrupted run's while the states (which drop the copies) stay equal.
    """
    own = config.kafka.topics.repartition
    return {
        p: {
            "states": unit["states"],
            "offsets": {t: o for t, o in unit["offsets"].items() if t != own},
        }
        for p, unit in found.items()
    }


def split_model(partitions):
    """A model id that the SDK (murmur2) and librdkafka's default (CRC32) put apart."""
    import zlib

    for n in range(100):
        model_id = f"fraud-{n}"
        key = model_id.encode()
        if murmur2_partition(key, partitions) != zlib.crc32(key) % partitions:
            return model_id
    raise AssertionError("no such model id")


def two_producers(bootstrap, topic, traffic, model_id):
    """Half the events through the SDK, half through a default confluent-kafka Producer."""
    half = len(traffic) // 2
    with DriftClient(bootstrap) as sdk:
        for value in traffic[:half]:
            sdk._send(topic, model_id, orjson.loads(value))
    plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value in traffic[half:]:
        plain.produce(topic, value=value, key=model_id.encode())
        plain.poll(0)
    assert plain.flush(30) == 0


def drift_episodes(alerts):
    opened = [a for a in alerts if a["kind"] == "drift"]
    return [
        (a["feature"], a["detector"], a["statistic"], a["details"]["reference"]) for a in opened
    ]


@pytest.mark.integration
def test_two_partitioners_split_a_model_by_key_and_repartition_joins_it(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    partitions = 4
    model_id = split_model(partitions)
    inputs = f"{unique}-in"
    common = {"inputs": inputs, "models": (model_id,), "partitions": partitions}
    _, by_key = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-k", **common)
    path_r, _ = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-r", **common)
    repart = repartitioned(path_r)
    traffic = events(3000, 3000, seed=8, model_id=model_id)
    topic = by_key.kafka.topics.predictions
    two_producers(kafka_bootstrap, topic, traffic, model_id)
    landed = {m.partition() for m in read_topic(kafka_bootstrap, topic, at_least=len(traffic))}
    assert landed == {
        murmur2_partition(model_id.encode(), partitions),
        __import__("zlib").crc32(model_id.encode()) % partitions,
    }

    run_in_thread(by_key, len(traffic))
    messages = read_topic(kafka_bootstrap, by_key.kafka.topics.alerts, 1)
    alerts = [orjson.loads(m.value()) for m in messages]
    splits = [a for a in alerts if a["statistic"] == "partition_split"]
    assert len(splits) == 1 and splits[0]["details"]["partitions"] == sorted(landed)

    # every event read twice: from its input, then at its home
    worker, _ = run_in_thread(repart, 2 * len(traffic))
    found = snapshot(redis_url, repart.redis.key_prefix, repart.kafka.group_id)
    homes = [
        (p, s["states"][f"predictions:{model_id}"]["events"])
        for p, s in found.items()
        if f"predictions:{model_id}" in s["states"]
    ]
    assert homes == [(murmur2_partition(model_id.encode(), partitions), len(traffic))]
    registry = worker.metrics.registry
    assert registry.get_sample_value(
        "driftstream_events_consumed_total", {"model": model_id, "topic": topic}
    ) == len(traffic)
    alerts = [
        orjson.loads(m.value()) for m in read_topic(kafka_bootstrap, repart.kafka.topics.alerts, 1)
    ]
    opened = drift_episodes(alerts)
    assert opened and len(opened) == len(set(opened))  # one episode per shift
    assert not [a for a in alerts if a["statistic"] == "partition_split"]


@pytest.mark.integration
def test_sigkill_with_repartition_gives_the_same_state_and_alert_ids(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    paths, configs = {}, {}
    for name in ("a", "b"):
        paths[name], _ = write_config(
            tmp_path, kafka_bootstrap, redis_url, f"{unique}-{name}", inputs=inputs, batch_size=250
        )
        configs[name] = repartitioned(paths[name])
    config_a, config_b = configs["a"], configs["b"]
    traffic = events(8000, 8000, seed=12)
    # Keyed by event id, on the partition that is not the model's home, so every
    # event crosses units. One source partition keeps the forwarded order fixed:
    # from several, the interleaving in the repartition log depends on timing,
    # and two uninterrupted runs could differ in the last bit of a sum.
    away = 1 - murmur2_partition(b"fraud-detector", 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for index, value in enumerate(traffic):
        producer.produce(
            config_a.kafka.topics.predictions, value=value, key=b"e%d" % index, partition=away
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    total = 2 * len(traffic)
    run_in_thread(config_a, total)
    reference = snapshot(redis_url, config_a.redis.key_prefix, config_a.kafka.group_id)
    reference_ids = alert_ids(read_topic(kafka_bootstrap, config_a.kafka.topics.alerts, 1))

    killed_run(
        kafka_bootstrap,
        redis_url,
        paths["b"],
        config_b,
        total,
        len(reference_ids),
        shares=(0.2, 0.5, 0.8),
    )
    prefix, group = config_b.redis.key_prefix, config_b.kafka.group_id
    final = comparable(snapshot(redis_url, prefix, group), config_b)
    reference = comparable(reference, config_a)
    assert final == reference, first_difference(final, reference)
    assert alert_ids(read_topic(kafka_bootstrap, config_b.kafka.topics.alerts)) == reference_ids
    assert reference_ids
