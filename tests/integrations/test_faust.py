"""A faust-streaming app with driftstream's monitors attached, on the real broker and Redis.

Each test compares the Redis state and the alert ids the app leaves with
those of ``driftstream run`` over the same input topics.
"""

import asyncio
import contextlib
import json
import subprocess
import sys
import time

import faust
import jsonschema
import orjson
import pytest
from fakes import FlakyRedis
from pipeline import (
    DRIFTED,
    START_TS,
    alert_ids,
    committed,
    events,
    first_difference,
    produce,
    read_topic,
    repo_root,
    run_in_thread,
    snapshot,
    write_config,
)

from driftstream.config import ConfigError
from driftstream.integrations.faust import Monitors, attach

KEY = b"fraud-detector"
OTHER = "other-model"
OUTPUTS = {"__prediction__", "__score__"}
LIVENESS_SECONDS = 90.0  # a bound for a busy 2-core machine, never a measurement


def faust_app(app_id, bootstrap, tmp_path):
    # Tansu answers a group join after half the session timeout: with Faust's
    # default of 60 s every start would take 30 s.
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        datadir=str(tmp_path / "faust"),
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )


@contextlib.asynccontextmanager
async def running(app):
    """The app started; stopping it closes its monitors."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def wait_until(condition, what):
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.1)


def settled(config, redis_url, total, *monitors):
    """Whether ``total`` records are committed in Redis and every outbox is empty."""
    prefix, group = config.redis.key_prefix, config.kafka.group_id
    return lambda: (
        committed(redis_url, prefix, group) >= total
        and all(m.worker.pending_outbox() == 0 for m in monitors)
    )


def reference_run(tmp_path, bootstrap, redis_url, name, inputs, total, **options):
    """``driftstream run``'s state and alert ids over the same input topics."""
    _, config = write_config(tmp_path, bootstrap, redis_url, name, inputs=inputs, **options)
    run_in_thread(config, total)
    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    return state, alert_ids(read_topic(bootstrap, config.kafka.topics.alerts, at_least=1))


@pytest.mark.integration
def test_drift_reaches_the_alerts_topic_as_from_the_native_worker(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    path, config = write_config(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-faust", inputs=inputs
    )
    produce(kafka_bootstrap, config.kafka.topics.predictions, events(8000, 8000, seed=5), KEY)
    app = faust_app(f"{unique}-app", kafka_bootstrap, tmp_path)
    monitors = attach(app, config=path)

    async def scenario():
        async with running(app):
            await wait_until(settled(config, redis_url, 16_000, monitors), "16000 committed")

    asyncio.run(scenario())

    messages = read_topic(kafka_bootstrap, config.kafka.topics.alerts, at_least=1)
    alerts = [orjson.loads(m.value()) for m in messages]
    schema = json.loads((repo_root() / "src/driftstream/schemas/alert.schema.json").read_text())
    for message, alert in zip(messages, alerts, strict=True):
        jsonschema.validate(alert, schema)
        assert message.key() == KEY
        assert alert["source"]["topic"] == config.kafka.topics.predictions
    drifts = [a for a in alerts if a["kind"] == "drift"]
    assert {a["feature"] for a in drifts} - OUTPUTS == set(DRIFTED)
    assert all(a["event_time"] >= START_TS + 8000 * 0.01 for a in drifts)
    assert len(alert_ids(messages)) == len(messages)  # none twice on a clean run

    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    (unit,) = [u for u in state.values() if u["offsets"]]
    assert unit["offsets"] == {config.kafka.topics.predictions: 16_000}
    assert unit["states"]["predictions:fraud-detector"]["events"] == 16_000
    assert monitors.worker.processed == 16_000
    (partition,) = [number for number, u in state.items() if u["offsets"]]
    lag = monitors.registry.get_sample_value(
        "driftstream_consumer_lag_messages",
        {"topic": config.kafka.topics.predictions, "partition": str(partition)},
    )
    assert lag == 0  # Faust's high watermark, reached
    published = monitors.registry.get_sample_value(
        "driftstream_alerts_published_total", {"kind": "drift", "severity": "critical"}
    )
    assert published and published >= 1

    reference, reference_ids = reference_run(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-native", inputs, 16_000
    )
    assert state == reference, first_difference(state, reference)
    assert alert_ids(messages) == reference_ids


@pytest.mark.integration
def test_records_delivered_again_or_moved_by_a_rebalance_count_once(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    models = ("fraud-detector", OTHER)
    path, config = write_config(
        tmp_path,
        kafka_bootstrap,
        redis_url,
        f"{unique}-faust",
        inputs=inputs,
        models=models,
        batch_size=500,
    )
    topic = config.kafka.topics.predictions
    # One model per partition, each 3000 stable events, then 3000 drifted.
    traffic = {0: events(3000, 3000, seed=8), 1: events(3000, 3000, seed=6, model_id=OTHER)}
    keys = {0: KEY, 1: OTHER.encode()}

    def produce_part(part):
        for number, values in traffic.items():
            part_values = values[part * 2000 : (part + 1) * 2000]
            produce(kafka_bootstrap, topic, part_values, keys[number], partition=number)

    produce_part(0)
    first = faust_app(f"{unique}-first", kafka_bootstrap, tmp_path)
    monitors = attach(first, config=path)

    async def first_run():
        async with running(first):
            await wait_until(settled(config, redis_url, 4000, monitors), "4000 committed")

    asyncio.run(first_run())

    # A Faust group that committed nothing reads the topic from the start
    # again, as after a crash before Faust's commit interval; a second
    # member then joins it and takes one of the partitions.
    produce_part(1)
    apps = [faust_app(f"{unique}-second", kafka_bootstrap, tmp_path) for _ in range(2)]
    members = [attach(app, config=path) for app in apps]

    async def second_run():
        async with running(apps[0]):
            await wait_until(settled(config, redis_url, 8000, members[0]), "8000 committed")
            async with running(apps[1]):
                await wait_until(
                    lambda: all(m.feed.numbers for m in members), "each member owns a partition"
                )
                produce_part(2)
                await wait_until(settled(config, redis_url, 12_000, *members), "12000 committed")
                return [set(m.feed.numbers) for m in members]

    owned = asyncio.run(second_run())
    assert sorted(owned, key=min) == [{0}, {1}]
    # The first part was skipped, not counted again; each member took its share of the third.
    assert [m.worker.processed for m in members] == [4000 + 2000, 2000]

    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    reference, reference_ids = reference_run(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-native", inputs, 12_000, models=models
    )
    assert state == reference, first_difference(state, reference)
    messages = read_topic(kafka_bootstrap, config.kafka.topics.alerts, at_least=1)
    assert alert_ids(messages) == reference_ids
    assert len(alert_ids(messages)) == len(messages)


@pytest.mark.integration
def test_a_redis_outage_holds_the_stream_back_and_loses_nothing(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    inputs = f"{unique}-in"
    path, config = write_config(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-faust", inputs=inputs, batch_size=250
    )
    topic = config.kafka.topics.predictions
    traffic = events(3000, 3000, seed=9)
    produce(kafka_bootstrap, topic, traffic[:3000], KEY)
    client = FlakyRedis.from_url(redis_url)
    app = faust_app(f"{unique}-app", kafka_bootstrap, tmp_path)
    monitors = attach(app, config=path, redis_client=client)
    worker = monitors.worker

    async def scenario():
        async with running(app):
            await wait_until(lambda: worker.processed >= 3000, "3000 committed")
            client.down()
            produce(kafka_bootstrap, topic, traffic[3000:], KEY)
            await wait_until(
                lambda: not worker.store.up and worker.store.failures >= 3, "three tries failed"
            )
            during = worker.processed
            client.up()
            await wait_until(settled(config, redis_url, 6000, monitors), "6000 committed")
        return during

    during = asyncio.run(scenario())
    assert during == 3000  # nothing counted while nothing could be committed
    retries = [
        sample.value
        for metric in monitors.registry.collect()
        for sample in metric.samples
        if sample.name == "driftstream_store_retries_total"
    ]
    assert sum(retries) >= 3

    state = snapshot(redis_url, config.redis.key_prefix, config.kafka.group_id)
    reference, reference_ids = reference_run(
        tmp_path, kafka_bootstrap, redis_url, f"{unique}-native", inputs, 6000
    )
    assert state == reference, first_difference(state, reference)
    messages = read_topic(kafka_bootstrap, config.kafka.topics.alerts, at_least=1)
    assert alert_ids(messages) == reference_ids


@pytest.mark.integration
def test_a_stream_of_another_topic_is_refused(kafka_bootstrap, redis_url, unique, tmp_path):
    path, _ = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    app = faust_app(f"{unique}-app", kafka_bootstrap, tmp_path)
    with pytest.raises(ConfigError, match=r"'orders'.*kafka\.topics\.predictions"):
        attach(app, app.topic("orders", value_serializer="raw"), config=path)


@pytest.mark.integration
def test_an_agent_with_concurrent_instances_is_refused(
    kafka_bootstrap, redis_url, unique, tmp_path
):
    path, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    app = faust_app(f"{unique}-app", kafka_bootstrap, tmp_path)
    monitors = Monitors(app, path)
    topic = app.topic(config.kafka.topics.predictions, value_serializer="raw")
    second = app.stream(topic, concurrency_index=1)  # an agent's second instance

    async def iterate():
        async for _ in monitors.batches(second):
            pass

    with pytest.raises(ConfigError, match="concurrency=1"):
        asyncio.run(iterate())
    assert monitors.close()


@pytest.mark.integration
def test_repartition_routing_is_refused(kafka_bootstrap, redis_url, unique, tmp_path):
    _, config = write_config(tmp_path, kafka_bootstrap, redis_url, unique)
    app = faust_app(f"{unique}-app", kafka_bootstrap, tmp_path)
    repartition = config.model_copy(
        update={"kafka": config.kafka.model_copy(update={"routing": "repartition"})}
    )
    with pytest.raises(ConfigError, match=r"kafka\.routing: repartition"):
        Monitors(app, repartition)


def test_without_faust_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faust", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'driftstream\[faust\]'"):
        Monitors(object(), "unread.yaml")


def test_nothing_imports_faust_until_monitors_are_made():
    modules = (
        "driftstream.cli",
        "driftstream.runtime.worker",
        "driftstream.replay.engine",
        "driftstream.integrations.faust",
    )
    code = f"import sys; import {', '.join(modules)}; print('faust' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
