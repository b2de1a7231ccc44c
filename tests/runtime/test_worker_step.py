"""Worker.step() on an in-memory broker and the real test Redis: fencing, retries, outages."""

import uuid

import orjson
import pytest
import redis
from confluent_kafka import KafkaError
from fakes import FlakyRedis, fake_broker, fake_config, fake_worker
from pipeline import events, first_difference, snapshot

from driftstream.runtime.relay import HEADER_TRUNCATED
from driftstream.runtime.store import OutboxEntry, PartitionStore
from driftstream.runtime.worker import FENCED_GRACE_SECONDS

KEY = b"fraud-detector"
MODEL = "predictions:fraud-detector"
VALUES = events(3000, 3000, seed=5)
BAD_EVERY = 500


@pytest.fixture
def client(redis_url):
    connection = FlakyRedis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def setup(tmp_path, redis_url, unique):
    config = fake_config(tmp_path, redis_url, unique)
    return config, fake_broker(config)


def feed(broker, config, values=VALUES):
    """Good events on partition 0; every BAD_EVERY-th also a bad record on partition 1."""
    topic = config.kafka.topics.predictions
    for index, value in enumerate(values):
        broker.append(topic, 0, KEY, value)
        if index % BAD_EVERY == 0:
            broker.append(topic, 1, KEY, b"{not json %d" % index)


def total(broker, config):
    return len(broker.messages(config.kafka.topics.predictions))


def sample(worker, name, **labels):
    return worker.metrics.registry.get_sample_value(name, labels)


def consumed(worker, config):
    topic = config.kafka.topics.predictions
    return sample(worker, "driftstream_events_consumed_total", model="fraud-detector", topic=topic)


def run_until(worker, condition, steps=500):
    for _ in range(steps):
        if condition():
            return
        worker.step()
    assert condition(), "the condition did not hold within the steps allowed"


def drained(worker, broker, config):
    records = total(broker, config)
    return lambda: worker.processed >= records and worker.pending_outbox() == 0


def redis_offsets(redis_url, config):
    return {
        p: s["offsets"]
        for p, s in snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id).items()
    }


def alert_ids(broker, config):
    messages = broker.messages(config.kafka.topics.alerts)
    return [orjson.loads(m.value())["alert_id"] for m in messages]


def letters(broker, config):
    return [dict(m.headers()) for m in broker.messages(config.kafka.topics.dlq)]


def lines(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, redis_url):
    """An uninterrupted run over the same input."""
    config = fake_config(tmp_path_factory.mktemp("ref"), redis_url, f"r{uuid.uuid4().hex[:10]}")
    broker = fake_broker(config)
    feed(broker, config)
    worker = fake_worker(config, broker, redis.Redis.from_url(redis_url))
    worker.start()
    run_until(worker, drained(worker, broker, config))
    assert worker.close()
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    assert alert_ids(broker, config), "the reference input must raise alerts"
    return state, sorted(alert_ids(broker, config)), letters(broker, config)


def test_a_step_commits_state_and_offsets_then_relays(setup, client, redis_url, reference):
    config, broker = setup
    feed(broker, config)
    worker = fake_worker(config, broker, client)
    worker.start()
    run_until(worker, drained(worker, broker, config))

    topic = config.kafka.topics.predictions
    logs = broker.topics[topic]
    assert redis_offsets(redis_url, config) == {0: {topic: len(logs[0])}, 1: {topic: len(logs[1])}}
    group = config.kafka.group_id
    assert broker.committed == {(group, topic, 0): len(logs[0]), (group, topic, 1): len(logs[1])}
    assert consumed(worker, config) == len(VALUES)
    assert sample(worker, "driftstream_store_up") == 1
    assert sample(worker, "driftstream_partitions_owned") == 2
    assert sorted(alert_ids(broker, config)) == reference[1]
    assert worker.close()
    assert worker.consumer.closed


def test_a_newer_claim_fences_the_worker_and_the_partition_is_dropped(setup, client, redis_url):
    config, broker = setup
    now = [0.0]
    worker = fake_worker(config, broker, client, clock=lambda: now[0])
    feed(broker, config, VALUES[:1000])
    worker.start()
    run_until(worker, drained(worker, broker, config))
    newer = PartitionStore(
        client, prefix=config.redis.key_prefix, group=config.kafka.group_id, partition=0
    )
    epoch = newer.claim().epoch
    stored = newer.snapshot()
    counted = consumed(worker, config)

    feed(broker, config, VALUES[1000:2000])
    for _ in range(5):
        worker.step()

    assert sample(worker, "driftstream_fenced_commits_total") == 1
    assert 0 not in worker.units
    assert sample(worker, "driftstream_partitions_owned") == 1
    assert (config.kafka.topics.predictions, 0) in worker.consumer.paused
    assert newer.snapshot() == stored  # the refused commit wrote nothing
    assert consumed(worker, config) == counted

    # Kafka still assigns the partition long after the fencing: claimed again.
    now[0] += FENCED_GRACE_SECONDS + 1
    run_until(worker, drained(worker, broker, config))
    assert worker.units[0].epoch == epoch + 1
    assert redis_offsets(redis_url, config)[0] == {config.kafka.topics.predictions: 2000}
    assert sample(worker, "driftstream_partitions_owned") == 2


def test_a_fenced_partition_that_kafka_revokes_is_forgotten(setup, client):
    config, broker = setup
    worker = fake_worker(config, broker, client)
    feed(broker, config, VALUES[:500])
    worker.start()
    run_until(worker, drained(worker, broker, config))
    PartitionStore(
        client, prefix=config.redis.key_prefix, group=config.kafka.group_id, partition=0
    ).claim()
    feed(broker, config, VALUES[500:1000])
    worker.step()
    assert 0 not in worker.units

    worker.consumer.rebalance([1])
    worker.step()
    assert {tp.partition for tp in worker.consumer.assignment()} == {1}
    assert sample(worker, "driftstream_partitions_owned") == 1
    assert not worker.consumer.paused


def test_a_released_partition_leaves_no_frozen_lag_or_outbox_series(setup, client):
    config, broker = setup
    worker = fake_worker(config, broker, client)
    feed(broker, config, VALUES[:1500])
    worker.start()
    run_until(worker, drained(worker, broker, config))
    topic = config.kafka.topics.predictions
    for partition in ("0", "1"):
        assert (
            sample(worker, "driftstream_consumer_lag_messages", topic=topic, partition=partition)
            == 0
        )
        assert sample(worker, "driftstream_outbox_entries", partition=partition) == 0

    worker.consumer.rebalance([1])  # everything revoked; partition 0 goes to another worker
    feed(broker, config, VALUES[1500:2000])
    run_until(worker, lambda: worker.units.get(1) is not None and worker.units[1].epoch)
    worker.step()
    assert sample(worker, "driftstream_consumer_lag_messages", topic=topic, partition="0") is None
    assert sample(worker, "driftstream_outbox_entries", partition="0") is None
    assert sample(worker, "driftstream_consumer_lag_messages", topic=topic, partition="1") == 0


def test_a_commit_whose_reply_was_lost_is_retried_and_counted_once(setup, client, redis_url):
    config, broker = setup
    worker = fake_worker(config, broker, client)
    feed(broker, config, VALUES[:1500])
    client.lose_reply = {"EVALSHA"}
    worker.start()
    run_until(worker, drained(worker, broker, config))

    assert not client.lose_reply, "the first commit must have lost its reply"
    assert sample(worker, "driftstream_store_retries_total", operation="commit") == 1
    topic = config.kafka.topics.predictions
    assert consumed(worker, config) == 1500
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    assert state[0]["offsets"] == {topic: 1500}
    assert state[0]["states"][MODEL]["events"] == 1500


OUTAGES = {
    # case: (the commands that fail, whether before the first batch, the operation retried)
    "claim": (("INCRBY",), True, "claim"),
    "load": (("HMGET",), True, "load"),
    "commit": (("EVALSHA",), False, "commit"),
    "relay": (("ZRANGE",), False, "relay"),
    "everything": ((), False, "commit"),
}


@pytest.mark.parametrize("case", list(OUTAGES))
def test_an_outage_pauses_consumption_and_nothing_is_lost_or_counted_twice(
    setup, client, redis_url, reference, caplog, case
):
    commands, at_start, operation = OUTAGES[case]
    config, broker = setup
    topic = config.kafka.topics.predictions
    feed(broker, config)
    worker = fake_worker(config, broker, client)
    worker.start()
    if not at_start:
        run_until(worker, lambda: worker.processed >= 2000)
    client.down(*commands)
    run_until(worker, lambda: sample(worker, "driftstream_store_up") == 0)
    stored, kafka = redis_offsets(redis_url, config), dict(broker.committed)
    counted = consumed(worker, config)
    polls = worker.consumer.polls

    for _ in range(20):
        worker.step()

    assert worker.consumer.polls >= polls + 20, "the group keeps a member that polls"
    assigned = {(tp.topic, tp.partition) for tp in worker.consumer.assignment()}
    assert worker.consumer.paused == assigned
    assert redis_offsets(redis_url, config) == stored
    assert broker.committed == kafka, "offsets never move without a commit"
    assert consumed(worker, config) == counted
    assert sample(worker, "driftstream_store_retries_total", operation=operation) >= 1
    lag = sample(worker, "driftstream_consumer_lag_messages", topic=topic, partition="0")
    assert lag == len(VALUES) - stored.get(0, {}).get(topic, 0)

    client.up()
    run_until(worker, drained(worker, broker, config))
    assert worker.close()

    assert sample(worker, "driftstream_store_up") == 1
    assert not worker.consumer.paused
    state, ids, dead = reference
    final = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    assert final == state, first_difference(final, state)
    assert sorted(alert_ids(broker, config)) == ids
    assert letters(broker, config) == dead
    assert consumed(worker, config) == len(VALUES)
    assert len(lines(caplog, "Redis is unavailable")) == 1
    assert len(lines(caplog, "Redis is back")) == 1


def wipe(redis_url, config):
    """What a Redis restarted without persistence holds: nothing."""
    plain = redis.Redis.from_url(redis_url)
    keys = list(plain.scan_iter(match=f"{config.redis.key_prefix}:*"))
    plain.delete(*keys)
    plain.close()


@pytest.mark.parametrize("when", ["running", "during_outage", "on_restart"])
def test_lost_keys_are_claimed_again_and_resumed_from_kafka(setup, client, redis_url, caplog, when):
    config, broker = setup
    topic = config.kafka.topics.predictions
    feed(broker, config, VALUES[:3000])
    worker = fake_worker(config, broker, client)
    worker.start()
    run_until(worker, drained(worker, broker, config))
    resume_at = broker.committed[(config.kafka.group_id, topic, 0)]
    feed(broker, config, VALUES[3000:4000])
    if when == "during_outage":
        client.down()
        run_until(worker, lambda: worker.uncommitted() > 0)
    if when == "on_restart":
        assert worker.close()
    wipe(redis_url, config)
    client.up()
    if when == "on_restart":
        worker = fake_worker(config, broker, client)
        worker.start()
    run_until(worker, lambda: redis_offsets(redis_url, config).get(0) == {topic: 4000})

    assert sample(worker, "driftstream_store_state_lost_total") >= 1
    lost = lines(caplog, "Redis lost the keys of group")
    assert lost and all(r.levelname == "ERROR" for r in lost)
    assert "partition 0" in lost[0].getMessage()
    assert worker.units[0].epoch == 1
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    # A fresh monitor counted what followed Kafka's committed offset, once.
    assert state[0]["states"][MODEL]["events"] == 4000 - resume_at
    assert sample(worker, "driftstream_partitions_owned") == 2
    assert worker.close()


def test_a_state_that_cannot_be_loaded_is_quarantined_and_a_fresh_monitor_starts(
    setup, client, redis_url, caplog
):
    config, broker = setup
    store = PartitionStore(
        client, prefix=config.redis.key_prefix, group=config.kafka.group_id, partition=0
    )
    epoch = store.claim().epoch
    bad = orjson.dumps({"kind": "model_monitor", "version": 1, "events": None})
    store.commit(epoch, {config.kafka.topics.predictions: 0}, {MODEL: bad}, [])
    feed(broker, config, VALUES[:1000])
    worker = fake_worker(config, broker, client)
    worker.start()
    run_until(worker, drained(worker, broker, config))

    assert sample(worker, "driftstream_state_quarantined_total", model="fraud-detector") == 1
    [line] = lines(caplog, "cannot be loaded")
    assert line.levelname == "ERROR"
    assert "'fraud-detector'" in line.getMessage() and repr(MODEL) in line.getMessage()
    states = store.snapshot()["states"]
    assert states[f"quarantined:{MODEL}:epoch-{epoch + 1}"] == bad
    assert orjson.loads(states[MODEL])["events"] == 1000
    assert worker.close()

    again = fake_worker(config, broker, client)
    feed(broker, config, VALUES[1000:1500])
    again.start()
    topic = config.kafka.topics.predictions
    run_until(again, lambda: store.offsets() == {topic: 1500})
    assert sample(again, "driftstream_state_quarantined_total", model="fraud-detector") is None
    assert again.close()


def test_dead_letters_always_fit_the_producer(setup, client):
    config, broker = setup
    topic = config.kafka.topics.predictions
    near_limit = b"x" * 999_900  # under limits.max_message_bytes, not JSON
    huge = b"y" * 1_500_000  # the input topic allowed it; no producer default would
    for value in (near_limit, huge):
        broker.append(topic, 0, KEY, value)
    # An entry left in an outbox by an older release, too large to publish whole.
    store = PartitionStore(
        client, prefix=config.redis.key_prefix, group=config.kafka.group_id, partition=1
    )
    left = OutboxEntry("dlq:old:1:0", config.kafka.topics.dlq, KEY, b"z" * 2_000_000)
    store.commit(store.claim().epoch, {topic: 0}, {}, [left])
    worker = fake_worker(config, broker, client)
    worker.start()
    run_until(worker, drained(worker, broker, config))

    published = {m.value()[:1]: m for m in broker.messages(config.kafka.topics.dlq)}
    assert published[b"x"].value() == near_limit
    assert HEADER_TRUNCATED not in dict(published[b"x"].headers())
    for first, size in ((b"y", 1_500_000), (b"z", 2_000_000)):
        message = published[first]
        assert len(message.key()) + len(message.value()) == 1_000_000
        assert dict(message.headers())[HEADER_TRUNCATED] == str(size).encode()
    assert sample(worker, "driftstream_dead_letters_truncated_total") == 2
    assert worker.pending_outbox() == 0
    assert worker.close()


def test_undelivered_outbox_entries_stay_and_go_out_later(setup, client):
    config, broker = setup
    feed(broker, config, VALUES[:2000])
    worker = fake_worker(config, broker, client)
    broker.down = True
    worker.start()
    run_until(worker, lambda: worker.processed >= total(broker, config))
    assert worker.pending_outbox() >= 4  # consumption went on; the dead letters wait
    assert not letters(broker, config)

    broker.down = False
    broker.delivery_failures = [KafkaError(KafkaError._MSG_TIMED_OUT)] * 2
    run_until(worker, lambda: worker.pending_outbox() == 0)
    assert sample(worker, "driftstream_relay_failures_total", error="_MSG_TIMED_OUT") == 2
    offsets = [dict(h)["driftstream.dlq.offset"] for h in letters(broker, config)]
    assert sorted(offsets) == [b"0", b"1", b"2", b"3"], "each dead letter published once"
    assert worker.close()


def test_consume_errors_are_logged_once_until_records_flow(setup, client, caplog):
    config, broker = setup
    worker = fake_worker(config, broker, client)
    worker.start()
    for _ in range(3):
        broker.consume_errors = [KafkaError(KafkaError._TRANSPORT)] * 2
        worker.step()
    feed(broker, config, VALUES[:10])
    run_until(worker, drained(worker, broker, config))

    assert len(lines(caplog, "librdkafka reconnects")) == 1
    assert sample(worker, "driftstream_consume_errors_total", error="_TRANSPORT") == 6
    assert lines(caplog, "records arrive again")
    assert worker.close()


def test_close_during_an_outage_never_raises_and_leaves_the_group(setup, client, caplog):
    config, broker = setup
    feed(broker, config, VALUES[:1000])
    worker = fake_worker(config, broker, client)
    worker.start()
    run_until(worker, drained(worker, broker, config))
    feed(broker, config, VALUES[1000:1500])
    client.down()
    run_until(worker, lambda: worker.uncommitted() > 0)

    def broken_flush(timeout=None):
        raise RuntimeError("the producer is gone")

    worker.producer.flush = broken_flush
    assert worker.close() is False
    assert worker.consumer.closed
    [line] = lines(caplog, "stopped while Redis is unavailable")
    assert "500 records taken were not committed" in line.getMessage()
    assert lines(caplog, "the producer is gone")
