"""The worker end to end, on the real broker and the real Redis."""

import json

import jsonschema
import orjson
import pytest
from pipeline import (
    DRIFTED,
    START_TS,
    WorkerProcess,
    alert_ids,
    committed,
    events,
    first_difference,
    killed_run,
    produce,
    read_topic,
    repo_root,
    run_in_thread,
    snapshot,
    wait_for,
    write_config,
)

from driftstream.runtime.alerts import HEADER_REASON, HEADER_TOPIC

pytestmark = pytest.mark.integration

OUTPUTS = {"__prediction__", "__score__"}
KEY = b"fraud-detector"


def test_produced_events_become_alerts_on_the_topic(kafka_bootstrap, redis_url, unique, tmp_path):
    _, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    produce(kafka_bootstrap, config.kafka.topics.predictions, events(8000, 8000, seed=5), KEY)
    _, registry = run_in_thread(config, 16_000)

    messages = read_topic(kafka_bootstrap, config.kafka.topics.alerts, at_least=1)
    alerts = [orjson.loads(m.value()) for m in messages]
    schema = json.loads((repo_root() / "src/driftstream/schemas/alert.schema.json").read_text())
    for message, alert in zip(messages, alerts, strict=True):
        jsonschema.validate(alert, schema)
        assert message.key() == KEY
    drifts = [a for a in alerts if a["kind"] == "drift"]
    drift_ts = START_TS + 8000 * 0.01
    assert {a["feature"] for a in drifts} - OUTPUTS == set(DRIFTED)
    assert all(a["event_time"] >= drift_ts for a in drifts)
    assert len(alert_ids(messages)) == len(messages)  # no duplicates on a clean run
    consumed = registry.get_sample_value(
        "driftstream_events_consumed_total",
        {"model": "fraud-detector", "topic": config.kafka.topics.predictions},
    )
    assert consumed == 16_000
    published = registry.get_sample_value(
        "driftstream_alerts_published_total", {"kind": "drift", "severity": "critical"}
    )
    assert published and published >= 1


def bad_events():
    """Each malformed input with the dead-letter reason it must get."""
    good = orjson.loads(events(1, 0, seed=9)[0])

    def variant(**changes):
        return orjson.dumps({**good, **changes})

    many = {f"f{i}": 1.0 for i in range(40)}
    return [
        (b"{not json", KEY, "malformed_json"),
        (b"[1, 2]", KEY, "not_an_object"),
        (orjson.dumps({k: v for k, v in good.items() if k != "ts"}), KEY, "missing_field"),
        (variant(features={**good["features"], "amount": "lots"}), KEY, "wrong_type"),
        (variant(score=None, prediction={"a": 1}), KEY, "wrong_type"),
        # orjson writes inf as null, so spell the overflowing literal out in bytes
        (variant(ts=12345.0).replace(b"12345.0", b"1e400"), KEY, "non_finite"),
        (variant(ts="yesterday"), KEY, "bad_timestamp"),
        (variant(model_id="nobody"), b"nobody", "unknown_model"),
        (variant(), b"someone-else", "key_mismatch"),
        (variant(features={**good["features"], **many}), KEY, "too_many_features"),
        (variant(features={**good["features"], "pad": "x" * 3000}), KEY, "oversized"),
    ]


def test_bad_input_goes_to_the_dead_letter_topic_and_good_events_still_count(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    text = path.read_text().replace(
        "metrics:", "limits: {max_message_bytes: 2048, max_features: 30}\nmetrics:"
    )
    path.write_text(text)
    from driftstream.config import load_config

    config = load_config(path)
    good = events(3000, 0, seed=10)
    bad = bad_events()
    topic = config.kafka.topics.predictions
    produce(kafka_bootstrap, topic, good[:1500], KEY, partition=0)
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value, key, _ in bad:
        producer.produce(topic, value=value, key=key, partition=0)
    assert producer.flush(10) == 0
    produce(kafka_bootstrap, topic, good[1500:], KEY, partition=0)

    _, registry = run_in_thread(config, 3000 + len(bad))
    letters = read_topic(kafka_bootstrap, config.kafka.topics.dlq, at_least=len(bad))
    assert len(letters) == len(bad)
    by_value = {m.value(): dict(m.headers()) for m in letters}
    for value, _, reason in bad:
        headers = by_value[value]  # the original bytes, unchanged
        assert headers[HEADER_REASON].decode() == reason, (value[:60], headers)
        assert headers[HEADER_TOPIC].decode() == topic
    for _, _, reason in bad:
        assert (
            registry.get_sample_value(
                "driftstream_invalid_events_total", {"reason": reason, "topic": topic}
            )
            >= 1
        )
    assert (
        registry.get_sample_value(
            "driftstream_events_consumed_total", {"model": "fraud-detector", "topic": topic}
        )
        == 3000
    )
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    assert state[0]["offsets"] == {topic: 3000 + len(bad)}
    assert state[0]["states"]["predictions:fraud-detector"]["events"] == 3000


def test_sigkill_mid_stream_gives_the_same_state_and_alert_ids(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    _, config_a = write_config(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-a", inputs=inputs, batch_size=250
    )
    path_b, config_b = write_config(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-b", inputs=inputs, batch_size=250
    )
    total = 24_000
    produce(kafka_bootstrap, config_a.kafka.topics.predictions, events(12_000, 12_000, 12), KEY)
    run_in_thread(config_a, total)
    reference = snapshot(redis_url, config_a.redis.key_prefix, config_a.kafka.group_id)
    reference_ids = alert_ids(read_topic(kafka_bootstrap, config_a.kafka.topics.alerts, 1))

    killed_run(kafka_bootstrap, redis_url, path_b, config_b, total, len(reference_ids))
    prefix, group = config_b.redis.key_prefix, config_b.kafka.group_id

    final = snapshot(redis_url, prefix, group)
    assert final == reference, first_difference(final, reference)
    # At least once: a kill between commit and relay may re-send, never lose or invent.
    assert alert_ids(read_topic(kafka_bootstrap, config_b.kafka.topics.alerts)) == reference_ids
    assert reference_ids


def test_a_killed_workers_partitions_are_taken_over_from_redis(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    models = ("m0", "m1", "m2", "m3")
    inputs = f"{unique}-in"
    common = {"inputs": inputs, "models": models, "partitions": 4, "batch_size": 200}
    _, config_r = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-r", **common)
    path_g, config_g = write_config(tmp_path, kafka_bootstrap, redis_url, f"{unique}-g", **common)
    first, second = WorkerProcess(path_g, "first"), WorkerProcess(path_g, "second")
    wait_for(
        lambda: first.owned and second.owned and len(first.owned | second.owned) == 4,
        60,
        f"both workers assigned\n{first.log()}\n{second.log()}",
    )
    topic = config_g.kafka.topics.predictions
    for number, model_id in enumerate(models):
        traffic = events(6000, 6000, seed=20 + number, model_id=model_id)
        produce(kafka_bootstrap, topic, traffic, model_id.encode(), partition=number)
    total = 4 * 12_000
    prefix, group = config_g.redis.key_prefix, config_g.kafka.group_id
    wait_for(lambda: committed(redis_url, prefix, group) >= 0.2 * total, 60, "progress")
    victim = set(first.owned)
    first.kill()
    assert committed(redis_url, prefix, group) < total
    wait_for(lambda: second.owned == {0, 1, 2, 3}, 60, f"takeover\n{second.log()}")
    wait_for(lambda: committed(redis_url, prefix, group) >= total, 90, "everything committed")
    assert second.stop() == 0, second.log()

    run_in_thread(config_r, total)
    reference = snapshot(redis_url, config_r.redis.key_prefix, config_r.kafka.group_id)
    final = snapshot(redis_url, prefix, group)
    assert final == reference, first_difference(final, reference)  # nothing lost or twice
    for number in victim:
        assert reference[number]["offsets"] == {topic: 12_000}
    ids = alert_ids(read_topic(kafka_bootstrap, config_g.kafka.topics.alerts))
    assert ids == alert_ids(read_topic(kafka_bootstrap, config_r.kafka.topics.alerts))


def test_a_dead_letter_near_the_size_limit_is_published_whole(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    _, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    topic = config.kafka.topics.predictions
    near_limit = b"not json " + b"x" * (999_900 - 9)  # under limits.max_message_bytes
    produce(kafka_bootstrap, topic, [near_limit], KEY, partition=0)
    produce(kafka_bootstrap, topic, events(100, 0, seed=12), KEY, partition=0)
    _, registry = run_in_thread(config, 101)

    [letter] = read_topic(kafka_bootstrap, config.kafka.topics.dlq, at_least=1)
    assert letter.value() == near_limit
    assert dict(letter.headers())[HEADER_REASON] == b"malformed_json"
    assert registry.get_sample_value("driftstream_dead_letters_truncated_total") == 0
